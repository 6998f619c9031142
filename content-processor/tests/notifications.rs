//! Notifications against real peers: a real SMTP server (aiosmtpd) and a real HTTP receiver on
//! loopback. A verdict is told by email and by signed webhook (one message per batch), failed
//! deliveries are retried with the same `webhook-id` until a limit, every attempt is visible in
//! the API, channels can be turned off; and after SIGKILLs of the notifier process at random
//! moments under load, every verdict is still told, duplicates counted.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::mail::{Mail, SmtpServer};
use support::process::{free_port, log_dir, Component};
use support::receiver::{Received, Receiver};
use support::user::User;
use support::{TestDb, TestKafka, TestSystem};

/// The endpoint as the API created it: its id and the secret shown once.
async fn add_endpoint(http: &reqwest::Client, base: &str, url: &str) -> (String, String) {
    let response = http.post(format!("{base}/api/webhooks")).json(&json!({ "url": url, "description": "tests" })).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    (created["id"].as_str().unwrap().to_owned(), secret)
}

/// Checks the Standard Webhooks signature of `received` with `secret`.
fn assert_signed(received: &Received, secret: &str) {
    let verifier = standardwebhooks::Webhook::new(secret).unwrap();
    verifier.verify(&received.body, &received.headers).unwrap_or_else(|e| panic!("signature of {}: {e}", received.webhook_id()));
    assert!(received.webhook_id().starts_with("msg_"));
}

/// The messages that are not links to verify an address (everyone who signs up gets one).
fn verdict_mails(mails: &[Mail]) -> Vec<Mail> {
    mails.iter().filter(|m| m.headers["subject"] != "Confirm your email address").cloned().collect()
}

