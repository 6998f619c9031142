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
//!   something. [`Admin`] additionally requires the admin role.
//! - [`http::routes`] serves sign-up, sign-in, sign-out and the token endpoints.
//! - [`rate_limit::RateLimiter`] counts in the database, so a limit holds across replicas.

mod caller;
pub mod config;
pub mod error;
pub mod http;
pub mod password;
pub mod rate_limit;
pub mod secret;
pub mod store;

use std::sync::Arc;

use sqlx::migrate::Migrator;
use sqlx::PgPool;

pub use caller::{Admin, Caller, Credential, Role, CSRF_HEADER, SESSION_COOKIE};
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
    pub settings: Arc<AccountsArgs>,
    pub limiter: rate_limit::RateLimiter,
}

impl Accounts {
    pub fn new(pool: PgPool, settings: AccountsArgs) -> Accounts {
        let limiter = rate_limit::RateLimiter::new(&pool);
        Accounts { pool, settings: Arc::new(settings), limiter }
    }
}
