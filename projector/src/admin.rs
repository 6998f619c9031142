//! Admin endpoints: `POST /admin/rebuild` starts a zero-downtime rebuild of the read model and
//! `GET /admin/rebuild` shows its progress. They change the whole read model, so only accounts
//! with the admin role reach them (401 without credentials, 403 for other accounts).

use accounts::{Accounts, AccountsArgs, Admin};
use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use service_kit::http_error::error_response;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::rebuild::{rebuild, Progress, RebuildLock};
use crate::Config;

#[derive(Clone)]
pub struct AdminState {
    config: Config,
    pool: PgPool,
    accounts: Accounts,
    progress: Progress,
    /// Cancels a running rebuild when the process shuts down.
    shutdown: CancellationToken,
    /// The rebuild started here, awaited by [`AdminState::wait_for_rebuild`].
    rebuilds: TaskTracker,
}

impl AdminState {
    pub fn new(config: Config, pool: PgPool, shutdown: CancellationToken) -> AdminState {
        let accounts = Accounts::new(pool.clone(), AccountsArgs::default());
        AdminState { config, pool, accounts, progress: Progress::default(), shutdown, rebuilds: TaskTracker::new() }
    }

    /// After shutdown: waits until a rebuild started here has given up its generation and its
    /// lock, so the process never exits half-way through abandoning it.
    pub async fn wait_for_rebuild(&self) {
        self.rebuilds.close();
        self.rebuilds.wait().await;
    }
}

impl FromRef<AdminState> for Accounts {
    fn from_ref(state: &AdminState) -> Accounts {
        state.accounts.clone()
    }
}

pub fn routes(state: AdminState) -> Router {
    Router::new()
        .route("/admin/rebuild", get(status).post(start))
        .with_state(state)
}

async fn status(_: Admin, State(state): State<AdminState>) -> Response {
    Json(state.progress.snapshot()).into_response()
}

async fn start(_: Admin, State(state): State<AdminState>) -> Response {
    let lock = match RebuildLock::try_acquire(&state.pool).await {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            return error_response(
                StatusCode::CONFLICT,
                "rebuild_running",
                "a rebuild is already running (here or in another process); see GET /admin/rebuild",
            )
        }
        Err(error) => return service_kit::http_error::unavailable("database_unavailable", format!("read model unavailable: {error}"), 1),
    };
    state.progress.begin();
    let task_state = state.clone();
    state.rebuilds.spawn(async move {
        let AdminState { config, pool, progress, shutdown, .. } = task_state;
        if let Err(error) = rebuild(&config, &pool, &progress, lock, shutdown).await {
            tracing::error!(error = %format!("{error:#}"), "rebuild did not complete");
        }
    });
    (StatusCode::ACCEPTED, [(header::LOCATION, "/admin/rebuild")], Json(state.progress.snapshot())).into_response()
}