fn of_type<'a>(received: &'a [Received], event_type: &str) -> Vec<&'a Received> {
    received.iter().filter(|r| r.json()["type"] == event_type).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_are_told_by_email_and_signed_webhook_with_retries_visible() {
    let smtp = SmtpServer::start().await;
    let receiver = Receiver::start().await;
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.smtp_url = Some(smtp.url().into());
    config.allow_private_webhook_targets = true;
    config.notifier_retry_base_ms = Some(200);
    config.notifier_max_attempts = Some(3);
    let system = TestSystem::start_with(db, config).await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let bob = User::sign_up(&system, "bob@example.com").await;
    alice.verify_email(&system, &smtp).await;
    let (_, secret) = add_endpoint(&alice.http, &system.api.base, &receiver.url("flaky")).await;
    let (down_id, _) = add_endpoint(&alice.http, &system.api.base, &receiver.url("down")).await;

    // One submission: one email, one webhook per endpoint (the flaky one on its second try).
    let submitted = alice.submit(&system, "this passes 12345").await;
    let id = submitted["id"].as_str().unwrap().to_owned();
    let received = receiver.wait_for("the verdict's webhook is delivered", |r| r.iter().any(|r| r.path == "flaky" && r.status.is_success())).await;
    let flaky: Vec<_> = received.iter().filter(|r| r.path == "flaky").collect();
    assert_eq!(flaky.len(), 2, "a 503, then the retry");
    assert_eq!(flaky[0].webhook_id(), flaky[1].webhook_id(), "a retry keeps its webhook-id");
    for request in &flaky {
        assert_signed(request, &secret);
    }
    let body = flaky[1].json();
    assert_eq!(body["type"], "submission.judged");
    assert_eq!(body["data"]["submission_id"].as_str(), Some(id.as_str()));
    assert_eq!(body["data"]["status"], "PASSED");
    let mails = verdict_mails(&smtp.wait_for("the verdict's email arrives", |m| !verdict_mails(m).is_empty()).await);
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].headers["to"], "alice@example.com");
    assert_eq!(mails[0].headers["subject"], "Your submission passed");
    assert!(mails[0].body.contains(&id), "{}", mails[0].body);
    assert!(!mails[0].body.contains("this passes 12345"), "the email does not repeat the submitted text: {}", mails[0].body);

    // A batch: one message when its last item is judged, not one per item.
    let response = alice
        .http
        .post(system.url("/api/batches"))
        .json(&json!({"items": [{"content": "short"}, {"content": "long enough 12345"}, {"content": "no digits here at all"}]}))
        .send()
        .await
        .unwrap();
    let (status, body) = (response.status(), response.json::<Value>().await.unwrap());
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let batch_id = body["id"].as_str().unwrap().to_owned();
    let received =
        receiver.wait_for("the batch's webhook is delivered", |r| of_type(r, "batch.completed").iter().any(|r| r.status.is_success())).await;
    let completed = of_type(&received, "batch.completed");
    let delivered: Vec<_> = completed.iter().filter(|r| r.path == "flaky" && r.status.is_success()).collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].json()["data"], json!({"batch_id": batch_id, "size": 3, "passed": 1, "failed": 2}));
    smtp.wait_for("the batch's email arrives", |m| m.iter().any(|m| m.headers["subject"].contains("batch of 3"))).await;
    assert_eq!(
        of_type(&received, "submission.judged").iter().filter(|r| r.path == "flaky" && r.status.is_success()).count(),
        1,
        "no message per item"
    );

    // Every attempt is visible: the endpoint that is down failed 3 times, then gave up.
    let deliveries = support::eventually("the down endpoint's delivery is marked failed", || async {
        let (_, page) = alice.get(&system, &format!("/api/deliveries?endpoint={down_id}")).await;
        let items = page["items"].as_array()?.clone();
        (items.len() == 2 && items.iter().all(|d| d["state"] == "failed")).then_some(items)
    })
    .await;
    for delivery in &deliveries {
        let attempts: Vec<_> =
            delivery["attempt_log"].as_array().unwrap().iter().map(|a| (a["attempt"].as_i64(), a["status_code"].as_i64())).collect();
        assert_eq!(attempts, [(Some(1), Some(500)), (Some(2), Some(500)), (Some(3), Some(500))], "{delivery}");
        assert!(delivery["last_error"].as_str().unwrap().contains("500"));
    }
    let (_, all) = alice.get(&system, "/api/deliveries").await;
    let email = all["items"].as_array().unwrap().iter().find(|d| d["channel"] == "email").unwrap().clone();
    assert_eq!((email["state"].as_str(), email["attempts"].as_i64()), (Some("delivered"), Some(1)));

    // A test event, on demand.
    let (down_count, ok_secret) = (receiver.received().len(), add_endpoint(&alice.http, &system.api.base, &receiver.url("ok")).await);
    let response = alice.http.post(system.url(&format!("/api/webhooks/{}/test", ok_secret.0))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let received = receiver.wait_for("the test event arrives", |r| of_type(r, "webhook.test").iter().any(|r| r.path == "ok")).await;
    assert!(received.len() > down_count);
    assert_signed(of_type(&received, "webhook.test").iter().find(|r| r.path == "ok").unwrap(), &ok_secret.1);

    // Bob turns email off: his verdict makes no delivery; he cannot see or use Alice's endpoints.
    let response = bob.http.put(system.url("/api/notification-settings")).json(&json!({"email": false})).send().await.unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["email"], false);
    let bobs = bob.submit(&system, "bob's text 1234567").await;
    system.wait_for_verdict(bobs["id"].as_str().unwrap()).await;
    assert_eq!(bob.get(&system, "/api/webhooks").await.1["items"], json!([]));
    let response = bob.http.post(system.url(&format!("/api/webhooks/{}/test", ok_secret.0))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // Alice's next verdict is mailed after Bob's was judged: had Bob's been mailed, it would be there by then.
    let alices = alice.submit(&system, "alice again 1234567").await;
    let alices_id = alices["id"].as_str().unwrap().to_owned();
    system.wait_for_verdict(&alices_id).await;
    let mails = smtp.wait_for("alice's second verdict is mailed", |m| m.iter().any(|m| m.body.contains(&alices_id))).await;
    assert!(verdict_mails(&mails).iter().all(|m| m.headers["to"] == "alice@example.com"), "nothing mailed to Bob");
    assert_eq!(bob.get(&system, "/api/deliveries").await.1["items"], json!([]));

    // Bad input is refused with a clear error and changes nothing.
    for (body, code) in
        [(json!({"url": "ftp://example.com/x"}), "url_refused"), (json!({"url": 5}), "invalid_body"), (json!({"nope": 1}), "invalid_body")]
    {
        let response = alice.http.post(system.url("/api/webhooks")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], code, "{body}");
    }
    assert_eq!(alice.get(&system, "/api/webhooks").await.1["items"].as_array().unwrap().len(), 3);
    system.stop().await;
}

