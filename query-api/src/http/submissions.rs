//! `GET /api/submissions`, `GET /api/submissions/{id}` and `GET /api/submissions/{id}/events`.

use crate::error::{ReadModelUnavailable, WaitRefused};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::{FailureReason, Status};
use serde::{Deserialize, Serialize};
use service_kit::http_error::{BadRequest, ErrorBody, QueryParams, SignedIn};
use service_kit::page::Page;
use uuid::Uuid;

use crate::{ApiError, AppState};
use accounts::Caller;
use domain::Position as KafkaPosition;
use std::time::Duration;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/submissions", get(list))
        .route("/api/submissions/", get(list))
        .route("/api/submissions/{id}", get(get_one))
        .route("/api/submissions/{id}/events", get(history))
}

/// The OpenAPI description of the submission reads.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, get_one, history))]
pub struct SubmissionsApi;

/// A submission as the API shows it.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SubmissionView {
    pub id: Uuid,
    /// The text; null once the account that submitted it was erased.
    pub content: Option<String>,
    #[schema(value_type = Status)]
    pub status: String,
    #[schema(value_type = Vec<FailureReason>)]
    pub reasons: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub processing_started_at: Option<DateTime<Utc>>,
    pub processed_at: Option<DateTime<Utc>>,
    /// The account that submitted it; null for submissions from before accounts.
    pub owner_id: Option<Uuid>,
    pub owner_email: Option<String>,
    /// The batch it was accepted with, and its position there.
    pub batch_id: Option<Uuid>,
    pub batch_index: Option<i32>,
    /// The FAILED submission this one was edited from.
    pub replaces: Option<Uuid>,
    /// The submission that was edited from this one.
    pub replaced_by: Option<Uuid>,
}

/// The columns of [`SubmissionView`], from `submissions s` joined with its owner's account `a`.
pub(super) const SUBMISSION_COLUMNS: &str = "s.id, s.content, s.status, s.reasons, s.created_at, s.processing_started_at,
     s.processed_at, s.owner_id, a.email AS owner_email, s.batch_id, s.batch_index, s.replaces,
     (SELECT r.id FROM submissions r WHERE r.replaces = s.id ORDER BY r.created_at LIMIT 1) AS replaced_by";
pub(super) const FROM_SUBMISSIONS: &str = "submissions s LEFT JOIN accounts.accounts a ON a.id = s.owner_id";

/// How long a read of a just-accepted submission waits for the read model to hold it.
const READ_YOUR_WRITE_WAIT: Duration = Duration::from_secs(5);
/// How long a read waits for its write before it asks where the log ends: what a write takes
/// to be projected under load, so that only a position not coming soon costs a request.
const ASK_FOR_LOG_END_AFTER: Duration = Duration::from_millis(100);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only submissions in this status (any case).
    #[param(pattern = "^([Pp][Ee][Nn][Dd][Ii][Nn][Gg]|[Pp][Rr][Oo][Cc][Ee][Ss][Ss][Ii][Nn][Gg]|[Pp][Aa][Ss][Ss][Ee][Dd]|[Ff][Aa][Ii][Ll][Ee][Dd])$")]
    status: Option<String>,
    /// 1 to 500; 50 when absent.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,16}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    cursor: Option<String>,
}

/// The caller's submissions, newest first (everyone's for an admin).
#[utoipa::path(get, path = "/api/submissions", operation_id = "list_submissions", tag = "submissions", params(ListQuery), responses(
    (status = 200, description = "one page", body = Page<SubmissionView>),
    (status = 400, description = "`invalid_query`", body = ErrorBody), SignedIn, ReadModelUnavailable,
))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<Page<SubmissionView>>, ApiError> {
    let status = query
        .status
        .map(|s| {
            Status::parse(&s.to_ascii_uppercase())
                .ok_or_else(|| ApiError::from(BadRequest::InvalidQuery(format!("unknown status {s:?}; use PENDING, PROCESSING, PASSED or FAILED"))))
        })
        .transpose()?;
    let limit = service_kit::page::limit(query.limit)?;
    let cursor = query.cursor.as_deref().map(Cursor::parse).transpose()?;

    let items: Vec<SubmissionView> = sqlx::query_as(&format!(
        "SELECT {SUBMISSION_COLUMNS} FROM {FROM_SUBMISSIONS}
         WHERE ($1::text IS NULL OR s.status = $1)
           AND ($2::timestamptz IS NULL OR (s.created_at, s.id) < ($2, $3))
           AND ($5::uuid IS NULL OR s.owner_id = $5)
         ORDER BY s.created_at DESC, s.id DESC
         LIMIT $4"
    ))
    .bind(status.map(Status::as_str))
    .bind(cursor.as_ref().map(|c| c.created_at))
    .bind(cursor.as_ref().map(|c| c.id))
    .bind(limit + 1)
    .bind(caller.visible_owner())
    .fetch_all(&state.pool)
    .await?;

    Ok(Json(Page::of(items, limit, |last| Some(Cursor { created_at: last.created_at, id: last.id }.encode()))))
}

