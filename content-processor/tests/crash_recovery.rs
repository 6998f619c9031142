//! Nothing lost, nothing twice, whatever crashes and when.
//!
//! The components run as separate OS processes against an Apache Kafka broker that outlives them.
//! While a client sends a stream of submissions, the validator, the projector and the command
//! API are killed with SIGKILL at random moments and started again. Afterwards: every
//! submission that got a 202 is in the read model with the right verdict, the duplicates in
//! the log (among them copies the test writes itself, as a validator killed before its commit
//! does) have one history row each, and the read model equals a fold of the whole topic.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::{judge, Envelope, Event, Verdict};
use kafka_kit::Outgoing;
use reqwest::StatusCode;
use support::process::{free_port, log_dir, Component};
use support::{read_topic, TestDb, TestKafka};
use uuid::Uuid;

const SUBMISSIONS: usize = 2_000;
const CLIENTS: usize = 4;
/// Pause between one client's requests: spreads the stream over several seconds of chaos.
const PACE: Duration = Duration::from_millis(16);
const PARTITIONS: i32 = 6;
/// Submissions whose ProcessingStarted the test writes a second time.
const REPLAYED: usize = 50;

#[derive(Default)]
struct Outcomes {
    acknowledged: Vec<(Uuid, String)>,
    rejected_503: usize,
    failed_otherwise: usize,
}

fn content(i: usize) -> String {
    match i % 7 {
        0 => "short".to_owned(),
        1 => format!("no digit here {}", "x".repeat(i % 5)).replace(char::is_numeric, ""),
        _ => format!("submission number {i}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_components_at_random_loses_nothing_and_applies_nothing_twice() {
    let (_, mut rng) = support::crash_seed("crash test");

    let logs = log_dir("crash");
    let broker = TestKafka::start(1, PARTITIONS).await;
    let db = TestDb::create().await;
    let brokers = broker.kafka.bootstrap_servers().to_owned();
    let command_port = free_port();
    let kafka_args = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = vec!["--kafka-brokers".into(), brokers.clone(), "--kafka-partitions".into(), PARTITIONS.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let mut command_api = Component::new(
        "command-api",
        kafka_args(&["--listen", &format!("127.0.0.1:{command_port}"), "--publish-timeout-ms", "3000", "--database-url", &db.url]),
        &logs,
    );
    let mut validator = Component::new("validator", kafka_args(&["--kafka-session-timeout-ms", "6000", "--database-url", &db.url]), &logs);
    let mut projector = Component::new("projector", kafka_args(&["--database-url", &db.url]), &logs);
    for component in [&mut command_api, &mut validator, &mut projector] {
        component.start();
    }

    let url = format!("http://127.0.0.1:{command_port}/api/submissions");
    let token = support::admin_token(&db.url).await;
    let http = reqwest::Client::builder().default_headers(support::bearer(&token)).timeout(Duration::from_secs(10)).build().unwrap();
    support::wait_until_accepting(&http, &url).await;

    // The client: CLIENTS workers share the numbered submissions.
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (http, url, outcomes, next) = (http.clone(), url.clone(), outcomes.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= SUBMISSIONS {
                    return;
                }
                let content = content(i);
                let sent = http.post(&url).json(&serde_json::json!({"content": content})).send().await;
                let accepted = match sent {
                    Ok(response) if response.status() == StatusCode::ACCEPTED => response.json::<serde_json::Value>().await.ok(),
                    Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                        outcomes.lock().unwrap().rejected_503 += 1;
                        continue;
                    }
                    _ => None,
                };
                {
                    let mut outcomes = outcomes.lock().unwrap();
                    match accepted.and_then(|body| body["id"].as_str()?.parse().ok()) {
                        Some(id) => outcomes.acknowledged.push((id, content)),
                        None => outcomes.failed_otherwise += 1,
                    }
                }
                tokio::time::sleep(PACE).await;
            }
        }));
    }

    // The chaos: while the client sends, kill a random component and start it again.
    let mut kills: HashMap<&str, u32> = HashMap::new();
    while !clients.iter().all(|c| c.is_finished()) {
        tokio::time::sleep(Duration::from_millis(rng.u64(300..1200))).await;
        let victim = match rng.u8(0..3) {
            0 => &mut validator,
            1 => &mut projector,
            _ => &mut command_api,
        };
        victim.kill().await;
        *kills.entry(victim.role).or_default() += 1;
        // Sometimes it comes straight back, sometimes after a while.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..500))).await;
        victim.start();
    }
    for client in clients {
        client.await.unwrap();
    }
    let outcomes = Arc::try_unwrap(outcomes).ok().unwrap().into_inner().unwrap();

    let pool = db.pool().await;
    let kafka = broker.kafka.clone();
    // What a validator killed between producing and committing does, made certain: the same
    // ProcessingStarted again (same derived event id), for some submissions.
    let publisher = kafka_kit::EventPublisher::new(&kafka, Duration::from_secs(10)).unwrap();
    let replayed: Vec<Envelope> = outcomes.acknowledged[..REPLAYED]
        .iter()
        .map(|(id, _)| Envelope::new(*id, Event::ProcessingStarted {}, chrono::Utc::now(), Uuid::nil()))
        .collect();
    publisher.publish_all(replayed.iter().map(Outgoing::from)).await.unwrap();
    let ids: Vec<Uuid> = outcomes.acknowledged.iter().map(|(id, _)| *id).collect();
    support::wait_until_projected(&pool, &kafka, &ids).await;

    // 1. Every 202 is in the read model with the right verdict.
    let rows = support::read_model(&pool).await;
    for (id, content) in &outcomes.acknowledged {
        let row = rows.get(id).unwrap_or_else(|| panic!("acknowledged submission {id} is missing"));
        let (status, reasons) = match judge(content) {
            Verdict::Passed => ("PASSED", vec![]),
            Verdict::Failed(reasons) => ("FAILED", reasons.iter().map(|r| r.as_str().to_owned()).collect()),
        };
        assert_eq!((row.status.as_str(), &row.reasons), (status, &reasons), "{id}: {content:?}");
        assert_eq!(row.content.as_ref(), Some(content));
    }
    // 2. The log holds duplicates (at least the replayed ones), and the history holds each event
    // once: the projector recognised the copies as such.
    let log = read_topic(&kafka, &kafka.topic);
    let mut distinct: Vec<Uuid> = log.iter().map(|r| Envelope::decode(r.value.as_deref().unwrap()).unwrap().event_id).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let duplicates_in_log = log.len() - distinct.len();
    assert!(duplicates_in_log >= REPLAYED, "{duplicates_in_log} duplicates in the log");
    let (history_rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM submission_events").fetch_one(&pool).await.unwrap();
    assert_eq!(history_rows as usize, distinct.len(), "one history row per distinct event, none per copy");
    // 3. The read model equals the fold of the whole topic from scratch.
    support::assert_read_model_equals_fold_of_topic(&pool, &kafka).await;

    println!(
        "crash test: sent {SUBMISSIONS}, acknowledged {}, rejected with 503 {}, failed otherwise (connection lost) {}, verified {}; \
         kills {kills:?}; log records {}, of them duplicates {duplicates_in_log}",
        outcomes.acknowledged.len(),
        outcomes.rejected_503,
        outcomes.failed_otherwise,
        outcomes.acknowledged.len(),
        log.len(),
    );
    assert!(outcomes.acknowledged.len() > SUBMISSIONS / 2, "most submissions got through the chaos");
    assert!(kills.values().sum::<u32>() >= 5, "the chaos did kill: {kills:?}");

    pool.close().await;
    db.drop_database().await;
    broker.stop().await;
}