/// With the SSRF guard on, as in production: a URL that points inside the network is refused
/// when registered, and one that pointed elsewhere when registered but now reaches an internal
/// address (DNS rebinding, or an address written straight into the table) gets no request at
/// delivery either: the attempts say why, and nothing reaches the internal receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_cannot_reach_internal_addresses_when_registered_or_when_sent() {
    let receiver = Receiver::start().await;
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.notifier_retry_base_ms = Some(200);
    config.notifier_max_attempts = Some(2);
    let system = TestSystem::start_with(db, config).await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let port = receiver.url("").split(':').next_back().unwrap().trim_end_matches('/').to_owned();
    for url in [
        receiver.url("direct"),
        format!("http://localhost:{port}/by-name"),
        format!("http://[::ffff:127.0.0.1]:{port}/mapped"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
    ] {
        let response = alice.http.post(system.url("/api/webhooks")).json(&json!({ "url": url })).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "url_refused", "{url}");
    }
    assert_eq!(alice.get(&system, "/api/webhooks").await.1["items"], json!([]));

    // Endpoints that passed the check once and now lead inside: by a name that resolves to
    // loopback, and by an address.
    let pool = system.db.pool().await;
    for path in ["rebound", "literal"] {
        let url = match path {
            "rebound" => format!("http://localhost:{port}/{path}"),
            _ => receiver.url(path),
        };
        sqlx::query("INSERT INTO notifier.webhook_endpoints (id, account_id, url, secret) VALUES ($1, $2, $3, $4)")
            .bind(uuid::Uuid::new_v4())
            .bind(uuid::Uuid::parse_str(&alice.id).unwrap())
            .bind(url)
            .bind(notifier::webhook::new_secret())
            .execute(&pool)
            .await
            .unwrap();
    }
    let submitted = alice.submit(&system, "judged and not sent inside 1").await;
    system.wait_for_verdict(submitted["id"].as_str().unwrap()).await;
    let deliveries = support::eventually("both deliveries give up", || async {
        let (_, page) = alice.get(&system, "/api/deliveries").await;
        let items: Vec<Value> = page["items"].as_array()?.iter().filter(|d| d["channel"] == "webhook").cloned().collect();
        (items.len() == 2 && items.iter().all(|d| d["state"] == "failed")).then_some(items)
    })
    .await;
    for delivery in &deliveries {
        let error = delivery["last_error"].as_str().unwrap();
        assert!(error.contains("no public address") || error.contains("not a public address"), "{delivery}");
        assert!(delivery["attempt_log"].as_array().unwrap().iter().all(|a| a["status_code"].is_null()), "{delivery}");
    }
    assert!(receiver.received().is_empty(), "no request reached the internal receiver: {:?}", receiver.received().len());
    pool.close().await;
    system.stop().await;
}

