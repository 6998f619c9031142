//! `GET /api/account/export` (GDPR article 20): everything the system holds about the caller,
//! as one JSON document. The account, its API tokens (never their secrets), notification
//! settings, webhook endpoints (without their signing secrets), deliveries with their attempts,
//! and batches come first; then the submissions with their whole history, streamed from the
//! database a page at a time, so a large account is never held in memory. A failure half way cuts
//! the response: the client gets invalid JSON, never a document that looks complete.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use service_kit::http_error::{ErrorBody, SignedIn};
use uuid::Uuid;

use crate::error::ReadModelUnavailable;
use crate::{ApiError, AppState};
use accounts::Caller;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/account/export", get(export))
}

/// The OpenAPI description of the export.
#[derive(utoipa::OpenApi)]
#[openapi(paths(export))]
pub struct ExportApi;

/// Everything the system holds about the caller: `account`, `api_tokens`,
/// `notification_settings`, `webhook_endpoints`, `deliveries` (each with its notification and
/// attempts), `batches`, then `submissions`, each with its `history`. Nothing of any other
/// account. Streamed.
#[utoipa::path(get, path = "/api/account/export", tag = "accounts", responses(
    (status = 200, description = "the caller's data, as a JSON document (an attachment)", content_type = "application/json", body = Object),
    (status = 404, description = "`not_found`: the account no longer exists", body = ErrorBody),
    SignedIn, ReadModelUnavailable,
))]
async fn export(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let owner = caller.account_id;
    let mut head = account_part(&state.pool, owner).await?.ok_or(ApiError::NotFound(owner))?;
    head.extend(notifier_part(&state.pool, owner).await?);
    // The head as an object left open, the submissions to follow as its last member.
    let mut opening = Value::Object(head).to_string();
    opening.pop();
    opening.push_str(",\"submissions\":[");
    let pool = state.pool.clone();
    let body = async_stream::stream! {
        yield Ok::<Bytes, std::io::Error>(Bytes::from(opening));
        // Page by page, each a short query: a client reading slowly holds no connection.
        let mut after: Option<(DateTime<Utc>, Uuid)> = None;
        let mut separator = "";
        loop {
            let page: Result<Vec<(DateTime<Utc>, Uuid, String)>, sqlx::Error> = sqlx::query_as(SUBMISSIONS)
                .bind(owner)
                .bind(after.map(|(at, _)| at))
                .bind(after.map(|(_, id)| id))
                .fetch_all(&pool)
                .await;
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(account_id = %owner, %error, "export cut short");
                    yield Err(std::io::Error::other(error));
                    return;
                }
            };
            let Some((at, id)) = page.last().map(|(at, id, _)| (*at, *id)) else { break };
            for (_, _, submission) in page {
                yield Ok(Bytes::from(format!("{separator}{submission}")));
                separator = ",";
            }
            after = Some((at, id));
        }
        yield Ok(Bytes::from_static(b"]}"));
    };
    tracing::info!(account_id = %owner, "account exported");
    Ok((
        [(header::CONTENT_TYPE, "application/json"), (header::CONTENT_DISPOSITION, "attachment; filename=\"content-processor-export.json\"")],
        Body::from_stream(body),
    )
        .into_response())
}

/// The account, its tokens' metadata and its batches; `None` when the account is gone.
async fn account_part(pool: &sqlx::PgPool, owner: Uuid) -> Result<Option<Map<String, Value>>, sqlx::Error> {
    let part: Option<Value> = sqlx::query_scalar(
        "SELECT jsonb_build_object(
             'exported_at', now(),
             'account', to_jsonb(a) - 'password_hash',
             'api_tokens', COALESCE((SELECT jsonb_agg(to_jsonb(t) - 'token_digest' - 'account_id' ORDER BY t.created_at)
                                     FROM accounts.api_tokens t WHERE t.account_id = a.id), '[]'),
             'batches', COALESCE((SELECT jsonb_agg(b ORDER BY b.created_at) FROM (
                 SELECT batch_id AS id, max(batch_size) AS size, min(created_at) AS created_at
                 FROM submissions WHERE owner_id = a.id AND batch_id IS NOT NULL GROUP BY batch_id) b), '[]'))
         FROM accounts.accounts a WHERE a.id = $1",
    )
    .bind(owner)
    .fetch_optional(pool)
    .await?;
    Ok(part.and_then(|part| match part {
        Value::Object(map) => Some(map),
        _ => None,
    }))
}

/// What the notifier holds of the account, where the notifier shares this database.
async fn notifier_part(pool: &sqlx::PgPool, owner: Uuid) -> Result<Map<String, Value>, sqlx::Error> {
    let present: bool = sqlx::query_scalar("SELECT to_regclass('notifier.deliveries') IS NOT NULL").fetch_one(pool).await?;
    if !present {
        return Ok(Map::new());
    }
    let part: Value = sqlx::query_scalar(
        "SELECT jsonb_build_object(
             'notification_settings', (SELECT to_jsonb(c) - 'account_id' FROM notifier.channel_settings c WHERE c.account_id = $1),
             'webhook_endpoints', COALESCE((SELECT jsonb_agg(to_jsonb(w) - 'secret' - 'account_id' ORDER BY w.created_at)
                                            FROM notifier.webhook_endpoints w WHERE w.account_id = $1), '[]'),
             'deliveries', COALESCE((SELECT jsonb_agg(to_jsonb(d) - 'account_id' || jsonb_build_object(
                     'notification', (SELECT to_jsonb(n) - 'account_id' - 'traceparent' FROM notifier.notifications n WHERE n.id = d.notification_id),
                     'attempts', COALESCE((SELECT jsonb_agg(to_jsonb(x) - 'delivery_id' ORDER BY x.attempt)
                                           FROM notifier.delivery_attempts x WHERE x.delivery_id = d.id), '[]'))
                 ORDER BY d.created_at) FROM notifier.deliveries d WHERE d.account_id = $1), '[]'))",
    )
    .bind(owner)
    .fetch_one(pool)
    .await?;
    Ok(match part {
        Value::Object(map) => map,
        _ => Map::new(),
    })
}

/// A page of the owner's submissions after the cursor (`$2`, `$3`: created_at and id; none for
/// the first page), oldest first, each a JSON object with its history (the payload without the
/// sealed bytes, which only the key store could read).
const SUBMISSIONS: &str = "SELECT s.created_at, s.id, jsonb_build_object(
        'id', s.id, 'content', s.content, 'status', s.status, 'reasons', s.reasons, 'created_at', s.created_at,
        'processing_started_at', s.processing_started_at, 'processed_at', s.processed_at,
        'batch_id', s.batch_id, 'batch_index', s.batch_index, 'replaces', s.replaces,
        'history', COALESCE((SELECT jsonb_agg(jsonb_build_object(
                'event_id', e.event_id, 'event_type', e.event_type, 'status', e.status, 'occurred_at', e.occurred_at,
                'payload', e.payload - 'sealed_content' - 'content') ORDER BY e.seq)
            FROM submission_events e WHERE e.submission_id = s.id), '[]'))::text
    FROM submissions s WHERE s.owner_id = $1 AND ($2::timestamptz IS NULL OR (s.created_at, s.id) > ($2, $3))
    ORDER BY s.created_at, s.id LIMIT 200";
