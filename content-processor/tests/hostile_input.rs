//! Thousands of generated bodies, paths and credentials against both APIs and the account
//! endpoints. Every answer is either what a valid request gets or a 4xx with a JSON error body:
//! never a 5xx, and nothing is stored for a refused request (the topic holds exactly one record
//! per submission a 202 named).

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::StatusCode;
use serde_json::Value;
use support::TestSystem;

const MAX_CONTENT_BYTES: usize = 64 * 1024;

/// Content types with the answer the command API must give them.
const CONTENT_TYPES: &[(Option<&str>, bool)] = &[
    (Some("application/json"), true),
    (Some("application/json; charset=utf-8"), true),
    (Some("application/vnd.example+json"), true),
    (Some("text/plain"), false),
    (Some("application/x-www-form-urlencoded"), false),
    (Some("json"), false),
    (None, false),
];

/// What the command API must do with a body, decided independently of its code.
fn should_accept(json_content_type: bool, body: &[u8]) -> bool {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else { return false };
    // No field but `content` and a null `replaces` (an id would name no submission of the caller).
    let known_fields_only = object.iter().all(|(name, value)| name == "content" || (name == "replaces" && value.is_null()));
    json_content_type
        && known_fields_only
        && matches!(object.get("content"), Some(Value::String(c))
            if !c.is_empty() && c.len() <= MAX_CONTENT_BYTES && !c.contains('\0'))
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,30}".prop_map(Value::from),
        "[a-z0-9 ]{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::hash_map("[a-z]{1,8}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Plausible submissions, valid or nearly so.
        "\\PC{0,40}".prop_map(|content| serde_json::to_vec(&serde_json::json!({ "content": content })).unwrap()),
        // Arbitrary bytes, including invalid UTF-8.
        proptest::collection::vec(any::<u8>(), 0..300),
        // Any JSON value.
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        // An object whose content is any JSON value, plus other fields.
        (json_value(), proptest::collection::hash_map("[a-z]{1,6}", json_value(), 0..3)).prop_map(|(content, extra)| {
            let mut object: serde_json::Map<String, Value> = extra.into_iter().collect();
            object.insert("content".into(), content);
            serde_json::to_vec(&object).unwrap()
        }),
        // Deeply nested JSON, past any sane recursion limit.
        (1usize..3000).prop_map(|depth| format!("{{\"content\":{}{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
        // Content around the size limit.
        (MAX_CONTENT_BYTES - 2..MAX_CONTENT_BYTES + 3).prop_map(|n| format!("{{\"content\":\"{}\"}}", "7".repeat(n)).into_bytes()),
        // Invalid UTF-8 inside a JSON string.
        (proptest::collection::vec(0x80u8..0xff, 1..8)).prop_map(|junk| {
            let mut body = b"{\"content\":\"abc".to_vec();
            body.extend(junk);
            body.extend(b"12345\"}");
            body
        }),
        // NUL and other escapes.
        "[a-z0-9]{0,12}".prop_map(|s| format!("{{\"content\":\"{s}\\u0000{s}\"}}").into_bytes()),
    ]
}

fn read_path() -> impl Strategy<Value = String> {
    let segment = "[^/?#%]{0,40}";
    let query_key =
        prop_oneof![Just("status".to_owned()), Just("limit".to_owned()), Just("cursor".to_owned()), Just("endpoint".to_owned()), "[a-z]{1,8}"];
    let query_value =
        prop_oneof!["[^&#=]{0,30}", any::<i64>().prop_map(|n| n.to_string()), Just("PASSED".to_owned()), Just("99999999999999999999999".to_owned()),];
    prop_oneof![
        segment.prop_map(|s| format!("/api/submissions/{s}")),
        segment.prop_map(|s| format!("/api/submissions/{s}/events")),
        proptest::collection::vec((query_key.clone(), query_value.clone()), 0..4).prop_map(|pairs| {
            let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("/api/submissions?{}", query.join("&"))
        }),
        segment.prop_map(|s| format!("/api/{s}")),
        Just(format!("/api/submissions/{}", uuid::Uuid::new_v4())),
        segment.prop_map(|s| format!("/api/batches/{s}")),
        segment.prop_map(|s| format!("/api/batches/{s}/items")),
        Just(format!("/api/batches/{}?position=0:0", uuid::Uuid::new_v4())),
        (query_key.clone(), query_value.clone()).prop_map(|(k, v)| format!("/api/batches?{k}={v}")),
        (query_key.clone(), query_value.clone()).prop_map(|(k, v)| format!("/api/deliveries?{k}={v}")),
        Just("/api/webhooks".to_owned()),
        Just("/api/notification-settings".to_owned()),
    ]
}

