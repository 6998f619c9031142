//! Every way an admin request can fail, and the HTTP answer for each.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rdkafka::error::KafkaError;
use service_kit::http_error::{database_error, error_response, unavailable, BadRequest, DATABASE, RETRY_AFTER_SECS};

/// What an admin request that reads Kafka and the database may be answered while either is
/// unreachable (for the OpenAPI document).
#[derive(utoipa::IntoResponses)]
pub enum AdminUnavailable {
    /// `database_unavailable` or `kafka_unavailable`, with `Retry-After`.
    #[response(status = 503)]
    Unavailable(service_kit::http_error::ErrorBody),
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Not signed in, or not an admin (the account layer says which).
    #[error(transparent)]
    Accounts(#[from] accounts::AccountsError),
    #[error(transparent)]
    BadRequest(#[from] BadRequest),
    #[error("a rebuild is already running (here or in another process); see GET /admin/rebuild")]
    RebuildRunning,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("Kafka did not answer: {0}")]
    KafkaUnavailable(#[from] KafkaError),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            AdminError::Accounts(error) => error.into_response(),
            AdminError::BadRequest(error) => error.into_response(),
            AdminError::RebuildRunning => error_response(StatusCode::CONFLICT, "rebuild_running", message),
            AdminError::KafkaUnavailable(ref error) => {
                tracing::warn!(%error, "answering 503: Kafka unavailable");
                unavailable("kafka_unavailable", message, RETRY_AFTER_SECS)
            }
            AdminError::Database(ref error) => database_error(error, &DATABASE),
        }
    }
}
