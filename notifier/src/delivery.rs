//! Sends what the watcher recorded, and retries what failed.
//!
//! A delivery is claimed by pushing its next attempt a lease into the future (so replicas and
//! a restarted notifier leave it alone while it is being sent), then sent, then its outcome
//! recorded. A crash between sending and recording sends it again when the lease runs out:
//! the only way a notification is sent twice, with the same `webhook-id` or Message-ID both
//! times. Failed attempts wait exponentially longer, with jitter, until the last, which marks
//! the delivery failed; one that can never succeed (its endpoint deleted, no SMTP configured,
//! its account gone) is failed at once. Sends run side by side, each slot refilled when its
//! send ends, with a share per account, so one owner's hanging endpoint slows only that owner.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use service_kit::trace_context;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::webhook::{Outcome, WebhookSender};
use accounts::mail::Mailer;

/// How often due deliveries are looked for when nothing woke the worker.
const POLL: Duration = Duration::from_millis(500);

/// When to try again after a failed attempt.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: i32,
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (from 1): `base` doubled per attempt,
    /// capped at `max`, then scaled by a random factor in [0.5, 1) so receivers that failed
    /// together are not retried together. `None` once no attempt is left.
    pub fn after_failure(&self, attempt: i32) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let doublings = u32::try_from(attempt - 1).unwrap_or(0).min(30);
        let wait = self.base.saturating_mul(1 << doublings).min(self.max);
        Some(wait.mul_f64(0.5 + fastrand::f64() * 0.5))
    }
}

/// One claimed delivery, with what it needs to be sent.
#[derive(sqlx::FromRow)]
struct Claimed {
    id: String,
    account_id: Uuid,
    channel: String,
    /// Which attempt this is (from 1).
    attempt: i32,
    payload: Value,
    email: Option<String>,
    url: Option<String>,
    secret: Option<String>,
    endpoint_deleted: Option<bool>,
    traceparent: Option<String>,
}

pub struct Deliverer {
    pub pool: PgPool,
    pub mailer: Option<Mailer>,
    pub webhooks: WebhookSender,
    pub retry: RetryPolicy,
    /// Deliveries sent at once by this process.
    pub concurrency: usize,
    /// A claimed delivery is left alone this long (longer than any send may take).
    pub lease: Duration,
    pub wake: Arc<Notify>,
}

