//! Admin endpoints: `POST /admin/rebuild` starts a zero-downtime rebuild of the read model and
//! `GET /admin/rebuild` shows its progress. They change the whole read model: expose them only
//! where operators can reach them (the defaults listen on localhost).

use axum::extract::State;
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
    progress: Progress,
    /// Cancels a running rebuild when the process shuts down.
    shutdown: CancellationToken,
    /// The rebuild started here, awaited by [`AdminState::wait_for_rebuild`].
    rebuilds: TaskTracker,
}

impl AdminState {
    pub fn new(config: Config, pool: PgPool, shutdown: CancellationToken) -> AdminState {
        AdminState { config, pool, progress: Progress::default(), shutdown, rebuilds: TaskTracker::new() }
    }

    /// After shutdown: waits until a rebuild started here has given up its generation and its
    /// lock, so the process never exits half-way through abandoning it.
    pub async fn wait_for_rebuild(&self) {
        self.rebuilds.close();
        self.rebuilds.wait().await;
    }
}

pub fn routes(state: AdminState) -> Router {
    Router::new()
        .route("/admin/rebuild", get(status).post(start))
        .with_state(state)
}

async fn status(State(state): State<AdminState>) -> Response {
    Json(state.progress.snapshot()).into_response()
}

async fn start(State(state): State<AdminState>) -> Response {
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
