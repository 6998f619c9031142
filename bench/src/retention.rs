//! Retention cost: fills a scratch database with N expired and N live rows (idempotency keys;
//! notifications, each with a finished delivery and one attempt), then times one full sweep of
//! the command API (`command_api::retention::sweep_once`) and one of the notifier
//! (`notifier::retention::sweep_once`), the code the services run every period. It reports rows
//! deleted per second, the WAL each sweep wrote (`pg_current_wal_lsn()` before and after), and
//! what a concurrent writer (single-row inserts of idempotency keys, committed one by one, as
//! the command API claims keys) managed per second before and during each sweep.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::migrate::MigrateDatabase;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(clap::Args, Debug, Clone)]
pub struct RetentionArgs {
    /// Expired rows per table swept, and as many live ones next to them.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: i64,
    /// Most rows per DELETE (the services' --retention-chunk-rows).
    #[arg(long, default_value_t = 5_000)]
    pub chunk_rows: i64,
    /// Seconds the concurrent writer runs alone first, for its baseline rate.
    #[arg(long, default_value_t = 5)]
    pub baseline_secs: u64,
    /// A PostgreSQL server where a scratch database can be created and dropped.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub server_url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub sweep: &'static str,
    pub rows_deleted: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    pub wal_mib: f64,
    pub wal_bytes_per_row: f64,
    /// Single-row inserts per second of the concurrent writer during this sweep.
    pub concurrent_inserts_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    pub expired_rows_per_table: i64,
    pub live_rows_per_table: i64,
    pub chunk_rows: i64,
    pub fill_seconds: f64,
    pub baseline_inserts_per_second: f64,
    pub sweeps: Vec<SweepReport>,
    /// Rows left after the sweeps: every live row, no expired one.
    pub rows_left: Vec<(String, i64)>,
}

pub async fn run(args: &RetentionArgs) -> anyhow::Result<RetentionReport> {
    let url = format!("{}/cp_bench_retention_{}", args.server_url, Uuid::new_v4().simple());
    sqlx::Postgres::create_database(&url).await?;
    let outcome = measure(args, &url).await;
    let _ = sqlx::Postgres::force_drop_database(&url).await;
    outcome
}

