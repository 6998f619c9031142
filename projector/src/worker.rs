//! The consume -> fold -> commit loop, for the live generation or for one being rebuilt:
//! [`attach`] picks the generation and the positions (and decides what a reset topic means),
//! [`reader`] fetches and decodes batches ahead of the commits, [`commit`] writes a batch (folded
//! in its transaction, or ahead of it by a rebuild) and commits it with its positions.

mod attach;
mod commit;
mod reader;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use domain::{Submission, SubmissionId};
use futures_util::FutureExt as _;
use kafka_kit::held_partitions::HeldPartitions;
use kafka_kit::topic_identity::TopicIdentity;
use kafka_kit::{EventPublisher, KafkaArgs};
use service_kit::health::ReadinessCheck;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::config::TopicResetPolicy;
use crate::generations::{self, Generation, SwitchWhen, Switched};
use crate::leader::LeaderLock;
use crate::rebuild::Progress;
use crate::store::{self, Folded};
use crate::Config;
use commit::Committed;
use reader::{Batch, Read, Reader, StreamConsumer};

/// How long the dead-letter topic may take to acknowledge before the batch is retried.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a rebuild waits for records before checking whether it has caught up.
const REBUILD_IDLE: Duration = Duration::from_millis(200);
/// How long a rebuild waits before building its reader indexes again after a first failure;
/// the wait doubles with each further failure, up to [`INDEX_BUILD_MAX_RETRY`].
const INDEX_BUILD_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts at building the reader indexes.
const INDEX_BUILD_MAX_RETRY: Duration = Duration::from_secs(60);

