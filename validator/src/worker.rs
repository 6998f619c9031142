//! The consume -> judge -> produce -> commit loop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::Envelope;
use futures_util::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use service_kit::kafka::EventPublisher;
use tokio_util::sync::CancellationToken;

use crate::judge::{judgement_for, Judgement};
use crate::Config;

/// Pause before retrying a batch whose output Kafka did not acknowledge.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// Records the partitions this instance owns, so operators and tests can see the split.
#[derive(Default, Clone)]
struct AssignmentTracker {
    partitions: Arc<Mutex<Vec<i32>>>,
}

impl ClientContext for AssignmentTracker {}

impl ConsumerContext for AssignmentTracker {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut owned = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        match rebalance {
            Rebalance::Assign(list) => {
                *owned = list.elements().iter().map(|e| e.partition()).collect();
                owned.sort_unstable();
                tracing::info!(partitions = ?*owned, "partitions assigned");
            }
            Rebalance::Revoke(_) => owned.clear(),
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }
}

pub struct Validator {
    consumer: StreamConsumer<AssignmentTracker>,
    publisher: EventPublisher,
    topic: String,
    batch_size: usize,
    processing_delay: Duration,
    judged: Arc<std::sync::atomic::AtomicU64>,
}

/// Offsets to commit: for each partition, the offset after the last record handled.
type Progress = BTreeMap<i32, i64>;

impl Validator {
    /// Connects, makes sure the topic exists and joins the consumer group.
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        config.kafka.ensure_topic().await?;
        let consumer: StreamConsumer<AssignmentTracker> = config
            .kafka
            .consumer_config(&config.group_id)
            .create_with_context(AssignmentTracker::default())?;
        consumer.subscribe(&[&config.kafka.topic])?;
        let publisher = EventPublisher::new(&config.kafka, Duration::from_millis(config.publish_timeout_ms))?;
        Ok(Validator {
            consumer,
            publisher,
            topic: config.kafka.topic.clone(),
            batch_size: config.batch_size.max(1),
            processing_delay: config.processing_delay(),
            judged: Default::default(),
        })
    }

    /// A view of the partitions this instance owns, usable while it runs (it is moved into
    /// [`Validator::run`]).
    pub fn assignment_probe(&self) -> Box<dyn Fn() -> Vec<i32> + Send + Sync> {
        let owned = self.consumer.context().partitions.clone();
        Box::new(move || owned.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// A counter of submissions this instance has judged (output acknowledged), shared live.
    pub fn judged_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.judged.clone()
    }

    /// Consumes until `shutdown`; the batch in hand is finished and committed before returning.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(topic = %self.topic, "validator running");
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                received = self.consumer.recv() => received,
            };
            let first = match first {
                Ok(message) => message.detach(),
                // librdkafka reports connection trouble as events, one per `recv`, and recovers
                // by itself. No pause here: a pause per event would only work through the
                // backlog an outage leaves behind at that pace, long after the broker is back.
                Err(error) => {
                    tracing::warn!(%error, "consume failed; retrying");
                    continue;
                }
            };
            let mut batch = vec![first];
            // Take whatever else is already fetched, without waiting.
            while batch.len() < self.batch_size {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(message)) => batch.push(message.detach()),
                    _ => break,
                }
            }
            self.handle_batch(&batch, &shutdown).await;
        }
        self.commit(CommitMode::Sync);
        tracing::info!("validator stopped");
        Ok(())
    }

    async fn handle_batch(&self, batch: &[rdkafka::message::OwnedMessage], shutdown: &CancellationToken) {
        let mut progress = Progress::new();
        let mut judgements = Vec::new();
        for message in batch {
            progress.insert(message.partition(), message.offset() + 1);
            let Some(payload) = message.payload() else { continue };
            match Envelope::decode(payload) {
                Ok(envelope) => judgements.extend(judgement_for(&envelope)),
                // The projector sends undecodable records to the dead-letter topic; here they
                // are simply not ours to judge.
                Err(error) => tracing::warn!(
                    partition = message.partition(),
                    offset = message.offset(),
                    %error,
                    "skipping undecodable record"
                ),
            }
        }
        if judgements.is_empty() {
            self.store(&progress);
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
        for judgement in &judgements {
            tracing::debug!(submission_id = %judgement.verdict.submission_id, verdict = judgement.verdict.event.type_name(), "judged");
        }
        self.judged.fetch_add(judgements.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.store(&progress);
    }

    async fn emit(&self, judgements: &[Judgement]) -> Result<(), KafkaError> {
        if self.processing_delay.is_zero() {
            let events: Vec<Envelope> = judgements
                .iter()
                .flat_map(|j| [j.started.clone(), j.verdict.clone()])
                .collect();
            return self.publisher.publish_all(&events).await;
        }
        let started: Vec<Envelope> = judgements.iter().map(|j| j.started.clone()).collect();
        self.publisher.publish_all(&started).await?;
        tokio::time::sleep(self.processing_delay).await;
        let verdicts: Vec<Envelope> = judgements.iter().map(|j| j.verdict.clone()).collect();
        self.publisher.publish_all(&verdicts).await
    }

    /// Marks the batch done and commits in the background; a lost commit only means the batch
    /// is judged again, with identical output.
    fn store(&self, progress: &Progress) {
        let mut offsets = TopicPartitionList::new();
        for (&partition, &next) in progress {
            if let Err(error) = offsets.add_partition_offset(&self.topic, partition, Offset::Offset(next)) {
                tracing::warn!(%error, partition, "cannot record offset");
            }
        }
        if let Err(error) = self.consumer.store_offsets(&offsets) {
            // Typically the partition was revoked meanwhile: its new owner redoes the batch.
            tracing::debug!(%error, "offsets not stored");
            return;
        }
        self.commit(CommitMode::Async);
    }

    fn commit(&self, mode: CommitMode) {
        match self.consumer.commit_consumer_state(mode) {
            Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "offset commit failed; the next commit covers it"),
        }
    }
}
