//! The reader task: fetches records and decodes them into batches, one batch ahead of the
//! commits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use domain::Envelope;
use kafka_kit::consumer_lag::LagReporter;
use kafka_kit::held_partitions::HeldPartitions;
use kafka_kit::{trace_headers, DeadLetter, KafkaArgs};
use rdkafka::consumer::StreamConsumer as RdStreamConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};

use super::Target;
use crate::store::Record;

/// The projector's consumer: it reports its lag to the metrics.
pub(super) type StreamConsumer = RdStreamConsumer<LagReporter>;

/// A consumer for `target` that assigns partitions itself (it never subscribes).
pub(super) fn new_consumer(kafka: &KafkaArgs, target: Target) -> Result<Arc<StreamConsumer>, KafkaError> {
    let mut consumer_config = kafka.consumer_config(crate::CONSUMER_GROUP);
    // Positions live in PostgreSQL; a position the broker no longer has is a reset topic, to be
    // noticed, never silently replaced by another offset.
    consumer_config.set("auto.offset.reset", "error");
    // Its positions are committed with the rows, never to the group.
    consumer_config.set("enable.auto.commit", "false");
    // Its lag is reported as the projector's, or the rebuild's.
    let name = if target == Target::Live { "projector" } else { "rebuild" };
    Ok(Arc::new(consumer_config.create_with_context(LagReporter(name))?))
}

/// What the reader hands over.
pub(super) enum Read {
    Batch(Batch),
    OffsetOutOfRange,
}

/// A task that fetches records and decodes them into batches, one batch ahead of the commits.
pub(super) struct Reader {
    pub(super) batches: tokio::sync::mpsc::Receiver<Read>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl Reader {
    /// Starts reading batches of at most `batch_size` records: each what was fetched already,
    /// and what arrives within `linger` of its first record.
    pub(super) fn start(consumer: Arc<StreamConsumer>, batch_size: usize, linger: Duration, held: HeldPartitions) -> Reader {
        // One batch waiting while another commits: the overlap, with bounded memory.
        let (sender, batches) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(async move {
            loop {
                let mut batch = Batch::default();
                match consumer.recv().await {
                    Ok(message) => batch.add(&message, &consumer, &held),
                    Err(error) if is_reset(&error) => {
                        let _ = sender.send(Read::OffsetOutOfRange).await;
                        return;
                    }
                    // One event per `recv`, and librdkafka recovers by itself: pausing per event
                    // would work through an outage's backlog of them long after it ended.
                    Err(error) => {
                        tracing::warn!(%error, "consume failed; retrying");
                        continue;
                    }
                }
                // A transaction costs the database far more than a row: while records come
                // steadily, waiting a little for more makes fewer, larger ones.
                let linger_until = tokio::time::Instant::now() + linger;
                let mut reset = false;
                while batch.len() < batch_size {
                    match tokio::time::timeout_at(linger_until, consumer.recv()).await {
                        Ok(Ok(message)) => batch.add(&message, &consumer, &held),
                        Ok(Err(error)) => {
                            reset = is_reset(&error);
                            if !reset {
                                tracing::warn!(%error, "consume failed; retrying");
                            }
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if batch.len() > 0 && sender.send(Read::Batch(batch)).await.is_err() {
                    return;
                }
                if reset {
                    let _ = sender.send(Read::OffsetOutOfRange).await;
                    return;
                }
            }
        });
        Reader { batches, task }
    }
}

/// Whether `error` says the topic no longer has the position read from. librdkafka says so with
/// OffsetOutOfRange, or, with auto.offset.reset=error, with AutoOffsetReset, after which it
/// fetches nothing more from that partition.
fn is_reset(error: &KafkaError) -> bool {
    matches!(error, KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset))
}

/// Records read since the last commit and the positions they bring the projector to.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) records: Vec<Record>,
    pub(super) next_offsets: BTreeMap<i32, i64>,
    pub(super) undecodable: Vec<DeadLetter>,
}

impl Batch {
    /// Records read, usable or not.
    pub(super) fn len(&self) -> usize {
        self.records.len() + self.undecodable.len()
    }

    /// Adds a record to the batch, unless its partition is held. A record only a newer build
    /// reads holds its partition there: no position moves past it, so that build resumes on it.
    fn add(&mut self, message: &BorrowedMessage<'_>, consumer: &StreamConsumer, held: &HeldPartitions) {
        let (partition, offset) = (message.partition(), message.offset());
        if held.is_held(partition) {
            return;
        }
        let decoded = match message.payload().map(Envelope::decode) {
            None => Err("record has no value".to_owned()),
            Some(Ok(envelope)) => Ok(envelope),
            Some(Err(newer)) if newer.is_newer_version() => {
                held.hold(consumer, message.topic(), partition, offset, &newer);
                return;
            }
            Some(Err(error)) => Err(error.to_string()),
        };
        match decoded {
            Ok(envelope) => {
                // A span per record costs more than projecting it at rebuild speed: only when
                // someone reads the lines.
                if tracing::enabled!(tracing::Level::DEBUG) {
                    trace_headers::record_span("projector", message, envelope.submission_id)
                        .in_scope(|| tracing::debug!(event = envelope.event.type_name(), partition, offset, "read for projection"));
                }
                self.records.push(Record { partition, offset, envelope })
            }
            Err(error) => {
                tracing::error!(partition, offset, %error, "undecodable record");
                self.undecodable.push(DeadLetter {
                    topic: message.topic().to_owned(),
                    partition,
                    offset,
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    reason: format!("undecodable: {error}"),
                });
            }
        }
        self.next_offsets.insert(partition, offset + 1);
    }
}
