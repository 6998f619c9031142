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
use tokio::sync::broadcast::error::RecvError;

use super::event_schema::{ResetNotice, StatusEvents};
use super::submissions::submission_id;
use crate::changes::{fetch_changes, live_position, Feed, Position, Scope, StatusChange, Update, PAGE};
use crate::error::ReadModelUnavailable;
use crate::per_account::Slot;
use crate::resume::{LiveStep, Start};
use crate::{ApiError, AppState};
use accounts::Caller;
use service_kit::http_error::{BadRequest, ErrorBody, SignedIn};

const KEEP_ALIVE: Duration = Duration::from_secs(15);
const RETRY_READ: Duration = Duration::from_secs(1);

/// The OpenAPI description of the live streams.
#[derive(utoipa::OpenApi)]
#[openapi(paths(all_submissions, one_submission))]
pub struct StreamApi;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/stream", get(all_submissions)).route("/api/submissions/{id}/stream", get(one_submission))
}

type EventStream = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;
pub(super) type SseStream = Sse<axum::response::sse::KeepAliveStream<EventStream>>;

/// What a stream sends.
pub(super) enum Item {
    Change(StatusChange),
    /// Reload over REST; the stream goes on after this position (its id, so a reconnect
    /// resumes there).
    Reset(Position),
}

/// The caller's submissions (every submission for an admin), live.
#[utoipa::path(get, path = "/api/stream", tag = "live", params(("Last-Event-ID" = Option<String>, Header, nullable = false, pattern = r"^([0-9]{1,9}-[0-9]{1,18})?$", description = "the last `id` received: the stream resumes right after it; empty: none")), responses(
    (status = 200, description = "server-sent events: `status` (data: a `StatusChange`, id: its position) for every change from now, or after `Last-Event-ID`; `reset` (data: `{generation, message}`) when the read model was rebuilt: reload over REST", content_type = "text/event-stream", body = StatusEvents),
    (status = 400, description = "`invalid_query` (a bad `Last-Event-ID`)", body = ErrorBody),
    (status = 429, description = "`too_many_streams`: the account has 16 live streams open on this server", body = ErrorBody),
    SignedIn, ReadModelUnavailable,
))]
async fn all_submissions(State(state): State<AppState>, caller: Caller, headers: HeaderMap) -> Result<SseStream, ApiError> {
    let seen = last_event_id(&headers)?;
    let slot = stream_slot(&state, &caller)?;
    let scope = Scope { submission: None, owner: caller.visible_owner(), batch: None };
    let feed = state.changes.subscribe(scope);
    let live = live_position(&state.pool).await?;
    // Without Last-Event-ID, a client of the whole stream starts from now.
    Ok(sse(changes_after(state, feed, Start::new(seen, live, live), scope), slot))
}

/// One submission. Another user's submission streams exactly as an unknown id does: nothing,
/// until a submission of the caller's with that id exists (which never happens).
#[utoipa::path(get, path = "/api/submissions/{id}/stream", tag = "live", params(("id" = uuid::Uuid, Path, description = "the submission's id"), ("Last-Event-ID" = Option<String>, Header, nullable = false, pattern = r"^([0-9]{1,9}-[0-9]{1,18})?$", description = "the last `id` received; empty: none")), responses(
    (status = 200, description = "server-sent events: the submission's changes from its creation (or after `Last-Event-ID`) as `status` events, and `reset` after a rebuild", content_type = "text/event-stream", body = StatusEvents),
    (status = 400, description = "`invalid_id`, `invalid_query` (a bad `Last-Event-ID`)", body = ErrorBody),
    (status = 429, description = "`too_many_streams`: the account has 16 live streams open on this server", body = ErrorBody),
    SignedIn, ReadModelUnavailable,
))]
async fn one_submission(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<SseStream, ApiError> {
    let id = submission_id(path)?;
    let seen = last_event_id(&headers)?;
    let slot = stream_slot(&state, &caller)?;
    let scope = Scope { submission: Some(id), owner: caller.visible_owner(), batch: None };
    let feed = state.changes.subscribe(scope);
    let live = live_position(&state.pool).await?;
    // Without Last-Event-ID (or after a rebuild), the client gets the submission's whole history.
    let from_start = Position { generation: live.generation, seq: 0 };
    Ok(sse(changes_after(state, feed, Start::new(seen, live, from_start), scope), slot))
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<Position>, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(None) };
    // An empty id is the SSE spec's "no last event id" (an `id:` line with no value resets it).
    if value.is_empty() {
        return Ok(None);
    }
    value
        .to_str()
        .ok()
        .and_then(Position::parse)
        .map(Some)
        .ok_or_else(|| ApiError::from(BadRequest::InvalidQuery("Last-Event-ID must be an event id this server sent".into())))
}

