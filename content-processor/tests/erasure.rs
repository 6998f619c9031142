//! Crypto-shredding, as a user and an auditor see it: an account's text never reaches the log
//! in the clear, and once the account is deleted it is nowhere readable: not in the broker's
//! files, not in a dump of the database, not after a rebuild. Another user's is untouched, and
//! the deleted account's verdicts stay.

mod support;

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::receiver::Receiver;
use support::user::{User, PASSWORD};
use support::TestSystem;

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_accounts_text_is_unreadable_everywhere_and_everyone_elses_stays() {
    let system = TestSystem::start().await;
    let api = &system.api;
    let leaving = User::sign_up(api, "leaving@example.com").await;
    let staying = User::sign_up(api, "staying@example.com").await;
    let (gone_marker, kept_marker) = (format!("gone-{} 42", uuid::Uuid::new_v4()), format!("kept-{} 42", uuid::Uuid::new_v4()));
    let gone = leaving.submit(api, &gone_marker).await["id"].as_str().unwrap().to_owned();
    let kept = staying.submit(api, &kept_marker).await["id"].as_str().unwrap().to_owned();
    // One written before content was sealed: its text is in the log in the clear, for ever.
    let legacy_marker = format!("legacy-{} 42", uuid::Uuid::new_v4());
    let legacy = uuid::Uuid::now_v7();
    let event = domain::Event::SubmissionCreated {
        content: domain::Content::Plain(legacy_marker.clone()),
        owner_id: Some(leaving.id.parse().unwrap()),
        batch: None,
        replaces: None,
    };
    let publisher = kafka_kit::EventPublisher::new(&system.running.kafka, std::time::Duration::from_secs(10)).unwrap();
    publisher.publish(&domain::Envelope::new(legacy, event, chrono::Utc::now(), uuid::Uuid::new_v4())).await.unwrap();
    let legacy = legacy.to_string();
    for id in [&gone, &kept, &legacy] {
        assert_eq!(api.wait_for_verdict(id).await["status"], "PASSED");
    }
    let kafka_dir = system.data_dir.join("kafka");
    // The search reads the broker's files: the record keys (submission ids) are there in the clear.
    assert!(found_in_files(&kafka_dir, kept.as_bytes()), "the search finds what the log holds");
    // Sealed before it is sent: neither text is ever in the log's files.
    assert!(
        !found_in_files(&kafka_dir, gone_marker.as_bytes()) && !found_in_files(&kafka_dir, kept_marker.as_bytes()),
        "no text in the clear in the log"
    );
    // The read model holds the text while the account lives: the dump is a real check.
    assert!(pg_dump(&system.db.url).await.contains(&gone_marker), "the read model shows the living account's text");

    // A backup of the key store, taken before the deletion: it still holds the account's key.
    let pool = sqlx::PgPool::connect(&system.db.url).await.unwrap();
    back_up_key(&pool, &leaving.id).await;

    // Deleting takes the password; a wrong one changes nothing.
    assert_eq!(delete_own(&leaving, api, "not the password").await, StatusCode::UNAUTHORIZED);
    assert_eq!(leaving.get(api, &format!("/api/submissions/{gone}")).await.1["content"], gone_marker.as_str());
    assert_eq!(delete_own(&leaving, api, PASSWORD).await, StatusCode::NO_CONTENT);

    // From the answer on: no sign-in, no token, no text.
    let signed_in =
        reqwest::Client::new().post(api.url("/api/session")).json(&json!({"email": leaving.email, "password": PASSWORD})).send().await.unwrap();
    assert_eq!(signed_in.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(leaving.get(api, "/api/submissions").await.0, StatusCode::UNAUTHORIZED);
    let (_, seen_by_admin) = api.get_json(&format!("/api/submissions/{gone}")).await;
    assert_eq!((seen_by_admin["content"].clone(), seen_by_admin["status"].clone()), (Value::Null, json!("PASSED")), "the verdict stays");
    let dump = pg_dump(&system.db.url).await;
    assert!(!dump.contains(&gone_marker), "nothing of the deleted account's text in the database");
    assert!(!dump.contains(&legacy_marker), "nor of its text from before sealing");
    assert_eq!(api.get_json(&format!("/api/submissions/{legacy}")).await.1["content"], Value::Null);
    assert!(dump.contains(&kept_marker), "the other user's text is still in the read model");
    assert!(!found_in_files(&kafka_dir, gone_marker.as_bytes()));
    assert_eq!(staying.get(api, &format!("/api/submissions/{kept}")).await.1["content"], kept_marker.as_str());

    // A rebuild from the log gives the same: the verdict kept, the text erased.
    let started = api.http.post(api.url("/admin/rebuild")).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    wait_for_rebuild(api).await;
    let (_, rebuilt) = api.get_json(&format!("/api/submissions/{gone}")).await;
    assert_eq!((rebuilt["content"].clone(), rebuilt["status"].clone()), (Value::Null, json!("PASSED")));
    assert_eq!(staying.get(api, &format!("/api/submissions/{kept}")).await.1["content"], kept_marker.as_str());
    let dump = pg_dump(&system.db.url).await;
    for (marker, kept) in [(&gone_marker, false), (&legacy_marker, false), (&kept_marker, true)] {
        assert_eq!(dump.contains(marker.as_str()), kept, "after the rebuild too: {marker}");
    }
    // Only text sealed from the start is gone from the log as well: the legacy text stays there
    // in the clear (README: bringing an old log under the scheme).
    assert!(found_in_files(&kafka_dir, legacy_marker.as_bytes()));

    // The log says so itself: one AccountErased, on the account's partition, is there...
    let erased: Vec<domain::Envelope> = support::eventually("the erasure is on the log", || async {
        let erased: Vec<domain::Envelope> = support::read_topic(&system.running.kafka, &system.running.kafka.topic)
            .iter()
            .filter_map(|record| domain::Envelope::decode(record.value.as_deref()?).ok())
            .filter(|envelope| matches!(envelope.event, domain::Event::AccountErased { account_id } if account_id.to_string() == leaving.id))
            .collect();
        (!erased.is_empty()).then_some(erased)
    })
    .await;
    assert_eq!(erased.len(), 1, "announced once: {erased:?}");
    // ...so a key store restored from the backup, the key back in it, brings no text back: a
    // rebuild takes the log's word over the key's.
    restore_keys(&pool).await;
    let started = api.http.post(api.url("/admin/rebuild")).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    wait_for_rebuild(api).await;
    let (_, rebuilt) = api.get_json(&format!("/api/submissions/{gone}")).await;
    assert_eq!((rebuilt["content"].clone(), rebuilt["status"].clone()), (Value::Null, json!("PASSED")));
    let dump = pg_dump(&system.db.url).await;
    for (marker, kept) in [(&gone_marker, false), (&legacy_marker, false), (&kept_marker, true)] {
        assert_eq!(dump.contains(marker.as_str()), kept, "after a rebuild with the key restored: {marker}");
    }
    pool.close().await;

    // Submitting after the deletion, with a token copied before it: refused, nothing stored.
    let late = leaving.http.post(api.url("/api/submissions")).json(&json!({"content": "too late 42"})).send().await.unwrap();
    assert_eq!(late.status(), StatusCode::UNAUTHORIZED);
    system.stop().await;
}

/// A deletion racing a batch, a webhook delivery that keeps being retried, and a rebuild: none of
/// the deleted account's text is readable afterwards in the database (so no retry can send it
/// again) or the log's files, and none of the other account's is lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_deletion_racing_a_batch_a_webhook_retry_and_a_rebuild_leaves_nothing_readable() {
    let receiver = Receiver::start().await;
    let system = TestSystem::start_with_loopback_webhooks().await;
    let api = &system.api;
    let leaving = User::sign_up(api, "leaving@example.com").await;
    let staying = User::sign_up(api, "staying@example.com").await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (gone, kept) = (format!("gone-{tag}"), format!("kept-{tag}"));
    // The leaving account's endpoint always fails, so its delivery is retried, pending, when the
    // deletion comes; the staying account's endpoint answers.
    for (user, path) in [(&leaving, "down"), (&staying, "ok")] {
        let endpoint = json!({"url": receiver.url(path), "description": "races"});
        assert_eq!(user.http.post(api.url("/api/webhooks")).json(&endpoint).send().await.unwrap().status(), StatusCode::CREATED);
    }
    let pending = leaving.submit(api, &format!("{gone} pending 42")).await["id"].as_str().unwrap().to_owned();
    api.wait_for_verdict(&pending).await;
    receiver.wait_for("a delivery to the failing endpoint", |r| r.iter().any(|r| r.path == "down")).await;
    let kept_one = staying.submit(api, &format!("{kept} single 42")).await["id"].as_str().unwrap().to_owned();

    // Batches of both accounts, a rebuild and the deletion, all at once.
    let batch = |user: &User, marker: &str| {
        let body = json!({"items": (0..20).map(|i| json!({"content": format!("{marker} item {i} 42")})).collect::<Vec<_>>()});
        let (http, url) = (user.http.clone(), api.url("/api/batches"));
        tokio::spawn(async move { http.post(url).json(&body).send().await.unwrap() })
    };
    let racing = [batch(&leaving, &gone), batch(&staying, &kept), batch(&leaving, &gone)];
    let rebuild = api.http.post(api.url("/admin/rebuild")).send().await.unwrap();
    assert_eq!(rebuild.status(), StatusCode::ACCEPTED);
    let deleted = api.http.delete(api.url(&format!("/api/accounts/{}", leaving.id))).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let mut accepted = vec![pending, kept_one];
    for response in racing {
        let response = response.await.unwrap();
        match response.status() {
            StatusCode::ACCEPTED => {
                let body: Value = response.json().await.unwrap();
                accepted.extend(body["items"].as_array().unwrap().iter().map(|item| item["id"].as_str().unwrap().to_owned()));
            }
            status => assert_eq!(status, StatusCode::UNAUTHORIZED, "only the deleted account's batch may be refused"),
        }
    }
    wait_for_rebuild(api).await;
    for id in &accepted {
        api.wait_for_verdict(id).await;
    }
    // The staying account is told of its verdicts after the deletion too.
    receiver.wait_for("the staying account's deliveries", |r| r.iter().filter(|r| r.path == "ok").count() >= 2).await;

    let dump = pg_dump(&system.db.url).await;
    assert!(!dump.contains(&gone), "nothing of the deleted account's text in the database, its pending delivery included");
    assert!(dump.contains(&kept), "the other account's text is kept");
    for id in &accepted {
        let (_, submission) = api.get_json(&format!("/api/submissions/{id}")).await;
        let content = submission["content"].as_str().unwrap_or_default();
        assert!(!content.contains(&gone), "{id}: {submission}");
        if submission["owner_id"].as_str() == Some(staying.id.as_str()) {
            assert!(content.starts_with(&kept), "the other account keeps its text: {submission}");
        }
    }
    assert!(!found_in_files(&system.data_dir.join("kafka"), gone.as_bytes()), "no text in the clear in the log");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_an_admin_deletes_another_account_and_a_submission_racing_it_is_not_readable() {
    let system = TestSystem::start().await;
    let api = &system.api;
    let user = User::sign_up(api, "user@example.com").await;
    let other = User::sign_up(api, "other@example.com").await;
    let first = user.submit(api, "before the deletion 42").await["id"].as_str().unwrap().to_owned();
    api.wait_for_verdict(&first).await;
    let refused = other.http.delete(api.url(&format!("/api/accounts/{}", user.id))).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(user.get(api, "/api/submissions").await.0, StatusCode::OK, "a refusal changes nothing");

    // Submissions race the deletion: each is either refused or accepted and then unreadable.
    let racing: Vec<_> = (0..20)
        .map(|i| {
            let (http, url) = (user.http.clone(), api.url("/api/submissions"));
            tokio::spawn(async move { http.post(url).json(&json!({"content": format!("racing {i} 42")})).send().await.unwrap() })
        })
        .collect();
    let deleted = api.http.delete(api.url(&format!("/api/accounts/{}", user.id))).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let mut accepted = Vec::new();
    for response in racing {
        let response = response.await.unwrap();
        match response.status() {
            StatusCode::ACCEPTED => accepted.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()),
            status => assert_eq!(status, StatusCode::UNAUTHORIZED),
        }
    }
    for id in accepted.iter().chain([&first]) {
        let verdict = api.wait_for_verdict(id).await;
        assert_eq!(verdict["content"], Value::Null, "{id}: {verdict}");
    }
    let dump = pg_dump(&system.db.url).await;
    assert!(!dump.contains("racing ") && !dump.contains("before the deletion"), "no text of the deleted account");
    let again = api.http.delete(api.url(&format!("/api/accounts/{}", user.id))).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    // The only admin cannot delete itself: nobody would be left to run the system.
    let (_, session) = api.get_json("/api/session").await;
    let admin = session["account"]["id"].as_str().unwrap();
    let last = api.http.delete(api.url(&format!("/api/accounts/{admin}"))).send().await.unwrap();
    assert_eq!(last.status(), StatusCode::CONFLICT);
    assert_eq!(last.json::<Value>().await.unwrap()["error"]["code"], "last_admin");
    assert_eq!(api.get_json("/api/session").await.0, StatusCode::OK, "still signed in");
    assert_eq!(other.get(api, "/api/submissions").await.0, StatusCode::OK);
    system.stop().await;
}

