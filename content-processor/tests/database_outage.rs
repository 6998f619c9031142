//! While the database is unreachable the projector pauses without skipping or losing events, and
//! both APIs answer 503 (they cannot authenticate); all recover by themselves when it returns.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use support::{eventually, CuttableProxy, TestDb, TestSystem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projector_pauses_and_queries_answer_503_until_the_database_returns() {
    let db = TestDb::create().await;
    let direct = db.pool().await;
    let proxy = CuttableProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let mut config = support::test_config(&db);
    config.database_url = db.url_via(proxy.addr);
    let system = TestSystem::start_with(db, config).await;

    let (_, before) = system.submit("before the outage 1").await;
    let before = before["id"].as_str().unwrap().to_owned();
    system.wait_for_verdict(&before).await;

    proxy.cut();
    let started = Instant::now();
    // Every answer is a 503. The first may come from the query itself (`read_model_unavailable`)
    // while the API still holds the caller's token from before the cut; once it has noticed its
    // LISTEN for credential changes is gone, it cannot authenticate anyone (`database_unavailable`).
    loop {
        let (status, body) = system.get_json("/api/submissions").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(started.elapsed() < Duration::from_secs(10), "503 within a bounded time: {:?}", started.elapsed());
        match body["error"]["code"].as_str() {
            Some("database_unavailable") => break,
            Some("read_model_unavailable") => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => panic!("{body}"),
        }
    }
    let (status, ready) = system.get_json("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_ne!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["kafka"], "ok");

    // The command API cannot tell who is submitting: it refuses, storing nothing.
    let (status, body) = system.submit("refused during the outage 3").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "database_unavailable");

    // Events reaching the log meanwhile (from a replica that reaches the database, or already
    // there) are judged, and the projector holds them.
    let publisher = kafka_kit::EventPublisher::new(&system.running.kafka, Duration::from_secs(10)).unwrap();
    let mut during = Vec::new();
    for content in ["during the outage 2", "short"] {
        let event = domain::Event::created(content, None);
        let created = domain::Envelope::new(uuid::Uuid::new_v4(), event, chrono::Utc::now(), uuid::Uuid::new_v4());
        publisher.publish(&created).await.unwrap();
        during.push(created.submission_id.to_string());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (stored,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM submissions").fetch_one(&direct).await.unwrap();
    assert_eq!(stored, 1, "nothing was projected while the database was unreachable");

    proxy.restore();
    eventually("queries recover", || async { (system.get_json("/readyz").await.0 == StatusCode::OK).then_some(()) }).await;
    assert_eq!(system.wait_for_verdict(&during[0]).await["status"], "PASSED");
    assert_eq!(system.wait_for_verdict(&during[1]).await["status"], "FAILED");
    for id in during.iter().chain([&before]) {
        let (_, history) = system.get_json(&format!("/api/submissions/{id}/events")).await;
        assert_eq!(history["events"].as_array().unwrap().len(), 3, "{id}: nothing lost, nothing twice");
    }
    direct.close().await;
    system.stop().await;
}
