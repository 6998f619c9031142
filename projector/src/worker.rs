//! The consume -> fold -> commit loop, for the live generation or for one being rebuilt.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use domain::Envelope;
use futures_util::FutureExt;
use kafka_kit::consumer_lag::LagReporter;
use rdkafka::consumer::{Consumer, StreamConsumer as RdStreamConsumer};

/// The projector's consumer: it reports its lag to the metrics.
type StreamConsumer = RdStreamConsumer<LagReporter>;
use kafka_kit::held_partitions::HeldPartitions;
use kafka_kit::topic_identity::{self, TopicIdentity};
use kafka_kit::trace_headers;
use kafka_kit::{topic_partition_count, DeadLetter, EventPublisher, KafkaArgs};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use service_kit::health::ReadinessCheck;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::TopicResetPolicy;
use crate::generations::{self, Generation, SwitchWhen, Switched};
use crate::leader::LeaderLock;
use crate::rebuild::{Progress, RebuildLock};
use crate::store::{self, BatchOutcome, Record};
use crate::Config;

const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the dead-letter topic may take to acknowledge before the batch is retried.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a rebuild waits for records before checking whether it has caught up.
const REBUILD_IDLE: Duration = Duration::from_millis(200);
/// How often a running projector looks whether the topic was recreated or grew partitions.
const TOPIC_CHECK_INTERVAL: Duration = Duration::from_secs(5);
const TOPIC_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
enum CommitError {
    #[error("read model unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("dead-letter topic did not acknowledge: {0}")]
    DeadLetter(#[from] rdkafka::error::KafkaError),
    #[error("this replica's leader lock is gone (its session ended); another replica may be writing")]
    NotLeader,
}

/// Counters a running projector exposes (logs, tests, the rebuild progress).
#[derive(Debug, Default)]
pub struct Stats {
    /// Events applied to the read model.
    pub applied: AtomicU64,
    /// Records recognised as already applied.
    pub duplicates: AtomicU64,
    /// Records that could not be decoded or that the fold refused, now on the dead-letter topic.
    pub dead_lettered: AtomicU64,
}

/// Which generation a projector writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Whichever generation is live; after a switch, the new one.
    Live,
    /// This generation, being built from the beginning of the topic.
    Rebuild(Generation),
}

pub struct Projector {
    consumer: Arc<StreamConsumer>,
    /// Fetches and decodes the next batch while the current one commits.
    reader: Option<Reader>,
    pool: PgPool,
    kafka: KafkaArgs,
    dead_letter_topic: String,
    publisher: EventPublisher,
    batch_size: usize,
    on_topic_reset: TopicResetPolicy,
    target: Target,
    generation: Generation,
    /// The topic as it was when last attached; a change means attaching again.
    attached: Option<TopicIdentity>,
    topic_check: tokio::time::Interval,
    /// Partitions held at a record only a newer build reads.
    held: HeldPartitions,
    /// The session holding the replicas' leader lock, when replicas elect their writer: a batch
    /// commits only while it still holds the lock.
    leader_session: Option<i32>,
    stats: Arc<Stats>,
}

/// What became of a batch.
enum Committed {
    Yes(BatchOutcome),
    /// The generation was retired by a switch; nothing of the batch was stored.
    Retired,
    /// Shutdown came while the batch could not be stored; nothing of it was.
    Interrupted,
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

/// A consumer for `target` that assigns partitions itself (it never subscribes).
fn new_consumer(kafka: &KafkaArgs, target: Target) -> Result<Arc<StreamConsumer>, KafkaError> {
    let mut consumer_config = kafka.consumer_config(crate::CONSUMER_GROUP);
    // Positions live in PostgreSQL; a position the broker no longer has is a reset topic, to be
    // noticed, never silently replaced by another offset.
    consumer_config.set("auto.offset.reset", "error");
    // Its lag is reported as the projector's, or the rebuild's.
    let name = if target == Target::Live { "projector" } else { "rebuild" };
    Ok(Arc::new(consumer_config.create_with_context(LagReporter(name))?))
}

impl Projector {
    /// Connects and assigns every partition at the position stored in the target generation
    /// (the beginning where none is stored: an empty generation replays the whole topic).
    pub async fn start(config: &Config, pool: PgPool, target: Target) -> anyhow::Result<Self> {
        Self::start_reporting_into(config, pool, target, HeldPartitions::default()).await
    }