/// A notifier that reads a deleted account's submissions only after the deletion (it was down,
/// or lagging), and after the key store was restored from a backup that still holds the
/// account's key, keeps none of its text: the account is gone, so nothing is awaited for it.
#[tokio::test(flavor = "multi_thread")]
async fn a_notifier_reading_a_deleted_accounts_submission_late_keeps_no_text_even_with_its_key_restored() {
    let system = TestSystem::start().await;
    let api = &system.api;
    let leaving = User::sign_up(api, "late@example.com").await;
    let marker = format!("read-late-{} 42", uuid::Uuid::new_v4());
    let id = leaving.submit(api, &marker).await["id"].as_str().unwrap().to_owned();
    api.wait_for_verdict(&id).await;

    let pool = sqlx::PgPool::connect(&system.db.url).await.unwrap();
    back_up_key(&pool, &leaving.id).await;
    assert_eq!(delete_own(&leaving, api, PASSWORD).await, StatusCode::NO_CONTENT);
    restore_keys(&pool).await;
    pool.close().await;

    // A notifier of a group of its own reads the whole log now, after all of that.
    let kafka = system.running.kafka.clone();
    let mut config = notifier::Config::new(&system.db.url, kafka.clone());
    config.group_id = "late-notifier".into();
    let late = notifier::Notifier::start(&config).await.unwrap();
    let stop = system.shutdown.child_token();
    let running = tokio::spawn(late.run(stop.clone()));
    let ends = support::partition_ends(&kafka).await;
    support::wait_until_group_has_read(&kafka, "late-notifier", &ends).await;
    stop.cancel();
    running.await.unwrap().unwrap();

    assert!(!pg_dump(&system.db.url).await.contains(&marker), "the deleted account's text is back in the database");
    system.stop().await;
}

