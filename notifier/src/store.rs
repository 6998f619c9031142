//! The notifier's SQL: what reading the log records, and the notifications it makes.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::migrate::Migrator;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Namespace of notification and delivery ids (UUID v5). Never change it: stored ids depend on it.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x3b1f_7c52_9d04_4e8a_b6a1_52c9_e07d_2f13);

/// Creates or updates the notifier's schema (`notifier`).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    accounts::migrate(pool).await?;
    service_kit::postgres::migrate_in_schema(pool, "notifier", &MIGRATOR).await
}

/// The id of the notification about `subject` (a submission or a batch): derived, so the same
/// verdict read twice makes one notification.
pub fn notification_id(subject: Uuid, event_type: &str) -> Uuid {
    let mut name = subject.as_bytes().to_vec();
    name.extend_from_slice(event_type.as_bytes());
    Uuid::new_v5(&ID_NAMESPACE, &name)
}

/// The id of one delivery of a notification (`webhook-id`, and the email's Message-ID):
/// derived from the notification and where it goes, the same on every attempt.
fn delivery_id(notification: Uuid, endpoint: Option<Uuid>) -> String {
    let mut name = notification.as_bytes().to_vec();
    name.extend_from_slice(endpoint.as_ref().map_or(&b"email"[..], |id| id.as_bytes()));
    format!("msg_{}", Uuid::new_v5(&ID_NAMESPACE, &name).simple())
}

/// A submission whose verdict is awaited.
pub struct Awaited {
    pub submission_id: Uuid,
    pub owner_id: Uuid,
    pub content: Option<String>,
    pub batch: Option<AwaitedBatch>,
    pub created_at: DateTime<Utc>,
}

/// The batch an awaited submission belongs to, and how many verdicts complete it.
#[derive(Debug, Clone, Copy)]
pub struct AwaitedBatch {
    pub batch_id: Uuid,
    pub size: u32,
}

/// The submissions one transaction starts or stops awaiting, written together before it commits
/// ([`AwaitedWrites::flush`]) instead of a statement per record. A verdict read in the same batch
/// as its submission takes it from here; the table ends as if each record had been written in
/// turn: a submission awaited once, and any older row of one taken here deleted. (Copies of a
/// submission's record are identical, so which copy a verdict takes does not matter.)
#[derive(Default)]
pub struct AwaitedWrites {
    /// Added in this transaction and not taken, in log order.
    added: Vec<Awaited>,
    /// Taken from `added`: a row of theirs already in the table (a duplicate read before) goes.
    taken: Vec<Uuid>,
}

impl AwaitedWrites {
    /// Awaits `awaited`'s verdict, unless its submission is awaited already.
    pub fn add(&mut self, awaited: Awaited) {
        if !self.added.iter().any(|known| known.submission_id == awaited.submission_id) {
            self.added.push(awaited);
        }
    }

    /// Takes the submission out if it was added in this transaction, now that its verdict is
    /// read; else it is in the table, or not awaited ([`take_awaited`]).
    pub fn take_added(&mut self, submission_id: Uuid) -> Option<Awaited> {
        let index = self.added.iter().position(|awaited| awaited.submission_id == submission_id)?;
        self.taken.push(submission_id);
        Some(self.added.remove(index))
    }