/// A read taken from the reader before its turn.
enum Ahead {
    /// The next batch, with its fold once made (boxed: a fold is much larger than a reset).
    Batch(Batch, Option<Box<Folded>>),
    /// The topic no longer holds a position read from.
    Reset,
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
    /// What was taken from the reader before its turn: a rebuild folds the next batch while
    /// the one before it is written.
    ahead: Option<Ahead>,
    pool: PgPool,
    /// Opens the sealed content of new submissions for the read model.
    keyring: keyring::Keyring,
    kafka: KafkaArgs,
    dead_letter_topic: String,
    /// Made on the first dead letter, not at start: a producer is a client with threads and a
    /// connection of its own, which a projector should not keep for records it almost never
    /// parks.
    dead_letter_publisher: tokio::sync::OnceCell<EventPublisher>,
    batch_size: usize,
    /// How long a batch waits for more records after its first.
    linger: Duration,
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
        // Its producer is made on the first dead letter; a bad setting must still stop it now.
        config.kafka.check_producer_settings()?;
        let mut projector = Projector {
            consumer: reader::new_consumer(&config.kafka, target)?,
            reader: None,
            ahead: None,
            pool,
            keyring: keyring::Keyring::from_args(&config.keyring)?,
            kafka: config.kafka.clone(),
            dead_letter_publisher: tokio::sync::OnceCell::new(),
            dead_letter_topic,
            batch_size: match target {
                Target::Live => config.batch_size,
                Target::Rebuild(_) => config.rebuild_batch_size,
            }
            .max(1),
            // A rebuild's batches fill from what is fetched already.
            linger: match target {
                Target::Live => Duration::from_millis(config.linger_ms),
                Target::Rebuild(_) => Duration::ZERO,
            },
            on_topic_reset: config.on_topic_reset,
            target,
            generation: 0,
            attached: None,
            topic_check: attach::topic_check_interval(),
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

    /// Projects into the live generation until `shutdown`. The batch in hand is committed (or,
    /// if the database is down, left for the next start to read again) before returning.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        while let Some((batch, _)) = self.next_batch(&shutdown, None).await? {
            match self.commit(&batch, None, &shutdown).await {
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
        self.ahead = None;
        if let Some(reader) = self.reader.take() {
            reader.task.abort();
        }
    }

    /// Builds the target generation until it has caught up with `live` and replaced it: without
    /// its reader indexes until it first reaches the end of the topic, then with them.
    /// Returns false if `shutdown` came first.
    pub(crate) async fn rebuild(mut self, live: Generation, progress: &Progress, shutdown: CancellationToken) -> anyhow::Result<bool> {
        let topic = self.kafka.topic.clone();
        let mut deferred = Some(generations::defer_reader_indexes(&self.pool, self.generation).await?);
        let mut build_retry = INDEX_BUILD_RETRY;
        loop {
            let batch = self.next_batch(&shutdown, Some(REBUILD_IDLE)).await?;
            let drained = match batch {
                None if shutdown.is_cancelled() => return Ok(false),
                None => true,
                Some((batch, folded)) => {
                    // A batch not folded ahead (the first, one after an erasure, one the reader
                    // did not have in time) is folded now, before its transaction, when the next
                    // one is there to fold while it is written; else its transaction folds it.
                    let folded = match folded {
                        Some(folded) => Some(folded),
                        None if self.reader.as_ref().is_some_and(|reader| !reader.batches.is_empty()) => {
                            fold_before_writing(&self.pool, self.generation, &batch, HashMap::new()).await
                        }
                        None => None,
                    };
                    // The database writes this batch while the next one, if the reader has it, is
                    // folded on another task: each would otherwise wait for the other.
                    let next = match &folded {
                        Some(in_flight) => self.fold_ready_batch(in_flight),
                        None => None,
                    };
                    match self.commit(&batch, folded.as_ref(), &shutdown).await {
                        Committed::Yes(outcome) => {
                            if let Some(next) = next {
                                let (next, folded) = next.await.context("folding the next batch ahead")?;
                                self.ahead = Some(Ahead::Batch(next, folded.map(Box::new)));
                            }
                            progress.record(outcome.applied, &batch.next_offsets);
                            batch.len() < self.batch_size
                        }
                        Committed::Retired => anyhow::bail!("generation {} was retired during its rebuild", self.generation),
                        Committed::Interrupted => return Ok(false),
                    }
                }
            };
            if drained {
                // Caught up with the end of the topic as it was a moment ago; the switch itself
                // then checks it is not behind the live writer either.
                let ends: BTreeMap<i32, i64> = self.kafka.partition_bounds().await?.into_iter().map(|(p, (_, end))| (p, end)).collect();
                progress.set_ends(ends.clone());
                let read = progress.snapshot().positions;
                let at_end = ends.iter().all(|(p, end)| read.get(p).copied().unwrap_or(0) >= *end);
                if at_end {
                    if let Some(indexes) = &deferred {
                        if build_retry == INDEX_BUILD_RETRY {
                            tracing::info!(generation = self.generation, "caught up with the topic; building the reader indexes");
                        }
                        // Dropping the build on shutdown closes its connection, which stops it
                        // on the server: the generation is abandoned anyway.
                        let built = tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => return Ok(false),
                            built = indexes.build(&self.pool) => built,
                        };
                        if let Err(error) = built {
                            // Hours of replay are not thrown away for a moment without the database.
                            tracing::warn!(%error, retry_in = ?build_retry, "the reader indexes were not built; trying again");
                            // Shown with the progress: a rebuild at the end of the topic that
                            // does not switch says why.
                            progress.set_problem(Some(format!("the readers' indexes were not built, trying again in {build_retry:?}: {error}")));
                            if !wait_to_retry(&mut build_retry, INDEX_BUILD_MAX_RETRY, &shutdown).await {
                                return Ok(false);
                            }
                            continue;
                        }
                        progress.set_problem(None);
                        deferred = None;
                    }
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

    /// The next batch, with its fold if it was folded ahead: waits at most `idle` when given.
    /// `None` on shutdown or when `idle` passed without a record.
    async fn next_batch(&mut self, shutdown: &CancellationToken, idle: Option<Duration>) -> anyhow::Result<Option<(Batch, Option<Folded>)>> {
        loop {
            // A rebuild may find every batch ready before its turn: shutdown is looked at here too.
            if shutdown.is_cancelled() {
                return Ok(None);
            }
            // So is the topic, when its time comes.
            if self.ahead.is_some() && self.topic_check.tick().now_or_never().is_some() {
                self.check_topic().await?;
            }
            let read = match self.ahead.take() {
                Some(Ahead::Batch(batch, folded)) => return Ok(Some((batch, folded.map(|folded| *folded)))),
                Some(Ahead::Reset) => Some(Some(Read::OffsetOutOfRange)),
                None => {
                    let reader = self.reader.as_mut().context("the projector is not attached")?;
                    let wait = async {
                        match idle {
                            Some(idle) => tokio::time::timeout(idle, reader.batches.recv()).await.ok(),
                            None => Some(reader.batches.recv().await),
                        }
                    };
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(None),
                        _ = self.topic_check.tick() => {
                            self.check_topic().await?;
                            continue;
                        }
                        read = wait => read,
                    }
                }
            };
            match read {
                None => return Ok(None),
                Some(Some(Read::Batch(batch))) => return Ok(Some((batch, None))),
                // The topic no longer holds our position: decide as at start.
                Some(Some(Read::OffsetOutOfRange)) => self.attach().await?,
                Some(None) => anyhow::bail!("the projector's reader stopped"),
            }
        }
    }

    /// Folds the reader's next batch, if it is ready, on another task, onto the states the
    /// batch being written (`in_flight`) left; never waits for one. The batch comes back with
    /// its fold, to be put [`Projector::ahead`] once `in_flight` committed; dropping the handle
    /// (the rebuild ends first) stops the task.
    fn fold_ready_batch(&mut self, in_flight: &Folded) -> Option<AbortOnDropHandle<(Batch, Option<Folded>)>> {
        let next = match self.reader.as_mut()?.batches.try_recv().ok()? {
            Read::Batch(next) => next,
            Read::OffsetOutOfRange => {
                self.ahead = Some(Ahead::Reset);
                return None;
            }
        };
        let carried = in_flight.carried_into(&next.records);
        let (pool, generation) = (self.pool.clone(), self.generation);
        Some(AbortOnDropHandle::new(tokio::spawn(async move {
            let folded = fold_before_writing(&pool, generation, &next, carried).await;
            (next, folded)
        })))
    }
}

/// [`store::fold_ahead`]; `None` when the batch is to be folded in its transaction instead: it
/// erases accounts, or its submissions could not be read now (its transaction reads them).
async fn fold_before_writing(
    pool: &PgPool,
    generation: Generation,
    batch: &Batch,
    carried: HashMap<SubmissionId, Option<Submission>>,
) -> Option<Folded> {
    store::fold_ahead(pool, generation, &batch.records, carried).await.unwrap_or_else(|error| {
        tracing::debug!(%error, "a batch not folded ahead; its transaction folds it");
        None
    })
}

/// Waits `delay` before a failed step is tried again, then doubles it, up to `max`. False when
/// `shutdown` came first.
async fn wait_to_retry(delay: &mut Duration, max: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        _ = tokio::time::sleep(*delay) => {}
    }
    *delay = (*delay * 2).min(max);
    true
}

impl Drop for Projector {
    fn drop(&mut self) {
        self.stop_reader();
    }
}
