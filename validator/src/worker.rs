//! The consume -> judge -> produce -> commit loop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use domain::{Content, Envelope, Event};
use kafka_kit::group_member::{commit_progress, commit_stored, next_batch, GroupMember};
use kafka_kit::trace_headers;
use kafka_kit::{EventPublisher, Outgoing};
use keyring::store::StoredKey;
use keyring::Keyring;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use service_kit::health::ReadinessCheck;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::judge::{judgement_for, Judgement};
use crate::Config;

/// Pause before retrying a batch whose output Kafka did not acknowledge.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

pub struct Validator {
    consumer: StreamConsumer<GroupMember>,
    publisher: EventPublisher,
    /// The key store, for the data keys sealed content opens with.
    pool: PgPool,
    keyring: Keyring,
    topic: String,
    batch_size: usize,
    processing_delay: Duration,
    judged: Arc<std::sync::atomic::AtomicU64>,
}

/// A judgement with where its submission's record came from: the partition its output goes
/// to, and the span of that record, whose trace the output continues.
struct Judged {
    partition: i32,
    judgement: Judgement,
    span: tracing::Span,
}

impl Judged {
    fn outgoing<'a>(&'a self, envelope: &'a Envelope) -> Outgoing<'a> {
        Outgoing { envelope, partition: Some(self.partition), trace: Some(&self.span) }
    }
}

/// Offsets to commit: for each partition, the offset after the last record handled.
type Progress = BTreeMap<i32, i64>;

