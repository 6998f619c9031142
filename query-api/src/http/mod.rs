//! HTTP routes, one module per resource.

mod batches;
mod event_schema;
mod export;
mod stream;
mod submissions;
pub mod ui;

use axum::Router;

use crate::AppState;

/// The OpenAPI description of these routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut document = submissions::SubmissionsApi::openapi();
    document.merge(batches::BatchesApi::openapi());
    document.merge(stream::StreamApi::openapi());
    document.merge(export::ExportApi::openapi());
    document.merge(ui::UiApi::openapi());
    document
}

pub fn routes(state: AppState) -> Router {
    Router::new()
        .merge(submissions::routes())
        .merge(batches::routes())
        .merge(stream::routes())
        .merge(export::routes())
        .merge(ui::routes(&state.ui))
        .with_state(state)
}