/// Copies `account`'s row of the key store aside, as a backup taken now would hold it.
async fn back_up_key(pool: &sqlx::PgPool, account: &str) {
    sqlx::query("CREATE TABLE public.data_keys_backup AS SELECT * FROM accounts.data_keys WHERE account_id = $1::uuid")
        .bind(account)
        .execute(pool)
        .await
        .unwrap();
}

/// Restores the key store from that backup: the keys are back, unerased.
async fn restore_keys(pool: &sqlx::PgPool) {
    sqlx::query(
        "UPDATE accounts.data_keys k SET kek_id = b.kek_id, wrapped = b.wrapped, erased_at = NULL FROM public.data_keys_backup b
         WHERE k.account_id = b.account_id",
    )
    .execute(pool)
    .await
    .unwrap();
}

async fn post(user: &User, api: &support::Api, path: &str, body: Value) -> Value {
    user.http.post(api.url(path)).json(&body).send().await.unwrap().json().await.unwrap()
}

async fn delete_own(user: &User, api: &support::Api, password: &str) -> StatusCode {
    user.http.delete(api.url("/api/account")).json(&json!({ "password": password })).send().await.unwrap().status()
}

/// Whether any log segment under `dir` (the broker's data directory: a `.log` file holds the
/// records themselves; the indexes beside them only offsets) holds `needle`.
fn found_in_files(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            found_in_files(&path, needle)
        } else {
            path.extension().is_some_and(|extension| extension == "log")
                && std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|window| window == needle))
        }
    })
}