impl Validator {
    /// Connects, makes sure the topic exists and joins the consumer group.
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        config.kafka.ensure_topic().await?;
        let consumer: StreamConsumer<GroupMember> =
            config.kafka.consumer_config(&config.group_id).create_with_context(GroupMember::new("validator"))?;
        consumer.subscribe(&[&config.kafka.topic])?;
        let publisher = EventPublisher::new(&config.kafka, Duration::from_millis(config.publish_timeout_ms))?;
        Ok(Validator {
            consumer,
            publisher,
            // Lazily: a log of plain text (or one broker outage at start) needs no key store yet.
            // Its only statement reads keys by account.
            pool: service_kit::postgres::pool_options(2).connect_lazy_with(service_kit::postgres::planned_once(config.database_url.parse()?)),
            keyring: Keyring::from_args(&config.keyring)?,
            topic: config.kafka.topic.clone(),
            batch_size: config.batch_size.max(1),
            processing_delay: config.processing_delay(),
            judged: Default::default(),
        })
    }

    /// A view of the partitions this instance owns, usable while it runs (it is moved into
    /// [`Validator::run`]).
    pub fn assignment_probe(&self) -> Box<dyn Fn() -> Vec<i32> + Send + Sync> {
        self.consumer.context().owned_probe()
    }

    /// Fails while a partition is held at a record only a newer build reads.
    pub fn readiness_check(&self) -> ReadinessCheck {
        self.consumer.context().held.readiness_check("validator")
    }

    /// A counter of submissions this instance has judged (output acknowledged), shared live.
    pub fn judged_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.judged.clone()
    }

    /// Consumes until `shutdown`; the batch in hand is finished and committed before returning.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(topic = %self.topic, "validator running");
        while let Some(batch) = next_batch(&self.consumer, self.batch_size, &shutdown).await {
            self.handle_batch(&batch, &shutdown).await;
        }
        commit_stored(&self.consumer);
        tracing::info!("validator stopped");
        Ok(())
    }

    async fn handle_batch(&self, batch: &[rdkafka::message::OwnedMessage], shutdown: &CancellationToken) {
        let started = std::time::Instant::now();
        metrics::histogram!("content_processor_validator_batch_records").record(batch.len() as f64);
        let mut progress = Progress::new();
        let mut created = Vec::new();
        for message in batch {
            let (partition, offset) = (message.partition(), message.offset());
            if self.consumer.context().held.is_held(partition) {
                continue;
            }
            if let Some(payload) = message.payload() {
                match Envelope::decode(payload) {
                    Ok(envelope) => {
                        service_kit::metrics::event_consumed("validator", envelope.event.type_name());
                        // Only creations are judged: the validator reads its own output on the
                        // same topic and skips it.
                        if matches!(envelope.event, Event::SubmissionCreated { .. }) {
                            created.push((partition, message, envelope));
                        }
                    }
                    Err(error) if error.is_newer_version() => {
                        self.consumer.context().held.hold(&self.consumer, &self.topic, partition, offset, &error);
                        continue;
                    }
                    // The projector sends undecodable records to the dead-letter topic; here
                    // they are simply not ours to judge.
                    Err(error) => tracing::warn!(partition, offset, %error, "skipping undecodable record"),
                }
            }
            progress.insert(partition, offset + 1);
        }
        let Some(keys) = self.keys_for(&created, shutdown).await else { return };
        let judgements: Vec<Judged> = created
            .iter()
            .map(|(partition, message, envelope)| {
                // Its output continues the trace of the submission's record.
                let span = trace_headers::record_span("validator", *message, envelope.submission_id);
                let text = span.in_scope(|| text_of(envelope, &keys));
                Judged { partition: *partition, judgement: judgement_for(envelope, text.as_deref()), span }
            })
            .collect();
        if judgements.is_empty() {
            commit_progress(&self.consumer, &self.topic, progress.iter().map(|(&partition, &next)| (partition, next)));
            return;
        }
        // Kafka must hold the output before the input is marked done: retry until it does.
        // Re-sending is safe, the events carry derived ids that consumers deduplicate.
        while let Err(error) = self.emit(&judgements).await {
            tracing::warn!(%error, records = judgements.len(), "output not acknowledged; retrying the batch");
            if shutdown.is_cancelled() {
                // Not committed: another instance, or this one after restart, redoes the batch.
                return;
            }
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
        for judged in &judgements {
            judged.span.in_scope(|| tracing::debug!(verdict = judged.judgement.verdict.event.type_name(), "judged"));
        }
        self.judged.fetch_add(judgements.len() as u64, std::sync::atomic::Ordering::Relaxed);
        // From the batch in hand to every verdict acknowledged by Kafka.
        metrics::histogram!("content_processor_validator_judging_duration_seconds").record(started.elapsed().as_secs_f64());
        commit_progress(&self.consumer, &self.topic, progress.iter().map(|(&partition, &next)| (partition, next)));
    }

    /// The data keys of the owners of sealed content in `created`, read until the key store
    /// answers (a verdict is never guessed); `None` if `shutdown` came first.
    async fn keys_for(&self, created: &[(i32, &OwnedMessage, Envelope)], shutdown: &CancellationToken) -> Option<HashMap<Uuid, StoredKey>> {
        let mut owners: Vec<Uuid> = created
            .iter()
            .filter_map(|(_, _, envelope)| match &envelope.event {
                Event::SubmissionCreated { content: Content::Sealed(_), owner_id, .. } => *owner_id,
                _ => None,
            })
            .collect();
        if owners.is_empty() {
            return Some(HashMap::new());
        }
        owners.sort_unstable();
        owners.dedup();
        loop {
            match keyring::store::stored_keys(&self.pool, &self.keyring, &owners).await {
                Ok(keys) => match owners.iter().find_map(|owner| unusable(owner, keys.get(owner))) {
                    None => return Some(keys),
                    // A wrong or missing key-encryption key: wait for the right configuration
                    // rather than judge text nobody could read.
                    Some(error) => tracing::error!(%error, "a data key is not usable; retrying the batch"),
                },
                Err(error) => tracing::warn!(%error, "the key store did not answer; retrying the batch"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(RETRY_BACKOFF) => {}
            }
        }
    }

    /// Emits each judgement's events to the partition its submission was created on, so a
    /// submission's whole history stays in one partition even after partitions are added
    /// (which changes where its key would hash to).
    async fn emit(&self, judgements: &[Judged]) -> Result<(), KafkaError> {
        let mut started: Vec<_> = judgements.iter().map(|judged| judged.outgoing(&judged.judgement.started)).collect();
        let verdicts: Vec<_> = judgements.iter().map(|judged| judged.outgoing(&judged.judgement.verdict)).collect();
        if self.processing_delay.is_zero() {
            // Every ProcessingStarted is enqueued before any verdict: order per submission holds.
            started.extend(verdicts);
            return self.publisher.publish_all(started).await;
        }
        self.publisher.publish_all(started).await?;
        tokio::time::sleep(self.processing_delay).await;
        self.publisher.publish_all(verdicts).await
    }
}

/// Why `owner`'s stored key cannot be used, if it cannot.
fn unusable(owner: &Uuid, key: Option<&StoredKey>) -> Option<String> {
    match key {
        Some(Ok(_)) => None,
        Some(Err(error)) => Some(error.to_string()),
        None => Some(format!("account {owner} has no data key")),
    }
}

/// The text of a created submission: plain, or sealed and opened with its owner's key (every
/// key usable, [`Validator::keys_for`] made sure); `None` when the owner was erased, or the
/// sealed bytes do not open with the key (tampered: logged, and judged as unreadable).
fn text_of(created: &Envelope, keys: &HashMap<Uuid, StoredKey>) -> Option<String> {
    let Event::SubmissionCreated { content, owner_id, .. } = &created.event else { return None };
    let key = owner_id.and_then(|owner| keys.get(&owner));
    keyring::store::readable_text(content, key, created.submission_id).unwrap_or_else(|error| {
        tracing::error!(%error, "sealed content does not open; judged as erased");
        None
    })
}
