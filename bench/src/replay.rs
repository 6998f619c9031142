//! Rebuild rate: fills a topic on a broker with N events (complete histories of N/3
//! submissions), then times a rebuild (`projector::rebuild`, what `POST /admin/rebuild` runs)
//! from offset 0 until the new generation has caught up and is live, and checks that every
//! event is in it. With `--owners`, the submissions belong to that many accounts and their text
//! is sealed with each account's data key, as the command API writes it: the rebuild then reads
//! the keys and opens every text.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use domain::{Envelope, Event};
use kafka_kit::{EventPublisher, Outgoing};
use serde::Serialize;
use sqlx::migrate::MigrateDatabase;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::broker::{BrokerKind, Launcher};

#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Events in the topic to replay.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Partitions: the embedded broker keeps at most 5 MiB per partition, so a million events
    /// need dozens of them (the benchmark checks that nothing was deleted). The same number on
    /// Apache Kafka keeps the two comparable.
    #[arg(long, default_value_t = 96)]
    pub partitions: i32,
    /// Records per rebuild transaction (the projector's --rebuild-batch-size).
    #[arg(long, default_value_t = 10_000)]
    pub batch_size: usize,
    /// A PostgreSQL server where a scratch database can be created and dropped.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub server_url: String,
    /// The broker holding the topic.
    #[arg(long, value_enum, default_value_t = BrokerKind::Apache)]
    pub broker: BrokerKind,
    /// Accounts the submissions belong to, their text sealed with each one's data key; 0: no
    /// owner, plain text (as before content was sealed).
    #[arg(long, default_value_t = 0)]
    pub owners: u32,
    /// With `--owners`: their text in the clear, as events were written before sealing (to
    /// compare the cost of opening it).
    #[arg(long)]
    pub plain: bool,
    /// The Apache Kafka distribution (default: this source tree's, fetched by scripts/kafka-dist).
    #[arg(long, env = "KAFKA_DIST")]
    pub kafka_dist: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub events: u64,
    pub batch_size: usize,
    pub owners: u32,
    pub sealed: bool,
    pub produce_seconds: f64,
    pub replay_seconds: f64,
    pub events_per_second: f64,
    /// Peak resident memory of the process during the rebuild (PostgreSQL's not included).
    pub rebuild_peak_rss_mib: f64,
}

pub async fn run(args: &ReplayArgs, launcher: &Launcher) -> anyhow::Result<ReplayReport> {
    let started = launcher.start(args.broker, args.partitions).await?;
    let kafka = started.kafka;

    let url = format!("{}/cp_bench_replay_{}", args.server_url, Uuid::new_v4().simple());
    sqlx::Postgres::create_database(&url).await?;
    let pool = projector::connect(&url).await?;
    projector::generations::prepare(&pool).await?;
    let config = projector::Config { rebuild_batch_size: args.batch_size, ..projector::Config::new(&url, kafka.clone()) };
    let owners = data_keys(&pool, &config.keyring, args.owners).await?;

    let produce_started = Instant::now();
    let publisher = EventPublisher::new(&kafka, Duration::from_secs(60))?;
    let submissions = args.events.div_ceil(3);
    let produced = fill_topic(&publisher, submissions, History::Complete, &owners, !args.plain).await?;
    let produce_seconds = produce_started.elapsed().as_secs_f64();
    let bounds = kafka.partition_bounds().await?;
    let kept: i64 = bounds.values().map(|(start, end)| end - start).sum();
    anyhow::ensure!(kept == produced as i64, "the broker kept {kept} of {produced} events (retention); use more partitions");
    let progress = projector::rebuild::Progress::default();
    let lock = projector::rebuild::RebuildLock::try_acquire(&pool).await?.context("a rebuild is already running")?;
    progress.begin(&pool).await?;
    // The peak of the rebuild alone, not of filling the topic before it.
    reset_peak_memory();
    let replay_started = Instant::now();
    projector::rebuild::rebuild(&config, &pool, &progress, lock, CancellationToken::new()).await?;
    let replay_seconds = replay_started.elapsed().as_secs_f64();
    let rebuild_peak_rss_mib = peak_memory_mib(std::process::id()).unwrap_or(f64::NAN);
    // Positions at the end are not enough: every event must be in the read model.
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM submission_events").fetch_one(&pool).await?;
    let submissions_stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM submissions WHERE status IN ('PASSED', 'FAILED')").fetch_one(&pool).await?;
    anyhow::ensure!(
        stored == produced as i64 && submissions_stored == submissions as i64,
        "replay incomplete: {stored} of {produced} events and {submissions_stored} of {submissions} verdicts stored"
    );
    // Every text opened, not stored as erased (a key that did not unwrap would leave it out).
    let without_text: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM submissions WHERE content IS NULL").fetch_one(&pool).await?;
    anyhow::ensure!(without_text == 0, "{without_text} submissions replayed without their text");
    pool.close().await;
    sqlx::Postgres::force_drop_database(&url).await?;
    // Clients before the broker they talk to.
    drop(publisher);
    started.broker.stop().await;
    Ok(ReplayReport {
        events: produced,
        batch_size: args.batch_size,
        owners: args.owners,
        sealed: args.owners > 0 && !args.plain,
        produce_seconds,
        replay_seconds,
        events_per_second: produced as f64 / replay_seconds,
        rebuild_peak_rss_mib,
    })
}

