//! Batches and resubmissions on Apache Kafka: a batch is accepted whole or not at all (even when
//! the command API is killed in the middle of its Kafka transaction), its counts are followed
//! live, a retry never doubles it; a FAILED submission, edited, is resubmitted once and both
//! show the link; and webhook URLs inside the network are refused by default.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use support::process::{free_port, log_dir, Component};
use support::user::User;
use support::{SseConnection, TestDb, TestKafka, TestSystem};
use uuid::Uuid;

fn items(contents: &[&str]) -> Value {
    json!({ "items": contents.iter().map(|content| json!({ "content": content })).collect::<Vec<_>>() })
}

async fn post_batch(user: &User, system: &TestSystem, body: &Value, key: Option<&str>) -> (StatusCode, Value, Option<String>) {
    let mut request = user.http.post(system.url("/api/batches")).json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let location = response.headers().get(header::LOCATION).map(|l| l.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), location)
}

/// `SubmissionCreated` records in the log, per batch id.
fn items_in_log(kafka: &kafka_kit::KafkaArgs, isolation: &str) -> HashMap<Uuid, Vec<Uuid>> {
    let mut batches: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for record in support::read_topic_as(kafka, &kafka.topic, isolation) {
        let Some(envelope) = record.value.as_deref().and_then(|value| domain::Envelope::decode(value).ok()) else { continue };
        if let domain::Event::SubmissionCreated { batch: Some(batch), .. } = envelope.event {
            batches.entry(batch.batch_id).or_default().push(envelope.submission_id);
        }
    }
    batches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_accepted_whole_judged_item_by_item_and_followed_live() {
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.accounts.submission_rate_limit = 12;
    let system = TestSystem::start_with(db, config).await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let bob = User::sign_up(&system, "bob@example.com").await;

    // Bad items refuse the whole batch, each named by its index; nothing reaches the log and
    // no rate limit is spent.
    let bad = json!({"items": [
        {"content": "fine 12345678"}, {"content": ""}, "just text", {"content": "nul \u{0} 12345678"}, {"content": "fine 12345678", "colour": "red"}
    ]});
    let (status, body, _) = post_batch(&alice, &system, &bad, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_items");
    let refused: Vec<_> =
        body["error"]["items"].as_array().unwrap().iter().map(|i| (i["index"].as_u64().unwrap(), i["code"].as_str().unwrap().to_owned())).collect();
    assert_eq!(refused, [(1, "empty_content".into()), (2, "invalid_body".into()), (3, "invalid_content".into()), (4, "invalid_body".into())]);
    for (body, code) in [(json!({"items": []}), "invalid_batch_size"), (json!({"items": "x"}), "invalid_body"), (json!({}), "invalid_body")] {
        let (status, answer, _) = post_batch(&alice, &system, &body, None).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(code)), "{body}");
    }
    let too_many: Vec<&str> = vec!["item 1234567890"; 1001];
    let (status, answer, _) = post_batch(&alice, &system, &items(&too_many), None).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_batch_size")));
    assert!(items_in_log(&system.running.kafka, "read_uncommitted").is_empty(), "refused batches left nothing in the log");

    // A good batch: 202 with an id per item, and a Location that waits for the read model.
    let contents = ["passes 12345", "short 1", "no digits in this one", "passes too 987654"];
    let (status, accepted, location) = post_batch(&alice, &system, &items(&contents), Some("batch-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let batch_id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["size"], 4);
    let item_ids: Vec<String> = accepted["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(item_ids.len(), 4);
    let location = location.expect("a Location");
    assert!(location.starts_with(&format!("/api/batches/{batch_id}?position=")), "{location}");
    let (status, view) = alice.get(&system, &location).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["size"], 4);

    // The same key again is the same batch, answered without publishing anything new.
    let (status, again, _) = post_batch(&alice, &system, &items(&contents), Some("batch-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["id"], accepted["id"]);
    assert_eq!(again["items"], accepted["items"]);

    // Live counts: a snapshot first, then one event per change, until every verdict is in.
    let stream = SseConnection::open(&alice.http, &system.url(&format!("/api/batches/{batch_id}/stream")), None).await;
    let events = stream.read_until(|events| events.last().is_some_and(|e| e.data["complete"] == true)).await;
    for event in &events {
        assert_eq!(event.event, "counts");
        let counts = &event.data["counts"];
        let sum: i64 = ["pending", "processing", "passed", "failed"].iter().map(|k| counts[k].as_i64().unwrap()).sum();
        assert_eq!(sum, 4, "counts always add up to the size: {}", event.data);
    }
    let last = &events.last().unwrap().data;
    assert_eq!(last["counts"], json!({"pending": 0, "processing": 0, "passed": 2, "failed": 2}));

    // Its items, in the order sent, each with its own verdict; and in the list of batches.
    let (status, page) = alice.get(&system, &format!("/api/batches/{batch_id}/items")).await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<(String, String, i64)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_owned(), i["status"].as_str().unwrap().to_owned(), i["batch_index"].as_i64().unwrap()))
        .collect();
    let expected: Vec<(String, String, i64)> = item_ids
        .iter()
        .zip(["PASSED", "FAILED", "FAILED", "PASSED"])
        .zip(0..)
        .map(|((id, status), index)| (id.clone(), status.to_owned(), index))
        .collect();
    assert_eq!(listed, expected);
    let (_, batches) = alice.get(&system, "/api/batches").await;
    assert_eq!(batches["items"][0]["id"].as_str(), Some(batch_id.as_str()));
    assert_eq!(batches["items"][0]["complete"], true);
    assert_eq!(items_in_log(&system.running.kafka, "read_committed")[&batch_id.parse().unwrap()].len(), 4, "the retry doubled nothing");

    // Another user sees none of it.
    for path in [format!("/api/batches/{batch_id}"), format!("/api/batches/{batch_id}/items")] {
        assert_eq!(bob.get(&system, &path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(bob.get(&system, "/api/batches").await.1["items"], json!([]));
    let response = bob.http.get(system.url(&format!("/api/batches/{batch_id}/stream"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Each item counts against the limit (12 per window): 4 spent, 9 more do not fit, 8 do.
    let nine = vec!["text 1234567890"; 9];
    let (status, refused, _) = post_batch(&alice, &system, &items(&nine), None).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")));
    let (status, _, _) = post_batch(&alice, &system, &items(&nine[..8]), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let response = alice.http.post(system.url("/api/submissions")).json(&json!({"content": "one more 1234567890"})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_submission_is_resubmitted_once_and_both_show_the_link() {
    let system = TestSystem::start().await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let bob = User::sign_up(&system, "bob@example.com").await;
    let failed = alice.submit(&system, "too short").await;
    let failed_id = failed["id"].as_str().unwrap().to_owned();
    let passed = alice.submit(&system, "this one passes 123").await;
    let passed_id = passed["id"].as_str().unwrap().to_owned();
    for id in [&failed_id, &passed_id] {
        system.wait_for_verdict(id).await;
    }

    let resubmit = |user: &User, replaces: &str, content: &str| {
        let request = user.http.post(system.url("/api/submissions")).json(&json!({ "content": content, "replaces": replaces }));
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    // Only the owner's FAILED submission can be replaced.
    let (status, body) = resubmit(&alice, &passed_id, "edited 1234567890").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("not_failed")), "{body}");
    let (status, body) = resubmit(&bob, &failed_id, "edited 1234567890").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_submission")), "{body}");
    let (status, body) = resubmit(&alice, "not-a-uuid", "edited 1234567890").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body")), "{body}");

    let (status, replacement) = resubmit(&alice, &failed_id, "no longer too short 42").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replacement}");
    assert_eq!(replacement["replaces"].as_str(), Some(failed_id.as_str()));
    let replacement_id = replacement["id"].as_str().unwrap().to_owned();
    // A retry is the same submission; other content is a second replacement, refused.
    let (status, retry) = resubmit(&alice, &failed_id, "no longer too short 42").await;
    assert_eq!((status, retry["id"].as_str()), (StatusCode::ACCEPTED, Some(replacement_id.as_str())));
    let (status, body) = resubmit(&alice, &failed_id, "another edit 1234567").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("already_replaced")), "{body}");

    let judged = system.wait_for_verdict(&replacement_id).await;
    assert_eq!(judged["status"], "PASSED");
    assert_eq!(judged["replaces"].as_str(), Some(failed_id.as_str()));
    let (_, original) = alice.get(&system, &format!("/api/submissions/{failed_id}")).await;
    assert_eq!(original["replaced_by"].as_str(), Some(replacement_id.as_str()));
    assert_eq!(original["status"], "FAILED", "the original keeps its verdict");
    // Once the read model shows the link, a second replacement is refused by it too.
    let (status, body) = resubmit(&alice, &failed_id, "yet another edit 12345").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("already_replaced")), "{body}");

    // Without the operator's permission, webhooks cannot point inside the network.
    for url in ["http://127.0.0.1:5432/", "http://169.254.169.254/latest/meta-data/", "http://localhost/hook", "http://[::1]/"] {
        let response = alice.http.post(system.url("/api/webhooks")).json(&json!({ "url": url })).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "url_refused", "{url}");
    }
    assert_eq!(alice.get(&system, "/api/webhooks").await.1["items"], json!([]));
    system.stop().await;
}

/// Rounds of killing the command API while it publishes a batch, at most.
const KILL_ROUNDS: usize = 8;
const BATCH_SIZE: usize = 1000;

/// The sum over the topic's partitions of the end offset a consumer of `isolation` sees: under
/// `read_committed` that is the last stable offset, which stops before any open transaction.
fn end_offsets(consumer: &BaseConsumer, topic: &str) -> i64 {
    let partitions = kafka_kit::topic_partition_count(consumer.client(), topic, Duration::from_secs(10)).unwrap();
    (0..partitions).map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_command_api_is_killed_mid_transaction_is_never_read_in_part() {
    let (seed, mut rng) = support::crash_seed("batch kill");
    let broker = TestKafka::start(1, 6).await;
    let db = TestDb::create().await;
    let token = support::admin_token(&db.url).await;
    let port = free_port();
    let args = [
        "--kafka-brokers",
        broker.kafka.bootstrap_servers(),
        "--kafka-partitions",
        "6",
        "--database-url",
        &db.url,
        "--listen",
        &format!("127.0.0.1:{port}"),
    ];
    let mut command_api = Component::new("command-api", args.iter().map(|s| s.to_string()).collect(), &log_dir("batch-kill"));
    let http = reqwest::Client::builder().default_headers(support::bearer(&token)).timeout(Duration::from_secs(30)).build().unwrap();
    let url = format!("http://127.0.0.1:{port}/api/batches");
    let padding = "x".repeat(400);
    let body = json!({ "items": (0..BATCH_SIZE).map(|i| json!({ "content": format!("item {i} {padding}") })).collect::<Vec<_>>() });
    let topic = &broker.kafka.topic;
    let [written_end, stable_end]: [BaseConsumer; 2] = ["read_uncommitted", "read_committed"]
        .map(|isolation| broker.kafka.consumer_config("ends").set("isolation.level", isolation).create().unwrap());

    let (mut torn, mut whole, mut answered) = (0, 0, 0);
    for round in 0..KILL_ROUNDS {
        command_api.start();
        support::eventually("the command API answers", || async {
            http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.ok().filter(|r| r.status().is_success())
        })
        .await;
        let request = tokio::spawn(http.post(&url).json(&body).send());
        if round % 2 == 0 {
            // Aimed: freeze the process at random short intervals until it is caught with its
            // transaction open (records written past the last stable offset), or has answered.
            // A fixed delay misses the window on a slower machine.
            loop {
                tokio::time::sleep(Duration::from_millis(rng.u64(1..20))).await;
                command_api.pause();
                if end_offsets(&written_end, topic) > end_offsets(&stable_end, topic) || request.is_finished() {
                    break;
                }
                command_api.resume();
            }
        } else {
            // Anywhere: before, inside or after the transaction, or after the answer.
            tokio::time::sleep(Duration::from_millis(rng.u64(20..1500))).await;
        }
        command_api.kill().await;
        if request.await.unwrap().is_ok_and(|r| r.status() == StatusCode::ACCEPTED) {
            answered += 1;
        }
        // A transaction left open is aborted when it times out (10 s); until then consumers
        // read up to it and no further. Atomicity is judged once every transaction is decided:
        // the last stable offset has reached the end of every partition.
        support::eventually("every transaction is committed or aborted", || async {
            (end_offsets(&written_end, topic) == end_offsets(&stable_end, topic)).then_some(())
        })
        .await;
        let written = items_in_log(&broker.kafka, "read_uncommitted");
        let read = items_in_log(&broker.kafka, "read_committed");
        for batch in written.keys() {
            let visible = read.get(batch).map_or(0, Vec::len);
            assert!(visible == 0 || visible == BATCH_SIZE, "round {round}: batch {batch} is read with {visible} of {BATCH_SIZE} items");
        }
        torn = written.iter().filter(|(batch, ids)| !read.contains_key(batch) && !ids.is_empty()).count();
        whole = read.values().filter(|ids| ids.len() == BATCH_SIZE).count();
        println!("round {round}: {} batches written (some in part), {whole} read whole, {torn} never read", written.len());
        if torn > 0 && whole > 0 {
            break;
        }
    }
    assert!(torn > 0, "a kill landed inside a transaction: records written but never read (seed {seed})");
    assert!(whole >= answered, "every answered batch is read whole");
    drop((written_end, stable_end));
    db.drop_database().await;
    broker.stop().await;
}
