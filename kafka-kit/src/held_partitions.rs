//! Partitions a consumer holds at a record only a newer build reads.
//!
//! During a rolling upgrade a newer build may write an event version this build cannot read.
//! Skipping the record would leave its submission wrong for good, so the consumer pauses that
//! partition at it and never moves its position past it: the build that reads it (once the
//! upgrade reaches this consumer) starts there. Other partitions go on; readiness fails,
//! naming the partition, the offset and the versions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::{Consumer, ConsumerContext};

use service_kit::health::ReadinessCheck;

/// The held partitions of one consumer, with why each is held.
#[derive(Clone, Default)]
pub struct HeldPartitions(Arc<Mutex<BTreeMap<i32, String>>>);

impl HeldPartitions {
    /// Pauses `partition` of `topic` at `offset`, whose record a newer build wrote (`why`).
    pub fn hold<C: ConsumerContext, K: Consumer<C>>(&self, consumer: &K, topic: &str, partition: i32, offset: i64, why: &domain::DecodeError) {
        tracing::error!(
            partition,
            offset,
            error = %why,
            "holding the partition at a record this build cannot read; not ready until a newer build takes over"
        );
        self.lock().insert(partition, format!("held at offset {offset}: {why}"));
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition(topic, partition);
        if let Err(error) = consumer.pause(&list) {
            tracing::warn!(%error, partition, "cannot pause the held partition; its records are skipped here");
        }
    }

    pub fn is_held(&self, partition: i32) -> bool {
        self.lock().contains_key(&partition)
    }

    /// Forgets `partition` (it was revoked: its next owner reads it from the committed offset).
    pub fn release(&self, partition: i32) {
        self.lock().remove(&partition);
    }

    /// Forgets every held partition (the consumer is assigned afresh from its positions).
    pub fn release_all(&self) {
        self.lock().clear();
    }

    /// A readiness check, under `name`, that fails while any partition is held.
    pub fn readiness_check(&self, name: &'static str) -> ReadinessCheck {
        let held = self.clone();
        ReadinessCheck::new(name, move || {
            let report = held.describe();
            async move { report.map_or(Ok(()), Err) }
        })
    }

    fn describe(&self) -> Option<String> {
        let held = self.lock();
        let lines: Vec<String> = held.iter().map(|(partition, why)| format!("partition {partition} {why}")).collect();
        (!lines.is_empty()).then(|| lines.join("; "))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<i32, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
