//! `POST /api/submissions`: validate, append `SubmissionCreated`, answer once Kafka has it.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use accounts::Caller;
use domain::{Envelope, Event, Status, SubmissionId};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::Instrument;
use uuid::Uuid;

use crate::idempotency::{self, Claim};
use crate::{ApiError, AppState};

const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub fn routes(state: AppState) -> Router {
    // JSON escapes can make a body up to six times the content it carries (`\u0000`), so the
    // body limit leaves room for that; the content limit itself is checked after decoding.
    let body_limit = state.max_content_bytes.saturating_mul(6).saturating_add(1024);
    Router::new()
        .route("/api/submissions", post(create))
        .route("/api/submissions/", post(create))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The answer to an accepted submission; the same fields the query side serves, and where
/// Kafka stored it.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub id: SubmissionId,
    pub content: String,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    /// `partition:offset` of its event: the `Location` carries it, and the query API answers
    /// that URL only once its read model holds the submission (reading your own write).
    pub position: String,
}

/// Reads the whole body before judging it, even one with the wrong content type: a refusal
/// that leaves the body unread makes the server close the connection, and a client reusing it
/// would see a broken pipe instead of the answer. `content` is checked by hand because a derived
/// struct would also accept a JSON array (`["text"]`) as a positional form of the object.
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    if !is_json(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let Json(mut body) = Json::<Map<String, Value>>::from_bytes(&body)?;
    let content = match body.remove("content") {
        Some(Value::String(content)) => content,
        Some(_) => return Err(ApiError::InvalidBody("`content` must be a string")),
        None => return Err(ApiError::InvalidBody("`content` is required")),
    };
    check_content(&content, state.max_content_bytes)?;
    let key = headers.get(IDEMPOTENCY_KEY).map(idempotency::parse_key).transpose()?;
    let pool = &state.accounts.pool;
    let owner = caller.account_id;

    // Time-ordered (UUIDv7): ids index as near-appends, and sort by creation. A retried key
    // brings back the id and time of its first attempt.
    let claim = match &key {
        Some(key) => Some(idempotency::claim(pool, owner, key, &content).await?),
        None => None,
    };
    let (id, created_at, published) = match &claim {
        Some(Claim::New(first) | Claim::Retry(first)) => (first.submission_id, first.created_at, first.acknowledged_at()),
        None => (Uuid::now_v7(), Utc::now(), None),
    };
    let limit = match claim {
        Some(Claim::Retry(_)) => None,
        _ => Some(state.accounts.limiter.take(state.accounts.settings.submission_policy(), &owner.to_string(), 1).await?),
    };
    if let Some(refused) = limit.filter(|decision| !decision.allowed) {
        if let Some(key) = &key {
            idempotency::release(pool, owner, key).await?;
        }
        return Err(ApiError::RateLimited(refused));
    }

    let correlation_id = headers
        .get(&service_kit::http_server::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(Uuid::new_v4);
    let event = Event::SubmissionCreated { content: content.clone(), owner_id: Some(owner) };
    let envelope = Envelope::new(id, event, created_at, correlation_id);
    let span = tracing::info_span!("submission", submission_id = %id);
    let position = async {
        if let Some(position) = published {
            tracing::info!(%position, "retry of an accepted submission");
            return Ok(position);
        }
        let position = state.publisher.publish(&envelope).await.map_err(ApiError::BrokerUnavailable)?;
        tracing::info!(%position, account_id = %owner, "accepted");
        if let Some(key) = &key {
            idempotency::acknowledged(pool, owner, key, position).await?;
        }
        Ok::<_, ApiError>(position)
    }
    .instrument(span)
    .await?;

    let location = format!("/api/submissions/{id}?position={position}");
    let body = Accepted {
        id,
        content,
        status: Status::Pending,
        created_at: envelope.occurred_at,
        processed_at: None,
        position: position.to_string(),
    };
    let mut response = (StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(body)).into_response();
    if let Some(decision) = limit {
        decision.annotate(&mut response);
    }
    Ok(response)
}

/// `application/json` or any `application/*+json`, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn check_content(content: &str, limit: usize) -> Result<(), ApiError> {
    if content.is_empty() {
        return Err(ApiError::EmptyContent);
    }
    if content.len() > limit {
        return Err(ApiError::ContentTooLarge { actual: content.len(), limit });
    }
    // PostgreSQL text cannot hold NUL; accepting it would make an event the read model can never store.
    if content.contains('\0') {
        return Err(ApiError::NulInContent);
    }
    Ok(())
}
