//! Every way a command can fail, and the HTTP answer for each.

use accounts::rate_limit::Decision;
use accounts::AccountsError;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use service_kit::http_error::{error_response, unavailable, ErrorBody, ErrorDetail, ItemError};

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
    InvalidBody(String),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error("this Idempotency-Key was already used for a request with other content; use a new key for a new submission")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry it in a moment")]
    IdempotencyKeyInUse,
    #[error("`replaces`: no submission {0} of yours")]
    UnknownReplaced(uuid::Uuid),
    #[error("only a FAILED submission can be resubmitted; {replaced} is {status}")]
    NotFailed { replaced: uuid::Uuid, status: String },
    #[error("{replaced} is already replaced{}; resubmit that one if it failed too", .replacement.map(|id| format!(" by {id}")).unwrap_or_default())]
    AlreadyReplaced { replaced: uuid::Uuid, replacement: Option<uuid::Uuid> },
    #[error("a batch holds 1 to {limit} items; this one has {actual}")]
    BatchSize { actual: usize, limit: usize },
    #[error("{} of the batch's items are invalid; nothing was accepted", .0.len())]
    InvalidItems(Vec<ItemError>),
    #[error("too many submissions; {} allowed per {} seconds, try again in {} seconds", .0.policy.limit, .0.policy.window_secs, .0.reset_secs.max(1))]
    RateLimited(Decision),
    #[error("the event log did not acknowledge the submission: {0}")]
    BrokerUnavailable(#[source] rdkafka::error::KafkaError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The account's data key cannot be read or unwrapped (the key store, or a wrong KEK).
    #[error(transparent)]
    Keys(#[from] keyring::KeyError),
}

/// Why one item of a batch was refused.
pub fn item_error(index: usize, error: &ContentError) -> ItemError {
    ItemError { index, code: error.code().to_owned(), message: error.to_string() }
}

/// What is wrong with a piece of content: of a submission, or of one item of a batch.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Not an object with `content` (a string) and nothing else.
    #[error("{0}")]
    Shape(String),
    #[error("content must not be empty")]
    Empty,
    #[error("content must not contain NUL characters")]
    Nul,
    #[error("content is {actual} bytes; the limit is {limit} bytes")]
    TooLarge { actual: usize, limit: usize },
}

impl ContentError {
    pub fn code(&self) -> &'static str {
        match self {
            ContentError::Shape(_) => "invalid_body",
            ContentError::Empty => "empty_content",
            ContentError::Nul => "invalid_content",
            ContentError::TooLarge { .. } => "content_too_large",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ContentError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
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
            ApiError::UnsupportedMediaType => error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message),
            ApiError::Json(rejection) => service_kit::http_error::json_rejection(&rejection),
            ApiError::InvalidBody(_) => error_response(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message),
            ApiError::Content(error) => error_response(error.status(), error.code(), message),
            ApiError::UnknownReplaced(_) => error_response(StatusCode::UNPROCESSABLE_ENTITY, "unknown_submission", message),
            ApiError::NotFailed { .. } => error_response(StatusCode::CONFLICT, "not_failed", message),
            ApiError::AlreadyReplaced { .. } => error_response(StatusCode::CONFLICT, "already_replaced", message),
            ApiError::BatchSize { .. } => error_response(StatusCode::UNPROCESSABLE_ENTITY, "invalid_batch_size", message),
            ApiError::InvalidItems(items) => {
                let body = ErrorBody { error: ErrorDetail { code: "invalid_items".into(), message, items } };
                (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
            }
            ApiError::InvalidIdempotencyKey => error_response(StatusCode::BAD_REQUEST, "invalid_idempotency_key", message),
            ApiError::IdempotencyKeyReused => error_response(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", message),
            ApiError::IdempotencyKeyInUse => {
                let mut response = error_response(StatusCode::CONFLICT, "idempotency_key_in_use", message);
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
                response
            }
            ApiError::RateLimited(decision) => {
                let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
                decision.annotate(&mut response);
                response
            }
            ApiError::BrokerUnavailable(ref error) => {
                tracing::warn!(%error, "answering 503: broker did not acknowledge");
                unavailable("broker_unavailable", "the event log is unavailable; nothing was stored, try again later", RETRY_AFTER_SECS)
            }
            ApiError::Database(ref error) => service_kit::http_error::database_error(error, &service_kit::http_error::DATABASE),
            ApiError::Keys(keyring::KeyError::Store(ref error)) => service_kit::http_error::database_error(error, &service_kit::http_error::DATABASE),
            ApiError::Keys(ref error) => {
                tracing::error!(%error, "answering 503: the account's data key is not usable");
                unavailable("key_unavailable", "the content cannot be sealed right now; nothing was stored, try again later", RETRY_AFTER_SECS)
            }
        }
    }
}
