//! `GET /api/batches`, `GET /api/batches/{id}`, its items, and its counts live over SSE.
//!
//! A batch has no row of its own in the read model: it is its items (`submissions.batch_id`),
//! each of which knows the batch's size. Items the read model does not hold yet count as
//! PENDING, so the counts always add up to the size.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::sse::Event;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::event_schema::BatchEvents;
use super::stream::{changes_after, json_event, reset_event, sse_of, Item, SseStream};
use super::submissions::{read_your_write, Cursor, GetQuery, SubmissionView, FROM_SUBMISSIONS, SUBMISSION_COLUMNS};
use crate::changes::{Position, Scope};
use crate::error::{ReadModelUnavailable, WaitRefused};
use crate::resume::Start;
use crate::{ApiError, AppState};
use accounts::Caller;
use service_kit::http_error::{BadRequest, ErrorBody, QueryParams, SignedIn};
use service_kit::page::Page;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/batches", get(list))
        .route("/api/batches/", get(list))
        .route("/api/batches/{id}", get(get_one))
        .route("/api/batches/{id}/items", get(items))
        .route("/api/batches/{id}/stream", get(stream))
}

/// The OpenAPI description of the batch reads.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, get_one, items, stream))]
pub struct BatchesApi;

/// How many of a batch's items are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub pending: i64,
    pub processing: i64,
    pub passed: i64,
    pub failed: i64,
}

impl Counts {
    /// One item moved to `status` (the next step of its life).
    fn apply(&mut self, status: &str) {
        match status {
            "PROCESSING" => {
                self.pending -= 1;
                self.processing += 1;
            }
            "PASSED" => {
                self.processing -= 1;
                self.passed += 1;
            }
            "FAILED" => {
                self.processing -= 1;
                self.failed += 1;
            }
            // A created item was already counted as pending.
            _ => {}
        }
    }
}

/// A batch as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchView {
    pub id: Uuid,
    pub size: i64,
    pub created_at: DateTime<Utc>,
    pub owner_id: Option<Uuid>,
    pub counts: Counts,
    /// Every item has its verdict.
    pub complete: bool,
}

#[derive(sqlx::FromRow)]
struct BatchRow {
    id: Uuid,
    size: i32,
    created_at: DateTime<Utc>,
    owner_id: Option<Uuid>,
    processing: i64,
    passed: i64,
    failed: i64,
}

impl From<BatchRow> for BatchView {
    fn from(row: BatchRow) -> BatchView {
        let size = i64::from(row.size);
        let counts =
            Counts { pending: size - row.processing - row.passed - row.failed, processing: row.processing, passed: row.passed, failed: row.failed };
        BatchView { id: row.id, size, created_at: row.created_at, owner_id: row.owner_id, counts, complete: counts.passed + counts.failed == size }
    }
}

/// The counts of one batch's items, per status.
const COUNTS: &str = "count(*) FILTER (WHERE i.status = 'PROCESSING') AS processing,
     count(*) FILTER (WHERE i.status = 'PASSED') AS passed,
     count(*) FILTER (WHERE i.status = 'FAILED') AS failed";

async fn fetch_batch(executor: impl sqlx::PgExecutor<'_>, id: Uuid, owner: Option<Uuid>) -> Result<Option<BatchView>, sqlx::Error> {
    let row: Option<BatchRow> = sqlx::query_as(&format!(
        "SELECT i.batch_id AS id, max(i.batch_size) AS size, min(i.created_at) AS created_at,
             (array_agg(i.owner_id))[1] AS owner_id, {COUNTS}
         FROM submissions i WHERE i.batch_id = $1 AND ($2::uuid IS NULL OR i.owner_id = $2)
         GROUP BY i.batch_id"
    ))
    .bind(id)
    .bind(owner)
    .fetch_optional(executor)
    .await?;
    Ok(row.map(BatchView::from))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// 1 to 500; 50 when absent.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,16}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    cursor: Option<String>,
}

