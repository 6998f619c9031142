//! The account endpoints:
//!
//! - `POST /api/accounts` signs up; `GET /api/session` says who is signed in;
//!   `POST /api/session` signs in; `DELETE /api/session` signs out, ending the session on the
//!   server.
//! - `GET /api/tokens`, `POST /api/tokens` and `DELETE /api/tokens/{id}`: the caller's personal
//!   API tokens; a new token is shown once, in the answer that creates it.
//! - `PUT /api/account/password` changes the password; `DELETE /api/sessions` signs out
//!   everywhere; [`email`] serves what goes through the owner's mailbox.

mod email;
mod erasure;

use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use ipnet::{IpNet, Ipv6Net};
use serde::{Deserialize, Serialize};
use service_kit::http_error::{DatabaseUnavailable, ErrorBody, JsonBody, JsonBodyErrors, QueryParams, SignedIn, SignedInChange};
use service_kit::page::Page;
use uuid::Uuid;

use crate::store::{self, Account, TokenView};
use crate::{password, secret, Accounts, AccountsError, Caller, Credential, Role, SECURE_SESSION_COOKIE, SESSION_COOKIE};

/// Bodies here are a few short fields; anything bigger is refused before it is parsed.
const BODY_LIMIT: usize = 16 * 1024;
const MAX_TOKEN_NAME_CHARS: usize = 100;

pub fn routes(accounts: Accounts) -> Router {
    Router::new()
        .route("/api/accounts", post(sign_up))
        .route("/api/session", get(who_am_i).post(sign_in).delete(sign_out))
        .route("/api/tokens", get(list_tokens).post(create_token))
        .route("/api/tokens/{id}", delete(revoke_token))
        .route("/api/sessions", delete(sign_out_everywhere))
        .route("/api/account", delete(erasure::delete_own))
        .route("/api/accounts/{id}", delete(erasure::delete_any))
        .route("/api/account/password", axum::routing::put(change_password))
        .route("/api/account/verification", post(email::resend_verification))
        .route("/api/account/verify", post(email::verify))
        .route("/api/password-reset", post(email::request_reset))
        .route("/api/password-reset/confirm", post(email::confirm_reset))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(accounts)
}

/// No `Debug`: a password must never reach a log line.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Credentials {
    /// At most 254 characters, one `@`, no spaces.
    #[schema(
        example = "ada@example.com",
        max_length = 254,
        pattern = "^[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+@[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    email: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

/// The signed-in account, with the CSRF token the UI sends back on changes (none for a token).
/// No `Debug`, as for everything here that holds a secret.
#[derive(Serialize, utoipa::ToSchema)]
struct SessionView {
    account: Account,
    csrf_token: Option<String>,
}

/// What a request that hashes a password may be answered when too many are hashing, or the
/// database is unreachable.
#[derive(utoipa::IntoResponses)]
pub enum HashingOrDatabaseBusy {
    /// `busy` (too many sign-ins and sign-ups at once) or `database_unavailable`, with `Retry-After`.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// What an endpoint that must not tell who has an account answers, whoever asked.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Notice {
    message: &'static str,
}

/// Signs up. The answer is the same whether the address has an account or not, and takes as
/// long (both hash the password), so it tells a stranger nothing: a new account's address gets
/// the link that verifies it, an existing account's owner a note that someone tried. Then sign in.
#[utoipa::path(post, path = "/api/accounts", tag = "accounts", request_body = Credentials, security(()), responses(
    (status = 202, description = "the account exists now unless it did already; sign in with `POST /api/session`", body = Notice),
    (status = 429, description = "`rate_limited`: too many sign-ups from the address", body = ErrorBody),
    JsonBodyErrors,
    (status = 422, description = "`invalid_body`: a bad email address, a short password, a missing or unknown field", body = ErrorBody),
    HashingOrDatabaseBusy,
))]
async fn sign_up(
    State(accounts): State<Accounts>,
    ClientAddress(address): ClientAddress,
    body: JsonBody<Credentials>,
) -> Result<Response, AccountsError> {
    // The cheap checks first; the hash (19 MiB, tens of milliseconds of a core) last.
    let JsonBody(credentials) = body;
    let email = store::normalize_email(&credentials.email)?;
    password::check_new(&credentials.password)?;
    accounts.limiter.require(accounts.settings.sign_up_per_address(), &address).await?;
    let hash = password::hash(credentials.password).await?;
    let mail = match store::create_account(&accounts.pool, &email, &hash, Role::User).await? {
        Some(account) => {
            tracing::info!(account_id = %account.id, "account created");
            Some((account, email::Message::Link(crate::mail::Purpose::Verify)))
        }
        None => store::find_by_email(&accounts.pool, &email).await?.map(|(account, _)| {
            tracing::info!(account_id = %account.id, %address, "sign-up with the address of an existing account");
            (account, email::Message::SignUpAttempt)
        }),
    };
    if let (Some((account, message)), Some(_)) = (mail, &accounts.mail) {
        // In the background, as the answer must not wait for (nor tell of) a mail; a lost
        // verification link is resent on request.
        let accounts = accounts.clone();
        tokio::spawn(async move {
            if let Err(error) = email::send(&accounts, &account, message).await {
                tracing::warn!(account_id = %account.id, error = ?error, "cannot mail the account's owner");
            }
        });
    }
    let notice = Notice { message: "unless this address has an account already, it has one now: sign in; either way, its owner gets an email" };
    Ok((StatusCode::ACCEPTED, Json(notice)).into_response())
}

