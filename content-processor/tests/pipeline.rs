//! The whole path of a submission on a real broker (over TCP) and a real PostgreSQL:
//! HTTP -> Kafka -> validator -> Kafka -> projector -> PostgreSQL -> REST and SSE.

mod support;

use reqwest::StatusCode;
use support::{read_sse, TestSystem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_content_passes_and_invalid_content_fails_with_reasons() {
    let system = TestSystem::start().await;

    let (status, accepted) = system.submit("hello world 42").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(accepted["status"], "PENDING");
    assert_eq!(accepted["content"], "hello world 42");
    assert!(accepted["created_at"].is_string());
    assert!(accepted["processed_at"].is_null());
    let passed_id = accepted["id"].as_str().unwrap().to_owned();

    let cases = [("short", vec!["too_short", "no_digit"]), ("abc1", vec!["too_short"]), ("no digits in here", vec!["no_digit"])];
    let mut failed = Vec::new();
    for (content, reasons) in cases {
        let (status, accepted) = system.submit(content).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        failed.push((accepted["id"].as_str().unwrap().to_owned(), reasons));
    }

    let verdict = system.wait_for_verdict(&passed_id).await;
    assert_eq!(verdict["status"], "PASSED");
    assert_eq!(verdict["reasons"], serde_json::json!([]));
    assert!(verdict["processed_at"].is_string());
    assert!(verdict["processing_started_at"].is_string());
    for (id, reasons) in failed {
        let verdict = system.wait_for_verdict(&id).await;
        assert_eq!(verdict["status"], "FAILED", "{verdict}");
        assert_eq!(verdict["reasons"], serde_json::json!(reasons));
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_the_trailing_slash_path_and_points_to_the_new_resource() {
    let system = TestSystem::start().await;
    let response = system.http.post(system.url("/api/submissions/")).json(&serde_json::json!({"content": "trailing slash 1"})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    let position = body["position"].as_str().unwrap();
    assert_eq!(location, format!("/api/submissions/{}?position={position}", body["id"].as_str().unwrap()));

    system.wait_for_verdict(body["id"].as_str().unwrap()).await;
    let (status, fetched) = system.get_json(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["content"], "trailing slash 1");
    let (status, list) = system.get_json("/api/submissions/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["id"], body["id"]);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_delivers_pending_processing_and_the_verdict_in_order() {
    let db = support::TestDb::create().await;
    let mut config = support::test_config(&db);
    // A visible PROCESSING phase: the client is connected before the verdict exists.
    config.processing_delay_ms = 300;
    let system = TestSystem::start_with(db, config).await;

    let (_, accepted) = system.submit("stream me 123").await;
    let id = accepted["id"].as_str().unwrap();
    let events = read_sse(&system.http, &system.url(&format!("/api/submissions/{id}/stream")), None, 3).await;

    let statuses: Vec<&str> = events.iter().map(|e| e.data["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["PENDING", "PROCESSING", "PASSED"]);
    let seqs: Vec<i64> = events.iter().map(|e| e.seq()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "event ids order the stream: {seqs:?}");
    assert!(events.iter().all(|e| e.event == "status" && e.data["submission_id"] == id));

    // What SSE pushed is already visible over REST.
    let (_, now) = system.get_json(&format!("/api/submissions/{id}")).await;
    assert_eq!(now["status"], "PASSED");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_submissions_stream_shows_new_submissions_live() {
    let system = TestSystem::start().await;
    // Open before submitting: the stream follows what is committed after it answered.
    let reader = support::SseConnection::open(&system.http, &system.url("/api/stream"), None).await;
    let (_, first) = system.submit("first one 1").await;
    let (_, second) = system.submit("second").await;

    let events = reader.read(6).await;
    let of = |id: &serde_json::Value| -> Vec<String> {
        events.iter().filter(|e| e.data["submission_id"] == *id).map(|e| e.data["status"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(of(&first["id"]), ["PENDING", "PROCESSING", "PASSED"]);
    assert_eq!(of(&second["id"]), ["PENDING", "PROCESSING", "FAILED"]);
    let created = events.iter().find(|e| e.data["submission_id"] == second["id"]).unwrap();
    assert_eq!(created.data["content"], "second");
    let failed = events.iter().find(|e| e.data["status"] == "FAILED").unwrap();
    assert_eq!(failed.data["reasons"], serde_json::json!(["too_short", "no_digit"]));
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_newest_first_with_status_filter_and_cursor_pages() {
    let system = TestSystem::start().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        // Alternate passing and failing content.
        let content = if i % 2 == 0 { format!("passing content {i}") } else { "nope".to_owned() };
        let (_, accepted) = system.submit(&content).await;
        ids.push(accepted["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        system.wait_for_verdict(id).await;
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/submissions?limit=3&cursor={c}"),
            None => "/api/submissions?limit=3".to_owned(),
        };
        let (status, page) = system.get_json(&path).await;
        assert_eq!(status, StatusCode::OK);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first, "pages cover everything once, newest first");

    let (_, passed) = system.get_json("/api/submissions?status=PASSED").await;
    let passed: Vec<&str> = passed["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    let expected: Vec<&str> = ids.iter().enumerate().rev().filter(|(i, _)| i % 2 == 0).map(|(_, id)| id.as_str()).collect();
    assert_eq!(passed, expected);
    let (_, failed) = system.get_json("/api/submissions?status=failed").await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 3);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lists_every_event_with_its_log_coordinates() {
    let system = TestSystem::start().await;
    let (_, accepted) = system.submit("history 12345").await;
    let id = accepted["id"].as_str().unwrap();
    system.wait_for_verdict(id).await;

    let (status, history) = system.get_json(&format!("/api/submissions/{id}/events")).await;
    assert_eq!(status, StatusCode::OK);
    let events = history["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["SubmissionCreated", "ProcessingStarted", "SubmissionPassed"]);
    let partition = events[0]["kafka_partition"].as_i64().unwrap();
    assert!(events.iter().all(|e| e["kafka_partition"].as_i64() == Some(partition)), "one submission, one partition");
    let offsets: Vec<i64> = events.iter().map(|e| e["kafka_offset"].as_i64().unwrap()).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    assert!(events.iter().all(|e| e["correlation_id"] == events[0]["correlation_id"]));
    assert_eq!(events[0]["payload"]["content"], "history 12345");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let system = TestSystem::start().await;
    let (status, body) = system.get_json("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (status, body) = system.get_json("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for check in ["kafka", "database", "projector", "validator"] {
        assert_eq!(body["checks"][check], "ok", "{body}");
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_process_mode_applies_the_service_settings_it_is_given() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let db = support::TestDb::create().await;
    let mut config = support::test_config(&db);
    config.max_content_bytes = 100;
    config.validator_group_id = Some("validators-of-this-test".into());
    let system = TestSystem::start_with(db, config).await;
    let (status, body) = system.api.submit(&"1".repeat(101)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "content_too_large", "{body}");
    let (status, accepted) = system.api.submit(&"1".repeat(100)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    system.api.wait_for_verdict(accepted["id"].as_str().unwrap()).await;

    // The verdict came from a validator in the configured group: it committed there.
    let kafka = &system.running.kafka;
    let group: BaseConsumer = kafka.consumer_config("validators-of-this-test").create().unwrap();
    let mut partitions = rdkafka::TopicPartitionList::new();
    for partition in 0..kafka.partitions {
        partitions.add_partition(&kafka.topic, partition);
    }
    support::eventually("the configured group commits", || async {
        let committed = group.committed_offsets(partitions.clone(), std::time::Duration::from_secs(5)).ok()?;
        committed.elements().iter().any(|e| e.offset().to_raw().is_some_and(|o| o > 0)).then_some(())
    })
    .await;
    system.stop().await;
}
