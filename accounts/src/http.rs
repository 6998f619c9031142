//! The account endpoints:
//!
//! - `POST /api/accounts` signs up (and in); `GET /api/session` says who is signed in;
//!   `POST /api/session` signs in; `DELETE /api/session` signs out, ending the session on the
//!   server.
//! - `GET /api/tokens`, `POST /api/tokens` and `DELETE /api/tokens/{id}`: the caller's personal
//!   API tokens; a new token is shown once, in the answer that creates it.

use std::net::SocketAddr;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::{Deserialize, Serialize};
use service_kit::http_error::{DatabaseUnavailable, ErrorBody, JsonBodyErrors, SignedIn, SignedInChange};
use uuid::Uuid;

use crate::store::{self, Account, TokenView};
use crate::{password, secret, Accounts, AccountsError, Caller, Credential, Role, SESSION_COOKIE};

/// Bodies here are a few short fields; anything bigger is refused before it is parsed.
const BODY_LIMIT: usize = 16 * 1024;
const MAX_TOKEN_NAME_CHARS: usize = 100;

pub fn routes(accounts: Accounts) -> Router {
    Router::new()
        .route("/api/accounts", post(sign_up))
        .route("/api/session", get(who_am_i).post(sign_in).delete(sign_out))
        .route("/api/tokens", get(list_tokens).post(create_token))
        .route("/api/tokens/{id}", delete(revoke_token))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(accounts)
}

/// No `Debug`: a password must never reach a log line.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Credentials {
    #[schema(example = "ada@example.com")]
    email: String,
    password: String,
}

/// The signed-in account, with the CSRF token the UI sends back on changes (none for a token).
/// No `Debug`, as for everything here that holds a secret.
#[derive(Serialize, utoipa::ToSchema)]
struct SessionView {
    account: Account,
    csrf_token: Option<String>,
}

/// Signs up and in: creates a user account and a session (the `cp_session` cookie).
#[utoipa::path(post, path = "/api/accounts", tag = "accounts", request_body = Credentials, security(()), responses(
    (status = 201, description = "the account, signed in", body = SessionView),
    (status = 409, description = "`email_taken`", body = ErrorBody),
    JsonBodyErrors,
    (status = 422, description = "`invalid_body`: a bad email address, a short password, a missing or unknown field", body = ErrorBody),
    DatabaseUnavailable,
))]
async fn sign_up(
    State(accounts): State<Accounts>,
    headers: HeaderMap,
    jar: CookieJar,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Response, AccountsError> {
    let Json(credentials) = body?;
    let email = store::normalize_email(&credentials.email)?;
    password::check_new(&credentials.password)?;
    let hash = password::hash(credentials.password).await?;
    let account = store::create_account(&accounts.pool, &email, &hash, Role::User).await?;
    tracing::info!(account_id = %account.id, "account created");
    let (jar, view) = start_session(&accounts, &headers, jar, account).await?;
    Ok((StatusCode::CREATED, jar, Json(view)).into_response())
}

/// Signs in with email and password: a session (the `cp_session` cookie).
#[utoipa::path(post, path = "/api/session", tag = "accounts", request_body = Credentials, security(()), responses(
    (status = 200, description = "signed in", body = SessionView),
    (status = 401, description = "`invalid_credentials`", body = ErrorBody),
    (status = 429, description = "`rate_limited`: too many attempts for the account or the address", body = ErrorBody),
    JsonBodyErrors,
    (status = 422, description = "`invalid_body`", body = ErrorBody),
    DatabaseUnavailable,
))]
async fn sign_in(
    State(accounts): State<Accounts>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    jar: CookieJar,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Response, AccountsError> {
    let Json(credentials) = body?;
    let email = store::normalize_email(&credentials.email).map_err(|_| AccountsError::InvalidCredentials)?;
    // Both limits count every attempt, so guessing one account's password from many addresses,
    // or many accounts' from one address, is slowed down alike.
    let settings = &accounts.settings;
    for (policy, subject) in [(settings.sign_in_per_address(), address.as_str()), (settings.sign_in_per_account(), email.as_str())] {
        let decision = accounts.limiter.take(policy, subject, 1).await?;
        if !decision.allowed {
            return Err(AccountsError::RateLimited(decision));
        }
    }
    // With no such account, `verify` still spends the time of a check: timing does not tell
    // which addresses have accounts.
    let (account, stored) = store::find_by_email(&accounts.pool, &email).await?.unzip();
    let verified = password::verify(credentials.password, stored).await;
    match account {
        Some(account) if verified => {
            tracing::info!(account_id = %account.id, "signed in");
            let (jar, view) = start_session(&accounts, &headers, jar, account).await?;
            Ok((jar, Json(view)).into_response())
        }
        _ => {
            tracing::info!(%address, "sign-in refused");
            Err(AccountsError::InvalidCredentials)
        }
    }
}

async fn start_session(
    accounts: &Accounts,
    headers: &HeaderMap,
    jar: CookieJar,
    account: Account,
) -> Result<(CookieJar, SessionView), AccountsError> {
    let cookie_secret = secret::random_hex();
    let csrf_token = secret::random_hex();
    let ttl_hours = accounts.settings.session_ttl_hours;
    store::create_session(&accounts.pool, account.id, &secret::digest(&cookie_secret), &csrf_token, ttl_hours).await?;
    let over_https = headers.get("x-forwarded-proto").is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = Cookie::build((SESSION_COOKIE, cookie_secret))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(accounts.settings.secure_cookies || over_https)
        .path("/")
        .max_age(cookie::time::Duration::hours(i64::from(ttl_hours)));
    Ok((jar.add(cookie), SessionView { account, csrf_token: Some(csrf_token) }))
}

/// Who is signed in (for a session, with its CSRF token).
#[utoipa::path(get, path = "/api/session", tag = "accounts", responses(
    (status = 200, description = "the caller", body = SessionView),
    SignedIn,
    DatabaseUnavailable,
))]
async fn who_am_i(State(accounts): State<Accounts>, caller: Caller) -> Result<Json<SessionView>, AccountsError> {
    let account = store::account(&accounts.pool, caller.account_id)
        .await?
        .ok_or(AccountsError::Unauthenticated("the account no longer exists"))?;
    let csrf_token = match caller.credential {
        Credential::Session { csrf_token, .. } => Some(csrf_token),
        Credential::Token { .. } => None,
    };
    Ok(Json(SessionView { account, csrf_token }))
}

