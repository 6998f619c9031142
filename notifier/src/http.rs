//! The notification API: per-channel settings, webhook endpoints (the secret is shown once, at
//! creation), test events, and every delivery with its attempts.

use accounts::Caller;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_kit::http_error::{DatabaseUnavailable, ErrorBody, JsonBody, JsonBodyErrors, QueryParams, SignedIn, SignedInChange};
use uuid::Uuid;

use crate::{ssrf, webhook, ApiError, AppState};

/// Endpoints one account may have.
const MAX_ENDPOINTS: i64 = 10;
/// Test events an account may ask for: each is a request this server makes for the caller.
const TEST_SENDS: accounts::rate_limit::Policy = accounts::rate_limit::Policy { name: "webhook-tests", limit: 10, window_secs: 60 };
/// Deliveries listed at most.
const MAX_DELIVERIES: i64 = 200;

/// The OpenAPI description of the notification endpoints.
#[derive(utoipa::OpenApi)]
#[openapi(paths(settings, update_settings, list_endpoints, create_endpoint, delete_endpoint, send_test, deliveries))]
pub struct NotifierApi;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/notification-settings", get(settings).put(update_settings))
        .route("/api/webhooks", get(list_endpoints).post(create_endpoint))
        .route("/api/webhooks/{id}", axum::routing::delete(delete_endpoint))
        .route("/api/webhooks/{id}/test", post(send_test))
        .route("/api/deliveries", get(deliveries))
        .with_state(state)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Settings {
    email: bool,
    webhooks: bool,
    /// Where email goes (the account's address).
    email_address: String,
    /// Whether this installation sends email at all (`SMTP_URL`).
    email_available: bool,
}

/// Which notifications the caller gets.
#[utoipa::path(get, path = "/api/notification-settings", tag = "notifications", responses(
    (status = 200, description = "the caller's channels", body = Settings), SignedIn, DatabaseUnavailable,
))]
async fn settings(State(state): State<AppState>, caller: Caller) -> Result<Json<Settings>, ApiError> {
    read_settings(&state, caller.account_id).await.map(Json)
}