/// The caller's batches, newest first (everyone's for an admin). A batch is listed once the
/// read model holds its first item.
#[utoipa::path(get, path = "/api/batches", operation_id = "list_batches", tag = "batches", params(ListQuery), responses(
    (status = 200, description = "one page", body = Page<BatchView>),
    (status = 400, description = "`invalid_query`", body = ErrorBody), SignedIn, ReadModelUnavailable,
))]
async fn list(State(state): State<AppState>, caller: Caller, QueryParams(query): QueryParams<ListQuery>) -> Result<Json<Page<BatchView>>, ApiError> {
    let limit = service_kit::page::limit(query.limit)?;
    let cursor = query.cursor.as_deref().map(Cursor::parse).transpose()?;
    let rows: Vec<BatchRow> = sqlx::query_as(&format!(
        "SELECT f.batch_id AS id, f.batch_size AS size, f.created_at, f.owner_id, c.*
         FROM submissions f
         CROSS JOIN LATERAL (SELECT {COUNTS} FROM submissions i WHERE i.batch_id = f.batch_id) c
         WHERE f.batch_index = 0
           AND ($1::timestamptz IS NULL OR (f.created_at, f.batch_id) < ($1, $2))
           AND ($3::uuid IS NULL OR f.owner_id = $3)
         ORDER BY f.created_at DESC, f.batch_id DESC
         LIMIT $4"
    ))
    .bind(cursor.as_ref().map(|c| c.created_at))
    .bind(cursor.as_ref().map(|c| c.id))
    .bind(caller.visible_owner())
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let items: Vec<BatchView> = rows.into_iter().map(BatchView::from).collect();
    Ok(Json(Page::of(items, limit, |last| Some(Cursor { created_at: last.created_at, id: last.id }.encode()))))
}

/// One batch of the caller's; `?position=` (from the command API's `Location`) waits until
/// the read model holds it.
#[utoipa::path(get, path = "/api/batches/{id}", operation_id = "get_batch", tag = "batches",
    params(("id" = uuid::Uuid, Path, description = "the batch's id"), GetQuery), responses(
    (status = 200, description = "the batch and its counts", body = BatchView),
    (status = 400, description = "`invalid_id`, `invalid_query`, `position_past_end`: the log holds nothing at `position`", body = ErrorBody),
    (status = 404, description = "`not_found`", body = ErrorBody),
    WaitRefused, SignedIn, ReadModelUnavailable,
))]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    QueryParams(query): QueryParams<GetQuery>,
) -> Result<Json<BatchView>, ApiError> {
    let id = service_kit::http_error::path_uuid(path, "batch")?;
    let found = read_your_write(&state, &caller, query.position.as_deref(), || fetch_batch(&state.pool, id, caller.visible_owner())).await?;
    found.map(Json).ok_or(ApiError::BatchNotFound(id))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ItemsQuery {
    /// 1 to 500; 50 when absent.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// The last index of the previous page (-1: before the first).
    #[param(minimum = -1)]
    after: Option<i32>,
}

/// A batch's items in the order they were sent, `limit` at a time.
#[utoipa::path(get, path = "/api/batches/{id}/items", tag = "batches",
    params(("id" = uuid::Uuid, Path, description = "the batch's id"), ItemsQuery), responses(
    (status = 200, description = "one page of items", body = Page<SubmissionView>),
    (status = 400, description = "`invalid_id`, `invalid_query`", body = ErrorBody),
    (status = 404, description = "`not_found`", body = ErrorBody),
    SignedIn, ReadModelUnavailable,
))]
async fn items(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    QueryParams(query): QueryParams<ItemsQuery>,
) -> Result<Json<Page<SubmissionView>>, ApiError> {
    let id = service_kit::http_error::path_uuid(path, "batch")?;
    let limit = service_kit::page::limit(query.limit)?;
    if query.after.is_some_and(|after| after < -1) {
        return Err(BadRequest::InvalidQuery("after must be -1 or more".into()).into());
    }
    let items: Vec<SubmissionView> = sqlx::query_as(&format!(
        "SELECT {SUBMISSION_COLUMNS} FROM {FROM_SUBMISSIONS}
         WHERE s.batch_id = $1 AND s.batch_index > $2 AND ($3::uuid IS NULL OR s.owner_id = $3)
         ORDER BY s.batch_index LIMIT $4"
    ))
    .bind(id)
    .bind(query.after.unwrap_or(-1))
    .bind(caller.visible_owner())
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    if items.is_empty() && query.after.is_none() && fetch_batch(&state.pool, id, caller.visible_owner()).await?.is_none() {
        return Err(ApiError::BatchNotFound(id));
    }
    Ok(Json(Page::of(items, limit, |last| last.batch_index.map(|index| index.to_string()))))
}