/// Signs in with email and password: a session (the `cp_session` cookie).
#[utoipa::path(post, path = "/api/session", tag = "accounts", request_body = Credentials, security(()), responses(
    (status = 200, description = "signed in", body = SessionView),
    (status = 401, description = "`invalid_credentials`", body = ErrorBody),
    (status = 429, description = "`rate_limited`: too many attempts for the account or the address", body = ErrorBody),
    JsonBodyErrors,
    (status = 422, description = "`invalid_body`", body = ErrorBody),
    HashingOrDatabaseBusy,
))]
async fn sign_in(
    State(accounts): State<Accounts>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    jar: CookieJar,
    body: JsonBody<Credentials>,
) -> Result<Response, AccountsError> {
    let JsonBody(credentials) = body;
    let email = store::normalize_email(&credentials.email).map_err(|_| AccountsError::InvalidCredentials)?;
    // Both limits count every attempt, so guessing one account's password from many addresses,
    // or many accounts' from one address, is slowed down alike.
    let settings = &accounts.settings;
    accounts.limiter.require(settings.sign_in_per_address(), &address).await?;
    let (account, stored) = store::find_by_email(&accounts.pool, &email).await?.unzip();
    accounts.limiter.require(settings.sign_in_per_account(), &attempts_bucket(&email, stored.as_deref())).await?;
    // With no such account, `verify` still spends the time of a check: timing does not tell
    // which addresses have accounts.
    let verified = password::verify(credentials.password, stored.clone()).await?;
    let signed_in = match (account, stored) {
        (Some(account), Some(stored)) if verified => start_session(&accounts, &headers, jar, account, &stored).await?,
        _ => None,
    };
    match signed_in {
        Some((jar, view)) => {
            tracing::info!(account_id = %view.account.id, "signed in");
            Ok((jar, Json(view)).into_response())
        }
        None => {
            tracing::info!(%address, "sign-in refused");
            Err(AccountsError::InvalidCredentials)
        }
    }
}

/// Whose sign-in attempts count together: the address's, per password it has had. Guesses
/// lock an account out for the limit's window, but a password reset (or change) starts a new
/// bucket, so the owner's way back from a lockout a stranger caused is the reset link.
fn attempts_bucket(email: &str, password_hash: Option<&str>) -> String {
    match password_hash {
        Some(hash) => format!("{email}#{}", hex::encode(&secret::digest(hash)[..8])),
        None => email.to_owned(),
    }
}

/// A session for `account`, unless its password is no longer `verified_hash`: one changed
/// while the password was checked ended every session, this one included.
async fn start_session(
    accounts: &Accounts,
    headers: &HeaderMap,
    jar: CookieJar,
    account: Account,
    verified_hash: &str,
) -> Result<Option<(CookieJar, SessionView)>, AccountsError> {
    let cookie_secret = secret::random_hex();
    let csrf_token = secret::random_hex();
    let ttl_hours = accounts.settings.session_ttl_hours;
    let session = store::NewSession { token_digest: &secret::digest(&cookie_secret), csrf_token: &csrf_token, ttl_hours };
    if !store::create_session(&accounts.pool, account.id, verified_hash, session).await? {
        return Ok(None);
    }
    let secure = accounts.settings.secure_cookies.unwrap_or_else(|| over_https(headers) || !on_loopback(headers));
    let name = if secure { SECURE_SESSION_COOKIE } else { SESSION_COOKIE };
    let cookie = Cookie::build((name, cookie_secret))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .path("/")
        .max_age(cookie::time::Duration::hours(i64::from(ttl_hours)));
    Ok(Some((jar.add(cookie), SessionView { account, csrf_token: Some(csrf_token) })))
}

