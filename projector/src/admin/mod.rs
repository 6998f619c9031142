//! Admin endpoints, what the admin dashboard shows: `GET /admin/overview` (validator group,
//! queue depth per partition, submissions per status, throughput, dead letters, parked records,
//! rebuild), `GET /admin/dead-letters`, `GET /admin/records` (the topic's records, decoded),
//! `GET /admin/parked-records` (what the notifier could not store), and
//! `POST`/`GET /admin/rebuild`. They live in the projector because it is the component that
//! holds both the read model and a Kafka client. They show and change the whole system, so only
//! accounts with the admin role reach them (401 without credentials, 403 for other accounts).

mod error;
mod overview;
mod parked;
mod rebuild;
mod records;

use accounts::{Accounts, AccountsArgs};
use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use kafka_kit::inspect::Inspector;
use kafka_kit::KafkaSetupError;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::rebuild::Progress;
use crate::Config;

pub use error::{AdminError, AdminUnavailable};
pub use overview::{MinuteActivity, Overview, PartitionDepth, ValidatorGroup};
pub use parked::{ParkedRecord, ParkedRecords};
pub use records::{DeadLetterView, DeadLetters, RecordView, Records};

#[derive(Clone)]
pub struct AdminState {
    config: Config,
    pool: PgPool,
    accounts: Accounts,
    /// Describes the validator group and reads the topics.
    inspector: Inspector,
    progress: Progress,
    /// Cancels a running rebuild when the process shuts down.
    shutdown: CancellationToken,
    /// The rebuild started here, awaited by [`AdminState::wait_for_rebuild`].
    rebuilds: TaskTracker,
}

impl AdminState {
    pub fn new(config: Config, pool: PgPool, shutdown: CancellationToken) -> Result<AdminState, KafkaSetupError> {
        let accounts = Accounts::new(pool.clone(), AccountsArgs::default());
        let inspector = Inspector::new(&config.kafka, &config.validator_group_id)?;
        Ok(AdminState { config, pool, accounts, inspector, progress: Progress::default(), shutdown, rebuilds: TaskTracker::new() })
    }

    /// After shutdown: waits until a rebuild started here has given up its generation and its
    /// lock, so the process never exits half-way through abandoning it.
    pub async fn wait_for_rebuild(&self) {
        self.rebuilds.close();
        self.rebuilds.wait().await;
    }
}

impl FromRef<AdminState> for Accounts {
    fn from_ref(state: &AdminState) -> Accounts {
        state.accounts.clone()
    }
}

/// The OpenAPI description of the admin endpoints.
#[derive(utoipa::OpenApi)]
#[openapi(paths(overview::overview, records::dead_letters, records::records, parked::parked_records, rebuild::status, rebuild::start))]
pub struct AdminApi;

pub fn routes(state: AdminState) -> Router {
    Router::new()
        .route("/admin/overview", get(overview::overview))
        .route("/admin/dead-letters", get(records::dead_letters))
        .route("/admin/records", get(records::records))
        .route("/admin/parked-records", get(parked::parked_records))
        .route("/admin/rebuild", get(rebuild::status).post(rebuild::start))
        .with_state(state)
}
