//! Validator scale-out: for each process count, a fresh broker whose topic holds N
//! `SubmissionCreated` events, then that many `content-processor validator` processes started
//! together in one consumer group, timed until every submission has its verdict in the log.

use std::time::{Duration, Instant};

use kafka_kit::EventPublisher;
use serde::Serialize;

use crate::broker::{BrokerKind, Launcher};
use crate::replay::{fill_topic, peak_memory_mib, History};

#[derive(clap::Args, Debug, Clone)]
pub struct ScalingArgs {
    /// Submissions waiting in the topic when the validators start.
    #[arg(long, default_value_t = 300_000)]
    pub submissions: u64,
    /// Partitions of the topic: the most validators that can share the work.
    #[arg(long, default_value_t = 12)]
    pub partitions: i32,
    /// Validator process counts to measure, one fresh broker each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub processes: Vec<usize>,
    /// The Apache Kafka distribution (default: this source tree's, fetched by scripts/kafka-dist).
    #[arg(long, env = "KAFKA_DIST")]
    pub kafka_dist: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScalingReport {
    pub processes: usize,
    pub submissions: u64,
    /// From starting the processes until every verdict is in the log (joining the group included).
    pub total_seconds: f64,
    /// From the first verdict to the last: the judging itself.
    pub judging_seconds: f64,
    pub verdicts_per_second: f64,
    /// Peak resident memory of each validator process.
    pub peak_rss_mib: Vec<f64>,
}

pub async fn run(args: &ScalingArgs, launcher: &Launcher) -> anyhow::Result<Vec<ScalingReport>> {
    let mut reports = Vec::new();
    for &processes in &args.processes {
        let report = measure(args, launcher, processes).await?;
        println!(
            "{processes} validator(s): {:.0} verdicts/s ({} in {:.1} s of judging, {:.1} s with start-up), peak RSS {:?} MiB",
            report.verdicts_per_second, report.submissions, report.judging_seconds, report.total_seconds, report.peak_rss_mib
        );
        reports.push(report);
    }
    Ok(reports)
}

async fn measure(args: &ScalingArgs, launcher: &Launcher, processes: usize) -> anyhow::Result<ScalingReport> {
    let started = launcher.start(BrokerKind::Apache, args.partitions).await?;
    let kafka = started.kafka.clone();
    let publisher = EventPublisher::new(&kafka, Duration::from_secs(60))?;
    let created = fill_topic(&publisher, args.submissions, History::Created, &[], false).await? as i64;
    // Each submission gets ProcessingStarted and its verdict: done at three records each.
    let done = 3 * created;
    let validator_args =
        vec!["--kafka-brokers".to_owned(), kafka.bootstrap_servers().to_owned(), "--kafka-partitions".to_owned(), args.partitions.to_string()];
    let start = Instant::now();
    let mut children = Vec::new();
    for _ in 0..processes {
        children.push(crate::suite::spawn(&launcher.binary, "validator", &validator_args)?);
    }
    let mut first_progress = None;
    let deadline = start + Duration::from_secs(1800);
    loop {
        let written: i64 = kafka.partition_bounds().await?.values().map(|(_, end)| end).sum();
        if written > created && first_progress.is_none() {
            first_progress = Some(Instant::now());
        }
        if written >= done {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{written} of {done} records after 30 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total_seconds = start.elapsed().as_secs_f64();
    let judging_seconds = first_progress.map_or(total_seconds, |first| first.elapsed().as_secs_f64());
    let peak_rss_mib = children.iter().filter_map(|child| peak_memory_mib(child.id()?)).collect();
    for child in &mut children {
        let _ = child.kill().await;
    }
    drop(publisher);
    started.broker.stop().await;
    Ok(ScalingReport {
        processes,
        submissions: created as u64,
        total_seconds,
        judging_seconds,
        verdicts_per_second: created as f64 / judging_seconds,
        peak_rss_mib,
    })
}
