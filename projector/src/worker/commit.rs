//! Committing a batch: write it (folded in its transaction, or ahead of it), park what cannot be
//! used on the dead-letter topic and wait for Kafka to hold it, then commit the rows with their
//! positions.

use std::sync::atomic::Ordering;
use std::time::Duration;

use kafka_kit::{DeadLetter, EventPublisher};
use tokio_util::sync::CancellationToken;

use super::reader::Batch;
use super::{wait_to_retry, Projector, Stats, Target, DEAD_LETTER_TIMEOUT};
use crate::generations;
use crate::store::{self, BatchOutcome, Folded};

const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
enum CommitError {
    #[error("read model unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("dead-letter topic did not acknowledge: {0}")]
    DeadLetter(#[from] rdkafka::error::KafkaError),
    #[error("no producer for the dead-letter topic: {0}")]
    DeadLetterProducer(#[from] kafka_kit::KafkaSetupError),
    #[error("this replica's leader lock is gone (its session ended); another replica may be writing")]
    NotLeader,
}

/// What became of a batch.
pub(super) enum Committed {
    Yes(BatchOutcome),
    /// The generation was retired by a switch; nothing of the batch was stored.
    Retired,
    /// Shutdown came while the batch could not be stored; nothing of it was.
    Interrupted,
}

impl Projector {
    /// Commits the batch, retrying while the database or the dead-letter topic is unavailable:
    /// as `folded` when it was folded ahead ([`store::fold_ahead`]), else folded in its
    /// transaction. A retry always folds in its transaction: an attempt whose `COMMIT` failed on
    /// the way back may have committed, and only a fold of what the database holds then says
    /// which of the batch's events are already there.
    pub(super) async fn commit(&self, batch: &Batch, folded: Option<&Folded>, shutdown: &CancellationToken) -> Committed {
        let mut backoff = Duration::from_millis(100);
        let mut folded = folded;
        loop {
            match self.try_commit(batch, folded.take()).await {
                Ok(Some((outcome, parked))) => {
                    let Stats { applied, duplicates, dead_lettered } = &*self.stats;
                    applied.fetch_add(outcome.applied as u64, Ordering::Relaxed);
                    duplicates.fetch_add(outcome.duplicates as u64, Ordering::Relaxed);
                    if parked > 0 {
                        let total = dead_lettered.fetch_add(parked as u64, Ordering::Relaxed) + parked as u64;
                        tracing::warn!(parked, total, topic = %self.dead_letter_topic, "records sent to the dead-letter topic");
                    }
                    return Committed::Yes(outcome);
                }
                Ok(None) => return Committed::Retired,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "batch not committed; keeping it and retrying");
                    if !wait_to_retry(&mut backoff, MAX_BACKOFF, shutdown).await {
                        return Committed::Interrupted;
                    }
                }
            }
        }
    }

    /// One attempt: write the batch (folded ahead, or folded now), park what cannot be used on the dead-letter topic (and wait
    /// for Kafka to hold it), then commit rows and positions together. Returns what it did and
    /// how many records it parked; `None` if the generation was retired.
    async fn try_commit(&self, batch: &Batch, folded: Option<&Folded>) -> Result<Option<(BatchOutcome, usize)>, CommitError> {
        let started = std::time::Instant::now();
        let durable = self.target == Target::Live;
        let mut tx = match store::begin_batch(&self.pool, self.generation, durable, self.leader_session).await? {
            store::Begun::Batch(tx) => tx,
            store::Begun::Retired => return Ok(None),
            store::Begun::NotLeader => return Err(CommitError::NotLeader),
        };
        let outcome = match folded {
            Some(folded) => {
                tx.write(folded, &self.keyring).await?;
                folded.outcome().clone()
            }
            None => tx.apply(&batch.records, &self.keyring).await?,
        };
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
                topic: self.kafka.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                key: Some(record.envelope.key().into_bytes()),
                value: Some(record.envelope.encode()),
                reason: format!("refused by the fold: {refusal}"),
            }
        });
        let letters = self.not_parked_yet(batch.undecodable.iter().cloned().chain(refused).collect()).await?;
        if !letters.is_empty() {
            let publisher =
                self.dead_letter_publisher.get_or_try_init(|| std::future::ready(EventPublisher::new(&self.kafka, DEAD_LETTER_TIMEOUT))).await?;
            let sends = letters.iter().map(|letter| publisher.publish_dead_letter(&self.dead_letter_topic, letter));
            for sent in futures_util::future::join_all(sends).await {
                sent?;
            }
        }
        tx.commit(&self.kafka.topic, &batch.next_offsets).await?;
        metrics::histogram!("content_processor_projector_commit_duration_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("content_processor_projector_rows_written_total").increment(outcome.applied as u64);
        for record in &batch.records {
            service_kit::metrics::event_consumed("projector", record.envelope.event.type_name());
        }
        Ok(Some((outcome, letters.len())))
    }

    /// Of the records this batch cannot use, those nobody parked yet. A rebuild reads again what
    /// the live generation read: the live projector parked those before its positions moved
    /// past them, so a rebuild parks only records at or past the live positions. After a topic
    /// reset the live generation read another log (another topic id), and a rebuild parks all.
    async fn not_parked_yet(&self, letters: Vec<DeadLetter>) -> Result<Vec<DeadLetter>, sqlx::Error> {
        if letters.is_empty() || self.target == Target::Live {
            return Ok(letters);
        }
        let Some(live) = generations::live(&self.pool).await? else { return Ok(letters) };
        let topic = &self.kafka.topic;
        let live_log = store::load_topic_identity(&self.pool, live, topic).await?;
        let this_log = store::load_topic_identity(&self.pool, self.generation, topic).await?;
        if live_log.is_none() || live_log != this_log {
            return Ok(letters);
        }
        let live_read = store::load_positions(&self.pool, live, topic).await?;
        Ok(letters.into_iter().filter(|letter| live_read.get(&letter.partition).is_none_or(|&next| letter.offset >= next)).collect())
    }
}
