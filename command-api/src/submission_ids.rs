//! Ids for new submissions, chosen so that the submissions accepted in the same few
//! milliseconds share a partition, and so a produce request.
//!
//! librdkafka sends one produce request per partition (confluentinc/librdkafka#1700). Keyed by
//! random ids over six partitions, nearly every submission at 1,000/s was a request of its own;
//! grouped, half as many requests, and 45 % more verdicts a second in a closed loop (BENCHMARKS.md,
//! "Submissions share a partition; the notifier counted"). A submission's partition stays the
//! hash of its id, which keys every event about it (a retry's copy, the validator's verdict),
//! so the ids are chosen rather than the partitions: fresh UUIDv7s are drawn until one hashes
//! to the partition the current slice of time fills, `partitions` draws on average. Slices take
//! the partitions in turn, by the wall clock, so every partition gets an equal share over any
//! second, and two replicas fill the same one at the same time.
//!
//! The partition count is read once, at start. After partitions are added, ids still spread
//! over all of them (a hash that fits the old count has as many remainders under the new one),
//! only less grouped until the command API restarts.

use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

/// How long submissions go to one partition: a few of the producer's `linger.ms`.
const SLICE: Duration = Duration::from_millis(10);

/// Draws submission ids that land on the partition being filled.
#[derive(Debug, Clone, Copy)]
pub struct SubmissionIds {
    partitions: i32,
}

impl SubmissionIds {
    pub fn new(partitions: i32) -> Self {
        SubmissionIds { partitions: partitions.max(1) }
    }

    /// A new submission id, for the partition being filled now.
    pub fn next(&self) -> Uuid {
        self.for_partition(self.filling(Utc::now().timestamp_millis()))
    }

    /// The partition filled at `millis` since the epoch.
    fn filling(&self, millis: i64) -> i32 {
        let slice = millis.div_euclid(SLICE.as_millis() as i64);
        // Below `partitions`, an i32.
        slice.rem_euclid(i64::from(self.partitions)) as i32
    }

    fn for_partition(&self, partition: i32) -> Uuid {
        let mut key = [0u8; uuid::fmt::Hyphenated::LENGTH];
        loop {
            let id = Uuid::now_v7();
            // The record key, as `Envelope::key` writes it.
            let key = id.hyphenated().encode_lower(&mut key);
            if kafka_kit::partitioner::partition_of(key.as_bytes(), self.partitions) == partition {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_drawn_for_a_partition_are_keys_that_hash_there() {
        let ids = SubmissionIds::new(6);
        for partition in 0..6 {
            for _ in 0..50 {
                let id = ids.for_partition(partition);
                let envelope = domain::Envelope::new(id, domain::Event::ProcessingStarted {}, Utc::now(), Uuid::nil());
                assert_eq!(kafka_kit::partitioner::partition_of(envelope.key().as_bytes(), 6), partition);
            }
        }
    }

    #[test]
    fn slices_take_the_partitions_in_turn() {
        let ids = SubmissionIds::new(6);
        let slice = SLICE.as_millis() as i64;
        let start = 1_800_000_000_000 - 1_800_000_000_000 % (6 * slice);
        let filled: Vec<i32> = (0..12).map(|n| ids.filling(start + n * slice)).collect();
        assert_eq!(filled, [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]);
        assert_eq!(ids.filling(start + slice - 1), 0, "the whole slice fills one partition");
    }
}
