//! The operations API, what the admin dashboard shows: `GET /admin/overview` (validator group,
//! queue depth per partition, submissions per status, throughput, dead letters, parked records,
//! rebuild), `GET /admin/dead-letters`, `GET /admin/records` (the topic's records, decoded),
//! `GET /admin/parked-records` (what the notifier could not store), and
//! `POST`/`GET /admin/rebuild`. They show and change the whole system, so only accounts with the
//! admin role reach them (401 without credentials, 403 for other accounts).
//!
//! The projector's process serves them ([`run`], the `projector` role), as it holds both the read
//! model and a Kafka client; they are a crate of their own so that the writer links no HTTP and
//! no accounts.

mod error;
mod overview;
mod parked;
mod rebuild;
mod records;

mod config;

use accounts::{Accounts, AccountsArgs};
use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use kafka_kit::held_partitions::HeldPartitions;
use kafka_kit::inspect::Inspector;
use kafka_kit::KafkaSetupError;
use projector::rebuild::Progress;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

pub use error::{AdminError, AdminUnavailable};
pub use overview::{MinuteActivity, Overview, PartitionDepth, ValidatorGroup};
pub use parked::{ParkedRecord, ParkedRecords};
pub use records::{DeadLetterView, DeadLetters, RecordView, Records};

#[derive(Clone)]
pub struct AdminState {
    /// The projector's settings, which a rebuild started here runs with.
    config: projector::Config,
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
    /// The state of the endpoints over `pool`, showing the validators of `validator_group_id`.
    pub fn new(
        config: projector::Config,
        validator_group_id: &str,
        pool: PgPool,
        shutdown: CancellationToken,
    ) -> Result<AdminState, KafkaSetupError> {
        let accounts = Accounts::new(pool.clone(), AccountsArgs::default());
        let inspector = Inspector::new(&config.kafka, validator_group_id)?;
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

/// Runs the `projector` role until `shutdown`: a projector replica ([`projector::run`]), with
/// these endpoints on `--admin-listen` when set, and its health checks and metrics on
/// `--internal-listen` (on the admin listener when unset).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = projector::connect(&config.projector.database_url).await?;
    projector::generations::prepare(&pool).await?;
    // The endpoints authenticate against the accounts.
    accounts::migrate(&pool).await?;
    let admin = AdminState::new(config.projector.clone(), &config.validator_group_id, pool.clone(), shutdown.clone())?;
    let held = HeldPartitions::default();
    let document = service_kit::openapi::document("projector", [<AdminApi as utoipa::OpenApi>::openapi()]);
    let app = service_kit::http_server::service_app(routes(admin.clone()), document);
    // The internal listener serves even when the admin endpoints are not served.
    let checks = projector::readiness_checks(&pool, &held);
    let app = service_kit::http_server::mount_operations(app, checks, config.internal_listen, &shutdown).await?;
    if let Some(addr) = config.admin_listen {
        let cors = service_kit::http_server::cors(&config.cors_allowed_origins)?;
        let (listener, addr) = service_kit::http_server::bind(addr).await?;
        tracing::info!(%addr, "projector admin listening");
        tokio::spawn(service_kit::http_server::serve(listener, app, cors, shutdown.clone()));
    }
    let outcome = projector::run(&config.projector, &pool, &held, &shutdown).await;
    admin.wait_for_rebuild().await;
    outcome
}