async fn read_settings(state: &AppState, account_id: Uuid) -> Result<Settings, ApiError> {
    let (email, webhooks, email_address): (bool, bool, String) = sqlx::query_as(
        "SELECT COALESCE(s.email_enabled, true), COALESCE(s.webhooks_enabled, true), a.email
         FROM accounts.accounts a LEFT JOIN notifier.channel_settings s ON s.account_id = a.id WHERE a.id = $1",
    )
    .bind(account_id)
    .fetch_one(&state.pool)
    .await?;
    Ok(Settings { email, webhooks, email_address, email_available: state.email_available })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SettingsChange {
    email: Option<bool>,
    webhooks: Option<bool>,
}

/// Turns channels on or off; a channel left out keeps its setting.
#[utoipa::path(put, path = "/api/notification-settings", tag = "notifications", request_body = SettingsChange, responses(
    (status = 200, description = "the channels now", body = Settings),
    JsonBodyErrors,
    (status = 422, description = "`invalid_body`", body = ErrorBody),
    SignedInChange, DatabaseUnavailable,
))]
async fn update_settings(State(state): State<AppState>, caller: Caller, body: JsonBody<SettingsChange>) -> Result<Json<Settings>, ApiError> {
    let JsonBody(change) = body;
    sqlx::query(
        "INSERT INTO notifier.channel_settings (account_id, email_enabled, webhooks_enabled)
         VALUES ($1, COALESCE($2, true), COALESCE($3, true))
         ON CONFLICT (account_id) DO UPDATE SET
             email_enabled = COALESCE($2, channel_settings.email_enabled),
             webhooks_enabled = COALESCE($3, channel_settings.webhooks_enabled)",
    )
    .bind(caller.account_id)
    .bind(change.email)
    .bind(change.webhooks)
    .execute(&state.pool)
    .await?;
    tracing::info!(account_id = %caller.account_id, email = ?change.email, webhooks = ?change.webhooks, "notification settings changed");
    read_settings(&state, caller.account_id).await.map(Json)
}

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct Endpoint {
    id: Uuid,
    url: String,
    description: String,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Items<T> {
    items: Vec<T>,
}

/// The caller's webhook endpoints (never their secrets).
#[utoipa::path(get, path = "/api/webhooks", tag = "notifications", responses(
    (status = 200, description = "oldest first", body = Items<Endpoint>), SignedIn, DatabaseUnavailable,
))]
async fn list_endpoints(State(state): State<AppState>, caller: Caller) -> Result<Json<Items<Endpoint>>, ApiError> {
    let items = sqlx::query_as(
        "SELECT id, url, description, created_at FROM notifier.webhook_endpoints
         WHERE account_id = $1 AND deleted_at IS NULL ORDER BY created_at",
    )
    .bind(caller.account_id)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(Items { items }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewEndpoint {
    /// An http or https URL whose host resolves to public addresses only.
    #[schema(pattern = "^https?://[^\\s/?#@]+([/?#][^\\s]*)?$")]
    url: String,
    #[serde(default)]
    description: String,
}

/// The endpoint as created, with its signing secret: the only time the secret is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CreatedEndpoint {
    #[serde(flatten)]
    endpoint: Endpoint,
    secret: String,
}

/// Registers a webhook endpoint: verdicts are POSTed to it, signed per Standard Webhooks with
/// the secret in this answer (shown once).
#[utoipa::path(post, path = "/api/webhooks", tag = "notifications", request_body = NewEndpoint, responses(
    (status = 201, description = "the endpoint and its signing secret", body = CreatedEndpoint),
    JsonBodyErrors,
    (status = 409, description = "`too_many_endpoints`", body = ErrorBody),
    (status = 422, description = "`invalid_body`, `url_refused` (not http(s), or a private address)", body = ErrorBody),
    SignedInChange, DatabaseUnavailable,
))]
async fn create_endpoint(State(state): State<AppState>, caller: Caller, body: JsonBody<NewEndpoint>) -> Result<impl IntoResponse, ApiError> {
    let JsonBody(new) = body;
    if new.url.len() > 2048 || new.description.chars().count() > 200 {
        return Err(ApiError::InvalidBody("`url` is at most 2048 bytes and `description` 200 characters".into()));
    }
    let url = ssrf::check_url(&new.url, state.allow_private_targets).await?;
    // Counted and inserted under the account's row lock: two requests counting at once both saw
    // room for one more, and an account could pass the cap.
    let mut tx = state.pool.begin().await?;
    sqlx::query("SELECT 1 FROM accounts.accounts WHERE id = $1 FOR NO KEY UPDATE").bind(caller.account_id).execute(&mut *tx).await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM notifier.webhook_endpoints WHERE account_id = $1 AND deleted_at IS NULL")
        .bind(caller.account_id)
        .fetch_one(&mut *tx)
        .await?;
    if count >= MAX_ENDPOINTS {
        return Err(ApiError::TooManyEndpoints(MAX_ENDPOINTS));
    }
    let secret = webhook::new_secret();
    let endpoint: Endpoint = sqlx::query_as(
        "INSERT INTO notifier.webhook_endpoints (id, account_id, url, secret, description) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, url, description, created_at",
    )
    .bind(Uuid::new_v4())
    .bind(caller.account_id)
    .bind(url.as_str())
    .bind(&secret)
    .bind(&new.description)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(account_id = %caller.account_id, endpoint_id = %endpoint.id, "webhook endpoint created");
    Ok((StatusCode::CREATED, Json(CreatedEndpoint { endpoint, secret })))
}

fn endpoint_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    service_kit::http_error::path_uuid(path, "endpoint").map_err(ApiError::from)
}

