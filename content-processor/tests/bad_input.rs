//! Bad input gets a clear error (status code and JSON body) and changes nothing: the topic
//! holds no new record and the read model stays empty.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use support::TestSystem;

async fn post_raw(system: &TestSystem, content_type: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
    let mut request = system.http.post(system.url("/api/submissions")).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.expect("error bodies are JSON"))
}

/// A body sent and how it must be refused: what it is, its content type, the bytes, the status
/// and the error code.
type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_are_refused_and_store_nothing() {
    let system = TestSystem::start().await;
    let json = Some("application/json");
    let too_long = serde_json::to_vec(&serde_json::json!({"content": "a1".repeat(32 * 1024) + "x"})).unwrap();
    let huge_body = vec![b' '; 2 * 1024 * 1024];
    let cases: Vec<Case> = vec![
        ("malformed JSON", json, b"{\"content\":".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
        ("not JSON at all", json, b"content=hello".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
        ("missing content", json, b"{}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("number content", json, b"{\"content\": 42}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("null content", json, b"{\"content\": null}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("array body", json, b"[\"content\"]".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("an unknown field", json, b"{\"content\": \"hello 12345\", \"colour\": \"red\"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("replaces not an id", json, b"{\"content\": \"hello 12345\", \"replaces\": 7}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("empty content", json, b"{\"content\": \"\"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "empty_content"),
        ("NUL in content", json, b"{\"content\": \"abc\\u0000def12\"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_content"),
        ("no content type", None, b"{\"content\": \"hello 12345\"}".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        (
            "wrong content type",
            Some("text/plain"),
            b"{\"content\": \"hello 12345\"}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        ("content over 64 KiB", json, too_long, StatusCode::PAYLOAD_TOO_LARGE, "content_too_large"),
        ("body far over the limit", json, huge_body, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
    ];
    for (name, content_type, body, expected, code) in cases {
        let (status, body) = post_raw(&system, content_type, body).await;
        assert_eq!(status, expected, "{name}: {body}");
        assert_eq!(body["error"]["code"], code, "{name}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {body}");
    }

    // A body refused unread closes its connection, and the answer says so: the client's next
    // request goes on a new connection instead of failing on the closed one.
    let refused = system.http.post(system.url("/api/submissions")).header("content-type", "application/json");
    let response = refused.body(vec![b' '; 2 * 1024 * 1024]).send().await.unwrap();
    assert_eq!(response.headers().get("connection").map(|v| v.to_str().unwrap()), Some("close"));

    // Exactly at the limit is fine: the limit is inclusive.
    let at_limit = "a1".repeat(32 * 1024);
    let (status, _) = system.submit(&at_limit).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(system.records_in_topic().await, 1, "only the valid submission reached the log");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_get_clear_errors() {
    let system = TestSystem::start().await;
    let unknown = uuid::Uuid::new_v4();
    let cases = [
        (format!("/api/submissions/{unknown}"), StatusCode::NOT_FOUND, "not_found"),
        (format!("/api/submissions/{unknown}/events"), StatusCode::NOT_FOUND, "not_found"),
        ("/api/submissions/not-a-uuid".to_owned(), StatusCode::BAD_REQUEST, "invalid_id"),
        ("/api/submissions/not-a-uuid/events".to_owned(), StatusCode::BAD_REQUEST, "invalid_id"),
        ("/api/submissions/not-a-uuid/stream".to_owned(), StatusCode::BAD_REQUEST, "invalid_id"),
        ("/api/submissions?limit=0".to_owned(), StatusCode::BAD_REQUEST, "invalid_query"),
        ("/api/submissions?limit=100000000".to_owned(), StatusCode::BAD_REQUEST, "invalid_query"),
        ("/api/submissions?limit=-5".to_owned(), StatusCode::BAD_REQUEST, "invalid_query"),
        ("/api/submissions?limit=ten".to_owned(), StatusCode::BAD_REQUEST, "invalid_query"),
        ("/api/submissions?status=DONE".to_owned(), StatusCode::BAD_REQUEST, "invalid_query"),
        ("/api/submissions?cursor=garbage".to_owned(), StatusCode::BAD_REQUEST, "invalid_query"),
        ("/api/submissions?colour=red".to_owned(), StatusCode::BAD_REQUEST, "invalid_query"),
        ("/api/nothing-here".to_owned(), StatusCode::NOT_FOUND, "not_found"),
    ];
    for (path, expected, code) in cases {
        let (status, body) = system.get_json(&path).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
    }
    let response = system.http.get(system.url("/api/stream")).header("Last-Event-ID", "yesterday").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    system.stop().await;
}

/// Every JSON endpoint names a refused body the same way, whichever service serves it: the
/// wrong content type, a body that is not JSON, JSON of the wrong shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_names_a_refused_json_body_alike() {
    let system = TestSystem::start().await;
    let endpoints = [
        ("POST", "/api/webhooks"),
        ("PUT", "/api/notification-settings"),
        ("POST", "/api/tokens"),
        ("POST", "/api/session"),
        ("POST", "/api/submissions"),
    ];
    let bodies: [(Option<&str>, &str, StatusCode, &str); 3] = [
        (Some("text/plain"), "{}", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        (Some("application/json"), "not json", StatusCode::BAD_REQUEST, "malformed_json"),
        (Some("application/json"), "[1, 2]", StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
    ];
    for (method, path) in endpoints {
        for (content_type, body, status, code) in bodies {
            let mut request = system.http.request(method.parse().unwrap(), system.url(path)).body(body);
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = request.send().await.unwrap();
            let answered = response.status();
            let body: Value = response.json().await.expect("error bodies are JSON");
            assert_eq!((answered, body["error"]["code"].as_str()), (status, Some(code)), "{method} {path} with {content_type:?} {body}");
        }
    }
    // An array whose items fit the fields in order is not an object either (serde's derive
    // would read it as one).
    for (method, path, body) in [
        ("PUT", "/api/notification-settings", "[null, null]"),
        ("POST", "/api/session", "[\"admin@tests.example\", \"any password at all\"]"),
        ("POST", "/api/tokens", "[\"positional\", null]"),
    ] {
        let request = system.http.request(method.parse().unwrap(), system.url(path)).header("content-type", "application/json").body(body);
        let response = request.send().await.unwrap();
        let answered = response.status();
        let body: Value = response.json().await.expect("error bodies are JSON");
        assert_eq!((answered, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body")), "{method} {path}: {body}");
    }
    system.stop().await;
}
