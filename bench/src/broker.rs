//! The broker a benchmark runs on, in a process of its own so its memory is its own: Apache
//! Kafka (one local node with the server JVM settings, as `scripts/run` starts it) or the
//! embedded in-memory mock (`content-processor embedded-broker`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use kafka_kit::KafkaArgs;
use local_kafka::{Cluster, ClusterConfig, Distribution};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(clap::ValueEnum, serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BrokerKind {
    /// Apache Kafka, the broker production runs on.
    Apache,
    /// librdkafka's in-memory mock cluster.
    Embedded,
}

impl BrokerKind {
    pub fn label(self) -> &'static str {
        match self {
            BrokerKind::Apache => "Apache Kafka",
            BrokerKind::Embedded => "embedded mock",
        }
    }
}

/// What starting either broker needs: the `content-processor` binary (for the mock) and the
/// Apache Kafka distribution.
pub struct Launcher {
    pub binary: PathBuf,
    pub dist: Distribution,
}

impl Launcher {
    /// The binary next to this one, and the distribution in `--kafka-dist` (or this source
    /// tree's pinned one).
    pub fn new(kafka_dist: Option<&Path>) -> anyhow::Result<Launcher> {
        let binary = std::env::current_exe()?.with_file_name("content-processor");
        anyhow::ensure!(binary.is_file(), "{} is missing: build it with cargo build --release -p content-processor", binary.display());
        let dist = match kafka_dist {
            Some(dir) => Distribution::at(dir)?,
            None => Distribution::of_source_tree()?,
        };
        Ok(Launcher { binary, dist })
    }

    /// Starts a broker of `kind` whose topics get `partitions` partitions.
    pub async fn start(&self, kind: BrokerKind, partitions: i32) -> anyhow::Result<Started> {
        BenchBroker::start(kind, &self.binary, &self.dist, partitions).await
    }
}

pub enum BenchBroker {
    Apache { cluster: Cluster, dir: PathBuf },
    Embedded(Child),
}

/// A started broker, how to reach it, and how long it took from start to serving clients.
pub struct Started {
    pub broker: BenchBroker,
    pub kafka: KafkaArgs,
    pub ready_seconds: f64,
}

impl BenchBroker {
    async fn start(kind: BrokerKind, binary: &Path, dist: &Distribution, partitions: i32) -> anyhow::Result<Started> {
        let started = Instant::now();
        let (broker, brokers) = match kind {
            BrokerKind::Apache => {
                let dir = std::env::temp_dir().join(format!("cp-bench-kafka-{}", uuid::Uuid::new_v4().simple()));
                let cluster = Cluster::start(dist.clone(), ClusterConfig::new(&dir, 1)).await?;
                let brokers = cluster.bootstrap_servers();
                (BenchBroker::Apache { cluster, dir }, brokers)
            }
            BrokerKind::Embedded => {
                let mut child = Command::new(binary)
                    .args(["embedded-broker", "--kafka-partitions", &partitions.to_string()])
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .context("starting the embedded broker")?;
                let mut lines = BufReader::new(child.stdout.take().context("broker stdout")?).lines();
                let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await??.context("the embedded broker said nothing")?;
                let brokers = first.strip_prefix("bootstrap.servers=").context("unexpected broker output")?.to_owned();
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                (BenchBroker::Embedded(child), brokers)
            }
        };
        let ready_seconds = started.elapsed().as_secs_f64();
        let kafka = KafkaArgs { partitions, ..KafkaArgs::for_brokers(brokers) };
        // The topics as the services would create them (the mock has them already).
        kafka.ensure_topic().await?;
        kafka.ensure_topic_named(&kafka.dead_letter_topic()).await?;
        Ok(Started { broker, kafka, ready_seconds })
    }

    /// The broker's operating-system process.
    pub fn pid(&self) -> Option<u32> {
        match self {
            BenchBroker::Apache { cluster, .. } => cluster.pid(1),
            BenchBroker::Embedded(child) => child.id(),
        }
    }

    pub async fn stop(self) {
        match self {
            BenchBroker::Apache { mut cluster, dir } => {
                cluster.stop().await;
                let _ = std::fs::remove_dir_all(dir);
            }
            BenchBroker::Embedded(mut child) => {
                let _ = child.kill().await;
            }
        }
    }
}