/// The batch's counts as one `counts` event, then another after every change of an item. Each
/// connection starts from a fresh snapshot (counts are state, not a history to resume), so
/// `Last-Event-ID` is not needed; after a rebuild the stream sends `reset` and ends, and the
/// client reconnects to a snapshot of the new read model.
#[utoipa::path(get, path = "/api/batches/{id}/stream", tag = "batches",
    params(("id" = uuid::Uuid, Path, description = "the batch's id")), responses(
    (status = 200, description = "server-sent events: `counts` (data: the batch, as `BatchView`) now and after every change; `reset` (data: `{generation, message}`) after a rebuild, then the stream ends", content_type = "text/event-stream", body = BatchEvents),
    (status = 400, description = "`invalid_id`", body = ErrorBody),
    (status = 429, description = "`too_many_streams`: the account has 16 live streams open on this server", body = ErrorBody),
    (status = 404, description = "`not_found`", body = ErrorBody),
    SignedIn, ReadModelUnavailable,
))]
async fn stream(State(state): State<AppState>, caller: Caller, path: Result<Path<String>, PathRejection>) -> Result<SseStream, ApiError> {
    let id = service_kit::http_error::path_uuid(path, "batch")?;
    let owner = caller.visible_owner();
    let slot = super::stream::stream_slot(&state, &caller)?;
    // Subscribed before the snapshot: a change committed meanwhile is both in the snapshot's
    // future (after its position) and in the feed.
    let scope = Scope { submission: None, owner, batch: Some(id) };
    let feed = state.changes.subscribe(scope);
    let (mut batch, at) = snapshot(&state.pool, id, owner).await?.ok_or(ApiError::BatchNotFound(id))?;
    let changes = changes_after(state, feed, Start { after: at, reset: false }, scope);
    let events = async_stream::stream! {
        yield counts_event(at, &batch);
        futures_util::pin_mut!(changes);
        while let Some(item) = futures_util::StreamExt::next(&mut changes).await {
            match item {
                Item::Change(change) => {
                    batch.counts.apply(&change.status);
                    batch.complete = batch.counts.passed + batch.counts.failed == batch.size;
                    yield counts_event(change.position(), &batch);
                }
                Item::Reset(at) => {
                    yield reset_event(at);
                    return;
                }
            }
        }
    };
    Ok(sse_of(events, slot))
}

fn counts_event(at: Position, batch: &BatchView) -> Event {
    json_event(Event::default().id(at.event_id()).event("counts"), batch)
}

/// The batch and the read-model position it is as of, read in one snapshot.
async fn snapshot(pool: &PgPool, id: Uuid, owner: Option<Uuid>) -> Result<Option<(BatchView, Position)>, ApiError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
    let at = crate::changes::live_position(&mut *tx).await?;
    let batch = fetch_batch(&mut *tx, id, owner).await?;
    tx.commit().await?;
    Ok(batch.map(|batch| (batch, at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_each_item_through_its_steps() {
        let mut counts = Counts { pending: 3, ..Counts::default() };
        for status in ["PENDING", "PROCESSING", "PROCESSING", "PASSED", "FAILED", "PROCESSING"] {
            counts.apply(status);
        }
        assert_eq!(counts, Counts { pending: 0, processing: 1, passed: 1, failed: 1 });
    }
}