    /// Writes what was taken and added, in that order (a submission taken, then added again by
    /// a duplicate, stays awaited), in two statements at most.
    pub async fn flush(&mut self, tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        if !self.taken.is_empty() {
            sqlx::query("DELETE FROM notifier.awaited_verdicts WHERE submission_id = ANY($1)").bind(&self.taken).execute(&mut **tx).await?;
            self.taken.clear();
        }
        if self.added.is_empty() {
            return Ok(());
        }
        let added = std::mem::take(&mut self.added);
        sqlx::query(
            "INSERT INTO notifier.awaited_verdicts (submission_id, owner_id, content, batch_id, batch_size, created_at)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::int[], $6::timestamptz[])
             ON CONFLICT (submission_id) DO NOTHING",
        )
        .bind(added.iter().map(|a| a.submission_id).collect::<Vec<_>>())
        .bind(added.iter().map(|a| a.owner_id).collect::<Vec<_>>())
        .bind(added.iter().map(|a| a.content.clone()).collect::<Vec<_>>())
        .bind(added.iter().map(|a| a.batch.map(|b| b.batch_id)).collect::<Vec<_>>())
        .bind(added.iter().map(|a| a.batch.map(|b| i32::try_from(b.size).unwrap_or(i32::MAX))).collect::<Vec<_>>())
        .bind(added.iter().map(|a| a.created_at).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Whether `account` exists, locking its row (`FOR KEY SHARE`) until the transaction ends: an
/// erasure, which locks it `FOR UPDATE` first, waits for the transaction, or came before it and
/// left no account. Once erased, nothing is awaited or told for it.
pub async fn lock_account(tx: &mut Transaction<'_, Postgres>, account: Uuid) -> Result<bool, sqlx::Error> {
    let found: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM accounts.accounts WHERE id = $1 FOR KEY SHARE").bind(account).fetch_optional(&mut **tx).await?;
    Ok(found.is_some())
}

/// Whose submission `submission_id` is, when its verdict is awaited since an earlier transaction.
pub async fn awaited_owner(tx: &mut Transaction<'_, Postgres>, submission_id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT owner_id FROM notifier.awaited_verdicts WHERE submission_id = $1").bind(submission_id).fetch_optional(&mut **tx).await
}

/// Takes the awaited submission out of the table; `None` when it is not awaited (its verdict was
/// handled before, or it has no owner).
pub async fn take_awaited(tx: &mut Transaction<'_, Postgres>, submission_id: Uuid) -> Result<Option<Awaited>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        owner_id: Uuid,
        content: Option<String>,
        batch_id: Option<Uuid>,
        batch_size: Option<i32>,
        created_at: DateTime<Utc>,
    }
    let row: Option<Row> = sqlx::query_as(
        "DELETE FROM notifier.awaited_verdicts WHERE submission_id = $1
         RETURNING owner_id, content, batch_id, batch_size, created_at",
    )
    .bind(submission_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|Row { owner_id, content, batch_id, batch_size, created_at }| Awaited {
        submission_id,
        owner_id,
        content,
        batch: batch_id.zip(batch_size).map(|(batch_id, size)| AwaitedBatch { batch_id, size: u32::try_from(size).unwrap_or(0) }),
        created_at,
    }))
}

/// Counts an item's verdict; returns the batch's (passed, failed) once this verdict completes
/// it, and only then. The count is one row per batch, updated in place: its row lock orders
/// replicas that count the same batch at once, so exactly one of them sees it complete.
pub async fn count_batch_verdict(
    tx: &mut Transaction<'_, Postgres>,
    batch: AwaitedBatch,
    submission_id: Uuid,
    passed: bool,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let inserted = sqlx::query("INSERT INTO notifier.batch_verdicts (batch_id, submission_id, passed) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(batch.batch_id)
        .bind(submission_id)
        .bind(passed)
        .execute(&mut **tx)
        .await?;
    if inserted.rows_affected() == 0 {
        return Ok(None);
    }
    let (judged, passed): (i32, i32) = sqlx::query_as(
        "INSERT INTO notifier.batch_progress AS p (batch_id, judged, passed) VALUES ($1, 1, $2::int)
         ON CONFLICT (batch_id) DO UPDATE SET judged = p.judged + 1, passed = p.passed + EXCLUDED.passed, counted_at = now()
         RETURNING judged, passed",
    )
    .bind(batch.batch_id)
    .bind(i32::from(passed))
    .fetch_one(&mut **tx)
    .await?;
    let (judged, passed) = (i64::from(judged), i64::from(passed));
    Ok((judged == i64::from(batch.size)).then_some((passed, judged - passed)))
}

/// Sets aside the record at `partition`/`offset`, which the database refuses for good, with why.
pub async fn park(tx: &mut Transaction<'_, Postgres>, partition: i32, offset: i64, submission_id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notifier.parked_records (kafka_partition, kafka_offset, submission_id, reason)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(partition)
    .bind(offset)
    .bind(submission_id)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What a notification says: its Standard Webhooks body (`type`, `timestamp`, `data`).
pub struct Notification {
    pub id: Uuid,
    pub account_id: Uuid,
    pub event_type: &'static str,
    pub data: Value,
    pub at: DateTime<Utc>,
}

impl Notification {
    pub fn body(&self) -> Value {
        json!({ "type": self.event_type, "timestamp": self.at, "data": self.data })
    }
}

/// The notifications one transaction makes, inserted together before it commits, each with the
/// trace of the record that made it. One made twice (a verdict read twice in a batch) is one.
#[derive(Default)]
pub struct NewNotifications {
    made: Vec<(Notification, Option<String>)>,
}

impl NewNotifications {
    /// Adds `notification`, with the trace of the current span (the record's): its deliveries
    /// continue it.
    pub fn add(&mut self, notification: Notification) {
        if self.made.iter().any(|(made, _)| made.id == notification.id) {
            return;
        }
        let traceparent = service_kit::trace_context::traceparent(&tracing::Span::current()).and_then(|value| value.to_str().ok().map(str::to_owned));
        self.made.push((notification, traceparent));
    }

    /// Inserts them in one statement; returns those not recorded before (a record read again
    /// makes none).
    pub async fn insert(&mut self, tx: &mut Transaction<'_, Postgres>) -> Result<Vec<Notification>, sqlx::Error> {
        if self.made.is_empty() {
            return Ok(Vec::new());
        }
        let made = std::mem::take(&mut self.made);
        let inserted: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO notifier.notifications (id, account_id, event_type, payload, created_at, traceparent)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::timestamptz[], $6::text[])
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(made.iter().map(|(n, _)| n.id).collect::<Vec<_>>())
        .bind(made.iter().map(|(n, _)| n.account_id).collect::<Vec<_>>())
        .bind(made.iter().map(|(n, _)| n.event_type).collect::<Vec<_>>())
        .bind(made.iter().map(|(n, _)| n.body()).collect::<Vec<_>>())
        .bind(made.iter().map(|(n, _)| n.at).collect::<Vec<_>>())
        .bind(made.iter().map(|(_, traceparent)| traceparent.clone()).collect::<Vec<_>>())
        .fetch_all(&mut **tx)
        .await?;
        Ok(made.into_iter().map(|(notification, _)| notification).filter(|notification| inserted.contains(&notification.id)).collect())
    }
}

/// Which channels a new notification goes out on.
#[derive(Debug, Clone, Copy)]
pub struct Channels {
    /// Email is configured (`SMTP_URL`); each account may still have turned it off.
    pub email: bool,
}

/// Where `account`'s new notifications go: `None` for email, when configured, on, and to a
/// verified address; each live webhook endpoint of the account.
pub async fn delivery_targets(tx: &mut Transaction<'_, Postgres>, account: Uuid, channels: Channels) -> Result<Vec<Option<Uuid>>, sqlx::Error> {
    // Nothing is mailed to an address its owner has not verified: anyone may sign up with
    // anyone's address.
    let (email_on, webhooks_on): (bool, bool) = sqlx::query_as(
        "SELECT COALESCE(bool_and(email_enabled), true)
                    AND EXISTS (SELECT 1 FROM accounts.accounts WHERE id = $1 AND email_verified_at IS NOT NULL),
                COALESCE(bool_and(webhooks_enabled), true)
         FROM notifier.channel_settings WHERE account_id = $1",
    )
    .bind(account)
    .fetch_one(&mut **tx)
    .await?;
    let mut targets: Vec<Option<Uuid>> = Vec::new();
    if email_on && channels.email {
        targets.push(None);
    }
    if webhooks_on {
        let endpoints: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM notifier.webhook_endpoints WHERE account_id = $1 AND deleted_at IS NULL")
            .bind(account)
            .fetch_all(&mut **tx)
            .await?;
        targets.extend(endpoints.into_iter().map(Some));
    }
    Ok(targets)
}

/// A delivery of `notification` to each of `targets` ([`delivery_targets`]); returns how many.
pub async fn add_deliveries(tx: &mut Transaction<'_, Postgres>, notification: &Notification, targets: &[Option<Uuid>]) -> Result<u64, sqlx::Error> {
    for endpoint in targets {
        add_delivery(tx, notification, *endpoint).await?;
    }
    Ok(targets.len() as u64)
}

/// A delivery of `notification` by email (`endpoint` `None`) or to a webhook endpoint.
pub async fn add_delivery(tx: &mut Transaction<'_, Postgres>, notification: &Notification, endpoint: Option<Uuid>) -> Result<String, sqlx::Error> {
    let id = delivery_id(notification.id, endpoint);
    sqlx::query(
        "INSERT INTO notifier.deliveries (id, notification_id, account_id, channel, endpoint_id)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&id)
    .bind(notification.id)
    .bind(notification.account_id)
    .bind(if endpoint.is_some() { "webhook" } else { "email" })
    .bind(endpoint)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}
