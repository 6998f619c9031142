//! Serving a router the same way everywhere: request ids, request logs, a JSON 404 for unknown
//! routes, and graceful shutdown that lets in-flight requests finish.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::{header, HeaderName, HeaderValue, Method, Request};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A service's whole app when it runs as its own process: its `routes`, their OpenAPI
/// `document` at `/api/openapi.json`, and the JSON 404; [`mount_operations`] adds the rest.
pub fn service_app(routes: Router, document: utoipa::openapi::OpenApi) -> Router {
    routes.merge(crate::openapi::routes(document)).fallback(crate::http_error::not_found_fallback)
}

/// Mounts what operators and orchestrators ask a service (`/healthz`, `/readyz` from `checks`,
/// `/metrics`): on a listener of their own at `internal` when there is one (served until
/// `shutdown`), which no gateway routes to, so strangers cannot read them; else on `app`.
pub async fn mount_operations(
    app: Router,
    checks: Vec<crate::health::ReadinessCheck>,
    internal: Option<SocketAddr>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Router> {
    let operations = crate::health::routes(checks).merge(crate::metrics::routes());
    let Some(internal) = internal else { return Ok(app.merge(operations)) };
    let (listener, addr) = bind(internal).await?;
    tracing::info!(%addr, "health checks and metrics listening");
    tokio::spawn(serve(listener, operations.fallback(crate::http_error::not_found_fallback), None, shutdown.clone()));
    Ok(app)
}

/// Adds the layers every service wants to `router`: a JSON 405 for a method a route does not
/// take (axum's own has no body), then `cors` around it, then metrics, traces and request ids.
/// CORS must wrap the 405: a preflight is an OPTIONS request that no route takes, and it has
/// to reach the CORS layer to be answered (a fallback set after the layer replaced the one it
/// wrapped, and every preflight got a 405).
pub fn with_common_layers(router: Router, cors: Option<CorsLayer>) -> Router {
    let router = router.method_not_allowed_fallback(method_not_allowed).layer(axum::middleware::from_fn(read_small_body_first));
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    // What every answer says unless its route said otherwise: an API's answers are data, never
    // a page to run, frame, sniff or cache (the UI's pages set their own policy and caching).
    let unless_set = |name, value| SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value));
    router
        .layer(unless_set(header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"))
        .layer(unless_set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(unless_set(header::REFERRER_POLICY, "no-referrer"))
        .layer(unless_set(header::CACHE_CONTROL, "no-store"))
        .layer(axum::middleware::from_fn(crate::metrics::track_requests))
        .layer(axum::middleware::from_fn(answer_traceparent))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let request_id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            let span = tracing::info_span!(
                target: crate::trace_context::TRACE_TARGET,
                "http",
                method = %request.method(),
                path = %request.uri().path(),
                request_id,
                trace_id = tracing::field::Empty
            );
            crate::trace_context::continue_http_trace(&span, request.headers());
            span
        }))
        // Outermost: the id exists before the trace span is made, and goes back to the client.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Tells the client the `traceparent` of its request's span (inside the trace layer), so it
/// can find the trace its request started or continued.
async fn answer_traceparent(request: Request<axum::body::Body>, next: axum::middleware::Next) -> axum::response::Response {
    let mut response = next.run(request).await;
    if let Some(traceparent) = crate::trace_context::traceparent(&tracing::Span::current()) {
        response.headers_mut().insert(TRACEPARENT, traceparent);
    }
    response
}

