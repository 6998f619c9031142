//! Every way an admin request can fail, and the HTTP answer for each.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rdkafka::error::KafkaError;
use service_kit::http_error::{error_response, unavailable};

const RETRY_AFTER_SECS: u64 = 2;

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
    #[error("{0}")]
    InvalidQuery(String),
    #[error("a rebuild is already running (here or in another process); see GET /admin/rebuild")]
    RebuildRunning,
    #[error("the database is unavailable: {0}")]
    DatabaseUnavailable(#[source] sqlx::Error),
    #[error("internal error")]
    Database(#[source] sqlx::Error),
    #[error("Kafka did not answer: {0}")]
    KafkaUnavailable(#[from] KafkaError),
}

impl From<sqlx::Error> for AdminError {
    fn from(error: sqlx::Error) -> Self {
        if service_kit::postgres::is_unavailable(&error) {
            AdminError::DatabaseUnavailable(error)
        } else {
            AdminError::Database(error)
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            AdminError::Accounts(error) => error.into_response(),
            AdminError::InvalidQuery(_) => error_response(StatusCode::BAD_REQUEST, "invalid_query", message),
            AdminError::RebuildRunning => error_response(StatusCode::CONFLICT, "rebuild_running", message),
            AdminError::DatabaseUnavailable(ref error) => {
                tracing::warn!(%error, "answering 503: database unavailable");
                unavailable("database_unavailable", message, RETRY_AFTER_SECS)
            }
            AdminError::KafkaUnavailable(ref error) => {
                tracing::warn!(%error, "answering 503: Kafka unavailable");
                unavailable("kafka_unavailable", message, RETRY_AFTER_SECS)
            }
            AdminError::Database(ref error) => {
                tracing::error!(%error, "admin query failed");
                error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}
