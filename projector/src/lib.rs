//! The read side's writer: folds the submission topic into PostgreSQL.
//!
//! Each batch of records becomes one transaction that updates `submissions`, appends to
//! `submission_events` and moves `projector_positions` forward, so the read model and the
//! positions it was built from can never disagree. On start the projector resumes from those
//! positions, not from Kafka consumer-group offsets. After each commit it sends a NOTIFY so
//! the query side can push changes at once. The read model comes in generations
//! ([`generations`]) so it can be rebuilt from the topic without downtime ([`rebuild`]).

pub mod config;
pub mod generations;
pub mod leader;
pub mod log_end;
pub mod rebuild;
mod store;
mod worker;

use kafka_kit::held_partitions::HeldPartitions;
use leader::LeaderLock;
use service_kit::health::ReadinessCheck;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use config::{Config, TopicResetPolicy};
pub use store::connect;
// Public for the test of the leader check alone (`tests/projector_replicas.rs`); only the
// worker begins batches.
#[doc(hidden)]
pub use store::{begin_batch, Begun};
pub use worker::{Projector, Stats, Target};

/// The group id of the projector's consumer. It assigns partitions itself and keeps its
/// positions in PostgreSQL, so it never joins the group; a broker's ACLs still name it.
pub const CONSUMER_GROUP: &str = "projector";

/// Runs a projector replica until `shutdown` is cancelled: it answers requests for the log's
/// end ([`log_end`]), and writes the live read model while it holds the replicas' leader lock,
/// waiting for the lock otherwise ([`leader`]). `held` reports the partitions it holds back.
pub async fn run(config: &Config, pool: &PgPool, held: &HeldPartitions, shutdown: &CancellationToken) -> anyhow::Result<()> {
    // Every replica answers, the waiting ones too: the writer may be busy catching up.
    tokio::spawn(log_end::answer_requests(config.kafka.clone(), pool.clone(), shutdown.clone()));
    write_while_leading(config, pool, held, shutdown).await
}

/// Takes the leader lock, writes until shutdown or until the lock's session ends, and then
/// waits for the lock again.
async fn write_while_leading(config: &Config, pool: &PgPool, held: &HeldPartitions, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let leading = metrics::gauge!("content_processor_projector_leader");
    leading.set(0.0);
    while let Some(mut lock) = LeaderLock::acquire(&config.database_url, shutdown).await {
        tracing::info!(session = lock.session(), "this projector replica writes the read model");
        leading.set(1.0);
        let projector = Projector::start_reporting_into(config, pool.clone(), Target::Live, held.clone()).await?.fenced_by(&lock);
        let stop = shutdown.child_token();
        let writing = projector.run(stop.clone());
        tokio::pin!(writing);
        let lost = tokio::select! {
            outcome = &mut writing => return outcome,
            lost = lock.lost() => lost,
        };
        leading.set(0.0);
        tracing::error!(error = %lost, "the leader lock's session ended; another replica may write now: stopping, then waiting for the lock");
        stop.cancel();
        writing.await?;
    }
    Ok(())
}

/// What `/readyz` checks for the projector: the database answers, and no partition is held at
/// a record only a newer build reads.
pub fn readiness_checks(pool: &PgPool, held: &HeldPartitions) -> Vec<ReadinessCheck> {
    vec![ReadinessCheck::database("database", pool.clone(), "SELECT 1"), held.readiness_check("projector")]
}