/// Whether the proxy in front says the client spoke HTTPS.
fn over_https(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// Whether the page was asked for on this machine (`localhost`, a loopback address): the one
/// place plain HTTP is normal, so the only one whose session cookie is not `Secure` by default.
fn on_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(axum::http::header::HOST).and_then(|host| host.to_str().ok()) else { return false };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The session cookie removed, by either name.
fn without_session_cookie(jar: CookieJar) -> CookieJar {
    jar.remove(Cookie::build((SESSION_COOKIE, "")).path("/")).remove(Cookie::build((SECURE_SESSION_COOKIE, "")).path("/").secure(true))
}

/// Who is signed in (for a session, with its CSRF token).
#[utoipa::path(get, path = "/api/session", tag = "accounts", responses(
    (status = 200, description = "the caller", body = SessionView),
    SignedIn,
    DatabaseUnavailable,
))]
async fn who_am_i(State(accounts): State<Accounts>, caller: Caller) -> Result<Json<SessionView>, AccountsError> {
    let account = store::account(&accounts.pool, caller.account_id).await?.ok_or(AccountsError::Unauthenticated("the account no longer exists"))?;
    let csrf_token = match caller.credential {
        Credential::Session { csrf_token, .. } => Some(csrf_token),
        Credential::Token { .. } => None,
    };
    Ok(Json(SessionView { account, csrf_token }))
}

/// Signs out: ends the session on the server.
#[utoipa::path(delete, path = "/api/session", tag = "accounts", responses(
    (status = 204, description = "signed out"),
    (status = 400, description = "`not_a_session`: the request carries an API token, which this does not end", body = ErrorBody),
    SignedInChange,
    DatabaseUnavailable,
))]
async fn sign_out(State(accounts): State<Accounts>, caller: Caller, jar: CookieJar) -> Result<Response, AccountsError> {
    let Credential::Session { token_digest, .. } = &caller.credential else {
        return Err(AccountsError::NotASession);
    };
    store::end_session(&accounts.pool, token_digest).await?;
    tracing::info!(account_id = %caller.account_id, "signed out");
    Ok((StatusCode::NO_CONTENT, without_session_cookie(jar)).into_response())
}

/// Signs out everywhere: ends every session of the caller's account, this one too.
#[utoipa::path(delete, path = "/api/sessions", tag = "accounts", responses(
    (status = 204, description = "every session ended"),
    SignedInChange,
    DatabaseUnavailable,
))]
async fn sign_out_everywhere(State(accounts): State<Accounts>, caller: Caller, jar: CookieJar) -> Result<Response, AccountsError> {
    let mut connection = accounts.pool.acquire().await?;
    let ended = store::end_sessions(&mut connection, caller.account_id, None).await?;
    tracing::info!(account_id = %caller.account_id, sessions = ended, "signed out everywhere");
    Ok((StatusCode::NO_CONTENT, without_session_cookie(jar)).into_response())
}

/// No `Debug`: it holds passwords.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    new_password: String,
    /// Revoke every API token of the account too.
    #[serde(default)]
    revoke_tokens: bool,
}

