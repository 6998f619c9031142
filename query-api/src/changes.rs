//! Status changes, in `seq` order, from the read model to every live subscriber.
//!
//! The projector NOTIFYs after each commit. One task per process LISTENs, reads the rows past
//! the last `seq` it saw and broadcasts them. Notifications are only a nudge: rows are always
//! read from the table by `seq`, so a notification lost while the connection was down costs
//! latency, never an event (a periodic tick catches up regardless).
//!
//! A stream scoped to one owner subscribes to that owner's feed, which carries only the owner's
//! changes: a change wakes the streams that may see it, not every open stream, so its cost
//! does not grow with the number of users connected. Streams of everyone's changes (admins)
//! follow the feed of every change.
//!
//! `seq` orders changes within one read-model generation. When the hub goes to a position without
//! broadcasting the changes before it, it broadcasts [`Update::Moved`]: at its first read of
//! the database (a stream subscribed before it reads what it missed from the table), and when
//! a rebuild makes another generation live (positions in the old generation mean nothing in the
//! new one, and clients must reload the state over REST).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres, QueryBuilder};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Upper bound on how long a change can wait for a lost notification.
const SAFETY_TICK: Duration = Duration::from_secs(1);
/// Rows read per query while catching up.
pub const PAGE: i64 = 500;
/// Changes buffered per subscriber before it lags and has to catch up from the database.
const BUFFER: usize = 4096;
/// The same for one owner's feed: every connected owner has one, its slots allocated up front
/// (about 56 bytes each: with 10,000 users, 16 slots took 8.5 MiB). Four hold a submission's
/// three changes (and a reset); more at once, such as a batch or several submissions in flight,
/// lag the feed, and the stream reads them from the table instead.
const OWNER_BUFFER: usize = 4;

/// A place in the stream of changes: a generation of the read model and a `seq` in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub generation: i32,
    pub seq: i64,
}

impl Position {
    /// The SSE event id: `generation-seq`.
    pub fn event_id(self) -> String {
        format!("{}-{}", self.generation, self.seq)
    }

    /// Parses an SSE event id as [`Position::event_id`] writes it: digits, a dash, digits
    /// (`^[0-9]{1,9}-[0-9]{1,18}$`, as the OpenAPI document says), nothing more.
    pub fn parse(id: &str) -> Option<Position> {
        let (generation, seq) = id.split_once('-')?;
        let digits = |part: &str, most: usize| (1..=most).contains(&part.len()) && part.bytes().all(|byte| byte.is_ascii_digit());
        if !digits(generation, 9) || !digits(seq, 18) {
            return None;
        }
        Some(Position { generation: generation.parse().ok()?, seq: seq.parse().ok()? })
    }
}

/// The live generation and the newest `seq` in it, read in one statement.
pub async fn live_position(executor: impl sqlx::PgExecutor<'_>) -> Result<Position, sqlx::Error> {
    let (generation, seq): (Option<i32>, i64) =
        sqlx::query_as("SELECT (SELECT generation FROM read_models WHERE state = 'live'), COALESCE(MAX(seq), 0) FROM submission_events")
            .fetch_one(executor)
            .await?;
    let generation = generation.ok_or_else(|| sqlx::Error::Protocol("no live read model yet".into()))?;
    Ok(Position { generation, seq })
}

/// What the hub broadcasts.
#[derive(Debug, Clone)]
pub enum Update {
    Change(Arc<StatusChange>),
    /// The hub went to this position without broadcasting the changes up to it: its first read
    /// of the database, or another generation became live. The next change broadcast follows it.
    Moved(Position),
}

/// One status change of one submission: what every SSE event carries.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StatusChange {
    /// The read-model generation `seq` belongs to.
    pub generation: i32,
    /// Read-model order within the generation.
    pub seq: i64,
    pub submission_id: Uuid,
    /// Who may see it (not sent: a client only ever gets its own, or is an admin).
    #[serde(skip)]
    #[schema(ignore)]
    pub owner_id: Option<Uuid>,
    /// The batch the submission was accepted with, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<Uuid>,
    pub event_type: String,
    /// Status after this change.
    pub status: String,
    pub occurred_at: DateTime<Utc>,
    /// The submitted text, on the change that created the submission (absent once its account
    /// is erased).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Why it failed, on a FAILED change.
    pub reasons: Vec<String>,
}