/// The whole database as `pg_dump` writes it.
async fn pg_dump(database_url: &str) -> String {
    let output = tokio::process::Command::new("pg_dump").arg(database_url).output().await.expect("pg_dump runs");
    assert!(output.status.success(), "pg_dump: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn wait_for_rebuild(api: &support::Api) {
    support::eventually("the rebuild switches", || async {
        let (_, status) = api.get_json("/admin/rebuild").await;
        match status["state"].as_str() {
            Some("switched") => Some(()),
            Some("running") => None,
            other => panic!("rebuild ended as {other:?}: {status}"),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_holds_everything_of_the_caller_and_nothing_of_anyone_else() {
    let system = TestSystem::start_with_loopback_webhooks().await;
    let api = &system.api;
    let user = User::sign_up(api, "exporting@example.com").await;
    let other = User::sign_up(api, "other@example.com").await;
    let others_text = format!("other-{} 42", uuid::Uuid::new_v4());
    let others = other.submit(api, &others_text).await["id"].as_str().unwrap().to_owned();

    let single = user.submit(api, "my own text 42").await["id"].as_str().unwrap().to_owned();
    let failed = user.submit(api, "short").await["id"].as_str().unwrap().to_owned();
    api.wait_for_verdict(&failed).await;
    let resubmitted =
        post(&user, api, "/api/submissions", json!({"content": "longer now 42", "replaces": failed})).await["id"].as_str().unwrap().to_owned();
    let batch = post(&user, api, "/api/batches", json!({"items": [{"content": "batch one 1"}, {"content": "batch two"}]})).await;
    let endpoint = post(&user, api, "/api/webhooks", json!({"url": "http://127.0.0.1:9/hook"})).await;
    let batch_items: Vec<String> = batch["items"].as_array().unwrap().iter().map(|item| item["id"].as_str().unwrap().to_owned()).collect();
    for id in [&single, &resubmitted, &others].into_iter().chain(&batch_items) {
        api.wait_for_verdict(id).await;
    }

    // Once the verdicts are notified (deliveries to a closed port, failing), everything is there.
    let (text, export) = support::eventually("the export lists the deliveries", || async {
        let response = user.http.get(api.url("/api/account/export")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
        let text = response.text().await.unwrap();
        let export: Value = serde_json::from_str(&text).unwrap();
        (export["deliveries"].as_array().is_some_and(|deliveries| !deliveries.is_empty())).then_some((text, export))
    })
    .await;
    for foreign in [others_text.as_str(), others.as_str(), other.email.as_str(), other.id.as_str()] {
        assert!(!text.contains(foreign), "nothing of the other account: {foreign}");
    }
    for secret in [endpoint["secret"].as_str().unwrap(), user.token.as_str(), PASSWORD] {
        assert!(!text.contains(secret), "no secret");
    }
    assert_eq!(export["account"]["email"], user.email.as_str());
    assert!(export["account"].get("password_hash").is_none());
    let tokens = export["api_tokens"].as_array().unwrap();
    assert_eq!((tokens.len(), tokens[0]["name"].as_str()), (1, Some("script")));
    assert!(tokens[0].get("token_digest").is_none());
    assert_eq!(export["webhook_endpoints"][0]["url"], "http://127.0.0.1:9/hook");
    assert!(export["webhook_endpoints"][0].get("secret").is_none());
    assert!(export["deliveries"][0]["attempts"].is_array() && export["deliveries"][0]["notification"]["event_type"].is_string());
    assert_eq!((export["batches"][0]["id"].clone(), export["batches"][0]["size"].clone()), (batch["id"].clone(), json!(2)));
    let submissions = export["submissions"].as_array().unwrap();
    let mut texts: Vec<&str> = submissions.iter().map(|s| s["content"].as_str().unwrap()).collect();
    texts.sort_unstable();
    assert_eq!(texts, ["batch one 1", "batch two", "longer now 42", "my own text 42", "short"]);
    let replacing = submissions.iter().find(|s| s["id"] == resubmitted.as_str()).unwrap();
    assert_eq!(replacing["replaces"], failed.as_str());
    for submission in submissions {
        let history: Vec<&str> = submission["history"].as_array().unwrap().iter().map(|event| event["status"].as_str().unwrap()).collect();
        assert_eq!(history.first(), Some(&"PENDING"), "{submission}");
        assert_eq!(Some(&submission["status"].as_str().unwrap()), history.last(), "{submission}");
        assert!(!submission.to_string().contains("sealed_content"));
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_the_key_encryption_key_rewraps_every_data_key_and_drops_the_old_one() {
    let db = support::TestDb::create().await;
    let pool = db.pool().await;
    accounts::migrate(&pool).await.unwrap();
    let keyring = |current: &str, previous: &[&str]| {
        let args = keyring::KeyringArgs {
            key_encryption_key: Some(current.into()),
            previous_key_encryption_keys: previous.iter().map(|key| key.to_string()).collect(),
            ..keyring::KeyringArgs::default()
        };
        keyring::Keyring::from_args(&args).unwrap()
    };
    let (old, new) = ("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=");
    let accounts: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::now_v7()).collect();
    let event = uuid::Uuid::now_v7();
    let mut sealed = Vec::new();
    for &account in &accounts {
        let key = keyring::store::key_for_writing(&pool, &keyring(old, &[]), account).await.unwrap().unwrap();
        sealed.push(key.seal(event, "text 42"));
    }
    let erased = uuid::Uuid::now_v7();
    keyring::store::erase(&mut pool.acquire().await.unwrap(), erased).await.unwrap();

    let rotated = keyring(new, &[old]);
    assert_eq!(keyring::store::rewrap_all(&pool, &rotated).await.unwrap(), 3, "every live key, not the tombstone");
    assert_eq!(keyring::store::rewrap_all(&pool, &rotated).await.unwrap(), 0, "done once");
    // With the old key gone from the configuration, every key still opens what it sealed.
    let keys = keyring::store::stored_keys(&pool, &keyring(new, &[]), &[accounts.clone(), vec![erased]].concat()).await.unwrap();
    for (account, sealed) in accounts.iter().zip(&sealed) {
        let key = keys[account].as_ref().unwrap().as_ref().unwrap();
        assert_eq!(key.open(event, sealed).unwrap(), "text 42");
    }
    assert!(matches!(keys[&erased], Ok(None)), "the tombstone stays");
    pool.close().await;
    db.drop_database().await;
}

/// The one-process mode seals with the key-encryption key it is given, as every component run
/// on its own does, not with the development key.
#[tokio::test(flavor = "multi_thread")]
async fn the_one_process_mode_wraps_data_keys_with_the_configured_key_encryption_key() {
    let db = support::TestDb::create().await;
    let mut config = support::test_config(&db);
    config.keyring.key_encryption_key = Some("AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=".into());
    let configured = keyring::Keyring::from_args(&config.keyring).unwrap();
    let system = TestSystem::start_with(db, config).await;
    let user = User::sign_up(&system.api, "sealed@example.com").await;
    let id = user.submit(&system.api, "sealed with the configured key 42").await["id"].as_str().unwrap().to_owned();
    assert_eq!(system.api.wait_for_verdict(&id).await["content"], "sealed with the configured key 42");
    let pool = sqlx::PgPool::connect(&system.db.url).await.unwrap();
    let kek: String =
        sqlx::query_scalar("SELECT kek_id FROM accounts.data_keys WHERE account_id = $1::uuid").bind(&user.id).fetch_one(&pool).await.unwrap();
    assert_eq!(kek, configured.current_id(), "wrapped with the configured key-encryption key");
    pool.close().await;
    system.stop().await;
}

/// Two command APIs announce erasures, as production runs them: each erasure reaches the log once.
#[tokio::test(flavor = "multi_thread")]
async fn two_announcers_put_each_erasure_on_the_log_once() {
    let system = TestSystem::start().await;
    let api = &system.api;
    let pool = sqlx::PgPool::connect(&system.db.url).await.unwrap();
    let publisher = kafka_kit::EventPublisher::new(&system.running.kafka, std::time::Duration::from_secs(10)).unwrap();
    let second = tokio_util::sync::CancellationToken::new();
    let announcer = tokio::spawn(command_api::erasures::run(pool.clone(), publisher.clone(), second.clone()));
    let users = [User::sign_up(api, "first@example.com").await, User::sign_up(api, "second@example.com").await];
    for user in &users {
        assert_eq!(delete_own(user, api, PASSWORD).await, StatusCode::NO_CONTENT);
    }
    support::eventually("both erasures are marked announced", || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts.data_keys WHERE erased_at IS NOT NULL AND announced_at IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
        (left == 0).then_some(())
    })
    .await;
    // Whatever the second announcer handed its producer is on the log before it is read.
    second.cancel();
    announcer.await.unwrap();
    publisher.flush(std::time::Duration::from_secs(10)).await;
    let announced: Vec<String> = support::read_topic(&system.running.kafka, &system.running.kafka.topic)
        .iter()
        .filter_map(|record| domain::Envelope::decode(record.value.as_deref()?).ok())
        .filter_map(|envelope| match envelope.event {
            domain::Event::AccountErased { account_id } => Some(account_id.to_string()),
            _ => None,
        })
        .collect();
    let mut expected: Vec<String> = users.iter().map(|user| user.id.clone()).collect();
    let mut sorted = announced.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected, "each erasure once");
    pool.close().await;
    system.stop().await;
}
