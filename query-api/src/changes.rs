//! Status changes, in `seq` order, from the read model to every live subscriber.
//!
//! The projector NOTIFYs after each commit. One task per process LISTENs, reads the rows past
//! the last `seq` it saw and broadcasts them. Notifications are only a nudge: rows are always
//! read from the table by `seq`, so a notification lost while the connection was down costs
//! latency, never an event (a periodic tick catches up regardless).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Channel name the projector notifies on (kept in sync with `projector::NOTIFY_CHANNEL`).
const NOTIFY_CHANNEL: &str = "submission_events";
/// Upper bound on how long a change can wait for a lost notification.
const SAFETY_TICK: Duration = Duration::from_secs(1);
/// Rows read per query while catching up.
pub const PAGE: i64 = 500;
/// Changes buffered per subscriber before it lags and has to catch up from the database.
const BUFFER: usize = 4096;

/// One status change of one submission: what every SSE event carries.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StatusChange {
    /// Read-model order; the SSE event id.
    pub seq: i64,
    pub submission_id: Uuid,
    pub event_type: String,
    /// Status after this change.
    pub status: String,
    pub occurred_at: DateTime<Utc>,
    /// The submitted text, on the change that created the submission.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Why it failed, on a FAILED change.
    pub reasons: Vec<String>,
}

/// Changes after `after`, oldest first, for one submission or all.
pub async fn fetch_changes(
    pool: &PgPool,
    after: i64,
    submission: Option<Uuid>,
    limit: i64,
) -> Result<Vec<StatusChange>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, submission_id, event_type, status, occurred_at,
                payload->>'content' AS content,
                ARRAY(SELECT jsonb_array_elements_text(COALESCE(payload->'reasons', '[]'::jsonb))) AS reasons
         FROM submission_events
         WHERE seq > $1 AND ($2::uuid IS NULL OR submission_id = $2)
         ORDER BY seq
         LIMIT $3",
    )
    .bind(after)
    .bind(submission)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Fans status changes out to subscribers.
#[derive(Clone)]
pub struct ChangeHub {
    sender: broadcast::Sender<Arc<StatusChange>>,
    last_seq: Arc<AtomicI64>,
}

impl ChangeHub {
    /// Starts the listening task; it ends with `shutdown`.
    pub fn start(pool: PgPool, shutdown: CancellationToken) -> Self {
        let (sender, _) = broadcast::channel(BUFFER);
        let hub = ChangeHub { sender, last_seq: Arc::new(AtomicI64::new(-1)) };
        tokio::spawn(hub.clone().listen(pool, shutdown));
        hub
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StatusChange>> {
        self.sender.subscribe()
    }

    /// The newest `seq` broadcast so far ("now" for a client that asks for no history), or
    /// `None` before the hub has read the database once.
    pub fn last_seq(&self) -> Option<i64> {
        let seq = self.last_seq.load(Ordering::Acquire);
        (seq >= 0).then_some(seq)
    }

    async fn listen(self, pool: PgPool, shutdown: CancellationToken) {
        let mut listener: Option<PgListener> = None;
        let mut tick = tokio::time::interval(SAFETY_TICK);
        loop {
            if listener.is_none() {
                listener = self.connect_listener(&pool).await;
            }
            self.catch_up(&pool).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                received = async { listener.as_mut()?.try_recv().await.ok() }, if listener.is_some() => {
                    // Ok(Some) is a notification, Ok(None) a reconnect; either way catch up.
                    // An error drops the listener so the next round connects anew.
                    if received.is_none() {
                        listener = None;
                    }
                }
            }
        }
    }

    async fn connect_listener(&self, pool: &PgPool) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(pool).await.ok()?;
        match listener.listen(NOTIFY_CHANNEL).await {
            Ok(()) => Some(listener),
            Err(error) => {
                tracing::warn!(%error, "cannot LISTEN; falling back to polling");
                None
            }
        }
    }

    async fn catch_up(&self, pool: &PgPool) {
        let Some(mut after) = self.last_seq() else {
            // First contact: "now" is the newest seq in the database. History is served from
            // the table to those who ask for it, not replayed through the hub.
            if let Ok((max,)) = sqlx::query_as::<_, (i64,)>("SELECT COALESCE(MAX(seq), 0) FROM submission_events")
                .fetch_one(pool)
                .await
            {
                self.last_seq.store(max, Ordering::Release);
            }
            return;
        };
        loop {
            let page = match fetch_changes(pool, after, None, PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::debug!(%error, "cannot read changes; will retry");
                    return;
                }
            };
            let full = page.len() as i64 == PAGE;
            for change in page {
                after = change.seq;
                self.last_seq.store(after, Ordering::Release);
                // No subscribers is not an error: nobody is watching right now.
                let _ = self.sender.send(Arc::new(change));
            }
            if !full {
                return;
            }
        }
    }
}
