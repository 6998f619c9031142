//! The in-memory broker stays available as an explicit choice (`--embedded-broker`): the whole
//! path works on it, over TCP, with no Java anywhere.

mod support;

use content_processor::Broker;
use reqwest::StatusCode;
use support::{TestDb, TestSystem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_runs_on_the_embedded_broker_when_asked_to() {
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.embedded_broker = true;
    config.kafka_dist = None;
    let system = TestSystem::start_with(db, config).await;
    assert!(matches!(system.running.broker(), Broker::Embedded(_)));

    let (status, accepted) = system.submit("judged in memory 1").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let verdict = system.wait_for_verdict(accepted["id"].as_str().unwrap()).await;
    assert_eq!(verdict["status"], "PASSED");

    // Batches too: the mock accepts Kafka transactions (it cannot hide an aborted one, which
    // ARCHITECTURE.md says).
    let response = system
        .http
        .post(system.url("/api/batches"))
        .json(&serde_json::json!({"items": [{"content": "in memory 1234567"}, {"content": "short"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let batch = support::eventually("the batch is judged", || async {
        let (status, batch) = system.get_json(&location).await;
        (status == StatusCode::OK && batch["complete"] == true).then_some(batch)
    })
    .await;
    assert_eq!(batch["counts"], serde_json::json!({"pending": 0, "processing": 0, "passed": 1, "failed": 1}));
    system.stop().await;
}

#[tokio::test]
async fn without_a_broker_to_use_the_one_process_mode_says_what_to_give_it() {
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.kafka_dist = None;
    let error = match content_processor::start(config, Default::default()).await {
        Ok(_) => panic!("nothing to run Kafka with"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("--kafka-brokers") && error.contains("--kafka-dist") && error.contains("--embedded-broker"), "{error}");
    db.drop_database().await;
}
