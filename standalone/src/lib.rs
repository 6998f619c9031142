//! The whole system in one process: command-api and query-api on one port, the validator and
//! the projector as tasks, and (unless told of a real Kafka) an embedded broker.
//!
//! This is the one-command mode for trying the product, and the harness the end-to-end tests
//! run: the same code path, so what the tests prove is what a user runs.

use std::net::SocketAddr;

use anyhow::Context;
use service_kit::embedded_broker::EmbeddedBroker;
use service_kit::health;
use service_kit::kafka::KafkaArgs;
use sqlx::migrate::MigrateDatabase;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Settings for the one-process mode; every flag has an environment variable.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "content-processor", about = "Runs the whole content-processor system in one process")]
pub struct Config {
    /// Address serving both APIs and the UI.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// PostgreSQL for the read model; the database is created when missing.
    #[arg(long, env = "DATABASE_URL", default_value = projector::config::DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// A real Kafka cluster to use. Without it, an embedded in-memory broker is started.
    #[arg(long = "kafka-brokers", env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    #[arg(long = "kafka-topic", env = "KAFKA_TOPIC", default_value = "submission-events")]
    pub topic: String,
    /// Partitions of the topic when it is created here.
    #[arg(long = "kafka-partitions", env = "KAFKA_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,
    /// Pause between PROCESSING and the verdict, to watch the states change in a demo.
    #[arg(long, env = "PROCESSING_DELAY_MS", default_value_t = 0)]
    pub processing_delay_ms: u64,
    /// The built browser UI (scripts/build-ui builds it; scripts/run does so when it is stale).
    #[arg(long, env = "UI_DIR", default_value = "ui/dist")]
    pub ui_dir: std::path::PathBuf,
    /// Validator instances to run (they share one consumer group and split the partitions).
    #[arg(long, env = "VALIDATORS", default_value_t = 1)]
    pub validators: usize,
    /// What the projector does when the read model is ahead of the topic (the embedded broker
    /// forgets everything when the process stops): rebuild it from what the topic holds, or stop.
    #[arg(long, env = "ON_TOPIC_RESET", value_enum, default_value_t = projector::TopicResetPolicy::Rebuild)]
    pub on_topic_reset: projector::TopicResetPolicy,
    /// How long the command API waits for Kafka before answering 503.
    #[arg(long, env = "PUBLISH_TIMEOUT_MS", default_value_t = 5_000)]
    pub publish_timeout_ms: u64,
}

impl Config {
    /// Defaults for `database_url`, as the command line would give them.
    pub fn new(database_url: impl Into<String>) -> Self {
        use clap::Parser;
        let mut config = Config::parse_from(["content-processor"]);
        config.database_url = database_url.into();
        config
    }
}

/// The running system.
pub struct Running {
    /// Where both APIs are served.
    pub addr: SocketAddr,
    /// How to reach the broker (embedded or not), e.g. to start more validators.
    pub kafka: KafkaArgs,
    broker: Option<EmbeddedBroker>,
    tasks: JoinSet<anyhow::Result<()>>,
    shutdown: CancellationToken,
}

impl Running {
    /// The embedded broker, when one was started (for fault injection in tests).
    pub fn embedded_broker(&self) -> Option<&EmbeddedBroker> {
        self.broker.as_ref()
    }

    /// Waits until every component has stopped; the first failure stops the others.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let outcome = joined.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(error) = outcome {
                tracing::error!(error = %format!("{error:#}"), "component failed; stopping the others");
                self.shutdown.cancel();
                first_error.get_or_insert(error);
            }
        }
        // The broker goes last: components flush and commit to it on their way out.
        drop(self.broker);
        first_error.map_or(Ok(()), Err)
    }

    /// Asks every component to stop and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Starts every component; returns once all of them are ready to work.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    ensure_database(&config.database_url).await?;

    let mut kafka = KafkaArgs::for_brokers(config.kafka_brokers.clone().unwrap_or_default());
    kafka.topic = config.topic.clone();
    kafka.partitions = config.partitions;
    let broker = match &config.kafka_brokers {
        Some(_) => None,
        None => {
            let broker = EmbeddedBroker::start(&kafka).context("cannot start the embedded broker")?;
            kafka.brokers = broker.bootstrap_servers();
            Some(broker)
        }
    };

    let pool = projector::connect(&config.database_url).await?;
    projector::generations::prepare(&pool).await?;
    let projector_config = projector::Config {
        on_topic_reset: config.on_topic_reset,
        ..projector::Config::new(&config.database_url, kafka.clone())
    };
    let projector = projector::Projector::start(&projector_config, pool.clone(), projector::Target::Live).await?;
    let admin = projector::admin::AdminState {
        config: projector_config,
        pool,
        progress: Default::default(),
        shutdown: shutdown.clone(),
    };

    let mut validator_config = validator::Config::new(kafka.clone());
    validator_config.processing_delay_ms = config.processing_delay_ms;
    let mut validators = Vec::with_capacity(config.validators);
    for _ in 0..config.validators {
        validators.push(validator::Validator::start(&validator_config).await?);
    }

    let command_config = command_api::Config {
        listen: config.listen,
        kafka: kafka.clone(),
        max_content_bytes: 64 * 1024,
        publish_timeout_ms: config.publish_timeout_ms,
        cors_allowed_origins: Vec::new(),
    };
    let commands = command_api::AppState::connect(&command_config).await?;
    let query_config = query_api::Config { ui_dir: config.ui_dir.clone(), ..query_api::Config::new(&config.database_url) };
    let queries = query_api::AppState::connect(&query_config, shutdown.clone())?;

    let mut checks = command_api::readiness_checks(&commands);
    checks.extend(query_api::readiness_checks(&queries));
    let app = command_api::router(commands.clone())
        .merge(query_api::router(queries))
        .merge(projector::admin::routes(admin))
        .merge(health::routes(checks));
    let (listener, addr) = service_kit::http_server::bind(config.listen).await?;

    let mut tasks = JoinSet::new();
    tasks.spawn(projector.run(shutdown.clone()));
    for validator in validators {
        tasks.spawn(validator.run(shutdown.clone()));
    }
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        service_kit::http_server::serve(listener, app, http_shutdown).await?;
        commands.publisher.flush(command_config.publish_timeout()).await;
        Ok(())
    });
    Ok(Running { addr, kafka, broker, tasks, shutdown })
}

/// Creates the database when it does not exist yet, so one command works on a fresh server.
async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let exists = sqlx::Postgres::database_exists(url)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {url}"))?;
    if !exists {
        sqlx::Postgres::create_database(url).await.with_context(|| format!("cannot create database {url}"))?;
        tracing::info!(%url, "created database");
    }
    Ok(())
}
