//! On SIGTERM every component stops taking new work, finishes or hands back what it holds,
//! commits its progress and exits with success.

mod support;

use std::time::Duration;

use kafka_kit::KafkaArgs;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use reqwest::StatusCode;
use support::process::{free_port, log_dir, Component};
use support::{eventually, TestDb, TestKafka};

const PARTITIONS: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_component_commits_its_progress_and_exits_cleanly_on_sigterm() {
    let logs = log_dir("sigterm");
    let broker = TestKafka::start(1, PARTITIONS).await;
    let db = TestDb::create().await;
    let brokers = broker.kafka.bootstrap_servers().to_owned();
    let (command_port, query_port) = (free_port(), free_port());
    let with_kafka = |extra: &[&str]| {
        let mut args = vec!["--kafka-brokers".to_owned(), brokers.clone(), "--kafka-partitions".to_owned(), PARTITIONS.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let mut components = [
        Component::new("command-api", with_kafka(&["--listen", &format!("127.0.0.1:{command_port}"), "--database-url", &db.url]), &logs),
        Component::new("validator", with_kafka(&["--database-url", &db.url]), &logs),
        Component::new("projector", with_kafka(&["--database-url", &db.url]), &logs),
        Component::new("query-api", vec!["--listen".into(), format!("127.0.0.1:{query_port}"), "--database-url".into(), db.url.clone()], &logs),
    ];
    for component in &mut components {
        component.start();
    }

    let http = support::admin_client(&db.url).await;
    let submit_url = format!("http://127.0.0.1:{command_port}/api/submissions");
    let mut ids = Vec::new();
    for i in 0..20 {
        let body = serde_json::json!({"content": format!("graceful {i:04}")});
        let response = eventually("the command API accepts", || async {
            http.post(&submit_url).json(&body).send().await.ok().filter(|r| r.status() == StatusCode::ACCEPTED)
        })
        .await;
        let accepted: serde_json::Value = response.json().await.unwrap();
        ids.push(accepted["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        eventually("the verdict is served", || async {
            let response = http.get(format!("http://127.0.0.1:{query_port}/api/submissions/{id}")).send().await.ok()?;
            let body: serde_json::Value = response.json().await.ok()?;
            (body["status"] == "PASSED").then_some(())
        })
        .await;
    }

    for component in &mut components {
        let status = component.terminate(Duration::from_secs(20)).await;
        assert!(status.success(), "{} exited with {status}", component.role);
    }

    let kafka = broker.kafka.clone();
    let ends = support::partition_ends(&kafka).await;
    // The validator committed everything it judged: its group's offsets are past every
    // SubmissionCreated (its own later output may or may not have been read before the stop).
    let committed = committed_offsets(&kafka, "validator");
    let last_created = last_created_offsets(&kafka);
    for partition in 0..PARTITIONS {
        let needed = last_created.get(&partition).map_or(0, |offset| offset + 1);
        assert!(committed[partition as usize] >= needed, "partition {partition}: committed {committed:?}, needed {needed}");
    }
    // The projector committed its positions to the end of the topic.
    let pool = db.pool().await;
    let positions: Vec<(i32, i64)> =
        sqlx::query_as("SELECT partition, next_offset FROM projector_positions ORDER BY partition").fetch_all(&pool).await.unwrap();
    assert_eq!(positions, ends);
    pool.close().await;
    db.drop_database().await;
    broker.stop().await;
}

fn committed_offsets(kafka: &KafkaArgs, group: &str) -> Vec<i64> {
    let consumer: BaseConsumer = kafka.consumer_config(group).create().unwrap();
    let mut partitions = TopicPartitionList::new();
    for partition in 0..kafka.partitions {
        partitions.add_partition(&kafka.topic, partition);
    }
    let committed = consumer.committed_offsets(partitions, Duration::from_secs(10)).unwrap();
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(offset) => offset,
            _ => 0,
        })
        .collect()
}

fn last_created_offsets(kafka: &KafkaArgs) -> std::collections::HashMap<i32, i64> {
    let mut last = std::collections::HashMap::new();
    for record in support::read_topic(kafka, &kafka.topic) {
        let envelope = domain::Envelope::decode(record.value.as_deref().unwrap()).unwrap();
        if matches!(envelope.event, domain::Event::SubmissionCreated { .. }) {
            last.insert(record.partition, record.offset);
        }
    }
    last
}
