//! Logging and tracing through `tracing`. `RUST_LOG` overrides the default log filter;
//! `LOG_FORMAT=json` switches to one JSON object per line for log collectors.
//!
//! Spans carry W3C trace context ([`crate::trace_context`]) whether or not anything exports
//! them: a trace id in the logs ties the components together on its own. With
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, the spans are
//! also exported over OTLP/HTTP with JSON bodies, in batches, off the request path.

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::{span_processor_with_async_runtime::BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::io::IsTerminal as _;

use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// The environment variables that turn OTLP export on (the OpenTelemetry SDK's own names).
const OTLP_ENDPOINT_VARIABLES: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// Keeps the span pipeline; [`Telemetry::shutdown`] sends what is still buffered.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports the spans not yet sent (when exporting), before the process ends.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// Installs logging and tracing for `service` (its name in exported spans). Call once, from
/// within the Tokio runtime (the exporter runs on it).
pub fn init(service: &'static str, default_filter: &str) -> anyhow::Result<Telemetry> {
    let provider = provider(service)?;
    let logs = if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        tracing_subscriber::fmt::layer().json().boxed()
    } else {
        tracing_subscriber::fmt::layer().with_ansi(std::io::stdout().is_terminal()).boxed()
    };
    // try_init: the one-process mode and tests may get here more than once.
    let _ = tracing_subscriber::registry().with(filter(default_filter)).with(logs).with(trace_layer_for(&provider)).try_init();
    // Before anything is counted: what is recorded before the recorder exists is dropped.
    crate::metrics::handle();
    Ok(Telemetry { provider })
}

/// For tests: logs go through the test harness's capture, shown only for failing tests; spans
/// carry trace context, exported nowhere.
pub fn init_for_tests(default_filter: &str) {
    let logs = tracing_subscriber::fmt::layer().with_test_writer();
    let _ = tracing_subscriber::registry().with(filter(default_filter)).with(logs).with(trace_layer()).try_init();
}

/// `RUST_LOG` (else `default_filter`), and always the spans that carry trace context: a quiet
/// log level must not break the trace between components. Those spans hold no events.
fn filter(default_filter: &str) -> EnvFilter {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let carriers = format!("{}=info", crate::trace_context::TRACE_TARGET);
    filter.add_directive(carriers.parse().expect("a constant, valid directive"))
}

/// The OpenTelemetry layer with a provider that exports nowhere: spans get trace ids only.
pub fn trace_layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    trace_layer_for(&SdkTracerProvider::builder().build())
}

/// Every span the filter lets through gets OpenTelemetry trace context (a span it does not see
/// would have none, and records published inside it would lose the trace).
///
/// A span carries its own fields only. The layer's extras (source file and line, thread, busy and
/// idle time, target) and its activating an OpenTelemetry context on every entry took 30 % of a
/// span's cost, on every request and record, and tell a trace nothing its fields do not:
/// nothing here reads the ambient context ([`crate::trace_context`] asks the span itself).
fn trace_layer_for<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("content-processor"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_context_activation(false)
}

fn provider(service: &'static str) -> anyhow::Result<SdkTracerProvider> {
    let builder = SdkTracerProvider::builder().with_resource(Resource::builder().with_service_name(service).build());
    if !OTLP_ENDPOINT_VARIABLES.iter().any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty())) {
        return Ok(builder.build());
    }
    // The exporter reads the endpoint (and headers, timeout) from the environment itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .build()
        .context("setting up OTLP span export (check OTEL_EXPORTER_OTLP_ENDPOINT)")?;
    let processor = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    Ok(builder.with_span_processor(processor).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_carry_trace_context_even_when_the_log_filter_is_quiet() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("warn").add_directive(format!("{}=info", crate::trace_context::TRACE_TARGET).parse().unwrap()))
            .with(tracing_subscriber::fmt::layer().with_test_writer())
            .with(trace_layer_for(&provider));
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!(target: crate::trace_context::TRACE_TARGET, "http", trace_id = tracing::field::Empty);
            crate::trace_context::continue_http_trace(&request, &Default::default());
            // A span of the log filter's, disabled here: records published in it take the
            // trace of the request's span, which is the current one.
            let quiet = tracing::info_span!("submission");
            assert!(quiet.is_disabled());
            let fields = request.in_scope(|| quiet.in_scope(|| crate::trace_context::propagation_fields(&tracing::Span::current())));
            assert!(!fields.is_empty());
        });
    }
}
