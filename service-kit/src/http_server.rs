//! Serving a router the same way everywhere: request ids, request logs, a JSON 404 for unknown
//! routes, and graceful shutdown that lets in-flight requests finish.

use std::net::SocketAddr;

use axum::http::{header, HeaderName, HeaderValue, Method, Request};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;


pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Adds the layers every service wants to `router`.
pub fn with_common_layers(router: Router) -> Router {
    router
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id)
            }),
        )
        // Outermost: the id exists before the trace span is made, and goes back to the client.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Cross-origin access for the browser UI when it is served from another origin than this API.
/// `None` when no origin is configured: same-origin only, the default.
pub fn cors(allowed_origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    if allowed_origins.is_empty() {
        return Ok(None);
    }
    let origins = allowed_origins
        .iter()
        .map(|o| HeaderValue::from_str(o.trim()).map_err(|_| anyhow::anyhow!("invalid CORS origin {o:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE, HeaderName::from_static("last-event-id")])
            .expose_headers([header::LOCATION, header::RETRY_AFTER]),
    ))
}

/// Binds `addr` (port 0 picks a free one) and returns the listener with its real address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves until `shutdown` is cancelled, then stops accepting and waits for open requests.
/// Long-lived responses (server-sent events) watch the same token and end themselves.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> anyhow::Result<()> {
    axum::serve(listener, with_common_layers(router))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}