/// How many submissions the kill test sends.
const SUBMISSIONS: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verdict_is_told_though_the_notifier_is_killed_at_random_moments() {
    let (_, mut rng) = support::crash_seed("notifier kill");
    let smtp = SmtpServer::start().await;
    let receiver = Receiver::start().await;
    let broker = TestKafka::start(1, 3).await;
    let db = TestDb::create().await;
    let token = support::admin_token(&db.url).await;
    let http = reqwest::Client::builder().default_headers(support::bearer(&token)).timeout(Duration::from_secs(10)).build().unwrap();
    let logs = log_dir("notifier-kill");
    let kafka = ["--kafka-brokers", broker.kafka.bootstrap_servers(), "--kafka-partitions", "3"].map(String::from);
    let with = |extra: &[String]| kafka.iter().chain(extra).cloned().collect::<Vec<_>>();
    let (command_port, notifier_port) = (free_port(), free_port());
    let mut command_api = Component::new(
        "command-api",
        with(&["--database-url".into(), db.url.clone(), "--listen".into(), format!("127.0.0.1:{command_port}")]),
        &logs,
    );
    let mut validator = Component::new("validator", with(&["--database-url".into(), db.url.clone()]), &logs);
    let mut notifier = Component::new(
        "notifier",
        with(&[
            "--database-url".into(),
            db.url.clone(),
            "--listen".into(),
            format!("127.0.0.1:{notifier_port}"),
            "--smtp-url".into(),
            smtp.url(),
            "--allow-private-targets".into(),
            "--retry-base-ms".into(),
            "200".into(),
            // A send cut off by a kill is retried once its lease (twice this, plus 5 s) is over.
            "--send-timeout-ms".into(),
            "2000".into(),
        ]),
        &logs,
    );
    command_api.start();
    validator.start();
    notifier.start();
    let notifier_base = format!("http://127.0.0.1:{notifier_port}");
    support::eventually("the notifier answers", || async {
        http.get(format!("{notifier_base}/readyz")).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;
    let (_, secret) = add_endpoint(&http, &notifier_base, &receiver.url("ok")).await;

    // Submissions flow while the notifier is killed and restarted at random moments.
    let submitter = {
        let (http, url) = (http.clone(), format!("http://127.0.0.1:{command_port}/api/submissions"));
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..SUBMISSIONS {
                let id = support::eventually("the command API accepts", || async {
                    let response = http.post(&url).json(&json!({ "content": format!("text {i} 1234567890") })).send().await.ok()?;
                    let body: Value = response.json().await.ok()?;
                    body["id"].as_str().map(str::to_owned)
                })
                .await;
                ids.push(id);
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            ids
        })
    };
    let mut kills = 0;
    while !submitter.is_finished() {
        tokio::time::sleep(Duration::from_millis(rng.u64(100..800))).await;
        notifier.kill().await;
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rng.u64(0..300))).await;
        notifier.start();
    }
    let ids: HashSet<String> = submitter.await.unwrap().into_iter().collect();
    assert_eq!(ids.len(), SUBMISSIONS);

    let told_by_webhook = |received: &[Received]| -> HashMap<String, usize> {
        let mut told = HashMap::new();
        for request in received {
            *told.entry(request.json()["data"]["submission_id"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        }
        told
    };
    let received = receiver.wait_for("every verdict reaches the webhook", |r| ids.iter().all(|id| told_by_webhook(r).contains_key(id))).await;
    let mails = smtp.wait_for("every verdict is mailed", |m| ids.iter().all(|id| m.iter().any(|m| m.body.contains(id.as_str())))).await;
    for request in &received {
        assert_signed(request, &secret);
    }
    // Duplicates are the same delivery sent again (same webhook-id / Message-ID): a kill landed
    // between sending it and recording that it was sent.
    let webhook_ids: HashSet<&str> = received.iter().map(Received::webhook_id).collect();
    let message_ids: HashSet<&str> = mails.iter().map(|m| m.headers["message-id"].as_str()).collect();
    assert_eq!(webhook_ids.len(), SUBMISSIONS, "one webhook delivery per verdict");
    assert_eq!(message_ids.len(), SUBMISSIONS, "one email per verdict");
    let duplicates = (received.len() - webhook_ids.len()) + (mails.len() - message_ids.len());
    println!(
        "{kills} kills; {duplicates} duplicate sends ({} webhook, {} email)",
        received.len() - webhook_ids.len(),
        mails.len() - message_ids.len()
    );
    // At most the sends in flight at each kill (16 at a time per channel worker).
    assert!(duplicates <= kills * 16, "{duplicates} duplicates from {kills} kills");
    assert!(kills >= 3, "the notifier was killed while submissions flowed");
    notifier.kill().await;
    command_api.kill().await;
    validator.kill().await;
    db.drop_database().await;
    broker.stop().await;
}

/// The cap on endpoints holds when a client registers many at once: each request counts and
/// inserts under the account's lock (two counting together both saw room for one more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_cap_holds_under_concurrent_registrations() {
    let system = TestSystem::start_with_loopback_webhooks().await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let attempts = (0..20).map(|i| {
        let (http, url) = (alice.http.clone(), system.url("/api/webhooks"));
        async move { http.post(url).json(&json!({ "url": format!("http://127.0.0.1:9/{i}") })).send().await.unwrap().status() }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    assert_eq!(created, 10, "{statuses:?}");
    assert!(statuses.iter().all(|s| matches!(*s, StatusCode::CREATED | StatusCode::CONFLICT)), "{statuses:?}");
    let (_, listed) = alice.get(&system, "/api/webhooks").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(10), "{listed}");
    system.stop().await;
}
