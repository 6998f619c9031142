//! Accounts: who a request comes from, and what it may do.
//!
//! Accounts, browser sessions, personal API tokens and rate-limit counters live in PostgreSQL,
//! in schema `accounts`, next to the read model but not part of it: they are not facts of the
//! event log (a rebuild must never touch them) and every API replica must see the same ones. A
//! submission's owner, in contrast, is in its `SubmissionCreated` event, so the read model stays
//! a pure fold of the log.
//!
//! - [`Caller`] is the extractor every protected handler takes: a bearer token or a session
//!   cookie, checked against the database, with CSRF checked for cookie requests that change
//!   something. [`Admin`] additionally requires the admin role. Token owners are cached
//!   ([`token_cache`]), and forgotten on every credential change.
//! - [`http::routes`] serves sign-up, sign-in, sign-out, password change and the token
//!   endpoints, and the links mailed to an address ([`mail`]): verifying it, resetting a
//!   forgotten password.
//! - [`rate_limit::RateLimiter`] counts in the database, so a limit holds across replicas.
//! - [`retention::sweep`] deletes counters, sessions and tokens that can no longer matter.

mod caller;
pub mod config;
pub mod error;
pub mod http;
pub mod mail;
pub mod password;
pub mod rate_limit;
pub mod retention;
pub mod secret;
pub mod store;
pub mod token_cache;

use std::sync::Arc;

use sqlx::migrate::Migrator;
use sqlx::PgPool;

pub use caller::{Admin, Caller, Credential, Role, CSRF_HEADER, SECURE_SESSION_COOKIE, SESSION_COOKIE};
pub use config::AccountsArgs;
pub use error::AccountsError;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Creates or updates the `accounts` schema. Every component that authenticates calls it at
/// start; concurrent calls are serialised by the migrator's lock.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    service_kit::postgres::migrate_in_schema(pool, "accounts", &MIGRATOR).await
}

/// Creates the admin `email` with `password`, or makes an existing account an admin with that
/// password: how the first admin comes to be (`content-processor create-admin`).
pub async fn create_admin(pool: &PgPool, email: &str, password: String) -> Result<store::Account, AccountsError> {
    migrate(pool).await?;
    let email = store::normalize_email(email)?;
    password::check_new(&password)?;
    let hash = password::hash(password).await?;
    store::upsert_admin(pool, &email, &hash).await
}

/// A new personal API token of `account_id`, named `name`, that never expires.
pub async fn issue_token(pool: &PgPool, account_id: uuid::Uuid, name: &str) -> Result<String, AccountsError> {
    let token = secret::new_api_token();
    store::create_token(pool, account_id, name, &secret::digest(&token), None).await?;
    Ok(token)
}

/// What handlers need to authenticate callers and serve the account endpoints.
#[derive(Clone)]
pub struct Accounts {
    pub pool: PgPool,
    /// See [`bookkeeping_pool`]: token lookups and the rate limiter's counters.
    bookkeeping: PgPool,
    pub settings: Arc<AccountsArgs>,
    pub limiter: rate_limit::RateLimiter,
    tokens: token_cache::TokenCache,
    /// How links are mailed to owners; none when this server sends no email.
    mail: Option<Arc<mail::AccountMail>>,
}

impl Accounts {
    pub fn new(pool: PgPool, settings: AccountsArgs) -> Accounts {
        let bookkeeping = bookkeeping_pool(&pool);
        let limiter = rate_limit::RateLimiter::new(bookkeeping.clone());
        Accounts { pool, bookkeeping, settings: Arc::new(settings), limiter, tokens: Default::default(), mail: None }
    }

    /// These accounts, mailing verification and reset links with `mail`.
    pub fn with_mail(self, mail: mail::AccountMail) -> Accounts {
        Accounts { mail: Some(Arc::new(mail)), ..self }
    }
}

/// Connections of their own, to the database `pool` connects to, whose commits do not wait for
/// the disk: for the writes on every request's path whose last seconds may be lost in a
/// database crash. Those are rate-limit counters (at worst a window's allowance starts over) and
/// API tokens' last-used times (shown to the minute).
///
/// Waiting for a WAL flush would put every request behind the disk: one account's submissions
/// all update one counter row, so under that row's lock one account's rate would be the disk's
/// flush rate; and each user's first request of the minute, noting its token's use, would queue
/// behind the flushes of all the others.
fn bookkeeping_pool(pool: &PgPool) -> PgPool {
    service_kit::postgres::pool_options(4)
        .after_connect(|connection, _| Box::pin(async move { sqlx::query("SET synchronous_commit = off").execute(connection).await.map(drop) }))
        .connect_lazy_with((*pool.connect_options()).clone())
}
