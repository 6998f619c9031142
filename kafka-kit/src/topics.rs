//! The topic and what the cluster knows of it: created when missing (saying why when the
//! cluster cannot be reached or refuses the credentials), its partition count, identity and
//! partitions' bounds. librdkafka's blocking calls run off the async workers.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;

use crate::{KafkaArgs, KafkaSetupError};

impl KafkaArgs {
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

impl KafkaArgs {
    /// A client kept open to read the submission topic's ends on demand.
    pub fn log_ends(&self) -> Result<LogEnds, KafkaError> {
        let mut config = self.base_config();
        // The high watermark, not the last stable offset: a transaction's records are
        // acknowledged, and their position handed out, before its commit markers are written.
        config.set("isolation.level", "read_uncommitted");
        Ok(LogEnds { consumer: std::sync::Arc::new(config.create()?), topic: self.topic.clone() })
    }
}

/// Reads where each partition of the submission topic ends, over one connection kept for it.
pub struct LogEnds {
    consumer: std::sync::Arc<rdkafka::consumer::BaseConsumer>,
    topic: String,
}

impl LogEnds {
    /// The next offset (high watermark) of every partition, in partition order, as the
    /// partitions' leaders report them now.
    pub async fn read(&self) -> Result<Vec<i64>, KafkaError> {
        let (consumer, topic) = (self.consumer.clone(), self.topic.clone());
        blocking(move || Ok(bounds(&consumer, &topic)?.into_values().map(|(_, high)| high).collect())).await
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