/// What each submission written by [`fill_topic`] has in the log.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// `SubmissionCreated` only: work for validators.
    Created,
    /// Created, started and judged: what a rebuild replays.
    Complete,
}

/// `count` accounts, each with a data key stored in the database at `pool` (the accounts schema
/// migrated there), as the command API makes them.
async fn data_keys(pool: &sqlx::PgPool, keyring: &keyring::KeyringArgs, count: u32) -> anyhow::Result<Vec<(Uuid, keyring::DataKey)>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    accounts::migrate(pool).await?;
    let keyring = keyring::Keyring::from_args(keyring)?;
    let mut keys = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let account = Uuid::new_v4();
        let key = keyring::store::key_for_writing(pool, &keyring, account).await?.context("a new account has a key")?;
        keys.push((account, key));
    }
    Ok(keys)
}

/// Publishes `submissions` submissions (every fifth one fails the rule) in chunks, acknowledged
/// by the broker; returns the number of events written. With `owners`, submission `i` belongs
/// to owner `i % owners.len()`, its text `sealed` with that owner's key or in the clear.
pub async fn fill_topic(
    publisher: &EventPublisher,
    submissions: u64,
    history: History,
    owners: &[(Uuid, keyring::DataKey)],
    sealed: bool,
) -> anyhow::Result<u64> {
    let mut produced = 0u64;
    let mut chunk = Vec::with_capacity(30_000);
    for i in 0..submissions {
        let content = if i % 5 == 0 { "short".to_owned() } else { format!("replayed submission {i}") };
        let id = Uuid::now_v7();
        let creation = match owners.get((i % owners.len().max(1) as u64) as usize) {
            None => Event::created(content.clone(), None),
            Some((owner, key)) => Event::SubmissionCreated {
                content: if sealed { key.seal_content(id, &content) } else { domain::Content::Plain(content.clone()) },
                owner_id: Some(*owner),
                batch: None,
                replaces: None,
            },
        };
        let created = Envelope::new(id, creation, Utc::now(), Uuid::new_v4());
        let follow_ups = match history {
            History::Created => vec![],
            History::Complete => {
                vec![created.follow_up(Event::ProcessingStarted {}, Utc::now()), created.follow_up(Event::verdict_for(&content), Utc::now())]
            }
        };
        chunk.push(created);
        chunk.extend(follow_ups);
        if chunk.len() >= 30_000 || i + 1 == submissions {
            publisher.publish_all(chunk.iter().map(Outgoing::from)).await?;
            produced += chunk.len() as u64;
            chunk.clear();
        }
    }
    Ok(produced)
}

/// Peak resident memory (VmHWM) of process `pid`, in MiB.
pub fn peak_memory_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets this process's VmHWM to its current resident set (Linux: `clear_refs` value 5).
fn reset_peak_memory() {
    if let Err(error) = std::fs::write("/proc/self/clear_refs", "5") {
        tracing::warn!(%error, "cannot reset the peak memory; the rebuild's peak includes filling the topic");
    }
}
