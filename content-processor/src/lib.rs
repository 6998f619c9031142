//! The whole system in one process: command-api, query-api and the notifier's API on one port,
//! the validator, the projector and the notifier as tasks, and (unless told of a real Kafka) an embedded broker.
//!
//! This is the one-command mode for trying the product, and the harness the end-to-end tests
//! run: the same code path, so what the tests prove is what a user runs.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use kafka_kit::embedded_broker::EmbeddedBroker;
use kafka_kit::KafkaArgs;
use local_kafka::{Cluster, ClusterConfig, JvmProfile};
use sqlx::migrate::MigrateDatabase;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub mod deployed;

/// Settings for the one-process mode; every flag has an environment variable.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "content-processor", about = "Runs the whole content-processor system in one process")]
pub struct Config {
    /// Address serving both APIs and the UI.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` are served instead: a port of their own for
    /// probes and scrapers. Unset, they share `--listen`.
    #[arg(long, env = "INTERNAL_LISTEN")]
    pub internal_listen: Option<SocketAddr>,
    /// PostgreSQL for the read model; the database is created when missing.
    #[arg(long, env = "DATABASE_URL", default_value = service_kit::DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// The Kafka to use. Without `--kafka-brokers`, a local Apache Kafka broker is started (from
    /// `--kafka-dist`, keeping its log in `--data-dir`), or with `--embedded-broker` an in-memory one.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Use librdkafka's in-memory mock broker instead of Apache Kafka. For a quick try only: it
    /// forgets every event when the process stops, keeps at most 5 MiB per partition (older
    /// records are deleted) and implements no transactions.
    #[arg(long, env = "EMBEDDED_BROKER", conflicts_with = "brokers")]
    pub embedded_broker: bool,
    /// The Apache Kafka distribution to run when no `--kafka-brokers` is given (its jars in
    /// DIR/libs); `scripts/kafka-dist` fetches it and prints the directory, `scripts/run` sets it.
    #[arg(long, env = "KAFKA_DIST")]
    pub kafka_dist: Option<PathBuf>,
    /// Where the local Apache Kafka broker keeps the event log (in DIR/kafka), across runs.
    #[arg(long, env = "CONTENT_PROCESSOR_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Client port of the local broker; its controller listens on the next port. 0 picks free
    /// ports, which only suits a data directory that is new (the quorum remembers its ports).
    #[arg(long, env = "LOCAL_KAFKA_PORT", default_value_t = 9092)]
    pub local_kafka_port: u16,
    /// Heap of the local broker's JVM.
    #[arg(long, env = "LOCAL_KAFKA_HEAP_MB", default_value_t = 512)]
    pub local_kafka_heap_mb: u32,
    /// How the local broker's JVM is tuned (the tests trade speed for a faster start).
    #[arg(skip = JvmProfile::Server)]
    pub local_kafka_jvm: JvmProfile,
    /// Pause between PROCESSING and the verdict, to watch the states change in a demo.
    #[arg(long, env = "PROCESSING_DELAY_MS", default_value_t = 0)]
    pub processing_delay_ms: u64,
    /// The built browser UI (scripts/build-ui builds it; scripts/run does so when it is stale).
    #[arg(long, env = "UI_DIR", default_value = "ui/dist")]
    pub ui_dir: std::path::PathBuf,
    /// Validator instances to run (they share one consumer group and split the partitions).
    #[arg(long, env = "VALIDATORS", default_value_t = 1)]
    pub validators: usize,
    /// What the projector does when the read model is ahead of the topic (the log was wiped, or
    /// the embedded broker forgot it): rebuild the read model from what the topic holds, or stop.
    #[arg(long, env = "ON_TOPIC_RESET", value_enum, default_value_t = projector::TopicResetPolicy::Rebuild)]
    pub on_topic_reset: projector::TopicResetPolicy,
    /// Largest accepted content, in bytes of UTF-8.
    #[arg(long, env = "MAX_CONTENT_BYTES", default_value_t = command_api::config::DEFAULT_MAX_CONTENT_BYTES)]
    pub max_content_bytes: usize,
    /// How long the command API waits for Kafka before answering 503.
    #[arg(long, env = "PUBLISH_TIMEOUT_MS", default_value_t = 5_000)]
    pub publish_timeout_ms: u64,
    /// Origins whose pages may call the APIs (the UI itself is same-origin); none by default.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    /// The validators' consumer group [default: the validator's].
    #[arg(long, env = "VALIDATOR_GROUP_ID")]
    pub validator_group_id: Option<String>,
    /// Most records a validator judges per batch [default: the validator's].
    #[arg(long, env = "VALIDATOR_BATCH_SIZE")]
    pub validator_batch_size: Option<usize>,
    /// Most records the projector applies per transaction [default: the projector's].
    #[arg(long, env = "PROJECTOR_BATCH_SIZE")]
    pub projector_batch_size: Option<usize>,
    /// Most records per transaction while rebuilding [default: the projector's].
    #[arg(long, env = "PROJECTOR_REBUILD_BATCH_SIZE")]
    pub rebuild_batch_size: Option<usize>,
    /// Connections in the query API's pool [default: the query API's].
    #[arg(long, env = "QUERY_API_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// Sessions, sign-in and submission rate limits.
    #[command(flatten)]
    pub accounts: accounts::AccountsArgs,
    /// The key-encryption key every component wraps and unwraps the accounts' data keys with.
    #[command(flatten)]
    pub keyring: keyring::KeyringArgs,
    /// The SMTP server notification emails, and links to verify an address or reset a
    /// password, go through (e.g. smtp://127.0.0.1:1025); without it, notifications go out by
    /// webhook only and nothing is mailed.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<service_kit::secret::Secret>,
    /// The sender of notification emails [default: the notifier's].
    #[arg(long, env = "NOTIFIER_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// Where users reach the UI, which mailed links point at [default: the address served].
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Allow webhook URLs on loopback, private and link-local addresses (trusted networks and
    /// tests only).
    #[arg(long, env = "NOTIFIER_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_webhook_targets: bool,
    /// Wait before a delivery's second attempt [default: the notifier's].
    #[arg(long, env = "NOTIFIER_RETRY_BASE_MS")]
    pub notifier_retry_base_ms: Option<u64>,
    /// Attempts per delivery [default: the notifier's].
    #[arg(long, env = "NOTIFIER_MAX_ATTEMPTS")]
    pub notifier_max_attempts: Option<i32>,
    /// How often the command API's and the notifier's expired rows are deleted.
    #[command(flatten)]
    pub retention: service_kit::retention::RetentionArgs,
    /// Days an expired or revoked API token stays listed [default: the command API's].
    #[arg(long, env = "TOKEN_RETENTION_DAYS")]
    pub token_retention_days: Option<u32>,
    /// Days finished deliveries and parked records are kept [default: the notifier's].
    #[arg(long, env = "NOTIFICATION_RETENTION_DAYS")]
    pub notification_retention_days: Option<u32>,
}

/// `$XDG_DATA_HOME/content-processor`, or `~/.local/share/content-processor`.
pub(crate) fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("content-processor")
}