/// Which changes a reader gets.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    /// One submission's, or every submission's.
    pub submission: Option<Uuid>,
    /// One owner's, or everyone's (an admin).
    pub owner: Option<Uuid>,
    /// One batch's items, or any submission's.
    pub batch: Option<Uuid>,
}

impl Scope {
    pub fn includes(&self, change: &StatusChange) -> bool {
        self.submission.is_none_or(|id| id == change.submission_id)
            && self.owner.is_none_or(|owner| change.owner_id == Some(owner))
            && self.batch.is_none_or(|batch| change.batch_id == Some(batch))
    }

    /// Whether the scope picks some submissions (one, or a batch's) rather than a whole
    /// owner's or everyone's: such a stream does not follow every seq.
    pub fn is_narrow(&self) -> bool {
        self.submission.is_some() || self.batch.is_some()
    }
}

/// Changes in `scope` after `after`, oldest first, and how far they were looked for: every
/// change up to `horizon` in scope is in `changes`, unless the page is full.
pub struct Page {
    pub changes: Vec<StatusChange>,
    pub horizon: i64,
}

/// What a page reads of each change, from the events `e` and their submissions `s`.
const CHANGE_COLUMNS: &str = "SELECT e.generation, e.seq, e.submission_id, s.owner_id, s.batch_id, e.event_type, e.status, e.occurred_at,
        CASE WHEN e.event_type = 'SubmissionCreated' THEN s.content END AS content,
        ARRAY(SELECT jsonb_array_elements_text(COALESCE(e.payload->'reasons', '[]'::jsonb))) AS reasons
    FROM ";

/// Every change after `after`, oldest first, up to `limit`: the page the hub and admins' streams
/// read. The page is picked by seq before its submissions are looked up one by one (`OFFSET 0`
/// keeps the lookup a subquery the planner cannot turn into a join): a page is a few rows, but
/// planned as a full one against tables not analyzed yet it became a hash join reading every
/// submission.
fn every_change_after(after: i64, limit: i64) -> QueryBuilder<'static, Postgres> {
    let mut query = QueryBuilder::new(CHANGE_COLUMNS);
    query.push("(SELECT * FROM submission_events WHERE seq > ").push_bind(after);
    query.push(format_args!(" ORDER BY seq LIMIT {limit}) e"));
    query.push(" CROSS JOIN LATERAL (SELECT owner_id, batch_id, content FROM submissions WHERE id = e.submission_id OFFSET 0) s ORDER BY e.seq");
    query
}

