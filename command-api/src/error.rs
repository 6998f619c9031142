//! Every way a command can fail, and the HTTP answer for each.

use accounts::rate_limit::Decision;
use accounts::AccountsError;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use service_kit::http_error::{error_response, unavailable};

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Not signed in, or not allowed (the account layer says which).
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// The body could not be read (over the size limit, or the connection failed).
    #[error(transparent)]
    Body(#[from] BytesRejection),
    #[error("expected a body with Content-Type: application/json")]
    UnsupportedMediaType,
    /// The body is not acceptable JSON (syntax or shape): axum says which.
    #[error(transparent)]
    Json(#[from] JsonRejection),
    #[error("{0}")]
    InvalidBody(&'static str),
    #[error("content must not be empty")]
    EmptyContent,
    #[error("content must not contain NUL characters")]
    NulInContent,
    #[error("content is {actual} bytes; the limit is {limit} bytes")]
    ContentTooLarge { actual: usize, limit: usize },
    #[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error("this Idempotency-Key was already used for a request with other content; use a new key for a new submission")]
    IdempotencyKeyReused,
    #[error("too many submissions; {} allowed per {} seconds, try again in {} seconds", .0.policy.limit, .0.policy.window_secs, .0.reset_secs.max(1))]
    RateLimited(Decision),
    #[error("the event log did not acknowledge the submission: {0}")]
    BrokerUnavailable(#[source] rdkafka::error::KafkaError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            ApiError::Accounts(error) => error.into_response(),
            ApiError::Body(rejection) => {
                let status = rejection.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "unreadable_body" };
                let mut response = error_response(status, code, rejection.body_text());
                // The rest of the body is never read, so the server closes the connection after
                // answering: say so, or a client may send its next request on it and lose it.
                response.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
                response
            }
            ApiError::UnsupportedMediaType => {
                error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
            }
            ApiError::Json(rejection) => {
                let status = rejection.status();
                let code = if status == StatusCode::UNPROCESSABLE_ENTITY { "invalid_body" } else { "malformed_json" };
                error_response(status, code, rejection.body_text())
            }
            ApiError::InvalidBody(_) => error_response(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message),
            ApiError::EmptyContent => error_response(StatusCode::UNPROCESSABLE_ENTITY, "empty_content", message),
            ApiError::NulInContent => error_response(StatusCode::UNPROCESSABLE_ENTITY, "invalid_content", message),
            ApiError::ContentTooLarge { .. } => {
                error_response(StatusCode::PAYLOAD_TOO_LARGE, "content_too_large", message)
            }
            ApiError::InvalidIdempotencyKey => error_response(StatusCode::BAD_REQUEST, "invalid_idempotency_key", message),
            ApiError::IdempotencyKeyReused => {
                error_response(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", message)
            }
            ApiError::RateLimited(decision) => {
                let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
                decision.annotate(&mut response);
                response
            }
            ApiError::BrokerUnavailable(ref error) => {
                tracing::warn!(%error, "answering 503: broker did not acknowledge");
                unavailable(
                    "broker_unavailable",
                    "the event log is unavailable; nothing was stored, try again later",
                    RETRY_AFTER_SECS,
                )
            }
            ApiError::Database(error) => AccountsError::from(error).into_response(),
        }
    }
}
