//! The browser UI: the files `scripts/build-ui` writes, served at `/`, and `/ui-config.json`,
//! which tells the UI where the command API and the notifier are when they are not on this origin.

use std::path::Path;

use axum::routing::{get, get_service};
use axum::{Json, Router};
use serde_json::json;
use tower_http::services::ServeDir;

use crate::AppState;

#[derive(Clone)]
pub struct UiSettings {
    dir: std::path::PathBuf,
    command_api_url: String,
    notifier_api_url: String,
}

impl UiSettings {
    pub fn new(dir: &Path, command_api_url: &str, notifier_api_url: &str) -> Self {
        if !dir.join("index.html").is_file() {
            tracing::warn!(dir = %dir.display(), "the UI is not built here: run scripts/build-ui (the APIs work without it)");
        }
        UiSettings {
            dir: dir.to_owned(),
            command_api_url: command_api_url.trim_end_matches('/').to_owned(),
            notifier_api_url: notifier_api_url.trim_end_matches('/').to_owned(),
        }
    }
}

/// `/ui-config.json`, and every path no API route claims served from the UI directory; what is
/// not there, or asked for with another method than GET, gets the JSON 404.
pub fn routes(settings: &UiSettings) -> Router<AppState> {
    let config = json!({ "command_api": settings.command_api_url, "query_api": "", "notifier_api": settings.notifier_api_url });
    let files = ServeDir::new(&settings.dir)
        .precompressed_gzip()
        .not_found_service(get(service_kit::http_error::not_found_fallback));
    Router::new()
        .route("/ui-config.json", get(move || async move { Json(config) }))
        .fallback_service(get_service(files).fallback(service_kit::http_error::not_found_fallback))
}
