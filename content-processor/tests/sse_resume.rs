//! A client that drops its SSE connection and reconnects with `Last-Event-ID` gets exactly the
//! events it missed, then live ones: every event once, in order. An id it cannot resume from
//! gets a `reset` telling it to reload over REST.

mod support;

use std::future::IntoFuture;

use support::user::User;
use support::{read_sse, Api, SseConnection, TestSystem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_last_event_id_delivers_every_event_exactly_once() {
    let system = TestSystem::start().await;
    let url = system.url("/api/stream");

    // First connection: sees the start of the stream, then drops.
    let first = SseConnection::open(&system.http, &url, None).await;
    for i in 0..3 {
        system.submit(&format!("before the drop {i}")).await;
    }
    let first = first.read(4).await;
    let last_seen = first.last().unwrap().id.clone();

    // Missed while disconnected.
    let mut missed_ids = Vec::new();
    for i in 0..2 {
        let (_, accepted) = system.submit(&format!("while away {i}")).await;
        missed_ids.push(accepted["id"].as_str().unwrap().to_owned());
    }
    for id in &missed_ids {
        system.wait_for_verdict(id).await;
    }

    // Reconnect: 5 submissions x 3 events = 15, 4 seen, 11 missed; then 3 live ones.
    let second = SseConnection::open(&system.http, &url, Some(&last_seen)).await;
    system.submit("after the reconnect 1").await;
    let second = second.read(11 + 3).await;

    let pool = system.db.pool().await;
    let all: Vec<(i32, i64, String)> =
        sqlx::query_as("SELECT generation, seq, status FROM submission_events ORDER BY seq").fetch_all(&pool).await.unwrap();
    let expected: Vec<(String, String)> = all.iter().map(|(g, s, status)| (format!("{g}-{s}"), status.clone())).collect();
    let received: Vec<(String, String)> =
        first.iter().chain(&second).map(|e| (e.id.clone(), e.data["status"].as_str().unwrap().to_owned())).collect();
    assert!(second.iter().all(|e| e.event == "status"));
    assert_eq!(received, expected, "every event exactly once, in order, across the reconnect");
    pool.close().await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_from_another_read_model_generation_gets_a_reset_then_the_live_stream() {
    let system = TestSystem::start().await;
    let (_, accepted) = system.submit("some history 1").await;
    system.wait_for_verdict(accepted["id"].as_str().unwrap()).await;

    let reader = SseConnection::open(&system.http, &system.url("/api/stream"), Some("7-2")).await;
    let (_, live) = system.submit("after the reset 2").await;
    let events = reader.read(1 + 3).await;

    assert_eq!(events[0].event, "reset");
    assert_eq!(events[0].data["generation"], 1);
    assert_eq!(events[0].id, "1-3", "the reset carries a position the client can resume from");
    assert!(events[1..].iter().all(|e| e.event == "status" && e.data["submission_id"] == live["id"]));

    // For one submission, a stale id means: reset, then its whole history again.
    let id = accepted["id"].as_str().unwrap();
    let events = read_sse(&system.http, &system.url(&format!("/api/submissions/{id}/stream")), Some("7-2"), 4).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["reset", "status", "status", "status"]);
    assert_eq!(events[0].id, "1-0");
    system.stop().await;
}

/// Behind several query-api replicas a browser's reconnect may reach any of them. An id one
/// replica sent resumes on another, even one whose hub has not yet heard of that change: no
/// reset, every event once, in order, while submissions flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_on_another_replica_gets_no_reset_and_misses_nothing() {
    let system = TestSystem::start().await;
    let mut replica = query_api::Config::new(&system.db.url);
    replica.listen = format!("127.0.0.1:{}", support::process::free_port()).parse().unwrap();
    let replica_url = format!("http://{}/api/stream", replica.listen);
    let replica_shutdown = system.shutdown.child_token();
    let replica_task = tokio::spawn(query_api::run(replica, replica_shutdown.clone()));
    support::eventually("the second replica serves", || async {
        let ready = system.http.get(replica_url.replace("/api/stream", "/readyz")).send().await;
        ready.is_ok_and(|response| response.status().is_success()).then_some(())
    })
    .await;
    let replicas = [system.url("/api/stream"), replica_url];

    let writer = {
        let api = system.api.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..40 {
                let (_, accepted) = api.submit(&format!("resumed elsewhere {i}")).await;
                ids.push(accepted["id"].as_str().unwrap().to_owned());
            }
            ids
        })
    };
    // Hop between the replicas: read a few events from one, resume on the other.
    let mut received: Vec<support::SseEvent> = Vec::new();
    for hop in 0..60 {
        let last = received.last().map(|event| event.id.clone());
        let connection = SseConnection::open(&system.http, &replicas[hop % 2], last.as_deref()).await;
        received.extend(connection.read(1).await);
    }
    for id in writer.await.unwrap() {
        system.wait_for_verdict(&id).await;
    }
    let pool = system.db.pool().await;
    let expected = event_ids(&pool).await;
    let last = received.last().map(|event| event.id.clone());
    let rest = SseConnection::open(&system.http, &replicas[0], last.as_deref()).await;
    received.extend(rest.read(expected.len().saturating_sub(received.len())).await);

    let resets: Vec<&str> = received.iter().filter(|event| event.event != "status").map(|event| event.id.as_str()).collect();
    assert!(resets.is_empty(), "no reset on a healthy read model, got them at {resets:?}");
    // The first connection started from "now": it saw the stream from wherever that was.
    let received: Vec<&str> = received.iter().map(|event| event.id.as_str()).collect();
    let skipped = expected.len() - received.len();
    assert_eq!(received, expected[skipped..], "every event once, in order, across replicas");
    pool.close().await;
    replica_shutdown.cancel();
    replica_task.await.unwrap().unwrap();
    system.stop().await;
}

