//! The deployed topology, as `content-processor deployed` starts it for a person (three Apache
//! Kafka nodes, two processes of every service, HAProxy routing as ops/kubernetes/routes.yaml
//! does), used as people use it: ordinary users through the gateway; single replicas reached
//! directly (by the manifest) where the point is that the next request lands on another one.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use content_processor::deployed::{self, Deployed, DeployedConfig, Manifest, Service};
use futures_util::FutureExt;
use local_kafka::JvmProfile;
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use support::mail::SmtpServer;
use support::receiver::{Received, Receiver};
use support::user::{User, PASSWORD};
use support::{eventually, Api, SseConnection, SseEvent, TestDb};

/// Starts the topology on free ports with a data directory of its own; returns it with the
/// manifest it wrote, read back from the file people and scripts read.
async fn start(db: &TestDb, configure: impl FnOnce(&mut DeployedConfig)) -> (Deployed, Manifest, PathBuf) {
    service_kit::telemetry::init_for_tests("warn");
    let data_dir = support::scratch_dir("deployed");
    let mut config = DeployedConfig::new(&db.url, support::kafka_dist().dir());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = data_dir.clone();
    config.kafka_port = 0;
    config.kafka_heap_mb = 384;
    config.kafka_jvm = JvmProfile::FastStart;
    config.binary = Some(support::process::BINARY.into());
    configure(&mut config);
    let started = Instant::now();
    let deployed = deployed::start(config).await.expect("the deployed topology starts");
    println!("the deployed topology was ready in {:?}", started.elapsed());
    support::report_broker(&support::describe_cluster(deployed.kafka()));
    let manifest = serde_json::from_str(&std::fs::read_to_string(deployed.manifest_path()).unwrap()).expect("a manifest");
    (deployed, manifest, data_dir)
}

async fn stop(deployed: Deployed, db: TestDb, data_dir: PathBuf) {
    deployed.stop().await.expect("every process stops cleanly");
    db.drop_database().await;
    let _ = std::fs::remove_dir_all(data_dir);
}

fn id_of(accepted: &Value) -> String {
    accepted["id"].as_str().expect("an id").to_owned()
}

fn is_verdict(event: &SseEvent) -> bool {
    matches!(event.data["status"].as_str(), Some("PASSED" | "FAILED"))
}

fn of_type<'a>(received: &'a [Received], event_type: &str) -> Vec<&'a Received> {
    received.iter().filter(|r| r.json()["type"] == event_type).collect()
}