async fn measure(args: &RetentionArgs, url: &str) -> anyhow::Result<RetentionReport> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(url).await?;
    accounts::migrate(&pool).await?;
    command_api::idempotency::migrate(&pool).await?;
    notifier::store::migrate(&pool).await?;
    let account = Uuid::new_v4();
    sqlx::query("INSERT INTO accounts.accounts (id, email, password_hash) VALUES ($1, 'bench@retention.example', 'x')")
        .bind(account)
        .execute(&pool)
        .await?;

    let filled = Instant::now();
    let n = args.rows;
    eprintln!("filling: {n} expired and {n} live rows per table...");
    for (age, prefix) in [("2 days", "expired"), ("0 seconds", "live")] {
        sqlx::query(&format!(
            "INSERT INTO commands.idempotency_keys (account_id, key, request_digest, submission_id, created_at, admitted)
             SELECT $1, '{prefix}-' || i, sha256(i::text::bytea), gen_random_uuid(), now() - interval '{age}', true
             FROM generate_series(1, $2) i"
        ))
        .bind(account)
        .bind(n)
        .execute(&pool)
        .await?;
    }
    for (age, prefix) in [("40 days", "expired"), ("1 day", "live")] {
        sqlx::raw_sql(&format!(
            "INSERT INTO notifier.notifications (id, account_id, event_type, payload, created_at)
             SELECT md5('{prefix}' || i)::uuid, '{account}', 'submission.judged',
                    jsonb_build_object('type', 'submission.judged', 'data', jsonb_build_object('status', 'PASSED', 'content', 'some text 42')),
                    now() - interval '{age}'
             FROM generate_series(1, {n}) i;
             INSERT INTO notifier.deliveries (id, notification_id, account_id, channel, state, attempts, created_at, finished_at)
             SELECT 'msg_{prefix}_' || i, md5('{prefix}' || i)::uuid, '{account}', 'email', 'delivered', 1,
                    now() - interval '{age}', now() - interval '{age}'
             FROM generate_series(1, {n}) i;
             INSERT INTO notifier.delivery_attempts (delivery_id, attempt, attempted_at, status_code, duration_ms)
             SELECT 'msg_{prefix}_' || i, 1, now() - interval '{age}', 250, 12
             FROM generate_series(1, {n}) i"
        ))
        .execute(&pool)
        .await?;
    }
    // The steady state a running system would be in: statistics known, visibility map set.
    sqlx::raw_sql("VACUUM ANALYZE").execute(&pool).await?;
    let fill_seconds = filled.elapsed().as_secs_f64();
    eprintln!("filled in {fill_seconds:.1} s");

    let inserts = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_keys(pool.clone(), account, inserts.clone(), stop.clone()));
    let before = inserts.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.baseline_secs)).await;
    let baseline_inserts_per_second = (inserts.load(Ordering::Relaxed) - before) as f64 / args.baseline_secs as f64;

    let retention = service_kit::retention::RetentionArgs { retention_chunk_rows: args.chunk_rows, ..Default::default() };
    let commands = command_api::retention::Settings::from_args(&accounts::AccountsArgs::default(), &retention, 30);
    let notifications = notifier::retention::Settings::from_args(&retention, 30, 86_400);
    let mut sweeps = Vec::new();
    for sweep in ["command-api", "notifier"] {
        let wal_before: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text").fetch_one(&pool).await?;
        let inserts_before = inserts.load(Ordering::Relaxed);
        let started = Instant::now();
        let swept = match sweep {
            "command-api" => command_api::retention::sweep_once(&pool, &commands).await?,
            _ => notifier::retention::sweep_once(&pool, &notifications).await?,
        };
        let seconds = started.elapsed().as_secs_f64();
        let inserted = inserts.load(Ordering::Relaxed) - inserts_before;
        let wal_bytes: f64 =
            sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8").bind(&wal_before).fetch_one(&pool).await?;
        let rows_deleted: u64 = swept.map(|swept| swept.values().sum()).unwrap_or(0);
        let report = SweepReport {
            sweep,
            rows_deleted,
            seconds,
            rows_per_second: rows_deleted as f64 / seconds,
            wal_mib: wal_bytes / (1024.0 * 1024.0),
            wal_bytes_per_row: wal_bytes / rows_deleted.max(1) as f64,
            concurrent_inserts_per_second: inserted as f64 / seconds,
        };
        eprintln!(
            "{sweep}: {rows_deleted} rows in {seconds:.1} s ({:.0} rows/s), {:.0} MiB of WAL ({:.0} B/row); concurrent inserts {:.0}/s (alone: {baseline_inserts_per_second:.0}/s)",
            report.rows_per_second, report.wal_mib, report.wal_bytes_per_row, report.concurrent_inserts_per_second
        );
        sweeps.push(report);
    }
    stop.store(true, Ordering::Relaxed);
    writer.await??;

    let mut rows_left = Vec::new();
    for table in ["commands.idempotency_keys", "notifier.notifications", "notifier.deliveries", "notifier.delivery_attempts"] {
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&pool).await?;
        rows_left.push((table.to_owned(), count));
    }
    let keys_left: i64 = sqlx::query_scalar("SELECT count(*) FROM commands.idempotency_keys WHERE key LIKE 'expired-%'").fetch_one(&pool).await?;
    anyhow::ensure!(keys_left == 0, "{keys_left} expired keys left after the sweep");
    pool.close().await;
    Ok(RetentionReport {
        expired_rows_per_table: n,
        live_rows_per_table: n,
        chunk_rows: args.chunk_rows,
        fill_seconds,
        baseline_inserts_per_second,
        sweeps,
        rows_left,
    })
}

/// Inserts live idempotency keys one by one until `stop`, counting them.
async fn write_keys(pool: PgPool, account: Uuid, inserts: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        sqlx::query(
            "INSERT INTO commands.idempotency_keys (account_id, key, request_digest, submission_id, created_at)
             VALUES ($1, $2, '\\x00', $3, now())",
        )
        .bind(account)
        .bind(format!("writer-{}", Uuid::now_v7()))
        .bind(Uuid::now_v7())
        .execute(&pool)
        .await?;
        inserts.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
