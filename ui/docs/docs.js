// The interactive API docs: the document this server generates, tried out with the browser's
// own session (the cookie; changes also need the CSRF token, which "Authorize" does not set,
// so use a personal API token there). No online validator: the page works offline.
window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  withCredentials: true,
  validatorUrl: null,
});
