//! The OpenAPI document each service serves at `/api/openapi.json`. Every crate describes its
//! own endpoints beside their handlers (utoipa, from the handlers' attributes and the types
//! they take and answer); this assembles a service's parts and adds what all of them share:
//! the title, the two ways to authenticate, and the health, metrics and document endpoints.

use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa::OpenApi as _;

use crate::health::HealthApi;
use crate::metrics::MetricsApi;

const DESCRIPTION: &str = "People submit text; it is judged asynchronously: it passes when it is at least 10 characters \
long and contains a digit. A submission moves PENDING -> PROCESSING -> PASSED or FAILED. Every error answers \
`{\"error\": {\"code\", \"message\"}}`. Authenticate with `Authorization: Bearer <token>` (a personal API token) or \
the `cp_session` cookie from signing in; with the cookie, requests that change something also send the session's \
CSRF token as `X-CSRF-Token`.";

/// `service`'s document: its `parts`, with the shared endpoints and security schemes.
pub fn document(service: &str, parts: impl IntoIterator<Item = OpenApi>) -> OpenApi {
    let mut document = OpenApiBuilder::new()
        .info(InfoBuilder::new().title(format!("content-processor: {service}")).version(env!("CARGO_PKG_VERSION")).description(Some(DESCRIPTION)))
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)))
                .security_scheme("session", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("cp_session"))))
                .build(),
        ))
        .security(Some([SecurityRequirement::new("bearer", Vec::<String>::new()), SecurityRequirement::new("session", Vec::<String>::new())]))
        .build();
    for part in parts.into_iter().chain([HealthApi::openapi(), MetricsApi::openapi(), DocumentApi::openapi()]) {
        document.merge(part);
    }
    document
}

/// `GET /api/openapi.json`.
pub fn routes(document: OpenApi) -> Router {
    let document = Arc::new(document);
    Router::new().route("/api/openapi.json", get(move || async move { Json(document.as_ref().clone()) }))
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", security(()), responses(
    (status = 200, description = "the OpenAPI 3.1 description of this service", content_type = "application/json", body = Object),
))]
#[allow(dead_code)] // described here; served by `routes`
async fn openapi_json() {}

#[derive(utoipa::OpenApi)]
#[openapi(paths(openapi_json))]
struct DocumentApi;