/// Position in the newest-first order: the last item of the previous page.
pub(super) struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}_{}", self.created_at.timestamp_micros(), self.id)
    }

    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::from(BadRequest::InvalidQuery("invalid cursor; pass next_cursor from a previous page".into()));
        let (micros, id) = text.split_once('_').ok_or_else(invalid)?;
        let created_at = micros.parse().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(invalid)?;
        Ok(Cursor { created_at, id: id.parse().map_err(|_| invalid())? })
    }
}

/// Parses the `{id}` path segment, answering 400 with the standard body when it is no UUID.
pub(super) fn submission_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    Ok(service_kit::http_error::path_uuid(path, "submission")?)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct GetQuery {
    /// The `partition:offset` the command API returned with the submission (its `Location`
    /// carries it): the read waits until the read model has read that far.
    #[param(pattern = "^[0-9]{1,9}:[0-9]{1,18}$")]
    pub position: Option<String>,
}

/// One submission of the caller's (any, for an admin); another user's answers 404, exactly as
/// an unknown id does.
#[utoipa::path(get, path = "/api/submissions/{id}", operation_id = "get_submission", tag = "submissions",
    params(("id" = uuid::Uuid, Path, description = "the submission's id"), GetQuery), responses(
    (status = 200, description = "the submission", body = SubmissionView),
    (status = 400, description = "`invalid_id`, `invalid_query`, `position_past_end`: the log holds nothing at `position`", body = ErrorBody),
    (status = 404, description = "`not_found`: no such submission of the caller's", body = ErrorBody),
    WaitRefused, SignedIn, ReadModelUnavailable,
))]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    QueryParams(query): QueryParams<GetQuery>,
) -> Result<Json<SubmissionView>, ApiError> {
    let id = submission_id(path)?;
    let found = read_your_write(&state, &caller, query.position.as_deref(), || async {
        sqlx::query_as(&format!("SELECT {SUBMISSION_COLUMNS} FROM {FROM_SUBMISSIONS} WHERE s.id = $1 AND ($2::uuid IS NULL OR s.owner_id = $2)"))
            .bind(id)
            .bind(caller.visible_owner())
            .fetch_optional(&state.pool)
            .await
    })
    .await?;
    found.map(Json).ok_or(ApiError::NotFound(id))
}

