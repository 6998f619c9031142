//! Every way authentication and the account endpoints can fail, and the HTTP answer for each.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use service_kit::http_error::{database_error, error_response, unavailable, BadRequest, DATABASE};

use crate::rate_limit::Decision;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// No credentials, or ones that do not identify a live session or token.
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("this needs the admin role")]
    Forbidden,
    #[error(
        "missing or wrong X-CSRF-Token header: cookie-authenticated requests that change something must send the token GET /api/session returns"
    )]
    CsrfRejected,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("{0}")]
    InvalidInput(String),
    #[error(transparent)]
    BadRequest(#[from] BadRequest),
    #[error("too many attempts; try again in {} seconds", .0.reset_secs.max(1))]
    RateLimited(Decision),
    #[error("no such token")]
    NotFound,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("too many sign-ins and sign-ups at once; try again in a second")]
    Busy,
    #[error("an account holds at most {0} live API tokens; revoke one first")]
    TooManyTokens(i64),
    #[error("this link is unknown, used or expired; ask for a new one")]
    InvalidLink,
    #[error("the email address is verified already")]
    AlreadyVerified,
    #[error("this server sends no email (no SMTP server is configured)")]
    MailUnavailable,
    #[error("the email could not be sent; try again later")]
    MailFailed(String),
    #[error("a bearer token is not a session: revoke it with DELETE /api/tokens/{{id}}")]
    NotASession,
    #[error("this is the last admin account: make another admin before deleting it")]
    LastAdmin,
    #[error("no account with id {0}")]
    NoSuchAccount(uuid::Uuid),
}

impl IntoResponse for AccountsError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            AccountsError::Unauthenticated(_) => {
                let mut response = error_response(StatusCode::UNAUTHORIZED, "unauthenticated", message);
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            AccountsError::Forbidden => error_response(StatusCode::FORBIDDEN, "forbidden", message),
            AccountsError::CsrfRejected => error_response(StatusCode::FORBIDDEN, "csrf_failed", message),
            AccountsError::InvalidCredentials => error_response(StatusCode::UNAUTHORIZED, "invalid_credentials", message),
            AccountsError::InvalidInput(_) => error_response(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message),
            AccountsError::BadRequest(error) => error.into_response(),
            AccountsError::RateLimited(decision) => {
                let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
                decision.annotate(&mut response);
                response
            }
            AccountsError::NotFound => error_response(StatusCode::NOT_FOUND, "not_found", message),
            AccountsError::Database(ref error) => database_error(error, &DATABASE),
            AccountsError::Busy => unavailable("busy", message, 1),
            AccountsError::TooManyTokens(_) => error_response(StatusCode::CONFLICT, "too_many_tokens", message),
            AccountsError::InvalidLink => error_response(StatusCode::BAD_REQUEST, "invalid_token", message),
            AccountsError::AlreadyVerified => error_response(StatusCode::CONFLICT, "already_verified", message),
            AccountsError::MailUnavailable => error_response(StatusCode::CONFLICT, "mail_unavailable", message),
            AccountsError::MailFailed(ref error) => {
                tracing::warn!(%error, "an account email could not be sent");
                error_response(StatusCode::BAD_GATEWAY, "mail_failed", message)
            }
            AccountsError::NotASession => error_response(StatusCode::BAD_REQUEST, "not_a_session", message),
            AccountsError::LastAdmin => error_response(StatusCode::CONFLICT, "last_admin", message),
            AccountsError::NoSuchAccount(_) => error_response(StatusCode::NOT_FOUND, "not_found", message),
            AccountsError::Hashing(ref error) => {
                tracing::error!(%error, "password hashing failed");
                error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}