pub async fn fetch_changes(pool: &PgPool, after: i64, scope: Scope, limit: i64) -> Result<Page, sqlx::Error> {
    // With an owner filter, the horizon is read first (changes past it may commit while the
    // page is read). Without one, every change is in the page, so the page is its own horizon:
    // admins' streams spare the extra query.
    let horizon: Option<i64> = match scope.owner {
        Some(_) => Some(sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM submission_events").fetch_one(pool).await?),
        None => None,
    };
    // Only the filters the scope has, and with none [`every_change_after`]: a catch-all
    // `$n IS NULL OR …` statement gets one generic plan, which can drive the join from
    // `submissions` and probe the events once per submission (BENCHMARKS.md, "the live-update
    // query"). The limit is written out, not bound (it is the caller's page size, never client
    // input), so that even a generic plan expects a page.
    let unfiltered = scope.submission.is_none() && scope.owner.is_none() && scope.batch.is_none();
    let mut query = if unfiltered {
        every_change_after(after, limit)
    } else {
        let mut query = QueryBuilder::<Postgres>::new(CHANGE_COLUMNS);
        query.push("submission_events e JOIN submissions s ON s.id = e.submission_id WHERE e.seq > ").push_bind(after);
        if let Some(horizon) = horizon {
            query.push(" AND e.seq <= ").push_bind(horizon);
        }
        if let Some(submission) = scope.submission {
            query.push(" AND e.submission_id = ").push_bind(submission);
        }
        if let Some(owner) = scope.owner {
            query.push(" AND s.owner_id = ").push_bind(owner);
        }
        if let Some(batch) = scope.batch {
            query.push(" AND s.batch_id = ").push_bind(batch);
        }
        query.push(format_args!(" ORDER BY e.seq LIMIT {limit}"));
        query
    };
    // Every page is planned for its own values each time (an unnamed statement). For a scoped
    // page, whether to walk the events by `seq` or the owner's submissions depends on how much
    // of the range is the owner's, which a cached generic plan cannot know. For everyone's, a
    // plan cached while the tables were small (a new database or generation) reads the events
    // whole and sorts them, and keeps doing so as they grow until an ANALYZE invalidates it
    // (the hub reads that page on a connection where no plan scans a table: [`hub_reader`]).
    let changes: Vec<StatusChange> = query.build_query_as().persistent(false).fetch_all(pool).await?;
    let horizon = horizon.unwrap_or_else(|| changes.last().map_or(after, |last| last.seq));
    Ok(Page { changes, horizon })
}

impl StatusChange {
    pub fn position(&self) -> Position {
        Position { generation: self.generation, seq: self.seq }
    }
}

/// The hub's own connection, `planned_once`: the hub runs the same two statements after every
/// commit of the projector for as long as the process lives, and its page planned for every
/// call took as long to plan as to run.
fn hub_reader(pool: &PgPool) -> PgPool {
    service_kit::postgres::pool_options(1).connect_lazy_with(service_kit::postgres::planned_once((*pool.connect_options()).clone()))
}

/// A subscription to the hub.
pub struct Feed {
    pub updates: broadcast::Receiver<Update>,
    /// Whether it carries every change (so each seq follows the one before), or one owner's.
    pub every_seq: bool,
}

/// Fans status changes out to subscribers.
#[derive(Clone)]
pub struct ChangeHub {
    sender: broadcast::Sender<Update>,
    /// One channel per owner with a stream open in this process.
    owners: Arc<Mutex<HashMap<Uuid, broadcast::Sender<Update>>>>,
    /// The last position broadcast; `None` until the database was first read.
    position: Arc<Mutex<Option<Position>>>,
}

/// A hub that broadcasts nothing until [`ChangeHub::listen`] runs.
impl Default for ChangeHub {
    fn default() -> Self {
        let (sender, _) = broadcast::channel(BUFFER);
        ChangeHub { sender, owners: Arc::default(), position: Arc::default() }
    }
}

impl ChangeHub {
    /// A hub with its listening task started; the task ends with `shutdown`.
    pub fn start(pool: PgPool, shutdown: CancellationToken) -> Self {
        let hub = ChangeHub::default();
        tokio::spawn(hub.clone().listen(pool, shutdown));
        hub
    }

    /// The feed for a reader of `scope`: its owner's, or every change when it has none.
    pub fn subscribe(&self, scope: Scope) -> Feed {
        match scope.owner {
            Some(owner) => {
                let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
                let sender = owners.entry(owner).or_insert_with(|| broadcast::channel(OWNER_BUFFER).0);
                Feed { updates: sender.subscribe(), every_seq: false }
            }
            None => Feed { updates: self.sender.subscribe(), every_seq: true },
        }
    }

    /// Sends `update` to the feed of every change and to the feeds of those it concerns: a
    /// change to its owner's, a move to every owner's. No subscribers is not an error: nobody
    /// is watching right now.
    fn send(&self, update: Update) {
        let owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        match &update {
            Update::Change(change) => {
                if let Some(sender) = change.owner_id.and_then(|owner| owners.get(&owner)) {
                    let _ = sender.send(update.clone());
                }
            }
            Update::Moved(_) => {
                for sender in owners.values() {
                    let _ = sender.send(update.clone());
                }
            }
        }
        drop(owners);
        let _ = self.sender.send(update);
    }

    /// Forgets the feeds of owners whose streams have all ended.
    fn prune_owners(&self) {
        self.owners.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, sender| sender.receiver_count() > 0);
    }

    /// The last position broadcast, or `None` before the hub has read the database once.
    fn position(&self) -> Option<Position> {
        *self.position.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_position(&self, position: Position) {
        *self.position.lock().unwrap_or_else(|e| e.into_inner()) = Some(position);
    }

    /// Reads and broadcasts changes until `shutdown`: LISTENs on a connection of `pool`'s, and
    /// reads on [`hub_reader`]'s.
    pub async fn listen(self, pool: PgPool, shutdown: CancellationToken) {
        let reader = hub_reader(&pool);
        let mut listener: Option<PgListener> = None;
        let mut tick = tokio::time::interval(SAFETY_TICK);
        loop {
            if listener.is_none() {
                listener = self.connect_listener(&pool).await;
            }
            self.catch_up(&reader).await;
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // Ends the reader's session with PostgreSQL rather than dropping it.
                    reader.close().await;
                    return;
                }
                _ = tick.tick() => self.prune_owners(),
                received = async { listener.as_mut()?.try_recv().await.ok() }, if listener.is_some() => {
                    // Ok(Some) is a notification, Ok(None) a reconnect; either way catch up.
                    // An error drops the listener so the next round connects anew.
                    match (received, listener.as_mut()) {
                        // One catch-up reads everything committed so far: the notifications
                        // already received need no round of their own.
                        (Some(_), Some(listener)) => while listener.next_buffered().is_some() {},
                        _ => listener = None,
                    }
                }
            }
        }
    }

    async fn connect_listener(&self, pool: &PgPool) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(pool).await.ok()?;
        match listener.listen(service_kit::READ_MODEL_CHANGES).await {
            Ok(()) => Some(listener),
            Err(error) => {
                tracing::warn!(%error, "cannot LISTEN; falling back to polling");
                None
            }
        }
    }

    async fn catch_up(&self, reader: &PgPool) {
        let live = match live_position(reader).await {
            Ok(live) => live,
            Err(error) => {
                tracing::debug!(%error, "cannot read the live position; will retry");
                return;
            }
        };
        let Some(mut at) = self.position() else {
            // First contact: "now". History is served from the table to those who ask for it,
            // not replayed through the hub; streams subscribed before now read it from there.
            self.set_position(live);
            self.send(Update::Moved(live));
            return;
        };
        if at.generation != live.generation {
            tracing::info!(from = at.generation, to = live.generation, "read model switched; telling subscribers to reload");
            self.set_position(live);
            self.send(Update::Moved(live));
            return;
        }
        loop {
            let page: Vec<StatusChange> = match every_change_after(at.seq, PAGE).build_query_as().fetch_all(reader).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::debug!(%error, "cannot read changes; will retry");
                    return;
                }
            };
            let full = page.len() as i64 == PAGE;
            for change in page {
                if change.generation != at.generation {
                    return; // switched between the two reads: the next round resets
                }
                at = change.position();
                self.set_position(at);
                self.send(Update::Change(Arc::new(change)));
            }
            if !full {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Position;

    #[test]
    fn an_event_id_is_digits_a_dash_and_digits() {
        let position = Position { generation: 3, seq: 41 };
        assert_eq!(Position::parse(&position.event_id()), Some(position));
        assert_eq!(Position::parse("999999999-999999999999999999"), Some(Position { generation: 999_999_999, seq: 999_999_999_999_999_999 }));
        for refused in ["", "3", "3-", "-41", "+3-41", "3-+41", " 3-41", "3-41 ", "3-4-1", "1234567890-1", "1-1234567890123456789", "٣-41"] {
            assert_eq!(Position::parse(refused), None, "{refused:?}");
        }
    }
}
