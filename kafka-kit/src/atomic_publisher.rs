//! Publishing a group of events all or nothing: one Kafka transaction per group.
//!
//! A batch of submissions must be in the log entirely or not at all. Its events are keyed by
//! their own submission ids, so they spread over many partitions, and only a transaction makes
//! writes to several partitions atomic: consumers read with `isolation.level=read_committed`
//! (librdkafka's default, set explicitly in [`crate::KafkaArgs::consumer_config`]) and
//! never see a record of a transaction that was aborted, or that a crashed producer left open
//! (the coordinator aborts it after `transaction.timeout.ms`).
//!
//! A producer runs one transaction at a time, so a small pool of them serves concurrent
//! requests. Their `transactional.id`s are new for every process: nothing here needs fencing of
//! an older instance (each transaction stands alone, and a retried request republishes the
//! same event ids, which consumers recognise), and fresh ids mean two replicas can never fence
//! each other.
//!
//! librdkafka's in-memory mock cluster accepts transactions but writes no commit or abort
//! markers: on it, an aborted group's records are visible like any others.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use domain::Envelope;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::Mutex;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::publisher::{enqueue, event_produced};
use crate::topics::blocking;
use crate::KafkaArgs;
use domain::Position;

/// The least time a transaction may stay open before the coordinator aborts it; also how long
/// one left open by a crashed process can hold back `read_committed` consumers.
const MIN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// What every `transactional.id` of the publishers of `topic` starts with (an ACL grants it).
pub fn transactional_id_prefix(topic: &str) -> String {
    format!("{topic}-batches-")
}

/// Publishes groups of events atomically. Cheap to clone.
#[derive(Clone)]
pub struct AtomicPublisher {
    /// One producer per slot, created on first use and dropped after a fatal error.
    slots: Arc<[Mutex<Option<FutureProducer>>]>,
    next_slot: Arc<AtomicUsize>,
    kafka: KafkaArgs,
    timeout: Duration,
    instance: Uuid,
    /// The transactions in flight, each in a task of its own; [`AtomicPublisher::finish`] waits.
    transactions: TaskTracker,
}

impl AtomicPublisher {
    /// `producers` transactions can be open at once; each waits at most `timeout` for the
    /// broker (per step: delivery, commit).
    pub fn new(kafka: &KafkaArgs, timeout: Duration, producers: usize) -> Self {
        let slots: Vec<_> = (0..producers.max(1)).map(|_| Mutex::new(None)).collect();
        AtomicPublisher {
            slots: slots.into(),
            next_slot: Arc::new(AtomicUsize::new(0)),
            kafka: kafka.clone(),
            timeout,
            instance: Uuid::new_v4(),
            transactions: TaskTracker::new(),
        }
    }

    /// Creates the pool's first producer and registers its transactional id with the
    /// coordinator. On a new cluster the first registration also creates the transaction state
    /// topic, which takes seconds: longer than a request should wait. The other producers are
    /// made on first use (each is a client with its own threads and buffers, idle until then);
    /// registering them is quick once the topic exists. On failure, first use tries again.
    pub async fn warm_up(&self) {
        let mut slot = self.slots[0].lock().await;
        if slot.is_some() {
            return;
        }
        match self.transactional_producer(0, MIN_TRANSACTION_TIMEOUT.max(self.timeout)).await {
            Ok(producer) => *slot = Some(producer),
            Err(error) => tracing::warn!(%error, "the first transactional producer is not ready yet; it is set up on first use"),
        }
    }

    /// Publishes every event, each to where its key hashes, in one transaction. Resolves with
    /// their positions once the transaction committed; with an error when it was aborted (none
    /// of them will ever be read) or when the commit's outcome is unknown (a retry with the
    /// same events is then safe: consumers see a second copy as a duplicate).
    ///
    /// The transaction runs in a task of its own, finished (committed or aborted) whatever
    /// becomes of the caller: a request handler is dropped when its client disconnects, and a
    /// transaction dropped half way stayed open on its pooled producer, so the next group on
    /// that slot failed to begin one (503) and every `read_committed` consumer of its
    /// partitions waited until the coordinator aborted it.
    pub async fn publish_atomically(&self, events: Vec<Envelope>) -> Result<Vec<Position>, KafkaError> {
        let publisher = self.clone();
        let task = self.transactions.spawn(async move { publisher.publish_in_a_slot(&events).await }.instrument(tracing::Span::current()));
        task.await.map_err(|_| KafkaError::Canceled)?
    }

