//! Server-sent events: `GET /api/stream` (every submission) and
//! `GET /api/submissions/{id}/stream` (one).
//!
//! Each status change is one SSE event whose `id` is its `seq`. A stream first reads from the
//! table whatever its client has not seen (its whole history for one submission; what followed
//! `Last-Event-ID` when the client reconnects), then follows the live hub. A client that falls
//! behind the hub's buffer goes back to the table. Either way every change is sent once, in order.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::submissions::submission_id;
use crate::changes::{fetch_changes, StatusChange, PAGE};
use crate::{ApiError, AppState};

const KEEP_ALIVE: Duration = Duration::from_secs(15);
const RETRY_READ: Duration = Duration::from_secs(1);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/stream", get(all_submissions))
        .route("/api/submissions/{id}/stream", get(one_submission))
}

type EventStream = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;
type SseStream = Sse<axum::response::sse::KeepAliveStream<EventStream>>;

async fn all_submissions(State(state): State<AppState>, headers: HeaderMap) -> Result<SseStream, ApiError> {
    // Without Last-Event-ID, a client of the whole stream starts from now.
    let after = match last_event_id(&headers)? {
        Some(seq) => seq,
        None => match state.changes.last_seq() {
            Some(seq) => seq,
            None => current_max_seq(&state).await?,
        },
    };
    Ok(sse(changes_after(state, after, None)))
}

async fn one_submission(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<SseStream, ApiError> {
    let id = submission_id(path)?;
    // Without Last-Event-ID, the client gets the submission's whole history first.
    let after = last_event_id(&headers)?.unwrap_or(0);
    Ok(sse(changes_after(state, after, Some(id))))
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(None) };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|seq| *seq >= 0)
        .map(Some)
        .ok_or_else(|| ApiError::InvalidQuery("Last-Event-ID must be an event id this server sent".into()))
}

async fn current_max_seq(state: &AppState) -> Result<i64, ApiError> {
    let (max,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM submission_events")
        .fetch_one(&state.pool)
        .await?;
    Ok(max)
}

fn sse(stream: impl Stream<Item = StatusChange> + Send + 'static) -> SseStream {
    use futures_util::StreamExt;
    let events = stream.map(|change| {
        let event = Event::default().id(change.seq.to_string()).event("status");
        // Serialising plain data cannot fail; an empty event would still keep the order.
        Ok(event.json_data(&change).unwrap_or_else(|_| Event::default().comment("unserialisable")))
    });
    Sse::new(Box::pin(events) as EventStream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// Every change after `after` (for one submission or all), exactly once, in order, until the
/// service shuts down.
fn changes_after(state: AppState, mut after: i64, submission: Option<Uuid>) -> impl Stream<Item = StatusChange> {
    async_stream::stream! {
        // Subscribe before reading the table: a change committed meanwhile is then in both,
        // and the seq check drops the second copy.
        let mut live = state.changes.subscribe();
        let shutdown = state.shutdown.clone();
        'catch_up: loop {
            // From the table until it has nothing newer.
            loop {
                let page = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    page = fetch_changes(&state.pool, after, submission, PAGE) => page,
                };
                match page {
                    Ok(page) => {
                        let full = page.len() as i64 == PAGE;
                        for change in page {
                            after = change.seq;
                            yield change;
                        }
                        if !full { break; }
                    }
                    Err(error) => {
                        tracing::debug!(%error, "stream cannot read changes; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(RETRY_READ) => {}
                        }
                    }
                }
            }
            // Then live.
            loop {
                let received = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    received = live.recv() => received,
                };
                match received {
                    Ok(change) => {
                        if change.seq > after && submission.is_none_or(|id| id == change.submission_id) {
                            after = change.seq;
                            yield StatusChange::clone(&change);
                        }
                    }
                    Err(RecvError::Lagged(_)) => continue 'catch_up,
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }
}
