//! Kafka connection settings and clients, configured once for every service.
//!
//! Producers are idempotent with `acks=all`: a record counts as written only when every
//! in-sync replica has it, and a retried send never duplicates it in the log. Records are keyed
//! by submission id and partitioned with murmur2, as Java clients do, so one submission's events
//! stay in order on one partition whoever produces them.

use std::sync::Mutex;
use std::time::Duration;

use domain::{Envelope, Position};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use service_kit::secret::Secret;

/// How long to wait for room when the producer's local queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

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
    pub fn producer(&self, delivery_timeout: Duration) -> Result<FutureProducer, KafkaSetupError> {
        self.producer_config(delivery_timeout).create().map_err(KafkaSetupError::Client)
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

    /// Consumer settings shared by the validator and the projector: offsets are committed
    /// (or stored) by hand, only after the work they cover is durable.
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut config = self.base_config();
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Never a record of an aborted or still open transaction: a batch of submissions
            // is read entirely or not at all (librdkafka's default, stated here because
            // batches depend on it).
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            // A fetch returns once 4 KiB are there, or after 25 ms. With the defaults (1 byte) a
            // consumer that keeps up re-fetches for every record or two, and on Apache Kafka
            // those requests, not the records, took most of the broker's CPU: at 1,000
            // submissions/s on 2 cores POST-to-verdict p50 went from ~500 ms to ~40 ms with this
            // (BENCHMARKS.md). It costs at most 25 ms per hop when the log is nearly idle.
            .set("fetch.wait.max.ms", "25")
            .set("fetch.min.bytes", "4096")
            // Statistics every 5 s: the consumer lag the metrics report.
            .set("statistics.interval.ms", "5000");
        config
    }

    /// Creates the submission topic when it is missing and returns its partition count.
    pub async fn ensure_topic(&self) -> Result<i32, KafkaSetupError> {
        self.ensure_topic_named(&self.topic).await
    }

    /// Creates `topic` (with this configuration's partitions and replication) when missing.
    /// Fails at once, saying why, when the cluster cannot be reached or refuses the
    /// credentials: this runs first at every start.
    pub async fn ensure_topic_named(&self, topic: &str) -> Result<i32, KafkaSetupError> {
        match self.partition_count(topic).await {
            Ok(count) => return Ok(count),
            Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err(source) => return Err(self.connection_error(source).await),
        }
        let admin: AdminClient<DefaultClientContext> = self.base_config().create().map_err(KafkaSetupError::Client)?;
        // An event log must never expire: the read model is rebuilt from its whole history.
        let mut new_topic = NewTopic::new(topic, self.partitions, TopicReplication::Fixed(self.replication_factor))
            .set("retention.ms", "-1")
            .set("retention.bytes", "-1");
        let min_insync = self.min_insync_replicas.map(|n| n.to_string());
        if let Some(min_insync) = &min_insync {
            new_topic = new_topic.set("min.insync.replicas", min_insync);
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results =
            admin.create_topics([&new_topic], &options).await.map_err(|source| KafkaSetupError::CreateTopic { topic: topic.to_owned(), source })?;
        for result in results {
            match result {
                Ok(_) => tracing::info!(topic, partitions = self.partitions, replication = self.replication_factor, "created topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(KafkaSetupError::CreateTopic { topic: topic.to_owned(), source: KafkaError::AdminOp(code) }),
            }
        }
        // Brokers learn of a new topic from the controller a moment after it is created.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.partition_count(topic).await {
                Ok(count) => return Ok(count),
                Err(source) if tokio::time::Instant::now() >= deadline => {
                    return Err(KafkaSetupError::TopicMissing { topic: topic.to_owned(), source })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Why the cluster did not answer: librdkafka reports refused credentials and failed TLS
    /// handshakes only to a client's error callback, while its requests just time out.
    async fn connection_error(&self, source: KafkaError) -> KafkaSetupError {
        let config = self.base_config();
        let refused = blocking(move || {
            // A producer connects at once, and its poll serves the error callback.
            let producer: rdkafka::producer::BaseProducer<RefusalRecorder> = config.create_with_context(RefusalRecorder::default())?;
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                producer.poll(Duration::from_millis(100));
                if let Some(reason) = producer.context().refusal.lock().ok().and_then(|r| r.clone()) {
                    return Ok(Some(reason));
                }
            }
            Ok(None)
        })
        .await;
        let brokers = self.bootstrap_servers().to_owned();
        match refused {
            Ok(Some(reason)) => KafkaSetupError::Refused { brokers, reason },
            _ => KafkaSetupError::Unreachable { brokers, source },
        }
    }

    /// `topic`'s partition count as the cluster reports it now.
    pub async fn partition_count(&self, topic: &str) -> Result<i32, KafkaError> {
        let config = self.base_config();
        let topic = topic.to_owned();
        blocking(move || {
            let consumer: rdkafka::consumer::BaseConsumer = config.create()?;
            topic_partition_count(consumer.client(), &topic, Duration::from_secs(5))
        })
        .await
    }
}

/// Keeps the first authentication or TLS failure librdkafka reports.
#[derive(Default)]
struct RefusalRecorder {
    refusal: Mutex<Option<String>>,
}

impl ClientContext for RefusalRecorder {
    fn error(&self, error: KafkaError, reason: &str) {
        let refused = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::SSL)
        );
        if refused {
            if let Ok(mut slot) = self.refusal.lock() {
                slot.get_or_insert_with(|| reason.to_owned());
            }
        }
    }
}

