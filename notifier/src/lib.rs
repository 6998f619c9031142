//! Tells owners their verdicts: the `notifier` component.
//!
//! It reads the event log with a consumer group of its own ([`watcher`]), records a
//! notification per verdict (per batch, when its last item is judged) with a delivery per
//! channel the owner has on, and sends them ([`delivery`]): email over SMTP ([`email`]) and
//! webhooks signed per Standard Webhooks ([`webhook`]) to URLs that pass the SSRF policy
//! ([`ssrf`]). [`http`] serves the settings, endpoints and deliveries. Its state is in
//! PostgreSQL, schema `notifier`; [`retention`] deletes what expired there.

pub mod config;
pub mod delivery;
pub mod email;
pub mod error;
pub mod http;
pub mod retention;
pub mod ssrf;
pub mod store;
pub mod watcher;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use accounts::Accounts;
use anyhow::Context;
use axum::extract::FromRef;
use axum::Router;
use service_kit::health::ReadinessCheck;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::ApiError;

/// What request handlers share.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub accounts: Accounts,
    /// Wakes the delivery worker (a test event was queued).
    pub wake: Arc<Notify>,
    pub allow_private_targets: bool,
    pub email_available: bool,
}

impl FromRef<AppState> for Accounts {
    fn from_ref(state: &AppState) -> Accounts {
        state.accounts.clone()
    }
}

/// The notifier, connected and ready to run.
pub struct Notifier {
    pub state: AppState,
    watcher: watcher::Watcher,
    deliverer: delivery::Deliverer,
    retention: retention::Settings,
}

impl Notifier {
    /// Connects to PostgreSQL (migrating its schema) and Kafka, and joins the consumer group.
    pub async fn start(config: &Config) -> anyhow::Result<Notifier> {
        let pool = service_kit::postgres::connect(&config.database_url, config.max_connections).await?;
        store::migrate(&pool).await.context("cannot create the notifier's schema")?;
        let mailer =
            config.smtp_url.as_ref().map(|url| accounts::mail::Mailer::new(url.expose(), &config.mail_from, config.send_timeout())).transpose()?;
        if mailer.is_none() {
            tracing::info!("no SMTP_URL: notifications go out by webhook only");
        }
        let wake = Arc::new(Notify::new());
        let state = AppState {
            pool: pool.clone(),
            accounts: Accounts::new(pool.clone(), config.accounts.clone()),
            wake: wake.clone(),
            allow_private_targets: config.allow_private_targets,
            email_available: mailer.is_some(),
        };
        let watcher = watcher::Watcher::start(config, pool.clone(), wake.clone()).await?;
        let deliverer = delivery::Deliverer {
            pool,
            mailer,
            webhooks: webhook::WebhookSender::new(config.send_timeout(), config.allow_private_targets)?,
            retry: config.retry(),
            concurrency: config.concurrency,
            // Longer than a send may take (its timeout), with room to record the outcome.
            lease: config.send_timeout() * 2 + Duration::from_secs(5),
            wake,
        };
        Ok(Notifier { state, watcher, deliverer, retention: retention::Settings::new(config) })
    }

    /// The API routes (`/api/notification-settings`, `/api/webhooks`, `/api/deliveries`).
    pub fn router(&self) -> Router {
        http::routes(self.state.clone())
    }

    /// What `/readyz` checks: the database answers, and no partition is held.
    pub fn readiness_checks(&self) -> Vec<ReadinessCheck> {
        let pool = self.state.pool.clone();
        vec![ReadinessCheck::database("notifier-database", pool, "SELECT 1 FROM notifier.deliveries LIMIT 1"), self.watcher.readiness_check()]
    }

    /// Watches the log, delivers and sweeps expired rows until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let sweeps = retention::run(self.state.pool.clone(), self.retention, shutdown.clone());
        let (watched, delivered, ()) = tokio::join!(self.watcher.run(shutdown.clone()), self.deliverer.run(shutdown), sweeps);
        watched.and(delivered)
    }
}

/// The OpenAPI description of [`Notifier::router`]'s endpoints.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <http::NotifierApi as utoipa::OpenApi>::openapi()
}

/// Runs the notifier as its own process until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let notifier = Notifier::start(&config).await?;
    let document = service_kit::openapi::document("notifier", [openapi()]);
    let app = service_kit::http_server::service_app(notifier.router(), document);
    let app = service_kit::http_server::mount_operations(app, notifier.readiness_checks(), config.internal_listen, &shutdown).await?;
    let cors = service_kit::http_server::cors(&config.cors_allowed_origins)?;
    let (listener, addr) = service_kit::http_server::bind(config.listen).await?;
    tracing::info!(%addr, "notifier listening");
    let server = service_kit::http_server::serve(listener, app, cors, shutdown.clone());
    let (served, ran) = tokio::join!(server, notifier.run(shutdown));
    served.and(ran)
}
