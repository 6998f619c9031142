//! `POST /admin/rebuild` starts a zero-downtime rebuild of the read model, `GET /admin/rebuild`
//! shows its progress.

use accounts::Admin;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use crate::{AdminError, AdminState};
use projector::rebuild::{rebuild, shared_status, RebuildLock, RebuildStatus};
use service_kit::http_error::{AdminOnly, DatabaseUnavailable, ErrorBody};

/// The current or last rebuild, whichever projector replica runs it.
#[utoipa::path(get, path = "/admin/rebuild", tag = "operations", responses(
    (status = 200, description = "its state and progress", body = RebuildStatus), AdminOnly, DatabaseUnavailable,
))]
pub(super) async fn status(_: Admin, State(state): State<AdminState>) -> Result<Json<RebuildStatus>, AdminError> {
    Ok(Json(shared_status(&state.pool).await?))
}

/// Starts a zero-downtime rebuild of the read model from the whole topic.
#[utoipa::path(post, path = "/admin/rebuild", tag = "operations", responses(
    (status = 202, description = "started; `Location` shows its progress", body = RebuildStatus, headers(("Location" = String))),
    (status = 409, description = "`rebuild_running`", body = ErrorBody),
    AdminOnly,
    DatabaseUnavailable,
))]
pub(super) async fn start(_: Admin, State(state): State<AdminState>) -> Result<impl IntoResponse, AdminError> {
    let lock = RebuildLock::try_acquire(&state.pool).await?.ok_or(AdminError::RebuildRunning)?;
    // Said to every replica before the answer, so the next read anywhere shows it running.
    state.progress.begin(&state.pool).await?;
    let task_state = state.clone();
    state.rebuilds.spawn(async move {
        let AdminState { config, pool, progress, shutdown, .. } = task_state;
        if let Err(error) = rebuild(&config, &pool, &progress, lock, shutdown).await {
            tracing::error!(error = %format!("{error:#}"), "rebuild did not complete");
        }
    });
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, "/admin/rebuild")], Json(state.progress.snapshot())))
}
