//! `/healthz` says the process is alive; `/readyz` says its dependencies answer. A service
//! registers one [`ReadinessCheck`] per dependency; the one-process mode merges the checks of
//! every component it runs behind a single pair of routes.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

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

    /// Ready when `statement` runs on `pool`: the database answers, and what the service reads
    /// there exists (a statement naming a table fails until its owner created it).
    pub fn database(name: &'static str, pool: sqlx::PgPool, statement: &'static str) -> Self {
        ReadinessCheck::new(name, move || {
            let pool = pool.clone();
            async move { sqlx::query(statement).execute(&pool).await.map(drop).map_err(|error| format!("database unavailable: {error}")) }
        })
    }
}

/// A probe that takes longer than this counts as failed: a hung dependency is not ready.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Routes `/healthz` and `/readyz` for the given checks.
pub fn routes(checks: Vec<ReadinessCheck>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(Arc::new(checks))
}

/// What `/healthz` and `/readyz` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (`/healthz`), `ready` or `not_ready` (`/readyz`).
    pub status: &'static str,
    /// Each dependency `/readyz` checked: `ok`, or what is wrong with it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<&'static str, String>,
}

/// The process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, description = "the process runs", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok", checks: BTreeMap::new() })
}

/// Every dependency this process needs answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()), responses(
    (status = 200, description = "ready", body = Health),
    (status = 503, description = "a dependency does not answer; `checks` says which", body = Health),
))]
async fn readyz(State(checks): State<Arc<Vec<ReadinessCheck>>>) -> impl IntoResponse {
    let results = futures_util::future::join_all(checks.iter().map(|check| async move {
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, (check.probe)()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        (check.name, outcome)
    }))
    .await;

    let ready = results.iter().all(|(_, outcome)| outcome.is_ok());
    let checks = results.into_iter().map(|(name, outcome)| (name, outcome.err().unwrap_or_else(|| "ok".into()))).collect();
    let (status, word) = if ready { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not_ready") };
    (status, Json(Health { status: word, checks }))
}

/// The OpenAPI description of `/healthz` and `/readyz`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz))]
pub struct HealthApi;