/// Changes the caller's password, the current one re-entered: every other session ends (the
/// one asking stays signed in), and, when asked, every API token is revoked.
#[utoipa::path(put, path = "/api/account/password", tag = "accounts", request_body = PasswordChange, responses(
    (status = 204, description = "changed"),
    (status = 401, description = "`invalid_credentials`: the current password is wrong", body = ErrorBody),
    (status = 429, description = "`rate_limited`: as many tries as sign-in allows", body = ErrorBody),
    SignedInChange,
    JsonBodyErrors,
    (status = 422, description = "`invalid_body`: a new password under 8 or over 1024 characters", body = ErrorBody),
    HashingOrDatabaseBusy,
))]
async fn change_password(State(accounts): State<Accounts>, caller: Caller, body: JsonBody<PasswordChange>) -> Result<StatusCode, AccountsError> {
    let JsonBody(change) = body;
    password::check_new(&change.new_password)?;
    confirm_password(&accounts, &caller, change.current_password).await?;
    let hash = password::hash(change.new_password).await?;
    let keep = match &caller.credential {
        Credential::Session { token_digest, .. } => Some(token_digest.as_slice()),
        Credential::Token { .. } => None,
    };
    let mut tx = accounts.pool.begin().await?;
    store::replace_password(&mut tx, caller.account_id, &hash, keep, change.revoke_tokens).await?;
    tx.commit().await?;
    accounts.tokens.forget_all();
    tracing::info!(account_id = %caller.account_id, revoke_tokens = change.revoke_tokens, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// Days until it stops working (1 to 3650); never when absent.
    #[schema(minimum = 1, maximum = 3650)]
    #[serde(default, deserialize_with = "whole_number")]
    expires_in_days: Option<u32>,
}

/// JSON Schema's `integer` is any number without a fraction, so `23.0` is one; serde's `u32`
/// alone refuses it.
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let Some(number) = Option::<f64>::deserialize(deserializer)? else { return Ok(None) };
    if number.fract() != 0.0 || !(0.0..=f64::from(u32::MAX)).contains(&number) {
        return Err(serde::de::Error::custom(format!("expected a whole number from 0 to {}, found {number}", u32::MAX)));
    }
    // Whole and in range: the cast is exact.
    Ok(Some(number as u32))
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
    (status = 409, description = "`too_many_tokens`: the account holds 100 live tokens", body = ErrorBody),
    SignedInChange,
    JsonBodyErrors,
    (status = 422, description = "`invalid_body`", body = ErrorBody),
    DatabaseUnavailable,
))]
async fn create_token(State(accounts): State<Accounts>, caller: Caller, body: JsonBody<NewToken>) -> Result<Response, AccountsError> {
    let JsonBody(new) = body;
    // The length as sent (what the document's maxLength counts); then what is kept, trimmed.
    let name = new.name.trim();
    if name.is_empty() || new.name.chars().count() > MAX_TOKEN_NAME_CHARS || name.contains('\0') {
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

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TokenListQuery {
    /// 1 to 500; 50 when absent.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<uuid::Uuid>)]
    cursor: Option<Uuid>,
}

/// The caller's API tokens (never the tokens themselves), live, expired and revoked, newest
/// first, a page at a time: revoking and making tokens in a loop cannot grow one answer.
#[utoipa::path(get, path = "/api/tokens", tag = "accounts", params(TokenListQuery), responses(
    (status = 200, description = "one page, newest first", body = Page<TokenView>),
    (status = 400, description = "`invalid_query`", body = ErrorBody),
    SignedIn,
    DatabaseUnavailable,
))]
async fn list_tokens(
    State(accounts): State<Accounts>,
    caller: Caller,
    QueryParams(query): QueryParams<TokenListQuery>,
) -> Result<Json<Page<TokenView>>, AccountsError> {
    let limit = service_kit::page::limit(query.limit)?;
    Ok(Json(store::list_tokens(&accounts.pool, caller.account_id, limit, query.cursor).await?))
}

/// Revokes one of the caller's API tokens.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "accounts", params(("id" = uuid::Uuid, Path, description = "the token's id")), responses(
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

/// Checks the caller's password, re-entered to confirm a change. Guessing it here is guessing
/// it at sign-in: the same counter, by email.
async fn confirm_password(accounts: &Accounts, caller: &Caller, password: String) -> Result<(), AccountsError> {
    let (account, stored) =
        store::find_by_id(&accounts.pool, caller.account_id).await?.ok_or(AccountsError::Unauthenticated("the account no longer exists"))?;
    accounts.limiter.require(accounts.settings.sign_in_per_account(), &account.email).await?;
    if !password::verify(password, Some(stored)).await? {
        return Err(AccountsError::InvalidCredentials);
    }
    Ok(())
}

/// The OpenAPI description of the account endpoints.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    sign_up,
    sign_in,
    who_am_i,
    sign_out,
    sign_out_everywhere,
    change_password,
    create_token,
    list_tokens,
    revoke_token,
    email::resend_verification,
    email::verify,
    email::request_reset,
    email::confirm_reset,
    erasure::delete_own,
    erasure::delete_any,
))]
pub struct AccountsApi;

/// The client's address, as limits key it: the peer's, or behind a trusted proxy the right-most
/// `X-Forwarded-For` hop that is not one ([`client_address`]); an IPv6 address by its /64.
pub struct ClientAddress(pub String);

impl<S> FromRequestParts<S> for ClientAddress
where
    Accounts: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ClientAddress, Self::Rejection> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(ClientAddress("unknown".into()));
        };
        let trusted = &Accounts::from_ref(state).settings.trusted_proxies;
        let forwarded = parts.headers.get_all("x-forwarded-for").iter().filter_map(|value| value.to_str().ok());
        Ok(ClientAddress(limit_key(client_address(peer.ip(), forwarded, trusted))))
    }
}