/// A body for the account endpoints: mostly credential-shaped, with anything in the fields.
fn account_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        ("\\PC{0,40}", "\\PC{0,40}")
            .prop_map(|(email, password)| serde_json::to_vec(&serde_json::json!({"email": email, "password": password})).unwrap()),
        ("[a-z]{1,8}@[a-z]{1,8}\\.[a-z]{2,3}", "[ -~]{0,12}")
            .prop_map(|(email, password)| serde_json::to_vec(&serde_json::json!({"email": email, "password": password})).unwrap()),
        ("\\PC{0,40}", proptest::option::of(any::<i64>()))
            .prop_map(|(name, days)| serde_json::to_vec(&serde_json::json!({"name": name, "expires_in_days": days})).unwrap()),
        (json_value(), json_value())
            .prop_map(|(email, password)| serde_json::to_vec(&serde_json::json!({"email": email, "password": password})).unwrap()),
        body(),
    ]
}

/// A request to an account endpoint, or a submission, with generated credentials.
#[derive(Debug, Clone)]
struct AccountRequest {
    method: &'static str,
    path: String,
    /// `None`: the test admin's token; otherwise these headers instead (possibly none).
    credentials: Option<Vec<(&'static str, String)>>,
    idempotency_key: Option<String>,
    json: bool,
    body: Vec<u8>,
}

fn account_request() -> impl Strategy<Value = AccountRequest> {
    let endpoint = prop_oneof![
        Just(("POST", "/api/accounts".to_owned())),
        Just(("POST", "/api/session".to_owned())),
        Just(("DELETE", "/api/session".to_owned())),
        Just(("GET", "/api/session".to_owned())),
        Just(("POST", "/api/tokens".to_owned())),
        Just(("GET", "/api/tokens".to_owned())),
        "[^/?#%]{0,40}".prop_map(|id| ("DELETE", format!("/api/tokens/{id}"))),
        Just(("POST", "/api/submissions".to_owned())),
        Just(("GET", "/api/stream".to_owned())),
        Just(("POST", "/admin/rebuild".to_owned())),
        Just(("POST", "/api/webhooks".to_owned())),
        Just(("PUT", "/api/notification-settings".to_owned())),
        "[^/?#%]{0,40}".prop_map(|id| ("DELETE", format!("/api/webhooks/{id}"))),
        "[^/?#%]{0,40}".prop_map(|id| ("POST", format!("/api/webhooks/{id}/test"))),
    ];
    let junk = "[ -~]{0,60}";
    let credentials = prop_oneof![
        Just(None),
        Just(Some(vec![])),
        junk.prop_map(|j| Some(vec![("authorization", format!("Bearer {j}"))])),
        junk.prop_map(|j| Some(vec![("authorization", j)])),
        junk.prop_map(|j| Some(vec![("cookie", format!("cp_session={j}"))])),
        (junk, junk).prop_map(|(c, t)| Some(vec![("cookie", format!("cp_session={c}")), ("x-csrf-token", t)])),
    ];
    (endpoint, credentials, proptest::option::of("[ -~]{0,300}"), any::<bool>(), account_body()).prop_map(
        |((method, path), credentials, idempotency_key, json, body)| AccountRequest { method, path, credentials, idempotency_key, json, body },
    )
}

/// A 4xx must carry the standard JSON error body.
async fn assert_client_error(response: reqwest::Response, what: &str) {
    let status = response.status();
    assert!(status.is_client_error(), "{what}: expected a 4xx, got {status}");
    let body: Value = response.json().await.unwrap_or_else(|e| panic!("{what}: {status} without a JSON body: {e}"));
    assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string(), "{what}: {body}");
}

