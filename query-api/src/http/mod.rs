//! HTTP routes, one module per resource.

mod stream;
mod submissions;

use axum::Router;

use crate::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .merge(submissions::routes())
        .merge(stream::routes())
        .with_state(state)
}
