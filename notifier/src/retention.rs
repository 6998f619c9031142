//! Retention of the notifier's schema: deletes, every `--retention-interval-secs`, what can no
//! longer be shown or matter. Before this every table here only grew.
//!
//! - **Deliveries** finished (delivered or failed) more than `--notification-retention-days` ago
//!   (default 30), their attempts first, then the deliveries; then **notifications** older than
//!   that which no delivery refers to any more (also those that never had one: every channel
//!   off). A pending delivery keeps its notification, however old. `GET /api/deliveries` lists
//!   what is kept.
//! - **Parked records** parked more than `--notification-retention-days` ago: they are there for
//!   an operator to look at, and the log still holds each record.
//! - **Awaited verdicts** whose submission was created more than `--notification-retention-days`
//!   ago. Their verdict is normally read within seconds; one that never comes (a duplicate
//!   `SubmissionCreated` read again, say) left its row for ever. Not `--max-age-secs`: that age is
//!   measured from when a verdict was judged, so validators a day behind still notify verdicts
//!   judged now, and must still find who to tell.
//! - **Batch verdicts and batch progress** of a batch once nothing awaits any of its items and
//!   its last verdict was counted more than `max(--max-age-secs, 24 h)` ago. These rows exist so
//!   that a verdict counted once is not counted again: a verdict reaches the count only by taking
//!   its item's awaited row, and a re-read creates that row again before it. Once they are gone, a
//!   re-read counts the batch from zero, and the batch could complete a second time. That is
//!   harmless past this age, because a second `batch.completed` needs one of:
//!   1. The same records read again (a crash before the offset commit, a reset group): their
//!      verdicts carry the time they were judged, which is before the batch was counted, so
//!      older than `--max-age-secs`, and the watcher drops a notification that old before
//!      recording it.
//!   2. New copies of the batch's events: only a retry of the batch under its `Idempotency-Key`
//!      republishes them (the validator then judges the copies anew, with fresh times), and keys
//!      live 24 hours from before the batch was counted (`command_api::idempotency::KEY_LIFETIME`).
//!
//!   Even then the notification's id is derived from the batch, so while the notification
//!   itself is kept (`--notification-retention-days`, 30 days) the second completion records
//!   nothing. A batch with an item still awaited is kept whatever its age, or its count would
//!   restart and it would never complete; that item's awaited row expires after
//!   `--notification-retention-days`, and the batch's rows one sweep later (this sweep deletes awaited rows
//!   first).
//!
//! Every replica sweeps; the advisory lock makes them take turns.

use std::time::Duration;

use service_kit::retention::{delete_in_chunks, Chunk, Expiring, RetentionArgs, SweepLock, Swept};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The advisory lock the notifiers' sweeps take turns by.
const SWEEP_LOCK: i64 = 0x636f_6e74_7265_7402;

/// The lifetime of an `Idempotency-Key` (the command API's): how long new copies of a batch's
/// events can still be published.
const KEY_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What the notifier's sweep deletes, and how often.
#[derive(Debug, Clone)]
pub struct Settings {
    pub interval: Duration,
    pub chunk_rows: i64,
    /// Finished deliveries, their notifications and parked records older than this.
    pub notification_retention: Duration,
    /// `--max-age-secs`: verdicts older than this are not notified.
    pub max_age: Duration,
}

impl Settings {
    pub fn new(config: &crate::Config) -> Settings {
        Settings::from_args(&config.retention, config.notification_retention_days, config.max_age_secs)
    }

    pub fn from_args(retention: &RetentionArgs, notification_retention_days: u32, max_age_secs: u64) -> Settings {
        Settings {
            interval: Duration::from_secs(retention.retention_interval_secs),
            chunk_rows: retention.retention_chunk_rows,
            notification_retention: Duration::from_secs(u64::from(notification_retention_days) * 86_400),
            max_age: Duration::from_secs(max_age_secs),
        }
    }

    /// How long a batch's verdict rows are kept after its last count (see the module's doc).
    pub fn batch_retention(&self) -> Duration {
        self.max_age.max(KEY_LIFETIME)
    }
}

/// One whole sweep now: what it deleted per table, or `None` when another replica was sweeping.
pub async fn sweep_once(pool: &PgPool, settings: &Settings) -> Result<Option<Swept>, sqlx::Error> {
    sweep(pool, settings, &CancellationToken::new()).await
}

