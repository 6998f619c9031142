//! The whole benchmark, on each broker (Apache Kafka and the embedded mock): for each run, a
//! fresh system (the broker, local PostgreSQL, each component in a process of its own so its
//! memory can be read), an open-loop run at the target rate, one at the sustained-throughput
//! rate, a closed-loop run at full speed, and a replay of a large topic. Prints the medians with
//! their spread side by side and writes everything as JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use sqlx::migrate::MigrateDatabase;
use tokio::process::{Child, Command};

use crate::broker::{BenchBroker, BrokerKind, Launcher};
use crate::cpu::{part_name, Cost, Processes, JIT};
use crate::load::{self, LoadArgs, LoadReport, Mode};
use crate::replay::{self, ReplayArgs, ReplayReport};
use crate::report::{print_cost, print_load, print_summary, SummaryRow};
use crate::statements::{self, Statement};

/// How long the system rests after the warm-up before it is measured idle: what a load leaves
/// behind (autovacuum of the rows it wrote, the broker's flushes) is not what idling costs.
const SETTLE: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct SuiteArgs {
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Partitions of the submission topic and its dead-letter topic (the services' default is
    /// 6, the Kubernetes manifests' 12). librdkafka sends one produce request per partition, so
    /// at a given rate more partitions mean more, smaller requests.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Seconds of load per scenario.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Seconds of load at the latency scenario's rate before anything is measured: a broker
    /// that has run for a while is what users meet (the JVM compiles its hot code first). The
    /// time to start is reported on its own.
    #[arg(long, default_value_t = 20)]
    pub warm_up_seconds: u64,
    /// Offered rate of the open-loop latency scenario.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Offered rate of the open-loop throughput scenario: is it sustained end to end?
    #[arg(long, default_value_t = 5000)]
    pub sustain_rate: u32,
    /// Workers of the closed-loop scenario.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds the system is measured idle (one live stream open, nothing submitted, after 10 s
    /// of rest from the warm-up), and the broker alone once the components are stopped (0 skips
    /// both).
    #[arg(long, default_value_t = 10)]
    pub idle_seconds: u64,
    /// Events in the replay scenario's topic (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    pub replay_events: u64,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub server_url: String,
    #[arg(long, default_value = "artifacts/benchmark.json")]
    pub out: PathBuf,
    /// The brokers to measure, each with every scenario.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [BrokerKind::Apache, BrokerKind::Embedded])]
    pub brokers: Vec<BrokerKind>,
    /// The Apache Kafka distribution (default: this source tree's, fetched by scripts/kafka-dist).
    #[arg(long, env = "KAFKA_DIST")]
    pub kafka_dist: Option<PathBuf>,
}

/// Peak resident memory (VmHWM) per process, in MiB.
pub(crate) type Memory = BTreeMap<String, f64>;

#[derive(Debug, Serialize)]
struct Run {
    /// From starting the broker to its serving clients (Apache Kafka: a fresh data directory,
    /// so storage is formatted first).
    broker_ready_seconds: f64,
    open_loop: LoadReport,
    memory_after_open_loop_mib: Memory,
    sustained: LoadReport,
    closed_loop: LoadReport,
    memory_after_closed_loop_mib: Memory,
    replay: Option<ReplayReport>,
    /// CPU of the system idle, with one live stream open.
    idle: Option<Cost>,
    /// CPU of the broker once every component has stopped: the floor under `idle`.
    broker_alone: Option<Cost>,
    /// The statements that took PostgreSQL the most time while idle, and in the open loop at
    /// the target rate (empty without `pg_stat_statements`).
    statements_idle: Vec<Statement>,
    statements_open_loop: Vec<Statement>,
}

/// The statements of the window `counting` started, printed per unit of work.
async fn statements_since(counting: Option<&sqlx::PgPool>, units: u64, seconds: f64) -> Vec<Statement> {
    let Some(pool) = counting else { return Vec::new() };
    let top = statements::top(pool, 15).await;
    statements::print(&top, units, seconds);
    pool.close().await;
    top
}

pub async fn run(args: &SuiteArgs) -> anyhow::Result<()> {
    let launcher = Launcher::new(args.kafka_dist.as_deref())?;
    let mut results = Vec::new();
    for &kind in &args.brokers {
        let mut runs = Vec::new();
        for run in 1..=args.runs {
            println!("== {}: run {run} of {}", kind.label(), args.runs);
            runs.push(one_run(args, &launcher, kind).await?);
        }
        results.push((kind, runs));
    }

    let summaries: Vec<(BrokerKind, Vec<SummaryRow>)> = results.iter().map(|(kind, runs)| (*kind, summarise(runs, args))).collect();
    print_summary(&summaries, args.runs);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let by_broker = |f: &dyn Fn(usize) -> serde_json::Value| -> serde_json::Map<String, serde_json::Value> {
        results.iter().enumerate().map(|(i, (kind, _))| (serde_json::to_value(kind).unwrap().as_str().unwrap().to_owned(), f(i))).collect()
    };
    let json = serde_json::json!({
        "machine": machine(),
        "kafka_version": launcher.dist.version(),
        "args": args,
        "summary": by_broker(&|i| serde_json::to_value(&summaries[i].1).unwrap()),
        "runs": by_broker(&|i| serde_json::to_value(&results[i].1).unwrap()),
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&json)?)?;
    println!("\nwritten to {}", args.out.display());
    Ok(())
}

async fn one_run(args: &SuiteArgs, launcher: &Launcher, kind: BrokerKind) -> anyhow::Result<Run> {
    let mut system = System::start(launcher, kind, &args.server_url, args.partitions).await?;
    let base = LoadArgs {
        command_url: system.command_url.clone(),
        query_url: system.query_url.clone(),
        token: system.token.clone(),
        mode: Mode::Open,
        concurrency: args.concurrency,
        rate: args.rate,
        seconds: args.seconds,
        drain_seconds: 15,
    };
    if args.warm_up_seconds > 0 {
        let warm_up = load::run(&LoadArgs { seconds: args.warm_up_seconds, ..base.clone() }).await?;
        println!("  (warm-up: {} accepted, not measured)", warm_up.accepted);
    }
    let processes = system.processes();
    let (idle, statements_idle) = match args.idle_seconds {
        0 => (None, Vec::new()),
        seconds => {
            tokio::time::sleep(SETTLE).await;
            let counting = statements::reset(&system.database_url).await;
            let idle = system.idle(&processes, seconds).await?;
            (Some(idle), statements_since(counting.as_ref(), 0, seconds as f64).await)
        }
    };
    let counting = statements::reset(&system.database_url).await;
    let open_loop = load::run_metered(&base, Some(&processes)).await?;
    print_load(&open_loop);
    let statements_open_loop = statements_since(counting.as_ref(), open_loop.accepted, open_loop.seconds).await;
    let memory_after_open_loop_mib = system.peak_memory();
    let sustained = load::run_metered(&LoadArgs { rate: args.sustain_rate, ..base.clone() }, Some(&processes)).await?;
    print_load(&sustained);
    let closed_loop = load::run_metered(&LoadArgs { mode: Mode::Closed, ..base }, Some(&processes)).await?;
    print_load(&closed_loop);
    let memory_after_closed_loop_mib = system.peak_memory();
    println!("  peak memory (MiB) at {}/s: {memory_after_open_loop_mib:?}; at full load: {memory_after_closed_loop_mib:?}", args.rate);
    let broker_ready_seconds = system.broker_ready_seconds;
    let broker_alone = match args.idle_seconds {
        0 => None,
        seconds => Some(system.broker_alone(seconds).await),
    };
    system.stop().await;
    let replay = if args.replay_events > 0 {
        let report = replay::run(
            &ReplayArgs {
                events: args.replay_events,
                partitions: 96,
                batch_size: 10_000,
                server_url: args.server_url.clone(),
                broker: kind,
                kafka_dist: None,
                // As the command API writes it: each text sealed with its owner's key.
                owners: 1_000,
                plain: false,
            },
            launcher,
        )
        .await?;
        println!(
            "  replay: {} events of {} owners in {:.1} s: {:.0} events/s",
            report.events, report.owners, report.replay_seconds, report.events_per_second
        );
        Some(report)
    } else {
        None
    };
    Ok(Run {
        broker_ready_seconds,
        open_loop,
        memory_after_open_loop_mib,
        sustained,
        closed_loop,
        memory_after_closed_loop_mib,
        replay,
        idle,
        broker_alone,
        statements_idle,
        statements_open_loop,
    })
}

fn summarise(runs: &[Run], args: &SuiteArgs) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    let mut row = |metric: String, unit: &'static str, target: Option<String>, values: Vec<f64>| {
        if values.is_empty() {
            return;
        }
        let mut sorted = values;
        sorted.sort_by(f64::total_cmp);
        let median = if sorted.len() % 2 == 1 { sorted[sorted.len() / 2] } else { (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0 };
        rows.push(SummaryRow { metric, unit, median, min: sorted[0], max: sorted[sorted.len() - 1], target });
    };
    let of = |f: &dyn Fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    row("broker start to ready".into(), "s", None, of(&|r| r.broker_ready_seconds));
    let sustained = format!("open loop ({}/s)", args.sustain_rate);
    row(
        format!("{sustained}: verdicts visible"),
        "per s",
        Some(format!("= {} (all verdicts seen)", args.sustain_rate)),
        of(&|r| r.sustained.verdicts_per_second),
    );
    row(format!("{sustained}: POST p99"), "ms", None, of(&|r| r.sustained.post_latency_ms.p99));
    row(format!("{sustained}: POST->verdict p99"), "ms", None, of(&|r| r.sustained.end_to_end_latency_ms.p99));
    row(format!("{sustained}: verdicts missing after drain"), "count", None, of(&|r| r.sustained.verdicts_missing as f64));
    row(format!("{sustained}: errors"), "count", None, of(&|r| r.sustained.errors.values().sum::<u64>() as f64));
    let closed = format!("closed loop ({} workers)", args.concurrency);
    row(format!("{closed}: accepted"), "per s", None, of(&|r| r.closed_loop.accepted_per_second));
    row(format!("{closed}: verdicts visible"), "per s", None, of(&|r| r.closed_loop.verdicts_per_second));
    row(format!("{closed}: POST p99"), "ms", None, of(&|r| r.closed_loop.post_latency_ms.p99));
    row(format!("{closed}: POST->verdict p99"), "ms", None, of(&|r| r.closed_loop.end_to_end_latency_ms.p99));
    row(format!("{closed}: errors"), "count", None, of(&|r| r.closed_loop.errors.values().sum::<u64>() as f64));
    let open = format!("open loop ({}/s)", args.rate);
    row(format!("{open}: verdicts visible"), "per s", None, of(&|r| r.open_loop.verdicts_per_second));
    for (name, pick) in [
        ("p50", (|p: &load::Percentiles| p.p50) as fn(&load::Percentiles) -> f64),
        ("p90", |p| p.p90),
        ("p99", |p| p.p99),
        ("p99.9", |p| p.p999),
        ("max", |p| p.max),
    ] {
        let target = (name == "p99").then(|| "<= 20".to_owned());
        row(format!("{open}: POST {name}"), "ms", target, of(&|r| pick(&r.open_loop.post_latency_ms)));
    }
    for (name, pick) in [("p50", (|p: &load::Percentiles| p.p50) as fn(&load::Percentiles) -> f64), ("p99", |p| p.p99), ("max", |p| p.max)] {
        let target = (name == "p99").then(|| "<= 100".to_owned());
        row(format!("{open}: POST->verdict (SSE) {name}"), "ms", target, of(&|r| pick(&r.open_loop.end_to_end_latency_ms)));
    }
    row(format!("{open}: errors"), "count", None, of(&|r| r.open_loop.errors.values().sum::<u64>() as f64));
    // What a submission costs in CPU, every process of the system together and each apart (the
    // load generator's own reported apart, never in the total).
    let cost = |report: &LoadReport| report.cpu.clone();
    row(
        format!("{open}: CPU per submission, all processes"),
        "ms",
        Some("<= 0.4".into()),
        of(&|r| cost(&r.open_loop).map_or(0.0, |c| c.ms_per_unit_total)),
    );
    let processes: Vec<String> =
        runs.first().and_then(|r| r.open_loop.cpu.as_ref()).map(|c| c.ms_per_unit.keys().cloned().collect()).unwrap_or_default();
    for process in &processes {
        row(
            format!("{open}: CPU per submission, {}", part_name(process)),
            "ms",
            None,
            of(&|r| cost(&r.open_loop).and_then(|c| c.ms_per_unit.get(process).copied()).unwrap_or(0.0)),
        );
    }
    row(format!("{sustained}: CPU per submission, all processes"), "ms", None, of(&|r| cost(&r.sustained).map_or(0.0, |c| c.ms_per_unit_total)));
    row(format!("{closed}: CPU per submission, all processes"), "ms", None, of(&|r| cost(&r.closed_loop).map_or(0.0, |c| c.ms_per_unit_total)));
    let idle: Vec<&Run> = runs.iter().filter(|r| r.idle.is_some() && r.broker_alone.is_some()).collect();
    if !idle.is_empty() {
        let idle_of = |f: &dyn Fn(&Run) -> f64| idle.iter().map(|r| f(r)).collect::<Vec<_>>();
        let cores = |cost: &Option<Cost>, name: Option<&str>| {
            cost.as_ref().map_or(0.0, |c| name.map_or(c.cores_total, |name| c.cores.get(name).copied().unwrap_or(0.0)))
        };
        row("idle, one live stream: all processes".into(), "cores", None, idle_of(&|r| cores(&r.idle, None)));
        row("idle: the broker alone, no clients".into(), "cores", None, idle_of(&|r| cores(&r.broker_alone, Some("broker"))));
        row(
            "idle: above the broker alone".into(),
            "cores",
            Some("<= 0.03".into()),
            idle_of(&|r| cores(&r.idle, None) - cores(&r.broker_alone, Some("broker"))),
        );
        // A broker 30 s after it started still compiles the code its first load made hot: time
        // a broker that has run for a while no longer pays.
        let broker_jit = format!("broker{JIT}");
        row(
            "idle: above the broker alone, the broker's JIT compiler apart".into(),
            "cores",
            None,
            idle_of(&|r| {
                let compiling = |cost: &Option<Cost>| cores(cost, Some(&broker_jit));
                cores(&r.idle, None) - compiling(&r.idle) - (cores(&r.broker_alone, Some("broker")) - compiling(&r.broker_alone))
            }),
        );
        for process in &processes {
            row(format!("idle, one live stream: {}", part_name(process)), "cores", None, idle_of(&|r| cores(&r.idle, Some(process))));
        }
    }
    let replays: Vec<f64> = runs.iter().filter_map(|r| r.replay.as_ref()).map(|r| r.events_per_second).collect();
    row(format!("replay of {} events", args.replay_events), "events/s", Some(">= 100000".into()), replays);
    let components: Vec<String> = runs.first().map(|r| r.memory_after_open_loop_mib.keys().cloned().collect()).unwrap_or_default();
    for component in components {
        let target = (component != "broker").then(|| "< 64".to_owned());
        row(format!("peak RSS at {}/s: {component}", args.rate), "MiB", target, of(&|r| r.memory_after_open_loop_mib[&component]));
        row(format!("peak RSS at full load: {component}"), "MiB", None, of(&|r| r.memory_after_closed_loop_mib[&component]));
    }
    rows
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned()));
    let memory = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| s.lines().next().map(str::to_owned));
    serde_json::json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memory": memory,
    })
}

