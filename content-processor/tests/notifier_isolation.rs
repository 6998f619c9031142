//! Nothing one owner's notifications do may slow or block another's: an endpoint that hangs
//! holds only its own owner's share of the sends; a record that can never be stored (a legacy
//! text with a NUL) is parked with the reason and the log goes on, and one of an account that
//! no longer exists leaves nothing behind; and a
//! delivery that can never succeed (its endpoint deleted) fails at once instead of being
//! retried for hours.

mod support;

use std::time::Duration;

use domain::{Envelope, Event};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::process::{free_port, log_dir, Component};
use support::receiver::Receiver;
use support::user::User;
use support::{eventually, Api, TestDb, TestKafka, TestSystem};
use uuid::Uuid;

/// Registers a webhook endpoint for `user` on the notifier at `base`; returns its id.
async fn add_endpoint(user: &User, base: &str, url: &str) -> String {
    let response = user.http.post(format!("{base}/api/webhooks")).json(&json!({ "url": url })).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

/// `user`'s deliveries to `endpoint`, as the notifier lists them.
async fn deliveries(user: &User, base: &str, endpoint: &str) -> Vec<Value> {
    let response = user.http.get(format!("{base}/api/deliveries?endpoint={endpoint}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone()
}

/// POSTs a submission as `user` to the command API at `base`; returns its id.
async fn submit(user: &User, base: &str, content: &str) -> String {
    let response = user.http.post(format!("{base}/api/submissions")).json(&json!({ "content": content })).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

/// The command API, a validator, the query API (for sign-up) and a notifier, each a process of
/// its own, with Alice and Bob signed up as ordinary users.
struct Notifying {
    broker: TestKafka,
    db: TestDb,
    command: String,
    notifications: String,
    notifier: Component,
    others: Vec<Component>,
    alice: User,
    bob: User,
}

impl Notifying {
    /// The notifier reaches PostgreSQL at `notifier_database` (the test's database, or a proxy of
    /// it) and takes `notifier_args` besides.
    async fn start(name: &str, notifier_database: impl FnOnce(&TestDb) -> String, notifier_args: &[&str]) -> Notifying {
        let broker = TestKafka::start(1, 3).await;
        let db = TestDb::create().await;
        let logs = log_dir(name);
        let kafka = ["--kafka-brokers", broker.kafka.bootstrap_servers(), "--kafka-partitions", "3"].map(String::from);
        let with = |extra: &[&str]| kafka.iter().cloned().chain(extra.iter().map(|s| s.to_string())).collect::<Vec<_>>();
        let (command_port, query_port, notifier_port) = (free_port(), free_port(), free_port());
        let [command, query, notifications] = [command_port, query_port, notifier_port].map(|port| format!("http://127.0.0.1:{port}"));
        let notifier_listen = format!("127.0.0.1:{notifier_port}");
        let notifier_database = notifier_database(&db);
        let mut notifier_flags = vec!["--database-url", notifier_database.as_str(), "--listen", notifier_listen.as_str(), "--allow-private-targets"];
        notifier_flags.extend_from_slice(notifier_args);
        let mut notifier = Component::new("notifier", with(&notifier_flags), &logs);
        let mut others = vec![
            Component::new("command-api", with(&["--database-url", &db.url, "--listen", &format!("127.0.0.1:{command_port}")]), &logs),
            Component::new("validator", with(&["--database-url", &db.url]), &logs),
            Component::new("query-api", vec!["--database-url".into(), db.url.clone(), "--listen".into(), format!("127.0.0.1:{query_port}")], &logs),
        ];
        others.iter_mut().for_each(Component::start);
        notifier.start();
        let plain = reqwest::Client::new();
        // Live, not ready: the query API is ready only with a read model, and no projector runs here.
        for base in [&query, &notifications] {
            eventually("the service answers", || async {
                plain.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status().is_success())
            })
            .await;
        }
        let accounts = Api { base: query, http: plain };
        let alice = User::sign_up(&accounts, "alice@example.com").await;
        let bob = User::sign_up(&accounts, "bob@example.com").await;
        // Bob warms up: late verdicts of these add nothing to what Alice is sent.
        support::wait_until_accepting(&bob.http, &format!("{command}/api/submissions")).await;
        Notifying { broker, db, command, notifications, notifier, others, alice, bob }
    }

    async fn stop(mut self) {
        self.notifier.kill().await;
        for component in &mut self.others {
            component.kill().await;
        }
        self.db.drop_database().await;
        self.broker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_whose_endpoints_hang_does_not_hold_up_anyone_else() {
    let receiver = Receiver::start().await;
    // Four sends at a time, so one account's share is one; a hanging send is given up only
    // after 30 s, longer than anyone else's verdict may take to arrive.
    let system = Notifying::start("notifier-isolation", |db| db.url.clone(), &["--concurrency", "4", "--send-timeout-ms", "30000"]).await;
    let (alice, bob, command, notifications) = (&system.alice, &system.bob, &system.command, &system.notifications);

    // Alice's endpoints hang: six deliveries that no answer ends until the test says so.
    let hanging = [add_endpoint(alice, notifications, &receiver.url("hang")).await, add_endpoint(alice, notifications, &receiver.url("hang")).await];
    for i in 0..3 {
        submit(alice, command, &format!("alice's text {i} 12345")).await;
    }
    receiver.wait_for("alice's deliveries are being sent", |r| r.iter().any(|r| r.path == "hang")).await;

    // Bob's verdict reaches Bob while every one of Alice's sends is still hanging.
    add_endpoint(bob, notifications, &receiver.url("ok")).await;
    let bobs = submit(bob, command, "bob's text 12345").await;
    receiver.wait_for("bob's verdict is delivered", |r| r.iter().any(|r| r.path == "ok" && r.json()["data"]["submission_id"] == bobs.as_str())).await;
    for endpoint in &hanging {
        for delivery in deliveries(alice, notifications, endpoint).await {
            assert_eq!(delivery["attempt_log"], json!([]), "no send of alice's has ended yet: {delivery}");
        }
    }

    // Once her endpoints answer, Alice gets all six: held up, never lost.
    receiver.release_hanging();
    eventually("alice's deliveries are all delivered", || async {
        let mut delivered = 0;
        for endpoint in &hanging {
            delivered += deliveries(alice, notifications, endpoint).await.iter().filter(|d| d["state"] == "delivered").count();
        }
        (delivered == 6).then_some(())
    })
    .await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_whose_database_is_away_still_stops_on_sigterm() {
    let receiver = Receiver::start().await;
    let postgres = support::admin_url().trim_start_matches("postgres://postgres@").parse().expect("host:port of PostgreSQL");
    let proxy = support::CuttableProxy::start(postgres).await;
    let mut system = Notifying::start("notifier-sigterm", |db| db.url_via(proxy.addr), &[]).await;
    add_endpoint(&system.alice, &system.notifications, &receiver.url("hang")).await;
    submit(&system.alice, &system.command, "alice's text 12345").await;
    receiver.wait_for("the delivery is being sent", |r| r.iter().any(|r| r.path == "hang")).await;

    // The database goes away while the send is in flight; then the send ends, and its outcome
    // cannot be recorded. SIGTERM must still stop the notifier (its Deployment would otherwise
    // be killed at the end of its grace period, every time the database has a bad moment).
    proxy.cut();
    receiver.release_hanging();
    let status = system.notifier.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "the notifier exits cleanly: {status}");
    proxy.restore();
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_can_never_be_notified_is_set_aside_and_everyone_else_is_still_told() {
    let receiver = Receiver::start().await;
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.allow_private_webhook_targets = true;
    config.notifier_retry_base_ms = Some(1_000);
    let system = TestSystem::start_with(db, config).await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let ok = add_endpoint(&alice, &system.api.base, &receiver.url("ok")).await;

    // A submission of an account that does not exist (deleted before its record was read):
    // there is nobody to tell, so nothing is awaited for it.
    let ghost_submission = Uuid::now_v7();
    let created = |owner, text: &str| Event::SubmissionCreated {
        content: domain::Content::Plain(text.into()),
        owner_id: Some(owner),
        batch: None,
        replaces: None,
    };
    let envelope = Envelope::new(ghost_submission, created(Uuid::new_v4(), "a ghost's text 12345"), chrono::Utc::now(), Uuid::new_v4());
    let publisher = kafka_kit::EventPublisher::new(&system.running.kafka, Duration::from_secs(10)).unwrap();
    let ghost = publisher.publish(&envelope).await.unwrap();
    // A record of Alice's from before the command API refused NUL: its text can never be stored.
    let poison_submission = Uuid::now_v7();
    let owner = alice.id.parse().unwrap();
    let envelope = Envelope::new(poison_submission, created(owner, "a NUL \0 in the text 12345"), chrono::Utc::now(), Uuid::new_v4());
    publisher.publish(&envelope).await.unwrap();
    // The notifier sets it aside, with why (before, it retried it for ever).
    let pool = system.db.pool().await;
    let parked: Vec<(Uuid, String)> = eventually("the record with a NUL is parked", || async {
        let parked: Vec<(Uuid, String)> = sqlx::query_as("SELECT submission_id, reason FROM notifier.parked_records").fetch_all(&pool).await.ok()?;
        (!parked.is_empty()).then_some(parked)
    })
    .await;

    // The ghost's record read too, before anything is said of it.
    support::wait_until_group_has_read(&system.running.kafka, "notifier", &[(ghost.partition, ghost.offset + 1)]).await;

    // Alice's verdicts, read after it, are still told.
    let id = alice.submit(&system, "alice's text 12345").await["id"].as_str().unwrap().to_owned();
    receiver.wait_for("alice's verdict is delivered", |r| r.iter().any(|r| r.json()["data"]["submission_id"] == id.as_str())).await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].0, poison_submission);
    assert!(parked[0].1.contains("0x00"), "the reason says why: {}", parked[0].1);
    let ghost_awaited: i64 = sqlx::query_scalar("SELECT count(*) FROM notifier.awaited_verdicts WHERE submission_id = $1")
        .bind(ghost_submission)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(ghost_awaited, 0, "nothing is awaited for an account that does not exist");
    // Admins see it on the operations API, counted on the dashboard; Alice, no admin, does not.
    let (status, shown) = system.get_json("/admin/parked-records").await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!((shown["count"].as_i64(), shown["latest"][0]["submission_id"].as_str()), (Some(1), Some(poison_submission.to_string().as_str())));
    assert!(shown["latest"][0]["reason"].as_str().unwrap().contains("0x00"), "{shown}");
    assert_eq!(system.get_json("/admin/overview").await.1["parked_records"], 1);
    assert_eq!(alice.get(&system, "/admin/parked-records").await.0, StatusCode::FORBIDDEN);

    // An endpoint deleted while its delivery waits for a retry: failed at the next attempt,
    // not retried through every backoff.
    let down = add_endpoint(&alice, &system.api.base, &receiver.url("down")).await;
    alice.submit(&system, "alice's second text 12345").await;
    eventually("the first attempt to the endpoint that is down failed", || async {
        let deliveries = deliveries(&alice, &system.api.base, &down).await;
        deliveries.iter().any(|d| d["attempts"].as_i64() >= Some(1)).then_some(())
    })
    .await;
    let response = alice.http.delete(system.url(&format!("/api/webhooks/{down}"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let failed = eventually("the delivery to the deleted endpoint is failed", || async {
        let deliveries = deliveries(&alice, &system.api.base, &down).await;
        deliveries.into_iter().find(|d| d["state"] == "failed")
    })
    .await;
    let refusals = failed["attempt_log"].as_array().unwrap().iter().filter(|a| a["error"] == "the endpoint was deleted").count();
    assert_eq!(refusals, 1, "one attempt after the deletion, then no more: {failed}");
    assert_eq!(deliveries(&alice, &system.api.base, &ok).await.len(), 2, "the other endpoint got both");
    pool.close().await;
    system.stop().await;
}
