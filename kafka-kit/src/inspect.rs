//! Looking at the cluster the way an operator does with Kafka UI or Redpanda Console: a
//! consumer group's members and the partitions each holds, its committed offsets, partition
//! bounds, and records read from a given offset. Nothing here joins a group or commits: it
//! only looks, so it can run beside the group it describes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::topics::{blocking, bounds, topic_partition_count};
use crate::{KafkaArgs, KafkaSetupError};

/// The group id the inspector's record reader carries: it never joins the group or commits.
pub const INSPECTOR_GROUP_ID: &str = "content-processor-inspector";

/// How long one look may take before it is given up.
const LOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Describes one consumer group and reads any topic, with one long-lived client.
#[derive(Clone)]
pub struct Inspector {
    kafka: KafkaArgs,
    /// Carries the group's id, which `committed_offsets` asks about; it never subscribes, so it
    /// never joins the group, and it never commits.
    consumer: Arc<BaseConsumer>,
    group_id: String,
}

/// A member of the group, as the group coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    /// The partitions of the inspected topic it was assigned.
    pub partitions: Vec<i32>,
}

/// The group as the coordinator describes it: `Stable`, `PreparingRebalance`,
/// `CompletingRebalance`, `Empty` or `Dead`.
#[derive(Debug, Clone)]
pub struct Group {
    pub state: String,
    pub members: Vec<Member>,
}

/// A record as it is in the log.
#[derive(Debug, Clone)]
pub struct LoggedRecord {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch, when the record has a timestamp.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Inspector {
    pub fn new(kafka: &KafkaArgs, group_id: &str) -> Result<Inspector, KafkaSetupError> {
        let mut config = kafka.base_config();
        config.set("group.id", group_id).set("enable.auto.commit", "false");
        let consumer = config.create().map_err(KafkaSetupError::Client)?;
        Ok(Inspector { kafka: kafka.clone(), consumer: Arc::new(consumer), group_id: group_id.to_owned() })
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// How many partitions `topic` has.
    pub async fn partition_count(&self, topic: &str) -> Result<i32, KafkaError> {
        let (consumer, topic) = (self.consumer.clone(), topic.to_owned());
        blocking(move || topic_partition_count(consumer.client(), &topic, LOOK_TIMEOUT)).await
    }

    /// The first and next offset (low and high watermark) of every partition of `topic`.
    pub async fn bounds(&self, topic: &str) -> Result<BTreeMap<i32, (i64, i64)>, KafkaError> {
        let (consumer, topic) = (self.consumer.clone(), topic.to_owned());
        blocking(move || bounds(&consumer, &topic)).await
    }

    /// The group's committed offset (the next record it will read) of each of `partitions`;
    /// `None` where it never committed.
    pub async fn committed(&self, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, Option<i64>>, KafkaError> {
        let mut asked = TopicPartitionList::new();
        for &partition in partitions {
            asked.add_partition(topic, partition);
        }
        let consumer = self.consumer.clone();
        let answer = blocking(move || while_coordinator_settles(|| consumer.committed_offsets(asked.clone(), LOOK_TIMEOUT))).await?;
        Ok(answer
            .elements()
            .iter()
            .map(|element| match element.offset() {
                Offset::Offset(offset) => (element.partition(), Some(offset)),
                _ => (element.partition(), None),
            })
            .collect())
    }

    /// The group's state and members, with the partitions of `topic` each holds.
    pub async fn group(&self, topic: &str) -> Result<Group, KafkaError> {
        let (consumer, group_id, topic) = (self.consumer.clone(), self.group_id.clone(), topic.to_owned());
        blocking(move || {
            let list = while_coordinator_settles(|| consumer.fetch_group_list(Some(&group_id), LOOK_TIMEOUT))?;
            let Some(group) = list.groups().iter().find(|g| g.name() == group_id) else {
                return Ok(Group { state: "Dead".into(), members: Vec::new() });
            };
            let members = group
                .members()
                .iter()
                .map(|member| Member {
                    member_id: member.id().to_owned(),
                    client_id: member.client_id().to_owned(),
                    // The coordinator writes the address as Java's InetAddress prints it.
                    host: member.client_host().trim_start_matches('/').to_owned(),
                    partitions: member.assignment().and_then(|bytes| assigned_partitions(bytes, &topic)).unwrap_or_default(),
                })
                .collect();
            Ok(Group { state: group.state().to_owned(), members })
        })
        .await
    }

    /// Reads `topic` from the given offset of each partition up to the end (the last stable
    /// offset: records of open or aborted transactions are not shown, as no consumer here
    /// reads them), at most `max` records in all.
    pub async fn read(&self, topic: &str, from: BTreeMap<i32, i64>, max: usize) -> Result<Vec<LoggedRecord>, KafkaError> {
        let mut config = self.kafka.base_config();
        config
            // librdkafka assigns partitions only to a consumer with a group; this one never
            // joins it (no subscribe) and never commits.
            .set("group.id", INSPECTOR_GROUP_ID)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true");
        let topic = topic.to_owned();
        blocking(move || {
            let consumer: BaseConsumer = config.create()?;
            let mut assignment = TopicPartitionList::new();
            for (&partition, &offset) in &from {
                assignment.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
            }
            consumer.assign(&assignment)?;
            let mut unfinished = from.len();
            let mut records = Vec::new();
            let deadline = Instant::now() + LOOK_TIMEOUT;
            while unfinished > 0 && records.len() < max && Instant::now() < deadline {
                match consumer.poll(Duration::from_millis(100)) {
                    None => {}
                    Some(Err(KafkaError::PartitionEOF(_))) => unfinished -= 1,
                    // Asked past the end, or before the start of a partition whose old records
                    // were deleted: nothing there to show.
                    Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange))) => unfinished -= 1,
                    Some(Err(error)) => return Err(error),
                    Some(Ok(message)) => records.push(LoggedRecord {
                        partition: message.partition(),
                        offset: message.offset(),
                        timestamp_ms: message.timestamp().to_millis(),
                        key: message.key().map(<[u8]>::to_vec),
                        value: message.payload().map(<[u8]>::to_vec),
                        headers: message
                            .headers()
                            .map(|headers| headers.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect())
                            .unwrap_or_default(),
                    }),
                }
            }
            Ok(records)
        })
        .await
    }
}

