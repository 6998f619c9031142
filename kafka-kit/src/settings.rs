//! Kafka connection settings, configured once for every service: the flags, the security of
//! the connection, and the producer and consumer settings every client starts from.
//!
//! Producers are idempotent with `acks=all`: a record counts as written only when every
//! in-sync replica has it, and a retried send never duplicates it in the log. Records are keyed
//! by submission id and partitioned with murmur2, as Java clients do, so one submission's events
//! stay in order on one partition whoever produces them.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use service_kit::secret::Secret;

use crate::async_producer::AsyncProducer;

/// Where the event log lives. Every service takes these flags (or the environment variables).
#[derive(clap::Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma separated (default: localhost:9092; the one-process mode
    /// starts a broker of its own when none is given).
    #[arg(long = "kafka-brokers", env = "KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// The topic holding every submission event.
    #[arg(long = "kafka-topic", env = "KAFKA_TOPIC", default_value = "submission-events")]
    pub topic: String,
    /// Partitions to create the topic with when it is missing (the unit of parallelism).
    #[arg(long = "kafka-partitions", env = "KAFKA_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,
    /// Replication factor to create the topic with when it is missing.
    #[arg(long = "kafka-replication-factor", env = "KAFKA_REPLICATION_FACTOR", default_value_t = 1)]
    pub replication_factor: i32,
    /// Where records the projector cannot use go, with the reason (default: TOPIC.dead-letter).
    #[arg(long = "kafka-dead-letter-topic", env = "KAFKA_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,
    /// Consumer group session timeout: how long a silent group member keeps its partitions.
    #[arg(long = "kafka-session-timeout-ms", env = "KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub session_timeout_ms: u32,
    /// How long a validator's or projector's fetch waits for 16 KiB of records before it returns
    /// with fewer: below about 1,000 submissions a second, how late each hop of a verdict may
    /// be; while idle, how often each asks the broker. Shorter serves a lone user sooner and
    /// costs an idle deployment more (BENCHMARKS.md, "Producers wait for librdkafka's signal").
    /// At most 9 s: a fetch must be answered well within the clients' 10 s socket timeout.
    #[arg(long = "kafka-fetch-wait-ms", env = "KAFKA_FETCH_WAIT_MS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=9_000))]
    pub fetch_wait_ms: u32,
    /// `min.insync.replicas` of the topic when it is created here (the broker's default when
    /// unset): with `acks=all`, a write is acknowledged only once this many replicas have it, and
    /// refused while fewer are in sync.
    #[arg(long = "kafka-min-insync-replicas", env = "KAFKA_MIN_INSYNC_REPLICAS")]
    pub min_insync_replicas: Option<i32>,
    #[command(flatten)]
    pub security: KafkaSecurity,
}

