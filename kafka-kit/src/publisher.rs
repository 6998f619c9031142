//! Appending events to the submission topic, one or many, and answering only once the broker
//! acknowledged them; and the record a consumer could not use ([`DeadLetter`]).

use std::time::Duration;

use domain::{Envelope, Position};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureRecord, Producer};

use crate::async_producer::AsyncProducer;
use crate::topics::blocking;
use crate::{topic_partition_count, KafkaArgs, KafkaSetupError};

/// Counts an event Kafka acknowledged, by type.
pub(crate) fn event_produced(envelope: &Envelope) {
    metrics::counter!("content_processor_events_produced_total", "type" => envelope.event.type_name()).increment(1);
}

/// An event for [`EventPublisher::publish_all`]: where it goes, and the span whose trace it
/// continues (the current span when `None`).
pub struct Outgoing<'a> {
    pub envelope: &'a Envelope,
    /// The partition; where the key hashes to when `None`.
    pub partition: Option<i32>,
    pub trace: Option<&'a tracing::Span>,
}

impl<'a> From<&'a Envelope> for Outgoing<'a> {
    fn from(envelope: &'a Envelope) -> Self {
        Outgoing { envelope, partition: None, trace: None }
    }
}

/// Appends events to the submission topic and waits for the broker's acknowledgement.
#[derive(Clone)]
pub struct EventPublisher {
    producer: AsyncProducer,
    topic: String,
}

impl EventPublisher {
    pub fn new(kafka: &KafkaArgs, delivery_timeout: Duration) -> Result<Self, KafkaSetupError> {
        Ok(EventPublisher { producer: kafka.producer(delivery_timeout)?, topic: kafka.topic.clone() })
    }

    /// Resolves once Kafka has durably stored the event (acks=all), or with the reason it will
    /// not: the broker did not acknowledge within the delivery timeout, or refused the record.
    pub async fn publish(&self, envelope: &Envelope) -> Result<Position, KafkaError> {
        let key = envelope.key();
        let payload = envelope.encode();
        let record =
            FutureRecord::to(&self.topic).key(&key).payload(&payload).headers(crate::trace_headers::record_headers(&tracing::Span::current()));
        // Waiting for room in the local queue is unbounded; delivery itself is bounded by
        // message.timeout.ms, after which the send resolves with an error.
        let position = self.producer.send(record).await?;
        event_produced(envelope);
        Ok(position)
    }

    /// Parks a record the projector cannot use on the dead-letter topic: its original key and
    /// value, with the reason and where it came from in headers. Resolves once acknowledged.
    pub async fn publish_dead_letter(&self, topic: &str, letter: &DeadLetter) -> Result<(), KafkaError> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "dead-letter.reason", value: Some(letter.reason.as_str()) })
            .insert(Header { key: "dead-letter.topic", value: Some(letter.topic.as_str()) })
            .insert(Header { key: "dead-letter.partition", value: Some(partition.as_str()) })
            .insert(Header { key: "dead-letter.offset", value: Some(offset.as_str()) });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &letter.value {
            record = record.payload(value.as_slice());
        }
        self.producer.send(record).await?;
        metrics::counter!("content_processor_dead_letters_total").increment(1);
        Ok(())
    }

    /// Publishes several events, each to the partition given with it (by key when `None`), and
    /// waits for every acknowledgement. Records are handed to the producer strictly in the
    /// order given, waiting for room when its queue is full, and the idempotent producer keeps
    /// that order within a partition: the events of one submission land in the order given.
    pub async fn publish_all<'a>(&self, events: impl IntoIterator<Item = Outgoing<'a>>) -> Result<(), KafkaError> {
        let mut deliveries = Vec::new();
        let mut enqueued = Vec::new();
        for Outgoing { envelope, partition, trace } in events {
            enqueued.push(envelope);
            let key = envelope.key();
            let payload = envelope.encode();
            let headers = crate::trace_headers::record_headers(trace.unwrap_or(&tracing::Span::current()));
            let mut record = FutureRecord::to(&self.topic).key(&key).payload(&payload).headers(headers);
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            deliveries.push(self.producer.enqueue(record).await?);
        }
        for (delivery, envelope) in deliveries.into_iter().zip(enqueued) {
            delivery.acknowledged().await?;
            event_produced(envelope);
        }
        Ok(())
    }

    /// Whether the cluster answers a metadata request for the topic in time.
    pub async fn probe(&self) -> Result<(), String> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        blocking(move || topic_partition_count(producer.client(), &topic, Duration::from_secs(2)).map(|_| ()))
            .await
            .map_err(|error| format!("kafka unreachable: {error}"))
    }

    /// Waits until everything queued is acknowledged or `timeout` passes (for shutdown).
    pub async fn flush(&self, timeout: Duration) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }
}

/// A record that could not be used, with where it was and why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With room for one record in the producer's queue, every record after the first waits for
    /// a full queue: they must still land in the order given (a verdict never before its
    /// `ProcessingStarted`).
    #[tokio::test]
    async fn publish_all_keeps_the_order_given_when_the_queue_is_full() {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::{Message, Offset, TopicPartitionList};

        let (_broker, kafka) = crate::embedded_broker::for_test(1);
        let producer = AsyncProducer::create(kafka.producer_config(Duration::from_secs(10)).set("queue.buffering.max.messages", "1")).unwrap();
        let publisher = EventPublisher { producer, topic: kafka.topic.clone() };

        let events: Vec<Envelope> = (0..200)
            .map(|i| Envelope::new(domain::SubmissionId::from_u128(i), domain::Event::ProcessingStarted {}, chrono::Utc::now(), uuid::Uuid::nil()))
            .collect();
        publisher.publish_all(events.iter().map(|envelope| Outgoing { envelope, partition: Some(0), trace: None })).await.unwrap();

        let consumer: BaseConsumer = kafka.consumer_config("order-check").create().unwrap();
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&kafka.topic, 0, Offset::Beginning).unwrap();
        consumer.assign(&assignment).unwrap();
        let mut landed = Vec::new();
        while landed.len() < events.len() {
            let message = consumer.poll(Duration::from_secs(10)).expect("a record within 10 s").unwrap();
            landed.push(Envelope::decode(message.payload().unwrap()).unwrap().event_id);
        }
        let given: Vec<_> = events.iter().map(|event| event.event_id).collect();
        let first_out_of_order = landed.iter().zip(&given).position(|(landed, given)| landed != given);
        assert_eq!(first_out_of_order, None, "records landed out of the order given");
    }
}
