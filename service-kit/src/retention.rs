//! Retention: what every periodic sweep shares, for the tables that would otherwise only grow
//! (idempotency keys, rate-limit counters, sessions and tokens, the notifier's deliveries...).
//! Each owner of a schema says what is expired in its own module (`accounts::retention`,
//! `command_api::retention`, `notifier::retention`); this module runs the sweep.
//!
//! A sweep deletes in chunks of at most `--retention-chunk-rows` rows, each chunk its own short
//! statement (its own transaction), so no sweep holds row locks for long, writes one huge burst of
//! WAL or leaves the table bloated at once; the sweep goes on chunk after chunk until a chunk comes
//! back short. Deleting what is expired is idempotent, so every replica of a service may sweep;
//! a session-level advisory lock ([`SweepLock`]) just keeps two of them from doing the same work
//! at the same moment. The database being away fails one sweep, which is logged and tried again
//! at the next period; shutdown is looked at between chunks, so it waits for one short statement
//! at most.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use tokio_util::sync::CancellationToken;

/// How often and how much the sweeps delete; shared by every service that sweeps.
#[derive(clap::Args, Debug, Clone)]
pub struct RetentionArgs {
    /// Seconds between two retention sweeps (expired rows deleted; 0 turns the sweeps off).
    #[arg(long, env = "RETENTION_INTERVAL_SECS", default_value_t = 300)]
    pub retention_interval_secs: u64,
    /// Most rows one DELETE of a sweep removes; each chunk is a transaction of its own.
    #[arg(long, env = "RETENTION_CHUNK_ROWS", default_value_t = 5_000)]
    pub retention_chunk_rows: i64,
}

impl Default for RetentionArgs {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            args: RetentionArgs,
        }
        crate::default_config::<Defaults>().args
    }
}

/// Rows a sweep deleted, per table (schema-qualified), including tables where it deleted none.
pub type Swept = BTreeMap<&'static str, u64>;

/// The metric family counting deleted rows, labelled `table`.
pub const DELETED_ROWS: &str = "content_processor_retention_deleted_rows_total";

/// What one chunked DELETE of a sweep removes.
pub enum Chunk {
    /// Rows that expire by one timestamp column; most tables are this.
    Expiring(Expiring),
    /// A statement of its own, for rows whose expiry needs a join. It takes `$1`, the most rows
    /// to delete (bigint), and `$2`, the retention in seconds (float8), and must keep the rules
    /// [`Expiring`] keeps.
    Statement { table: &'static str, sql: &'static str },
}

/// A table whose rows expire `retention` after the time in one column. It is deleted by key,
/// re-checking the expiry on the row it deletes, so a row changed meanwhile is left for the
/// next sweep, and each chunk is picked `ORDER BY` the expiry column: that walks the expiry
/// index from its oldest end rather than the primary key.
pub struct Expiring {
    /// Schema-qualified, as counted in [`Swept`].
    pub table: &'static str,
    /// The primary key's columns, comma-separated.
    pub key: &'static str,
    /// The timestamp column a row expires from.
    pub since: &'static str,
    /// What a row must also be to go (`TRUE` when nothing more).
    pub also: &'static str,
}

impl Chunk {
    fn table(&self) -> &'static str {
        match self {
            Chunk::Expiring(expiring) => expiring.table,
            Chunk::Statement { table, .. } => table,
        }
    }

    fn sql(&self) -> String {
        match self {
            Chunk::Expiring(Expiring { table, key, since, also }) => format!(
                "DELETE FROM {table} WHERE ({key}) IN (
                     SELECT {key} FROM {table} WHERE {since} < now() - make_interval(secs => $2) AND ({also}) ORDER BY {since} LIMIT $1)
                 AND {since} < now() - make_interval(secs => $2) AND ({also})"
            ),
            Chunk::Statement { sql, .. } => (*sql).to_owned(),
        }
    }
}