/// Runs `ask` (blocking) again while the group's coordinator is being chosen or is loading,
/// which it is for a while after the cluster or the group starts, or after a broker fails; a
/// coordinator that does not settle within [`LOOK_TIMEOUT`] is reported.
fn while_coordinator_settles<T>(mut ask: impl FnMut() -> Result<T, KafkaError>) -> Result<T, KafkaError> {
    let deadline = Instant::now() + LOOK_TIMEOUT;
    loop {
        match ask() {
            Err(error)
                if Instant::now() < deadline
                    && matches!(
                        error.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::NotCoordinator
                                | RDKafkaErrorCode::CoordinatorLoadInProgress
                                | RDKafkaErrorCode::CoordinatorNotAvailable
                        )
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            outcome => return outcome,
        }
    }
}

/// The partitions of `topic` in a member's assignment, which the coordinator hands over in the
/// consumer protocol's encoding: version (i16), then topics (i32 count; each a string with an
/// i16 length and its partitions as an i32 count of i32s), then user data. `None` when the
/// bytes are not that (a group of another protocol type).
fn assigned_partitions(bytes: &[u8], topic: &str) -> Option<Vec<i32>> {
    let mut reader = Reader(bytes);
    reader.take::<2>()?;
    let mut found = Vec::new();
    for _ in 0..reader.count()? {
        let length = usize::try_from(i16::from_be_bytes(reader.take()?)).ok()?;
        let name = reader.bytes(length)?;
        for _ in 0..reader.count()? {
            let partition = i32::from_be_bytes(reader.take()?);
            if name == topic.as_bytes() {
                found.push(partition);
            }
        }
    }
    found.sort_unstable();
    Some(found)
}

/// Reads big-endian fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    /// An array's element count (i32; a null array, -1, has none).
    fn count(&mut self) -> Option<usize> {
        Some(usize::try_from(i32::from_be_bytes(self.take()?)).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An assignment as the Java client and librdkafka encode it.
    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut bytes = 1i16.to_be_bytes().to_vec();
        bytes.extend((topics.len() as i32).to_be_bytes());
        for (name, partitions) in topics {
            bytes.extend((name.len() as i16).to_be_bytes());
            bytes.extend(name.as_bytes());
            bytes.extend((partitions.len() as i32).to_be_bytes());
            for partition in *partitions {
                bytes.extend(partition.to_be_bytes());
            }
        }
        bytes.extend((-1i32).to_be_bytes()); // no user data
        bytes
    }

    #[test]
    fn the_partitions_of_the_inspected_topic_are_read_from_an_assignment() {
        let bytes = assignment(&[("other", &[0, 1]), ("submission-events", &[5, 2])]);
        assert_eq!(assigned_partitions(&bytes, "submission-events"), Some(vec![2, 5]));
        assert_eq!(assigned_partitions(&bytes, "absent"), Some(vec![]));
    }

    #[test]
    fn bytes_that_are_not_an_assignment_give_none_rather_than_a_guess() {
        let bytes = assignment(&[("submission-events", &[0, 1, 2])]);
        assert_eq!(assigned_partitions(&bytes[..bytes.len() - 9], "submission-events"), None);
        assert_eq!(assigned_partitions(&[], "submission-events"), None);
    }
}
