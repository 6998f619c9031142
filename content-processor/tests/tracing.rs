//! Tracing across the log, on Apache Kafka with every component a process of its own: the W3C
//! `traceparent` a client sends with a POST (or the one the command API starts) travels in the
//! Kafka record headers through validator, projector and notifier. One trace id is on every
//! record of the submission, on every log line about it in every component (the webhook
//! delivery sent later from the notifier's table included), and on the spans each component
//! exports to an OTLP/HTTP collector (a real HTTP server on loopback).

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::process::{free_port, log_dir, Component};
use support::receiver::Receiver;
use support::{read_topic, TestDb, TestKafka};

const CLIENT_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

/// What the collector received: (service name, trace id, span name) of every span.
type Spans = Arc<Mutex<BTreeSet<(String, String, String)>>>;

/// An OTLP/HTTP collector that takes JSON export requests and keeps their spans.
async fn start_collector() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let app = Router::new().route("/v1/traces", post(collect)).with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, spans)
}

async fn collect(State(spans): State<Spans>, Json(request): Json<Value>) -> Json<Value> {
    let mut spans = spans.lock().unwrap();
    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
        let attributes = resource["resource"]["attributes"].as_array().cloned().unwrap_or_default();
        let service = attributes.iter().find(|a| a["key"] == "service.name").and_then(|a| a["value"]["stringValue"].as_str()).unwrap_or("?");
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let trace_id = span["traceId"].as_str().unwrap_or_default().to_ascii_lowercase();
                spans.insert((service.to_owned(), trace_id, span["name"].as_str().unwrap_or_default().to_owned()));
            }
        }
    }
    Json(json!({}))
}

fn trace_id_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).expect("version-traceid-spanid-flags")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_follows_a_submission_through_every_component() {
    let (collector, spans) = start_collector().await;
    let broker = TestKafka::start(1, 3).await;
    let db = TestDb::create().await;
    let token = support::admin_token(&db.url).await;
    let logs = log_dir("tracing");
    let (command_port, notifier_port) = (free_port(), free_port());
    let args = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["--kafka-brokers".to_owned(), broker.kafka.bootstrap_servers().to_owned(), "--kafka-partitions".into(), "3".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let traced = |role, extra: &[&str]| {
        Component::new(role, args(extra), &logs)
            .with_env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
            .with_env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .with_env("RUST_LOG", "info,command_api=debug,validator=debug,projector=debug,notifier=debug,rdkafka=warn,sqlx=warn")
    };
    let command_listen = format!("127.0.0.1:{command_port}");
    let notifier_listen = format!("127.0.0.1:{notifier_port}");
    let mut components = [
        traced("command-api", &["--database-url", &db.url, "--listen", &command_listen]),
        traced("validator", &["--database-url", &db.url]),
        traced("projector", &["--database-url", &db.url]),
        traced("notifier", &["--database-url", &db.url, "--listen", &notifier_listen, "--allow-private-targets"]),
    ];
    for component in &mut components {
        component.start();
    }
    let http = reqwest::Client::builder().default_headers(support::bearer(&token)).timeout(Duration::from_secs(10)).build().unwrap();
    // A webhook endpoint: each verdict's delivery, sent later from the notifier's table, logs
    // under the submission's trace too.
    let receiver = Receiver::start().await;
    support::eventually("the notifier takes a webhook endpoint", || async {
        let response = http.post(format!("http://{notifier_listen}/api/webhooks")).json(&json!({"url": receiver.url("ok")})).send().await.ok()?;
        (response.status() == StatusCode::CREATED).then_some(())
    })
    .await;
    let submit = |traceparent: Option<&'static str>| {
        let mut request = http.post(format!("http://{command_listen}/api/submissions")).json(&json!({"content": "traced text 12345"}));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request.send()
    };
    let response =
        support::eventually("the command API accepts", || async { submit(None).await.ok().filter(|r| r.status() == StatusCode::ACCEPTED) }).await;
    let started_here = response.headers()["traceparent"].to_str().unwrap().to_owned();
    let own_trace = trace_id_of(&started_here).to_owned();
    let own_id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let response = submit(Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(trace_id_of(response.headers()["traceparent"].to_str().unwrap()), CLIENT_TRACE_ID, "the client's trace continues");
    let client_id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert_ne!(own_trace, CLIENT_TRACE_ID);

    for (id, trace) in [(&own_id, own_trace.as_str()), (&client_id, CLIENT_TRACE_ID)] {
        // In the log: Created, ProcessingStarted and the verdict, each with the trace.
        let records = support::eventually("the verdict is in the log", || async {
            let records: Vec<_> =
                read_topic(&broker.kafka, &broker.kafka.topic).into_iter().filter(|r| r.key.as_deref() == Some(id.as_bytes())).collect();
            (records.len() == 3).then_some(records)
        })
        .await;
        for record in &records {
            let traceparent = record.headers.get("traceparent").unwrap_or_else(|| panic!("a traceparent on {record:?}"));
            assert_eq!(trace_id_of(traceparent), trace, "{record:?}");
        }
        // In every component's log: each line about the submission carries the trace id.
        for role in ["command-api", "validator", "projector", "notifier"] {
            support::eventually(&format!("{role} logged about {id}"), || async {
                let log = std::fs::read_to_string(logs.join(format!("{role}.log"))).unwrap_or_default();
                let lines: Vec<_> = log.lines().filter(|line| line.contains(id.as_str())).collect();
                for line in &lines {
                    assert!(line.contains(&format!("trace_id={trace}")), "{role}: {line}");
                }
                (!lines.is_empty()).then_some(())
            })
            .await;
        }
        support::eventually("the verdict's webhook delivery is logged in the trace", || async {
            let log = std::fs::read_to_string(logs.join("notifier.log")).unwrap_or_default();
            log.lines().any(|line| line.contains("delivery attempted") && line.contains(&format!("trace_id={trace}"))).then_some(())
        })
        .await;
        // At the collector: spans of every component in the one trace.
        support::eventually(&format!("every component's spans of trace {trace} are exported"), || async {
            let services: BTreeSet<_> = spans.lock().unwrap().iter().filter(|(_, t, _)| t == trace).map(|(s, _, _)| s.clone()).collect();
            (services == BTreeSet::from(["command-api", "validator", "projector", "notifier"].map(String::from))).then_some(())
        })
        .await;
    }
    for component in &mut components {
        component.terminate(Duration::from_secs(20)).await;
    }
    db.drop_database().await;
    broker.stop().await;
}
