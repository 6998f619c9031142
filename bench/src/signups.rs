//! Sign-up flood: strangers keep N sign-ups in flight at once against one query API (each a new
//! address, each hashed with Argon2id, 19 MiB apiece) while a signed-in user keeps reading. Measured:
//! the query API's peak resident memory before and after the flood, how the sign-ups were
//! answered (202, 503 `busy`, anything else), and the user's read latency meanwhile.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use sqlx::migrate::MigrateDatabase;

use crate::load::Percentiles;
use crate::replay::peak_memory_mib;

#[derive(clap::Args, Debug, Clone)]
pub struct SignupArgs {
    /// Sign-ups in flight at once, each followed by the next as soon as it is answered.
    #[arg(long, default_value_t = 200)]
    pub concurrent: usize,
    /// How long the flood lasts, in seconds.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// A PostgreSQL server where a scratch database can be created and dropped.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub server_url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SignupReport {
    pub concurrent: usize,
    pub seconds: u64,
    /// Sign-ups answered, by status.
    pub answers: BTreeMap<u16, u64>,
    pub accounts_created_per_second: f64,
    /// The query API's peak resident memory once started and warmed up, and after the flood.
    pub peak_rss_before_mib: f64,
    pub peak_rss_after_mib: f64,
    /// A signed-in user's reads (`GET /api/tokens`, one at a time) during the flood.
    pub reads_ms: Percentiles,
    pub reads_failed: u64,
}

pub async fn run(args: &SignupArgs) -> anyhow::Result<SignupReport> {
    let database_url = format!("{}/cp_bench_signups_{}", args.server_url, uuid::Uuid::new_v4().simple());
    sqlx::Postgres::create_database(&database_url).await?;
    let outcome = measure(args, &database_url).await;
    let _ = sqlx::Postgres::force_drop_database(&database_url).await;
    outcome
}

async fn measure(args: &SignupArgs, database_url: &str) -> anyhow::Result<SignupReport> {
    let pool = sqlx::PgPool::connect(database_url).await?;
    accounts::migrate(&pool).await?;
    let reader = accounts::create_admin(&pool, "reader@bench.example", "reader password 1".into()).await?;
    let token = accounts::issue_token(&pool, reader.id, "bench").await?;
    pool.close().await;

    let binary = std::env::current_exe()?.with_file_name("content-processor");
    anyhow::ensure!(binary.is_file(), "{} is missing: build it with cargo build --release -p content-processor", binary.display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    // Every stranger comes from loopback here: the limit per address would stop the flood after
    // 30, and what is measured is what the sign-ups that get past it cost.
    let query_args = ["--listen", &format!("127.0.0.1:{port}"), "--database-url", database_url, "--sign-up-limit-per-address", "1000000000"];
    let mut query_api = crate::suite::spawn(&binary, "query-api", &query_args.map(str::to_owned))?;
    let pid = query_api.id().context("the query API has a pid")?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let read = || http.get(format!("{base}/api/tokens")).bearer_auth(&token).send();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !read().await.is_ok_and(|response| response.status().is_success()) {
        anyhow::ensure!(Instant::now() < deadline, "the query API did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..200 {
        read().await?;
    }
    let peak_rss_before_mib = peak_memory_mib(pid).unwrap_or(f64::NAN);

    let answers: Arc<Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let strangers: Vec<_> = (0..args.concurrent)
        .map(|stranger| {
            let (http, base, answers) = (http.clone(), base.clone(), answers.clone());
            tokio::spawn(async move {
                let mut attempt = 0;
                while Instant::now() < until {
                    let email = format!("stranger{stranger}-{attempt}@bench.example");
                    let body = serde_json::json!({"email": email, "password": "a stranger's password 1"});
                    let status = http.post(format!("{base}/api/accounts")).json(&body).send().await.map_or(0, |r| r.status().as_u16());
                    *answers.lock().unwrap_or_else(|e| e.into_inner()).entry(status).or_default() += 1;
                    attempt += 1;
                }
            })
        })
        .collect();
    let mut reads = Histogram::<u64>::new(3)?;
    let mut reads_failed = 0;
    while Instant::now() < until {
        let sent = Instant::now();
        match read().await {
            Ok(response) if response.status().is_success() => reads.record(sent.elapsed().as_micros() as u64)?,
            _ => reads_failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for stranger in strangers {
        stranger.await?;
    }
    let peak_rss_after_mib = peak_memory_mib(pid).unwrap_or(f64::NAN);
    let _ = query_api.kill().await;
    let answers = Arc::try_unwrap(answers).map_err(|_| anyhow::anyhow!("strangers still running"))?.into_inner().unwrap_or_default();
    let created = answers.get(&202).copied().unwrap_or(0);
    Ok(SignupReport {
        concurrent: args.concurrent,
        seconds: args.seconds,
        accounts_created_per_second: created as f64 / args.seconds as f64,
        answers,
        peak_rss_before_mib,
        peak_rss_after_mib,
        reads_ms: Percentiles::of(&reads),
        reads_failed,
    })
}