/// The address a request came from. A peer that is not a trusted proxy is the client, whatever
/// it says in `X-Forwarded-For`. Behind trusted proxies, the hops are read from the right (the
/// last proxy's view) and the first one no trusted proxy holds is the client: hops to its left
/// are whatever that client chose to send.
pub fn client_address<'a>(peer: IpAddr, forwarded_for: impl Iterator<Item = &'a str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|value| value.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A hop that is not an address (`unknown`, a port) ends what can be believed.
        let Ok(ip) = hop.trim().parse::<IpAddr>() else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// How limits key an address: IPv4 as it is, IPv6 by its /64, which one subscriber holds whole.
fn limit_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => Ipv6Net::new(v6, 64).map_or_else(|_| v6.to_string(), |net| net.trunc().to_string()),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|net| net.parse().unwrap()).collect()
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_right_most_hop_they_do_not_hold() {
        let trusted = nets(&["10.0.0.0/8", "192.168.1.1/32"]);
        let client = |peer: &str, forwarded: &[&str]| client_address(peer.parse().unwrap(), forwarded.iter().copied(), &trusted).to_string();
        // The gateway appended what it saw; what the client sent before it is not believed.
        assert_eq!(client("10.0.0.5", &["6.6.6.6, 203.0.113.7"]), "203.0.113.7");
        assert_eq!(client("10.0.0.5", &["6.6.6.6", "203.0.113.7, 192.168.1.1"]), "203.0.113.7");
        // Not from a trusted proxy: the peer, whatever it says.
        assert_eq!(client("198.51.100.9", &["203.0.113.7"]), "198.51.100.9");
        // Every hop trusted, or none sent: the left-most known.
        assert_eq!(client("10.0.0.5", &["10.1.1.1"]), "10.1.1.1");
        assert_eq!(client("10.0.0.5", &[]), "10.0.0.5");
        // A hop that is not an address stops the walk at what was believed so far.
        assert_eq!(client("10.0.0.5", &["203.0.113.7, unknown"]), "10.0.0.5");
    }

    #[test]
    fn nobody_is_trusted_unless_configured() {
        let address = client_address("127.0.0.1".parse().unwrap(), ["203.0.113.7"].into_iter(), &[]);
        assert_eq!(address.to_string(), "127.0.0.1");
    }

    #[test]
    fn only_a_page_asked_for_on_this_machine_gets_a_cookie_that_is_not_secure() {
        let with_host = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(axum::http::header::HOST, host.parse().unwrap());
            on_loopback(&headers)
        };
        for host in ["localhost", "localhost:8000", "127.0.0.1:8000", "127.8.9.1", "[::1]:8000", "LOCALHOST"] {
            assert!(with_host(host), "{host}");
        }
        for host in ["content-processor.example.com", "192.168.1.10:8000", "[2001:db8::1]:443", "localhost.example.com"] {
            assert!(!with_host(host), "{host}");
        }
        assert!(!on_loopback(&HeaderMap::new()), "no Host: not known to be local");
    }

    #[test]
    fn a_whole_number_may_be_written_with_a_fraction_of_zero() {
        let days = |body: &str| serde_json::from_str::<NewToken>(body).map(|token| token.expires_in_days).map_err(|error| error.to_string());
        assert_eq!(days(r#"{"name": "a", "expires_in_days": 23.0}"#), Ok(Some(23)));
        assert_eq!(days(r#"{"name": "a", "expires_in_days": 23}"#), Ok(Some(23)));
        assert_eq!(days(r#"{"name": "a", "expires_in_days": null}"#), Ok(None));
        assert_eq!(days(r#"{"name": "a"}"#), Ok(None));
        for refused in ["23.5", "-1", "1e300", "\"23\""] {
            assert!(days(&format!(r#"{{"name": "a", "expires_in_days": {refused}}}"#)).is_err(), "{refused}");
        }
    }

    #[test]
    fn ipv6_addresses_are_keyed_by_their_64() {
        assert_eq!(limit_key("2001:db8:1:2:aaaa::1".parse().unwrap()), "2001:db8:1:2::/64");
        assert_eq!(limit_key("2001:db8:1:2:bbbb::9".parse().unwrap()), "2001:db8:1:2::/64");
        assert_eq!(limit_key("::ffff:203.0.113.7".parse().unwrap()), "203.0.113.7");
        assert_eq!(limit_key("203.0.113.7".parse().unwrap()), "203.0.113.7");
    }
}