/// Bodies up to this size (by `Content-Length`) are read whole before any extractor or handler
/// judges the request: more than a submission's largest body (six times `MAX_CONTENT_BYTES`'
/// 64 KiB, for JSON escapes), less than a batch's.
const READ_BEFORE_ROUTING: usize = 512 * 1024;
/// How long reading such a body may take: a client trickling one byte at a time must not hold a
/// task and a buffer for as long as it likes.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a small body before anything judges the request (route matching apart: this runs as a
/// layer of the matched route or fallback, before its extractors). A refusal that leaves body bytes
/// unread (a malformed path id, a missing credential, a method the route does not take) made
/// the server close the connection with data still unread, which resets it: a client still
/// sending the body lost the answer (a broken pipe), and one reusing the connection lost its next
/// request. Larger and streamed bodies are left to their handlers, which read them whole
/// (`command-api`'s intake) or refuse them by size; when one was not read to its end, the answer
/// says `Connection: close`, so no client sends its next request on a connection being closed.
async fn read_small_body_first(request: Request<axum::body::Body>, next: axum::middleware::Next) -> axum::response::Response {
    let length = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let Some(length) = length.filter(|length| (1..=READ_BEFORE_ROUTING).contains(length)) else {
        use axum::body::HttpBody;
        let (parts, body) = request.into_parts();
        if length == Some(0) || (length.is_none() && body.is_end_stream()) {
            return next.run(Request::from_parts(parts, body)).await;
        }
        let read_to_end = Arc::new(AtomicBool::new(false));
        let seen_end = read_to_end.clone();
        let end = futures_util::stream::poll_fn(move |_| {
            seen_end.store(true, Ordering::Release);
            std::task::Poll::Ready(None)
        });
        let body = axum::body::Body::from_stream(futures_util::StreamExt::chain(body.into_data_stream(), end));
        let mut response = next.run(Request::from_parts(parts, body)).await;
        if !read_to_end.load(Ordering::Acquire) {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return response;
    };
    let (parts, body) = request.into_parts();
    let mut refusal = match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, length)).await {
        Ok(Ok(bytes)) => return next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Ok(Err(error)) => crate::http_error::error_response(
            axum::http::StatusCode::BAD_REQUEST,
            "unreadable_body",
            format!("the body could not be read as its Content-Length says: {error}"),
        ),
        Err(_) => crate::http_error::error_response(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the body did not arrive within {} s", BODY_READ_TIMEOUT.as_secs()),
        ),
    };
    // What is left of the body is never read: the connection closes after this answer.
    refusal.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    refusal
}

async fn method_not_allowed(method: Method) -> axum::response::Response {
    crate::http_error::error_response(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("this route does not take {method}"))
}

/// Cross-origin access for the browser UI when it is served from another origin than this API.
/// `None` when no origin is configured: same-origin only, the default.
pub fn cors(allowed_origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    if allowed_origins.is_empty() {
        return Ok(None);
    }
    let origins = allowed_origins.iter().map(|o| origin(o)).collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            // The UI signs in with a cookie, so its requests carry credentials, and send the
            // CSRF token (the cookie is SameSite=Strict: allowed origins share the site).
            .allow_credentials(true)
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("last-event-id"),
                HeaderName::from_static("x-csrf-token"),
                HeaderName::from_static("idempotency-key"),
                TRACEPARENT,
                HeaderName::from_static("tracestate"),
            ])
            .expose_headers([
                header::LOCATION,
                header::RETRY_AFTER,
                HeaderName::from_static("ratelimit"),
                HeaderName::from_static("ratelimit-policy"),
                TRACEPARENT,
            ]),
    ))
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing more.
fn origin(text: &str) -> anyhow::Result<HeaderValue> {
    let trimmed = text.trim();
    let host = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://"));
    match host {
        Some(host) if !host.is_empty() && !host.contains(['/', ' ', '\t']) => Ok(HeaderValue::from_str(trimmed)?),
        _ => anyhow::bail!("invalid CORS origin {text:?}: expected scheme://host[:port], e.g. https://ui.example.com"),
    }
}

