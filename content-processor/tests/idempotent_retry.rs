//! A client that never got its answer retries with the same `Idempotency-Key`, after the command
//! API (a separate process) was killed with SIGKILL while requests were in flight, among them
//! requests Kafka had acknowledged but the client never heard of. Every key ends up as exactly
//! one submission in the log, and the retry answers with its id.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::process::{free_port, log_dir, Component};
use support::{TestDb, TestKafka};
use uuid::Uuid;

/// Requests in flight when the command API is killed.
const IN_FLIGHT: usize = 40;
/// Kill rounds at most, until one caught a request between Kafka's acknowledgement and the answer.
const ROUNDS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_retried_after_the_command_api_was_killed_is_one_submission() {
    let (seed, mut rng) = support::crash_seed("idempotent retry");

    let broker = TestKafka::start(1, 3).await;
    let db = TestDb::create().await;
    let token = support::admin_token(&db.url).await;
    let port = free_port();
    // One database connection: requests Kafka acknowledged queue for it to record that before
    // they answer, which widens the window a kill must land in (on a busy machine a kill could
    // otherwise miss it for many rounds).
    let args = [
        "--kafka-brokers",
        broker.kafka.bootstrap_servers(),
        "--kafka-partitions",
        "3",
        "--database-url",
        &db.url,
        "--max-connections",
        "1",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ];
    let mut command_api = Component::new("command-api", args.iter().map(|s| s.to_string()).collect(), &log_dir("idempotent-retry"));
    let url = format!("http://127.0.0.1:{port}/api/submissions");
    let http = reqwest::Client::builder().default_headers(support::bearer(&token)).timeout(Duration::from_secs(10)).build().unwrap();
    let post = |key: String, content: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let response = http.post(&url).header("idempotency-key", key).json(&json!({ "content": content })).send().await.ok()?;
            if response.status() != StatusCode::ACCEPTED {
                return None;
            }
            let body: Value = response.json().await.ok()?;
            body["id"].as_str()?.parse::<Uuid>().ok()
        }
    };
    let accepting =
        |key: String, content: String| async move { support::eventually("the command API accepts", || post(key.clone(), content.clone())).await };

    // What the client ends up with for each key: the id of the answer it got, first or on retry.
    let mut answered: HashMap<String, (String, Uuid)> = HashMap::new();
    let mut caught = 0;
    for round in 0..ROUNDS {
        command_api.start();
        accepting(format!("warm-up-{round}"), format!("warm-up {round}")).await;
        let requests: Vec<(String, String)> = (0..IN_FLIGHT).map(|i| (format!("key-{round}-{i}"), format!("round {round} text {i}"))).collect();
        let in_flight: Vec<_> = requests.iter().map(|(key, content)| tokio::spawn(post(key.clone(), content.clone()))).collect();
        tokio::time::sleep(Duration::from_millis(rng.u64(10..150))).await;
        command_api.kill().await;
        let mut unanswered = Vec::new();
        for ((key, content), outcome) in requests.into_iter().zip(in_flight) {
            match outcome.await.unwrap() {
                Some(id) => {
                    answered.insert(key, (content, id));
                }
                None => unanswered.push((key, content)),
            }
        }
        // Requests Kafka acknowledged whose answer never came: the case that matters.
        let before_retry = support::submissions_in_log(&broker.kafka, &db.url).await;
        caught += unanswered.iter().filter(|(_, content)| before_retry.contains_key(content)).count();

        command_api.start();
        for (key, content) in unanswered {
            let id = accepting(key.clone(), content.clone()).await;
            answered.insert(key, (content, id));
        }
        command_api.kill().await;
        if caught > 0 && round >= 1 {
            break;
        }
    }
    println!("{caught} requests were in the log but unanswered when the command API was killed");
    assert!(caught > 0, "a kill landed between Kafka's acknowledgement and the answer (seed {seed})");

    let log = support::submissions_in_log(&broker.kafka, &db.url).await;
    for (key, (content, id)) in &answered {
        let ids = log.get(content).cloned().unwrap_or_default();
        assert_eq!(ids, HashSet::from([*id]), "{key}: one submission, the one the client was told of");
    }
    db.drop_database().await;
    broker.stop().await;
}
