// The interactive API docs: the documents these servers generate, tried out with the browser's
// own session (the cookie; changes also need the CSRF token, which "Authorize" does not set,
// so use a personal API token there). No online validator: the page works offline.
//
// One process serves one document for everything. When the services run apart, the query API
// (which serves this page) says in /ui-config.json where the others are, and each of them
// serves its own part: the page offers them all.
const parts = [["query API and accounts", "query_api"], ["command API", "command_api"], ["notifier", "notifier_api"], ["admin (projector)", "admin_api"]];

fetch("/ui-config.json")
  .then((answer) => (answer.ok ? answer.json() : {}))
  .catch(() => ({}))
  .then((config) => {
    const apart = parts.some(([, key]) => config[key]);
    const choice = apart
      ? { urls: parts.map(([name, key]) => ({ name, url: `${config[key] || ""}/api/openapi.json` })) }
      : { url: "/api/openapi.json" };
    window.ui = SwaggerUIBundle({
      ...choice,
      dom_id: "#swagger-ui",
      deepLinking: true,
      withCredentials: true,
      validatorUrl: null,
    });
  });
