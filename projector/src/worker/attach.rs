//! Attaching to a generation: which one, from which positions, and what to do when the topic
//! behind the name is not the one those positions were read from.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use kafka_kit::topic_identity::{self, TopicIdentity};
use kafka_kit::topic_partition_count;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;

use super::reader::{new_consumer, Reader};
use super::{Projector, Target};
use crate::config::TopicResetPolicy;
use crate::generations::{self, Generation, SwitchWhen, Switched};
use crate::rebuild::RebuildLock;
use crate::store;

/// How often a running projector looks whether the topic was recreated or grew partitions.
const TOPIC_CHECK_INTERVAL: Duration = Duration::from_secs(5);
const TOPIC_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Projector {
    /// Picks the generation to write, checks that its positions belong to the topic behind the
    /// name now (same topic id, no partition gone, no position beyond an end) and still exist
    /// in it, and assigns every partition there: new partitions from their beginning.
    pub(super) async fn attach(&mut self) -> anyhow::Result<()> {
        // Whatever the reader holds was read from the old assignment: drop it.
        self.stop_reader();
        self.held.release_all();
        if self.attached.is_some() {
            // Attaching again reads with a new consumer. Assigning anew on the same one while
            // the old assignment's fetchers were still stopping, then closing it (a shutdown
            // right after a rebuild's switch), aborted the process inside librdkafka 2.12.1
            // (`rd_kafka_assignment_partition_stopped: Assertion rktp->rktp_started failed`,
            // a duplicate FETCH_STOP; confluentinc/librdkafka#5573, fixed after that release).
            self.consumer = new_consumer(&self.kafka, self.target)?;
        }
        let mut generation = match self.target {
            Target::Rebuild(generation) => generation,
            Target::Live => generations::live(&self.pool).await?.context("no live read model")?,
        };
        let topic = self.kafka.topic.clone();
        let mut positions = store::load_positions(&self.pool, generation, &topic).await?;
        let recorded = store::load_topic_identity(&self.pool, generation, &topic).await?;
        let bounds = self.kafka.partition_bounds().await?;
        let ends: BTreeMap<i32, i64> = bounds.iter().map(|(&p, &(_, end))| (p, end)).collect();
        let identity = self.read_topic(true).await.unwrap_or_else(|error| {
            // librdkafka's mock cluster never answers DescribeTopics; a real one may be slow.
            tracing::warn!(%error, %topic, "cannot read the topic's id; until the next attach only its partitions are checked");
            TopicIdentity { id: None, partitions: ends.len() as i32 }
        });
        if let Some(problem) = topic_replaced(recorded.as_ref(), &identity).or_else(|| topic_reset(&positions, &ends)) {
            match (self.on_topic_reset, self.target) {
                (TopicResetPolicy::Rebuild, Target::Live) => {
                    tracing::warn!(generation, %problem, "topic reset: rebuilding the read model from what the topic holds now");
                    // Under the rebuild lock, as every generation in state `building` is made:
                    // another replica's start-up clean-up drops those when it holds the lock.
                    let Some(lock) = RebuildLock::try_acquire(&self.pool).await? else {
                        anyhow::bail!("topic reset detected on {topic}: {problem}; a rebuild runs meanwhile: start again once it ends");
                    };
                    let replaced = replace_after_reset(&self.pool, generation, &topic).await;
                    lock.release().await;
                    generation = replaced?;
                    positions.clear();
                }
                _ => anyhow::bail!(
                    "topic reset detected on {topic}: {problem}. The read model (generation {generation}) no longer \
                     matches the log. Point the projector at the right cluster, or rebuild with --on-topic-reset rebuild"
                ),
            }
        }
        if let Some(gap) = history_lost(&positions, &bounds) {
            // Rebuilding would throw away what the read model still holds: an operator decides.
            anyhow::bail!(
                "the topic {topic} lost records the read model (generation {generation}) has not read: {gap}. \
                 They were deleted by the broker's retention and cannot be projected; an event log needs \
                 unlimited retention (the embedded broker keeps about 5 MiB per partition)"
            );
        }
        if let Some(recorded) = recorded.filter(|recorded| recorded.partitions < identity.partitions) {
            tracing::warn!(
                %topic,
                before = recorded.partitions,
                now = identity.partitions,
                "partitions were added to the topic; reading the new ones from their beginning"
            );
        }
        store::save_topic_identity(&self.pool, generation, &topic, &identity).await?;
        let mut assignment = TopicPartitionList::new();
        for &partition in ends.keys() {
            let offset = positions.get(&partition).map_or(Offset::Beginning, |&next| Offset::Offset(next));
            assignment.add_partition_offset(&topic, partition, offset)?;
        }
        self.consumer.assign(&assignment)?;
        self.generation = generation;
        self.attached = Some(identity);
        self.reader = Some(Reader::start(self.consumer.clone(), self.batch_size, self.linger, self.held.clone()));
        tracing::info!(%topic, generation, partitions = ends.len(), resumed = positions.len(), "projector attached");
        Ok(())
    }

    /// The topic's partition count now and, `with_id`, its id, asked through the projector's
    /// own connection.
    async fn read_topic(&self, with_id: bool) -> Result<TopicIdentity, KafkaError> {
        let consumer = self.consumer.clone();
        let topic = self.kafka.topic.clone();
        tokio::task::spawn_blocking(move || {
            if with_id {
                topic_identity::describe(consumer.client(), &topic, TOPIC_CHECK_TIMEOUT)
            } else {
                let partitions = topic_partition_count(consumer.client(), &topic, TOPIC_CHECK_TIMEOUT)?;
                Ok(TopicIdentity { id: None, partitions })
            }
        })
        .await
        .unwrap_or(Err(KafkaError::Canceled))
    }

    /// Attaches again when the topic behind the name changed since the last attach: recreated
    /// (another id) or grown (more partitions). A topic that cannot be read right now (a broker
    /// outage, a topic being recreated) is checked again at the next tick.
    pub(super) async fn check_topic(&mut self) -> anyhow::Result<()> {
        let Some(attached) = &self.attached else { return Ok(()) };
        let now = match self.read_topic(attached.id.is_some()).await {
            Ok(now) => now,
            Err(error) => {
                tracing::debug!(%error, "cannot read the topic; checking again later");
                return Ok(());
            }
        };
        if self.attached.as_ref() != Some(&now) {
            tracing::warn!(was = ?self.attached, ?now, "the topic changed under the projector; attaching again");
            self.attach().await?;
        }
        Ok(())
    }
}

