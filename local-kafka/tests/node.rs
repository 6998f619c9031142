//! A real Apache Kafka node: it starts, logs to its file, keeps what it acknowledged across a
//! stop and a start on the same directory, and is gone once its cluster is dropped.

use std::time::Duration;

use local_kafka::{Cluster, ClusterConfig, Distribution, JvmProfile};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Two consecutive free ports (a durable node keeps its ports across restarts).
fn free_port_pair() -> u16 {
    loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

fn config(dir: &std::path::Path, base_port: u16) -> ClusterConfig {
    let mut config = ClusterConfig::new(dir, 1);
    config.base_port = Some(base_port);
    config.jvm = JvmProfile::FastStart;
    config.heap_mb = 384;
    config
}

fn pid_is_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_what_it_acknowledged_across_a_restart() {
    let dist = Distribution::of_source_tree().expect("the pinned Apache Kafka");
    let dir = std::env::temp_dir().join(format!("local-kafka-restart-{}", uuid::Uuid::new_v4().simple()));
    let port = free_port_pair();

    let mut cluster = Cluster::start(dist.clone(), config(&dir, port)).await.expect("node starts");
    assert_eq!(cluster.bootstrap_servers(), format!("127.0.0.1:{port}"));
    let admin: AdminClient<DefaultClientContext> = cluster.admin_client_config().create().unwrap();
    let topic = NewTopic::new("kept", 2, TopicReplication::Fixed(1));
    let created = admin.create_topics([&topic], &AdminOptions::new()).await.unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let producer: FutureProducer = cluster.admin_client_config().set("enable.idempotence", "true").set("acks", "all").create().unwrap();
    for i in 0..3 {
        let value = format!("record {i}");
        producer.send(FutureRecord::to("kept").key("k").payload(&value), Duration::from_secs(10)).await.expect("acknowledged");
    }
    drop(producer);
    drop(admin);
    let log = cluster.server_log(1).unwrap();
    let pid = cluster.pid(1).unwrap();
    cluster.stop().await;
    assert!(!pid_is_alive(pid), "the node stopped");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("Kafka Server started"), "the broker logs to {}", log.display());

    let cluster = Cluster::start(dist, config(&dir, port)).await.expect("node starts again");
    let consumer: BaseConsumer = cluster.admin_client_config().create().unwrap();
    let kept: i64 = (0..2)
        .map(|p| {
            let (low, high) = consumer.fetch_watermarks("kept", p, Duration::from_secs(10)).unwrap();
            high - low
        })
        .sum();
    assert_eq!(kept, 3, "every acknowledged record is still in the log");

    let pid = cluster.pid(1).unwrap();
    drop(consumer);
    drop(cluster);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pid_is_alive(pid), "dropping the cluster kills its node");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_node_that_cannot_listen_says_why() {
    let dist = Distribution::of_source_tree().expect("the pinned Apache Kafka");
    let dir = std::env::temp_dir().join(format!("local-kafka-busy-{}", uuid::Uuid::new_v4().simple()));
    let port = free_port_pair();
    let _taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let error = match Cluster::start(dist, config(&dir, port)).await {
        Ok(_) => panic!("a node cannot start on a port in use"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("exited during start-up") && error.contains("Address already in use"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}
