//! A producer whose sends resolve once the broker acknowledged the record, served by a thread
//! that sleeps until librdkafka has something for it.
//!
//! Why not rust-rdkafka's `FutureProducer`: its polling thread asks for events 100 ms at a time,
//! and `BaseProducer::poll` (0.39) rounds what is left of its deadline down to whole
//! milliseconds, so every call ends by polling without waiting until the deadline has passed:
//! about a millisecond of spinning per 100 ms, 1 % of a core per producer with nothing to do
//! (BENCHMARKS.md, "Producers wait for librdkafka's signal"). Here librdkafka writes a byte to
//! a socket when its event queue stops being empty (`rd_kafka_queue_io_event_enable`; once,
//! until the queue is next polled), and the thread blocks reading that socket, then serves what
//! is queued without waiting. Nothing runs while nothing happens, and dropping the producer
//! wakes the thread at once. rdkafka does not wrap that call; this module and `topic_identity`
//! are the raw FFI.

use std::io::{ErrorKind, Read, Write};
use std::ops::Deref;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use domain::Position;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, FutureRecord, Producer, ProducerContext};
use rdkafka_sys as ffi;
use tokio::sync::oneshot;

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

/// A producer and the thread that serves its events. Cheap to clone; the transactional calls
/// and `flush` are the [`BaseProducer`]'s. Dropping the last handle blocks until the client is
/// destroyed (what it still held purged and failed, for at most 500 ms), as rust-rdkafka's own
/// producers do: drop it off the async workers.
#[derive(Clone)]
pub struct AsyncProducer {
    served: Arc<Served>,
}

/// The client, shared with the thread that serves it until this is dropped.
struct Served {
    /// Taken first when dropped, so that the serving thread destroys the client.
    producer: Option<Arc<BaseProducer<Acknowledgements>>>,
    stop: Arc<AtomicBool>,
    /// The socket librdkafka signals on, to wake the serving thread.
    wake: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        drop(self.producer.take());
        self.stop.store(true, Ordering::Release);
        // A byte written after the store, so the thread reads it after the store too.
        loop {
            match (&self.wake).write(&[1]) {
                Err(error) if error.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                _ => break,
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl AsyncProducer {
    pub fn create(config: &ClientConfig) -> Result<Self, KafkaError> {
        let setup = |error: std::io::Error| KafkaError::ClientCreation(format!("could not set up the producer's event thread: {error}"));
        let producer = Arc::new(BaseProducer::from_config_and_context(config, Acknowledgements)?);
        let (woken, signalled) = UnixStream::pair().map_err(setup)?;
        // librdkafka writes to it from its own threads, which must never block.
        signalled.set_nonblocking(true).map_err(setup)?;
        let queue = SignallingQueue::new(&producer, signalled.try_clone().map_err(setup)?)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("producer-events".into())
            .spawn({
                let (producer, stop) = (Arc::clone(&producer), Arc::clone(&stop));
                move || serve(producer, queue, woken, &stop)
            })
            .map_err(setup)?;
        Ok(AsyncProducer { served: Arc::new(Served { producer: Some(producer), stop, wake: signalled, thread: Some(thread) }) })
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
            match BaseProducer::send(self, record) {
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
        self.served.producer.as_deref().expect("the producer is taken only when dropped")
    }
}

/// Serves the producer's events as they come, sleeping on `woken` in between, until `stop`;
/// then destroys the client (the last reference is this thread's).
fn serve(producer: Arc<BaseProducer<Acknowledgements>>, queue: SignallingQueue, mut woken: UnixStream, stop: &AtomicBool) {
    let mut signals = [0u8; 64];
    loop {
        // One poll even when the queue looks empty: a poll is what tells librdkafka to signal
        // its next event. Then until empty: it signals only when an empty queue gets an event.
        producer.poll(Duration::ZERO);
        while queue.len() > 0 {
            producer.poll(Duration::ZERO);
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
        match woken.read(&mut signals) {
            Ok(read) if read > 0 => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            // Never seen (the socket's other end is open until this thread ends); polling on a
            // timer still serves every event.
            outcome => {
                tracing::error!(?outcome, "a producer's event signal could not be read; polling instead");
                producer.poll(Duration::from_millis(100));
            }
        }
    }
    drop(queue);
    drop(producer);
}

/// The producer's event queue, with librdkafka writing a byte to a socket whenever the queue
/// stops being empty; both are given up when this is dropped.
struct SignallingQueue {
    queue: *mut ffi::rd_kafka_queue_t,
    /// Open as long as librdkafka may write to it.
    _signalled: UnixStream,
}

// SAFETY: librdkafka's queue handles may be used from any thread.
unsafe impl Send for SignallingQueue {}

impl SignallingQueue {
    fn new(producer: &BaseProducer<Acknowledgements>, signalled: UnixStream) -> Result<Self, KafkaError> {
        // SAFETY: the client outlives this queue reference (dropped before the client, in
        // `serve`), and librdkafka copies the one-byte payload.
        unsafe {
            let queue = ffi::rd_kafka_queue_get_main(producer.client().native_ptr());
            if queue.is_null() {
                return Err(KafkaError::ClientCreation("the producer has no event queue".into()));
            }
            ffi::rd_kafka_queue_io_event_enable(queue, signalled.as_raw_fd(), b"!".as_ptr().cast(), 1);
            Ok(SignallingQueue { queue, _signalled: signalled })
        }
    }

    fn len(&self) -> usize {
        // SAFETY: the queue reference is alive until drop.
        unsafe { ffi::rd_kafka_queue_length(self.queue) }
    }
}

impl Drop for SignallingQueue {
    fn drop(&mut self) {
        // SAFETY: stops the writes before the socket closes, then gives up the reference once.
        unsafe {
            ffi::rd_kafka_queue_io_event_enable(self.queue, -1, std::ptr::null(), 0);
            ffi::rd_kafka_queue_destroy(self.queue);
        }
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

    /// Dropping the last handle wakes the serving thread, which destroys the client before the
    /// drop returns: what it still held has failed by then. The transactional publisher relies on
    /// it: a producer that failed to register is gone before another takes its transactional id.
    #[tokio::test]
    async fn dropping_the_producer_fails_what_it_held_before_it_returns() {
        use futures_util::FutureExt;

        let producer = unreachable(Duration::from_secs(300));
        let delivery = producer.enqueue(record("k")).await.unwrap();
        drop(producer);
        let acknowledgement = delivery.acknowledged().now_or_never().expect("resolved when the drop returned");
        assert!(acknowledgement.is_err(), "a record purged with its producer was acknowledged: {acknowledgement:?}");
    }
}
