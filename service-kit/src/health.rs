//! `/healthz` says the process is alive; `/readyz` says its dependencies answer. A service
//! registers one [`ReadinessCheck`] per dependency; the one-process mode merges the checks of
//! every component it runs behind a single pair of routes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One dependency to probe: a name for the report and a probe that says what is wrong.
#[derive(Clone)]
pub struct ReadinessCheck {
    name: &'static str,
    probe: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ReadinessCheck {
    pub fn new<F, Fut>(name: &'static str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        ReadinessCheck { name, probe: Arc::new(move || Box::pin(probe())) }
    }
}

/// A probe that takes longer than this counts as failed: a hung dependency is not ready.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Routes `/healthz` and `/readyz` for the given checks.
pub fn routes(checks: Vec<ReadinessCheck>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(checks))
}

async fn readyz(State(checks): State<Arc<Vec<ReadinessCheck>>>) -> impl IntoResponse {
    let results = futures_util::future::join_all(checks.iter().map(|check| async move {
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, (check.probe)()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        (check.name, outcome)
    }))
    .await;

    let mut report = Map::new();
    let mut ready = true;
    for (name, outcome) in results {
        let value = match outcome {
            Ok(()) => Value::from("ok"),
            Err(problem) => {
                ready = false;
                Value::from(problem)
            }
        };
        report.insert(name.to_owned(), value);
    }
    let (status, word) = if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    (status, Json(json!({"status": word, "checks": report})))
}
