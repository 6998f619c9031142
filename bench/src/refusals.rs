//! Refusal cost: what a submission refused with 429 (over the account's limit) costs against
//! one accepted with 202. One command API on Apache Kafka (one node) and a scratch database;
//! an ordinary user's token sends submissions open loop at a fixed rate, first under a limit
//! it never reaches, then under a limit of one (so all but the first are refused). Measured:
//! the CPU time of the server answering, of every PostgreSQL process and of the broker over
//! each window, per request, read from `/proc`; and the same less what those processes take
//! at rest (as long a window with no requests, just before), which is what the requests added.
//!
//! Two more windows send the same requests to a bare server (`loadgen bare-refuser`: axum on a
//! tokio runtime like the command API's, answering every request 429 with a small JSON body):
//! alone, the floor the kernel, hyper and the runtime set under any refusal, which no change to
//! the command API can go below; then with the layers every service has
//! (`service_kit::http_server::with_common_layers`: request id, trace span, metrics, headers),
//! which tells their cost apart from the command API's own (its token, limiter and answer).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use sqlx::migrate::MigrateDatabase;

use crate::broker::{BrokerKind, Launcher};

#[derive(clap::Args, Debug, Clone)]
pub struct RefusalArgs {
    /// Submissions sent per second in each window.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// How long each window lasts, in seconds (after a warm-up of as many requests as a second's);
    /// each is preceded by as long a window at rest.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// A PostgreSQL server where a scratch database can be created and dropped.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub server_url: String,
    /// Apache Kafka's distribution; the source tree's pinned one by default.
    #[arg(long)]
    pub kafka_dist: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefusalReport {
    pub rate: u32,
    pub seconds: u64,
    pub accepted: Window,
    pub refused: Window,
    /// The same requests answered 429 by the bare server: what any HTTP refusal costs here.
    pub floor: Window,
    /// The same, the bare server wrapped in the layers every service has.
    pub floor_with_layers: Window,
}

/// One window's requests, their answers, and the CPU they cost per request.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub requests: u64,
    /// Requests answered with the status the window is about (202, or 429).
    pub as_expected: u64,
    /// The CPU of the window, per request.
    pub cpu_ms_per_request: Costs,
    /// The CPU of the window less what the same processes took at rest, per request.
    pub added_cpu_ms_per_request: Costs,
}

/// CPU milliseconds per request, by process.
#[derive(Debug, Clone, Serialize)]
pub struct Costs {
    /// The server answering the requests: the command API, or the bare refuser of the floor windows.
    pub server: f64,
    pub postgres: f64,
    pub broker: f64,
    pub total: f64,
}

impl Costs {
    /// Per request of `requests`, from each process's share of a core over a `seconds` window.
    fn from_cores(cores: impl Fn(&str) -> f64, seconds: f64, requests: u64) -> Costs {
        let ms = |name: &str| cores(name) * seconds * 1000.0 / requests.max(1) as f64;
        let (server, postgres, broker) = (ms("server"), ms(crate::cpu::POSTGRES), ms("broker"));
        Costs { server, postgres, broker, total: server + postgres + broker }
    }
}

pub async fn run(args: &RefusalArgs, launcher: &Launcher) -> anyhow::Result<RefusalReport> {
    let database_url = format!("{}/cp_bench_refusals_{}", args.server_url, uuid::Uuid::new_v4().simple());
    sqlx::Postgres::create_database(&database_url).await?;
    let started = launcher.start(BrokerKind::Apache, 6).await?;
    let outcome = measure(args, &launcher.binary, &database_url, started.kafka.bootstrap_servers(), started.broker.pid()).await;
    started.broker.stop().await;
    let _ = sqlx::Postgres::force_drop_database(&database_url).await;
    outcome
}

