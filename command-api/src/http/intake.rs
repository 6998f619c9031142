//! What every command goes through before its events are published: reading the JSON body,
//! checking content, recognising a retry, spending the rate limit.

use accounts::rate_limit::Decision;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap};
use axum::Json;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::ContentError;
use crate::idempotency::{self, Claim, Recorded};
use crate::{ApiError, AppState};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Reads the whole body before judging it, even one with the wrong content type: a refusal
/// that leaves the body unread makes the server close the connection, and a client reusing it
/// would see a broken pipe instead of the answer. An object, not any JSON: a derived struct
/// would also take an array as a positional form of its fields.
pub fn json_object(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, ApiError> {
    let body = body?;
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let Json(object) = Json::<Map<String, Value>>::from_bytes(&body)?;
    Ok(object)
}

/// Refuses a request of an account whose rate-limit window is spent, as this process already
/// knows, before its body is parsed: a flood over the limit costs no JSON parsing and no round
/// trip. Not for a request with an `Idempotency-Key`, which may be a retry of an accepted one
/// (answered 202 whatever the limit).
pub fn refuse_if_spent(state: &AppState, caller: &accounts::Caller, headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key(IDEMPOTENCY_KEY) {
        return Ok(());
    }
    let policy = state.accounts.settings.submission_policy();
    match state.accounts.limiter.known_refusal(policy, &caller.account_id.to_string(), 1) {
        Some(refusal) => Err(ApiError::RateLimited(refusal)),
        None => Ok(()),
    }
}

/// `application/json` or any `application/*+json`, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// `T` from a body's JSON object; its fields are `T`'s, any other is refused.
pub fn typed<T: serde::de::DeserializeOwned>(object: Map<String, Value>) -> Result<T, ApiError> {
    service_kit::http_error::from_object(object).map_err(ApiError::InvalidBody)
}

/// A piece of content, checked.
pub fn check_content(content: String, limit: usize) -> Result<String, ContentError> {
    if content.is_empty() {
        return Err(ContentError::Empty);
    }
    if content.len() > limit {
        return Err(ContentError::TooLarge { actual: content.len(), limit });
    }
    // PostgreSQL text cannot hold NUL; accepting it would make an event the read model can never store.
    if content.contains('\0') {
        return Err(ContentError::Nul);
    }
    Ok(content)
}

/// The request id, which every event of the request carries as its correlation id.
pub fn correlation_id(headers: &HeaderMap) -> Uuid {
    headers.get(&service_kit::http_server::REQUEST_ID).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or_else(Uuid::new_v4)
}

/// The client's `Idempotency-Key`, checked.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers.get(IDEMPOTENCY_KEY).map(idempotency::parse_key).transpose()
}

/// A request whose ids are settled: new ones, or those of the first attempt it retries.
pub struct Claimed {
    pub ids: Recorded,
    is_retry: bool,
    key: Option<String>,
    /// The claim this request holds on `key`, when it is the key's first (or taken-over) use.
    claim_id: Option<Uuid>,
}

/// Recognises a retry by `key` (when given): the first attempt's ids, else `fresh`.
pub async fn claim(state: &AppState, owner: Uuid, key: Option<String>, digest: &[u8], fresh: Recorded) -> Result<Claimed, ApiError> {
    let claim = match &key {
        Some(key) => Some(idempotency::claim(&state.accounts.pool, owner, key, digest, fresh.clone()).await?),
        None => None,
    };
    Ok(match claim {
        Some(Claim::New(ids, claim_id)) => Claimed { ids, is_retry: false, key, claim_id: Some(claim_id) },
        Some(Claim::Retry(ids)) => Claimed { ids, is_retry: true, key, claim_id: None },
        None => Claimed { ids: fresh, is_retry: false, key, claim_id: None },
    })
}

impl Claimed {
    /// Spends `cost` units of the owner's rate limit, unless this is a retry (which spends
    /// nothing), then marks the key admitted. A refused request gives its key up again.
    pub async fn admit(self, state: &AppState, owner: Uuid, cost: u32) -> Result<Admitted, ApiError> {
        let published = self.ids.acknowledged_at();
        if self.is_retry {
            return Ok(Admitted { ids: self.ids, published, limit: None, key: self.key });
        }
        let taken = state.accounts.limiter.take(state.accounts.settings.submission_policy(), &owner.to_string(), cost).await;
        let decision = match taken {
            Ok(decision) if decision.allowed => decision,
            refused => {
                self.release(state, owner).await?;
                return Err(refused.map_or_else(ApiError::from, ApiError::RateLimited));
            }
        };
        if let (Some(key), Some(claim_id)) = (&self.key, self.claim_id) {
            if let Err(error) = idempotency::admit(&state.accounts.pool, owner, key, claim_id).await {
                // Not admitted: give the key up (if still ours), or it waits out the takeover.
                self.release(state, owner).await?;
                return Err(error);
            }
        }
        Ok(Admitted { ids: self.ids, published, limit: Some(decision), key: self.key })
    }

    /// Gives a new claim's key up again: its request was refused before anything was published.
    pub async fn release(&self, state: &AppState, owner: Uuid) -> Result<(), ApiError> {
        match (&self.key, self.claim_id) {
            (Some(key), Some(claim_id)) => idempotency::release(&state.accounts.pool, owner, key, claim_id).await,
            _ => Ok(()),
        }
    }
}

/// A request cleared to publish: the ids to publish under, and the rate-limit decision to
/// report (none for a retry, which spends nothing).
pub struct Admitted {
    pub ids: Recorded,
    /// Set when a retry finds its events already acknowledged: answer without publishing.
    pub published: Option<domain::Position>,
    pub limit: Option<Decision>,
    key: Option<String>,
}

impl Admitted {
    /// Notes that Kafka acknowledged the request's events, so retries are answered from the
    /// record. A failure to note it changes nothing for this request: its events are in the
    /// log and it is answered 202 (a 503 would tell the client it failed while it will be
    /// judged); a retry under its key then publishes the same events again, which the fold
    /// takes as duplicates.
    pub async fn acknowledged(&self, state: &AppState, owner: Uuid, position: domain::Position) {
        let Some(key) = &self.key else { return };
        if let Err(error) = idempotency::acknowledged(&state.accounts.pool, owner, key, position).await {
            tracing::warn!(%error, %position, "accepted, but its Idempotency-Key is not marked acknowledged; a retry publishes the same events again");
        }
    }
}

/// The key `owner`'s content is sealed with, made on first use. Read before anything is
/// claimed or counted: a refusal here changes nothing.
pub async fn data_key(state: &AppState, owner: Uuid) -> Result<keyring::DataKey, ApiError> {
    state
        .data_keys
        .key_for(&state.accounts.pool, owner)
        .await?
        .ok_or(ApiError::Accounts(accounts::AccountsError::Unauthenticated("the account was deleted")))
}
