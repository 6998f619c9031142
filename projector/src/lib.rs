//! The read side's writer: folds the submission topic into PostgreSQL.
//!
//! Each batch of records becomes one transaction that updates `submissions`, appends to
//! `submission_events` and moves `projector_positions` forward, so the read model and the
//! positions it was built from can never disagree. On start the projector resumes from those
//! positions, not from Kafka consumer-group offsets. After each commit it sends a NOTIFY so
//! the query side can push changes at once.

pub mod config;
mod store;
mod worker;

pub use config::Config;
pub use store::{connect, migrate, NOTIFY_CHANNEL};
pub use worker::{Projector, Stats};

use tokio_util::sync::CancellationToken;

/// Runs the projector until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = connect(&config.database_url).await?;
    migrate(&pool).await?;
    Projector::start(&config, pool).await?.run(shutdown).await
}