async fn measure(args: &RefusalArgs, binary: &Path, database_url: &str, brokers: &str, broker_pid: Option<u32>) -> anyhow::Result<RefusalReport> {
    let pool = sqlx::PgPool::connect(database_url).await?;
    accounts::migrate(&pool).await?;
    let hash = accounts::password::hash("refusal bench password 1".into()).await?;
    let user = accounts::store::create_account(&pool, "user@refusals.example", &hash, accounts::Role::User).await?.context("a fresh database")?;
    let token = accounts::issue_token(&pool, user.id, "bench").await?;
    pool.close().await;

    let mut windows = Vec::new();
    for (limit, expected) in [(u32::MAX / 2, 202), (1, 429)] {
        let port = crate::suite::free_port()?;
        let flags = [
            ("--listen", format!("127.0.0.1:{port}")),
            ("--database-url", database_url.to_owned()),
            ("--kafka-brokers", brokers.to_owned()),
            ("--submission-rate-limit", limit.to_string()),
        ];
        let flags: Vec<String> = flags.into_iter().flat_map(|(name, value)| [name.to_owned(), value]).collect();
        let command_api = crate::suite::spawn(binary, "command-api", &flags)?;
        windows.push(measure_server(args, command_api, port, &token, expected, broker_pid).await?);
    }
    for layers in [false, true] {
        let port = crate::suite::free_port()?;
        let mut flags = vec!["--listen".to_owned(), format!("127.0.0.1:{port}")];
        flags.extend(layers.then(|| "--with-common-layers".to_owned()));
        let loadgen = std::env::current_exe().context("finding loadgen's own binary, to start the bare server")?;
        let bare = crate::suite::spawn(&loadgen, "bare-refuser", &flags)?;
        windows.push(measure_server(args, bare, port, &token, 429, broker_pid).await?);
    }
    let [accepted, refused, floor, floor_with_layers] = <[Window; 4]>::try_from(windows).map_err(|_| anyhow::anyhow!("four windows"))?;
    Ok(RefusalReport { rate: args.rate, seconds: args.seconds, accepted, refused, floor, floor_with_layers })
}

/// One window of requests to `server` (listening on `port`), which is stopped after it.
async fn measure_server(
    args: &RefusalArgs,
    mut server: tokio::process::Child,
    port: u16,
    token: &str,
    expected: u16,
    broker_pid: Option<u32>,
) -> anyhow::Result<Window> {
    let pid = server.id().context("the server has a pid")?;
    let window = send(args, &format!("http://127.0.0.1:{port}/api/submissions"), token, expected, pid, broker_pid).await;
    let _ = server.kill().await;
    window
}

/// `loadgen bare-refuser`: answers every request 429 with a JSON body like the command API's
/// refusal, on a runtime like its own (`#[tokio::main]`, a worker per core), with no state and
/// nothing logged; with no layers either unless `with_common_layers`. What it costs per request
/// is the floor of any refusal over HTTP (with the layers: of any answer a service gives). It
/// leaves the small body to hyper, which discards it; with the layers, they read it first.
pub async fn serve_bare_refusals(listen: std::net::SocketAddr, with_common_layers: bool) -> anyhow::Result<()> {
    use axum::response::IntoResponse;
    async fn refuse() -> axum::response::Response {
        let body = serde_json::json!({"error": "rate_limited", "message": "the rate limit of 1 submission per 60 s is spent"});
        let mut response = (axum::http::StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("60"));
        response
    }
    let mut router = axum::Router::new().fallback(refuse);
    if with_common_layers {
        router = service_kit::http_server::with_common_layers(router, None);
    }
    axum::serve(tokio::net::TcpListener::bind(listen).await?, router).await?;
    Ok(())
}

/// Waits for the server, warms it up, measures it at rest for `seconds`, then sends `rate`
/// submissions a second for `seconds` and reads what they cost.
async fn send(args: &RefusalArgs, url: &str, token: &str, expected: u16, pid: u32, broker_pid: Option<u32>) -> anyhow::Result<Window> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let submit = |http: reqwest::Client, n: u64| {
        let request = http.post(url).bearer_auth(token).json(&serde_json::json!({"content": format!("refusal bench {n:08}")}));
        async move { request.send().await.map_or(0, |response| response.status().as_u16()) }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while submit(http.clone(), 0).await == 0 {
        anyhow::ensure!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 0..u64::from(args.rate) {
        submit(http.clone(), n).await;
    }

    let mut processes = vec![("server".to_owned(), pid)];
    processes.extend(broker_pid.map(|pid| ("broker".to_owned(), pid)));
    let processes = crate::cpu::Processes(processes);
    let (before, resting) = (processes.read(), Instant::now());
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let rest = processes.read().since(&before, resting.elapsed().as_secs_f64(), 0);

    let before = processes.read();
    let started = Instant::now();
    let as_expected = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = u64::from(args.rate) * args.seconds;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = tokio::task::JoinSet::new();
    for n in 0..total {
        ticks.tick().await;
        let (request, as_expected) = (submit(http.clone(), n), as_expected.clone());
        sent.spawn(async move {
            if request.await == expected {
                as_expected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    while sent.join_next().await.is_some() {}
    let seconds = started.elapsed().as_secs_f64();
    let cost = processes.read().since(&before, seconds, total);
    let cores = |cost: &crate::cpu::Cost, name: &str| cost.cores.get(name).copied().unwrap_or(0.0);
    Ok(Window {
        requests: total,
        as_expected: as_expected.load(std::sync::atomic::Ordering::Relaxed),
        cpu_ms_per_request: Costs::from_cores(|name| cores(&cost, name), seconds, total),
        added_cpu_ms_per_request: Costs::from_cores(|name| cores(&cost, name) - cores(&rest, name), seconds, total),
    })
}
