//! Reads the event log (consumer group `notifier`) and turns verdicts into notifications.
//!
//! A `SubmissionCreated` with an owner is remembered until its verdict is read. A verdict then
//! makes a notification for a submission on its own, or counts towards its batch, which makes
//! one notification when its last item is judged. Each batch of records is handled in one
//! PostgreSQL transaction, and the consumer offsets are committed only after it: a crash before
//! the commit reads the records again, and derived notification ids make that a no-op.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::{Content, Envelope, Event};
use kafka_kit::group_member::{commit_progress, commit_stored, next_batch, GroupMember};
use kafka_kit::trace_headers;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use serde_json::json;
use service_kit::health::ReadinessCheck;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::store::{self, Awaited, AwaitedBatch, Channels, Notification};
use crate::Config;

/// What one transaction reads once per owner, for every record of its batch, and what it writes
/// at its end.
#[derive(Default)]
struct InTransaction {
    awaited: store::AwaitedWrites,
    notifications: store::NewNotifications,
    /// Whether the account exists, read with its row locked ([`store::lock_account`]).
    live: HashMap<Uuid, bool>,
    /// Data keys, read `FOR SHARE` after the account.
    keys: HashMap<Uuid, keyring::store::StoredKey>,
    /// Where the owner's new notifications go ([`store::delivery_targets`]).
    targets: HashMap<Uuid, Vec<Option<Uuid>>>,
}

/// How long a fetch waits for [`FETCH_MIN_BYTES`], in milliseconds: how late a notification may be.
const FETCH_WAIT_MS: &str = "500";
/// What a fetch waits for, unless [`FETCH_WAIT_MS`] passes first: 1 MiB.
const FETCH_MIN_BYTES: &str = "1048576";
/// Most records handled in one transaction.
const BATCH: usize = 500;
/// Pause before handling a batch again after the database failed.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// How [`Watcher::record`] stores a batch.
#[derive(Clone, Copy)]
enum Isolation {
    /// All records or none: the usual way, one transaction.
    Together,
    /// Each record in a savepoint of its own, so one the database refuses can be parked.
    EachRecord,
}

/// What storing a batch did: the next offset per partition, and the deliveries it made.
#[derive(Default)]
struct Recorded {
    progress: std::collections::BTreeMap<i32, i64>,
    deliveries: u64,
}

pub struct Watcher {
    consumer: StreamConsumer<GroupMember>,
    pool: PgPool,
    topic: String,
    channels: Channels,
    max_age: chrono::Duration,
    /// Opens a submission's sealed text for its webhook.
    keyring: keyring::Keyring,
    /// Wakes the delivery worker when new deliveries were recorded.
    wake: Arc<Notify>,
}

impl Watcher {
    pub async fn start(config: &Config, pool: PgPool, wake: Arc<Notify>) -> anyhow::Result<Self> {
        config.kafka.ensure_topic().await?;
        let consumer: StreamConsumer<GroupMember> = config
            .kafka
            .consumer_config(&config.group_id)
            // A notification may wait half a second where a verdict on screen may not: the
            // notifier fetches up to 1 MiB at a time, or what came in 500 ms. Its fetches cost the
            // broker as much as the validator's, and each is a transaction here.
            .set("fetch.wait.max.ms", FETCH_WAIT_MS)
            .set("fetch.min.bytes", FETCH_MIN_BYTES)
            .create_with_context(GroupMember::new("notifier"))?;
        consumer.subscribe(&[&config.kafka.topic])?;
        Ok(Watcher {
            consumer,
            pool,
            topic: config.kafka.topic.clone(),
            channels: Channels { email: config.smtp_url.is_some() },
            max_age: chrono::Duration::seconds(i64::try_from(config.max_age_secs).unwrap_or(i64::MAX / 1000)),
            keyring: keyring::Keyring::from_args(&config.keyring)?,
            wake,
        })
    }

