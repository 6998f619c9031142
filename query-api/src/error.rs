//! Every way a query can fail, and the HTTP answer for each.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use service_kit::http_error::{database_error, error_response, BadRequest, DatabaseName};

/// The query API's database is the read model, and a 503 says so.
const READ_MODEL: DatabaseName =
    DatabaseName { unavailable_code: "read_model_unavailable", unavailable_message: "the read model is unavailable; try again shortly" };

/// What any query may be answered while the read model is unreachable (for the OpenAPI
/// document).
#[derive(utoipa::IntoResponses)]
pub enum ReadModelUnavailable {
    /// `read_model_unavailable`, with `Retry-After`.
    #[response(status = 503)]
    Unavailable(service_kit::http_error::ErrorBody),
}

/// What a read with `?position=` may be answered when its account has too many waiting.
#[derive(utoipa::IntoResponses)]
pub enum WaitRefused {
    /// `too_many_waits`: the account has 4 reads waiting for their writes on this server, with `Retry-After`.
    #[response(status = 429)]
    TooManyWaits(service_kit::http_error::ErrorBody),
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Not signed in (the account layer says why).
    #[error(transparent)]
    Accounts(#[from] accounts::AccountsError),
    #[error("no submission with id {0}")]
    NotFound(uuid::Uuid),
    #[error("no batch with id {0}")]
    BatchNotFound(uuid::Uuid),
    #[error(transparent)]
    BadRequest(#[from] BadRequest),
    #[error("position {0} is past the end of the log: no write was acknowledged there")]
    PositionPastEnd(String),
    #[error("this account has {0} live streams open here already; close one first")]
    TooManyStreams(usize),
    #[error("this account has {0} reads waiting for their writes here already; try again in a second")]
    TooManyWaits(usize),
    #[error("read model: {0}")]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            ApiError::Accounts(error) => error.into_response(),
            ApiError::NotFound(_) | ApiError::BatchNotFound(_) => error_response(StatusCode::NOT_FOUND, "not_found", message),
            ApiError::BadRequest(error) => error.into_response(),
            ApiError::PositionPastEnd(_) => error_response(StatusCode::BAD_REQUEST, "position_past_end", message),
            ApiError::TooManyStreams(_) => error_response(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", message),
            ApiError::TooManyWaits(_) => {
                let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, "too_many_waits", message);
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
                response
            }
            ApiError::Database(ref error) => database_error(error, &READ_MODEL),
        }
    }
}