/// The chunks of a sweep, in order, and which retention each uses.
const CHUNKS: [(Chunk, Retention); 7] = [
    (
        Chunk::Statement {
            table: "notifier.delivery_attempts",
            sql: "DELETE FROM notifier.delivery_attempts WHERE (delivery_id, attempt) IN (
                 SELECT a.delivery_id, a.attempt FROM notifier.deliveries d JOIN notifier.delivery_attempts a ON a.delivery_id = d.id
                 WHERE d.state IN ('delivered', 'failed') AND d.finished_at < now() - make_interval(secs => $2) ORDER BY d.finished_at LIMIT $1)",
        },
        Retention::Notifications,
    ),
    (
        Chunk::Expiring(Expiring { table: "notifier.deliveries", key: "id", since: "finished_at", also: "state IN ('delivered', 'failed')" }),
        Retention::Notifications,
    ),
    (
        Chunk::Statement {
            table: "notifier.notifications",
            sql: "DELETE FROM notifier.notifications n WHERE id IN (
                 SELECT o.id FROM notifier.notifications o WHERE o.created_at < now() - make_interval(secs => $2)
                 AND NOT EXISTS (SELECT 1 FROM notifier.deliveries d WHERE d.notification_id = o.id) ORDER BY o.created_at LIMIT $1)
             AND NOT EXISTS (SELECT 1 FROM notifier.deliveries d WHERE d.notification_id = n.id)",
        },
        Retention::Notifications,
    ),
    (
        Chunk::Expiring(Expiring { table: "notifier.parked_records", key: "kafka_partition, kafka_offset", since: "parked_at", also: "TRUE" }),
        Retention::Notifications,
    ),
    (
        Chunk::Expiring(Expiring { table: "notifier.awaited_verdicts", key: "submission_id", since: "created_at", also: "TRUE" }),
        Retention::Notifications,
    ),
    (
        Chunk::Statement {
            table: "notifier.batch_verdicts",
            sql: "DELETE FROM notifier.batch_verdicts WHERE (batch_id, submission_id) IN (
                 SELECT v.batch_id, v.submission_id FROM notifier.batch_progress p JOIN notifier.batch_verdicts v ON v.batch_id = p.batch_id
                 WHERE p.counted_at < now() - make_interval(secs => $2)
                 AND NOT EXISTS (SELECT 1 FROM notifier.awaited_verdicts a WHERE a.batch_id = p.batch_id) ORDER BY p.counted_at LIMIT $1)",
        },
        Retention::Batches,
    ),
    (
        Chunk::Statement {
            table: "notifier.batch_progress",
            sql: "DELETE FROM notifier.batch_progress WHERE batch_id IN (
                 SELECT p.batch_id FROM notifier.batch_progress p WHERE p.counted_at < now() - make_interval(secs => $2)
                 AND NOT EXISTS (SELECT 1 FROM notifier.awaited_verdicts a WHERE a.batch_id = p.batch_id)
                 AND NOT EXISTS (SELECT 1 FROM notifier.batch_verdicts v WHERE v.batch_id = p.batch_id) ORDER BY p.counted_at LIMIT $1)
             AND counted_at < now() - make_interval(secs => $2)",
        },
        Retention::Batches,
    ),
];

#[derive(Clone, Copy)]
enum Retention {
    Notifications,
    Batches,
}

async fn sweep(pool: &PgPool, settings: &Settings, shutdown: &CancellationToken) -> Result<Option<Swept>, sqlx::Error> {
    let Some(mut lock) = SweepLock::try_acquire(pool, SWEEP_LOCK).await? else { return Ok(None) };
    let mut swept = Swept::new();
    for (chunk, retention) in &CHUNKS {
        let retention = match retention {
            Retention::Notifications => settings.notification_retention,
            Retention::Batches => settings.batch_retention(),
        };
        delete_in_chunks(lock.connection(), &mut swept, chunk, retention, settings.chunk_rows, shutdown).await?;
    }
    lock.release().await;
    Ok(Some(swept))
}

/// Sweeps every `settings.interval` until `shutdown`.
pub async fn run(pool: PgPool, settings: Settings, shutdown: CancellationToken) {
    let interval = settings.interval;
    service_kit::retention::run_every("notifier", interval, shutdown.clone(), || sweep(&pool, &settings, &shutdown)).await
}
