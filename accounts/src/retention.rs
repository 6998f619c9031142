//! Retention of the `accounts` schema: deletes rate-limit counters whose window ended, sessions
//! and emailed links that expired, and API tokens expired or revoked more than `--token-retention-days` ago. The
//! command API runs it (`command_api::retention` sweeps its idempotency keys in the same turn).
//!
//! - A counter (`rate_limits`) whose window ended counts nothing: the next request starts a new
//!   window in its row as if the row were missing. Without this, every email ever typed into
//!   sign-in and every client address kept a row for ever. The window of a row is not stored, so
//!   a row goes once the longest window this process knows (submissions or sign-in) has passed
//!   since it started; replicas configured with a longer window should not share the database.
//! - A session past `expires_at` is refused on every request; signing in also deletes them, but
//!   only when someone signs in. An emailed link (`email_tokens`) past its expiry opens nothing.
//! - A token expired or revoked is refused too; it stays listed (as expired or revoked, so its
//!   owner sees what happened to it) for the retention, then goes. Deleting tokens fires the
//!   statement trigger that makes every replica forget its cached tokens, so the sweep looks for
//!   such tokens first and deletes only when there are some.

use std::time::Duration;

use service_kit::retention::{delete_in_chunks, Chunk, Expiring, RetentionArgs, Swept};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::AccountsArgs;

/// What the accounts sweep deletes, and in what chunks.
#[derive(Debug, Clone)]
pub struct Settings {
    pub chunk_rows: i64,
    /// Rate-limit counters whose window started longer ago than this.
    pub rate_limit_window: Duration,
    /// Tokens expired or revoked longer ago than this.
    pub token_retention: Duration,
}

impl Settings {
    pub fn new(accounts: &AccountsArgs, retention: &RetentionArgs, token_retention_days: u32) -> Settings {
        let longest_window = accounts.submission_rate_window_secs.max(accounts.sign_in_window_secs);
        Settings {
            chunk_rows: retention.retention_chunk_rows,
            rate_limit_window: Duration::from_secs(longest_window.into()),
            token_retention: Duration::from_secs(u64::from(token_retention_days) * 86_400),
        }
    }
}

/// Deletes what is expired in `accounts`, on `connection` (which holds the sweep's lock).
pub async fn sweep(connection: &mut PgConnection, settings: &Settings, swept: &mut Swept, shutdown: &CancellationToken) -> Result<(), sqlx::Error> {
    let chunk = settings.chunk_rows;
    let expiring = [
        (Expiring { table: "accounts.rate_limits", key: "key", since: "window_start", also: "TRUE" }, settings.rate_limit_window),
        (Expiring { table: "accounts.sessions", key: "token_digest", since: "expires_at", also: "TRUE" }, Duration::ZERO),
        (Expiring { table: "accounts.email_tokens", key: "token_digest", since: "expires_at", also: "TRUE" }, Duration::ZERO),
    ];
    for (expiring, retention) in expiring {
        delete_in_chunks(connection, swept, &Chunk::Expiring(expiring), retention, chunk, shutdown).await?;
    }
    // Not through `delete_in_chunks`: an empty DELETE would still fire the statement trigger
    // (accounts_credentials_changed), flushing every replica's token cache at every sweep.
    let tokens = swept.entry("accounts.api_tokens").or_default();
    while !shutdown.is_cancelled() {
        let expired: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM accounts.api_tokens WHERE expires_at < now() - make_interval(secs => $2)
             UNION SELECT id FROM accounts.api_tokens WHERE revoked_at < now() - make_interval(secs => $2)
             LIMIT $1",
        )
        .bind(chunk.max(1))
        .bind(settings.token_retention.as_secs_f64())
        .fetch_all(&mut *connection)
        .await?;
        if expired.is_empty() {
            break;
        }
        let deleted = sqlx::query(
            "DELETE FROM accounts.api_tokens WHERE id = ANY($1)
             AND (expires_at < now() - make_interval(secs => $2) OR revoked_at < now() - make_interval(secs => $2))",
        )
        .bind(&expired)
        .bind(settings.token_retention.as_secs_f64())
        .execute(&mut *connection)
        .await?
        .rows_affected();
        *tokens += deleted;
        service_kit::retention::count_deleted("accounts.api_tokens", deleted);
        if (expired.len() as i64) < chunk.max(1) {
            break;
        }
    }
    Ok(())
}
