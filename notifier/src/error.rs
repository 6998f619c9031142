//! Every way a notification request can fail, and the HTTP answer for each.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use service_kit::http_error::{error_response, BadRequest};

use crate::ssrf::UrlRefused;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Accounts(#[from] accounts::AccountsError),
    /// The body is not acceptable JSON (axum says why).
    #[error("{0}")]
    InvalidBody(String),
    #[error(transparent)]
    UrlRefused(#[from] UrlRefused),
    #[error("an account has at most {0} webhook endpoints")]
    TooManyEndpoints(i64),
    #[error(transparent)]
    BadRequest(#[from] BadRequest),
    #[error("no webhook endpoint with id {0}")]
    NotFound(uuid::Uuid),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            ApiError::Accounts(error) => error.into_response(),
            ApiError::InvalidBody(_) => error_response(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message),
            ApiError::UrlRefused(_) => error_response(StatusCode::UNPROCESSABLE_ENTITY, "url_refused", message),
            ApiError::TooManyEndpoints(_) => error_response(StatusCode::CONFLICT, "too_many_endpoints", message),
            ApiError::BadRequest(error) => error.into_response(),
            ApiError::NotFound(_) => error_response(StatusCode::NOT_FOUND, "not_found", message),
            ApiError::Database(ref error) => service_kit::http_error::database_error(error, &service_kit::http_error::DATABASE),
        }
    }
}