/// Removes a webhook endpoint; nothing more is sent to it.
#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "notifications", params(("id" = uuid::Uuid, Path, description = "the endpoint's id")), responses(
    (status = 204, description = "removed"),
    (status = 400, description = "`invalid_id`", body = ErrorBody),
    (status = 404, description = "`not_found`", body = ErrorBody),
    SignedInChange, DatabaseUnavailable,
))]
async fn delete_endpoint(State(state): State<AppState>, caller: Caller, path: Result<Path<String>, PathRejection>) -> Result<StatusCode, ApiError> {
    let id = endpoint_id(path)?;
    let deleted = sqlx::query("UPDATE notifier.webhook_endpoints SET deleted_at = now() WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL")
        .bind(id)
        .bind(caller.account_id)
        .execute(&state.pool)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::NotFound(id));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a `webhook.test` event to the endpoint (delivered like any other, with retries).
#[utoipa::path(post, path = "/api/webhooks/{id}/test", tag = "notifications", params(("id" = uuid::Uuid, Path, description = "the endpoint's id")), responses(
    (status = 202, description = "queued; see `/api/deliveries`", body = TestQueued),
    (status = 400, description = "`invalid_id`", body = ErrorBody),
    (status = 404, description = "`not_found`", body = ErrorBody),
    (status = 429, description = "`rate_limited`: 10 test events a minute per account", body = ErrorBody),
    SignedInChange, DatabaseUnavailable,
))]
async fn send_test(State(state): State<AppState>, caller: Caller, path: Result<Path<String>, PathRejection>) -> Result<impl IntoResponse, ApiError> {
    let id = endpoint_id(path)?;
    let live: Option<Uuid> = sqlx::query_scalar("SELECT id FROM notifier.webhook_endpoints WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL")
        .bind(id)
        .bind(caller.account_id)
        .fetch_optional(&state.pool)
        .await?;
    live.ok_or(ApiError::NotFound(id))?;
    state.accounts.limiter.require(TEST_SENDS, &caller.account_id.to_string()).await?;
    let delivery_id = crate::delivery::queue_test(&state.pool, caller.account_id, id).await?;
    state.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(TestQueued { delivery_id })))
}

/// A test event, queued.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TestQueued {
    delivery_id: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    /// Only the deliveries to this webhook endpoint.
    endpoint: Option<Uuid>,
    /// 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct Delivery {
    id: String,
    channel: String,
    endpoint_id: Option<Uuid>,
    event_type: String,
    state: String,
    attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    /// Every attempt so far: when, the status code, the error.
    #[sqlx(json)]
    attempt_log: Vec<Attempt>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
struct Attempt {
    attempt: i32,
    attempted_at: DateTime<Utc>,
    status_code: Option<i32>,
    error: Option<String>,
    duration_ms: i32,
}

/// The caller's deliveries, newest first, each with every attempt.
#[utoipa::path(get, path = "/api/deliveries", tag = "notifications", params(DeliveriesQuery), responses(
    (status = 200, description = "newest first", body = Items<Delivery>),
    (status = 400, description = "`invalid_query`", body = ErrorBody),
    SignedIn, DatabaseUnavailable,
))]
async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<DeliveriesQuery>,
) -> Result<Json<Items<Delivery>>, ApiError> {
    let limit = service_kit::page::limit_within(query.limit, 50, MAX_DELIVERIES)?;
    let items = sqlx::query_as(
        "SELECT d.id, d.channel, d.endpoint_id, n.event_type, d.state, d.attempts,
             CASE WHEN d.state = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
             d.last_error, d.created_at, d.finished_at,
             COALESCE((SELECT jsonb_agg(jsonb_build_object('attempt', t.attempt, 'attempted_at', t.attempted_at,
                          'status_code', t.status_code, 'error', t.error, 'duration_ms', t.duration_ms) ORDER BY t.attempt)
                       FROM notifier.delivery_attempts t WHERE t.delivery_id = d.id), '[]'::jsonb) AS attempt_log
         FROM notifier.deliveries d JOIN notifier.notifications n ON n.id = d.notification_id
         WHERE d.account_id = $1 AND ($2::uuid IS NULL OR d.endpoint_id = $2)
         ORDER BY d.created_at DESC, d.id LIMIT $3",
    )
    .bind(caller.account_id)
    .bind(query.endpoint)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(Items { items }))
}
