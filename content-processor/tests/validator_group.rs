//! Validator instances in one consumer group split the partitions, and every submission ends
//! with exactly one verdict, in the read model and in the log.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use domain::{Envelope, Event};
use kafka_kit::KafkaArgs;
use reqwest::StatusCode;
use support::{eventually, TestDb, TestSystem};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_validators_split_the_partitions_and_each_submission_gets_one_verdict() {
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.validators = 0; // this test runs its own
    let system = TestSystem::start_with(db, config).await;

    let mut kafka = system.running.kafka.clone();
    kafka.session_timeout_ms = 6_000; // rebalances wait for the session timeout
    let mut validator_config = validator::Config::new(kafka.clone());
    validator_config.database_url = system.db.url.clone();
    let first = validator::Validator::start(&validator_config).await.unwrap();
    let second = validator::Validator::start(&validator_config).await.unwrap();
    let judged = [first.judged_counter(), second.judged_counter()];
    let (first_owns, second_owns) = (first.assignment_probe(), second.assignment_probe());
    let stop = CancellationToken::new();
    let tasks = [tokio::spawn(first.run(stop.clone())), tokio::spawn(second.run(stop.clone()))];

    let (a, b) = eventually("both validators own partitions", || async {
        let (a, b) = (first_owns(), second_owns());
        (!a.is_empty() && !b.is_empty() && a.len() + b.len() == kafka.partitions as usize).then_some((a, b))
    })
    .await;
    let union: HashSet<i32> = a.iter().chain(&b).copied().collect();
    assert_eq!(union, (0..kafka.partitions).collect(), "together they own every partition once: {a:?} {b:?}");

    let mut ids = Vec::new();
    for i in 0..60 {
        let (status, accepted) = system.submit(&format!("group member test {i}")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(accepted["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        assert_eq!(system.wait_for_verdict(id).await["status"], "PASSED");
        let (_, history) = system.get_json(&format!("/api/submissions/{id}/events")).await;
        let verdicts = history["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| matches!(e["event_type"].as_str(), Some("SubmissionPassed" | "SubmissionFailed")))
            .count();
        assert_eq!(verdicts, 1, "{id}: {history}");
    }
    let counts = judged.each_ref().map(|c| c.load(Ordering::Relaxed));
    assert!(counts.iter().all(|&c| c > 0), "both instances judged submissions: {counts:?}");

    // In the log itself: one verdict identity per submission, never two different verdicts.
    let mut verdicts: HashMap<uuid::Uuid, HashSet<(uuid::Uuid, &'static str)>> = HashMap::new();
    for envelope in read_whole_topic(&kafka) {
        if matches!(envelope.event, Event::SubmissionPassed {} | Event::SubmissionFailed { .. }) {
            verdicts.entry(envelope.submission_id).or_default().insert((envelope.event_id, envelope.event.type_name()));
        }
    }
    assert_eq!(verdicts.len(), ids.len());
    assert!(verdicts.values().all(|v| v.len() == 1), "{verdicts:?}");

    stop.cancel();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    system.stop().await;
}

/// Every event of the topic, from the beginning to the current end.
fn read_whole_topic(kafka: &KafkaArgs) -> Vec<Envelope> {
    support::read_topic(kafka, &kafka.topic).iter().map(|record| Envelope::decode(record.value.as_deref().unwrap()).unwrap()).collect()
}
