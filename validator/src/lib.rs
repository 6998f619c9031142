//! The judge: consumes `SubmissionCreated`, emits `ProcessingStarted` and then the verdict.
//!
//! Instances share one consumer group, so they split the topic's partitions between them.
//! Offsets are committed only after the events a batch produced are acknowledged by Kafka; a
//! validator that dies in between re-judges those records after restart and re-emits the same
//! events with the same (derived) event ids, which the projector recognises as duplicates.

pub mod config;
mod judge;
mod worker;

pub use config::Config;
pub use worker::Validator;

use tokio_util::sync::CancellationToken;

/// Runs one validator instance until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let validator = Validator::start(&config).await?;
    if let Some(addr) = config.health_listen {
        let app = service_kit::health::routes(vec![validator.readiness_check()])
            .merge(service_kit::metrics::routes())
            .merge(service_kit::openapi::routes(service_kit::openapi::document("validator", [])))
            .fallback(service_kit::http_error::not_found_fallback);
        let (listener, addr) = service_kit::http_server::bind(addr).await?;
        tracing::info!(%addr, "validator health checks listening");
        // No browser calls a validator: no CORS.
        tokio::spawn(service_kit::http_server::serve(listener, app, None, shutdown.clone()));
    }
    validator.run(shutdown).await
}