impl Config {
    /// The defaults of every flag, with `database_url`. The environment is not read: a
    /// `KAFKA_BROKERS` in a developer's shell must not redirect what is built here (the tests).
    pub fn new(database_url: impl Into<String>) -> Self {
        Config { database_url: database_url.into(), ..service_kit::default_config() }
    }
}

/// The broker the system runs on.
pub enum Broker {
    /// A Kafka cluster somewhere else (`--kafka-brokers`).
    External,
    /// Apache Kafka started here, stopped when the system stops.
    Local(Cluster),
    /// librdkafka's in-memory mock cluster (`--embedded-broker`).
    Embedded(EmbeddedBroker),
}

impl Broker {
    async fn start(config: &Config) -> anyhow::Result<Broker> {
        if config.embedded_broker {
            let broker = EmbeddedBroker::start(&config.kafka).context("cannot start the embedded broker")?;
            return Ok(Broker::Embedded(broker));
        }
        if config.kafka.brokers.is_some() {
            return Ok(Broker::External);
        }
        let Some(dist) = &config.kafka_dist else {
            anyhow::bail!(
                "no Kafka to use: give --kafka-brokers HOST:PORT, or --kafka-dist DIR to run Apache Kafka here \
                 (./scripts/run does that for you), or --embedded-broker for an in-memory try"
            );
        };
        let dist = local_kafka::Distribution::at(dist)?;
        let mut cluster_config = ClusterConfig::new(config.data_dir.join("kafka"), 1);
        cluster_config.base_port = (config.local_kafka_port != 0).then_some(config.local_kafka_port);
        cluster_config.heap_mb = config.local_kafka_heap_mb;
        cluster_config.jvm = config.local_kafka_jvm;
        let cluster =
            Cluster::start(dist, cluster_config).await.with_context(|| format!("cannot start Apache Kafka in {}", config.data_dir.display()))?;
        Ok(Broker::Local(cluster))
    }