impl rdkafka::producer::ProducerContext for RefusalRecorder {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}

impl KafkaArgs {
    /// The submission topic's id and partition count, as the cluster reports them now.
    pub async fn topic_identity(&self) -> Result<crate::topic_identity::TopicIdentity, KafkaError> {
        let config = self.base_config();
        let topic = self.topic.clone();
        blocking(move || {
            let consumer: rdkafka::consumer::BaseConsumer = config.create()?;
            crate::topic_identity::describe(consumer.client(), &topic, Duration::from_secs(5))
        })
        .await
    }

    /// The first and next offset (low and high watermark) of every partition of the topic.
    pub async fn partition_bounds(&self) -> Result<std::collections::BTreeMap<i32, (i64, i64)>, KafkaError> {
        let config = self.base_config();
        let topic = self.topic.clone();
        blocking(move || bounds(&config.create()?, &topic)).await
    }
}

/// The low and high watermarks of every partition of `topic` (blocking).
pub(crate) fn bounds(consumer: &rdkafka::consumer::BaseConsumer, topic: &str) -> Result<std::collections::BTreeMap<i32, (i64, i64)>, KafkaError> {
    let partitions = topic_partition_count(consumer.client(), topic, Duration::from_secs(5))?;
    (0..partitions).map(|p| Ok((p, watermarks(consumer, topic, p)?))).collect()
}

/// How long a partition may go without a leader (a broker just restarted, a leader moving)
/// before reading its offsets fails.
const LEADERLESS_PATIENCE: Duration = Duration::from_secs(30);

/// A partition's low and high watermarks (blocking). Right after a broker starts, a partition
/// may not have its leader yet; that passes, so it is waited out rather than reported.
fn watermarks(consumer: &rdkafka::consumer::BaseConsumer, topic: &str, partition: i32) -> Result<(i64, i64), KafkaError> {
    let deadline = std::time::Instant::now() + LEADERLESS_PATIENCE;
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
            Err(KafkaError::MetadataFetch(RDKafkaErrorCode::NotLeaderForPartition | RDKafkaErrorCode::LeaderNotAvailable))
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            outcome => return outcome,
        }
    }
}

/// Reads the partition count of `topic` from cluster metadata (blocking).
pub fn topic_partition_count<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<i32, KafkaError> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len() as i32),
        Some(t) => Err(KafkaError::MetadataFetch(t.error().map(RDKafkaErrorCode::from).unwrap_or(RDKafkaErrorCode::UnknownTopicOrPartition))),
        None => Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition)),
    }
}

/// Runs a blocking librdkafka call off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(call: impl FnOnce() -> Result<T, KafkaError> + Send + 'static) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(call).await.unwrap_or(Err(KafkaError::Canceled))
}

/// A record that could not be used, with where it was and why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub reason: String,
}

/// Counts an event Kafka acknowledged, by type.
pub(crate) fn event_produced(envelope: &Envelope) {
    metrics::counter!("content_processor_events_produced_total", "type" => envelope.event.type_name()).increment(1);
}

/// Hands one record to `producer`, waiting while its queue is full: unlike concurrent `send`s
/// retrying on their own, records enqueued one after another keep their order.
pub(crate) async fn enqueue(producer: &FutureProducer, mut record: FutureRecord<'_, String, Vec<u8>>) -> Result<DeliveryFuture, KafkaError> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                tokio::time::sleep(QUEUE_FULL_WAIT).await;
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// An event for [`EventPublisher::publish_all`]: where it goes, and the span whose trace it
/// continues (the current span when `None`).
pub struct Outgoing<'a> {
    pub envelope: &'a Envelope,
    /// The partition; where the key hashes to when `None`.
    pub partition: Option<i32>,
    pub trace: Option<&'a tracing::Span>,
}

impl<'a> From<&'a Envelope> for Outgoing<'a> {
    fn from(envelope: &'a Envelope) -> Self {
        Outgoing { envelope, partition: None, trace: None }
    }
}

/// Appends events to the submission topic and waits for the broker's acknowledgement.
#[derive(Clone)]
pub struct EventPublisher {
    producer: FutureProducer,
    topic: String,
}

impl EventPublisher {
    pub fn new(kafka: &KafkaArgs, delivery_timeout: Duration) -> Result<Self, KafkaSetupError> {
        Ok(EventPublisher { producer: kafka.producer(delivery_timeout)?, topic: kafka.topic.clone() })
    }

