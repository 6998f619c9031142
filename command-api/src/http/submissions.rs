//! `POST /api/submissions`: validate, append `SubmissionCreated`, answer once Kafka has it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::{Envelope, Event, Status, SubmissionId};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::Instrument;
use uuid::Uuid;

use crate::{ApiError, AppState};

pub fn routes(state: Arc<AppState>) -> Router {
    // JSON escapes can make a body up to six times the content it carries (`\u0000`), so the
    // body limit leaves room for that; the content limit itself is checked after decoding.
    let body_limit = state.max_content_bytes.saturating_mul(6).saturating_add(1024);
    Router::new()
        .route("/api/submissions", post(create))
        .route("/api/submissions/", post(create))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The answer to an accepted submission; the same fields the query side serves.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub id: SubmissionId,
    pub content: String,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}

/// Reads the whole body before judging it, even one with the wrong content type: a refusal
/// that leaves the body unread makes the server close the connection, and a client reusing it
/// would see a broken pipe instead of the answer. `content` is checked by hand because a derived
/// struct would also accept a JSON array (`["text"]`) as a positional form of the object.
async fn create(
    State(state): State<Arc<AppState>>,
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

    // Time-ordered (UUIDv7): ids index as near-appends, and sort by creation.
    let id = Uuid::now_v7();
    let correlation_id = headers
        .get(&service_kit::http_server::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(Uuid::new_v4);
    let envelope = Envelope::new(id, Event::SubmissionCreated { content: content.clone() }, Utc::now(), correlation_id);
    let created_at = envelope.occurred_at;

    let span = tracing::info_span!("submission", submission_id = %id);
    async {
        let position = state.publisher.publish(&envelope).await.map_err(ApiError::BrokerUnavailable)?;
        tracing::info!(partition = position.partition, offset = position.offset, "accepted");
        Ok::<(), ApiError>(())
    }
    .instrument(span)
    .await?;

    let location = format!("/api/submissions/{id}");
    let body = Accepted { id, content, status: Status::Pending, created_at, processed_at: None };
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(body)).into_response())
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
