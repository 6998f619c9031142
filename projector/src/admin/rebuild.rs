//! `POST /admin/rebuild` starts a zero-downtime rebuild of the read model, `GET /admin/rebuild`
//! shows its progress.

use accounts::Admin;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::{AdminError, AdminState};
use crate::rebuild::{rebuild, RebuildLock, RebuildStatus};

pub(super) async fn status(_: Admin, State(state): State<AdminState>) -> Json<RebuildStatus> {
    Json(state.progress.snapshot())
}

pub(super) async fn start(_: Admin, State(state): State<AdminState>) -> Result<impl IntoResponse, AdminError> {
    let lock = RebuildLock::try_acquire(&state.pool).await?.ok_or(AdminError::RebuildRunning)?;
    state.progress.begin();
    let task_state = state.clone();
    state.rebuilds.spawn(async move {
        let AdminState { config, pool, progress, shutdown, .. } = task_state;
        if let Err(error) = rebuild(&config, &pool, &progress, lock, shutdown).await {
            tracing::error!(error = %format!("{error:#}"), "rebuild did not complete");
        }
    });
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, "/admin/rebuild")], Json(state.progress.snapshot())))
}
