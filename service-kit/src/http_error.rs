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

/// What any request with credentials may be answered besides its own answers (for the
/// OpenAPI document).
#[derive(utoipa::IntoResponses)]
pub enum SignedIn {
    /// `unauthenticated`: no credentials, or unknown, expired or revoked ones.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
}

/// ...and a request that changes something, which with the session cookie must carry the
/// session's CSRF token.
#[derive(utoipa::IntoResponses)]
pub enum SignedInChange {
    /// `unauthenticated`: no credentials, or unknown, expired or revoked ones.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// `csrf_failed`: signed in with the cookie, without the session's `X-CSRF-Token`.
    #[response(status = 403)]
    CsrfFailed(ErrorBody),
}

/// ...and a request only admins may make.
#[derive(utoipa::IntoResponses)]
pub enum AdminOnly {
    /// `unauthenticated`: no credentials, or unknown, expired or revoked ones.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// `forbidden`: not an admin (or, with the cookie, `csrf_failed` on a change).
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// What a request that needs the database may be answered while it is unreachable.
#[derive(utoipa::IntoResponses)]
pub enum DatabaseUnavailable {
    /// `database_unavailable`, with `Retry-After`.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// What a request with a JSON body may be answered when the body cannot be read as JSON.
#[derive(utoipa::IntoResponses)]
pub enum JsonBodyErrors {
    /// `malformed_json`: not JSON.
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// `body_too_large`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// `unsupported_media_type`: not `application/json`.
    #[response(status = 415)]
    NotJson(ErrorBody),
}

/// A request refused for its form before anything was read, answered the same in every
/// service: each service's error wraps it.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    /// 400 `invalid_id`: a path segment that is not an id.
    #[error("{0}")]
    InvalidId(String),
    /// 400 `invalid_query`: a query parameter (or a header standing for one) that does not fit.
    #[error("{0}")]
    InvalidQuery(String),
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        let code = match self {
            BadRequest::InvalidId(_) => "invalid_id",
            BadRequest::InvalidQuery(_) => "invalid_query",
        };
        error_response(StatusCode::BAD_REQUEST, code, self.to_string())
    }
}

/// Builds an error response with the standard body.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ErrorBody { error: ErrorDetail { code: code.to_owned(), message: message.into(), items: Vec::new() } };
    (status, Json(body)).into_response()
}

/// A 503 that tells the client when to try again.
pub fn unavailable(code: &str, message: impl Into<String>, retry_after_secs: u64) -> Response {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, code, message);
    response.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// How long a client told to come back after a 503 waits.
pub const RETRY_AFTER_SECS: u64 = 2;

/// The answer to a JSON body axum's extractor refused, the same in every service: 415
/// `unsupported_media_type`, 413 `body_too_large`, 422 `invalid_body` (JSON of the wrong shape)
/// or 400 `malformed_json`.
pub fn json_rejection(rejection: &axum::extract::rejection::JsonRejection) -> Response {
    let status = rejection.status();
    let code = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        _ => "malformed_json",
    };
    error_response(status, code, rejection.body_text())
}

/// A JSON body that must be an object, deserialized into `T`: as axum's `Json`, but an array is
/// refused rather than read as `T`'s fields in order (serde's derive accepts both), and every
/// refusal is answered as [`json_rejection`] says, or 422 `invalid_body` naming the field.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let Json(object) = Json::<serde_json::Map<String, serde_json::Value>>::from_request(request, state).await.map_err(|r| json_rejection(&r))?;
        from_object(object).map(JsonBody).map_err(|message| error_response(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message))
    }
}

/// `T` from a body's JSON object, or the message of the 422 `invalid_body` that refuses it.
pub fn from_object<T: serde::de::DeserializeOwned>(object: serde_json::Map<String, serde_json::Value>) -> Result<T, String> {
    T::deserialize(serde_json::Value::Object(object)).map_err(|error| format!("the body does not fit: {error}"))
}

/// Query parameters deserialized into `T`: as axum's `Query`, but refused with the standard
/// body, 400 `invalid_query`, saying what does not fit.
pub struct QueryParams<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Response> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(query)| QueryParams(query))
            .map_err(|rejection| BadRequest::InvalidQuery(rejection.body_text()).into_response())
    }
}

/// What a service calls its database in a 503: its code and message.
pub struct DatabaseName {
    pub unavailable_code: &'static str,
    pub unavailable_message: &'static str,
}

/// The database every service but the query API names.
pub const DATABASE: DatabaseName =
    DatabaseName { unavailable_code: "database_unavailable", unavailable_message: "the database is unavailable; try again shortly" };

/// The answer to a database error, the same in every service: 503 with `Retry-After` when
/// PostgreSQL cannot be reached (the client should retry), 500 `internal` otherwise. The cause
/// is logged, never shown to the client.
pub fn database_error(error: &sqlx::Error, name: &DatabaseName) -> Response {
    if crate::postgres::is_unavailable(error) {
        tracing::warn!(%error, code = name.unavailable_code, "answering 503: database unavailable");
        unavailable(name.unavailable_code, name.unavailable_message, RETRY_AFTER_SECS)
    } else {
        tracing::error!(%error, "database query failed");
        error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }
}

/// Answers any route nobody serves with the standard body instead of an empty 404.
pub async fn not_found_fallback() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// The `{id}` path segment as a UUID, or the 400 `invalid_id` that refuses it, naming what the
/// id is of (`"submission"`).
pub fn path_uuid(path: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>, what: &str) -> Result<uuid::Uuid, BadRequest> {
    let axum::extract::Path(raw) = path.map_err(|rejection| BadRequest::InvalidId(rejection.body_text()))?;
    raw.parse().map_err(|_| {
        BadRequest::InvalidId(format!("{raw:?} is not {} {what} id (a UUID)", if what.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }))
    })
}