    /// Where a broker started here listens.
    fn bootstrap_servers(&self) -> Option<String> {
        match self {
            Broker::Local(cluster) => Some(cluster.bootstrap_servers()),
            Broker::Embedded(broker) => Some(broker.bootstrap_servers()),
            Broker::External => None,
        }
    }

    /// Stops a broker this process started, after every component is done with it.
    async fn stop(self) {
        match self {
            Broker::Local(mut cluster) => cluster.stop().await,
            Broker::Embedded(broker) => drop(broker),
            Broker::External => {}
        }
    }
}

/// The running system.
pub struct Running {
    /// Where both APIs are served.
    pub addr: SocketAddr,
    /// How to reach the broker (started here or not), e.g. to start more validators.
    pub kafka: KafkaArgs,
    broker: Broker,
    tasks: JoinSet<anyhow::Result<()>>,
    admin: operations::AdminState,
    shutdown: CancellationToken,
}

impl Running {
    /// The broker the system runs on.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The local Apache Kafka, when one was started (tests stop and kill it).
    pub fn local_kafka(&mut self) -> Option<&mut Cluster> {
        match &mut self.broker {
            Broker::Local(cluster) => Some(cluster),
            _ => None,
        }
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
        // A rebuild started over the admin API gives up its generation and lock, then the
        // broker goes last: components flush and commit to it on their way out.
        self.admin.wait_for_rebuild().await;
        // The admin endpoints' Kafka clients go before the broker: alive, they would log its
        // going as a burst of connection errors.
        let Running { broker, admin, .. } = self;
        drop(admin);
        broker.stop().await;
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
    // First, so that a taken port or a malformed origin is said at once, not after a broker start.
    let (listener, addr) = service_kit::http_server::bind(config.listen).await?;
    let cors = service_kit::http_server::cors(&config.cors_allowed_origins)?;
    ensure_database(&config.database_url).await?;

    let broker = Broker::start(&config).await?;
    let mut kafka = config.kafka.clone();
    if let Some(servers) = broker.bootstrap_servers() {
        kafka.brokers = Some(servers);
    }

    let pool = projector::connect(&config.database_url).await?;
    projector::generations::prepare(&pool).await?;
    let mut projector_config = projector::Config::new(&config.database_url, kafka.clone());
    projector_config.on_topic_reset = config.on_topic_reset;
    projector_config.keyring = config.keyring.clone();
    override_with(&mut projector_config.batch_size, config.projector_batch_size);
    override_with(&mut projector_config.rebuild_batch_size, config.rebuild_batch_size);
    let projector = projector::Projector::start(&projector_config, pool.clone(), projector::Target::Live).await?;

    let mut validator_config = validator::Config::new(kafka.clone());
    validator_config.database_url = config.database_url.clone();
    validator_config.keyring = config.keyring.clone();
    validator_config.processing_delay_ms = config.processing_delay_ms;
    validator_config.publish_timeout_ms = config.publish_timeout_ms;
    override_with(&mut validator_config.group_id, config.validator_group_id.clone());
    override_with(&mut validator_config.batch_size, config.validator_batch_size);
    let mut validators = Vec::with_capacity(config.validators);
    for _ in 0..config.validators {
        validators.push(validator::Validator::start(&validator_config).await?);
    }
    let admin = operations::AdminState::new(projector_config, &validator_config.group_id, pool.clone(), shutdown.clone())?;

    let mut command_config = command_api::Config::new(&config.database_url, kafka.clone());
    command_config.listen = config.listen;
    command_config.max_content_bytes = config.max_content_bytes;
    command_config.publish_timeout_ms = config.publish_timeout_ms;
    command_config.accounts = config.accounts.clone();
    command_config.keyring = config.keyring.clone();
    command_config.retention = config.retention.clone();
    override_with(&mut command_config.token_retention_days, config.token_retention_days);
    let commands = command_api::AppState::connect(&command_config).await?;
    let mut query_config = query_api::Config::new(&config.database_url);
    query_config.ui_dir = config.ui_dir.clone();
    query_config.accounts = config.accounts.clone();
    query_config.smtp_url = config.smtp_url.clone();
    override_with(&mut query_config.mail_from, config.mail_from.clone());
    query_config.public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    override_with(&mut query_config.max_connections, config.max_connections);
    let queries = query_api::AppState::connect(&query_config, shutdown.clone())?;

    let mut notifier_config = notifier::Config::new(&config.database_url, kafka.clone());
    notifier_config.smtp_url = config.smtp_url.clone();
    override_with(&mut notifier_config.mail_from, config.mail_from.clone());
    notifier_config.allow_private_targets = config.allow_private_webhook_targets;
    notifier_config.accounts = config.accounts.clone();
    notifier_config.keyring = config.keyring.clone();
    override_with(&mut notifier_config.retry_base_ms, config.notifier_retry_base_ms);
    override_with(&mut notifier_config.max_attempts, config.notifier_max_attempts);
    notifier_config.retention = config.retention.clone();
    override_with(&mut notifier_config.notification_retention_days, config.notification_retention_days);
    let notifier = notifier::Notifier::start(&notifier_config).await?;

    let mut checks = command_api::readiness_checks(&commands);
    checks.extend(query_api::readiness_checks(&queries));
    checks.push(projector.readiness_check());
    checks.extend(validators.iter().map(validator::Validator::readiness_check));
    checks.extend(notifier.readiness_checks());
    let app = command_api::router(commands.clone())
        .merge(query_api::router(queries))
        .merge(notifier.router())
        .merge(operations::routes(admin.clone()))
        .merge(service_kit::openapi::routes(openapi()));
    let app = service_kit::http_server::mount_operations(app, checks, config.internal_listen, &shutdown).await?;

    let mut tasks = JoinSet::new();
    tasks.spawn(projector.run(shutdown.clone()));
    let log_end = projector::log_end::answer_requests(kafka.clone(), pool, shutdown.clone());
    tasks.spawn(async move {
        log_end.await;
        Ok(())
    });
    tasks.spawn(notifier.run(shutdown.clone()));
    let command_retention = command_api::retention::Settings::new(&command_config);
    let sweeps = command_api::retention::run(commands.accounts.pool.clone(), command_retention, shutdown.clone());
    tasks.spawn(async move {
        sweeps.await;
        Ok(())
    });
    let announcer = command_api::erasures::run(commands.accounts.pool.clone(), commands.publisher.clone(), shutdown.clone());
    tasks.spawn(async move {
        announcer.await;
        Ok(())
    });
    for validator in validators {
        tasks.spawn(validator.run(shutdown.clone()));
    }
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        service_kit::http_server::serve(listener, app, cors, http_shutdown).await?;
        commands.batches.finish().await;
        commands.publisher.flush(command_config.publish_timeout()).await;
        Ok(())
    });
    Ok(Running { addr, kafka, broker, tasks, admin, shutdown })
}