/// How clients authenticate to the brokers and protect the connection (a managed Kafka needs
/// TLS and SASL). Handed to librdkafka as they are.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KafkaSecurity {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    #[arg(long = "kafka-security-protocol", env = "KAFKA_SECURITY_PROTOCOL", value_enum, default_value_t)]
    pub protocol: SecurityProtocol,
    /// SASL mechanism for the `sasl_*` protocols.
    #[arg(long = "kafka-sasl-mechanism", env = "KAFKA_SASL_MECHANISM", value_enum, default_value_t)]
    pub sasl_mechanism: SaslMechanism,
    #[arg(long = "kafka-sasl-username", env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// Better given in the environment than on the command line, where `ps` shows it.
    #[arg(long = "kafka-sasl-password", env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub sasl_password: Option<Secret>,
    /// PEM file of the CA certificates that sign the brokers' (default: the system's).
    #[arg(long = "kafka-ssl-ca-location", env = "KAFKA_SSL_CA_LOCATION")]
    pub ssl_ca_location: Option<std::path::PathBuf>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SaslMechanism {
    #[default]
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SecurityProtocol {
    fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
}

impl SaslMechanism {
    fn as_librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl KafkaSecurity {
    /// Sets these on a librdkafka configuration.
    pub fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol.as_librdkafka());
        if matches!(self.protocol, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl) {
            config.set("sasl.mechanism", self.sasl_mechanism.as_librdkafka());
            if let Some(username) = &self.sasl_username {
                config.set("sasl.username", username);
            }
            if let Some(password) = &self.sasl_password {
                config.set("sasl.password", password.expose());
            }
        }
        if let Some(ca) = &self.ssl_ca_location {
            config.set("ssl.ca.location", ca.display().to_string());
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("cannot create a Kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot create topic {topic}: {source}")]
    CreateTopic { topic: String, source: KafkaError },
    #[error("topic {topic} is not visible after creating it: {source}")]
    TopicMissing { topic: String, source: KafkaError },
    #[error("Kafka at {brokers} refused the connection: {reason} (check the KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_* settings)")]
    Refused { brokers: String, reason: String },
    #[error("Kafka at {brokers} did not answer: {source}")]
    Unreachable { brokers: String, source: KafkaError },
}

impl KafkaArgs {
    /// Settings for a broker at `brokers` with every other value at its default.
    pub fn for_brokers(brokers: impl Into<String>) -> Self {
        KafkaArgs {
            brokers: Some(brokers.into()),
            topic: "submission-events".into(),
            partitions: 6,
            replication_factor: 1,
            dead_letter_topic: None,
            session_timeout_ms: 10_000,
            fetch_wait_ms: 100,
            min_insync_replicas: None,
            security: KafkaSecurity::default(),
        }
    }

    /// `bootstrap.servers`: the configured brokers, or a broker on this machine's default port.
    pub fn bootstrap_servers(&self) -> &str {
        self.brokers.as_deref().unwrap_or("localhost:9092")
    }

    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter_topic.clone().unwrap_or_else(|| format!("{}.dead-letter", self.topic))
    }

    pub(crate) fn base_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap_servers())
            // Reconnect quickly once a broker is back, instead of backing off for 10 s.
            .set("reconnect.backoff.max.ms", "1000")
            // A request the broker never answers (lost when it went down) is given up after 10 s,
            // not the default 60 s: a consumer group stuck on one recovers quickly.
            .set("socket.timeout.ms", "10000")
            // Partitions added to the topic are known within 10 s, not the default 5 minutes:
            // the validator group spreads over them, and a validator can write a verdict to the
            // new partition its submission was created on.
            .set("topic.metadata.refresh.interval.ms", "10000");
        self.security.apply(&mut config);
        config
    }

    /// An idempotent `acks=all` producer whose deliveries fail after `delivery_timeout`
    /// instead of waiting forever for an unreachable broker.
    pub fn producer(&self, delivery_timeout: Duration) -> Result<AsyncProducer, KafkaSetupError> {
        AsyncProducer::create(&self.producer_config(delivery_timeout)).map_err(KafkaSetupError::Client)
    }

    /// Checks the settings a producer would be given, without making one: a component that makes
    /// its producer only when it needs one still refuses a bad setting at start.
    pub fn check_producer_settings(&self) -> Result<(), KafkaSetupError> {
        self.producer_config(Duration::from_secs(10)).create_native_config().map(drop).map_err(KafkaSetupError::Client)
    }

    pub(crate) fn producer_config(&self, delivery_timeout: Duration) -> ClientConfig {
        let timeout_ms = delivery_timeout.as_millis().max(1).to_string();
        let mut config = self.base_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", &timeout_ms)
            .set("linger.ms", "2");
        config
    }

    /// Consumer settings shared by the validator, the notifier and the projector: offsets are
    /// stored by hand, only after the work they cover is durable, and committed from there once
    /// a second ([`crate::group_member::commit_progress`]).
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut config = self.base_config();
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Never a record of an aborted or still open transaction: a batch of submissions
            // is read entirely or not at all (librdkafka's default, stated here because
            // batches depend on it).
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            // A fetch returns once 16 KiB are there, or after `fetch_wait_ms`. With the defaults
            // (1 byte) a consumer that keeps up re-fetches for every record or two, and on Apache
            // Kafka those requests, not the records, take most of the broker's CPU (BENCHMARKS.md,
            // "Made fast on Apache Kafka"); each fetch is also a batch the validator and the
            // projector pay for in statements and produce requests (4 KiB: 0.93 ms of CPU per
            // submission at 1,000/s, 16 KiB: 0.71 ms; "Fewer producers, larger fetches").
            // From about 1,000 submissions a second the 16 KiB come first; below that the wait
            // decides how late a hop is, and while idle how often the broker is asked.
            .set("fetch.wait.max.ms", self.fetch_wait_ms.to_string())
            .set("fetch.min.bytes", "16384")
            // Statistics every 5 s: the consumer lag the metrics report.
            .set("statistics.interval.ms", "5000");
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(protocol: SecurityProtocol) -> KafkaSecurity {
        KafkaSecurity {
            protocol,
            sasl_mechanism: SaslMechanism::ScramSha512,
            sasl_username: Some("svc".into()),
            sasl_password: Some("s3cret".to_owned().into()),
            ssl_ca_location: Some("/etc/ca.pem".into()),
        }
    }

    /// The fetch wait trades a lone user's latency for an idle deployment's CPU: the operator's
    /// choice reaches the consumers, and a wait of 0 (a consumer re-fetching without pause) is
    /// refused with the reason.
    #[test]
    fn consumers_wait_for_records_as_long_as_the_flag_says() {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            kafka: KafkaArgs,
        }
        let wait = |args: &[&str]| {
            let flags = <Flags as clap::Parser>::try_parse_from(std::iter::once("service").chain(args.iter().copied())).map_err(|e| e.to_string())?;
            Ok::<_, String>(flags.kafka.consumer_config("group").get("fetch.wait.max.ms").map(str::to_owned))
        };
        // The default as declared, whatever KAFKA_FETCH_WAIT_MS this test runs with.
        let command = <Flags as clap::CommandFactory>::command();
        let declared = command.get_arguments().find(|argument| argument.get_id() == "fetch_wait_ms").unwrap().get_default_values().to_vec();
        assert_eq!(declared, ["100"]);
        assert_eq!(KafkaArgs::for_brokers("b:9092").consumer_config("group").get("fetch.wait.max.ms"), Some("100"));
        assert_eq!(wait(&["--kafka-fetch-wait-ms", "25"]), Ok(Some("25".to_owned())));
        let refused = wait(&["--kafka-fetch-wait-ms", "0"]).unwrap_err();
        assert!(refused.contains("--kafka-fetch-wait-ms") && refused.contains("0 is not in 1..=9000"), "{refused}");
    }

    #[test]
    fn sasl_settings_reach_librdkafka_only_for_sasl_protocols() {
        let mut config = ClientConfig::new();
        security(SecurityProtocol::SaslSsl).apply(&mut config);
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("svc"));
        assert_eq!(config.get("sasl.password"), Some("s3cret"));
        assert_eq!(config.get("ssl.ca.location"), Some("/etc/ca.pem"));

        let mut config = ClientConfig::new();
        security(SecurityProtocol::Ssl).apply(&mut config);
        assert_eq!(config.get("security.protocol"), Some("ssl"));
        assert_eq!(config.get("sasl.password"), None);
        assert_eq!(config.get("ssl.ca.location"), Some("/etc/ca.pem"));
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let kafka = KafkaArgs { security: security(SecurityProtocol::SaslSsl), ..KafkaArgs::for_brokers("b:9092") };
        let shown = format!("{kafka:?}");
        assert!(!shown.contains("s3cret") && shown.contains("Secret(..)"), "{shown}");
    }

    #[test]
    fn the_security_flags_parse_as_the_readme_documents_them() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            kafka: KafkaArgs,
        }
        let cli = Cli::parse_from([
            "x",
            "--kafka-security-protocol",
            "sasl_plaintext",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-256",
            "--kafka-min-insync-replicas",
            "2",
        ]);
        assert_eq!(cli.kafka.security.protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(cli.kafka.security.sasl_mechanism, SaslMechanism::ScramSha256);
        assert_eq!(cli.kafka.min_insync_replicas, Some(2));
    }
}
