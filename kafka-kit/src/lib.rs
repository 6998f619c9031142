//! The Kafka toolkit of the services that talk to the broker (the query API and accounts do
//! not, and do not link librdkafka): client and topic settings ([`kafka`]), publishing one event
//! or a batch in one transaction ([`atomic_publisher`]), consuming as a group member
//! ([`group_member`]) and saying which partitions are held ([`held_partitions`]), trace context
//! in record headers ([`trace_headers`]), consumer lag ([`consumer_lag`]), looking at the
//! cluster for operators ([`inspect`], [`topic_identity`]), and librdkafka's mock cluster for
//! the one-process mode ([`embedded_broker`]).

pub mod atomic_publisher;
pub mod consumer_lag;
pub mod embedded_broker;
pub mod group_member;
pub mod held_partitions;
pub mod inspect;
pub mod kafka;
pub mod topic_identity;
pub mod trace_headers;