    /// As [`Projector::start`], with the partitions it holds reported into `held`, which
    /// outlives it (the readiness of a replica that writes only while it leads).
    pub async fn start_reporting_into(config: &Config, pool: PgPool, target: Target, held: HeldPartitions) -> anyhow::Result<Self> {
        config.kafka.ensure_topic().await?;
        let dead_letter_topic = config.kafka.dead_letter_topic();
        config.kafka.ensure_topic_named(&dead_letter_topic).await?;
        let mut projector = Projector {
            consumer: new_consumer(&config.kafka, target)?,
            reader: None,
            pool,
            kafka: config.kafka.clone(),
            publisher: EventPublisher::new(&config.kafka, DEAD_LETTER_TIMEOUT)?,
            dead_letter_topic,
            batch_size: match target {
                Target::Live => config.batch_size,
                Target::Rebuild(_) => config.rebuild_batch_size,
            }
            .max(1),
            on_topic_reset: config.on_topic_reset,
            target,
            generation: 0,
            attached: None,
            topic_check: topic_check_interval(),
            held,
            leader_session: None,
            stats: Arc::default(),
        };
        projector.attach().await?;
        Ok(projector)
    }

    /// Commits only while `lock` is held: see [`crate::leader`].
    pub fn fenced_by(mut self, lock: &LeaderLock) -> Self {
        self.leader_session = Some(lock.session());
        self
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Fails while a partition is held at a record only a newer build reads.
    pub fn readiness_check(&self) -> ReadinessCheck {
        self.held.readiness_check("projector")
    }

    /// The generation this projector writes now.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Picks the generation to write, checks that its positions belong to the topic behind the
    /// name now (same topic id, no partition gone, no position beyond an end) and still exist
    /// in it, and assigns every partition there: new partitions from their beginning.
    async fn attach(&mut self) -> anyhow::Result<()> {
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
        self.reader = Some(Reader::start(self.consumer.clone(), self.batch_size, self.held.clone()));
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
    async fn check_topic(&mut self) -> anyhow::Result<()> {
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

    /// Projects into the live generation until `shutdown`. The batch in hand is committed (or,
    /// if the database is down, left for the next start to read again) before returning.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        while let Some(batch) = self.next_batch(&shutdown, None).await? {
            match self.commit(&batch, &shutdown).await {
                Committed::Yes(_) => {}
                Committed::Retired => self.attach().await?,
                Committed::Interrupted => break,
            }
        }
        self.stop_reader();
        tracing::info!("projector stopped");
        Ok(())
    }

    fn stop_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.task.abort();
        }
    }

