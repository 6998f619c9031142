//! The consume -> fold -> commit loop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use domain::Envelope;
use futures_util::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use service_kit::kafka::{DeadLetter, EventPublisher};
use tokio_util::sync::CancellationToken;

use crate::store::{self, BatchOutcome, Record};
use crate::Config;

#[derive(Debug, thiserror::Error)]
enum CommitError {
    #[error("read model unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("dead-letter topic did not acknowledge: {0}")]
    DeadLetter(#[from] rdkafka::error::KafkaError),
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the dead-letter topic may take to acknowledge before the batch is retried.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters a running projector exposes (logs, tests, later metrics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Events applied to the read model.
    pub applied: AtomicU64,
    /// Records recognised as already applied.
    pub duplicates: AtomicU64,
    /// Records that could not be decoded or that the fold refused, now on the dead-letter topic.
    pub dead_lettered: AtomicU64,
}

pub struct Projector {
    consumer: StreamConsumer,
    pool: PgPool,
    topic: String,
    dead_letter_topic: String,
    publisher: EventPublisher,
    batch_size: usize,
    stats: Arc<Stats>,
}

impl Projector {
    /// Assigns every partition of the topic at the position stored in the read model
    /// (from the beginning where none is stored: an empty database replays the whole topic).
    pub async fn start(config: &Config, pool: PgPool) -> anyhow::Result<Self> {
        let partitions = config.kafka.ensure_topic().await?;
        let dead_letter_topic = config.kafka.dead_letter_topic();
        config.kafka.ensure_topic_named(&dead_letter_topic).await?;
        let publisher = EventPublisher::new(&config.kafka, DEAD_LETTER_TIMEOUT)?;
        let positions = store::load_positions(&pool, &config.kafka.topic).await?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            let offset = positions.get(&partition).map_or(Offset::Beginning, |&next| Offset::Offset(next));
            assignment.add_partition_offset(&config.kafka.topic, partition, offset)?;
        }
        // Positions live in PostgreSQL, so the group id only names the client to the broker.
        let consumer: StreamConsumer = config.kafka.consumer_config("projector").create()?;
        consumer.assign(&assignment)?;
        tracing::info!(topic = %config.kafka.topic, partitions, resumed = positions.len(), "projector assigned");
        Ok(Projector {
            consumer,
            pool,
            topic: config.kafka.topic.clone(),
            dead_letter_topic,
            publisher,
            batch_size: config.batch_size.max(1),
            stats: Arc::default(),
        })
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Projects until `shutdown`. The batch in hand is committed (or, if the database is down,
    /// left for the next start to read again) before returning.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                received = self.consumer.recv() => received,
            };
            let mut batch = Batch::default();
            match first {
                Ok(message) => batch.add(&message),
                Err(error) => {
                    tracing::warn!(%error, "consume failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
            while batch.len < self.batch_size {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(message)) => batch.add(&message),
                    _ => break,
                }
            }
            if !self.commit(&batch, &shutdown).await {
                break;
            }
        }
        tracing::info!("projector stopped");
        Ok(())
    }

    /// Commits the batch, retrying while the database or the dead-letter topic is unavailable.
    /// Returns false when shutdown interrupted the retries (nothing of the batch is stored then).
    async fn commit(&self, batch: &Batch, shutdown: &CancellationToken) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.try_commit(batch).await {
                Ok(outcome) => {
                    let Stats { applied, duplicates, dead_lettered } = &*self.stats;
                    applied.fetch_add(outcome.applied as u64, Ordering::Relaxed);
                    duplicates.fetch_add(outcome.duplicates as u64, Ordering::Relaxed);
                    let parked = outcome.refused.len() + batch.undecodable.len();
                    if parked > 0 {
                        let total = dead_lettered.fetch_add(parked as u64, Ordering::Relaxed) + parked as u64;
                        tracing::warn!(parked, total, topic = %self.dead_letter_topic, "records sent to the dead-letter topic");
                    }
                    return true;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "batch not committed; keeping it and retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One attempt: fold the batch, park what cannot be used on the dead-letter topic (and wait
    /// for Kafka to hold it), then commit rows and positions together.
    async fn try_commit(&self, batch: &Batch) -> Result<BatchOutcome, CommitError> {
        let mut tx = store::begin_batch(&self.pool).await?;
        let outcome = tx.apply(&batch.records).await?;
        let refused = outcome.refused.iter().map(|(index, refusal)| {
            let record = &batch.records[*index];
            tracing::error!(
                submission_id = %record.envelope.submission_id,
                partition = record.partition,
                offset = record.offset,
                %refusal,
                "event refused by the fold"
            );
            DeadLetter {
                topic: self.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                key: Some(record.envelope.key().into_bytes()),
                value: Some(record.envelope.encode()),
                reason: format!("refused by the fold: {refusal}"),
            }
        });
        let letters: Vec<DeadLetter> = batch.undecodable.iter().cloned().chain(refused).collect();
        let sends = letters.iter().map(|letter| self.publisher.publish_dead_letter(&self.dead_letter_topic, letter));
        for sent in futures_util::future::join_all(sends).await {
            sent?;
        }
        tx.commit(&self.topic, &batch.next_offsets).await?;
        Ok(outcome)
    }
}

/// Records read since the last commit and the positions they bring the projector to.
#[derive(Default)]
struct Batch {
    records: Vec<Record>,
    next_offsets: BTreeMap<i32, i64>,
    len: usize,
    undecodable: Vec<DeadLetter>,
}

impl Batch {
    fn add(&mut self, message: &BorrowedMessage<'_>) {
        self.len += 1;
        self.next_offsets.insert(message.partition(), message.offset() + 1);
        let decoded = message
            .payload()
            .ok_or_else(|| "record has no value".to_owned())
            .and_then(|bytes| Envelope::decode(bytes).map_err(|e| e.to_string()));
        match decoded {
            Ok(envelope) => self.records.push(Record {
                partition: message.partition(),
                offset: message.offset(),
                envelope,
            }),
            Err(error) => {
                tracing::error!(partition = message.partition(), offset = message.offset(), %error, "undecodable record");
                self.undecodable.push(DeadLetter {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    reason: format!("undecodable: {error}"),
                });
            }
        }
    }
}
