//! The logs of a run never hold a password, a session cookie, a CSRF token or an API token:
//! the query API runs as its own process, a client signs up, fails and succeeds to sign in,
//! makes, uses and revokes a token, and signs out; then its log file is searched.

mod support;

use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use support::process::{free_port, log_dir, Component};
use support::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs() {
    let db = TestDb::create().await;
    let logs = log_dir("secrets-in-logs");
    let port = free_port();
    let args = vec!["--listen".to_owned(), format!("127.0.0.1:{port}"), "--database-url".into(), db.url.clone()];
    let mut query_api = Component::new("query-api", args, &logs);
    query_api.start();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let (password, wrong_password) = ("correct horse battery 42", "incorrect donkey 17");
    let credentials = |password: &str| json!({"email": "eve@example.com", "password": password});

    let signed_up = support::eventually("the query API serves", || async {
        http.post(format!("{base}/api/accounts")).json(&credentials(password)).send().await.ok()
    })
    .await;
    assert_eq!(signed_up.status(), StatusCode::ACCEPTED);
    let wrong = http.post(format!("{base}/api/session")).json(&credentials(wrong_password)).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let signed_in = http.post(format!("{base}/api/session")).json(&credentials(password)).send().await.unwrap();
    let cookie = signed_in.headers()[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let session: Value = signed_in.json().await.unwrap();
    let csrf = session["csrf_token"].as_str().unwrap().to_owned();
    let with_session = |request: reqwest::RequestBuilder| request.header(header::COOKIE, &cookie).header("x-csrf-token", &csrf);
    let created: Value =
        with_session(http.post(format!("{base}/api/tokens"))).json(&json!({"name": "ci"})).send().await.unwrap().json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let used = http.get(format!("{base}/api/session")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(used.status(), StatusCode::OK);
    let revoked = with_session(http.delete(format!("{base}/api/tokens/{}", created["id"].as_str().unwrap()))).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(http.get(format!("{base}/api/session")).bearer_auth(&token).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(with_session(http.delete(format!("{base}/api/session"))).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    query_api.terminate(std::time::Duration::from_secs(10)).await;

    let log = std::fs::read_to_string(logs.join("query-api.log")).unwrap();
    assert!(log.contains("signed in") && log.contains("API token revoked"), "the log is the run's: {log}");
    let cookie_secret = cookie.split_once('=').unwrap().1;
    for (what, secret) in
        [("password", password), ("wrong password", wrong_password), ("API token", &token), ("session cookie", cookie_secret), ("CSRF token", &csrf)]
    {
        assert!(!log.contains(secret), "the log holds the {what}");
    }
    assert!(!log.contains("$argon2"), "the log holds a password hash");
    db.drop_database().await;
}

/// A database URL holding a password, as an operator's environment or a Kubernetes secret
/// gives it, never reaches a log, an error or `--help`: not when the database cannot be reached
/// (the notifier and `create-admin` stop, saying where they tried), and not in a run of the
/// query API against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_password_never_reaches_the_logs() {
    let db = TestDb::create().await;
    let role = format!("cp_role_{}", uuid::Uuid::new_v4().simple());
    let password = format!("pw{}", uuid::Uuid::new_v4().simple());
    let server = sqlx::PgPool::connect(&support::admin_url()).await.unwrap();
    sqlx::query(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'")).execute(&server).await.unwrap();
    sqlx::query(&format!("ALTER DATABASE {} OWNER TO {role}", db.name)).execute(&server).await.unwrap();
    let host = support::admin_url().trim_start_matches("postgres://postgres@").to_owned();
    let reachable = format!("postgres://{role}:{password}@{host}/{}", db.name);
    let away = free_port();
    let unreachable = format!("postgres://{role}:{password}@127.0.0.1:{away}/{}", db.name);

    let run = |args: Vec<String>| {
        let run = tokio::process::Command::new(support::process::BINARY)
            .args(args)
            .env("DATABASE_URL", &unreachable)
            .env("ADMIN_PASSWORD", "an admin's password 1")
            .output();
        async move {
            let output = tokio::time::timeout(std::time::Duration::from_secs(30), run).await.expect("it exits").unwrap();
            (output.status, format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
        }
    };
    let notifier = ["notifier", "--kafka-brokers", "127.0.0.1:1", "--listen", "127.0.0.1:0"];
    for args in [&notifier[..], &["create-admin", "admin@example.com"]] {
        let role = args[0];
        let (status, output) = run(args.iter().map(|arg| arg.to_string()).collect()).await;
        assert!(!status.success(), "{role} cannot start without its database: {output}");
        assert!(output.contains(&format!("127.0.0.1:{away}")), "{role} says where it tried: {output}");
        assert!(!output.contains(&password), "{role} printed the database password: {output}");
    }
    // The one-process mode (no role) too.
    for role in ["command-api", "query-api", "projector", "notifier", "rebuild", "create-admin", "deployed", ""] {
        let args = [role, "--help"].into_iter().filter(|arg| !arg.is_empty()).map(str::to_owned).collect();
        let (_, help) = run(args).await;
        assert!(help.contains("DATABASE_URL"), "{role} --help: {help}");
        assert!(!help.contains(&password), "{role} --help shows the database password");
    }

    let logs = log_dir("database-password");
    let port = free_port();
    let mut query_api = Component::new("query-api", vec!["--listen".into(), format!("127.0.0.1:{port}")], &logs).with_env("DATABASE_URL", &reachable);
    query_api.start();
    let http = reqwest::Client::new();
    let signed_up = support::eventually("the query API serves", || async {
        http.post(format!("http://127.0.0.1:{port}/api/accounts"))
            .json(&json!({"email": "eve@example.com", "password": "a long password 1"}))
            .send()
            .await
            .ok()
    })
    .await;
    assert_eq!(signed_up.status(), StatusCode::ACCEPTED);
    query_api.terminate(std::time::Duration::from_secs(10)).await;
    let log = std::fs::read_to_string(logs.join("query-api.log")).unwrap();
    assert!(log.contains("query-api listening"), "the log is the run's: {log}");
    assert!(!log.contains(&password), "the query API logged the database password");

    db.drop_database().await;
    sqlx::query(&format!("DROP ROLE {role}")).execute(&server).await.unwrap();
    server.close().await;
}