    /// Builds the target generation until it has caught up with `live` and replaced it.
    /// Returns false if `shutdown` came first.
    pub(crate) async fn rebuild(mut self, live: Generation, progress: &Progress, shutdown: CancellationToken) -> anyhow::Result<bool> {
        let topic = self.kafka.topic.clone();
        loop {
            let batch = self.next_batch(&shutdown, Some(REBUILD_IDLE)).await?;
            let drained = match batch {
                None if shutdown.is_cancelled() => return Ok(false),
                None => true,
                Some(batch) => match self.commit(&batch, &shutdown).await {
                    Committed::Yes(outcome) => {
                        progress.record(outcome.applied, &batch.next_offsets);
                        batch.len() < self.batch_size
                    }
                    Committed::Retired => anyhow::bail!("generation {} was retired during its rebuild", self.generation),
                    Committed::Interrupted => return Ok(false),
                },
            };
            if drained {
                // Caught up with the end of the topic as it was a moment ago; the switch itself
                // then checks it is not behind the live writer either.
                let ends: BTreeMap<i32, i64> = self.kafka.partition_bounds().await?.into_iter().map(|(p, (_, end))| (p, end)).collect();
                progress.set_ends(ends.clone());
                let read = progress.snapshot().positions;
                let at_end = ends.iter().all(|(p, end)| read.get(p).copied().unwrap_or(0) >= *end);
                if at_end {
                    match generations::switch(&self.pool, live, self.generation, &topic, SwitchWhen::CaughtUpWithLive).await? {
                        Switched::Yes => return Ok(true),
                        Switched::NotYet => {}
                        // Waiting would be for ever: the generation this rebuild was to replace is gone.
                        Switched::FromNotLive => anyhow::bail!(
                            "generation {live}, which this rebuild was to replace, stopped being live (another \
                             rebuild or a topic reset replaced it); abandoning generation {}",
                            self.generation
                        ),
                    }
                }
            }
        }
    }

