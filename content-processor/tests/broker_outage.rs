//! When the broker is gone (its process SIGKILLed), the command API answers 503 within a bounded
//! time and never claims success; readiness says so; both recover by themselves when it returns.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use support::{eventually, TestSystem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_means_503_with_retry_after_then_recovery() {
    let mut system = TestSystem::start().await;
    let (status, _) = system.submit("before outage 1").await;
    assert_eq!(status, StatusCode::ACCEPTED);

    system.kafka_node().kill(1).await.unwrap();
    let started = Instant::now();
    let response = system.http.post(system.url("/api/submissions")).json(&serde_json::json!({"content": "during outage 1"})).send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "broker_unavailable");
    // Bounded by the publish timeout (2 s in tests), with slack for a loaded machine.
    assert!(waited < Duration::from_secs(10), "503 took {waited:?}");

    let (status, ready) = system.get_json("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_ne!(ready["checks"]["kafka"], "ok");

    system.kafka_node().restart(1).await.unwrap();
    let accepted = eventually("the command API accepts again", || async {
        let (status, body) = system.submit("after outage 1").await;
        (status == StatusCode::ACCEPTED).then_some(body)
    })
    .await;
    eventually("readiness recovers", || async { (system.get_json("/readyz").await.0 == StatusCode::OK).then_some(()) }).await;
    let verdict = system.wait_for_verdict(accepted["id"].as_str().unwrap()).await;
    assert_eq!(verdict["status"], "PASSED");

    // Whatever got a 202 has a verdict; what got a 503 may or may not be in the log, but it was
    // never reported as accepted.
    let (_, list) = system.get_json("/api/submissions").await;
    let contents: Vec<&str> = list["items"].as_array().unwrap().iter().map(|i| i["content"].as_str().unwrap()).collect();
    assert!(contents.contains(&"before outage 1") && contents.contains(&"after outage 1"), "{contents:?}");
    system.stop().await;
}
