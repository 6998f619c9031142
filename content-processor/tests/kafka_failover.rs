//! Three Apache Kafka brokers on loopback (KRaft, every node broker and controller), the topic
//! replicated three times with `min.insync.replicas=2`, as in production.
//!
//! Under steady load, the leader of the topic's first partition is SIGKILLed and restarted,
//! three times: every submission that got a 202 gets exactly one verdict, and the read model
//! equals a fold of the whole topic. With two brokers down, the command API answers 503 (never
//! a 202 it cannot keep) and recovers by itself once they are back.

mod support;

use std::time::Duration;

use kafka_kit::KafkaArgs;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use reqwest::StatusCode;
use support::{eventually, TestDb, TestKafka, TestSystem};
use uuid::Uuid;

const PARTITIONS: i32 = 6;
const KILLS: usize = 3;

/// For each partition of the topic: its leader and how many replicas are in sync.
async fn partition_states(kafka: &KafkaArgs) -> Vec<(i32, usize)> {
    let config = kafka.consumer_config("failover-observer");
    let topic = kafka.topic.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().unwrap();
        let Ok(metadata) = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5)) else { return Vec::new() };
        metadata.topics()[0].partitions().iter().map(|p| (p.leader(), p.isr().len())).collect()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_killed_under_load_lose_nothing_and_two_brokers_down_mean_503() {
    let mut brokers = TestKafka::start(3, PARTITIONS).await;
    let kafka = KafkaArgs { replication_factor: 3, min_insync_replicas: Some(2), ..brokers.kafka.clone() };
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.kafka = kafka.clone();
    config.kafka_dist = None;
    let system = TestSystem::start_with(db, config).await;

    // The topic as the system created it: three replicas, two must be in sync, kept forever.
    let admin: AdminClient<DefaultClientContext> = brokers.cluster.admin_client_config().create().unwrap();
    let described = admin.describe_configs([&ResourceSpecifier::Topic(&kafka.topic)], &AdminOptions::new()).await.unwrap();
    let topic_config = described.into_iter().next().unwrap().unwrap();
    assert_eq!(topic_config.get("min.insync.replicas").and_then(|e| e.value.as_deref()), Some("2"));
    assert_eq!(topic_config.get("retention.ms").and_then(|e| e.value.as_deref()), Some("-1"));
    let states = partition_states(&kafka).await;
    assert_eq!(states.len(), PARTITIONS as usize);
    assert!(states.iter().all(|(_, in_sync)| *in_sync == 3), "three replicas in sync: {states:?}");

    let load = support::load::Load::start(&system.api, 4);
    eventually("the load is flowing", || async { (load.accepted() >= 50).then_some(()) }).await;
    for round in 1..=KILLS {
        let leader = partition_states(&kafka).await[0].0 as u16;
        brokers.cluster.kill(leader).await.unwrap();
        let accepted_before = load.accepted();
        eventually("submissions are accepted while the leader is down", || async { (load.accepted() >= accepted_before + 50).then_some(()) }).await;
        brokers.cluster.restart(leader).await.unwrap();
        eventually("the restarted broker is back in sync on every partition", || async {
            let states = partition_states(&kafka).await;
            (states.len() == PARTITIONS as usize && states.iter().all(|(_, in_sync)| *in_sync == 3)).then_some(())
        })
        .await;
        println!("round {round}: killed broker {leader}, the leader of partition 0; {} accepted so far", load.accepted());
    }
    let (acknowledged, unavailable) = load.stop().await;
    println!("{} submissions got a 202, {unavailable} a 503, across {KILLS} leader kills", acknowledged.len());

    for id in &acknowledged {
        system.wait_for_verdict(&id.to_string()).await;
    }
    let pool = system.db.pool().await;
    let verdicts: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT submission_id, COUNT(*) FROM submission_events \
         WHERE event_type IN ('SubmissionPassed', 'SubmissionFailed') GROUP BY submission_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let verdicts: std::collections::HashMap<Uuid, i64> = verdicts.into_iter().collect();
    for id in &acknowledged {
        assert_eq!(verdicts.get(id), Some(&1), "{id} has exactly one verdict");
    }
    support::assert_read_model_equals_fold_of_topic(&pool, &kafka).await;

    // Two of three brokers down: fewer in-sync replicas than min.insync.replicas (and no
    // controller quorum). Nothing may be acknowledged.
    brokers.cluster.kill(1).await.unwrap();
    brokers.cluster.kill(2).await.unwrap();
    for i in 0..3 {
        let (status, body) = system.submit(&format!("while two brokers are down {i}")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "broker_unavailable");
    }
    brokers.cluster.restart(1).await.unwrap();
    brokers.cluster.restart(2).await.unwrap();
    let accepted = eventually("the command API accepts again by itself", || async {
        let (status, body) = system.submit("after the brokers returned 1").await;
        (status == StatusCode::ACCEPTED).then_some(body)
    })
    .await;
    assert_eq!(system.wait_for_verdict(accepted["id"].as_str().unwrap()).await["status"], "PASSED");

    pool.close().await;
    system.stop().await;
    brokers.stop().await;
}