    /// Fails while a partition is held at a record only a newer build reads.
    pub fn readiness_check(&self) -> ReadinessCheck {
        self.consumer.context().held.readiness_check("notifier")
    }

    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(topic = %self.topic, "notifier watching the log");
        while let Some(batch) = next_batch(&self.consumer, BATCH, &shutdown).await {
            // Until the database takes the batch: skipping it would lose notifications.
            loop {
                match self.handle(&batch).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, records = batch.len(), "cannot record the batch; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(RETRY_BACKOFF) => {}
                        }
                    }
                }
            }
        }
        commit_stored(&self.consumer);
        tracing::info!("notifier stopped watching");
        Ok(())
    }

    async fn handle(&self, batch: &[OwnedMessage]) -> Result<(), sqlx::Error> {
        let recorded = match self.record(batch, Isolation::Together).await {
            // One record the database refuses must not hold back the records after it, or any
            // other owner's notifications: the batch again, each record on its own.
            Err(error) if service_kit::postgres::is_refused_for_good(&error) => {
                tracing::warn!(%error, records = batch.len(), "a record of the batch cannot be stored; storing them one by one");
                self.record(batch, Isolation::EachRecord).await?
            }
            recorded => recorded?,
        };
        if recorded.deliveries > 0 {
            self.wake.notify_one();
        }
        commit_progress(&self.consumer, &self.topic, recorded.progress);
        Ok(())
    }

    /// Records what `batch` means in one transaction; with [`Isolation::EachRecord`], a record
    /// the database refuses for good is parked instead.
    async fn record(&self, batch: &[OwnedMessage], isolation: Isolation) -> Result<Recorded, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut recorded = Recorded::default();
        let mut state = InTransaction::default();
        for message in batch {
            let (partition, offset) = (message.partition(), message.offset());
            if self.consumer.context().held.is_held(partition) {
                continue;
            }
            match message.payload().map(Envelope::decode) {
                Some(Ok(envelope)) => {
                    service_kit::metrics::event_consumed("notifier", envelope.event.type_name());
                    let span = trace_headers::record_span("notifier", message, envelope.submission_id);
                    match isolation {
                        Isolation::Together => self.apply(&mut tx, &envelope, &mut state).instrument(span).await?,
                        Isolation::EachRecord => recorded.deliveries += self.apply_or_park(&mut tx, message, &envelope).instrument(span).await?,
                    }
                }
                Some(Err(error)) if error.is_newer_version() => {
                    self.consumer.context().held.hold(&self.consumer, &self.topic, partition, offset, &error);
                    continue;
                }
                // Not an event (the projector dead-letters it): nothing to tell anyone.
                _ => {}
            }
            recorded.progress.insert(partition, offset + 1);
        }
        recorded.deliveries += self.write_out(&mut tx, &mut state).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// [`Watcher::apply`] in a savepoint, its writes included; a refusal for good (say, a text
    /// PostgreSQL cannot store) parks the record with the reason and goes on.
    async fn apply_or_park(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        message: &OwnedMessage,
        envelope: &Envelope,
    ) -> Result<u64, sqlx::Error> {
        let mut savepoint = sqlx::Acquire::begin(&mut **tx).await?;
        // Reads of its own: a savepoint rolled back releases the locks it took.
        let mut own = InTransaction::default();
        let applied = async {
            self.apply(&mut savepoint, envelope, &mut own).await?;
            self.write_out(&mut savepoint, &mut own).await
        };
        match applied.await {
            Ok(deliveries) => {
                savepoint.commit().await?;
                Ok(deliveries)
            }
            Err(error) if service_kit::postgres::is_refused_for_good(&error) => {
                savepoint.rollback().await?;
                let (partition, offset) = (message.partition(), message.offset());
                tracing::error!(%error, partition, offset, "the record cannot be stored; parked (notifier.parked_records)");
                store::park(tx, partition, offset, envelope.submission_id, &error.to_string()).await?;
                metrics::counter!("content_processor_notifier_records_parked_total").increment(1);
                Ok(0)
            }
            Err(error) => Err(error),
        }
    }

    /// What the notifier may keep of a new submission of `owner`'s: `None` once the owner is
    /// erased (nothing is awaited for it), else its text when `wanted`, sealed text opened with
    /// the owner's data key. The account is locked first, then the key read `FOR SHARE` when the
    /// text is wanted, once per owner and transaction: an erasure either came first or waits for
    /// this transaction, and then scrubs what it wrote. An erasure that came first is known by
    /// the account being gone, whatever the key store says: one restored from a backup may hold
    /// the key again, and a notifier reading late must not keep the text.
    async fn text(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        state: &mut InTransaction,
        submission_id: Uuid,
        owner: Uuid,
        content: &Content,
        wanted: bool,
    ) -> Result<Option<Option<String>>, sqlx::Error> {
        if !Self::account_lives(tx, state, owner).await? {
            return Ok(None);
        }
        if !wanted {
            return Ok(Some(None));
        }
        if !state.keys.contains_key(&owner) {
            state.keys.extend(keyring::store::keys_held(tx, &self.keyring, &[owner]).await?);
        }
        let key = state.keys.get(&owner);
        if matches!(key, Some(Ok(None))) {
            return Ok(None);
        }
        Ok(Some(keyring::store::readable_text(content, key, submission_id).unwrap_or_else(|error| {
            tracing::error!(%submission_id, %error, "sealed content does not open; notified without it");
            None
        })))
    }

    /// Whether `owner`'s account exists, its row locked until the commit (once per transaction).
    /// An erasure locks the account before it deletes anything of it, so this transaction takes
    /// the account before it writes or deletes anything of the owner's, in the same order: one
    /// waits for the other, and neither for a lock the other holds.
    async fn account_lives(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, state: &mut InTransaction, owner: Uuid) -> Result<bool, sqlx::Error> {
        Ok(match state.live.entry(owner) {
            Entry::Occupied(known) => *known.get(),
            Entry::Vacant(unknown) => *unknown.insert(store::lock_account(tx, owner).await?),
        })
    }

    /// Takes out a submission awaited since an earlier batch, its account locked first
    /// ([`Watcher::account_lives`]); `None` when it is not awaited, or its account is gone (the
    /// erasure deleted what was awaited).
    async fn take_stored(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        state: &mut InTransaction,
        submission_id: Uuid,
    ) -> Result<Option<Awaited>, sqlx::Error> {
        let Some(owner) = store::awaited_owner(tx, submission_id).await? else { return Ok(None) };
        if !Self::account_lives(tx, state, owner).await? {
            return Ok(None);
        }
        store::take_awaited(tx, submission_id).await
    }

    /// Records what `envelope` means for notifications, to be written by [`Watcher::write_out`].
    async fn apply(&self, tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, envelope: &Envelope, state: &mut InTransaction) -> Result<(), sqlx::Error> {
        let submission_id = envelope.submission_id;
        let passed = match &envelope.event {
            Event::SubmissionCreated { content, owner_id: Some(owner_id), batch, .. } => {
                // A batch is told by its counts, not its items' texts.
                let Some(content) = self.text(tx, state, submission_id, *owner_id, content, batch.is_none()).await? else {
                    tracing::info!("its account is erased: nothing to notify");
                    return Ok(());
                };
                let awaited = Awaited {
                    submission_id,
                    owner_id: *owner_id,
                    content,
                    batch: batch.map(|b| AwaitedBatch { batch_id: b.batch_id, size: b.size }),
                    created_at: envelope.occurred_at,
                };
                state.awaited.add(awaited);
                return Ok(());
            }
            Event::SubmissionPassed {} => true,
            Event::SubmissionFailed { .. } => false,
            _ => return Ok(()),
        };
        let awaited = match state.awaited.take_added(submission_id) {
            Some(awaited) => awaited,
            None => match Self::take_stored(tx, state, submission_id).await? {
                Some(awaited) => awaited,
                None => return Ok(()),
            },
        };
        let notification = match awaited.batch {
            Some(batch) => {
                let Some((passed, failed)) = store::count_batch_verdict(tx, batch, submission_id, passed).await? else {
                    return Ok(());
                };
                tracing::debug!(batch_id = %batch.batch_id, passed, failed, "batch complete");
                Notification {
                    id: store::notification_id(batch.batch_id, "batch.completed"),
                    account_id: awaited.owner_id,
                    event_type: "batch.completed",
                    data: json!({ "batch_id": batch.batch_id, "size": batch.size, "passed": passed, "failed": failed }),
                    at: envelope.occurred_at,
                }
            }
            None => {
                let (status, reasons) = match &envelope.event {
                    Event::SubmissionFailed { reasons, .. } => ("FAILED", reasons.iter().map(|r| r.as_str()).collect()),
                    _ => ("PASSED", Vec::new()),
                };
                tracing::debug!(status, "verdict to notify");
                Notification {
                    id: store::notification_id(submission_id, "submission.judged"),
                    account_id: awaited.owner_id,
                    event_type: "submission.judged",
                    data: json!({
                        "submission_id": submission_id,
                        "status": status,
                        "reasons": reasons,
                        "content": awaited.content,
                        "created_at": awaited.created_at,
                        "processed_at": envelope.occurred_at,
                    }),
                    at: envelope.occurred_at,
                }
            }
        };
        if Utc::now() - notification.at > self.max_age {
            tracing::debug!(notification_id = %notification.id, "verdict too old to notify");
            return Ok(());
        }
        state.notifications.add(notification);
        Ok(())
    }

    /// Writes what the records applied so far made: the awaited submissions, then the
    /// notifications, and a delivery of each new one to every target of its owner. Returns the
    /// deliveries made.
    async fn write_out(&self, tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, state: &mut InTransaction) -> Result<u64, sqlx::Error> {
        state.awaited.flush(tx).await?;
        let mut deliveries = 0;
        for notification in state.notifications.insert(tx).await? {
            let targets = match state.targets.entry(notification.account_id) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(unknown) => unknown.insert(store::delivery_targets(tx, notification.account_id, self.channels).await?),
            };
            deliveries += store::add_deliveries(tx, &notification, targets).await?;
        }
        Ok(deliveries)
    }
}