    /// On shutdown, once no request can start another: waits until every transaction in flight
    /// (their clients may have gone) committed or aborted, so none is left open for the
    /// coordinator to time out while readers of its partitions wait.
    pub async fn finish(&self) {
        self.transactions.close();
        self.transactions.wait().await;
    }

    async fn publish_in_a_slot(&self, events: &[Envelope]) -> Result<Vec<Position>, KafkaError> {
        let slot_index = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[slot_index].lock().await;
        let producer = match slot.as_ref() {
            Some(producer) => producer.clone(),
            None => {
                let producer = self.transactional_producer(slot_index, self.timeout).await?;
                slot.insert(producer).clone()
            }
        };
        match self.transaction(&producer, events).await {
            Ok(positions) => Ok(positions),
            Err(Failed { error, producer_usable }) => {
                if !producer_usable {
                    // The next group gets a new producer.
                    *slot = None;
                }
                Err(error)
            }
        }
    }

    /// A producer for `slot`, registered with the coordinator within `init_timeout`.
    async fn transactional_producer(&self, slot: usize, init_timeout: Duration) -> Result<FutureProducer, KafkaError> {
        let transaction_timeout = (self.timeout * 2).max(MIN_TRANSACTION_TIMEOUT);
        let producer: FutureProducer = self
            .kafka
            .producer_config(self.timeout)
            .set("transactional.id", format!("{}{}-{slot}", transactional_id_prefix(&self.kafka.topic), self.instance))
            .set("transaction.timeout.ms", transaction_timeout.as_millis().to_string())
            .create()?;
        let init = producer.clone();
        blocking(move || init.init_transactions(init_timeout)).await?;
        Ok(producer)
    }

    async fn transaction(&self, producer: &FutureProducer, events: &[Envelope]) -> Result<Vec<Position>, Failed> {
        producer.begin_transaction().map_err(|error| Failed { error, producer_usable: false })?;
        match self.send_all(producer, events).await {
            Ok(positions) => {
                let commit = producer.clone();
                let timeout = self.timeout;
                match blocking(move || commit.commit_transaction(timeout)).await {
                    Ok(()) => {
                        events.iter().for_each(event_produced);
                        Ok(positions)
                    }
                    Err(error) => Err(self.abort_after(producer, error).await),
                }
            }
            Err(error) => Err(self.abort_after(producer, error).await),
        }
    }

    /// Hands every record to the producer in order and waits for each acknowledgement.
    async fn send_all(&self, producer: &FutureProducer, events: &[Envelope]) -> Result<Vec<Position>, KafkaError> {
        let mut deliveries = Vec::with_capacity(events.len());
        let span = tracing::Span::current();
        for envelope in events {
            let key = envelope.key();
            let payload = envelope.encode();
            let record = FutureRecord::to(&self.kafka.topic).key(&key).payload(&payload).headers(crate::trace_headers::record_headers(&span));
            deliveries.push(enqueue(producer, record).await?);
        }
        let mut positions = Vec::with_capacity(events.len());
        for delivery in deliveries {
            let delivered = delivery.await.map_err(|_| KafkaError::Canceled)?.map_err(|(error, _)| error)?;
            positions.push(Position { partition: delivered.partition, offset: delivered.offset });
        }
        Ok(positions)
    }

    /// Aborts the open transaction after `error`, unless the producer can no longer do even
    /// that (then the coordinator aborts it when it times out, and the producer is replaced).
    async fn abort_after(&self, producer: &FutureProducer, error: KafkaError) -> Failed {
        if matches!(&error, KafkaError::Transaction(e) if e.is_fatal()) {
            return Failed { error, producer_usable: false };
        }
        let abort = producer.clone();
        let timeout = self.timeout;
        match blocking(move || abort.abort_transaction(timeout)).await {
            Ok(()) => Failed { error, producer_usable: true },
            Err(abort_error) => {
                tracing::warn!(error = %abort_error, "could not abort a transaction; the coordinator aborts it when it times out");
                Failed { error, producer_usable: false }
            }
        }
    }
}

/// Why a transaction did not commit, and whether its producer can run the next one.
struct Failed {
    error: KafkaError,
    producer_usable: bool,
}
