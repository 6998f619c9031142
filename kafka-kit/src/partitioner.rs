//! Which partition a keyed record lands on, computed as the producers' partitioner does
//! (`murmur2_random`, the Java client's default), so that a producer can choose a key for a
//! partition instead of choosing the partition and breaking "one key, one partition".

/// The partition of `key` among `partitions`: murmur2 with Kafka's seed, made positive,
/// modulo the count.
pub fn partition_of(key: &[u8], partitions: i32) -> i32 {
    let count = u32::try_from(partitions).unwrap_or(0).max(1);
    let positive = murmur2::murmur2(key, murmur2::KAFKA_SEED) & 0x7fff_ffff;
    // Below `count`, which fits an i32.
    (positive % count) as i32
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::producer::FutureRecord;

    use super::*;

    /// The hash must be the one librdkafka uses, or keys chosen for a partition land elsewhere:
    /// every key here is produced without a partition and must land where it is predicted.
    #[tokio::test]
    async fn predicts_where_the_producer_puts_a_keyed_record() {
        let partitions = 6;
        let (_broker, kafka) = crate::embedded_broker::for_test(partitions);
        let producer = kafka.producer(Duration::from_secs(10)).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..60 {
            let key = format!("{:08x}-key-{i}", i * 7919);
            let delivery = producer.send(FutureRecord::<String, [u8]>::to(&kafka.topic).key(&key).payload(&[])).await.unwrap();
            assert_eq!(delivery.partition, partition_of(key.as_bytes(), partitions), "key {key}");
            seen.insert(delivery.partition);
        }
        assert_eq!(seen.len(), partitions as usize, "the keys should have spread over every partition");
    }

    #[test]
    fn matches_the_java_clients_hash() {
        // Values from Kafka's own test of `Utils.murmur2`, made positive, then modulo.
        for (key, java) in [(&b"21"[..], -973932308i32), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536), (b"abc", 479470107)] {
            assert_eq!(partition_of(key, 1000), (java & 0x7fff_ffff) % 1000, "{}", String::from_utf8_lossy(key));
        }
    }
}