    /// The next batch from the reader: waits at most `idle` when given. `None` on shutdown or
    /// when `idle` passed without a record.
    async fn next_batch(&mut self, shutdown: &CancellationToken, idle: Option<Duration>) -> anyhow::Result<Option<Batch>> {
        loop {
            let reader = self.reader.as_mut().context("the projector is not attached")?;
            let wait = async {
                match idle {
                    Some(idle) => tokio::time::timeout(idle, reader.batches.recv()).await.ok(),
                    None => Some(reader.batches.recv().await),
                }
            };
            let read = tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = self.topic_check.tick() => {
                    self.check_topic().await?;
                    continue;
                }
                read = wait => read,
            };
            match read {
                None => return Ok(None),
                Some(Some(Read::Batch(batch))) => return Ok(Some(batch)),
                // The topic no longer holds our position: decide as at start.
                Some(Some(Read::OffsetOutOfRange)) => self.attach().await?,
                Some(None) => anyhow::bail!("the projector's reader stopped"),
            }
        }
    }

    /// Commits the batch, retrying while the database or the dead-letter topic is unavailable.
    async fn commit(&self, batch: &Batch, shutdown: &CancellationToken) -> Committed {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.try_commit(batch).await {
                Ok(Some((outcome, parked))) => {
                    let Stats { applied, duplicates, dead_lettered } = &*self.stats;
                    applied.fetch_add(outcome.applied as u64, Ordering::Relaxed);
                    duplicates.fetch_add(outcome.duplicates as u64, Ordering::Relaxed);
                    if parked > 0 {
                        let total = dead_lettered.fetch_add(parked as u64, Ordering::Relaxed) + parked as u64;
                        tracing::warn!(parked, total, topic = %self.dead_letter_topic, "records sent to the dead-letter topic");
                    }
                    return Committed::Yes(outcome);
                }
                Ok(None) => return Committed::Retired,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "batch not committed; keeping it and retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Committed::Interrupted,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One attempt: fold the batch, park what cannot be used on the dead-letter topic (and wait
    /// for Kafka to hold it), then commit rows and positions together. Returns what it did and
    /// how many records it parked; `None` if the generation was retired.
    async fn try_commit(&self, batch: &Batch) -> Result<Option<(BatchOutcome, usize)>, CommitError> {
        let started = std::time::Instant::now();
        let durable = self.target == Target::Live;
        let Some(mut tx) = store::begin_batch(&self.pool, self.generation, durable).await? else {
            return Ok(None);
        };
        if let Some(session) = self.leader_session {
            if !tx.leader_lock_held(session).await? {
                return Err(CommitError::NotLeader);
            }
        }
        let outcome = tx.apply(&batch.records).await?;
        let refused = outcome.refused.iter().map(|(index, refusal)| {
            let record = &batch.records[*index];
            tracing::error!(
                submission_id = %record.envelope.submission_id,
                partition = record.partition,
                offset = record.offset,
                %refusal,
                "event refused by the fold"
            );
            DeadLetter {
                topic: self.kafka.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                key: Some(record.envelope.key().into_bytes()),
                value: Some(record.envelope.encode()),
                reason: format!("refused by the fold: {refusal}"),
            }
        });
        let letters = self.not_parked_yet(batch.undecodable.iter().cloned().chain(refused).collect()).await?;
        let sends = letters.iter().map(|letter| self.publisher.publish_dead_letter(&self.dead_letter_topic, letter));
        for sent in futures_util::future::join_all(sends).await {
            sent?;
        }
        tx.commit(&self.kafka.topic, &batch.next_offsets).await?;
        metrics::histogram!("content_processor_projector_commit_duration_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("content_processor_projector_rows_written_total").increment(outcome.applied as u64);
        for record in &batch.records {
            service_kit::metrics::event_consumed("projector", record.envelope.event.type_name());
        }
        Ok(Some((outcome, letters.len())))
    }

    /// Of the records this batch cannot use, those nobody parked yet. A rebuild reads again what
    /// the live generation read: the live projector parked those before its positions moved
    /// past them, so a rebuild parks only records at or past the live positions. After a topic
    /// reset the live generation read another log (another topic id), and a rebuild parks all.
    async fn not_parked_yet(&self, letters: Vec<DeadLetter>) -> Result<Vec<DeadLetter>, sqlx::Error> {
        if letters.is_empty() || self.target == Target::Live {
            return Ok(letters);
        }
        let Some(live) = generations::live(&self.pool).await? else { return Ok(letters) };
        let topic = &self.kafka.topic;
        let live_log = store::load_topic_identity(&self.pool, live, topic).await?;
        let this_log = store::load_topic_identity(&self.pool, self.generation, topic).await?;
        if live_log.is_none() || live_log != this_log {
            return Ok(letters);
        }
        let live_read = store::load_positions(&self.pool, live, topic).await?;
        Ok(letters.into_iter().filter(|letter| live_read.get(&letter.partition).is_none_or(|&next| letter.offset >= next)).collect())
    }
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
fn topic_check_interval() -> tokio::time::Interval {
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

/// What the reader hands over.
enum Read {
    Batch(Batch),
    OffsetOutOfRange,
}

/// A task that fetches records and decodes them into batches, one batch ahead of the commits.
struct Reader {
    batches: tokio::sync::mpsc::Receiver<Read>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    fn start(consumer: Arc<StreamConsumer>, batch_size: usize, held: HeldPartitions) -> Reader {
        // One batch waiting while another commits: the overlap, with bounded memory.
        let (sender, batches) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(async move {
            loop {
                let mut batch = Batch::default();
                match consumer.recv().await {
                    Ok(message) => batch.add(&message, &consumer, &held),
                    // A position the topic no longer has. librdkafka says so with
                    // OffsetOutOfRange, or, with auto.offset.reset=error, with AutoOffsetReset,
                    // after which it fetches nothing more from that partition.
                    Err(KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset)) => {
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
                // Take whatever else is already fetched, without waiting.
                while batch.len() < batch_size {
                    match consumer.recv().now_or_never() {
                        Some(Ok(message)) => batch.add(&message, &consumer, &held),
                        _ => break,
                    }
                }
                if batch.len() > 0 && sender.send(Read::Batch(batch)).await.is_err() {
                    return;
                }
            }
        });
        Reader { batches, task }
    }
}

impl Drop for Projector {
    fn drop(&mut self) {
        self.stop_reader();
    }
}

/// Records read since the last commit and the positions they bring the projector to.
#[derive(Default)]
struct Batch {
    records: Vec<Record>,
    next_offsets: BTreeMap<i32, i64>,
    undecodable: Vec<DeadLetter>,
}

impl Batch {
    /// Records read, usable or not.
    fn len(&self) -> usize {
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
