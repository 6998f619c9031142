//! The write side: accepts submissions over HTTP and appends `SubmissionCreated` to Kafka.
//!
//! A submission is accepted (202) only once Kafka has durably acknowledged its event; if the
//! broker does not acknowledge within the publish timeout, the client gets a 503 and may retry.
//! This service holds no state of its own: the event log is the only record.

pub mod config;
pub mod error;
pub mod http;

use std::sync::Arc;

use axum::Router;
use service_kit::health::{self, ReadinessCheck};
use service_kit::kafka::EventPublisher;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::ApiError;

/// What request handlers share.
#[derive(Clone)]
pub struct AppState {
    pub publisher: EventPublisher,
    pub max_content_bytes: usize,
}

impl AppState {
    /// Connects to Kafka and makes sure the topic exists.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        config.kafka.ensure_topic().await?;
        Ok(AppState {
            publisher: EventPublisher::new(&config.kafka, config.publish_timeout())?,
            max_content_bytes: config.max_content_bytes,
        })
    }
}

/// The API routes (`/api/submissions`), without health routes or common layers.
pub fn router(state: AppState) -> Router {
    http::submissions::routes(Arc::new(state))
}

/// What `/readyz` checks for this service: the broker answers.
pub fn readiness_checks(state: &AppState) -> Vec<ReadinessCheck> {
    let publisher = state.publisher.clone();
    vec![ReadinessCheck::new("kafka", move || {
        let publisher = publisher.clone();
        async move { publisher.probe().await }
    })]
}

/// Runs the service as its own process until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let state = AppState::connect(&config).await?;
    let mut app = router(state.clone())
        .merge(health::routes(readiness_checks(&state)))
        .fallback(service_kit::http_error::not_found_fallback);
    if let Some(cors) = service_kit::http_server::cors(&config.cors_allowed_origins)? {
        app = app.layer(cors);
    }
    let (listener, addr) = service_kit::http_server::bind(config.listen).await?;
    tracing::info!(%addr, "command-api listening");
    service_kit::http_server::serve(listener, app, shutdown).await?;
    // Whatever the producer still holds was never acknowledged to a client, but deliver it anyway.
    state.publisher.flush(config.publish_timeout()).await;
    Ok(())
}