/// Signs out: ends the session on the server (with a token: nothing to end).
#[utoipa::path(delete, path = "/api/session", tag = "accounts", responses(
    (status = 204, description = "signed out"),
    SignedInChange,
    DatabaseUnavailable,
))]
async fn sign_out(State(accounts): State<Accounts>, caller: Caller, jar: CookieJar) -> Result<Response, AccountsError> {
    if let Credential::Session { token_digest, .. } = &caller.credential {
        store::end_session(&accounts.pool, token_digest).await?;
        tracing::info!(account_id = %caller.account_id, "signed out");
    }
    let removal = Cookie::build((SESSION_COOKIE, "")).path("/");
    Ok((StatusCode::NO_CONTENT, jar.remove(removal)).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    /// Days until it stops working; never when absent.
    expires_in_days: Option<u32>,
}

/// A new token: the only time the token itself is shown.
#[derive(Serialize, utoipa::ToSchema)]
struct CreatedToken {
    #[serde(flatten)]
    view: TokenView,
    token: String,
}

/// Creates a personal API token, sent as `Authorization: Bearer <token>`. The token is in this
/// answer only.
#[utoipa::path(post, path = "/api/tokens", tag = "accounts", request_body = NewToken, responses(
    (status = 201, description = "the token, shown once", body = CreatedToken),
    SignedInChange,
    JsonBodyErrors,
    (status = 422, description = "`invalid_body`", body = ErrorBody),
    DatabaseUnavailable,
))]
async fn create_token(
    State(accounts): State<Accounts>,
    caller: Caller,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<Response, AccountsError> {
    let Json(new) = body?;
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > MAX_TOKEN_NAME_CHARS || name.contains('\0') {
        return Err(AccountsError::InvalidInput(format!("name must be 1 to {MAX_TOKEN_NAME_CHARS} characters")));
    }
    if new.expires_in_days.is_some_and(|days| !(1..=3650).contains(&days)) {
        return Err(AccountsError::InvalidInput("expires_in_days must be between 1 and 3650".into()));
    }
    let token = secret::new_api_token();
    let view = store::create_token(&accounts.pool, caller.account_id, name, &secret::digest(&token), new.expires_in_days).await?;
    tracing::info!(account_id = %caller.account_id, token_id = %view.id, "API token created");
    Ok((StatusCode::CREATED, Json(CreatedToken { view, token })).into_response())
}

/// The caller's API tokens (never the tokens themselves).
#[utoipa::path(get, path = "/api/tokens", tag = "accounts", responses(
    (status = 200, description = "newest first", body = [TokenView]),
    SignedIn,
    DatabaseUnavailable,
))]
async fn list_tokens(State(accounts): State<Accounts>, caller: Caller) -> Result<Json<Vec<TokenView>>, AccountsError> {
    Ok(Json(store::list_tokens(&accounts.pool, caller.account_id).await?))
}

/// Revokes one of the caller's API tokens.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "accounts", params(("id" = String, Path, description = "the token's id")), responses(
    (status = 204, description = "revoked"),
    SignedInChange,
    (status = 404, description = "`not_found`: not one of the caller's tokens", body = ErrorBody),
    DatabaseUnavailable,
))]
async fn revoke_token(
    State(accounts): State<Accounts>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, AccountsError> {
    // Any id that is not one of the caller's tokens, well-formed or not, is "no such token".
    let id: Option<Uuid> = path.ok().and_then(|Path(raw)| raw.parse().ok());
    let revoked = match id {
        Some(id) => store::revoke_token(&accounts.pool, caller.account_id, id).await?,
        None => false,
    };
    if !revoked {
        return Err(AccountsError::NotFound);
    }
    // Every process hears of it through the trigger's NOTIFY; this one need not wait for that.
    accounts.tokens.forget_all();
    tracing::info!(account_id = %caller.account_id, token_id = ?id, "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI description of the account endpoints.
#[derive(utoipa::OpenApi)]
#[openapi(paths(sign_up, sign_in, who_am_i, sign_out, create_token, list_tokens, revoke_token))]
pub struct AccountsApi;

/// The client's IP address as the server sees it (behind a proxy: the proxy's), for limits.
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientAddress, Self::Rejection> {
        let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip().to_string());
        Ok(ClientAddress(address.unwrap_or_else(|| "unknown".into())))
    }
}
