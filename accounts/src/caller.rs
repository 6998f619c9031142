//! Who a request comes from: [`Caller`], extracted from a bearer token or a session cookie.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use axum_extra::extract::cookie::CookieJar;
use serde::Serialize;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::{secret, store, Accounts, AccountsError};

/// The browser session cookie: HttpOnly, SameSite=Strict, holding a random secret whose digest
/// is the session's key. Its name when it is `Secure`, [`SECURE_SESSION_COOKIE`], carries the
/// `__Host-` prefix: browsers then take it only over HTTPS, for this host alone, for every path,
/// so no sibling domain or plain-HTTP page can plant or shadow it.
pub const SESSION_COOKIE: &str = "cp_session";
pub const SECURE_SESSION_COOKIE: &str = "__Host-cp_session";
/// The header carrying the session's CSRF token on cookie requests that change something.
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    /// Sees every submission and reaches `/admin/*`.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl TryFrom<String> for Role {
    type Error = AccountsError;

    fn try_from(text: String) -> Result<Role, AccountsError> {
        match text.as_str() {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            other => Err(AccountsError::Database(sqlx::Error::Decode(format!("unknown role {other:?}").into()))),
        }
    }
}

/// How the caller proved who it is.
#[derive(Clone)]
pub enum Credential {
    /// A browser session; `token_digest` keys it (sign-out deletes it).
    Session { token_digest: Vec<u8>, csrf_token: String },
    /// A personal API token.
    Token { id: Uuid },
}

/// Shows which kind, never the session's secrets: a logged caller must not leak them.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Session { .. } => f.write_str("Session(..)"),
            Credential::Token { id } => f.debug_struct("Token").field("id", id).finish(),
        }
    }
}

/// An authenticated caller. Taking it as an extractor makes a route answer 401 without valid
/// credentials, and 403 for a cookie request that changes something without the CSRF token
/// (a bearer token is never sent by a browser on its own, so it needs none).
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: Uuid,
    pub role: Role,
    pub credential: Credential,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whose submissions the caller sees: its own, or everyone's (`None`) for an admin.
    pub fn visible_owner(&self) -> Option<Uuid> {
        (!self.is_admin()).then_some(self.account_id)
    }
}

impl<S> FromRequestParts<S> for Caller
where
    Accounts: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AccountsError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller, AccountsError> {
        let accounts = Accounts::from_ref(state);
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = bearer_token(value).ok_or(AccountsError::Unauthenticated("malformed Authorization header; send `Bearer <token>`"))?;
            let owner = token_owner(&accounts, token).await?;
            return Ok(Caller { account_id: owner.account_id, role: owner.role, credential: Credential::Token { id: owner.token_id } });
        }
        let jar = CookieJar::from_headers(&parts.headers);
        let cookie = jar
            .get(SECURE_SESSION_COOKIE)
            .or_else(|| jar.get(SESSION_COOKIE))
            .ok_or(AccountsError::Unauthenticated("sign in first, or send `Authorization: Bearer <token>`"))?;
        let token_digest = secret::digest(cookie.value());
        let (account_id, role, csrf_token) = store::session(&accounts.pool, &token_digest)
            .await?
            .ok_or(AccountsError::Unauthenticated("the session ended or expired; sign in again"))?;
        if !parts.method.is_safe() {
            let sent = parts.headers.get(CSRF_HEADER).map(|value| value.as_bytes()).unwrap_or_default();
            if !bool::from(sent.ct_eq(csrf_token.as_bytes())) {
                return Err(AccountsError::CsrfRejected);
            }
        }
        Ok(Caller { account_id, role, credential: Credential::Session { token_digest, csrf_token } })
    }
}

/// The owner of `token`, from the cache or else the database (and then cached).
async fn token_owner(accounts: &Accounts, token: &str) -> Result<store::TokenOwner, AccountsError> {
    let digest = secret::digest(token);
    if let Some(owner) = accounts.tokens.get(&digest, chrono::Utc::now()) {
        return Ok(owner);
    }
    accounts.tokens.follow(&accounts.bookkeeping);
    let ticket = accounts.tokens.ticket();
    let owner = store::token_owner(&accounts.bookkeeping, &digest)
        .await?
        .ok_or(AccountsError::Unauthenticated("the token is unknown, expired or revoked"))?;
    accounts.tokens.put(ticket, digest, owner);
    Ok(owner)
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is case-insensitive
/// (RFC 9110, 11.1): clients that send `bearer` are right.
fn bearer_token(value: &axum::http::HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case_and_nothing_else_is_a_token() {
        let read = |value: &'static str| bearer_token(&axum::http::HeaderValue::from_static(value)).map(str::to_owned);
        for value in ["Bearer cp_abc", "bearer cp_abc", "BEARER  cp_abc "] {
            assert_eq!(read(value).as_deref(), Some("cp_abc"), "{value}");
        }
        for value in ["Basic cp_abc", "Bearer ", "Bearer", "Bearercp_abc", "cp_abc"] {
            assert_eq!(read(value), None, "{value}");
        }
    }

    #[test]
    fn a_caller_in_a_log_line_shows_no_session_secret() {
        let credential = Credential::Session { token_digest: vec![0xab; 32], csrf_token: "csrf-secret-1".into() };
        let caller = Caller { account_id: Uuid::nil(), role: Role::User, credential };
        let shown = format!("{caller:?}");
        assert!(!shown.contains("csrf-secret-1") && !shown.contains("171"), "{shown}");
        assert!(shown.contains("Session(..)"), "{shown}");
    }
}

/// A caller with the admin role; anyone else gets 403 (401 without credentials).
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl<S> FromRequestParts<S> for Admin
where
    Accounts: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AccountsError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Admin, AccountsError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.is_admin() {
            Ok(Admin(caller))
        } else {
            Err(AccountsError::Forbidden)
        }
    }
}
