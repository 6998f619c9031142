//! Trace context in Kafka record headers: the `traceparent` (and `tracestate`) of the span that
//! publishes a record go with it, and the span that handles a consumed record continues that
//! trace ([`service_kit::trace_context`] does the rest).

use opentelemetry::propagation::Extractor;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use service_kit::trace_context::{continue_trace, propagation_fields, TRACE_TARGET};
use tracing::Span;
use uuid::Uuid;

/// The span for handling one consumed record in `component`: it continues the trace the
/// record's headers carry, or starts one when they carry none (a record older than tracing).
pub fn record_span(component: &'static str, message: &impl Message, submission_id: Uuid) -> Span {
    let span = tracing::info_span!(target: TRACE_TARGET, "record", component, %submission_id, trace_id = tracing::field::Empty);
    match message.headers() {
        Some(headers) => continue_trace(&span, &RecordHeaders(headers)),
        None => continue_trace(&span, &std::collections::HashMap::<String, String>::new()),
    }
    span
}

/// The `traceparent` (and `tracestate`, when there is one) of `span`, as Kafka record headers.
pub fn record_headers(span: &Span) -> OwnedHeaders {
    propagation_fields(span).iter().fold(OwnedHeaders::new(), |headers, (key, value)| headers.insert(Header { key, value: Some(value) }))
}

/// Reads a consumed record's headers as propagation fields.
struct RecordHeaders<'a, H: Headers>(&'a H);

impl<H: Headers> Extractor for RecordHeaders<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|header| header.key.eq_ignore_ascii_case(key)).and_then(|header| std::str::from_utf8(header.value?).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|header| header.key).collect()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};
    use rdkafka::message::OwnedMessage;
    use rdkafka::Timestamp;
    use service_kit::trace_context::{continue_http_trace, traceparent};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn trace_id_of(value: &HeaderValue) -> String {
        value.to_str().unwrap().split('-').nth(1).unwrap().to_owned()
    }

    #[test]
    fn a_request_trace_continues_into_record_headers_and_from_them() {
        let subscriber = tracing_subscriber::registry().with(service_kit::telemetry::trace_layer());
        tracing::subscriber::with_default(subscriber, || {
            let mut request = HeaderMap::new();
            request.insert("traceparent", HeaderValue::from_str(&format!("00-{TRACE_ID}-00f067aa0ba902b7-01")).unwrap());
            let http = tracing::info_span!(target: TRACE_TARGET, "http", trace_id = tracing::field::Empty);
            continue_http_trace(&http, &request);
            assert_eq!(trace_id_of(&traceparent(&http).unwrap()), TRACE_ID);

            let headers = record_headers(&http);
            let message = OwnedMessage::new(None, None, "topic".into(), Timestamp::NotAvailable, 0, 0, Some(headers));
            let consumed = record_span("validator", &message, Uuid::nil());
            let continued = traceparent(&consumed).unwrap();
            assert_eq!(trace_id_of(&continued), TRACE_ID);
            assert_ne!(continued, traceparent(&http).unwrap(), "a span of its own in the same trace");

            let without_headers = OwnedMessage::new(None, None, "topic".into(), Timestamp::NotAvailable, 0, 0, None);
            let started = traceparent(&record_span("projector", &without_headers, Uuid::nil())).unwrap();
            assert_ne!(trace_id_of(&started), TRACE_ID, "a record older than tracing starts a trace of its own");
        });
    }
}
