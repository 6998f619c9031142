//! The one JSON shape every error response has: `{"error": {"code": "...", "message": "..."}}`.
//! `code` is stable and meant for programs; `message` is for people.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Every error answer's body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `invalid_query`, `not_found`, `unauthenticated`, ...
    pub code: String,
    /// For people.
    pub message: String,
    /// A refused batch's bad items (`invalid_items` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemError>,
}

/// Why one item of a batch was refused.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ItemError {
    /// Its position in the batch, from 0.
    pub index: usize,
    pub code: String,
    pub message: String,
}

/// Builds an error response with the standard body.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ErrorBody { error: ErrorDetail { code: code.to_owned(), message: message.into(), items: Vec::new() } };
    (status, Json(body)).into_response()
}

/// A 503 that tells the client when to try again.
pub fn unavailable(code: &str, message: impl Into<String>, retry_after_secs: u64) -> Response {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, code, message);
    response
        .headers_mut()
        .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// Answers any route nobody serves with the standard body instead of an empty 404.
pub async fn not_found_fallback() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such route")
}