/// Reads with `read` until it finds something, or the read model has passed `position` (the
/// `partition:offset` the command API returned with a write: its `Location` carries it), and
/// not for longer than [`READ_YOUR_WRITE_WAIT`]. Without a position, reads once.
///
/// A position the read model has not reached may be one the log never held. To tell, a wait
/// that lasts [`ASK_FOR_LOG_END_AFTER`] asks the projector for the log's end
/// ([`service_kit::LOG_END_WANTED`]) and refuses the position once a reading taken after it
/// asked shows the partition ending at or before it. A wait holds no connection between its
/// reads, and `caller` may have only [`crate::per_account::WAITS`] of them at once.
pub(super) async fn read_your_write<T, F, Fut>(state: &AppState, caller: &Caller, position: Option<&str>, mut read: F) -> Result<Option<T>, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, sqlx::Error>>,
{
    let written_at = position
        .map(|text| {
            text.parse::<KafkaPosition>().map_err(|()| ApiError::from(BadRequest::InvalidQuery(format!("position {text:?} is not partition:offset"))))
        })
        .transpose()?;
    let _slot = match written_at {
        Some(_) => Some(state.waits.take(caller.account_id).ok_or(ApiError::TooManyWaits(state.waits.limit()))?),
        None => None,
    };
    let deadline = tokio::time::Instant::now() + READ_YOUR_WRITE_WAIT;
    let ask_from = tokio::time::Instant::now() + ASK_FOR_LOG_END_AFTER;
    // The first pauses short, as most writes are read within milliseconds; doubling after, so
    // a wait for a position that never comes costs dozens of queries, not a thousand.
    let mut pause = Duration::from_millis(10);
    let mut asked_for_log_end = None;
    loop {
        // Read before the row: once the read model is past the position, the row query that
        // follows sees whatever that commit wrote.
        let projected = match written_at {
            Some(position) => projected_past(state, position).await?,
            None => true,
        };
        if let Some(found) = read().await? {
            return Ok(Some(found));
        }
        // Not there: wait only while the read model has not yet read as far as the write the
        // client names, and not for ever.
        if projected || tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        if let Some(position) = written_at {
            match asked_for_log_end {
                // Most writes are read within milliseconds: only a wait that lasts asks.
                None if tokio::time::Instant::now() >= ask_from => asked_for_log_end = Some(ask_for_log_end(state).await?),
                Some(asked) if past_log_end(state, position, asked).await? => return Err(ApiError::PositionPastEnd(position.to_string())),
                _ => {}
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Whether the live read model has applied the record at `position` (and any before it).
async fn projected_past(state: &AppState, position: KafkaPosition) -> Result<bool, ApiError> {
    let next: Option<i64> = sqlx::query_scalar("SELECT next_offset FROM projector_positions WHERE partition = $1")
        .bind(position.partition)
        .fetch_optional(&state.pool)
        .await?;
    Ok(next.is_some_and(|next| next > position.offset))
}

/// Asks the projector to read where the log ends; returns the request's number (see
/// `projector/migrations/0003_log_end.sql`).
async fn ask_for_log_end(state: &AppState) -> Result<i64, ApiError> {
    // The NOTIFY is delivered when this statement commits, after the number was taken.
    Ok(sqlx::query_scalar("SELECT nextval('public.log_end_asks') FROM (SELECT pg_notify($1, '')) AS asked")
        .bind(service_kit::LOG_END_WANTED)
        .fetch_one(&state.pool)
        .await?)
}

/// Whether a reading of the log's end taken after request `asked` shows `position` was never
/// written: its partition ends at or before it, or does not exist. `false` while no such
/// reading exists, and while no projector has made the table yet (a query API upgraded first).
async fn past_log_end(state: &AppState, position: KafkaPosition, asked: i64) -> Result<bool, ApiError> {
    let reading: Result<Option<Vec<i64>>, sqlx::Error> =
        sqlx::query_scalar("SELECT next_offsets FROM public.log_end WHERE read_after > $1").bind(asked).fetch_optional(&state.pool).await;
    let ends = match reading {
        Ok(Some(ends)) => ends,
        Ok(None) => return Ok(false),
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some(UNDEFINED_TABLE) => return Ok(false),
        Err(error) => return Err(error.into()),
    };
    Ok(usize::try_from(position.partition).ok().and_then(|partition| ends.get(partition)).is_none_or(|&end| position.offset >= end))
}

/// SQLSTATE `undefined_table`.
const UNDEFINED_TABLE: &str = "42P01";

/// One entry of a submission's history, with its place in the log for audit.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct History {
    submission_id: Uuid,
    events: Vec<EventView>,
}

/// Every event applied to the submission, in order, with where it is in the log. A creation's
/// sealed text is shown opened, as `content` (null once the account is erased).
#[utoipa::path(get, path = "/api/submissions/{id}/events", tag = "submissions",
    params(("id" = uuid::Uuid, Path, description = "the submission's id")), responses(
    (status = 200, description = "the events", body = History),
    (status = 400, description = "`invalid_id`", body = ErrorBody),
    (status = 404, description = "`not_found`", body = ErrorBody),
    SignedIn, ReadModelUnavailable,
))]
async fn history(State(state): State<AppState>, caller: Caller, path: Result<Path<String>, PathRejection>) -> Result<Json<History>, ApiError> {
    let id = submission_id(path)?;
    let events: Vec<EventView> = sqlx::query_as(
        "SELECT e.seq, e.event_id, e.event_type, e.schema_version, e.status, e.occurred_at, e.correlation_id,
                CASE WHEN e.payload ? 'sealed_content' THEN (e.payload - 'sealed_content') || jsonb_build_object('content', s.content)
                     ELSE e.payload END AS payload,
                e.kafka_partition, e.kafka_offset
         FROM submission_events e JOIN submissions s ON s.id = e.submission_id
         WHERE e.submission_id = $1 AND ($2::uuid IS NULL OR s.owner_id = $2)
         ORDER BY e.seq",
    )
    .bind(id)
    .bind(caller.visible_owner())
    .fetch_all(&state.pool)
    .await?;
    if events.is_empty() {
        return Err(ApiError::NotFound(id));
    }
    Ok(Json(History { submission_id: id, events }))
}