/// The system with every component in a process of its own, on a fresh database.
pub(crate) struct System {
    /// An admin's API token: the load submits with it and sees every verdict.
    token: String,
    pub(crate) command_url: String,
    pub(crate) query_url: String,
    pub(crate) database_url: String,
    broker: BenchBroker,
    broker_ready_seconds: f64,
    processes: Vec<(String, Child)>,
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `content-processor <role>`; its log goes to `<temp>/content-processor-bench/<role>.log`.
/// It logs as deployed, at its default level (or `RUST_LOG`'s, when set): what it costs to log
/// is part of what is measured.
pub fn spawn(binary: &Path, role: &str, args: &[String]) -> anyhow::Result<Child> {
    let logs = std::env::temp_dir().join("content-processor-bench");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(logs.join(format!("{role}.log")))?;
    Command::new(binary)
        .arg(role)
        .args(args)
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {role}"))
}

impl System {
    pub(crate) async fn start(launcher: &Launcher, kind: BrokerKind, server_url: &str, partitions: i32) -> anyhow::Result<System> {
        let database_url = format!("{server_url}/cp_bench_{}", uuid::Uuid::new_v4().simple());
        sqlx::Postgres::create_database(&database_url).await?;
        let started = launcher.start(kind, partitions).await?;
        let brokers = started.kafka.bootstrap_servers().to_owned();

        let (command_port, query_port, notifier_port) = (free_port()?, free_port()?, free_port()?);
        let kafka = |extra: &[&str]| -> Vec<String> {
            let mut args = vec!["--kafka-brokers".to_owned(), brokers.clone()];
            args.extend(extra.iter().map(|s| s.to_string()));
            args
        };
        let mut processes = Vec::new();
        for (role, args) in [
            // The load is one account's: no rate limit may shape what is measured.
            (
                "command-api",
                kafka(&["--listen", &format!("127.0.0.1:{command_port}"), "--database-url", &database_url, "--submission-rate-limit", "2000000000"]),
            ),
            ("validator", kafka(&["--database-url", &database_url])),
            ("projector", kafka(&["--database-url", &database_url])),
            ("query-api", vec!["--listen".into(), format!("127.0.0.1:{query_port}"), "--database-url".into(), database_url.clone()]),
            // It reads every event, as deployed, though nobody here asked to be notified.
            ("notifier", kafka(&["--listen", &format!("127.0.0.1:{notifier_port}"), "--database-url", &database_url])),
        ] {
            processes.push((role.to_owned(), spawn(&launcher.binary, role, &args)?));
        }
        let pool = sqlx::PgPool::connect(&database_url).await?;
        let admin = accounts::create_admin(&pool, "bench@bench.example", "bench password 1".into()).await?;
        let token = accounts::issue_token(&pool, admin.id, "bench").await?;
        pool.close().await;
        let system = System {
            token,
            command_url: format!("http://127.0.0.1:{command_port}"),
            query_url: format!("http://127.0.0.1:{query_port}"),
            database_url,
            broker: started.broker,
            broker_ready_seconds: started.ready_seconds,
            processes,
        };
        system.warm_up().await?;
        Ok(system)
    }
    /// Waits until a submission goes all the way through (the validator has joined its group).
    async fn warm_up(&self) -> anyhow::Result<()> {
        let http = load::client(&self.token, None)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let id = loop {
            anyhow::ensure!(Instant::now() < deadline, "the system did not start in time");
            let sent = http.post(format!("{}/api/submissions", self.command_url)).json(&serde_json::json!({"content": "warm-up 12345"})).send().await;
            if let Ok(response) = sent {
                if response.status() == reqwest::StatusCode::ACCEPTED {
                    let body: serde_json::Value = response.json().await?;
                    break body["id"].as_str().context("id")?.to_owned();
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        loop {
            anyhow::ensure!(Instant::now() < deadline, "the warm-up submission got no verdict in time");
            if let Ok(response) = http.get(format!("{}/api/submissions/{id}", self.query_url)).send().await {
                if let Ok(body) = response.json::<serde_json::Value>().await {
                    if matches!(body["status"].as_str(), Some("PASSED" | "FAILED")) {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The system's processes whose CPU is read: each component and the broker.
    pub(crate) fn processes(&self) -> Processes {
        let components = self.processes.iter().filter_map(|(role, child)| Some((role.clone(), child.id()?)));
        Processes(components.chain(self.broker.pid().map(|pid| ("broker".to_owned(), pid))).collect())
    }

    /// What the system costs with nothing to do for `seconds` but one live stream open, as a
    /// browser keeps.
    async fn idle(&self, processes: &Processes, seconds: u64) -> anyhow::Result<Cost> {
        let stream = load::client(&self.token, None)?.get(format!("{}/api/stream", self.query_url)).send().await?;
        anyhow::ensure!(stream.status().is_success(), "the live stream answered {}", stream.status());
        let before = processes.read();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let cost = processes.read().since(&before, started.elapsed().as_secs_f64(), 0);
        drop(stream);
        print_cost("idle, one stream", &cost);
        Ok(cost)
    }

    /// Stops the components, lets the broker settle (the killed validator's group session
    /// expires after 10 s), then reads what it costs alone for `seconds`.
    async fn broker_alone(&mut self, seconds: u64) -> Cost {
        for (_, child) in self.processes.iter_mut().rev() {
            let _ = child.kill().await;
        }
        tokio::time::sleep(Duration::from_secs(12)).await;
        let broker = Processes(self.broker.pid().map(|pid| ("broker".to_owned(), pid)).into_iter().collect());
        let before = broker.read();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let cost = broker.read().since(&before, started.elapsed().as_secs_f64(), 0);
        print_cost("the broker alone", &cost);
        cost
    }

    pub(crate) fn peak_memory(&self) -> Memory {
        let components = self.processes.iter().filter_map(|(role, child)| Some((role.as_str(), child.id()?)));
        components
            .chain(self.broker.pid().map(|pid| ("broker", pid)))
            .filter_map(|(role, pid)| Some((role.to_owned(), crate::replay::peak_memory_mib(pid)?)))
            .collect()
    }

    pub(crate) async fn stop(mut self) {
        // Components first, the broker last.
        for (_, child) in self.processes.iter_mut().rev() {
            let _ = child.kill().await;
        }
        self.broker.stop().await;
        let _ = sqlx::Postgres::force_drop_database(&self.database_url).await;
    }
}
