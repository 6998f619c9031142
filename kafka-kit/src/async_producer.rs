//! A producer whose sends resolve once the broker acknowledged the record, served by a polling
//! thread that sleeps while nothing happens.
//!
//! Why not rust-rdkafka's `FutureProducer`: its polling thread asks for events 100 ms at a time,
//! and `BaseProducer::poll` (0.39) rounds what is left of its deadline down to whole
//! milliseconds, so every call ends by polling without waiting until the deadline has passed:
//! about a millisecond of spinning per 100 ms, 1 % of a core per producer with nothing to do
//! (BENCHMARKS.md, "Producers poll a second at a time"). Polling a second at a time spins for one
//! millisecond a second. Acknowledgements are not later for it: a poll hands over each event as
//! it comes.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use domain::Position;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, FutureRecord, ProducerContext};
use tokio::sync::oneshot;

/// How long one poll of the polling thread lasts: the spin at its end is 1/1000th of it, and a
/// dropped producer is destroyed at most this late.
const POLL_WINDOW: Duration = Duration::from_secs(1);

/// How long to wait for room when the producer's local queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// What a record's acknowledgement resolves with.
type Acknowledgement = Result<Position, KafkaError>;

/// Hands each acknowledgement (or the reason there is none) to the send waiting for it.
pub struct Acknowledgements;

impl ClientContext for Acknowledgements {}

impl ProducerContext for Acknowledgements {
    type DeliveryOpaque = Box<oneshot::Sender<Acknowledgement>>;

    fn delivery(&self, result: &DeliveryResult<'_>, waiting: Self::DeliveryOpaque) {
        let acknowledgement = match result {
            Ok(message) => Ok(Position { partition: message.partition(), offset: message.offset() }),
            Err((error, _)) => Err(error.clone()),
        };
        // The sender may have stopped waiting; the record is stored all the same.
        let _ = waiting.send(acknowledgement);
    }
}

/// A record handed to the producer: resolves once the broker acknowledged it (acks=all), or
/// with the reason it will not be (the delivery timeout passed, the broker refused it, the
/// producer was destroyed first).
pub struct Delivery(oneshot::Receiver<Acknowledgement>);

impl Delivery {
    pub async fn acknowledged(self) -> Acknowledgement {
        self.0.await.unwrap_or(Err(KafkaError::Canceled))
    }
}

/// A producer and its polling thread. Cheap to clone; the transactional calls and `flush` are
/// the [`BaseProducer`]'s. Dropping the last handle stops the polling thread, which then
/// destroys the client (purging what is still queued) off the caller's thread.
#[derive(Clone)]
pub struct AsyncProducer {
    polled: Arc<Polled>,
}

/// The client, shared with its polling thread, which runs until this is dropped.
struct Polled {
    producer: Arc<BaseProducer<Acknowledgements>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Polled {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl AsyncProducer {
    pub fn create(config: &ClientConfig) -> Result<Self, KafkaError> {
        let producer = Arc::new(BaseProducer::from_config_and_context(config, Acknowledgements)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (polled, stopped) = (Arc::clone(&producer), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("producer-poll".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    polled.poll(POLL_WINDOW);
                }
            })
            .map_err(|error| KafkaError::ClientCreation(format!("could not start the producer's polling thread: {error}")))?;
        Ok(AsyncProducer { polled: Arc::new(Polled { producer, stop }) })
    }

    /// Hands `record` to the producer, waiting while its queue is full: records enqueued one
    /// after another keep their order, unlike concurrent sends each retrying on its own.
    pub async fn enqueue<K, P>(&self, record: FutureRecord<'_, K, P>) -> Result<Delivery, KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let (waiting, acknowledgement) = oneshot::channel();
        let mut record = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: Box::new(waiting),
        };
        loop {
            match self.polled.producer.send(record) {
                Ok(()) => return Ok(Delivery(acknowledgement)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Hands `record` to the producer and resolves once the broker acknowledged it.
    pub async fn send<K, P>(&self, record: FutureRecord<'_, K, P>) -> Acknowledgement
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        self.enqueue(record).await?.acknowledged().await
    }
}

impl Deref for AsyncProducer {
    type Target = BaseProducer<Acknowledgements>;

    fn deref(&self) -> &Self::Target {
        &self.polled.producer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A producer of a cluster that never answers (nothing listens on port 9).
    fn unreachable(message_timeout: Duration) -> AsyncProducer {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:9").set("message.timeout.ms", message_timeout.as_millis().to_string());
        AsyncProducer::create(&config).unwrap()
    }

    fn record(key: &str) -> FutureRecord<'_, str, [u8]> {
        FutureRecord::to("events").key(key).payload(b"value")
    }

    #[tokio::test]
    async fn a_send_resolves_with_where_the_record_landed() {
        let (_broker, kafka) = crate::embedded_broker::for_test(3);
        let producer = kafka.producer(Duration::from_secs(10)).unwrap();
        let first = producer.send(FutureRecord::<str, [u8]>::to(&kafka.topic).key("a").payload(b"1").partition(2)).await.unwrap();
        let second = producer.send(FutureRecord::<str, [u8]>::to(&kafka.topic).key("a").payload(b"2").partition(2)).await.unwrap();
        assert_eq!((first.partition, second.partition), (2, 2));
        assert_eq!(second.offset, first.offset + 1);
    }

    #[tokio::test]
    async fn a_record_never_acknowledged_resolves_with_the_reason() {
        let producer = unreachable(Duration::from_millis(300));
        let error = tokio::time::timeout(Duration::from_secs(10), producer.send(record("k"))).await.expect("resolved within 10 s").unwrap_err();
        assert_eq!(error, KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut));
    }

    /// Dropping the last handle stops the polling thread, which destroys the client: what was
    /// still queued resolves with an error instead of never.
    #[tokio::test]
    async fn dropping_the_producer_resolves_what_it_still_held() {
        let producer = unreachable(Duration::from_secs(300));
        let delivery = producer.enqueue(record("k")).await.unwrap();
        drop(producer);
        let acknowledgement = tokio::time::timeout(Duration::from_secs(10), delivery.acknowledged()).await.expect("resolved within 10 s");
        assert!(acknowledgement.is_err(), "a record purged with its producer was acknowledged: {acknowledgement:?}");
    }
}
