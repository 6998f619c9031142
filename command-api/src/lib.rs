//! The write side: accepts submissions over HTTP and appends `SubmissionCreated` to Kafka.
//!
//! A submission is accepted (202) only once Kafka has durably acknowledged its event; if the
//! broker does not acknowledge within the publish timeout, the client gets a 503 and may retry
//! (with the same `Idempotency-Key`, safely). The event log is the only record of submissions;
//! PostgreSQL holds who may submit (accounts), how much (rate limits) and idempotency keys;
//! [`retention`] deletes those that expired; [`erasures`] announces erased accounts on the log.

pub mod config;
pub mod erasures;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod resubmission;
pub mod retention;
pub mod submission_ids;

use accounts::Accounts;
use axum::extract::FromRef;
use axum::Router;
use kafka_kit::atomic_publisher::AtomicPublisher;
use kafka_kit::EventPublisher;
use service_kit::health::ReadinessCheck;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::ApiError;

/// What request handlers share.
#[derive(Clone)]
pub struct AppState {
    pub publisher: EventPublisher,
    /// Publishes a batch's events in one Kafka transaction.
    pub batches: AtomicPublisher,
    pub accounts: Accounts,
    /// The data keys content is sealed with.
    pub data_keys: std::sync::Arc<keyring::WritingKeys>,
    pub max_content_bytes: usize,
    pub max_batch_items: usize,
    pub max_batch_bytes: usize,
    /// New submissions' ids, which choose their partition.
    pub submission_ids: submission_ids::SubmissionIds,
}

impl FromRef<AppState> for Accounts {
    fn from_ref(state: &AppState) -> Accounts {
        state.accounts.clone()
    }
}

impl AppState {
    /// Connects to Kafka and makes sure the topic exists, and to PostgreSQL, migrating the
    /// schemas this service uses; sets up the batch producers in the background.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let partitions = config.kafka.ensure_topic().await?;
        let pool = service_kit::postgres::connect(&config.database_url, config.max_connections).await?;
        accounts::migrate(&pool).await?;
        idempotency::migrate(&pool).await?;
        let batches = AtomicPublisher::new(&config.kafka, config.publish_timeout(), config.batch_producers);
        tokio::spawn({
            let (warming, tidy) = (batches.clone(), batches.tidy());
            async move {
                warming.warm_up().await;
                // No handle kept: the tidying ends with the pool, or when it is finished.
                drop(warming);
                tidy.await
            }
        });
        Ok(AppState {
            publisher: EventPublisher::new(&config.kafka, config.publish_timeout())?,
            batches,
            data_keys: std::sync::Arc::new(keyring::WritingKeys::new(keyring::Keyring::from_args(&config.keyring)?)),
            accounts: Accounts::new(pool, config.accounts.clone()),
            max_content_bytes: config.max_content_bytes,
            max_batch_items: config.max_batch_items,
            max_batch_bytes: config.max_batch_bytes,
            submission_ids: submission_ids::SubmissionIds::new(partitions),
        })
    }
}

/// The OpenAPI description of [`router`]'s endpoints.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut document = http::submissions::SubmissionsApi::openapi();
    document.merge(http::batches::BatchesApi::openapi());
    document
}

/// The API routes (`/api/submissions`, `/api/batches`), without health routes or common layers.
pub fn router(state: AppState) -> Router {
    http::submissions::routes(state.clone()).merge(http::batches::routes(state))
}

/// What `/readyz` checks for this service: the broker and the database answer.
pub fn readiness_checks(state: &AppState) -> Vec<ReadinessCheck> {
    let publisher = state.publisher.clone();
    let pool = state.accounts.pool.clone();
    vec![
        ReadinessCheck::new("kafka", move || {
            let publisher = publisher.clone();
            async move { publisher.probe().await }
        }),
        ReadinessCheck::database("accounts", pool, "SELECT 1"),
    ]
}

/// Runs the service as its own process until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let state = AppState::connect(&config).await?;
    let document = service_kit::openapi::document("command-api", [openapi()]);
    let app = service_kit::http_server::service_app(router(state.clone()), document);
    let app = service_kit::http_server::mount_operations(app, readiness_checks(&state), config.internal_listen, &shutdown).await?;
    let cors = service_kit::http_server::cors(&config.cors_allowed_origins)?;
    let (listener, addr) = service_kit::http_server::bind(config.listen).await?;
    tracing::info!(%addr, "command-api listening");
    let sweeps = tokio::spawn(retention::run(state.accounts.pool.clone(), retention::Settings::new(&config), shutdown.clone()));
    let announcer = tokio::spawn(erasures::run(state.accounts.pool.clone(), state.publisher.clone(), shutdown.clone()));
    service_kit::http_server::serve(listener, app, cors, shutdown).await?;
    // It stops between two chunks, on the shutdown the server stopped on.
    let _ = sweeps.await;
    let _ = announcer.await;
    // Whatever the producer still holds was never acknowledged to a client, but deliver it anyway.
    state.batches.finish().await;
    state.publisher.flush(config.publish_timeout()).await;
    Ok(())
}
