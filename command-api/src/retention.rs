//! Retention on the command API's side: deletes idempotency keys older than their documented
//! lifetime (24 hours) of every account, and what `accounts::retention` finds expired in the
//! accounts schema, every `--retention-interval-secs`. Before this, a key was deleted only when
//! its own account claimed a new one ([`crate::idempotency::claim`]), so the keys of an account
//! that stopped submitting stayed for ever; rate-limit counters and tokens were never deleted.
//!
//! A key past 24 hours is one a retry no longer finds anyway (`claim` deletes its account's
//! expired keys before looking), so deleting it changes no answer. Every replica sweeps; the
//! advisory lock makes them take turns, and the deletes are idempotent if they did not.

use std::time::Duration;

use service_kit::retention::{delete_in_chunks, Chunk, Expiring, RetentionArgs, SweepLock, Swept};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The advisory lock the command APIs' sweeps take turns by.
const SWEEP_LOCK: i64 = 0x636f_6e74_7265_7401;

/// What the sweep deletes, and how often.
#[derive(Debug, Clone)]
pub struct Settings {
    pub interval: Duration,
    pub chunk_rows: i64,
    pub accounts: accounts::retention::Settings,
}

impl Settings {
    pub fn new(config: &crate::Config) -> Settings {
        Settings::from_args(&config.accounts, &config.retention, config.token_retention_days)
    }

    pub fn from_args(accounts: &accounts::AccountsArgs, retention: &RetentionArgs, token_retention_days: u32) -> Settings {
        Settings {
            interval: Duration::from_secs(retention.retention_interval_secs),
            chunk_rows: retention.retention_chunk_rows,
            accounts: accounts::retention::Settings::new(accounts, retention, token_retention_days),
        }
    }
}

/// One whole sweep now: what it deleted per table, or `None` when another replica was sweeping.
pub async fn sweep_once(pool: &PgPool, settings: &Settings) -> Result<Option<Swept>, sqlx::Error> {
    sweep(pool, settings, &CancellationToken::new()).await
}

async fn sweep(pool: &PgPool, settings: &Settings, shutdown: &CancellationToken) -> Result<Option<Swept>, sqlx::Error> {
    let Some(mut lock) = SweepLock::try_acquire(pool, SWEEP_LOCK).await? else { return Ok(None) };
    let mut swept = Swept::new();
    let keys = Chunk::Expiring(Expiring { table: "commands.idempotency_keys", key: "account_id, key", since: "created_at", also: "TRUE" });
    delete_in_chunks(lock.connection(), &mut swept, &keys, crate::idempotency::KEY_LIFETIME, settings.chunk_rows, shutdown).await?;
    accounts::retention::sweep(lock.connection(), &settings.accounts, &mut swept, shutdown).await?;
    lock.release().await;
    Ok(Some(swept))
}

/// Sweeps every `settings.interval` until `shutdown`.
pub async fn run(pool: PgPool, settings: Settings, shutdown: CancellationToken) {
    let interval = settings.interval;
    service_kit::retention::run_every("command-api", interval, shutdown.clone(), || sweep(&pool, &settings, &shutdown)).await
}
