//! The command API under requests that race each other or walk away: concurrent requests
//! sharing an `Idempotency-Key` over the rate limit, batch clients that disconnect while their
//! transaction is open, and a database that fails to note an acknowledgement. Nothing refused
//! is published, nothing accepted is answered as failed, and one key is one submission.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::user::User;
use support::{TestDb, TestSystem};
use uuid::Uuid;

/// POSTs `content` as `user` with `key`; the status and the JSON body.
async fn post_with_key(user: &User, system: &TestSystem, content: &str, key: &str) -> (StatusCode, Value) {
    let response =
        user.http.post(system.url("/api/submissions")).header("idempotency-key", key).json(&json!({ "content": content })).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_sharing_a_key_over_the_limit_publish_nothing() {
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.accounts.submission_rate_limit = 1;
    let system = TestSystem::start_with(db, config).await;
    let user = User::sign_up(&system, "racer@example.com").await;
    user.submit(&system, "the one allowed 12345").await;

    // Twenty pairs: the two requests of a pair share a key and a content, and go at once.
    let pairs = (0..20).map(|pair| {
        let (user, system) = (&user, &system);
        async move {
            let (key, content) = (format!("pair-{pair}"), format!("pair {pair} 12345"));
            let (first, second) = tokio::join!(post_with_key(user, system, &content, &key), post_with_key(user, system, &content, &key));
            (key, content, [first, second])
        }
    });
    let answers = futures_util::future::join_all(pairs).await;
    for (key, _, pair) in &answers {
        for (status, body) in pair {
            // Refused by the limit, or told the key's first request is still being decided:
            // nothing over the limit is accepted, and nothing fails.
            let code = body["error"]["code"].as_str();
            assert!(
                matches!(
                    (*status, code),
                    (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")) | (StatusCode::CONFLICT, Some("idempotency_key_in_use"))
                ),
                "{key}: {status} {body}"
            );
        }
    }
    // A later retry of each key is refused as well: the limit is still spent.
    for (key, content, _) in &answers {
        let (status, body) = post_with_key(&user, &system, content, key).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{key}: {body}");
    }
    let in_log = support::submissions_in_log(&system.running.kafka, &system.db.url).await;
    for (key, content, _) in &answers {
        assert_eq!(in_log.get(content), None, "{key} published nothing");
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_clients_that_disconnect_mid_transaction_leave_nothing_open() {
    let mut system = TestSystem::start().await;
    let user = User::sign_up(&system, "impatient@example.com").await;
    let batch = |label: &str| json!({ "items": (0..50).map(|i| json!({ "content": format!("{label} {i} 12345") })).collect::<Vec<_>>() });
    let response = user.http.post(system.url("/api/batches")).json(&batch("warm-up")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED, "the batch producers are ready");

    // The broker freezes, so a batch's transaction stays open waiting for acknowledgements, and
    // its client gives up meanwhile: one such client per producer of the pool (two).
    let broker = system.kafka_node().pid(1).expect("the broker runs").to_string();
    let signal = |name: &str| assert!(std::process::Command::new("kill").args([name, &broker]).status().unwrap().success());
    signal("-STOP");
    let impatient = reqwest::Client::builder().default_headers(support::bearer(&user.token)).timeout(Duration::from_millis(500)).build().unwrap();
    for client in 0..2 {
        let gave_up = impatient.post(system.url("/api/batches")).json(&batch(&format!("impatient {client}"))).send().await;
        assert!(gave_up.is_err_and(|e| e.is_timeout()), "the client gave up while the broker was frozen");
    }
    signal("-CONT");

    // Every batch after them is accepted: no producer was left inside a transaction.
    for i in 0..4 {
        let response = user.http.post(system.url("/api/batches")).json(&batch(&format!("after {i}"))).send().await.unwrap();
        let status = response.status();
        assert_eq!(status, StatusCode::ACCEPTED, "batch {i} after the disconnects: {}", response.text().await.unwrap());
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_kafka_acknowledged_is_answered_202_though_its_key_cannot_be_noted() {
    let system = TestSystem::start().await;
    let user = User::sign_up(&system, "unlucky@example.com").await;
    let pool = system.db.pool().await;
    // The database refuses to note any acknowledgement, as it would if it went away right
    // after Kafka acknowledged.
    sqlx::raw_sql(
        "CREATE FUNCTION commands.refuse_acknowledgement() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'the database is gone'; END $$;
         CREATE TRIGGER refuse_acknowledgement BEFORE UPDATE ON commands.idempotency_keys
         FOR EACH ROW WHEN (NEW.acknowledged_at IS NOT NULL) EXECUTE FUNCTION commands.refuse_acknowledgement();",
    )
    .execute(&pool)
    .await
    .unwrap();

    let (status, body) = post_with_key(&user, &system, "acknowledged 12345", "unlucky-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "Kafka has it, so the client is told so: {body}");
    let id = body["id"].as_str().unwrap().to_owned();
    system.wait_for_verdict(&id).await;

    // A retry under the key is the same submission (its events published again, folded once).
    let (status, retried) = post_with_key(&user, &system, "acknowledged 12345", "unlucky-1").await;
    assert_eq!((status, retried["id"].as_str()), (StatusCode::ACCEPTED, Some(id.as_str())));
    let in_log = support::submissions_in_log(&system.running.kafka, &system.db.url).await;
    assert_eq!(in_log["acknowledged 12345"], HashSet::from([id.parse::<Uuid>().unwrap()]));
    pool.close().await;
    system.stop().await;
}

/// A request that stalled past the takeover of its key (its claim left unadmitted 10 s) may
/// neither give the key up nor admit it: only the request that took the claim over may. Before
/// claims had ids, the stalled one's refusal deleted the other's claim, and a later retry of the
/// key published a second submission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_taken_over_belongs_to_the_request_that_took_it() {
    use command_api::idempotency::{self, Claim, Recorded};
    let db = TestDb::create().await;
    let pool = db.pool().await;
    accounts::migrate(&pool).await.unwrap();
    idempotency::migrate(&pool).await.unwrap();
    let account: Uuid = sqlx::query_scalar(
        "INSERT INTO accounts.accounts (id, email, password_hash) VALUES (gen_random_uuid(), 'stalled@example.com', 'x') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let digest = idempotency::request_digest([&b"the same request"[..]]);
    let Ok(Claim::New(_, stalled)) = idempotency::claim(&pool, account, "k", &digest, Recorded::fresh(Uuid::new_v4())).await else {
        panic!("a first claim")
    };
    // The first request stalls: its claim is abandoned in the eyes of the next.
    sqlx::query("UPDATE commands.idempotency_keys SET claimed_at = now() - interval '11 seconds'").execute(&pool).await.unwrap();
    let Ok(Claim::New(_, current)) = idempotency::claim(&pool, account, "k", &digest, Recorded::fresh(Uuid::new_v4())).await else {
        panic!("a takeover")
    };
    assert_ne!(stalled, current);

    // The stalled request, refused by the limit, gives up nothing; it may not admit either.
    idempotency::release(&pool, account, "k", stalled).await.unwrap();
    assert!(matches!(idempotency::admit(&pool, account, "k", stalled).await, Err(command_api::ApiError::IdempotencyKeyInUse)));
    // The request holding the claim admits it, and from then on the key is a retry of it.
    idempotency::admit(&pool, account, "k", current).await.unwrap();
    assert!(matches!(idempotency::claim(&pool, account, "k", &digest, Recorded::fresh(Uuid::new_v4())).await, Ok(Claim::Retry(_))));

    // Past its lifetime the key is new again, for another request too, sweep or no sweep.
    sqlx::query("UPDATE commands.idempotency_keys SET created_at = created_at - interval '25 hours'").execute(&pool).await.unwrap();
    let other = idempotency::request_digest([&b"another request"[..]]);
    assert!(matches!(idempotency::claim(&pool, account, "k", &other, Recorded::fresh(Uuid::new_v4())).await, Ok(Claim::New(..))));
    pool.close().await;
    db.drop_database().await;
}
