//! Server-sent events: `GET /api/stream` (every submission) and
//! `GET /api/submissions/{id}/stream` (one).
//!
//! Each status change is one `status` event whose id, `generation-seq`, orders it. A stream
//! first reads from the table whatever its client has not seen (its whole history for one
//! submission; what followed `Last-Event-ID` when the client reconnects), then follows the live
//! hub; a client that falls behind the hub's buffer goes back to the table. Either way every
//! change is sent once, in order.
//!
//! When the client's `Last-Event-ID` belongs to a read-model generation that is no longer live
//! (a rebuild happened), or a rebuild happens while it listens, it gets a `reset` event: reload
//! the state over REST. The reset's own id is a position in the live generation, so the
//! browser's next reconnect resumes from there.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::submissions::submission_id;
use crate::changes::{fetch_changes, live_position, Position, StatusChange, Update, PAGE};
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

/// What a stream sends.
enum Item {
    Change(StatusChange),
    /// Reload over REST; the stream goes on after this position (its id, so a reconnect
    /// resumes there).
    Reset(Position),
}

/// Where a stream starts: after a position, telling the client to reload first if its
/// `Last-Event-ID` cannot be resumed from.
struct Start {
    after: Position,
    reset: bool,
}

async fn all_submissions(State(state): State<AppState>, headers: HeaderMap) -> Result<SseStream, ApiError> {
    let now = match state.changes.position() {
        Some(now) => now,
        None => live_position(&state.pool).await?,
    };
    // Without Last-Event-ID, a client of the whole stream starts from now.
    let start = match last_event_id(&headers)? {
        Some(seen) if seen.generation == now.generation && seen.seq <= now.seq => Start { after: seen, reset: false },
        Some(_) => Start { after: now, reset: true },
        None => Start { after: now, reset: false },
    };
    Ok(sse(changes_after(state, start, None)))
}

async fn one_submission(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<SseStream, ApiError> {
    let id = submission_id(path)?;
    let live = live_position(&state.pool).await?;
    // Without Last-Event-ID (or after a rebuild), the client gets the submission's whole history.
    let from_start = Position { generation: live.generation, seq: 0 };
    let start = match last_event_id(&headers)? {
        Some(seen) if seen.generation == live.generation && seen.seq <= live.seq => Start { after: seen, reset: false },
        Some(_) => Start { after: from_start, reset: true },
        None => Start { after: from_start, reset: false },
    };
    Ok(sse(changes_after(state, start, Some(id))))
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<Position>, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(None) };
    value
        .to_str()
        .ok()
        .and_then(Position::parse)
        .map(Some)
        .ok_or_else(|| ApiError::InvalidQuery("Last-Event-ID must be an event id this server sent".into()))
}

fn sse(stream: impl Stream<Item = Item> + Send + 'static) -> SseStream {
    use futures_util::StreamExt;
    let events = stream.map(|item| {
        let event = match item {
            Item::Change(change) => Event::default()
                .id(change.position().event_id())
                .event("status")
                .json_data(&change),
            Item::Reset(at) => Event::default().id(at.event_id()).event("reset").json_data(json!({
                "generation": at.generation,
                "message": "the read model was rebuilt: reload the state over REST; this stream goes on from now",
            })),
        };
        // Serialising plain data cannot fail.
        Ok(event.unwrap_or_else(|_| Event::default().comment("unserialisable")))
    });
    Sse::new(Box::pin(events) as EventStream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// Every change after the start position (for one submission or all), exactly once, in order,
/// until the service shuts down.
fn changes_after(state: AppState, start: Start, submission: Option<Uuid>) -> impl Stream<Item = Item> {
    async_stream::stream! {
        // Subscribe before reading the table: a change committed meanwhile is then in both,
        // and the position check drops the second copy.
        let mut live = state.changes.subscribe();
        let shutdown = state.shutdown.clone();
        let mut at = start.after;
        if start.reset {
            yield Item::Reset(at);
        }
        // After a reset, a one-submission stream sends the submission's history again.
        let restart = |reset: Position| match submission {
            Some(_) => Position { generation: reset.generation, seq: 0 },
            None => reset,
        };
        'catch_up: loop {
            // From the table until it has nothing newer.
            loop {
                let page = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    page = fetch_changes(&state.pool, at.seq, submission, PAGE) => page,
                };
                match page {
                    Ok(page) => {
                        let full = page.len() as i64 == PAGE;
                        for change in page {
                            if change.generation != at.generation {
                                // Switched under us: start over in the live generation.
                                match live_position(&state.pool).await {
                                    Ok(now) => {
                                        at = restart(now);
                                        yield Item::Reset(at);
                                    }
                                    Err(_) => tokio::time::sleep(RETRY_READ).await,
                                }
                                continue 'catch_up;
                            }
                            at = change.position();
                            yield Item::Change(change);
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
                    Ok(Update::Change(change)) => {
                        if change.generation != at.generation {
                            continue 'catch_up; // the table read sorts it out
                        }
                        if change.seq > at.seq && submission.is_none_or(|id| id == change.submission_id) {
                            at = change.position();
                            yield Item::Change(StatusChange::clone(&change));
                        }
                    }
                    Ok(Update::Reset(now)) => {
                        if now.generation != at.generation {
                            at = restart(now);
                            yield Item::Reset(at);
                            continue 'catch_up;
                        }
                    }
                    Err(RecvError::Lagged(_)) => continue 'catch_up,
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }
}
