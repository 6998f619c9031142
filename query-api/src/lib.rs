//! The read side: serves the PostgreSQL read model over REST and pushes status changes over
//! server-sent events.
//!
//! Everything it serves comes from the database the projector writes. Live updates come from
//! the same tables: the projector NOTIFYs after each commit, [`changes::ChangeHub`] reads the
//! new rows by `seq` and fans them out, so what SSE pushes is always already visible over REST.

pub mod changes;
pub mod config;
pub mod error;
pub mod http;
pub mod per_account;
pub mod resume;

use accounts::Accounts;
use anyhow::Context;
use axum::extract::FromRef;
use axum::Router;
use service_kit::health::ReadinessCheck;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use changes::ChangeHub;
pub use config::Config;
pub use error::ApiError;

/// What request handlers share.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub accounts: Accounts,
    pub changes: ChangeHub,
    /// Live streams open per account here (bounded).
    pub streams: per_account::Slots,
    /// Reads per account waiting here for their write to be projected (bounded).
    pub waits: per_account::Slots,
    /// Ends open SSE streams when the service shuts down.
    pub shutdown: CancellationToken,
    pub ui: http::ui::UiSettings,
}

impl AppState {
    /// Connects lazily: the service starts, and answers 503, while the database is down.
    pub fn connect(config: &Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let pool = service_kit::postgres::pool_options(config.max_connections).connect_lazy(&config.database_url)?;
        let changes = ChangeHub::start(pool.clone(), shutdown.clone());
        let ui = http::ui::UiSettings::new(config);
        let mut accounts = Accounts::new(pool.clone(), config.accounts.clone());
        if let Some(smtp_url) = &config.smtp_url {
            let mailer = accounts::mail::Mailer::new(smtp_url.expose(), &config.mail_from, std::time::Duration::from_secs(10))?;
            accounts = accounts.with_mail(accounts::mail::AccountMail { mailer, public_url: config.public_url.clone() });
        }
        Ok(AppState {
            pool,
            accounts,
            changes,
            streams: per_account::Slots::new(per_account::STREAMS),
            waits: per_account::Slots::new(per_account::WAITS),
            shutdown,
            ui,
        })
    }
}

impl FromRef<AppState> for Accounts {
    fn from_ref(state: &AppState) -> Accounts {
        state.accounts.clone()
    }
}

/// The API routes (`/api/submissions...`, `/api/stream`, and the account routes) and the UI
/// (`/`, and a JSON 404 for anything else), without health routes or layers.
pub fn router(state: AppState) -> Router {
    accounts::http::routes(state.accounts.clone()).merge(http::routes(state))
}

/// The OpenAPI description of [`router`]'s API endpoints (the account endpoints included).
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut document = accounts::http::AccountsApi::openapi();
    document.merge(http::openapi());
    document
}

/// What `/readyz` checks for this service: the read model answers.
pub fn readiness_checks(state: &AppState) -> Vec<ReadinessCheck> {
    vec![ReadinessCheck::database("database", state.pool.clone(), "SELECT 1 FROM submissions LIMIT 1")]
}

/// Runs the service as its own process until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let state = AppState::connect(&config, shutdown.clone())?;
    accounts::migrate(&state.pool).await.context("cannot create the accounts schema")?;
    let document = service_kit::openapi::document("query-api", [openapi()]);
    let app = router(state.clone()).merge(service_kit::openapi::routes(document));
    let app = service_kit::http_server::mount_operations(app, readiness_checks(&state), config.internal_listen, &shutdown).await?;
    let cors = service_kit::http_server::cors(&config.cors_allowed_origins)?;
    let (listener, addr) = service_kit::http_server::bind(config.listen).await?;
    tracing::info!(%addr, "query-api listening");
    service_kit::http_server::serve(listener, app, cors, shutdown).await
}
