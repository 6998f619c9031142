//! The SQL of accounts, sessions and tokens. Secrets arrive here already digested.

use chrono::{DateTime, Utc};
use serde::Serialize;
use service_kit::page::Page;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::mail::Purpose;
use crate::{AccountsError, Role};

/// An account as the API shows it (never its password hash).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Account {
    pub id: Uuid,
    pub email: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Whether its owner followed a link mailed to the address: nothing is mailed to it before.
    pub email_verified: bool,
}

const ACCOUNT_COLUMNS: &str = "id, email, role, created_at, email_verified_at IS NOT NULL AS email_verified";

/// Lower-cases and checks an email address: one `@` with something on both sides, no spaces or
/// control characters, at most 254 bytes (what SMTP carries).
pub fn normalize_email(email: &str) -> Result<String, AccountsError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if valid {
        Ok(email)
    } else {
        Err(AccountsError::InvalidInput("email must be an address like name@example.com".into()))
    }
}

/// Creates an account; `None` when the address has one.
pub async fn create_account(pool: &PgPool, email: &str, password_hash: &str, role: Role) -> Result<Option<Account>, AccountsError> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO accounts.accounts (id, email, password_hash, role) VALUES ($1, $2, $3, $4)
         ON CONFLICT (email) DO NOTHING RETURNING {ACCOUNT_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(email)
    .bind(password_hash)
    .bind(role.as_str())
    .fetch_optional(pool)
    .await?)
}

/// Makes `email` an admin with this password: a new account, or an existing one promoted
/// (its password replaced). For the `create-admin` command.
pub async fn upsert_admin(pool: &PgPool, email: &str, password_hash: &str) -> Result<Account, AccountsError> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO accounts.accounts (id, email, password_hash, role, email_verified_at) VALUES ($1, $2, $3, 'admin', now())
         ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash, role = 'admin',
             email_verified_at = COALESCE(accounts.email_verified_at, now())
         RETURNING {ACCOUNT_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(email)
    .bind(password_hash)
    .fetch_one(pool)
    .await?)
}

/// The account with `email` and its password hash.
pub async fn find_by_email(pool: &PgPool, email: &str) -> Result<Option<(Account, String)>, AccountsError> {
    with_password_hash(pool, "email", email).await
}

/// The account with `id` and its password hash.
pub async fn find_by_id(pool: &PgPool, id: Uuid) -> Result<Option<(Account, String)>, AccountsError> {
    with_password_hash(pool, "id", id).await
}

/// The account whose `column` is `value`, and its password hash.
async fn with_password_hash<T>(pool: &PgPool, column: &str, value: T) -> Result<Option<(Account, String)>, AccountsError>
where
    T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
{
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        account: Account,
        password_hash: String,
    }
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {ACCOUNT_COLUMNS}, password_hash FROM accounts.accounts WHERE {column} = $1"))
        .bind(value)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|row| (row.account, row.password_hash)))
}

