//! A webhook receiver for the notification tests: a real HTTP server on loopback that records
//! every request and answers per path: `/ok` 204, `/flaky` 503 to the first attempt of each
//! `webhook-id` then 204, `/down` always 500, `/hang` nothing until the test releases it (then
//! 204; recorded when it arrives).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: StatusCode,
}

impl Received {
    pub fn webhook_id(&self) -> &str {
        self.headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Log {
    received: Vec<Received>,
    seen: HashSet<String>,
}

#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    log: Arc<Mutex<Log>>,
    release: Arc<tokio::sync::watch::Sender<bool>>,
}

#[derive(Clone)]
struct Shared {
    log: Arc<Mutex<Log>>,
    released: tokio::sync::watch::Receiver<bool>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let log: Arc<Mutex<Log>> = Arc::default();
        let (release, released) = tokio::sync::watch::channel(false);
        let app = Router::new().route("/{path}", post(receive)).with_state(Shared { log: log.clone(), released });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { base, log, release: Arc::new(release) }
    }

    /// Answers every request to `/hang`, held or still to come.
    pub fn release_hanging(&self) {
        self.release.send_replace(true);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().received.clone()
    }

    /// Waits until `done` holds for what was received.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        super::eventually(what, || async {
            let received = self.received();
            done(&received).then_some(received)
        })
        .await
    }
}

async fn receive(State(shared): State<Shared>, Path(path): Path<String>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if path == "hang" {
        shared.log.lock().unwrap().received.push(Received { path, headers, body, status: StatusCode::NO_CONTENT });
        let mut released = shared.released.clone();
        let _ = released.wait_for(|released| *released).await;
        return StatusCode::NO_CONTENT;
    }
    let mut log = shared.log.lock().unwrap();
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let status = match path.as_str() {
        "ok" => StatusCode::NO_CONTENT,
        "flaky" if log.seen.insert(id) => StatusCode::SERVICE_UNAVAILABLE,
        "flaky" => StatusCode::NO_CONTENT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    log.received.push(Received { path, headers, body, status });
    status
}
