//! The browser UI: the files `scripts/build-ui` writes, served at `/`, and `/ui-config.json`,
//! which tells the UI where the command API, the notifier and the admin endpoints are when they
//! are not on this origin.

use axum::http::{header, HeaderValue};
use axum::routing::{get, get_service};
use axum::{Json, Router};
use serde::Serialize;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::{AppState, Config};

/// Where the UI finds each API: a base URL, or empty for the origin that served the page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UiConfig {
    command_api: String,
    query_api: String,
    notifier_api: String,
    admin_api: String,
    /// Whether this server mails links (to confirm an address, to reset a password): the UI
    /// offers neither when it does not.
    mail: bool,
}

/// Where the browser UI finds the APIs.
#[utoipa::path(get, path = "/ui-config.json", tag = "ui", security(()), responses((status = 200, description = "the UI's settings", body = UiConfig)))]
async fn ui_config(config: UiConfig) -> Json<UiConfig> {
    Json(config)
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(ui_config))]
pub(super) struct UiApi;

#[derive(Clone)]
pub struct UiSettings {
    dir: std::path::PathBuf,
    command_api_url: String,
    notifier_api_url: String,
    admin_api_url: String,
    mail: bool,
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
            mail: config.smtp_url.is_some(),
        }
    }
}

/// `/ui-config.json`, and every path no API route claims served from the UI directory; what is
/// not there, or asked for with another method than GET, gets the JSON 404.
pub fn routes(settings: &UiSettings) -> Router<AppState> {
    let config = UiConfig {
        command_api: settings.command_api_url.clone(),
        query_api: String::new(),
        notifier_api: settings.notifier_api_url.clone(),
        admin_api: settings.admin_api_url.clone(),
        mail: settings.mail,
    };
    let files = ServeDir::new(&settings.dir).precompressed_gzip().not_found_service(get(service_kit::http_error::not_found_fallback));
    // The pages run this origin's scripts and WebAssembly only, call this origin and the APIs
    // they were told of, and are never framed; they are revalidated rather than kept.
    let apis: Vec<&str> =
        [&config.command_api, &config.notifier_api, &config.admin_api].into_iter().map(String::as_str).filter(|url| !url.is_empty()).collect();
    let policy = format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self' {}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
        apis.join(" ")
    );
    Router::new()
        .route("/ui-config.json", get(move || ui_config(config)))
        .fallback_service(get_service(files).fallback(service_kit::http_error::not_found_fallback))
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, HeaderValue::from_str(&policy).ok()))
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
}