/// One of the caller's stream slots on this query API, or 429 when they are all taken.
pub(super) fn stream_slot(state: &AppState, caller: &Caller) -> Result<Slot, ApiError> {
    state.streams.take(caller.account_id).ok_or(ApiError::TooManyStreams(state.streams.limit()))
}

fn sse(stream: impl Stream<Item = Item> + Send + 'static, slot: Slot) -> SseStream {
    use futures_util::StreamExt;
    sse_of(stream.map(Item::into_event), slot)
}

/// Serves `events` as an SSE response, counting the client and what it is sent, and holding
/// the account's `slot` until the stream ends.
pub(super) fn sse_of(events: impl Stream<Item = Event> + Send + 'static, slot: Slot) -> SseStream {
    use futures_util::StreamExt;
    let client = ConnectedClient::new();
    let events = events.map(move |event| {
        let _held_while_open = (&client, &slot);
        metrics::counter!("content_processor_sse_events_pushed_total").increment(1);
        Ok(event)
    });
    Sse::new(Box::pin(events) as EventStream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

impl Item {
    fn into_event(self) -> Event {
        match self {
            Item::Change(change) => json_event(Event::default().id(change.position().event_id()).event("status"), &change),
            Item::Reset(at) => reset_event(at),
        }
    }
}

/// Tells the client to reload over REST; the stream goes on after `at`.
pub(super) fn reset_event(at: Position) -> Event {
    let notice =
        ResetNotice { generation: at.generation, message: "the read model was rebuilt: reload the state over REST; this stream goes on from now" };
    json_event(Event::default().id(at.event_id()).event("reset"), &notice)
}

pub(super) fn json_event(event: Event, data: &impl serde::Serialize) -> Event {
    // Serialising plain data cannot fail.
    event.json_data(data).unwrap_or_else(|_| Event::default().comment("unserialisable"))
}

/// A connected SSE client, counted in `content_processor_sse_clients` while its stream lives.
struct ConnectedClient;

impl ConnectedClient {
    fn new() -> ConnectedClient {
        metrics::gauge!("content_processor_sse_clients").increment(1.0);
        ConnectedClient
    }
}

impl Drop for ConnectedClient {
    fn drop(&mut self) {
        metrics::gauge!("content_processor_sse_clients").decrement(1.0);
    }
}

/// Every change after the start position (for one submission or all), exactly once, in order,
/// until the service shuts down. `feed` was subscribed before the start position was read and
/// before the client got its answer: a change committed meanwhile is then in the table and in
/// the feed, and the position check drops the second copy; and a client that has its answer
/// misses nothing committed after it.
pub(super) fn changes_after(state: AppState, feed: Feed, start: Start, scope: Scope) -> impl Stream<Item = Item> {
    let Feed { updates: mut live, every_seq } = feed;
    async_stream::stream! {
        let shutdown = state.shutdown.clone();
        let mut at = start.after;
        if start.reset {
            yield Item::Reset(at);
        }
        // After a reset, a one-submission stream sends the submission's history again.
        let restart = |reset: Position| match scope.is_narrow() {
            true => Position { generation: reset.generation, seq: 0 },
            false => reset,
        };
        'catch_up: loop {
            // From the table until it has nothing newer.
            loop {
                let page = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    page = fetch_changes(&state.pool, at.seq, scope, PAGE) => page,
                };
                match page {
                    Ok(page) => {
                        let full = page.changes.len() as i64 == PAGE;
                        for change in page.changes {
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
                        if !full {
                            // The stream of every submission has looked at every change up to
                            // the horizon (those out of scope too), so the live gap check
                            // counts from there.
                            if !scope.is_narrow() && page.horizon > at.seq {
                                at.seq = page.horizon;
                            }
                            break;
                        }
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
                    Ok(Update::Change(change)) => match LiveStep::of(at, &change, scope, every_seq) {
                        LiveStep::Send => {
                            at = change.position();
                            yield Item::Change(StatusChange::clone(&change));
                        }
                        LiveStep::Skip => {}
                        // The table read sorts it out.
                        LiveStep::CatchUp => continue 'catch_up,
                    },
                    Ok(Update::Moved(now)) => {
                        if now.generation != at.generation {
                            at = restart(now);
                            yield Item::Reset(at);
                            continue 'catch_up;
                        }
                        // The hub's first read: what it passed over without broadcasting (committed
                        // after this stream's table read) is in the table.
                        if now.seq > at.seq {
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
