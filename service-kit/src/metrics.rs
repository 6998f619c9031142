//! Prometheus metrics: one recorder per process (the `metrics` facade with its Prometheus
//! exporter), served at `/metrics` in the text format, and the HTTP request metrics every
//! service records through [`track_requests`].
//!
//! Names follow Prometheus conventions: a `content_processor_` prefix, base units in the name
//! (`_seconds`, `_records`), `_total` on counters.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: from a cache hit to a slow broker acknowledgement.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Batch sizes, in records.
const SIZE_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0, 10000.0];

/// The process's recorder, installed on first use. Every component of the one-process mode
/// shares it, so one `/metrics` shows them all.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|builder| builder.set_buckets_for_metric(Matcher::Suffix("_records".into()), SIZE_BUCKETS))
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness); then this one only
            // renders what it records, which is nothing, rather than failing the service.
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    // Histograms are kept in rolling windows that need draining now and then.
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .expect("a thread can be spawned");
            handle
        })
        .clone()
}

/// `GET /metrics`; installs the recorder if it is not yet (an embedding that skipped
/// [`crate::telemetry::init`]).
pub fn routes() -> Router {
    handle();
    Router::new().route("/metrics", get(render))
}

/// This process's metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()), responses(
    (status = 200, description = "the Prometheus text exposition format", body = String, content_type = "text/plain"),
))]
async fn render() -> String {
    handle().render()
}

/// The OpenAPI description of `/metrics`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(render))]
pub struct MetricsApi;

/// Middleware: counts requests by method, route (the pattern, not the path, so ids do not
/// make new series) and status, and times them.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_owned();
    let route = request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let labels = [("method", method), ("route", route), ("status", response.status().as_u16().to_string())];
    metrics::counter!("content_processor_http_requests_total", &labels).increment(1);
    metrics::histogram!("content_processor_http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response.into_response()
}

/// The method as a label: one of the methods HTTP defines, or `other`. A client may send any
/// token as a method, and every label value is a series kept for as long as the process runs.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN.iter().find(|(known, _)| known == method).map_or("other", |(_, label)| *label)
}

/// Counts an event a consumer read, by type.
pub fn event_consumed(consumer: &'static str, event_type: &'static str) {
    metrics::counter!("content_processor_events_consumed_total", "consumer" => consumer, "type" => event_type).increment(1);
}
