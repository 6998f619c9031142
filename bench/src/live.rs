//! Live browsers: one query API holding N concurrent SSE connections, each signed in as a user
//! of its own and following that user's submissions on `/api/stream`, while submissions flow
//! at a fixed rate, each made by one of those users. Measured: from each submission's
//! scheduled send to its verdict arriving on its owner's stream, every verdict accounted for
//! (none missing, none on another user's stream), and the query API's peak resident memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use uuid::Uuid;

use crate::broker::{BrokerKind, Launcher};
use crate::load::{follow_verdicts, open_loop, Percentiles, Tracker};
use crate::suite::{Memory, System};

#[derive(clap::Args, Debug, Clone)]
pub struct LiveArgs {
    /// Users, each with one SSE connection (the process's open-file limit must allow as many
    /// sockets: `ulimit -n`).
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Connections opened per second while the streams connect.
    #[arg(long, default_value_t = 1_000)]
    pub connect_rate: u32,
    /// Submissions per second once every stream is connected.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u32,
    /// Seconds of submissions at `rate`, once the streams are connected, before anything is
    /// measured: users meet a broker whose JVM has compiled its hot code, as `loadgen suite`
    /// does.
    #[arg(long, default_value_t = 20)]
    pub warm_up_seconds: u64,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// How long to wait afterwards for the last verdicts, in seconds.
    #[arg(long, default_value_t = 15)]
    pub drain_seconds: u64,
    /// A PostgreSQL server where a scratch database can be created and dropped.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub server_url: String,
    /// The Apache Kafka distribution (default: this source tree's, fetched by scripts/kafka-dist).
    #[arg(long, env = "KAFKA_DIST")]
    pub kafka_dist: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveReport {
    pub users: usize,
    /// Streams connected when the submissions started.
    pub connected: usize,
    /// Connections made after the first one of a stream (a stream dropped and resumed).
    pub reconnects: usize,
    pub offered_rate: u32,
    pub seconds: u64,
    pub accepted: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Accepted submissions whose verdict never reached their owner's stream.
    pub verdicts_missing: u64,
    /// Verdicts that arrived on a stream of someone other than the submission's owner.
    pub verdicts_on_another_users_stream: u64,
    /// Verdicts that arrived more than once on their owner's stream.
    pub verdicts_repeated: u64,
    pub post_latency_ms: Percentiles,
    pub verdict_delivery_ms: Percentiles,
    pub peak_rss_mib: Memory,
}

pub async fn run(args: &LiveArgs, launcher: &Launcher) -> anyhow::Result<LiveReport> {
    let system = System::start(launcher, BrokerKind::Apache, &args.server_url, 6).await?;
    let users = create_users(&system.database_url, args.users).await?;
    println!("{} users created", users.len());
    let (accounts, tokens): (Vec<Uuid>, Vec<String>) = users.into_iter().unzip();

    // No default credentials: each request is its user's.
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let tracker = Arc::new(Mutex::new(Tracker::new()));
    // Which stream (user index) saw which verdict.
    let seen: Arc<Mutex<Vec<(usize, Uuid)>>> = Arc::default();
    let connections = Arc::new(AtomicUsize::new(0));
    let stream_url = format!("{}/api/stream", system.query_url);
    let connect_interval = Duration::from_secs_f64(1.0 / f64::from(args.connect_rate.max(1)));
    let followers: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(user, token)| {
            let (http, url, token) = (http.clone(), stream_url.clone(), token.clone());
            let (tracker, seen, connections) = (tracker.clone(), seen.clone(), connections.clone());
            tokio::spawn(async move {
                tokio::time::sleep(connect_interval.mul_f64(user as f64)).await;
                let connected = move || {
                    connections.fetch_add(1, Ordering::Relaxed);
                };
                follow_verdicts(http, url, Some(token), connected, move |id, at| {
                    seen.lock().unwrap().push((user, id));
                    tracker.lock().unwrap().verdict(id, at);
                })
                .await
            })
        })
        .collect();
    let deadline = Instant::now() + connect_interval.mul_f64(args.users as f64) + Duration::from_secs(120);
    while connections.load(Ordering::Relaxed) < args.users {
        anyhow::ensure!(Instant::now() < deadline, "{} of {} streams connected", connections.load(Ordering::Relaxed), args.users);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connected = connections.load(Ordering::Relaxed);
    let tokens: Arc<[String]> = tokens.into();
    let url = format!("{}/api/submissions", system.command_url);
    if args.warm_up_seconds > 0 {
        println!("{connected} streams connected; warming up at {}/s for {} s", args.rate, args.warm_up_seconds);
        let until = Instant::now() + Duration::from_secs(args.warm_up_seconds);
        open_loop(&http, &url, args.rate, until, &tracker, tokens.clone()).await;
        // A moment for the warm-up's last verdicts. Any still to come are not measured; they
        // are still checked against their owner's stream through `seen`.
        tokio::time::sleep(Duration::from_secs(2)).await;
        *tracker.lock().unwrap() = Tracker::new();
    }
    println!("sending {}/s for {} s", args.rate, args.seconds);

    let started = Instant::now();
    let window = Duration::from_secs(args.seconds);
    tracker.lock().unwrap().window_end = Some(started + window);
    open_loop(&http, &url, args.rate, started + window, &tracker, tokens.clone()).await;
    let drain_until = Instant::now() + Duration::from_secs(args.drain_seconds);
    while Instant::now() < drain_until && !tracker.lock().unwrap().waiting.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak_rss_mib = system.peak_memory();
    for follower in &followers {
        follower.abort();
    }

    // Which account each judged submission belongs to, as the read model says.
    let pool = sqlx::PgPool::connect(&system.database_url).await?;
    let owners: HashMap<Uuid, Uuid> =
        sqlx::query_as("SELECT id, owner_id FROM submissions WHERE owner_id IS NOT NULL").fetch_all(&pool).await?.into_iter().collect();
    pool.close().await;
    let mut on_another = 0;
    let mut deliveries: HashMap<(usize, Uuid), u32> = HashMap::new();
    for (user, id) in seen.lock().unwrap().iter() {
        if owners.get(id) != Some(&accounts[*user]) {
            on_another += 1;
        }
        *deliveries.entry((*user, *id)).or_default() += 1;
    }
    let repeated = deliveries.values().filter(|&&n| n > 1).count() as u64;
    system.stop().await;
    let t = tracker.lock().unwrap();
    let report = LiveReport {
        users: args.users,
        connected,
        reconnects: connections.load(Ordering::Relaxed).saturating_sub(args.users),
        offered_rate: args.rate,
        seconds: args.seconds,
        accepted: t.accepted,
        errors: t.errors.clone(),
        verdicts_missing: t.waiting.len() as u64,
        verdicts_on_another_users_stream: on_another,
        verdicts_repeated: repeated,
        post_latency_ms: Percentiles::of(t.post.as_ref().context("histogram")?),
        verdict_delivery_ms: Percentiles::of(t.end_to_end.as_ref().context("histogram")?),
        peak_rss_mib,
    };
    Ok(report)
}

/// `count` user accounts (one password hash for all: hashing is what makes sign-up slow, and
/// it is not measured here), each with an API token.
async fn create_users(database_url: &str, count: usize) -> anyhow::Result<Vec<(Uuid, String)>> {
    let pool = sqlx::PgPool::connect(database_url).await?;
    let hash = accounts::password::hash("live bench password 1".into()).await?;
    let tokens = futures_util::stream::iter(0..count)
        .map(|user| {
            let (pool, hash) = (pool.clone(), hash.clone());
            async move {
                let email = format!("user{user}@live.example");
                let account = accounts::store::create_account(&pool, &email, &hash, accounts::Role::User)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("{email} has an account already: run the benchmark on an empty database"))?;
                let token = accounts::issue_token(&pool, account.id, "live bench").await?;
                anyhow::Ok((account.id, token))
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    pool.close().await;
    Ok(tokens)
}
