//! librdkafka's mock cluster as an embedded broker: the real Kafka wire protocol over TCP on
//! 127.0.0.1, inside this process. It keeps events in memory only, and they are gone when the
//! process exits: good for trying the system and for tests, not for production.

use rdkafka::error::KafkaResult;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::KafkaArgs;

pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts a one-broker cluster on a random local port and creates the topics in `kafka`
    /// (the mock cluster does not serve the CreateTopics admin request).
    pub fn start(kafka: &KafkaArgs) -> KafkaResult<Self> {
        let cluster = MockCluster::new(1)?;
        cluster.create_topic(&kafka.topic, kafka.partitions, 1)?;
        cluster.create_topic(&kafka.dead_letter_topic(), kafka.partitions, 1)?;
        Ok(EmbeddedBroker { cluster })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// The underlying cluster, for fault injection in tests.
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}

/// For this crate's tests: a broker whose topics have `partitions`, and the settings that reach it.
#[cfg(test)]
pub(crate) fn for_test(partitions: i32) -> (EmbeddedBroker, KafkaArgs) {
    let mut kafka = KafkaArgs::for_brokers("");
    kafka.partitions = partitions;
    let broker = EmbeddedBroker::start(&kafka).expect("librdkafka's mock cluster starts");
    kafka.brokers = Some(broker.bootstrap_servers());
    (broker, kafka)
}
