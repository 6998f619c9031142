//! The OpenAPI document, generated from the code, against the running system (Apache Kafka,
//! PostgreSQL): it describes every route the one-process mode serves, and schemathesis (from
//! PyPI; `scripts/test` installs it) fuzzes every operation signed in as an admin and finds no
//! server error and no answer that departs from the document, errors included. `/docs` serves
//! Swagger UI from this server. The streams are
//! described but not fuzzed: they never end, which is what they are for.

mod support;

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;
use support::browser::built_ui;
use support::{TestDb, TestSystem};

/// Every route the one-process mode serves, by method and path.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/accounts"),
    ("get", "/api/session"),
    ("post", "/api/session"),
    ("delete", "/api/session"),
    ("delete", "/api/sessions"),
    ("delete", "/api/account"),
    ("delete", "/api/accounts/{id}"),
    ("get", "/api/account/export"),
    ("put", "/api/account/password"),
    ("post", "/api/account/verification"),
    ("post", "/api/account/verify"),
    ("post", "/api/password-reset"),
    ("post", "/api/password-reset/confirm"),
    ("get", "/api/tokens"),
    ("post", "/api/tokens"),
    ("delete", "/api/tokens/{id}"),
    ("post", "/api/submissions"),
    ("get", "/api/submissions"),
    ("get", "/api/submissions/{id}"),
    ("get", "/api/submissions/{id}/events"),
    ("get", "/api/submissions/{id}/stream"),
    ("get", "/api/stream"),
    ("post", "/api/batches"),
    ("get", "/api/batches"),
    ("get", "/api/batches/{id}"),
    ("get", "/api/batches/{id}/items"),
    ("get", "/api/batches/{id}/stream"),
    ("get", "/api/notification-settings"),
    ("put", "/api/notification-settings"),
    ("get", "/api/webhooks"),
    ("post", "/api/webhooks"),
    ("delete", "/api/webhooks/{id}"),
    ("post", "/api/webhooks/{id}/test"),
    ("get", "/api/deliveries"),
    ("get", "/admin/overview"),
    ("get", "/admin/dead-letters"),
    ("get", "/admin/records"),
    ("get", "/admin/parked-records"),
    ("get", "/admin/rebuild"),
    ("post", "/admin/rebuild"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/openapi.json"),
    ("get", "/ui-config.json"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_every_route_and_schemathesis_finds_the_system_true_to_it() {
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.ui_dir = built_ui();
    let system = TestSystem::start_with(db, config).await;

    // The interactive docs: Swagger UI served from here, nothing fetched from another host.
    let page = reqwest::get(system.url("/docs/")).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("src=\"swagger-ui-bundle.js\"") && !html.contains("//"), "{html}");
    let script = reqwest::get(system.url("/docs/docs.js")).await.unwrap().text().await.unwrap();
    assert!(script.contains("url: \"/api/openapi.json\"") && script.contains("validatorUrl: null") && !script.contains("//cdn"), "{script}");
    assert_eq!(reqwest::get(system.url("/docs/swagger-ui-bundle.js")).await.unwrap().status(), StatusCode::OK);

    // Pages run scripts and WebAssembly from this origin only and are never framed (the browser
    // tests run the UI under this policy); an API's answers are data that nothing may run,
    // frame, sniff or cache.
    let policy =
        |response: &reqwest::Response| response.headers().get("content-security-policy").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let home = reqwest::get(system.url("/")).await.unwrap();
    assert!(policy(&home).contains("script-src 'self' 'wasm-unsafe-eval'") && policy(&home).contains("frame-ancestors 'none'"), "{}", policy(&home));
    let anonymous = reqwest::get(system.url("/api/openapi.json")).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::OK, "the document needs no credentials");
    assert_eq!(policy(&anonymous), "default-src 'none'; frame-ancestors 'none'");
    let header = |name: &str| anonymous.headers()[name].to_str().unwrap().to_owned();
    assert_eq!((header("x-content-type-options"), header("cache-control")), ("nosniff".to_owned(), "no-store".to_owned()));
    let document: Value = anonymous.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."), "an OpenAPI 3.x document");
    // Valid as client generators read it: openapi-spec-validator, made by others.
    let python = std::env::var("CONTENT_PROCESSOR_PYTHON").unwrap_or_else(|_| "python3".into());
    let written = support::scratch_dir("openapi").with_extension("json");
    std::fs::write(&written, document.to_string()).unwrap();
    let validated = tokio::process::Command::new(std::path::Path::new(&python).with_file_name("openapi-spec-validator"))
        .arg(&written)
        .output()
        .await
        .unwrap_or_else(|error| panic!("openapi-spec-validator ({error}); scripts/test installs it"));
    let _ = std::fs::remove_file(&written);
    assert!(validated.status.success(), "the document is not valid OpenAPI:\n{}", String::from_utf8_lossy(&validated.stdout));
    let described: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, operations)| operations.as_object().unwrap().keys().map(move |method| (method.clone(), path.clone())))
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(described, served, "every route is described, and nothing else");
    // Client generators name a method after each operationId: each must be unique.
    let mut operation_ids: Vec<&str> =
        described.iter().map(|(method, path)| document["paths"][path][method]["operationId"].as_str().unwrap_or_default()).collect();
    operation_ids.sort_unstable();
    let repeated: Vec<&&str> = operation_ids.windows(2).filter(|pair| pair[0] == pair[1]).map(|pair| &pair[0]).collect();
    assert!(repeated.is_empty() && !operation_ids.contains(&""), "operationIds repeated or missing: {repeated:?}");
    // Every operation says how it fails, with the error body.
    for ((method, path), operation) in described.iter().map(|(m, p)| ((m, p), &document["paths"][p][m])) {
        let responses = operation["responses"].as_object().unwrap();
        assert!(responses.keys().any(|status| status.starts_with('2')), "{method} {path} has a success");
        let protected = operation["security"] != serde_json::json!([{}]);
        if protected {
            assert_eq!(
                responses["401"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                "{method} {path} documents 401"
            );
        }
    }

    let token = support::admin_token(&system.db.url).await;
    let schemathesis = std::path::Path::new(&std::env::var("CONTENT_PROCESSOR_PYTHON").unwrap_or_else(|_| "python3".into())).with_file_name("st");
    // It keeps a cache where it runs: somewhere outside the repository.
    let scratch = support::scratch_dir("schemathesis");
    std::fs::create_dir_all(&scratch).unwrap();
    let output = tokio::process::Command::new(&schemathesis)
        .current_dir(&scratch)
        // Every check. Where an operation refuses schema-valid data for a reason of state (an
        // unknown link token, a reused Idempotency-Key...), the file names the one status it
        // adds, and why.
        .args(["--config-file", concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml")])
        .arg("run")
        .arg(system.url("/api/openapi.json"))
        .args(["--url", &system.base])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all"])
        // One worker: with two, schemathesis once died inside CPython 3.11 compiling a module in
        // two threads at once ("AST constructor recursion depth mismatch"), in the full suite.
        .args(["--max-examples", "30", "--workers", "1", "--request-timeout", "30", "--seed", "1"])
        .output()
        .await
        .unwrap_or_else(|error| panic!("schemathesis at {} ({error}); scripts/test installs it", schemathesis.display()));
    let _ = std::fs::remove_dir_all(&scratch);
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(output.status.success(), "schemathesis found the system untrue to its document:\n{report}\n{}", String::from_utf8_lossy(&output.stderr));
    system.stop().await;
}
