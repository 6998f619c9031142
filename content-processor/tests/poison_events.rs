//! A record that cannot be decoded, or that the fold refuses, goes to the dead-letter topic
//! with the reason and its original coordinates, and the pipeline carries on.

mod support;

use std::time::Duration;

use chrono::Utc;
use domain::{Envelope, Event, FailureReason};
use rdkafka::producer::FutureRecord;
use reqwest::StatusCode;
use support::{eventually, read_topic, TestSystem};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_and_the_pipeline_carries_on() {
    let system = TestSystem::start().await;
    let kafka = system.running.kafka.clone();

    let (status, accepted) = system.submit("already judged 1").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let judged: Uuid = accepted["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(system.wait_for_verdict(&judged.to_string()).await["status"], "PASSED");

    let passed_valid = r#"{"event_id":"c7b1e2d4-4d6d-5b8e-9d29-3f0a4c2c6a11","submission_id":"SUB","schema_version":1,"occurred_at":"2026-11-25T10:00:02Z","correlation_id":"5f3e2d1c-0b9a-4876-9543-210fedcba987","event_type":"SubmissionPassed","payload":{}}"#;
    let never_created = Uuid::new_v4();
    let contradiction =
        Envelope::new(judged, Event::SubmissionFailed { reasons: vec![FailureReason::NoDigit], char_count: None }, Utc::now(), Uuid::new_v4());
    let poison: Vec<(Uuid, Vec<u8>, &str)> = vec![
        (Uuid::new_v4(), b"this is not json".to_vec(), "undecodable"),
        (Uuid::new_v4(), passed_valid.replace("SubmissionPassed", "SubmissionExploded").into_bytes(), "undecodable"),
        (Uuid::new_v4(), passed_valid.replace("\"schema_version\":1", "\"schema_version\":0").into_bytes(), "undecodable"),
        (never_created, passed_valid.replace("SUB", &never_created.to_string()).into_bytes(), "refused by the fold"),
        (judged, contradiction.encode(), "refused by the fold"),
    ];
    let producer = kafka.producer(Duration::from_secs(5)).unwrap();
    let mut coordinates = Vec::new();
    for (key, value, _) in &poison {
        let key = key.to_string();
        let delivered = producer.send(FutureRecord::to(&kafka.topic).key(&key).payload(value)).await.expect("written to the topic");
        coordinates.push((delivered.partition, delivered.offset));
    }

    // The pipeline carries on past the poison.
    let (_, after) = system.submit("after the poison 7").await;
    assert_eq!(system.wait_for_verdict(after["id"].as_str().unwrap()).await["status"], "PASSED");
    // The verdict given stays.
    let (_, still) = system.get_json(&format!("/api/submissions/{judged}")).await;
    assert_eq!(still["status"], "PASSED");

    let dead_letters = eventually("every poison record is on the dead-letter topic", || async {
        let letters = read_topic(&kafka, &kafka.dead_letter_topic());
        (letters.len() >= poison.len()).then_some(letters)
    })
    .await;
    assert_eq!(dead_letters.len(), poison.len(), "each poison record parked once");
    for ((key, value, why), (partition, offset)) in poison.iter().zip(&coordinates) {
        let letter = dead_letters
            .iter()
            .find(|l| l.headers["dead-letter.partition"] == partition.to_string() && l.headers["dead-letter.offset"] == offset.to_string())
            .unwrap_or_else(|| panic!("no dead letter for {partition}/{offset}"));
        assert_eq!(letter.headers["dead-letter.topic"], kafka.topic);
        assert!(letter.headers["dead-letter.reason"].starts_with(why), "{}", letter.headers["dead-letter.reason"]);
        assert_eq!(letter.key.as_deref(), Some(key.to_string().as_bytes()));
        if *why == "undecodable" {
            assert_eq!(letter.value.as_deref(), Some(value.as_slice()), "original bytes kept");
        }
    }
    let (_, history) = system.get_json(&format!("/api/submissions/{judged}/events")).await;
    assert_eq!(history["events"].as_array().unwrap().len(), 3, "nothing of the poison in the history");
    system.stop().await;
}
