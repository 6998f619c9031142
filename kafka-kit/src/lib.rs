//! The Kafka toolkit of the services that talk to the broker (the query API and accounts do
//! not, and do not link librdkafka): connection and client settings ([`settings`]), the topic
//! and what the cluster knows of it ([`topics`]), publishing events ([`publisher`]) or a batch
//! in one transaction ([`atomic_publisher`]) through a producer that resolves each send
//! ([`async_producer`]), consuming as a group member
//! ([`group_member`]) and saying which partitions are held ([`held_partitions`]), trace context
//! in record headers ([`trace_headers`]), consumer lag ([`consumer_lag`]), looking at the
//! cluster for operators ([`inspect`], [`topic_identity`]), and librdkafka's mock cluster for
//! the one-process mode ([`embedded_broker`]).

pub mod async_producer;
pub mod atomic_publisher;
pub mod consumer_lag;
pub mod embedded_broker;
pub mod group_member;
pub mod held_partitions;
pub mod inspect;
pub mod partitioner;
pub mod publisher;
pub mod settings;
pub mod topic_identity;
pub mod topics;
pub mod trace_headers;

pub use async_producer::AsyncProducer;
pub use publisher::{DeadLetter, EventPublisher, Outgoing};
pub use settings::{KafkaArgs, KafkaSecurity, KafkaSetupError, SaslMechanism, SecurityProtocol};
pub use topics::topic_partition_count;