/// Deletes `chunk` again and again until one run deletes fewer than `chunk_rows` rows (or
/// `shutdown`), counting what it deletes under its table in `swept` and the metric.
pub async fn delete_in_chunks(
    connection: &mut PgConnection,
    swept: &mut Swept,
    chunk: &Chunk,
    retention: Duration,
    chunk_rows: i64,
    shutdown: &CancellationToken,
) -> Result<(), sqlx::Error> {
    let chunk_rows = chunk_rows.max(1);
    let (table, statement) = (chunk.table(), chunk.sql());
    let total = swept.entry(table).or_default();
    while !shutdown.is_cancelled() {
        let deleted = sqlx::query(&statement).bind(chunk_rows).bind(retention.as_secs_f64()).execute(&mut *connection).await?.rows_affected();
        *total += deleted;
        count_deleted(table, deleted);
        if deleted < chunk_rows as u64 {
            break;
        }
    }
    Ok(())
}

/// Counts `deleted` rows of `table` in [`DELETED_ROWS`] (for sweeps that delete their own way).
pub fn count_deleted(table: &'static str, deleted: u64) {
    if deleted > 0 {
        metrics::counter!(DELETED_ROWS, "table" => table).increment(deleted);
    }
}

/// One replica's turn to sweep: a session-level advisory lock held on a connection of the pool.
/// Released by [`SweepLock::release`]; dropped without that (a sweep cut short by an error), the
/// connection is closed instead of going back to the pool, which ends the session and its lock.
pub struct SweepLock {
    connection: Option<PoolConnection<Postgres>>,
    key: i64,
}

impl SweepLock {
    /// The lock `key`, or `None` when another process holds it (and sweeps now).
    pub async fn try_acquire(pool: &PgPool, key: i64) -> Result<Option<SweepLock>, sqlx::Error> {
        let mut connection = pool.acquire().await?;
        let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut *connection).await?;
        Ok(acquired.then_some(SweepLock { connection: Some(connection), key }))
    }

    /// The connection holding the lock, for the sweep's statements.
    pub fn connection(&mut self) -> &mut PgConnection {
        self.connection.as_mut().expect("held until released")
    }

    /// Gives the lock up and the connection back to the pool (or closes it if the unlock fails).
    pub async fn release(mut self) {
        let Some(mut connection) = self.connection.take() else { return };
        if sqlx::query("SELECT pg_advisory_unlock($1)").bind(self.key).execute(&mut *connection).await.is_err() {
            drop(connection.detach());
        }
    }
}

impl Drop for SweepLock {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            // The session ends with the connection, and the lock with it.
            drop(connection.detach());
        }
    }
}

/// Runs `sweep` every `interval` until `shutdown` (the first one an interval after the start, so
/// a start is not slowed by it); 0 turns it off. A failed sweep (say, the database is away) is
/// logged and tried again at the next period. `sweep` answers `None` when another replica held
/// the lock.
pub async fn run_every<F, Fut>(what: &'static str, interval: Duration, shutdown: CancellationToken, mut sweep: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<Swept>, sqlx::Error>>,
{
    if interval.is_zero() {
        tracing::info!(what, "retention sweeps turned off (RETENTION_INTERVAL_SECS=0)");
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let started = std::time::Instant::now();
        match sweep().await {
            Ok(Some(swept)) => {
                let total: u64 = swept.values().sum();
                let elapsed_ms = started.elapsed().as_millis() as u64;
                if total > 0 {
                    tracing::info!(what, total, ?swept, elapsed_ms, "retention sweep deleted expired rows");
                } else {
                    tracing::debug!(what, elapsed_ms, "retention sweep found nothing expired");
                }
            }
            Ok(None) => tracing::debug!(what, "another replica is sweeping; skipped"),
            Err(error) => tracing::warn!(what, %error, "retention sweep failed; trying again next period"),
        }
    }
}