/// The OpenAPI description of everything the one-process mode serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let admin = <operations::AdminApi as utoipa::OpenApi>::openapi();
    service_kit::openapi::document("all services in one process", [query_api::openapi(), command_api::openapi(), notifier::openapi(), admin])
}

/// Replaces a service's default with the value given to the one-process mode, if any.
fn override_with<T>(setting: &mut T, given: Option<T>) {
    if let Some(given) = given {
        *setting = given;
    }
}

/// Creates (or promotes) an admin account: what `content-processor create-admin` does, on a
/// database that may not have been used yet.
pub async fn create_admin(database_url: &str, email: &str, password: String) -> anyhow::Result<accounts::store::Account> {
    ensure_database(database_url).await?;
    let pool = sqlx::PgPool::connect(database_url)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {}", service_kit::postgres::describe(database_url)))?;
    let account = accounts::create_admin(&pool, email, password).await;
    pool.close().await;
    Ok(account?)
}

/// Creates the database when it does not exist yet, so one command works on a fresh server.
pub(crate) async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let exists =
        sqlx::Postgres::database_exists(url).await.with_context(|| format!("cannot reach PostgreSQL at {}", service_kit::postgres::describe(url)))?;
    if !exists {
        let database = service_kit::postgres::describe(url);
        sqlx::Postgres::create_database(url).await.with_context(|| format!("cannot create database {database}"))?;
        tracing::info!(%database, "created database");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_built_in_code_ignore_the_environment() {
        // nextest runs each test in a process of its own, so this reaches no other test.
        std::env::set_var("KAFKA_BROKERS", "elsewhere:9092");
        std::env::set_var("MAX_CONTENT_BYTES", "7");
        let config = Config::new("postgres://db");
        assert_eq!(config.kafka.brokers, None);
        assert_eq!(config.max_content_bytes, command_api::config::DEFAULT_MAX_CONTENT_BYTES);
        assert_eq!(config.database_url, "postgres://db");
    }
}
