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
use rdkafka::producer::{FutureRecord, Producer};
use tokio::sync::Mutex;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::async_producer::AsyncProducer;
use crate::publisher::event_produced;
use crate::topics::blocking;
use crate::KafkaArgs;
use domain::Position;

/// The least time a transaction may stay open before the coordinator aborts it; also how long
/// one left open by a crashed process can hold back `read_committed` consumers.
const MIN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a slot keeps its producer without a transaction (checked every half of it, so a
/// producer goes after 30 to 45 s). Each producer is a client with threads and a connection of
/// its own, which a command API that takes no batches should not keep. Making one again is a new
/// client: a connection (with TLS and SASL where configured), metadata, the coordinator and a
/// producer id, within the publish timeout.
const IDLE_PRODUCER: Duration = Duration::from_secs(30);

/// What every `transactional.id` of the publishers of `topic` starts with (an ACL grants it).
pub fn transactional_id_prefix(topic: &str) -> String {
    format!("{topic}-batches-")
}

/// A producer for one transaction at a time: made on first use, dropped after a fatal error
/// or [`IDLE_PRODUCER`] without a transaction.
struct Slot {
    producer: Option<AsyncProducer>,
    last_used: tokio::time::Instant,
}

/// Publishes groups of events atomically. Cheap to clone.
#[derive(Clone)]
pub struct AtomicPublisher {
    slots: Arc<[Mutex<Slot>]>,
    next_slot: Arc<AtomicUsize>,
    kafka: KafkaArgs,
    timeout: Duration,
    /// [`IDLE_PRODUCER`], shorter in tests.
    idle_producer: Duration,
    instance: Uuid,
    /// The transactions in flight, each in a task of its own; [`AtomicPublisher::finish`] waits.
    transactions: TaskTracker,
}

impl AtomicPublisher {
    /// `producers` transactions can be open at once; each waits at most `timeout` for the
    /// broker (per step: delivery, commit).
    pub fn new(kafka: &KafkaArgs, timeout: Duration, producers: usize) -> Self {
        let slots: Vec<_> = (0..producers.max(1)).map(|_| Mutex::new(Slot { producer: None, last_used: tokio::time::Instant::now() })).collect();
        AtomicPublisher {
            slots: slots.into(),
            next_slot: Arc::new(AtomicUsize::new(0)),
            kafka: kafka.clone(),
            timeout,
            idle_producer: IDLE_PRODUCER,
            instance: Uuid::new_v4(),
            transactions: TaskTracker::new(),
        }
    }

    /// Registers a transactional id with the coordinator once. On a new cluster the first
    /// registration creates the transaction state topic, which takes seconds: longer than a
    /// request should wait. Once the topic exists a producer is quick to make, so none is kept
    /// for a batch that may never come: producers are made on first use.
    pub async fn warm_up(&self) {
        // Slot 0's id: held, so no group registers it at the same time (the later registration
        // would fence the other's producer).
        let slot = self.slots[0].lock().await;
        if slot.producer.is_none() {
            match self.transactional_producer(0, MIN_TRANSACTION_TIMEOUT.max(self.timeout)).await {
                Ok(producer) => drop_producer(producer).await,
                Err(error) => tracing::warn!(%error, "could not register a transactional producer yet; the first batch tries again"),
            }
        }
    }

    /// Drops each slot's producer once it has gone [`IDLE_PRODUCER`] without a transaction,
    /// until [`AtomicPublisher::finish`] or until the pool itself is dropped (the future holds
    /// no handle on it).
    pub fn tidy(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let slots = Arc::downgrade(&self.slots);
        let (transactions, idle) = (self.transactions.clone(), self.idle_producer);
        async move {
            loop {
                tokio::select! {
                    // Closed by `finish` and empty: nothing will use a slot again.
                    _ = transactions.wait() => return,
                    _ = tokio::time::sleep(idle / 2) => {}
                }
                let Some(slots) = slots.upgrade() else { return };
                for slot in slots.iter() {
                    // A slot in use is not idle.
                    let Ok(mut slot) = slot.try_lock() else { continue };
                    if slot.last_used.elapsed() >= idle {
                        if let Some(producer) = slot.producer.take() {
                            drop_producer(producer).await;
                        }
                    }
                }
            }
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
        let producer = match slot.producer.as_ref() {
            Some(producer) => producer.clone(),
            None => {
                let producer = self.transactional_producer(slot_index, self.timeout).await?;
                slot.producer.insert(producer).clone()
            }
        };
        let outcome = self.transaction(&producer, events).await;
        slot.last_used = tokio::time::Instant::now();
        match outcome {
            Ok(positions) => Ok(positions),
            Err(Failed { error, producer_usable }) => {
                if !producer_usable {
                    // The next group gets a new producer.
                    slot.producer = None;
                    drop_producer(producer).await;
                }
                Err(error)
            }
        }
    }

    /// A producer for `slot`, registered with the coordinator within `init_timeout`.
    async fn transactional_producer(&self, slot: usize, init_timeout: Duration) -> Result<AsyncProducer, KafkaError> {
        let transaction_timeout = (self.timeout * 2).max(MIN_TRANSACTION_TIMEOUT);
        let producer = AsyncProducer::create(
            self.kafka
                .producer_config(self.timeout)
                .set("transactional.id", format!("{}{}-{slot}", transactional_id_prefix(&self.kafka.topic), self.instance))
                .set("transaction.timeout.ms", transaction_timeout.as_millis().to_string()),
        )?;
        let init = producer.clone();
        match blocking(move || init.init_transactions(init_timeout)).await {
            Ok(()) => Ok(producer),
            Err(error) => {
                // Gone before the slot is free: alive, it would go on registering the id and
                // could fence the slot's next producer.
                drop_producer(producer).await;
                Err(error)
            }
        }
    }

    async fn transaction(&self, producer: &AsyncProducer, events: &[Envelope]) -> Result<Vec<Position>, Failed> {
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
    async fn send_all(&self, producer: &AsyncProducer, events: &[Envelope]) -> Result<Vec<Position>, KafkaError> {
        let mut deliveries = Vec::with_capacity(events.len());
        let span = tracing::Span::current();
        for envelope in events {
            let key = envelope.key();
            let payload = envelope.encode();
            let record = FutureRecord::to(&self.kafka.topic).key(&key).payload(&payload).headers(crate::trace_headers::record_headers(&span));
            deliveries.push(producer.enqueue(record).await?);
        }
        let mut positions = Vec::with_capacity(events.len());
        for delivery in deliveries {
            positions.push(delivery.acknowledged().await?);
        }
        Ok(positions)
    }

    /// Aborts the open transaction after `error`, unless the producer can no longer do even
    /// that (then the coordinator aborts it when it times out, and the producer is replaced).
    async fn abort_after(&self, producer: &AsyncProducer, error: KafkaError) -> Failed {
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

/// Drops a producer off the runtime's threads: dropping the last handle wakes and joins its
/// event thread, which purges and flushes its queue (up to 500 ms) and destroys the client.
async fn drop_producer(producer: AsyncProducer) {
    let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producers_held(publisher: &AtomicPublisher) -> usize {
        publisher.slots.iter().filter(|slot| slot.try_lock().map_or(true, |slot| slot.producer.is_some())).count()
    }

    /// An API that takes no batches holds no transactional producer (each one is a client with
    /// threads and a connection); one that took a batch drops its producer once idle, and the next
    /// batch on that slot makes another under the same transactional id. The tidying ends with
    /// `finish`.
    #[tokio::test]
    async fn idle_producers_are_dropped_and_the_next_group_makes_another() {
        let (_broker, kafka) = crate::embedded_broker::for_test(2);
        let publisher = AtomicPublisher { idle_producer: Duration::from_millis(400), ..AtomicPublisher::new(&kafka, Duration::from_secs(10), 1) };
        let group = |first: u128| -> Vec<Envelope> {
            (first..first + 3)
                .map(|i| Envelope::new(domain::SubmissionId::from_u128(i), domain::Event::ProcessingStarted {}, chrono::Utc::now(), Uuid::nil()))
                .collect()
        };
        let held_none_within_10_s = || async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while producers_held(&publisher) > 0 {
                assert!(tokio::time::Instant::now() < deadline, "a producer is still held after 10 s without a transaction");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };

        publisher.warm_up().await;
        assert_eq!(producers_held(&publisher), 0, "the warm-up keeps no producer");
        let tidying = tokio::spawn(publisher.tidy());
        assert_eq!(publisher.publish_atomically(group(0)).await.unwrap().len(), 3);
        assert_eq!(producers_held(&publisher), 1, "the slot that ran the transaction keeps its producer for the next");
        held_none_within_10_s().await;
        assert_eq!(publisher.publish_atomically(group(10)).await.unwrap().len(), 3, "the next group makes a new producer");

        publisher.finish().await;
        tokio::time::timeout(Duration::from_secs(10), tidying).await.expect("tidying ends once the publisher is finished").unwrap();
    }
}
