//! Accounts tested as an attacker would: two users over REST and both SSE streams, forged,
//! expired, revoked and foreign credentials, cross-site requests, brute-force sign-in, bad
//! credentials; rate limits across two command-api replicas; Idempotency-Key; reading a
//! submission the moment its 202 arrives.

mod support;

use std::time::Duration;

use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use support::user::{User, PASSWORD};
use support::{SseConnection, TestSystem};

/// How many submissions the log holds (their `SubmissionCreated` records).
fn created_in_topic(system: &TestSystem) -> usize {
    let kafka = &system.running.kafka;
    support::read_topic(kafka, &kafka.topic)
        .iter()
        .filter_map(|record| domain::Envelope::decode(record.value.as_deref()?).ok())
        .filter(|envelope| matches!(envelope.event, domain::Event::SubmissionCreated { .. }))
        .count()
}

fn ids(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|item| item["id"].as_str().unwrap().to_owned()).collect()
}

/// Asserts a refusal with the standard JSON error body and the given status and code.
async fn assert_refused(response: reqwest::Response, status: StatusCode, code: &str) {
    let got = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_sees_only_their_own_submissions_over_rest_and_both_streams() {
    let system = TestSystem::start().await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let bob = User::sign_up(&system, "Bob@Example.com").await;
    assert_eq!(bob.email, "bob@example.com", "addresses are kept lower-cased");

    // Bob listens to his stream of everything from before Alice writes anything.
    let bobs_stream = SseConnection::open(&bob.http, &system.url("/api/stream"), None).await;
    let alices = alice.submit(&system, "alice's text 1").await;
    let alice_id = alices["id"].as_str().unwrap().to_owned();
    system.wait_for_verdict(&alice_id).await;
    let bobs = bob.submit(&system, "bob's text 2").await;
    let bob_id = bobs["id"].as_str().unwrap().to_owned();
    system.wait_for_verdict(&bob_id).await;

    // Bob's stream carried his three changes and none of Alice's.
    let seen = bobs_stream.read(3).await;
    assert!(seen.iter().all(|event| event.data["submission_id"] == bob_id.as_str()), "{seen:?}");

    // Lists, single reads and histories.
    assert_eq!(ids(&alice.get(&system, "/api/submissions").await.1), std::slice::from_ref(&alice_id));
    assert_eq!(ids(&bob.get(&system, "/api/submissions").await.1), std::slice::from_ref(&bob_id));
    let (status, foreign) = bob.get(&system, &format!("/api/submissions/{alice_id}")).await;
    let (unknown_status, unknown) = bob.get(&system, &format!("/api/submissions/{}", uuid::Uuid::new_v4())).await;
    assert_eq!((status, unknown_status), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(foreign["error"]["code"], unknown["error"]["code"], "another user's id answers as an unknown one does");
    let (status, _) = bob.get(&system, &format!("/api/submissions/{alice_id}/events")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, own) = alice.get(&system, &format!("/api/submissions/{alice_id}")).await;
    assert_eq!((status, own["owner_email"].as_str()), (StatusCode::OK, Some("alice@example.com")));

    // Bob's stream of Alice's submission streams exactly as one of an unknown id: nothing, not
    // even her history; his own stream gives his history.
    let foreign_stream = SseConnection::open(&bob.http, &system.url(&format!("/api/submissions/{alice_id}/stream")), None).await;
    let own_stream = SseConnection::open(&bob.http, &system.url(&format!("/api/submissions/{bob_id}/stream")), None).await;
    assert_eq!(own_stream.read(3).await.len(), 3);
    assert!(tokio::time::timeout(Duration::from_secs(2), foreign_stream.read(1)).await.is_err(), "nothing of Alice's reaches Bob");

    // The admin sees both, with their owners.
    let (_, everything) = system.get_json("/api/submissions").await;
    let owners: Vec<&str> = everything["items"].as_array().unwrap().iter().map(|item| item["owner_email"].as_str().unwrap()).collect();
    assert_eq!(owners, ["bob@example.com", "alice@example.com"]);
    system.stop().await;
}

/// How soon a credential changed elsewhere is refused by a process that cached it: the promise
/// (README, `token_cache.rs`), far below the cache's TTL, so a lost notification fails the test.
const NOTIFY_BOUND: Duration = accounts::token_cache::REVOCATION_BOUND;

/// Sends `request()` until it is answered 401 `unauthenticated`, for at most `bound`; then once
/// more, which must be refused too. Returns how many were served before the refusal: a process
/// that cached the credential serves it until the NOTIFY reaches it.
async fn refused_within(bound: Duration, request: impl Fn() -> reqwest::RequestBuilder) -> usize {
    assert!(bound < accounts::token_cache::TTL);
    let start = std::time::Instant::now();
    let mut served = 0;
    loop {
        let response = request().send().await.unwrap();
        if response.status() == StatusCode::UNAUTHORIZED {
            assert_refused(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
            let again = request().send().await.unwrap();
            assert_refused(again, StatusCode::UNAUTHORIZED, "unauthenticated").await;
            return served;
        }
        assert!(response.status().is_success(), "answered {} before the refusal", response.status());
        assert!(start.elapsed() < bound, "still served after {bound:?}");
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_or_a_demoted_admin_is_refused_everywhere_once_notified() {
    // The command API and the query API each cache token owners; a change made through one
    // of them, or by hand in the database, reaches the other's cache by NOTIFY.
    let system = TestSystem::start().await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let bob = User::sign_up(&system, "bob@example.com").await;
    for _ in 0..3 {
        alice.submit(&system, "cached by the command API 1").await;
        assert_eq!(bob.get(&system, "/api/submissions").await.0, StatusCode::OK);
    }

    // Revoked through the query API: the command API refuses the token it has cached.
    let (_, tokens) = alice.get(&system, "/api/tokens").await;
    let token_id = tokens["items"][0]["id"].as_str().unwrap().to_owned();
    let revoked = alice.http.delete(system.url(&format!("/api/tokens/{token_id}"))).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let body = json!({"content": "after the revocation 1"});
    let taken_before_notified = refused_within(NOTIFY_BOUND, || alice.http.post(system.url("/api/submissions")).json(&body)).await;

    // Made an admin, and back, by hand: the role a cached token carries follows both at once.
    let pool = system.db.pool().await;
    let set_role =
        |role: &'static str| sqlx::query("UPDATE accounts.accounts SET role = $1 WHERE id = $2::uuid").bind(role).bind(&bob.id).execute(&pool);
    set_role("admin").await.unwrap();
    support::eventually("Bob's cached token carries the admin role", || async {
        (bob.get(&system, "/admin/rebuild").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    set_role("user").await.unwrap();
    let start = std::time::Instant::now();
    while bob.get(&system, "/admin/rebuild").await.0 != StatusCode::FORBIDDEN {
        assert!(start.elapsed() < NOTIFY_BOUND, "a demoted admin's cached token still reaches /admin");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Nothing was stored once the command API had refused the token.
    assert_eq!(created_in_topic(&system), 3 + taken_before_notified);
    pool.close().await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_revoked_foreign_and_cross_site_credentials_are_refused() {
    let system = TestSystem::start().await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let bob = User::sign_up(&system, "bob@example.com").await;
    let plain = reqwest::Client::new();
    let submit_body = json!({"content": "should never be stored 1"});

    // No credentials, forged ones, malformed ones: 401 on every API, streams included.
    for (name, value) in [
        (None, ""),
        (Some(header::COOKIE), "cp_session=00000000000000000000000000000000"),
        (Some(header::AUTHORIZATION), "Bearer cpt_forged"),
        (Some(header::AUTHORIZATION), "Basic YWxpY2U6cGFzc3dvcmQ="),
        (Some(header::AUTHORIZATION), "Bearer "),
    ] {
        for (method, path) in
            [("GET", "/api/submissions"), ("POST", "/api/submissions"), ("GET", "/api/stream"), ("GET", "/api/tokens"), ("GET", "/admin/rebuild")]
        {
            let mut request = plain.request(method.parse().unwrap(), system.url(path)).json(&submit_body);
            if let Some(name) = name.clone() {
                request = request.header(name, value);
            }
            let response = request.send().await.unwrap();
            assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
            assert_refused(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        }
    }

    // A user is not an admin.
    assert_refused(alice.http.post(system.url("/admin/rebuild")).send().await.unwrap(), StatusCode::FORBIDDEN, "forbidden").await;

    // Cross-site: the browser would send the cookie, but not the CSRF token the page holds.
    for csrf in [None, Some("wrong"), Some(bob.csrf.as_str())] {
        let mut request = plain.post(system.url("/api/submissions")).header(header::COOKIE, &alice.cookie).json(&submit_body);
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        assert_refused(request.send().await.unwrap(), StatusCode::FORBIDDEN, "csrf_failed").await;
    }
    // A form posted from another site cannot sign anyone in (nor sign up).
    let form = plain.post(system.url("/api/session")).form(&[("email", "alice@example.com"), ("password", PASSWORD)]).send().await.unwrap();
    assert_refused(form, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    // With the token the page holds, the cookie works.
    let same_site = plain
        .post(system.url("/api/submissions"))
        .header(header::COOKIE, &alice.cookie)
        .header("x-csrf-token", &alice.csrf)
        .json(&json!({"content": "from alice's page 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status(), StatusCode::ACCEPTED);

    // A token of another user cannot be revoked by Bob; Alice revokes hers and it stops working.
    let (_, tokens) = alice.get(&system, "/api/tokens").await;
    let token_id = tokens["items"][0]["id"].as_str().unwrap().to_owned();
    assert!(tokens.to_string().find(&alice.token).is_none(), "a listed token never shows its secret");
    assert_refused(bob.http.delete(system.url(&format!("/api/tokens/{token_id}"))).send().await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(alice.get(&system, "/api/submissions").await.0, StatusCode::OK);
    let revoked = alice.http.delete(system.url(&format!("/api/tokens/{token_id}"))).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_refused(alice.http.get(system.url("/api/submissions")).send().await.unwrap(), StatusCode::UNAUTHORIZED, "unauthenticated").await;

    // An expired token (expired by hand: the processes that cached it hear of it by NOTIFY).
    let pool = system.db.pool().await;
    sqlx::query("UPDATE accounts.api_tokens SET expires_at = now() - interval '1 second' WHERE account_id = $1::uuid")
        .bind(&bob.id)
        .execute(&pool)
        .await
        .unwrap();
    refused_within(NOTIFY_BOUND, || bob.http.get(system.url("/api/submissions"))).await;

    // Sign-out ends the session on the server: the cookie no longer works.
    let signed_out =
        plain.delete(system.url("/api/session")).header(header::COOKIE, &alice.cookie).header("x-csrf-token", &alice.csrf).send().await.unwrap();
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    let after = plain.get(system.url("/api/session")).header(header::COOKIE, &alice.cookie).send().await.unwrap();
    assert_refused(after, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    // Nothing refused was stored: the one accepted submission is all there is.
    assert_eq!(created_in_topic(&system), 1, "only the accepted submission is in the log");
    pool.close().await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_and_sign_in_refuse_bad_credentials_and_slow_down_guessing() {
    let system = TestSystem::start().await;
    let plain = reqwest::Client::new();
    let sign_up = |body: Value| plain.post(system.url("/api/accounts")).json(&body).send();

    for (body, status, code) in [
        (json!({"email": "not an address", "password": PASSWORD}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!({"email": "a@b.c", "password": "short"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!({"email": "a@b.c", "password": "x".repeat(2000)}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!({"email": "a@b.c"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!({"email": "a@b.c", "password": PASSWORD, "role": "admin"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!({"email": format!("{}@b.c", "a".repeat(20_000)), "password": PASSWORD}), StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
    ] {
        assert_refused(sign_up(body).await.unwrap(), status, code).await;
    }
    let malformed =
        plain.post(system.url("/api/accounts")).header(header::CONTENT_TYPE, "application/json").body("{\"email\":").send().await.unwrap();
    assert_refused(malformed, StatusCode::BAD_REQUEST, "malformed_json").await;

    assert_eq!(sign_up(json!({"email": "carol@example.com", "password": PASSWORD})).await.unwrap().status(), StatusCode::ACCEPTED);

    // Wrong passwords and unknown accounts get the same answer; after ten attempts on one
    // account, even the right password waits.
    let sign_in = |email: &str, password: &str| plain.post(system.url("/api/session")).json(&json!({"email": email, "password": password})).send();
    assert_refused(sign_in("nobody@example.com", PASSWORD).await.unwrap(), StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    for _ in 0..10 {
        assert_refused(sign_in("carol@example.com", "a wrong password").await.unwrap(), StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let limited = sign_in("carol@example.com", PASSWORD).await.unwrap();
    let retry_after: u64 = limited.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.headers()["ratelimit-policy"], "\"sign-in-account\";q=10;w=900");
    assert_refused(limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another account from the same address is still let in.
    assert_eq!(sign_up(json!({"email": "dave@example.com", "password": PASSWORD})).await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(sign_in("dave@example.com", PASSWORD).await.unwrap().status(), StatusCode::OK);
    system.stop().await;
}

/// The system with a submission limit of `limit` per hour, and a second command API on the
/// same database and broker, as another replica would run: its submissions URL and its task.
async fn with_second_replica(limit: u32) -> (TestSystem, String, tokio_util::sync::CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let db = support::TestDb::create().await;
    let mut config = support::test_config(&db);
    config.accounts.submission_rate_limit = limit;
    let system = TestSystem::start_with(db, config.clone()).await;
    let mut replica = command_api::Config::new(&system.db.url, system.running.kafka.clone());
    replica.listen = format!("127.0.0.1:{}", support::process::free_port()).parse().unwrap();
    replica.accounts = config.accounts.clone();
    let replica_url = format!("http://{}/api/submissions", replica.listen);
    let replica_shutdown = system.shutdown.child_token();
    let replica_task = tokio::spawn(command_api::run(replica, replica_shutdown.clone()));
    (system, replica_url, replica_shutdown, replica_task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reserving_slivers_of_a_limit_never_overspend_it() {
    // 1/64th of 256: each replica takes 4 units at a time from the database.
    let (system, replica_url, replica_shutdown, replica_task) = with_second_replica(256).await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let urls = [system.url("/api/submissions"), replica_url];
    support::eventually("the replica serves", || async {
        alice.http.get(urls[1].replace("/api/submissions", "/healthz")).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;
    let (mut accepted, mut refused_in_a_row, mut i) = (0, 0, 0);
    while refused_in_a_row < 4 {
        let response = alice.http.post(&urls[i % 2]).json(&json!({ "content": format!("within the limit {i}") })).send().await.unwrap();
        i += 1;
        if response.status() == StatusCode::ACCEPTED {
            accepted += 1;
            refused_in_a_row = 0;
        } else {
            assert_refused(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
            refused_in_a_row += 1;
        }
    }
    // Units a replica reserved and did not hand out may refuse early, never late.
    assert!((256 - 2 * 3..=256).contains(&accepted), "{accepted} accepted of a limit of 256");
    assert_eq!(created_in_topic(&system), accepted);
    replica_shutdown.cancel();
    replica_task.await.unwrap().unwrap();
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_submission_limit_holds_across_two_command_api_replicas() {
    let (system, replica_url, replica_shutdown, replica_task) = with_second_replica(3).await;

    let alice = User::sign_up(&system, "alice@example.com").await;
    let submit_to = |url: String, content: &'static str| alice.http.post(url).json(&json!({ "content": content })).send();
    let first = submit_to(system.url("/api/submissions"), "first of three 1").await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(first.headers()["ratelimit-policy"], "\"submissions\";q=3;w=3600");
    assert!(first.headers()["ratelimit"].to_str().unwrap().starts_with("\"submissions\";r=2;t="));
    let second = support::eventually("the replica serves", || async {
        submit_to(replica_url.clone(), "second of three 2").await.ok().filter(|r| r.status() == StatusCode::ACCEPTED)
    })
    .await;
    assert!(second.headers()["ratelimit"].to_str().unwrap().starts_with("\"submissions\";r=1;"));
    assert_eq!(submit_to(system.url("/api/submissions"), "third of three 3").await.unwrap().status(), StatusCode::ACCEPTED);

    for url in [replica_url.clone(), system.url("/api/submissions")] {
        let refused = submit_to(url, "one too many 4").await.unwrap();
        assert!(refused.headers().contains_key(header::RETRY_AFTER));
        assert!(refused.headers()["ratelimit"].to_str().unwrap().starts_with("\"submissions\";r=0;"));
        assert_refused(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    }
    // Limits are per user.
    let bob = User::sign_up(&system, "bob@example.com").await;
    bob.submit(&system, "bob is not limited by alice 5").await;
    assert_eq!(created_in_topic(&system), 4, "four submissions in the log; nothing from the refused ones");
    replica_shutdown.cancel();
    replica_task.await.unwrap().unwrap();
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_idempotency_key_gets_the_same_submission() {
    let system = TestSystem::start().await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let bob = User::sign_up(&system, "bob@example.com").await;
    let post = |user: &User, key: &str, content: &str| {
        user.http.post(system.url("/api/submissions")).header("idempotency-key", key).json(&json!({ "content": content })).send()
    };
    let first = post(&alice, "order-17", "retried text 1").await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let again = post(&alice, "order-17", "retried text 1").await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let again: Value = again.json().await.unwrap();
    assert_eq!((&again["id"], &again["created_at"], &again["position"]), (&first["id"], &first["created_at"], &first["position"]));

    assert_refused(post(&alice, "order-17", "other text 2").await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
    for bad in ["", "has space", &"k".repeat(256)] {
        assert_refused(post(&alice, bad, "text 3").await.unwrap(), StatusCode::BAD_REQUEST, "invalid_idempotency_key").await;
    }
    // Keys are per user: Bob's order-17 is his own submission.
    let bobs: Value = post(&bob, "order-17", "retried text 1").await.unwrap().json().await.unwrap();
    assert_ne!(bobs["id"], first["id"]);

    assert_eq!(created_in_topic(&system), 2, "one SubmissionCreated per key and user, none for the retry");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_location_of_a_202_answers_at_once_never_404() {
    let system = TestSystem::start().await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    for i in 0..50 {
        let accepted = alice.http.post(system.url("/api/submissions")).json(&json!({ "content": format!("read at once {i}") })).send().await.unwrap();
        let location = accepted.headers()[header::LOCATION].to_str().unwrap().to_owned();
        let (status, read) = alice.get(&system, &location).await;
        assert_eq!(status, StatusCode::OK, "{location}: {read}");
        assert!(["PENDING", "PROCESSING", "PASSED"].contains(&read["status"].as_str().unwrap()), "{read}");
    }
    // Ids that do not exist still answer 404, with or without a position the read model passed.
    let unknown = uuid::Uuid::new_v4();
    assert_eq!(alice.get(&system, &format!("/api/submissions/{unknown}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(alice.get(&system, &format!("/api/submissions/{unknown}?position=0:0")).await.0, StatusCode::NOT_FOUND);
    let (status, body) = alice.get(&system, &format!("/api/submissions/{unknown}?position=zero")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")));
    // A position the log never held (past a partition's end, or on no partition) is refused,
    // not waited for, and so is one for a batch.
    for path in [
        format!("/api/submissions/{unknown}?position=0:999999999999"),
        format!("/api/submissions/{unknown}?position=99999:0"),
        format!("/api/submissions/{unknown}?position=2147483647:0"),
        format!("/api/batches/{unknown}?position=0:999999999999"),
    ] {
        let (status, body) = alice.get(&system, &path).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("position_past_end")), "{path}: {body}");
    }
    system.stop().await;
}

/// Runs `content-processor create-admin EMAIL` with the password in ADMIN_PASSWORD.
async fn create_admin(system: &TestSystem, email: &str) -> std::process::Output {
    tokio::process::Command::new(support::process::BINARY)
        .args(["create-admin", email, "--database-url", &system.db.url])
        .env("ADMIN_PASSWORD", PASSWORD)
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_is_made_from_the_command_line() {
    let system = TestSystem::start().await;
    let made = create_admin(&system, "root@example.com").await;
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert!(!String::from_utf8_lossy(&made.stdout).contains(PASSWORD));

    let plain = reqwest::Client::new();
    let signed_in = plain.post(system.url("/api/session")).json(&json!({"email": "root@example.com", "password": PASSWORD})).send().await.unwrap();
    let cookie = signed_in.headers()[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let session: Value = signed_in.json().await.unwrap();
    assert_eq!(session["account"]["role"], "admin");
    let status = plain.get(system.url("/admin/rebuild")).header(header::COOKIE, &cookie).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::OK);

    // An existing account is promoted; a bad address is refused with the reason.
    User::sign_up(&system, "later@example.com").await;
    assert!(create_admin(&system, "later@example.com").await.status.success());
    let pool = system.db.pool().await;
    let role: String = sqlx::query_scalar("SELECT role FROM accounts.accounts WHERE email = 'later@example.com'").fetch_one(&pool).await.unwrap();
    assert_eq!(role, "admin");
    pool.close().await;
    let refused = create_admin(&system, "not-an-address").await;
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("email must be an address"));
    system.stop().await;
}

/// A command API whose connections to PostgreSQL go silent (a partition: the server's side is
/// closed, the client's hears nothing) cannot hear a revocation made elsewhere. It must still
/// stop serving the token it cached within the promised bound: its listening connection fails
/// the quiet check, and from then on it looks tokens up (and, with the database away, answers
/// 503 rather than take the revoked token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_cannot_hear_revocations_stops_trusting_its_cache_within_the_bound() {
    use support::process::{free_port, log_dir, Component};
    let broker = support::TestKafka::start(1, 3).await;
    let db = support::TestDb::create().await;
    let postgres = support::admin_url().trim_start_matches("postgres://postgres@").parse().expect("host:port of PostgreSQL");
    let proxy = support::CuttableProxy::start(postgres).await;
    let logs = log_dir("token-cache-partition");
    let (command_port, query_port) = (free_port(), free_port());
    let kafka = ["--kafka-brokers", broker.kafka.bootstrap_servers(), "--kafka-partitions", "3"].map(String::from);
    let command_args = ["--listen".into(), format!("127.0.0.1:{command_port}"), "--database-url".into(), db.url_via(proxy.addr)];
    let mut command_api = Component::new("command-api", kafka.iter().cloned().chain(command_args).collect(), &logs);
    let mut query_api =
        Component::new("query-api", vec!["--listen".into(), format!("127.0.0.1:{query_port}"), "--database-url".into(), db.url.clone()], &logs);
    command_api.start();
    query_api.start();
    let (command, query) = (format!("http://127.0.0.1:{command_port}"), format!("http://127.0.0.1:{query_port}"));
    let plain = reqwest::Client::new();
    support::eventually("the query API answers", || async {
        plain.get(format!("{query}/healthz")).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;
    let accounts = support::Api { base: query.clone(), http: plain.clone() };
    let alice = User::sign_up(&accounts, "alice@example.com").await;
    support::wait_until_accepting(&alice.http, &format!("{command}/api/submissions")).await;
    // The first lookup starts the cache's listener and is not cached itself; once it listens,
    // the next lookup is cached.
    let pool = db.pool().await;
    support::eventually("the command API's token cache listens", || async {
        let (listening,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%accounts_credentials_changed%')",
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        listening.then_some(())
    })
    .await;
    pool.close().await;
    for _ in 0..2 {
        let response = alice.http.post(format!("{command}/api/submissions")).json(&json!({"content": "cached 12345"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    proxy.black_hole();
    // Served from the cache though the database is out of reach: what the bound is about.
    let response = alice.http.post(format!("{command}/api/submissions")).json(&json!({"content": "from the cache 12345"})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED, "the command API serves Alice's token from its cache");
    let (_, tokens) = alice.get(&accounts, "/api/tokens").await;
    let token_id = tokens["items"][0]["id"].as_str().unwrap().to_owned();
    let revoked = alice.http.delete(format!("{query}/api/tokens/{token_id}")).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let revoked_at = std::time::Instant::now();
    // Once it looks the token up, the lookup waits on a connection that hears nothing: a request
    // without an answer in 5 s was not taken either.
    let impatient = reqwest::Client::builder().default_headers(support::bearer(&alice.token)).timeout(Duration::from_secs(5)).build().unwrap();
    let taken = || async {
        let response = impatient.post(format!("{command}/api/submissions")).json(&json!({"content": "while it cannot hear 12345"})).send().await;
        match response {
            Ok(response) => response.status() == StatusCode::ACCEPTED,
            Err(error) => {
                assert!(error.is_timeout(), "{error}");
                false
            }
        }
    };
    let mut last_taken = None;
    while taken().await {
        last_taken = Some(revoked_at.elapsed());
        let bound = accounts::token_cache::REVOCATION_BOUND;
        assert!(revoked_at.elapsed() < bound, "the revoked token was still taken {:?} after the revocation", revoked_at.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("the revoked token was last taken {last_taken:?} after the revocation");
    assert!(!taken().await, "and keeps not taking it");

    // Once it hears PostgreSQL again, the token is refused for what it is.
    proxy.restore();
    support::eventually("the command API refuses the revoked token", || async {
        (impatient.post(format!("{command}/api/submissions")).json(&json!({"content": "refused 12345"})).send().await.ok()?.status()
            == StatusCode::UNAUTHORIZED)
            .then_some(())
    })
    .await;
    command_api.kill().await;
    query_api.kill().await;
    db.drop_database().await;
    broker.stop().await;
}

/// What one account holds on the server is bounded, and reaching a bound holds up nobody else:
/// live streams and reads waiting for a write per query API, live API tokens, sessions (the
/// oldest end), webhook test sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_account_may_hold_is_bounded_and_holds_up_nobody_else() {
    let db = support::TestDb::create().await;
    let mut config = support::test_config(&db);
    config.accounts.sign_in_limit_per_account = 100;
    config.allow_private_webhook_targets = true;
    let system = TestSystem::start_with(db, config).await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let bob = User::sign_up(&system, "bob@example.com").await;

    // Streams: 16 open, the 17th refused; Bob is not held up; one closed frees a slot.
    let url = system.url("/api/stream");
    let mut streams = Vec::new();
    for _ in 0..query_api::per_account::STREAMS {
        streams.push(SseConnection::open(&alice.http, &url, None).await);
    }
    let refused = alice.http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "the stream past the bound is refused");
    assert_refused(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_streams").await;
    let bobs = SseConnection::open(&bob.http, &url, None).await;
    drop(streams.pop());
    support::eventually("a closed stream gives its slot back", || async {
        let response = alice.http.get(&url).send().await.ok()?;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    drop((streams, bobs));

    // Reads waiting for a write the read model has not reached yet (the projector held back by
    // a lock on its positions): of five sent together, four wait and one is refused at once;
    // Bob's reads are his own. Once the projector goes on, the four find the submission.
    let pool = system.db.pool().await;
    let mut projector_held_back = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE projector_positions IN SHARE MODE").execute(&mut *projector_held_back).await.unwrap();
    let accepted: Value =
        alice.http.post(system.url("/api/submissions")).json(&json!({"content": "wait for me 1"})).send().await.unwrap().json().await.unwrap();
    let written_at = format!("/api/submissions/{}?position={}", accepted["id"].as_str().unwrap(), accepted["position"].as_str().unwrap());
    let read_at = |user: &User| {
        let (url, http) = (system.url(&written_at), user.http.clone());
        tokio::spawn(async move { http.get(url).send().await.unwrap() })
    };
    let mut reads: Vec<_> = (0..=query_api::per_account::WAITS).map(|_| read_at(&alice)).collect();
    let bobs = read_at(&bob);
    let refused = support::eventually("one read is answered while the others wait", || {
        let finished = reads.iter().position(|read| read.is_finished());
        async move { finished }
    })
    .await;
    let refused = reads.remove(refused).await.unwrap();
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    assert_refused(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_waits").await;
    projector_held_back.commit().await.unwrap();
    for read in reads {
        assert_eq!(read.await.unwrap().status(), StatusCode::OK, "a waiting read finds the write once it is projected");
    }
    assert_eq!(bobs.await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(read_at(&alice).await.unwrap().status(), StatusCode::OK, "the slots are back");

    // Tokens: 100 live at most (she holds one already); revoking one makes room.
    let create = || alice.http.post(system.url("/api/tokens")).json(&json!({"name": "many"})).send();
    let mut last = None;
    for _ in 1..accounts::store::MAX_TOKENS_PER_ACCOUNT {
        let response = create().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        last = Some(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    assert_refused(create().await.unwrap(), StatusCode::CONFLICT, "too_many_tokens").await;
    let revoked = alice.http.delete(system.url(&format!("/api/tokens/{}", last.unwrap()))).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(create().await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(bob.http.post(system.url("/api/tokens")).json(&json!({"name": "mine"})).send().await.unwrap().status(), StatusCode::CREATED);
    // Her 101 tokens (one revoked) come a page at a time, newest first, each once.
    let (status, first) = alice.get(&system, "/api/tokens").await;
    assert_eq!((status, first["items"].as_array().unwrap().len()), (StatusCode::OK, 50), "50 when no limit is asked");
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/tokens?limit=40&cursor={cursor}"),
            None => "/api/tokens?limit=40".to_owned(),
        };
        let (status, page) = alice.get(&system, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 40);
        seen.extend(items.iter().map(|item| item["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!((seen.len(), &seen), (accounts::store::MAX_TOKENS_PER_ACCOUNT as usize + 1, &sorted), "every token once, newest first");
    for bad in ["limit=0", "limit=501", "cursor=nope", "colour=red"] {
        let (status, body) = alice.get(&system, &format!("/api/tokens?{bad}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")), "{bad}");
    }

    // Sessions: the newest 20 live; the oldest sign-in's cookie stops working.
    let sign_in =
        || reqwest::Client::new().post(system.url("/api/session")).json(&json!({"email": "alice@example.com", "password": PASSWORD})).send();
    let cookie_of = |response: &reqwest::Response| response.headers()[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let oldest = cookie_of(&sign_in().await.unwrap());
    let session_with = |cookie: String| reqwest::Client::new().get(system.url("/api/session")).header(header::COOKIE, cookie).send();
    assert_eq!(session_with(oldest.clone()).await.unwrap().status(), StatusCode::OK);
    for _ in 0..accounts::store::MAX_SESSIONS_PER_ACCOUNT {
        assert_eq!(sign_in().await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(session_with(oldest).await.unwrap().status(), StatusCode::UNAUTHORIZED, "the oldest session ended");
    assert_eq!(session_with(bob.cookie.clone()).await.unwrap().status(), StatusCode::OK, "Bob's session is his own");

    // Webhook test sends: 10 a minute per account.
    let receiver = support::receiver::Receiver::start().await;
    let created: Value =
        alice.http.post(system.url("/api/webhooks")).json(&json!({"url": receiver.url("ok")})).send().await.unwrap().json().await.unwrap();
    let test = system.url(&format!("/api/webhooks/{}/test", created["id"].as_str().unwrap()));
    for _ in 0..10 {
        assert_eq!(alice.http.post(&test).send().await.unwrap().status(), StatusCode::ACCEPTED);
    }
    assert_refused(alice.http.post(&test).send().await.unwrap(), StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    system.stop().await;
}

/// Once the database refused a request, the process knows what is left of the window at most:
/// refusals are answered from memory until the window resets (the database may be gone
/// meanwhile), and requests are granted again once it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_window_refuses_without_a_database_round_trip_until_it_resets() {
    use accounts::rate_limit::{Policy, RateLimiter};
    let db = support::TestDb::create().await;
    let pool = db.pool().await;
    accounts::migrate(&pool).await.unwrap();

    let hour = Policy { name: "bench", limit: 3, window_secs: 3_600 };
    let limiter = RateLimiter::new(pool.clone());
    for _ in 0..hour.limit {
        assert!(limiter.take(hour, "alice", 1).await.unwrap().allowed);
    }
    assert!(!limiter.take(hour, "alice", 1).await.unwrap().allowed, "the fourth is refused by the database");
    pool.close().await;
    let refused = limiter.take(hour, "alice", 1).await.expect("refused from memory, the database unasked");
    assert!(!refused.allowed && refused.remaining == 0 && refused.reset_secs > 3_500, "{refused:?}");

    let pool = db.pool().await;
    let second = Policy { name: "short", limit: 1, window_secs: 1 };
    let limiter = RateLimiter::new(pool.clone());
    assert!(limiter.take(second, "alice", 1).await.unwrap().allowed);
    assert!(!limiter.take(second, "alice", 1).await.unwrap().allowed);
    support::eventually("the window resets and grants again", || async { limiter.take(second, "alice", 1).await.unwrap().allowed.then_some(()) })
        .await;
    pool.close().await;
    db.drop_database().await;
}

/// Once an account's window is spent, a batch is refused before its body is read as JSON: a
/// flood of large bodies over the limit costs no parsing. A request with an Idempotency-Key
/// may be the retry of an accepted one, and is still judged whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_a_spent_limit_is_refused_before_its_body_is_parsed() {
    let db = support::TestDb::create().await;
    let mut config = support::test_config(&db);
    config.accounts.submission_rate_limit = 2;
    let system = TestSystem::start_with(db, config).await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    for content in ["within the limit 1", "within the limit 2"] {
        alice.submit(&system, content).await;
    }
    let over = alice.http.post(system.url("/api/submissions")).json(&json!({"content": "over the limit 3"})).send().await.unwrap();
    assert_refused(over, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    let not_json = || alice.http.post(system.url("/api/batches")).header(header::CONTENT_TYPE, "application/json").body("{\"items\": [oops");
    let refused = not_json().send().await.unwrap();
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    assert_refused(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let keyed = not_json().header("idempotency-key", "batch-1").send().await.unwrap();
    assert_refused(keyed, StatusCode::BAD_REQUEST, "malformed_json").await;
    system.stop().await;
}

/// Sign-ups from one client address are limited (each hashes a password), and the limit holds
/// whether the addresses signed up with were free or taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_from_one_client_address_are_limited() {
    let db = support::TestDb::create().await;
    let mut config = support::test_config(&db);
    config.accounts.sign_up_limit_per_address = 2;
    let system = TestSystem::start_with(db, config).await;
    let sign_up = |email: &str| reqwest::Client::new().post(system.url("/api/accounts")).json(&json!({"email": email, "password": PASSWORD})).send();
    assert_eq!(sign_up("first@example.com").await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(sign_up("first@example.com").await.unwrap().status(), StatusCode::ACCEPTED, "taken: the same answer, and it counts");
    let refused = sign_up("third@example.com").await.unwrap();
    assert_eq!(refused.headers()["ratelimit-policy"], "\"sign-up-address\";q=2;w=3600");
    assert_refused(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let signed_in = reqwest::Client::new().post(system.url("/api/session")).json(&json!({"email": "third@example.com", "password": PASSWORD})).send();
    assert_eq!(signed_in.await.unwrap().status(), StatusCode::UNAUTHORIZED, "the refused sign-up made no account");
    system.stop().await;
}
