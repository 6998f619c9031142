//! Which topic is behind a name: Kafka's topic id and the partition count.
//!
//! A topic deleted and created again under the same name has a new id. Positions stored for
//! the old one mean nothing in the new one, even where its offsets have grown past them, so a
//! consumer that keeps its own positions compares ids before resuming. rdkafka does not wrap
//! the `DescribeTopics` admin call that reports the id; this module calls librdkafka directly.

use std::ffi::{CStr, CString};
use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka_sys as ffi;

/// What a topic is right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicIdentity {
    /// Kafka's topic id (base64, as Kafka's tools print it); `None` where the broker reports
    /// none (librdkafka's mock cluster).
    pub id: Option<String>,
    pub partitions: i32,
}

/// Describes `topic` (blocking, at most `timeout`).
pub fn describe<C: ClientContext>(client: &Client<C>, topic: &str, timeout: Duration) -> Result<TopicIdentity, KafkaError> {
    let name = CString::new(topic).map_err(|_| KafkaError::MetadataFetch(RDKafkaErrorCode::InvalidTopic))?;
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: every pointer below comes from librdkafka and is used only while the object that
    // owns it (the event, the collection, the queue) is alive; each is destroyed exactly once.
    unsafe {
        let names = [name.as_ptr()];
        let collection = ffi::rd_kafka_TopicCollection_of_topic_names(names.as_ptr() as *mut _, 1);
        let queue = ffi::rd_kafka_queue_new(client.native_ptr());
        ffi::rd_kafka_DescribeTopics(client.native_ptr(), collection, std::ptr::null(), queue);
        let event = ffi::rd_kafka_queue_poll(queue, timeout_ms);
        let described = read_result(event);
        if !event.is_null() {
            ffi::rd_kafka_event_destroy(event);
        }
        ffi::rd_kafka_queue_destroy(queue);
        ffi::rd_kafka_TopicCollection_destroy(collection);
        described
    }
}

/// Reads the one topic description out of a `DescribeTopics` result event.
unsafe fn read_result(event: *mut ffi::rd_kafka_event_t) -> Result<TopicIdentity, KafkaError> {
    if event.is_null() {
        return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::RequestTimedOut));
    }
    let error = ffi::rd_kafka_event_error(event);
    if error != ffi::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(KafkaError::MetadataFetch(error.into()));
    }
    let result = ffi::rd_kafka_event_DescribeTopics_result(event);
    let mut count = 0;
    let topics = ffi::rd_kafka_DescribeTopics_result_topics(result, &mut count);
    if result.is_null() || topics.is_null() || count == 0 {
        return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition));
    }
    let description = *topics;
    let topic_error = ffi::rd_kafka_TopicDescription_error(description);
    if !topic_error.is_null() {
        let code = ffi::rd_kafka_error_code(topic_error);
        if code != ffi::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(KafkaError::MetadataFetch(code.into()));
        }
    }
    let mut partitions = 0;
    ffi::rd_kafka_TopicDescription_partitions(description, &mut partitions);
    let uuid = ffi::rd_kafka_TopicDescription_topic_id(description);
    let id = if uuid.is_null() || (ffi::rd_kafka_Uuid_most_significant_bits(uuid) == 0 && ffi::rd_kafka_Uuid_least_significant_bits(uuid) == 0) {
        None
    } else {
        let text = ffi::rd_kafka_Uuid_base64str(uuid);
        (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
    };
    Ok(TopicIdentity { id, partitions: i32::try_from(partitions).unwrap_or(i32::MAX) })
}