/// Requests a replica counted on its `/metrics` for `method` and the route pattern `route`.
async fn served(http: &reqwest::Client, replica: &str, method: &str, route: &str) -> f64 {
    let text = http.get(format!("{replica}/metrics")).send().await.unwrap().text().await.unwrap();
    let (method, route) = (format!("method=\"{method}\""), format!("route=\"{route}\""));
    text.lines()
        .filter(|line| line.starts_with("content_processor_http_requests_total{") && line.contains(&method) && line.contains(&route))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_users_work_through_the_gateway_on_two_replicas_of_everything() {
    let smtp = SmtpServer::start().await;
    let receiver = Receiver::start().await;
    let db = TestDb::create().await;
    let (deployed, manifest, data_dir) = start(&db, |config| {
        config.smtp_url = Some(smtp.url().into());
        config.allow_private_webhook_targets = true;
    })
    .await;
    let plain = reqwest::Client::new();
    let gateway = Api { base: manifest.gateway.clone(), http: plain.clone() };
    let query_apis = manifest.replicas_of(Service::QueryApi).to_vec();
    let command_apis = manifest.replicas_of(Service::CommandApi).to_vec();
    assert_eq!((query_apis.len(), command_apis.len()), (2, 2), "{manifest:?}");

    // Signing up and making a token (the query API), a webhook endpoint (the notifier).
    let alice = User::sign_up(&gateway, "alice@example.com").await;
    alice.verify_email(&gateway, &smtp).await;
    let as_alice = Api { base: gateway.base.clone(), http: alice.http.clone() };
    let response =
        alice.http.post(gateway.url("/api/webhooks")).json(&json!({"url": receiver.url("ok"), "description": "deployed"})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    // A submission (the command API) and its verdict (validator, projector, query API).
    let first = id_of(&alice.submit(&gateway, "deployed at last 2026").await);
    assert_eq!(as_alice.wait_for_verdict(&first).await["status"], "PASSED");

    // The live stream on query API replica 1, resumed with Last-Event-ID on replica 2. While it
    // is away, a failed submission is resubmitted (`replaces`) and judged.
    let on_replica_1 = SseConnection::open(&alice.http, &format!("{}/api/stream", query_apis[0]), None).await;
    let passes = id_of(&alice.submit(&gateway, "passes 1234567").await);
    let fails = id_of(&alice.submit(&gateway, "too short").await);
    let mut received = on_replica_1.read(6).await;
    assert_eq!(as_alice.wait_for_verdict(&fails).await["status"], "FAILED");
    let response =
        alice.http.post(gateway.url("/api/submissions")).json(&json!({"content": "no longer too short 42", "replaces": fails})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let replacement = response.json::<Value>().await.unwrap();
    assert_eq!(replacement["replaces"].as_str(), Some(fails.as_str()));
    let replacement = id_of(&replacement);
    assert_eq!(as_alice.wait_for_verdict(&replacement).await["status"], "PASSED");
    assert_eq!(alice.get(&gateway, &format!("/api/submissions/{fails}")).await.1["replaced_by"].as_str(), Some(replacement.as_str()));
    let last_seen = received.last().unwrap().id.clone();
    let on_replica_2 = SseConnection::open(&alice.http, &format!("{}/api/stream", query_apis[1]), Some(&last_seen)).await;
    let live = id_of(&alice.submit(&gateway, "live again 98765").await);
    received.extend(on_replica_2.read(3 + 3).await);
    assert!(received.iter().all(|event| event.event == "status"), "{received:?}");
    let seqs: Vec<i64> = received.iter().map(SseEvent::seq).collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "in order, nothing twice: {seqs:?}");
    let mut per_submission: HashMap<String, Vec<String>> = HashMap::new();
    for event in &received {
        per_submission
            .entry(event.data["submission_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(event.data["status"].as_str().unwrap().to_owned());
    }
    let expected: HashMap<String, Vec<String>> = [(&passes, "PASSED"), (&fails, "FAILED"), (&replacement, "PASSED"), (&live, "PASSED")]
        .into_iter()
        .map(|(id, verdict)| (id.clone(), vec!["PENDING".to_owned(), "PROCESSING".to_owned(), verdict.to_owned()]))
        .collect();
    assert_eq!(per_submission, expected, "every change of each submission once, across the two replicas");

    // Round robin: sequential reads through the gateway reach both query APIs; the five
    // submissions so far reached both command APIs.
    for _ in 0..4 {
        assert_eq!(alice.get(&gateway, &format!("/api/submissions/{first}")).await.0, StatusCode::OK);
    }
    for replica in manifest.internal_of(Service::QueryApi) {
        assert!(served(&plain, replica, "GET", "/api/submissions/{id}").await >= 1.0, "{replica} served reads");
    }
    for replica in manifest.internal_of(Service::CommandApi) {
        assert!(served(&plain, replica, "POST", "/api/submissions").await >= 1.0, "{replica} took submissions");
    }
    // Health checks and metrics are for probes and scrapers, on a port of their own that the
    // gateway does not route to: a stranger reaches none of them.
    for path in ["/metrics", "/readyz", "/healthz"] {
        let response = plain.get(gateway.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path} through the gateway");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "not_found", "{path}");
        for service in [Service::CommandApi, Service::QueryApi, Service::Notifier, Service::Projector] {
            let (public, internal) = (&manifest.replicas_of(service)[0], &manifest.internal_of(service)[0]);
            assert_eq!(plain.get(format!("{public}{path}")).send().await.unwrap().status(), StatusCode::NOT_FOUND, "{public}{path}");
            assert_eq!(plain.get(format!("{internal}{path}")).send().await.unwrap().status(), StatusCode::OK, "{internal}{path}");
        }
    }

    // A batch of 200 while the owner's stream through the gateway is open: every item's verdict
    // arrives on it.
    let stream = SseConnection::open(&alice.http, &gateway.url("/api/stream"), None).await;
    let contents: Vec<String> = (0..200).map(|i| if i % 4 == 0 { format!("short {i}") } else { format!("batch item {i:04}") }).collect();
    let body = json!({ "items": contents.iter().map(|content| json!({ "content": content })).collect::<Vec<_>>() });
    let response = alice.http.post(gateway.url("/api/batches")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let batch = response.json::<Value>().await.unwrap();
    let batch_id = id_of(&batch);
    let items: Vec<String> = batch["items"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(items.len(), 200);
    let wanted: HashSet<&str> = items.iter().map(String::as_str).collect();
    let events = stream
        .read_until(|events| {
            let judged: HashSet<&str> = events.iter().filter(|e| is_verdict(e)).filter_map(|e| e.data["submission_id"].as_str()).collect();
            wanted.is_subset(&judged)
        })
        .await;
    let verdicts: HashMap<&str, &str> =
        events.iter().filter(|e| is_verdict(e)).map(|e| (e.data["submission_id"].as_str().unwrap(), e.data["status"].as_str().unwrap())).collect();
    for (i, item) in items.iter().enumerate() {
        assert_eq!(verdicts[item.as_str()], if i % 4 == 0 { "FAILED" } else { "PASSED" }, "item {i}");
    }

    // Told once each, by one of the two notifiers: a webhook and an email per verdict, and one
    // of each for the batch.
    let singles = [&first, &passes, &fails, &replacement, &live];
    let received = receiver
        .wait_for("every verdict's webhook and the batch's arrive", |received| {
            let told: Vec<String> = of_type(received, "submission.judged")
                .iter()
                .map(|r| r.json()["data"]["submission_id"].as_str().unwrap_or_default().to_owned())
                .collect();
            singles.iter().all(|id| told.contains(id)) && !of_type(received, "batch.completed").is_empty()
        })
        .await;
    for id in singles {
        let told = of_type(&received, "submission.judged").iter().filter(|r| r.json()["data"]["submission_id"] == id.as_str()).count();
        assert_eq!(told, 1, "one webhook for {id}");
    }
    let completed = of_type(&received, "batch.completed");
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].json()["data"], json!({"batch_id": batch_id, "size": 200, "passed": 150, "failed": 50}));
    let mails = smtp
        .wait_for("every verdict's email and the batch's arrive", |mails| {
            singles.iter().all(|id| mails.iter().any(|m| m.body.contains(id.as_str())))
                && mails.iter().any(|m| m.headers.get("subject").is_some_and(|s| s.contains("batch of 200")))
        })
        .await;
    assert!(mails.iter().all(|m| m.headers["to"] == "alice@example.com"));
    let told: Vec<_> = mails.iter().filter(|m| m.headers["subject"] != "Confirm your email address").collect();
    assert_eq!(told.len(), singles.len() + 1, "one email per verdict and one for the batch");

    // An admin rebuilds the read model from the dashboard (through the gateway, to whichever
    // projector it picks); both projectors tell the same story of it, as the dashboard reads it
    // from either. Alice may do none of it.
    let admin = reqwest::Client::builder().default_headers(support::bearer(&support::admin_token(&db.url).await)).build().unwrap();
    assert_eq!(alice.get(&gateway, "/admin/rebuild").await.0, StatusCode::FORBIDDEN);
    let response = admin.post(gateway.url("/admin/rebuild")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let started: Value = response.json().await.unwrap();
    let projectors = manifest.replicas_of(Service::Projector).to_vec();
    let rebuild_on = |replica: &str| {
        let (admin, url) = (admin.clone(), format!("{replica}/admin/rebuild"));
        async move { admin.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    for replica in &projectors {
        let status = rebuild_on(replica).await;
        assert_eq!(status["started_at"], started["started_at"], "{replica} knows of the rebuild at once: {status}");
        assert_ne!(status["state"], "idle", "{replica}: {status}");
    }
    let switched = eventually("the rebuild switches, as both projectors say", || async {
        let statuses = futures_util::future::join_all(projectors.iter().map(|replica| rebuild_on(replica))).await;
        (statuses.iter().all(|status| status["state"] == "switched") && statuses[0] == statuses[1]).then(|| statuses[0].clone())
    })
    .await;
    assert_eq!(switched["started_at"], started["started_at"]);
    for replica in &projectors {
        let overview: Value = admin.get(format!("{replica}/admin/overview")).send().await.unwrap().json().await.unwrap();
        assert_eq!(overview["rebuild"], switched, "the dashboard's overview from {replica}");
    }
    as_alice.wait_for_verdict(&first).await;

    // The gateway says which protocol the client spoke, whatever the client claims: a claim of
    // HTTPS through it gets no Secure cookie (the gateway is on loopback, where plain HTTP is
    // normal); the same claim made to a replica directly gets a Secure one, named with the
    // `__Host-` prefix, which signs in like the other.
    let sign_in = |base: String| {
        plain
            .post(format!("{base}/api/session"))
            .header("x-forwarded-proto", "https")
            .json(&json!({"email": "alice@example.com", "password": PASSWORD}))
            .send()
    };
    let through_gateway = sign_in(gateway.base.clone()).await.unwrap();
    let direct = sign_in(query_apis[0].clone()).await.unwrap();
    assert_eq!((through_gateway.status(), direct.status()), (StatusCode::OK, StatusCode::OK));
    let cookie = |response: &reqwest::Response| response.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(!cookie(&through_gateway).contains("Secure"), "{}", cookie(&through_gateway));
    assert!(cookie(&direct).contains("Secure") && cookie(&direct).starts_with("__Host-cp_session="), "{}", cookie(&direct));
    let secure_cookie = cookie(&direct).split(';').next().unwrap().to_owned();
    let who = plain.get(format!("{}/api/session", query_apis[1])).header(header::COOKIE, secure_cookie).send().await.unwrap();
    assert_eq!(who.status(), StatusCode::OK);

    // A token revoked through the gateway is refused by both command APIs, each of which had
    // just served it (so holds it in its cache), once the NOTIFY reaches it: well within the
    // cache's TTL, which a lost notification would take.
    for replica in &command_apis {
        let response = alice.http.post(format!("{replica}/api/submissions")).json(&json!({"content": "cached here 12345"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{replica}");
    }
    let (_, tokens) = alice.get(&gateway, "/api/tokens").await;
    let token_id = tokens["items"][0]["id"].as_str().unwrap().to_owned();
    let revoked_at = Instant::now();
    let response = alice.http.delete(gateway.url(&format!("/api/tokens/{token_id}"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for replica in &command_apis {
        // Empty content: refused 422 while the token is taken, so nothing more is stored.
        let attempt = || alice.http.post(format!("{replica}/api/submissions")).json(&json!({"content": ""})).send();
        eventually(&format!("{replica} refuses the revoked token"), || async {
            let response = attempt().await.ok()?;
            assert!(matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::UNPROCESSABLE_ENTITY), "{}", response.status());
            (response.status() == StatusCode::UNAUTHORIZED).then_some(())
        })
        .await;
        assert_eq!(attempt().await.unwrap().status(), StatusCode::UNAUTHORIZED, "{replica} keeps refusing it");
    }
    let bound = accounts::token_cache::REVOCATION_BOUND;
    assert!(revoked_at.elapsed() < bound, "refused by both after {:?}", revoked_at.elapsed());

    // A stranger on another machine (address) guesses passwords through the gateway until
    // refused. The limit per address is theirs alone: Alice, on her machine behind the same
    // gateway, still signs in; a forged X-Forwarded-For neither frees the stranger nor frames her.
    let machine = |ip: &str| reqwest::Client::builder().local_address(ip.parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    let (stranger, alices_machine) = (machine("127.0.0.3"), machine("127.0.0.2"));
    let sign_in_from = |client: &reqwest::Client, email: &str, password: &str, forged: &str| {
        client.post(gateway.url("/api/session")).header("x-forwarded-for", forged).json(&json!({"email": email, "password": password})).send()
    };
    let limit = accounts::AccountsArgs::default().sign_in_limit_per_address;
    let mut guesses = 0;
    loop {
        let response = sign_in_from(&stranger, &format!("victim{guesses}@example.com"), "a wrong guess 1", "198.51.100.1").await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        guesses += 1;
        assert!(guesses <= limit, "the stranger is refused after {limit} guesses");
    }
    let response = sign_in_from(&stranger, "victim@example.com", "a wrong guess 1", "127.0.0.9").await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "a forged hop frees nobody");
    let response = sign_in_from(&alices_machine, "alice@example.com", PASSWORD, "127.0.0.3").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "Alice signs in after {guesses} wrong guesses of a stranger's");

    // A command API and a query API die (SIGKILL, as a node lost): through the gateway nobody
    // notices. A request sent to the dead one before the health check took it out goes to the
    // other replica, since it never reached the first.
    let mut deployed = deployed;
    deployed.kill("command-api-1").await.unwrap();
    deployed.kill("query-api-1").await.unwrap();
    let bob = User::sign_up(&gateway, "bob@example.com").await;
    for i in 0..6 {
        let accepted = bob.submit(&gateway, &format!("after the losses {i} 12345")).await;
        let read_own_write = format!("/api/submissions/{}?position={}", id_of(&accepted), accepted["position"].as_str().unwrap());
        assert_eq!(bob.get(&gateway, &read_own_write).await.0, StatusCode::OK);
    }

    stop(deployed, db, data_dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_on_an_origin_of_its_own_is_told_where_the_apis_are_and_may_call_them() {
    let db = TestDb::create().await;
    let (deployed, manifest, data_dir) = start(&db, |config| {
        config.ui_listen = Some("127.0.0.1:0".parse().unwrap());
        config.ui_dir = support::browser::built_ui();
    })
    .await;
    let ui_origin = manifest.ui_origin.clone().expect("the UI's origin in the manifest");
    let gateway = manifest.gateway.clone();
    let plain = reqwest::Client::new();

    // The UI's origin is the query API's: the UI, its settings, accounts and reads.
    let ui_config: Value = plain.get(format!("{ui_origin}/ui-config.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ui_config, json!({"command_api": gateway, "query_api": "", "notifier_api": gateway, "admin_api": gateway, "mail": false}));
    let alice = User::sign_up(&Api { base: ui_origin.clone(), http: plain.clone() }, "alice@example.com").await;
    let response = alice.http.post(format!("{ui_origin}/api/submissions")).json(&json!({"content": "not here 12345"})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "submissions go to the command API, on the gateway");
    let accepted = alice.submit(&Api { base: gateway.clone(), http: plain.clone() }, "on the gateway 12345").await;
    let as_alice = Api { base: ui_origin.clone(), http: alice.http.clone() };
    as_alice.wait_for_verdict(&id_of(&accepted)).await;

    // A page of the UI's origin may call each API on the gateway's: the browser's preflight.
    for (method, path) in [("POST", "/api/submissions"), ("POST", "/api/webhooks"), ("GET", "/admin/overview")] {
        let response = plain
            .request(Method::OPTIONS, format!("{gateway}{path}"))
            .header(header::ORIGIN, &ui_origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type,x-csrf-token")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers();
        let allowed = (headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN), headers.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
        assert_eq!(status, StatusCode::OK, "preflight of {method} {path}: {headers:?}");
        assert_eq!(allowed, (Some(&ui_origin.parse().unwrap()), Some(&"true".parse().unwrap())), "preflight of {method} {path}");
    }

    // In a real browser, the page of the UI's origin signs a user up there and writes through
    // the gateway's origin (its session cookie and CSRF token cross with CORS): the submission is
    // accepted and its verdict shows live.
    let driver = support::browser::Chromedriver::start().await;
    let page = driver.open(&ui_origin, support::browser::Screen::Desktop).await;
    let outcome = std::panic::AssertUnwindSafe(async {
        support::browser::sign_in(&page, "carol@example.com", "carol's password 1", true).await;
        support::browser::submit(&page, "written across origins 42").await;
        support::browser::wait_until_shown(&page, "written across origins 42", "PASSED").await;
    })
    .catch_unwind()
    .await;
    support::browser::close_all([page], outcome).await;

    stop(deployed, db, data_dir).await;
}
