//! The one JSON shape every error response has: `{"error": {"code": "...", "message": "..."}}`.
//! `code` is stable and meant for programs; `message` is for people.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    pub code: &'a str,
    pub message: String,
}

/// Builds an error response with the standard body.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ErrorBody { error: ErrorDetail { code, message: message.into() } };
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
