//! HTTP routes, one module per resource.

mod batches;
mod stream;
mod submissions;
pub mod ui;

use axum::Router;

use crate::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .merge(submissions::routes())
        .merge(batches::routes())
        .merge(stream::routes())
        .merge(ui::routes(&state.ui))
        .with_state(state)
}
