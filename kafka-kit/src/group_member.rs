//! The consumer context of a consumer-group member: which partitions it owns, which it holds at
//! a record only a newer build reads, and its lag for the metrics; reading a batch, and
//! committing how far a batch got.

use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::held_partitions::HeldPartitions;

#[derive(Clone)]
pub struct GroupMember {
    /// The consumer's name in the lag metrics.
    name: &'static str,
    owned: Arc<Mutex<Vec<i32>>>,
    pub held: HeldPartitions,
}

impl GroupMember {
    pub fn new(name: &'static str) -> Self {
        GroupMember { name, owned: Default::default(), held: HeldPartitions::default() }
    }

    /// The partitions assigned to this member now.
    pub fn owned(&self) -> Vec<i32> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A live view of [`GroupMember::owned`], for when the consumer has moved elsewhere.
    pub fn owned_probe(&self) -> Box<dyn Fn() -> Vec<i32> + Send + Sync> {
        let member = self.clone();
        Box::new(move || member.owned())
    }
}

impl ClientContext for GroupMember {
    fn stats(&self, statistics: rdkafka::Statistics) {
        crate::consumer_lag::record_consumer_lag(self.name, &statistics);
    }
}

impl ConsumerContext for GroupMember {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        match rebalance {
            Rebalance::Assign(list) => {
                *owned = list.elements().iter().map(|e| e.partition()).collect();
                owned.sort_unstable();
                // A partition held before a rebalance starts again from its committed offset,
                // the held record, and is held again there if this build still cannot read it.
                if let Err(error) = consumer.resume(list) {
                    tracing::warn!(%error, "cannot resume the assigned partitions");
                }
                tracing::info!(partitions = ?*owned, "partitions assigned");
            }
            Rebalance::Revoke(list) => {
                for element in list.elements() {
                    self.held.release(element.partition());
                }
                owned.clear();
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }
}

/// Waits for the next record, then takes whatever else is already fetched, up to `max`
/// records; `None` once `shutdown` is cancelled.
pub async fn next_batch<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    max: usize,
    shutdown: &CancellationToken,
) -> Option<Vec<OwnedMessage>> {
    let first = loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return None,
            received = consumer.recv() => received,
        };
        match received {
            Ok(message) => break message.detach(),
            // librdkafka reports connection trouble as events, one per `recv`, and recovers
            // by itself. No pause here: a pause per event would only work through the backlog
            // an outage leaves behind at that pace, long after the broker is back.
            Err(error) => tracing::warn!(%error, "consume failed; retrying"),
        }
    };
    let mut batch = vec![first];
    while batch.len() < max {
        match consumer.recv().now_or_never() {
            Some(Ok(message)) => batch.push(message.detach()),
            _ => break,
        }
    }
    Some(batch)
}

/// Stores each partition's next offset in `progress` (what a batch got through), which librdkafka
/// commits within `auto.commit.interval.ms` (and on a rebalance). Only ever after the batch's
/// effects are durable: a commit lost (the process killed before it, the partition revoked
/// meanwhile, a failed request) only means its records are read again, which every consumer
/// here makes a no-op. Never a commit per batch: the coordinator answers a connection's
/// requests in order, and a queue of commits held back the heartbeats until the session timed out.
pub fn commit_progress<C: ConsumerContext + 'static>(consumer: &StreamConsumer<C>, topic: &str, progress: impl IntoIterator<Item = (i32, i64)>) {
    let mut offsets = TopicPartitionList::new();
    for (partition, next) in progress {
        if let Err(error) = offsets.add_partition_offset(topic, partition, Offset::Offset(next)) {
            tracing::warn!(%error, partition, "cannot record offset");
        }
    }
    if let Err(error) = consumer.store_offsets(&offsets) {
        // Typically the partition was revoked meanwhile: its new owner reads the records again.
        tracing::debug!(%error, "offsets not stored");
    }
}

/// Commits the offsets stored so far and waits for the answer: at shutdown, so the next owner
/// starts there.
pub fn commit_stored<C: ConsumerContext + 'static>(consumer: &StreamConsumer<C>) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(%error, "offset commit failed; the next commit covers it"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use rdkafka::consumer::StreamConsumer;
    use rdkafka::producer::FutureRecord;

    use super::*;

    /// Keeps the requests the consumer has sent, by kind, from its latest statistics.
    #[derive(Clone, Default)]
    struct Requests(Arc<Mutex<HashMap<String, i64>>>);

    impl ClientContext for Requests {
        fn stats(&self, statistics: rdkafka::Statistics) {
            let mut sent: HashMap<String, i64> = HashMap::new();
            for broker in statistics.brokers.values() {
                for (kind, count) in &broker.req {
                    *sent.entry(kind.clone()).or_default() += count;
                }
            }
            *self.0.lock().unwrap() = sent;
        }
    }

    impl ConsumerContext for Requests {}

    /// A member that goes through batches quickly must not send an OffsetCommit per batch: the
    /// group coordinator answers a connection's requests in order, so under load a queue of
    /// commits delayed the heartbeats until the session timed out and the member lost its
    /// partitions (the validator, at 5,000 submissions a second). What a batch got through is
    /// still committed, soon after.
    #[tokio::test]
    async fn progress_reaches_the_group_without_a_commit_per_batch() {
        let (_broker, kafka) = crate::embedded_broker::for_test(1);
        let producer = kafka.producer(Duration::from_secs(10)).unwrap();
        producer.send(FutureRecord::<(), [u8]>::to(&kafka.topic).payload(b"first")).await.unwrap();

        let requests = Requests::default();
        let consumer: StreamConsumer<Requests> =
            kafka.consumer_config("commit-check").set("statistics.interval.ms", "100").create_with_context(requests.clone()).unwrap();
        consumer.subscribe(&[&kafka.topic]).unwrap();
        tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.expect("the first record within 30 s").unwrap();

        let batches = 200;
        for next in 1..=batches {
            commit_progress(&consumer, &kafka.topic, [(0, next)]);
        }
        let committed = || {
            let offsets = consumer.committed(Duration::from_secs(5)).ok()?;
            offsets.find_partition(&kafka.topic, 0).map(|element| element.offset())
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while committed() != Some(Offset::Offset(batches)) {
            assert!(std::time::Instant::now() < deadline, "the last batch's progress was committed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The next statistics count every commit sent so far.
        requests.0.lock().unwrap().clear();
        let commits = loop {
            if let Some(&commits) = requests.0.lock().unwrap().get("OffsetCommit") {
                break commits;
            }
            assert!(std::time::Instant::now() < deadline, "statistics came");
            // Statistics are served while the consumer is polled.
            let _ = tokio::time::timeout(Duration::from_millis(50), consumer.recv()).await;
        };
        assert!(commits <= 10, "{commits} OffsetCommit requests for {batches} batches");
    }
}
