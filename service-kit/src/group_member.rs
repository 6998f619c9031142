//! The consumer context of a consumer-group member: which partitions it owns, which it holds at
//! a record only a newer build reads, and its lag for the metrics.

use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

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
        crate::metrics::record_consumer_lag(self.name, &statistics);
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
