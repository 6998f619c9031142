//! Consumer lag from librdkafka's statistics, as the metric
//! `content_processor_consumer_lag_records` (see README's metrics table).

/// Records, from librdkafka's statistics, how many records each assigned partition has that
/// `consumer` has not read yet: the end of the partition minus the next offset handed to it.
pub fn record_consumer_lag(consumer: &'static str, statistics: &rdkafka::Statistics) {
    for topic in statistics.topics.values() {
        for partition in topic.partitions.values() {
            // -1: not assigned here, or nothing known yet.
            if partition.partition < 0 || partition.hi_offset < 0 || partition.app_offset < 0 {
                continue;
            }
            let lag = (partition.hi_offset - partition.app_offset).max(0);
            metrics::gauge!("content_processor_consumer_lag_records", "consumer" => consumer, "partition" => partition.partition.to_string())
                .set(lag as f64);
        }
    }
}

/// A consumer context that only reports lag: for consumers that need no other callback.
pub struct LagReporter(pub &'static str);

impl rdkafka::ClientContext for LagReporter {
    fn stats(&self, statistics: rdkafka::Statistics) {
        record_consumer_lag(self.0, &statistics);
    }
}

impl rdkafka::consumer::ConsumerContext for LagReporter {}