/// After a topic reset: an empty generation made live in place of `generation`, which is dropped.
/// The caller holds the [`RebuildLock`].
async fn replace_after_reset(pool: &PgPool, generation: Generation, topic: &str) -> anyhow::Result<Generation> {
    let fresh = generations::create(pool).await?;
    match generations::switch(pool, generation, fresh, topic, SwitchWhen::Unconditionally).await? {
        Switched::Yes => {}
        Switched::NotYet => {
            generations::abandon(pool, fresh).await?;
            anyhow::bail!("readers held the read model's views longer than a switch waits; start again to replace generation {generation}");
        }
        Switched::FromNotLive => {
            generations::abandon(pool, fresh).await?;
            anyhow::bail!("another process replaced generation {generation} meanwhile; start again to follow it");
        }
    }
    generations::drop_generation(pool, generation).await?;
    Ok(fresh)
}

/// Which records the topic deleted before they were read, if any: a position (0 when none is
/// stored) below the partition's first offset.
fn history_lost(positions: &BTreeMap<i32, i64>, bounds: &BTreeMap<i32, (i64, i64)>) -> Option<String> {
    bounds.iter().find_map(|(partition, &(start, _))| {
        let next = positions.get(partition).copied().unwrap_or(0);
        (next < start).then(|| format!("partition {partition} now starts at offset {start}, the read model is at {next}"))
    })
}

/// Ticks every [`TOPIC_CHECK_INTERVAL`], the first one interval from now (the topic was just
/// read at attach), and never in a burst after a long batch.
pub(super) fn topic_check_interval() -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + TOPIC_CHECK_INTERVAL, TOPIC_CHECK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// Why the topic behind the name is not the one the read model was built from, if it is not.
fn topic_replaced(recorded: Option<&TopicIdentity>, now: &TopicIdentity) -> Option<String> {
    match (recorded?.id.as_deref(), now.id.as_deref()) {
        (Some(before), Some(now)) if before != now => {
            Some(format!("another topic is behind the name, recreated or on another cluster (its id was {before}, it is {now} now)"))
        }
        _ => None,
    }
}

/// Why the stored positions cannot belong to this topic, if they cannot.
fn topic_reset(positions: &BTreeMap<i32, i64>, ends: &BTreeMap<i32, i64>) -> Option<String> {
    positions.iter().find_map(|(partition, &next)| match ends.get(partition) {
        None => Some(format!("partition {partition} no longer exists")),
        Some(&end) if next > end => Some(format!("stored position {next} is beyond the end ({end}) of partition {partition}")),
        Some(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map<V: Copy>(entries: &[(i32, V)]) -> BTreeMap<i32, V> {
        entries.iter().copied().collect()
    }

    fn identity(id: Option<&str>, partitions: i32) -> TopicIdentity {
        TopicIdentity { id: id.map(str::to_owned), partitions }
    }

    #[test]
    fn positions_within_the_topic_are_no_reset() {
        assert_eq!(topic_reset(&map(&[(0, 5), (1, 0)]), &map(&[(0, 5), (1, 3), (2, 0)])), None);
    }

    #[test]
    fn a_position_beyond_an_end_or_a_partition_gone_is_a_reset() {
        let beyond = topic_reset(&map(&[(0, 6)]), &map(&[(0, 5)])).unwrap();
        assert!(beyond.contains("beyond the end (5) of partition 0"), "{beyond}");
        let gone = topic_reset(&map(&[(3, 1)]), &map(&[(0, 5)])).unwrap();
        assert!(gone.contains("partition 3 no longer exists"), "{gone}");
    }

    #[test]
    fn only_two_known_ids_that_differ_mean_another_topic() {
        let recorded = identity(Some("A"), 6);
        assert!(topic_replaced(Some(&recorded), &identity(Some("B"), 6)).unwrap().contains("its id was A, it is B now"));
        assert_eq!(topic_replaced(Some(&recorded), &identity(Some("A"), 8)), None, "more partitions: same topic");
        assert_eq!(topic_replaced(Some(&recorded), &identity(None, 6)), None, "no id to compare");
        assert_eq!(topic_replaced(None, &identity(Some("B"), 6)), None, "nothing recorded yet");
    }

    #[test]
    fn history_is_lost_when_a_partition_starts_after_the_position() {
        let bounds = map(&[(0, (0, 10)), (1, (4, 10))]);
        assert_eq!(history_lost(&map(&[(0, 3), (1, 4)]), &bounds), None);
        let lost = history_lost(&map(&[(0, 3), (1, 2)]), &bounds).unwrap();
        assert!(lost.contains("partition 1 now starts at offset 4, the read model is at 2"), "{lost}");
        // No position stored is offset 0: a fresh read model needs the whole partition.
        assert!(history_lost(&map(&[(0, 3)]), &bounds).is_some());
    }
}