pub async fn account(pool: &PgPool, id: Uuid) -> Result<Option<Account>, AccountsError> {
    Ok(sqlx::query_as(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts.accounts WHERE id = $1")).bind(id).fetch_optional(pool).await?)
}

/// Stores a session, unless the account's password is no longer `password_hash` (`false`);
/// expired ones are deleted on the way.
pub async fn create_session(pool: &PgPool, account_id: Uuid, password_hash: &str, session: NewSession<'_>) -> Result<bool, AccountsError> {
    sqlx::query("DELETE FROM accounts.sessions WHERE expires_at < now()").execute(pool).await?;
    // FOR SHARE waits for a change of password in flight, then sees its hash: the change's
    // ending of every session cannot miss this one.
    let created = sqlx::query(
        "INSERT INTO accounts.sessions (token_digest, account_id, csrf_token, expires_at)
         SELECT $1, id, $3, now() + $4 * interval '1 hour' FROM accounts.accounts WHERE id = $2 AND password_hash = $5 FOR SHARE",
    )
    .bind(session.token_digest)
    .bind(account_id)
    .bind(session.csrf_token)
    .bind(session.ttl_hours as f64)
    .bind(password_hash)
    .execute(pool)
    .await?;
    if created.rows_affected() == 0 {
        return Ok(false);
    }
    // An account keeps its newest sessions only: signing in in a loop does not grow its rows.
    sqlx::query(
        "DELETE FROM accounts.sessions WHERE account_id = $1 AND token_digest NOT IN
             (SELECT token_digest FROM accounts.sessions WHERE account_id = $1 ORDER BY created_at DESC, token_digest LIMIT $2)",
    )
    .bind(account_id)
    .bind(MAX_SESSIONS_PER_ACCOUNT)
    .execute(pool)
    .await?;
    Ok(true)
}

/// A session to start: the digest of its cookie's secret, its CSRF token, how long it lives.
pub struct NewSession<'a> {
    pub token_digest: &'a [u8],
    pub csrf_token: &'a str,
    pub ttl_hours: u32,
}

/// Sessions an account keeps; signing in once more ends the oldest.
pub const MAX_SESSIONS_PER_ACCOUNT: i64 = 20;
/// Live API tokens an account may hold (not revoked, not expired).
pub const MAX_TOKENS_PER_ACCOUNT: i64 = 100;

/// The account, role and CSRF token of a live session.
pub async fn session(pool: &PgPool, token_digest: &[u8]) -> Result<Option<(Uuid, Role, String)>, AccountsError> {
    let row: Option<(Uuid, String, String)> = sqlx::query_as(
        "SELECT a.id, a.role, s.csrf_token FROM accounts.sessions s JOIN accounts.accounts a ON a.id = s.account_id
         WHERE s.token_digest = $1 AND s.expires_at > now()",
    )
    .bind(token_digest)
    .fetch_optional(pool)
    .await?;
    row.map(|(id, role, csrf)| Ok((id, Role::try_from(role)?, csrf))).transpose()
}

pub async fn end_session(pool: &PgPool, token_digest: &[u8]) -> Result<(), AccountsError> {
    sqlx::query("DELETE FROM accounts.sessions WHERE token_digest = $1").bind(token_digest).execute(pool).await?;
    Ok(())
}

/// A personal API token as its owner sees it (never the token itself, which is not stored).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

const TOKEN_COLUMNS: &str = "id, name, created_at, expires_at, revoked_at, last_used_at";

pub async fn create_token(
    pool: &PgPool,
    account_id: Uuid,
    name: &str,
    token_digest: &[u8],
    expires_in_days: Option<u32>,
) -> Result<TokenView, AccountsError> {
    // Counted under the account's row lock, so concurrent requests cannot both take the last.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT 1 FROM accounts.accounts WHERE id = $1 FOR UPDATE").bind(account_id).execute(&mut *tx).await?;
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts.api_tokens
         WHERE account_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(account_id)
    .fetch_one(&mut *tx)
    .await?;
    if live >= MAX_TOKENS_PER_ACCOUNT {
        return Err(AccountsError::TooManyTokens(MAX_TOKENS_PER_ACCOUNT));
    }
    let token = sqlx::query_as(&format!(
        "INSERT INTO accounts.api_tokens (id, account_id, name, token_digest, expires_at)
         VALUES ($1, $2, $3, $4, now() + $5 * interval '1 day')
         RETURNING {TOKEN_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(account_id)
    .bind(name)
    .bind(token_digest)
    .bind(expires_in_days.map(f64::from))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(token)
}

/// A page of `account_id`'s tokens, newest first, starting after the token `before`.
pub async fn list_tokens(pool: &PgPool, account_id: Uuid, limit: i64, before: Option<Uuid>) -> Result<Page<TokenView>, AccountsError> {
    // Ids are UUIDv7, ordered by when they were made: newest first is by id.
    let rows = sqlx::query_as(&format!(
        "SELECT {TOKEN_COLUMNS} FROM accounts.api_tokens WHERE account_id = $1 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    ))
    .bind(account_id)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::of(rows, limit, |last: &TokenView| Some(last.id.to_string())))
}

/// Revokes one of `account_id`'s tokens; `false` when it has no such token.
pub async fn revoke_token(pool: &PgPool, account_id: Uuid, id: Uuid) -> Result<bool, AccountsError> {
    let revoked = sqlx::query("UPDATE accounts.api_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 AND account_id = $2")
        .bind(id)
        .bind(account_id)
        .execute(pool)
        .await?;
    Ok(revoked.rows_affected() == 1)
}

/// Whom a live API token belongs to.
#[derive(Debug, Clone, Copy)]
pub struct TokenOwner {
    pub account_id: Uuid,
    pub role: Role,
    pub token_id: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The owner of the live (unrevoked, unexpired) token with `token_digest`. Its use is noted in
/// the same statement, at most once a minute: a script sending many requests must not turn each
/// of them into a write on one row. `pool` should be the [`crate::bookkeeping_pool`], so that
/// noting it does not wait for the disk.
pub async fn token_owner(pool: &PgPool, token_digest: &[u8]) -> Result<Option<TokenOwner>, AccountsError> {
    // A data-modifying WITH runs whether or not the outer query reads it: one round trip.
    let row: Option<(Uuid, String, Uuid, Option<DateTime<Utc>>)> = sqlx::query_as(
        "WITH live AS (
             SELECT a.id AS account, a.role, t.id AS token, t.expires_at, t.last_used_at
             FROM accounts.api_tokens t JOIN accounts.accounts a ON a.id = t.account_id
             WHERE t.token_digest = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
         ), noted AS (
             UPDATE accounts.api_tokens SET last_used_at = now()
             WHERE id = (SELECT token FROM live WHERE last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
         )
         SELECT account, role, token, expires_at FROM live",
    )
    .bind(token_digest)
    .fetch_optional(pool)
    .await?;
    row.map(|(account_id, role, token_id, expires_at)| Ok(TokenOwner { account_id, role: Role::try_from(role)?, token_id, expires_at })).transpose()
}

/// Records a link mailed to `account_id` for `purpose`, by its token's digest.
pub async fn create_email_token(pool: &PgPool, account_id: Uuid, purpose: Purpose, token_digest: &[u8]) -> Result<(), AccountsError> {
    sqlx::query(
        "INSERT INTO accounts.email_tokens (token_digest, account_id, purpose, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(hours => $4))",
    )
    .bind(token_digest)
    .bind(account_id)
    .bind(purpose.as_str())
    .bind(purpose.lifetime_hours())
    .execute(pool)
    .await?;
    Ok(())
}

/// Uses up the link whose token has `token_digest`: the account it opens, or `None` when there
/// is no such link for `purpose`, or it expired. A link works once, even when expired.
pub async fn consume_email_token(connection: &mut PgConnection, purpose: Purpose, token_digest: &[u8]) -> Result<Option<Uuid>, AccountsError> {
    let used: Option<(Uuid, bool)> =
        sqlx::query_as("DELETE FROM accounts.email_tokens WHERE token_digest = $1 AND purpose = $2 RETURNING account_id, expires_at > now()")
            .bind(token_digest)
            .bind(purpose.as_str())
            .fetch_optional(&mut *connection)
            .await?;
    Ok(used.and_then(|(account_id, live)| live.then_some(account_id)))
}

/// Whether a link for `purpose` with `token_digest` exists and has not expired.
pub async fn email_token_is_live(pool: &PgPool, purpose: Purpose, token_digest: &[u8]) -> Result<bool, AccountsError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM accounts.email_tokens WHERE token_digest = $1 AND purpose = $2 AND expires_at > now())")
        .bind(token_digest)
        .bind(purpose.as_str())
        .fetch_one(pool)
        .await?)
}

/// Whether the account's address is verified.
pub async fn is_verified(connection: &mut PgConnection, account_id: Uuid) -> Result<bool, AccountsError> {
    let verified: Option<bool> = sqlx::query_scalar("SELECT email_verified_at IS NOT NULL FROM accounts.accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(&mut *connection)
        .await?;
    Ok(verified.unwrap_or(false))
}

/// Removes the account's webhook endpoints, when the notifier's tables exist (they are the
/// notifier's; an account claimed by its address's owner must not keep sending there).
pub async fn remove_webhook_endpoints(connection: &mut PgConnection, account_id: Uuid) -> Result<(), AccountsError> {
    let notifier_present: bool =
        sqlx::query_scalar("SELECT to_regclass('notifier.webhook_endpoints') IS NOT NULL").fetch_one(&mut *connection).await?;
    if notifier_present {
        sqlx::query("UPDATE notifier.webhook_endpoints SET deleted_at = now() WHERE account_id = $1 AND deleted_at IS NULL")
            .bind(account_id)
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

/// Marks the account's address verified.
pub async fn mark_verified(connection: &mut PgConnection, account_id: Uuid) -> Result<(), AccountsError> {
    sqlx::query("UPDATE accounts.accounts SET email_verified_at = COALESCE(email_verified_at, now()) WHERE id = $1")
        .bind(account_id)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// A new password for the account; every one of its sessions but `keep` ends, every reset link
/// still out dies, and, with `revoke_tokens`, every API token.
pub async fn replace_password(
    connection: &mut PgConnection,
    account_id: Uuid,
    password_hash: &str,
    keep: Option<&[u8]>,
    revoke_tokens: bool,
) -> Result<(), AccountsError> {
    sqlx::query("UPDATE accounts.accounts SET password_hash = $2 WHERE id = $1")
        .bind(account_id)
        .bind(password_hash)
        .execute(&mut *connection)
        .await?;
    end_sessions(&mut *connection, account_id, keep).await?;
    // A link asked for before, perhaps by someone else, must not reset it again.
    sqlx::query("DELETE FROM accounts.email_tokens WHERE account_id = $1 AND purpose = 'reset'").bind(account_id).execute(&mut *connection).await?;
    if revoke_tokens {
        sqlx::query("UPDATE accounts.api_tokens SET revoked_at = now() WHERE account_id = $1 AND revoked_at IS NULL")
            .bind(account_id)
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

/// Ends every session of the account but `keep`.
pub async fn end_sessions(connection: &mut PgConnection, account_id: Uuid, keep: Option<&[u8]>) -> Result<u64, AccountsError> {
    let ended = sqlx::query("DELETE FROM accounts.sessions WHERE account_id = $1 AND token_digest IS DISTINCT FROM $2")
        .bind(account_id)
        .bind(keep)
        .execute(&mut *connection)
        .await?;
    Ok(ended.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(normalize_email("  Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in ["", "ada", "@example.com", "ada@", "a da@example.com", "a@b@c", "ada\u{0}@x.y"] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_email(&format!("{}@x.y", "a".repeat(260))).is_err());
    }
}