    /// Resolves once Kafka has durably stored the event (acks=all), or with the reason it will
    /// not: the broker did not acknowledge within the delivery timeout, or refused the record.
    pub async fn publish(&self, envelope: &Envelope) -> Result<Position, KafkaError> {
        let key = envelope.key();
        let payload = envelope.encode();
        let record =
            FutureRecord::to(&self.topic).key(&key).payload(&payload).headers(crate::trace_headers::record_headers(&tracing::Span::current()));
        // Timeout::Never only concerns a full local queue; delivery itself is bounded by
        // message.timeout.ms, after which the send resolves with an error.
        match self.producer.send(record, Timeout::Never).await {
            Ok(delivery) => {
                event_produced(envelope);
                Ok(Position { partition: delivery.partition, offset: delivery.offset })
            }
            Err((error, _)) => Err(error),
        }
    }

    /// Parks a record the projector cannot use on the dead-letter topic: its original key and
    /// value, with the reason and where it came from in headers. Resolves once acknowledged.
    pub async fn publish_dead_letter(&self, topic: &str, letter: &DeadLetter) -> Result<(), KafkaError> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "dead-letter.reason", value: Some(letter.reason.as_str()) })
            .insert(Header { key: "dead-letter.topic", value: Some(letter.topic.as_str()) })
            .insert(Header { key: "dead-letter.partition", value: Some(partition.as_str()) })
            .insert(Header { key: "dead-letter.offset", value: Some(offset.as_str()) });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &letter.value {
            record = record.payload(value.as_slice());
        }
        self.producer.send(record, Timeout::Never).await.map_err(|(error, _)| error)?;
        metrics::counter!("content_processor_dead_letters_total").increment(1);
        Ok(())
    }

    /// Publishes several events, each to the partition given with it (by key when `None`), and
    /// waits for every acknowledgement. Records are handed to the producer strictly in the
    /// order given, waiting for room when its queue is full, and the idempotent producer keeps
    /// that order within a partition: the events of one submission land in the order given.
    pub async fn publish_all<'a>(&self, events: impl IntoIterator<Item = Outgoing<'a>>) -> Result<(), KafkaError> {
        let mut deliveries = Vec::new();
        let mut enqueued = Vec::new();
        for Outgoing { envelope, partition, trace } in events {
            enqueued.push(envelope);
            let key = envelope.key();
            let payload = envelope.encode();
            let headers = crate::trace_headers::record_headers(trace.unwrap_or(&tracing::Span::current()));
            let mut record = FutureRecord::to(&self.topic).key(&key).payload(&payload).headers(headers);
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            deliveries.push(self.enqueue(record).await?);
        }
        for (delivery, envelope) in deliveries.into_iter().zip(enqueued) {
            delivery.await.map_err(|_| KafkaError::Canceled)?.map_err(|(error, _)| error)?;
            event_produced(envelope);
        }
        Ok(())
    }

    async fn enqueue(&self, record: FutureRecord<'_, String, Vec<u8>>) -> Result<DeliveryFuture, KafkaError> {
        enqueue(&self.producer, record).await
    }

    /// Whether the cluster answers a metadata request for the topic in time.
    pub async fn probe(&self) -> Result<(), String> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        blocking(move || topic_partition_count(producer.client(), &topic, Duration::from_secs(2)).map(|_| ()))
            .await
            .map_err(|error| format!("kafka unreachable: {error}"))
    }

    /// Waits until everything queued is acknowledged or `timeout` passes (for shutdown).
    pub async fn flush(&self, timeout: Duration) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
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

    /// With room for one record in the producer's queue, every record after the first waits for
    /// a full queue: they must still land in the order given (a verdict never before its
    /// `ProcessingStarted`).
    #[tokio::test]
    async fn publish_all_keeps_the_order_given_when_the_queue_is_full() {
        use rdkafka::consumer::BaseConsumer;
        use rdkafka::{Message, Offset, TopicPartitionList};

        let mut kafka = KafkaArgs::for_brokers("");
        kafka.partitions = 1;
        let broker = crate::embedded_broker::EmbeddedBroker::start(&kafka).unwrap();
        kafka.brokers = Some(broker.bootstrap_servers());
        let producer = kafka.producer_config(Duration::from_secs(10)).set("queue.buffering.max.messages", "1").create().unwrap();
        let publisher = EventPublisher { producer, topic: kafka.topic.clone() };

        let events: Vec<Envelope> = (0..200)
            .map(|i| Envelope::new(domain::SubmissionId::from_u128(i), domain::Event::ProcessingStarted {}, chrono::Utc::now(), uuid::Uuid::nil()))
            .collect();
        publisher.publish_all(events.iter().map(|envelope| Outgoing { envelope, partition: Some(0), trace: None })).await.unwrap();

        let consumer: BaseConsumer = kafka.consumer_config("order-check").create().unwrap();
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&kafka.topic, 0, Offset::Beginning).unwrap();
        consumer.assign(&assignment).unwrap();
        let mut landed = Vec::new();
        while landed.len() < events.len() {
            let message = consumer.poll(Duration::from_secs(10)).expect("a record within 10 s").unwrap();
            landed.push(Envelope::decode(message.payload().unwrap()).unwrap().event_id);
        }
        let given: Vec<_> = events.iter().map(|event| event.event_id).collect();
        let first_out_of_order = landed.iter().zip(&given).position(|(landed, given)| landed != given);
        assert_eq!(first_out_of_order, None, "records landed out of the order given");
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
