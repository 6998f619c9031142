//! The browser UI: the files `scripts/build-ui` writes, served at `/`, and `/ui-config.json`,
//! which tells the UI where the command API, the notifier and the admin endpoints are when they
//! are not on this origin.

use axum::routing::{get, get_service};
use axum::{Json, Router};
use serde_json::json;
use tower_http::services::ServeDir;

use crate::{AppState, Config};

#[derive(Clone)]
pub struct UiSettings {
    dir: std::path::PathBuf,
    command_api_url: String,
    notifier_api_url: String,
    admin_api_url: String,
}

impl UiSettings {
    pub fn new(config: &Config) -> Self {
        let dir = &config.ui_dir;
        if !dir.join("index.html").is_file() {
            tracing::warn!(dir = %dir.display(), "the UI is not built here: run scripts/build-ui (the APIs work without it)");
        }
        let base = |url: &str| url.trim_end_matches('/').to_owned();
        UiSettings {
            dir: dir.to_owned(),
            command_api_url: base(&config.ui_command_api_url),
            notifier_api_url: base(&config.ui_notifier_api_url),
            admin_api_url: base(&config.ui_admin_api_url),
        }
    }
}

/// `/ui-config.json`, and every path no API route claims served from the UI directory; what is
/// not there, or asked for with another method than GET, gets the JSON 404.
pub fn routes(settings: &UiSettings) -> Router<AppState> {
    let config = json!({
        "command_api": settings.command_api_url,
        "query_api": "",
        "notifier_api": settings.notifier_api_url,
        "admin_api": settings.admin_api_url,
    });
    let files = ServeDir::new(&settings.dir)
        .precompressed_gzip()
        .not_found_service(get(service_kit::http_error::not_found_fallback));
    Router::new()
        .route("/ui-config.json", get(move || async move { Json(config) }))
        .fallback_service(get_service(files).fallback(service_kit::http_error::not_found_fallback))
}
