//! `GET /api/submissions`, `GET /api/submissions/{id}` and `GET /api/submissions/{id}/events`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::Status;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ApiError, AppState};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/submissions", get(list))
        .route("/api/submissions/", get(list))
        .route("/api/submissions/{id}", get(get_one))
        .route("/api/submissions/{id}/events", get(history))
}

/// A submission as the API shows it.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct SubmissionView {
    pub id: Uuid,
    pub content: String,
    pub status: String,
    pub reasons: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub processing_started_at: Option<DateTime<Utc>>,
    pub processed_at: Option<DateTime<Utc>>,
}

const SUBMISSION_COLUMNS: &str =
    "id, content, status, reasons, created_at, processing_started_at, processed_at";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct Page {
    items: Vec<SubmissionView>,
    /// Pass as `cursor` to get the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::InvalidQuery(rejection.body_text()))?;
    let status = query
        .status
        .map(|s| {
            Status::parse(&s.to_ascii_uppercase())
                .ok_or_else(|| ApiError::InvalidQuery(format!("unknown status {s:?}; use PENDING, PROCESSING, PASSED or FAILED")))
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let cursor = query.cursor.as_deref().map(Cursor::parse).transpose()?;

    let mut items: Vec<SubmissionView> = sqlx::query_as(&format!(
        "SELECT {SUBMISSION_COLUMNS} FROM submissions
         WHERE ($1::text IS NULL OR status = $1)
           AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC
         LIMIT $4"
    ))
    .bind(status.map(Status::as_str))
    .bind(cursor.as_ref().map(|c| c.created_at))
    .bind(cursor.as_ref().map(|c| c.id))
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;

    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|last| Cursor { created_at: last.created_at, id: last.id }.encode())
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}

/// Position in the newest-first order: the last item of the previous page.
struct Cursor {
    created_at: DateTime<Utc>,
    id: Uuid,
}

impl Cursor {
    fn encode(&self) -> String {
        format!("{}_{}", self.created_at.timestamp_micros(), self.id)
    }

    fn parse(text: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::InvalidQuery("invalid cursor; pass next_cursor from a previous page".into());
        let (micros, id) = text.split_once('_').ok_or_else(invalid)?;
        let created_at = micros.parse().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(invalid)?;
        Ok(Cursor { created_at, id: id.parse().map_err(|_| invalid())? })
    }
}

/// Parses the `{id}` path segment, answering 400 with the standard body when it is no UUID.
pub(super) fn submission_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    let Path(raw) = path.map_err(|rejection| ApiError::InvalidId(rejection.body_text()))?;
    raw.parse().map_err(|_| ApiError::InvalidId(format!("{raw:?} is not a submission id (a UUID)")))
}

async fn get_one(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<SubmissionView>, ApiError> {
    let id = submission_id(path)?;
    let found: Option<SubmissionView> =
        sqlx::query_as(&format!("SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE id = $1"))
            .bind(id)
            .fetch_optional(&state.pool)
            .await?;
    found.map(Json).ok_or(ApiError::NotFound(id))
}

/// One entry of a submission's history, with its place in the log for audit.
#[derive(Debug, Serialize, sqlx::FromRow)]
struct EventView {
    seq: i64,
    event_id: Uuid,
    event_type: String,
    schema_version: i16,
    status: String,
    occurred_at: DateTime<Utc>,
    correlation_id: Uuid,
    payload: serde_json::Value,
    kafka_partition: i32,
    kafka_offset: i64,
}

#[derive(Debug, Serialize)]
struct History {
    submission_id: Uuid,
    events: Vec<EventView>,
}

async fn history(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<History>, ApiError> {
    let id = submission_id(path)?;
    let events: Vec<EventView> = sqlx::query_as(
        "SELECT seq, event_id, event_type, schema_version, status, occurred_at, correlation_id,
                payload, kafka_partition, kafka_offset
         FROM submission_events WHERE submission_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&state.pool)
    .await?;
    if events.is_empty() {
        return Err(ApiError::NotFound(id));
    }
    Ok(Json(History { submission_id: id, events }))
}