#[test]
fn generated_requests_never_cause_a_5xx_and_refused_ones_store_nothing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // No validator: the topic then holds exactly the SubmissionCreated records of the 202s.
    let system = runtime.block_on(async {
        let db = support::TestDb::create().await;
        let mut config = support::test_config(&db);
        config.validators = 0;
        TestSystem::start_with(db, config).await
    });
    let accepted = std::cell::Cell::new(0usize);
    let config = Config { cases: 1500, failure_persistence: None, ..Config::default() };

    TestRunner::new(config.clone())
        .run(&(0..CONTENT_TYPES.len(), body()), |(type_index, body)| {
            let (content_type, json_type) = CONTENT_TYPES[type_index];
            let expected = should_accept(json_type, &body);
            runtime.block_on(async {
                let mut request = system.http.post(system.url("/api/submissions")).body(body.clone());
                if let Some(content_type) = content_type {
                    request = request.header("content-type", content_type);
                }
                let response = request.send().await.unwrap();
                let what = format!("POST {content_type:?} {:?}", String::from_utf8_lossy(&body[..body.len().min(120)]));
                if expected {
                    assert_eq!(response.status(), StatusCode::ACCEPTED, "{what}");
                    accepted.set(accepted.get() + 1);
                } else {
                    assert_client_error(response, &what).await;
                }
            });
            Ok(())
        })
        .unwrap();

    TestRunner::new(config.clone())
        .run(&read_path(), |path| {
            runtime.block_on(async {
                let response = system.http.get(system.url(&path)).send().await.unwrap();
                if response.status() == StatusCode::OK {
                    let body: Value = response.json().await.unwrap();
                    assert!(body["items"].is_array() || body["id"].is_string() || body["email"].is_boolean(), "GET {path}: {body}");
                } else {
                    assert_client_error(response, &format!("GET {path}")).await;
                }
            });
            Ok(())
        })
        .unwrap();

    // Account endpoints and credentials: a plain client, so only the generated credentials count.
    let plain = reqwest::Client::new();
    let named = std::cell::RefCell::new(std::collections::HashSet::new());
    TestRunner::new(Config { cases: 400, ..config })
        .run(&account_request(), |request| {
            runtime.block_on(async {
                let client = if request.credentials.is_none() { &system.http } else { &plain };
                let mut builder = client.request(request.method.parse().unwrap(), system.url(&request.path)).body(request.body.clone());
                for (name, value) in request.credentials.iter().flatten() {
                    builder = builder.header(*name, value.as_str());
                }
                if let Some(key) = &request.idempotency_key {
                    builder = builder.header("idempotency-key", key.as_str());
                }
                if request.json {
                    builder = builder.header("content-type", "application/json");
                }
                let response = builder.send().await.unwrap();
                let status = response.status();
                let what = format!("{request:?}");
                if status.is_success() {
                    if request.path == "/api/submissions" && status == StatusCode::ACCEPTED {
                        let body: Value = response.json().await.unwrap();
                        named.borrow_mut().insert(body["id"].as_str().unwrap().to_owned());
                    }
                } else {
                    assert_client_error(response, &what).await;
                }
            });
            Ok(())
        })
        .unwrap();

    let accepted = accepted.get();
    assert!(accepted > 0, "the generator produced some valid submissions");
    let submissions = accepted + named.borrow().len();
    assert_eq!(runtime.block_on(system.records_in_topic()), submissions as i64, "one record per submission a 202 named, none for refused requests");
    println!("hostile input: 1500 bodies ({accepted} valid), 1500 paths and 400 account requests");
    runtime.block_on(system.stop());
}
