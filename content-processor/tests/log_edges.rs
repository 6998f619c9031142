//! The edges of the log while the system runs: a record a newer build wrote, a topic deleted
//! and created again under the same name, partitions added to the topic.

mod support;

use std::time::Duration;

use domain::{Envelope, Event};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use reqwest::StatusCode;
use serde_json::Value;
use support::{eventually, TestSystem};
use uuid::Uuid;

fn created(content: &str) -> Envelope {
    Envelope::new(Uuid::new_v4(), Event::created(content, None), chrono::Utc::now(), Uuid::new_v4())
}

/// Appends `value` under `key` to `partition` of the submission topic; returns its offset.
async fn append(system: &TestSystem, partition: i32, key: &str, value: &[u8]) -> i64 {
    let kafka = &system.running.kafka;
    let producer = kafka.producer(Duration::from_secs(10)).unwrap();
    let record = FutureRecord::to(&kafka.topic).partition(partition).key(key).payload(value);
    producer.send(record).await.unwrap().offset
}

async fn readiness(system: &TestSystem) -> (StatusCode, Value) {
    system.api.get_json("/readyz").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_a_newer_schema_version_holds_its_partition_instead_of_being_skipped() {
    let system = TestSystem::start().await;
    let kafka = system.running.kafka.clone();

    // A SubmissionCreated as a newer command-api would write it during a rolling upgrade,
    // then an ordinary one behind it on the same partition, and one on another partition.
    let newer = created("written by a newer build 1");
    let mut wire: Value = serde_json::from_slice(&newer.encode()).unwrap();
    let known = domain::Event::version_written("SubmissionCreated").unwrap();
    wire["schema_version"] = (known + 1).into();
    let held_at = append(&system, 0, &newer.key(), wire.to_string().as_bytes()).await;
    let behind = created("behind the newer record 2");
    append(&system, 0, &behind.key(), &behind.encode()).await;
    let elsewhere = created("on another partition 3");
    append(&system, 1, &elsewhere.key(), &elsewhere.encode()).await;

    // Other partitions carry on...
    system.api.wait_for_verdict(&elsewhere.submission_id.to_string()).await;
    // ...while the system says why it is not ready, naming the versions.
    let (status, report) = eventually("the held partition shows in /readyz", || async {
        let (status, report) = readiness(&system).await;
        let checks = &report["checks"];
        let held = |name: &str| checks[name].as_str().is_some_and(|why| why.contains(&format!("held at offset {held_at}")));
        (held("projector") && held("validator")).then_some((status, report))
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert!(
        report["checks"]["projector"]
            .as_str()
            .unwrap()
            .contains(&format!("schema version {}, newer than this build reads (1 to {known})", known + 1)),
        "{report}"
    );

    // Nothing moved past it: not judged, not projected, not dead-lettered.
    let (status, _) = system.api.get_json(&format!("/api/submissions/{}", behind.submission_id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the record behind the held one waits too");
    let pool = system.db.pool().await;
    let position: Option<i64> =
        sqlx::query_scalar("SELECT next_offset FROM projector_positions WHERE partition = 0").fetch_optional(&pool).await.unwrap();
    assert!(position.unwrap_or(0) <= held_at, "the projector's position stays at the held record");
    pool.close().await;
    let group: BaseConsumer = kafka.consumer_config("validator").create().unwrap();
    let mut partition = TopicPartitionList::new();
    partition.add_partition(&kafka.topic, 0);
    let committed = group.committed_offsets(partition, Duration::from_secs(10)).unwrap();
    let committed = committed.find_partition(&kafka.topic, 0).unwrap().offset();
    assert!(matches!(committed, Offset::Invalid) || committed.to_raw().unwrap() <= held_at, "validator committed {committed:?}");
    let dead_letters = support::records_in_topic(&kafka_kit::KafkaArgs { topic: kafka.dead_letter_topic(), ..kafka.clone() }).await;
    assert_eq!(dead_letters, 0, "a newer version is not garbage");

    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_recreated_while_running_is_rebuilt_from_the_new_log_even_once_it_grew_past_the_old_positions() {
    let mut system = TestSystem::start().await;
    let kafka = system.running.kafka.clone();
    let mut old = Vec::new();
    for i in 0..3 {
        let (_, accepted) = system.api.submit(&format!("in the first topic {i}")).await;
        old.push(system.api.wait_for_verdict(accepted["id"].as_str().unwrap()).await);
    }
    let pool = system.db.pool().await;
    let generation =
        || async { sqlx::query_scalar::<_, i32>("SELECT generation FROM read_models WHERE state = 'live'").fetch_one(&pool).await.unwrap() };
    let first_generation = generation().await;

    let admin: AdminClient<DefaultClientContext> = system.kafka_node().admin_client_config().create().unwrap();
    admin.delete_topics(&[&kafka.topic], &AdminOptions::new()).await.unwrap();
    // Deletion finishes in the background; creating the topic before it did only finds the old
    // one ("already exists"), which then disappears.
    eventually("the old topic is gone", || async {
        kafka_kit::topic_partition_count(admin.inner(), &kafka.topic, Duration::from_secs(5)).is_err().then_some(())
    })
    .await;
    eventually("the topic is created again", || async { kafka.ensure_topic().await.ok() }).await;

    // More records than the old topic had: every old position is inside the new log.
    let mut new = Vec::new();
    for i in 0..6 {
        let id = eventually("the command API accepts again", || async {
            let (status, accepted) = system.api.submit(&format!("in the second topic {i}")).await;
            (status == StatusCode::ACCEPTED).then(|| accepted["id"].as_str().unwrap().to_owned())
        })
        .await;
        new.push(system.api.wait_for_verdict(&id).await);
    }
    for gone in &old {
        let (status, _) = system.api.get_json(&format!("/api/submissions/{}", gone["id"].as_str().unwrap())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "the read model shows the new log only");
    }
    assert!(generation().await > first_generation, "rebuilt into a new generation");
    support::assert_read_model_equals_fold_of_topic(&pool, &kafka).await;
    pool.close().await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_to_the_topic_are_followed_and_a_submission_stays_on_its_partition() {
    let mut system = TestSystem::start().await;
    let kafka = system.running.kafka.clone();
    let (_, before) = system.api.submit("before the new partitions 1").await;
    system.api.wait_for_verdict(before["id"].as_str().unwrap()).await;

    let admin: AdminClient<DefaultClientContext> = system.kafka_node().admin_client_config().create().unwrap();
    let grown = kafka.partitions + 2;
    let outcome = admin.create_partitions(&[NewPartitions::new(&kafka.topic, grown as usize)], &AdminOptions::new()).await.unwrap();
    assert!(outcome.iter().all(Result::is_ok), "{outcome:?}");
    // The answer comes before every broker's metadata shows the partitions (seen under load).
    eventually("the metadata shows the new partitions", || async {
        (kafka_kit::topic_partition_count(admin.inner(), &kafka.topic, Duration::from_secs(5)).ok() == Some(grown)).then_some(())
    })
    .await;

    // A producer that already knows the new partition writes there (the command API learns
    // of it within its metadata refresh).
    let newest = grown - 1;
    let submission = created("on a new partition 7");
    append(&system, newest, &submission.key(), &submission.encode()).await;
    let verdict = system.api.wait_for_verdict(&submission.submission_id.to_string()).await;
    assert_eq!(verdict["status"], "PASSED");

    // Its whole history is on the partition it was created on, wherever its key hashes to now.
    let (_, history) = system.api.get_json(&format!("/api/submissions/{}/events", submission.submission_id)).await;
    let partitions: Vec<&Value> = history["events"].as_array().expect("a history").iter().map(|event| &event["kafka_partition"]).collect();
    assert_eq!(partitions, vec![&Value::from(newest); 3], "{history}");

    let (status, after) = system.api.submit("after the new partitions 2").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    system.api.wait_for_verdict(after["id"].as_str().unwrap()).await;
    system.stop().await;
}
