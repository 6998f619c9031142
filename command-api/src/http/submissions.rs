//! `POST /api/submissions`: validate, append `SubmissionCreated`, answer once Kafka has it.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, SubsecRound, Utc};
use domain::{Envelope, Event, Status, SubmissionId};
use serde::{Deserialize, Serialize};
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
#[derive(Debug, Serialize, Deserialize)]
pub struct Accepted {
    pub id: SubmissionId,
    pub content: String,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}

/// Takes the body as a JSON object and checks `content` by hand: a derived struct would also
/// accept a JSON array (`["text"]`) as a positional form of the object.
async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<Map<String, Value>>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(mut body) = body?;
    let content = match body.remove("content") {
        Some(Value::String(content)) => content,
        Some(_) => return Err(ApiError::InvalidBody("`content` must be a string")),
        None => return Err(ApiError::InvalidBody("`content` is required")),
    };
    check_content(&content, state.max_content_bytes)?;

    let id = Uuid::new_v4();
    let correlation_id = headers
        .get(&service_kit::http_server::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(Uuid::new_v4);
    // Microseconds: what PostgreSQL stores, so both sides show the same instant.
    let created_at = Utc::now().trunc_subsecs(6);
    let envelope = Envelope::new(id, Event::SubmissionCreated { content: content.clone() }, created_at, correlation_id);

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
