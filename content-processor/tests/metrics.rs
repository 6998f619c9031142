//! `/metrics` in the Prometheus text format: scraped before and after some load (submissions,
//! a live stream, a record only the dead-letter topic takes, a rebuild), every family the
//! operators rely on exists and the ones the load touches have moved.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use support::{SseConnection, TestSystem};

/// The samples of one scrape: series (name with labels) to value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    async fn take(system: &TestSystem) -> Scrape {
        let response = system.http.get(system.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Scrape(samples)
    }

    /// The sum over the series of family `name` whose labels contain every one of `labels`
    /// (`key="value"`); `None` if there is no such series.
    fn sum(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let matching: Vec<f64> = self
            .0
            .iter()
            .filter(|(series, _)| {
                let family = series.split('{').next().unwrap_or_default();
                family == name && labels.iter().all(|label| series.contains(label))
            })
            .map(|(_, value)| *value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_families_exist_and_move_under_load() {
    let db = support::TestDb::create().await;
    let mut config = support::test_config(&db);
    config.allow_private_webhook_targets = true;
    config.notifier_retry_base_ms = Some(100);
    config.notifier_max_attempts = Some(2);
    let system = TestSystem::start_with(db, config).await;
    // Verdicts are told to one endpoint that takes them and one that never does.
    let receiver = support::receiver::Receiver::start().await;
    for path in ["ok", "down"] {
        let response = system.http.post(system.url("/api/webhooks")).json(&serde_json::json!({ "url": receiver.url(path) })).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let before = Scrape::take(&system).await;

    let stream = SseConnection::open(&system.http, &system.url("/api/stream"), None).await;
    let while_open = Scrape::take(&system).await;
    assert!(while_open.sum("content_processor_sse_clients", &[]).unwrap() >= 1.0);
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, accepted) = system.submit(&format!("measured submission {i}")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(accepted["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        system.wait_for_verdict(id).await;
    }
    receiver
        .wait_for("every verdict reaches both endpoints, twice the one that is down", |r| {
            r.iter().filter(|r| r.path == "ok").count() >= 20 && r.iter().filter(|r| r.path == "down").count() >= 40
        })
        .await;
    stream.read(60).await;
    // A record nobody can read goes to the dead-letter topic.
    let producer = system.running.kafka.producer(Duration::from_secs(10)).unwrap();
    let garbage = rdkafka::producer::FutureRecord::<(), [u8]>::to(&system.running.kafka.topic).payload(b"not an event");
    producer.send(garbage).await.unwrap();
    let response = system.http.post(system.url("/admin/rebuild")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    support::eventually("the rebuild switches", || async {
        let (_, status) = system.get_json("/admin/rebuild").await;
        (status["state"] == "switched").then_some(())
    })
    .await;

    // Consumer lag comes from librdkafka's statistics, every 5 s.
    let after = support::eventually("every family is there", || async {
        let scrape = Scrape::take(&system).await;
        let lag = |consumer: &str| scrape.sum("content_processor_consumer_lag_records", &[&format!("consumer=\"{consumer}\"")]);
        let dead = scrape.sum("content_processor_dead_letters_total", &[]).unwrap_or(0.0);
        let failed = scrape.sum("content_processor_notifications_failed_total", &[]).unwrap_or(0.0);
        let ready = lag("validator").is_some() && lag("projector").is_some() && lag("notifier").is_some();
        (ready && dead >= 1.0 && failed >= 20.0).then_some(scrape)
    })
    .await;

    let moved = |name: &str, labels: &[&str]| {
        let (was, is) = (before.sum(name, labels).unwrap_or(0.0), after.sum(name, labels).unwrap_or(0.0));
        assert!(is > was, "{name} {labels:?} moved: {was} -> {is}");
        is - was
    };
    assert!(moved("content_processor_http_requests_total", &["route=\"/api/submissions\"", "status=\"202\"", "method=\"POST\""]) >= 20.0);
    moved("content_processor_http_request_duration_seconds_count", &["route=\"/api/submissions/{id}\""]);
    assert!(moved("content_processor_events_produced_total", &["type=\"SubmissionCreated\""]) >= 20.0);
    assert!(moved("content_processor_events_produced_total", &["type=\"ProcessingStarted\""]) >= 20.0);
    assert!(moved("content_processor_events_consumed_total", &["consumer=\"validator\"", "type=\"SubmissionCreated\""]) >= 20.0);
    assert!(moved("content_processor_events_consumed_total", &["consumer=\"projector\"", "type=\"SubmissionPassed\""]) >= 20.0);
    moved("content_processor_validator_batch_records_count", &[]);
    moved("content_processor_validator_judging_duration_seconds_count", &[]);
    moved("content_processor_projector_commit_duration_seconds_count", &[]);
    assert!(moved("content_processor_projector_rows_written_total", &[]) >= 60.0);
    moved("content_processor_dead_letters_total", &[]);
    assert!(moved("content_processor_sse_events_pushed_total", &[]) >= 60.0);
    assert!(after.sum("content_processor_rebuild_events_applied", &[]).unwrap() >= 60.0);
    assert_eq!(after.sum("content_processor_rebuild_running", &[]), Some(0.0));
    assert!(moved("content_processor_events_consumed_total", &["consumer=\"notifier\"", "type=\"SubmissionPassed\""]) >= 20.0);
    assert!(moved("content_processor_notifications_sent_total", &["channel=\"webhook\""]) >= 20.0);
    assert!(moved("content_processor_notifications_failed_total", &["channel=\"webhook\""]) >= 20.0);
    assert!(moved("content_processor_notification_attempts_total", &["channel=\"webhook\"", "outcome=\"failed\""]) >= 40.0);
    moved("content_processor_notification_send_duration_seconds_count", &["channel=\"webhook\""]);
    system.stop().await;
}

/// A client may send any token as an HTTP method. Each one a label value would be a series kept
/// for as long as the process runs, and `/metrics` would grow with every stranger's request:
/// methods HTTP does not define count as `other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_http_methods_make_no_new_series() {
    let system = TestSystem::start().await;
    let before = Scrape::take(&system).await;
    let stranger = reqwest::Client::new();
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        stranger.request(method, system.url("/api/submissions")).send().await.unwrap();
    }
    let after = Scrape::take(&system).await;
    let invented: Vec<&String> = after.0.keys().filter(|series| series.contains("INVENTED")).collect();
    assert!(invented.is_empty(), "series per invented method: {invented:?}");
    let counted = |scrape: &Scrape| scrape.sum("content_processor_http_requests_total", &["method=\"other\""]).unwrap_or(0.0);
    assert_eq!(counted(&after) - counted(&before), 50.0);
    system.stop().await;
}
