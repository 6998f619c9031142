//! W3C trace context (`traceparent`, `tracestate`) carried from an HTTP request into what it
//! causes, and on from there: one trace id ties together everything that happens to a
//! submission, in every component, however many processes and hops of the log lie between.
//! This is the carrier-free part and HTTP's; the Kafka record headers are `kafka_kit`'s
//! `trace_headers`.
//!
//! The carriers are `tracing` spans; the OpenTelemetry layer [`crate::telemetry`] installs gives
//! them trace and span ids (and exports them over OTLP when an endpoint is configured). The
//! trace id is also a field of each span, so every log line inside one shows it.

use axum::http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of the spans that carry trace context from a request or a record: always
/// enabled, whatever the log filter (see [`crate::telemetry`]).
pub const TRACE_TARGET: &str = "content_processor::trace";

/// A span for work done later on behalf of a record (a notification's delivery, say) that
/// continues the trace whose `traceparent` was stored with it; a trace of its own without one.
pub fn stored_span(component: &'static str, traceparent: Option<&str>) -> Span {
    let span = tracing::info_span!(target: TRACE_TARGET, "stored", component, trace_id = tracing::field::Empty);
    let fields: std::collections::HashMap<String, String> =
        traceparent.map(|value| [("traceparent".to_owned(), value.to_owned())].into()).unwrap_or_default();
    continue_trace(&span, &fields);
    span
}

/// Makes `span` (an HTTP request's) continue the trace of the request's `traceparent`, when
/// it has a valid one; otherwise `span` starts a trace of its own.
pub fn continue_http_trace(span: &Span, headers: &HeaderMap) {
    continue_trace(span, &RequestHeaders(headers));
}

/// The longest `tracestate` carried on: what W3C asks every vendor to propagate. A longer one
/// from a client is dropped, not copied into every record its request writes.
const MAX_TRACESTATE_BYTES: usize = 512;

/// Reads a request's headers as propagation fields, a `tracestate` past the bound left out.
struct RequestHeaders<'a>(&'a HeaderMap);

impl Extractor for RequestHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = self.0.get(key)?.to_str().ok()?;
        (!key.eq_ignore_ascii_case("tracestate") || value.len() <= MAX_TRACESTATE_BYTES).then_some(value)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// The `traceparent` of `span` as an HTTP header value, for telling a client which trace its
/// request started. `None` when the span has no trace (tracing not installed).
pub fn traceparent(span: &Span) -> Option<HeaderValue> {
    propagation_fields(span).into_iter().find(|(key, _)| key == "traceparent").and_then(|(_, value)| HeaderValue::from_str(&value).ok())
}

/// The W3C fields that carry `span`'s context, empty ones left out: what goes into the
/// headers of whatever `span` causes.
pub fn propagation_fields(span: &Span) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut Fields(&mut fields));
    fields.retain(|(_, value)| !value.is_empty());
    fields
}

/// Makes `span` continue the trace whose fields `carrier` holds, when they are valid (a trace of
/// its own otherwise), and shows its trace id in its `trace_id` field.
pub fn continue_trace(span: &Span, carrier: &dyn Extractor) {
    let parent = TraceContextPropagator::new().extract(carrier);
    if parent.span().span_context().is_valid() {
        // Only fails when no OpenTelemetry layer is installed; the span then has no trace.
        let _ = span.set_parent(parent);
    }
    record_trace_id(span);
}

fn record_trace_id(span: &Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
    }
}

/// Collects propagation fields to write them out as headers of either kind.
struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Injector for Fields<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn with_tracing(test: impl FnOnce()) {
        let subscriber = tracing_subscriber::registry().with(crate::telemetry::trace_layer());
        tracing::subscriber::with_default(subscriber, test);
    }

    fn trace_id_of(value: &HeaderValue) -> String {
        value.to_str().unwrap().split('-').nth(1).unwrap().to_owned()
    }

    #[test]
    fn without_a_valid_traceparent_a_new_trace_starts_and_a_stored_one_continues() {
        with_tracing(|| {
            let mut request = HeaderMap::new();
            request.insert("traceparent", HeaderValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
            let first = tracing::info_span!(target: TRACE_TARGET, "http", trace_id = tracing::field::Empty);
            continue_http_trace(&first, &request);
            let second = tracing::info_span!(target: TRACE_TARGET, "http", trace_id = tracing::field::Empty);
            continue_http_trace(&second, &HeaderMap::new());
            let stored = traceparent(&first).unwrap();
            assert_eq!(trace_id_of(&traceparent(&stored_span("notifier", stored.to_str().ok())).unwrap()), trace_id_of(&stored));
            let (first, second) = (trace_id_of(&traceparent(&first).unwrap()), trace_id_of(&traceparent(&second).unwrap()));
            assert_ne!(first, "00000000000000000000000000000000");
            assert_ne!(first, second);
        });
    }

    #[test]
    fn a_tracestate_past_the_w3c_bound_is_not_carried_on() {
        with_tracing(|| {
            let carried = |tracestate: &str| {
                let mut request = HeaderMap::new();
                request.insert("traceparent", HeaderValue::from_str(&format!("00-{TRACE_ID}-00f067aa0ba902b7-01")).unwrap());
                request.insert("tracestate", HeaderValue::from_str(tracestate).unwrap());
                let http = tracing::info_span!(target: TRACE_TARGET, "http", trace_id = tracing::field::Empty);
                continue_http_trace(&http, &request);
                propagation_fields(&http).into_iter().find(|(key, _)| key == "tracestate").map(|(_, value)| value.len())
            };
            assert_eq!(carried("vendor=value"), Some("vendor=value".len()), "a short one is carried");
            let members: Vec<String> = (0..32).map(|i| format!("v{i}={}", "x".repeat(200))).collect();
            assert_eq!(carried(&members.join(",")), None, "6 KiB of tracestate would go into every record of a batch");
        });
    }
}