/// Binds `addr` (port 0 picks a free one) and returns the listener with its real address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves until `shutdown` is cancelled, then stops accepting and waits for open requests.
/// Long-lived responses (server-sent events) watch the same token and end themselves. `cors`
/// (from [`cors`]) lets the configured origins call the API from a browser.
pub async fn serve(listener: TcpListener, router: Router, cors: Option<CorsLayer>, shutdown: CancellationToken) -> anyhow::Result<()> {
    // The peer address reaches handlers (sign-in attempts are limited per client address).
    axum::serve(listener, with_common_layers(router, cors).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt;

    use super::*;

    /// A router as [`serve`] serves it, with the layers every service has.
    fn app(origins: &[&str]) -> Router {
        let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
        let router = Router::new()
            .route("/api/submissions", post(|| async { "ok" }))
            .route("/api/notification-settings", axum::routing::put(|| async { "ok" }));
        with_common_layers(router, cors(&origins).unwrap())
    }

    fn preflight(origin: &str, path: &str, method: &str) -> Request<Body> {
        Request::builder()
            .method(Method::OPTIONS)
            .uri(path)
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type,x-csrf-token")
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_configured_origin_may_call_the_api_from_the_browser() {
        for (path, method) in [("/api/submissions", "POST"), ("/api/notification-settings", "PUT")] {
            let response = app(&["https://ui.example.com"]).oneshot(preflight("https://ui.example.com", path, method)).await.unwrap();
            assert_eq!(response.status(), axum::http::StatusCode::OK, "the preflight of {method} {path} is answered");
            let headers = response.headers();
            assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://ui.example.com");
            assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
            assert!(headers[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap().contains(method), "{headers:?}");
            let allowed_headers = headers[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().to_ascii_lowercase();
            assert!(allowed_headers.contains("x-csrf-token"), "{allowed_headers}");
        }

        let request = Request::builder()
            .method(Method::POST)
            .uri("/api/submissions")
            .header(header::ORIGIN, "https://ui.example.com")
            .body(Body::empty())
            .unwrap();
        let response = app(&["https://ui.example.com"]).oneshot(request).await.unwrap();
        let exposed = response.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap().to_ascii_lowercase();
        assert!(exposed.contains("location") && exposed.contains("retry-after"), "{exposed}");
    }

    /// A request refused before its handler reads the body (here: a path id that is not a
    /// number) leaves the connection usable: the next request on it is answered too.
    #[tokio::test]
    async fn a_refusal_before_the_body_is_read_keeps_the_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let router = Router::new().route("/items/{id}", post(|axum::extract::Path(id): axum::extract::Path<u32>| async move { id.to_string() }));
        let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, router, None, shutdown.clone()));
        let mut connection = tokio::net::TcpStream::connect(addr).await.unwrap();
        let body = "x".repeat(200_000);
        // The head first, the body a moment later: the refusal can be made from the head alone.
        let head = format!("POST /items/not-a-number HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n\r\n", body.len());
        connection.write_all(head.as_bytes()).await.unwrap();
        tokio::task::yield_now().await;
        connection.write_all(body.as_bytes()).await.unwrap();
        connection.write_all(b"POST /items/7 HTTP/1.1\r\nhost: test\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        let mut answers = String::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            let mut buffer = [0u8; 4096];
            while !(answers.contains("HTTP/1.1 400") && answers.ends_with("\r\n\r\n7")) {
                let read = connection.read(&mut buffer).await.unwrap();
                assert!(read > 0, "the connection was closed after: {answers:?}");
                answers.push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        })
        .await;
        assert!(read.is_ok(), "both requests answered on one connection: {answers:?}");

        // A body too large to read first, refused unread: the answer says the connection closes.
        let mut connection = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!("POST /items/not-a-number HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n\r\n", READ_BEFORE_ROUTING + 1);
        connection.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), connection.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 400") && answer.contains("connection: close"), "{answer}");
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn other_origins_and_the_default_get_no_cross_origin_access() {
        let response = app(&["https://ui.example.com"]).oneshot(preflight("https://evil.example.com", "/api/submissions", "POST")).await.unwrap();
        assert!(!response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        let response = app(&[]).oneshot(preflight("https://ui.example.com", "/api/submissions", "POST")).await.unwrap();
        assert!(!response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        for malformed in ["not an origin", "https://ui.example.com/path", "ftp://x", "https://"] {
            assert!(cors(&[malformed.to_owned()]).is_err(), "{malformed:?} is refused at start");
        }
    }
}