/// A query API whose hub has not read the database yet (a replica just started, or whose first
/// read failed) serves an owner's stream. Changes committed after that stream read the table
/// and before the hub's first read are delivered too, then the live ones, each once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_stream_opened_before_the_hubs_first_read_misses_nothing() {
    let system = TestSystem::start().await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let history = alice.submit(&system, "before the replica started 1").await;
    system.wait_for_verdict(history["id"].as_str().unwrap()).await;

    // Another query API over the same database, its hub not listening yet.
    let pool = system.db.pool().await;
    let config = query_api::Config::new(&system.db.url);
    let hub = query_api::ChangeHub::default();
    let shutdown = system.shutdown.child_token();
    let state = query_api::AppState {
        pool: pool.clone(),
        accounts: accounts::Accounts::new(pool.clone(), config.accounts.clone()),
        changes: hub.clone(),
        streams: query_api::per_account::Slots::new(query_api::per_account::STREAMS),
        waits: query_api::per_account::Slots::new(query_api::per_account::WAITS),
        shutdown: shutdown.clone(),
        ui: query_api::http::ui::UiSettings::new(&config),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let replica = Api { base: format!("http://{}", listener.local_addr().unwrap()), http: alice.http.clone() };
    let server = axum::serve(listener, query_api::router(state)).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let server = tokio::spawn(server.into_future());

    // Alice's stream resumes just before her last change: receiving that change means the
    // stream has read the table, so whatever commits from here on must come through the hub.
    let ids = event_ids(&pool).await;
    let mut stream = SseConnection::open(&alice.http, &replica.url("/api/stream"), Some(&ids[ids.len() - 2])).await;
    let mut received = stream.next_events(|events| !events.is_empty()).await;

    let missed = alice.submit(&system, "before the hub's first read 2").await;
    system.wait_for_verdict(missed["id"].as_str().unwrap()).await;
    tokio::spawn(hub.listen(pool.clone(), shutdown.clone()));
    let live = alice.submit(&system, "after the hub's first read 3").await;
    received.extend(stream.next_events(|events| events.iter().any(|e| e.data["submission_id"] == live["id"] && e.data["status"] == "PASSED")).await);

    let expected = event_ids(&pool).await;
    let received: Vec<&str> = received.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(received, expected[ids.len() - 1..], "every change after the resumed one, once, in order");
    shutdown.cancel();
    server.await.unwrap().unwrap();
    pool.close().await;
    system.stop().await;
}

/// A user's own feed in the hub holds only a few changes; a burst of more (a batch) makes the
/// stream fall behind it, and it catches up from the table: every change once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_owners_feed_reaches_the_stream_once_and_in_order() {
    let system = TestSystem::start().await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let first = alice.submit(&system, "before the burst 1").await;
    system.wait_for_verdict(first["id"].as_str().unwrap()).await;

    // Resumed just before her last change: once that change arrives, the stream is live.
    let pool = system.db.pool().await;
    let ids = event_ids(&pool).await;
    let mut stream = SseConnection::open(&alice.http, &system.url("/api/stream"), Some(&ids[ids.len() - 2])).await;
    let mut received = stream.next_events(|events| !events.is_empty()).await;

    let items: Vec<_> = (0..40).map(|i| serde_json::json!({ "content": format!("burst item {i}") })).collect();
    let response = alice.http.post(system.url("/api/batches")).json(&serde_json::json!({ "items": items })).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    // 40 items, three changes each.
    received.extend(stream.next_events(|events| events.len() >= 120).await);

    let expected = event_ids(&pool).await;
    let received: Vec<&str> = received.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(received, expected[ids.len() - 1..], "every change after the resumed one, once, in order");
    pool.close().await;
    system.stop().await;
}

/// The SSE ids of every change in the read model, in order.
async fn event_ids(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT generation || '-' || seq FROM submission_events ORDER BY seq").fetch_all(pool).await.unwrap()
}