impl Deliverer {
    /// Sends as deliveries fall due, `concurrency` at a time, each slot refilled as soon as its
    /// send ends: a slow endpoint holds its own slot for at most the send timeout, never a
    /// round of everyone's. One account holds at most [`Deliverer::per_account`] slots at a
    /// time, so an owner whose endpoints hang cannot take every slot from the others.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let deliverer = Arc::new(self);
        let mut sending: JoinSet<()> = JoinSet::new();
        // Whose send each task is, so its slot is given back even if the send panicked.
        let mut sender_of: HashMap<tokio::task::Id, Uuid> = HashMap::new();
        let mut in_flight: HashMap<Uuid, usize> = HashMap::new();
        loop {
            let free = deliverer.concurrency.max(1).saturating_sub(sending.len());
            if free > 0 && !shutdown.is_cancelled() {
                match deliverer.claim(free, &in_flight).await {
                    Ok(claimed) => {
                        for delivery in claimed {
                            let account = delivery.account_id;
                            *in_flight.entry(account).or_default() += 1;
                            let span = trace_context::stored_span("notifier", delivery.traceparent.as_deref());
                            let (deliverer, shutdown) = (deliverer.clone(), shutdown.clone());
                            let task = sending.spawn(async move { deliverer.deliver(delivery, &shutdown).await }.instrument(span));
                            sender_of.insert(task.id(), account);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot look for deliveries; retrying"),
                }
            }
            if shutdown.is_cancelled() {
                // Sends in hand are finished: their outcome is recorded.
                while sending.join_next().await.is_some() {}
                return Ok(());
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                Some(done) = sending.join_next_with_id() => {
                    let task = match done {
                        Ok((task, ())) => task,
                        Err(error) => {
                            tracing::error!(%error, "a delivery's send failed unexpectedly; its lease runs out and it is sent again");
                            error.id()
                        }
                    };
                    if let Some(account) = sender_of.remove(&task) {
                        if let Some(sends) = in_flight.get_mut(&account) {
                            *sends -= 1;
                            if *sends == 0 {
                                in_flight.remove(&account);
                            }
                        }
                    }
                }
                _ = deliverer.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// The most sends one account may have in flight in this process (a quarter of the slots).
    fn per_account(&self) -> usize {
        (self.concurrency / 4).max(1)
    }

    /// Claims up to `limit` due deliveries, by pushing their next attempt a lease ahead, so that
    /// no account has more than [`Deliverer::per_account`] in flight counting `in_flight`; the
    /// accounts already at their share are not even looked at, so a backlog of theirs cannot
    /// fill the candidates. The attempt is counted only when its outcome is recorded: a crash in
    /// between must not use up an attempt that was never made.
    async fn claim(&self, limit: usize, in_flight: &HashMap<Uuid, usize>) -> Result<Vec<Claimed>, sqlx::Error> {
        let share = self.per_account();
        let full: Vec<Uuid> = in_flight.iter().filter(|(_, sends)| **sends >= share).map(|(account, _)| *account).collect();
        let (busy, sends): (Vec<Uuid>, Vec<i64>) = in_flight.iter().map(|(account, sends)| (*account, *sends as i64)).unzip();
        sqlx::query_as(
            "WITH due AS (
                 SELECT id, account_id, next_attempt_at FROM notifier.deliveries
                 WHERE state = 'pending' AND next_attempt_at <= now() AND NOT (account_id = ANY($3))
                 ORDER BY next_attempt_at LIMIT $1 * 4 FOR UPDATE SKIP LOCKED),
             busy AS (SELECT * FROM unnest($5::uuid[], $6::bigint[]) AS b(account_id, sends)),
             picked AS (
                 SELECT id FROM (
                     SELECT due.id, due.next_attempt_at,
                            row_number() OVER (PARTITION BY due.account_id ORDER BY due.next_attempt_at) + COALESCE(busy.sends, 0) AS nth
                     FROM due LEFT JOIN busy ON busy.account_id = due.account_id) ranked
                 WHERE nth <= $4 ORDER BY next_attempt_at LIMIT $1)
             UPDATE notifier.deliveries d
             SET next_attempt_at = now() + make_interval(secs => $2)
             WHERE d.id IN (SELECT id FROM picked)
             RETURNING d.id, d.account_id, d.channel, d.attempts + 1 AS attempt,
                 (SELECT n.payload FROM notifier.notifications n WHERE n.id = d.notification_id) AS payload,
                 (SELECT a.email FROM accounts.accounts a WHERE a.id = d.account_id) AS email,
                 (SELECT e.url FROM notifier.webhook_endpoints e WHERE e.id = d.endpoint_id) AS url,
                 (SELECT e.secret FROM notifier.webhook_endpoints e WHERE e.id = d.endpoint_id) AS secret,
                 (SELECT e.deleted_at IS NOT NULL FROM notifier.webhook_endpoints e WHERE e.id = d.endpoint_id) AS endpoint_deleted,
                 (SELECT n.traceparent FROM notifier.notifications n WHERE n.id = d.notification_id) AS traceparent",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX / 4))
        .bind(self.lease.as_secs_f64())
        .bind(&full)
        .bind(i64::try_from(share).unwrap_or(1))
        .bind(&busy)
        .bind(&sends)
        .fetch_all(&self.pool)
        .await
    }

    /// Sends `delivery` and records the outcome.
    async fn deliver(&self, delivery: Claimed, shutdown: &CancellationToken) {
        let started = Instant::now();
        let attempted_at = Utc::now();
        let outcome = self.send(&delivery).await;
        let elapsed = started.elapsed();
        let next = match outcome.error {
            None => Next::Delivered,
            Some(_) if outcome.permanent => Next::Failed,
            Some(_) => match self.retry.after_failure(delivery.attempt) {
                Some(wait) => Next::Retry(wait),
                None => Next::Failed,
            },
        };
        tracing::info!(
            delivery_id = %delivery.id,
            channel = %delivery.channel,
            attempt = delivery.attempt,
            status_code = ?outcome.status_code,
            error = ?outcome.error,
            next = ?next,
            "delivery attempted"
        );
        let outcome_label = if outcome.error.is_none() { "delivered" } else { "failed" };
        metrics::counter!("content_processor_notification_attempts_total", "channel" => delivery.channel.clone(), "outcome" => outcome_label)
            .increment(1);
        metrics::histogram!("content_processor_notification_send_duration_seconds", "channel" => delivery.channel.clone())
            .record(elapsed.as_secs_f64());
        match next {
            Next::Delivered => metrics::counter!("content_processor_notifications_sent_total", "channel" => delivery.channel.clone()).increment(1),
            Next::Failed => metrics::counter!("content_processor_notifications_failed_total", "channel" => delivery.channel.clone()).increment(1),
            Next::Retry(_) => {}
        }
        // The outcome must be recorded, or the delivery is sent again when its lease runs out;
        // but not at the price of a shutdown that never ends while the database is away.
        while let Err(error) = record(&self.pool, &delivery, attempted_at, elapsed, &outcome, next).await {
            tracing::warn!(delivery_id = %delivery.id, %error, "cannot record the delivery's outcome; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => {
                    tracing::warn!(delivery_id = %delivery.id, "stopping with the outcome unrecorded: the delivery is sent again after its lease");
                    break;
                }
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn send(&self, delivery: &Claimed) -> Outcome {
        let body = delivery.payload.to_string();
        match delivery.channel.as_str() {
            "email" => {
                let Some(mailer) = &self.mailer else {
                    return Outcome::refused("email is not configured (SMTP_URL)");
                };
                let Some(to) = &delivery.email else {
                    return Outcome::refused("the account is gone");
                };
                match crate::email::send(mailer, to, &delivery.id, &delivery.payload).await {
                    Ok(()) => Outcome::delivered(None),
                    Err(error) => Outcome::failed(None, error),
                }
            }
            _ => {
                if delivery.endpoint_deleted == Some(true) {
                    return Outcome::refused("the endpoint was deleted");
                }
                let (Some(url), Some(secret)) = (&delivery.url, &delivery.secret) else {
                    return Outcome::refused("the endpoint is gone");
                };
                self.webhooks.send(url, secret, &delivery.id, body.as_bytes()).await
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Next {
    Delivered,
    Retry(Duration),
    Failed,
}

async fn record(
    pool: &PgPool,
    delivery: &Claimed,
    attempted_at: chrono::DateTime<Utc>,
    elapsed: Duration,
    outcome: &Outcome,
    next: Next,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO notifier.delivery_attempts (delivery_id, attempt, attempted_at, status_code, error, duration_ms)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&delivery.id)
    .bind(delivery.attempt)
    .bind(attempted_at)
    .bind(outcome.status_code.map(i32::from))
    .bind(&outcome.error)
    .bind(i32::try_from(elapsed.as_millis()).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await?;
    let (state, wait) = match next {
        Next::Delivered => ("delivered", None),
        Next::Retry(wait) => ("pending", Some(wait.as_secs_f64())),
        Next::Failed => ("failed", None),
    };
    sqlx::query(
        "UPDATE notifier.deliveries
         SET state = $2, last_error = $3, attempts = GREATEST(attempts, $5),
             next_attempt_at = CASE WHEN $4::float8 IS NULL THEN next_attempt_at ELSE now() + make_interval(secs => $4) END,
             finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END
         WHERE id = $1",
    )
    .bind(&delivery.id)
    .bind(state)
    .bind(&outcome.error)
    .bind(wait)
    .bind(delivery.attempt)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// A `webhook.test` delivery to one endpoint, sent like any other.
pub async fn queue_test(pool: &PgPool, account_id: Uuid, endpoint_id: Uuid) -> Result<String, sqlx::Error> {
    let notification = crate::store::Notification {
        id: Uuid::new_v4(),
        account_id,
        event_type: "webhook.test",
        data: serde_json::json!({ "endpoint_id": endpoint_id, "message": "a test event sent from content-processor" }),
        at: Utc::now(),
    };
    let mut made = crate::store::NewNotifications::default();
    made.add(notification);
    let mut tx = pool.begin().await?;
    // Its id is new, so it is inserted.
    let Some(notification) = made.insert(&mut tx).await?.pop() else { return Err(sqlx::Error::RowNotFound) };
    let id = crate::store::add_delivery(&mut tx, &notification, Some(endpoint_id)).await?;
    tx.commit().await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_with_jitter_up_to_the_cap_then_stop() {
        let policy = RetryPolicy { max_attempts: 6, base: Duration::from_secs(10), max: Duration::from_secs(60) };
        for (attempt, full) in [(1, 10), (2, 20), (3, 40), (4, 60), (5, 60)] {
            let wait = policy.after_failure(attempt).unwrap();
            let full = Duration::from_secs(full);
            assert!(wait >= full / 2 && wait <= full, "attempt {attempt}: {wait:?}");
        }
        assert_eq!(policy.after_failure(6), None);
        let waits: std::collections::HashSet<_> = (0..20).map(|_| policy.after_failure(3)).collect();
        assert!(waits.len() > 1, "jittered");
    }
}
