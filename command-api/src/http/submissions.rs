//! `POST /api/submissions`: validate, append `SubmissionCreated`, answer once Kafka has it.
//! With `replaces`, the content is a FAILED submission's, edited and submitted again.

use accounts::Caller;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::{Envelope, Event, Status, SubmissionId};
use serde::{Deserialize, Serialize};
use service_kit::http_error::{ErrorBody, SignedInChange};
use sha2::{Digest, Sha256};
use tracing::Instrument;
use uuid::Uuid;

use super::intake;
use crate::idempotency::{self, Recorded};
use crate::{resubmission, ApiError, AppState};

/// The OpenAPI description of `POST /api/submissions`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create))]
pub struct SubmissionsApi;

pub fn routes(state: AppState) -> Router {
    // JSON escapes can make a body up to six times the content it carries (`\u0000`), so the
    // body limit leaves room for that; the content limit itself is checked after decoding.
    let body_limit = state.max_content_bytes.saturating_mul(6).saturating_add(1024);
    Router::new()
        .route("/api/submissions", post(create))
        .route("/api/submissions/", post(create))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The answer to an accepted submission; the same fields the query side serves, and where
/// Kafka stored it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    #[schema(value_type = uuid::Uuid)]
    pub id: SubmissionId,
    pub content: String,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    /// The FAILED submission this one replaces, if it is a resubmission.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub replaces: Option<SubmissionId>,
    /// `partition:offset` of its event: the `Location` carries it, and the query API answers
    /// that URL only once its read model holds the submission (reading your own write).
    pub position: String,
}

/// What `POST /api/submissions` takes: the handler reads it and the document describes it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubmission {
    /// The text to judge: 1 byte to `MAX_CONTENT_BYTES` (64 KiB by default) of UTF-8, no NUL
    /// (16,384 characters always fit).
    #[schema(example = "my text with digits 42", min_length = 1, max_length = 16384, pattern = "^[^\\u0000]+$")]
    content: String,
    /// The FAILED submission (of the caller) this one replaces.
    #[serde(default)]
    replaces: Option<Uuid>,
}

/// Accepts one submission, or with `replaces` the resubmission of a FAILED one. Answers once
/// Kafka acknowledged its event.
#[utoipa::path(post, path = "/api/submissions", operation_id = "create_submission", tag = "submissions", request_body = NewSubmission,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key (1 to 255 visible ASCII characters) answers with the same submission", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 202, description = "accepted: in the log, not yet judged; `Location` is where to read it", body = Accepted,
            headers(("Location" = String, description = "`/api/submissions/{id}?position=...`"))),
        (status = 400, description = "`malformed_json`, `unreadable_body`, `invalid_idempotency_key`", body = ErrorBody),
        SignedInChange,
        (status = 409, description = "`not_failed`, `already_replaced`, `idempotency_key_in_use` (with `Retry-After`)", body = ErrorBody),
        (status = 413, description = "`body_too_large`, `content_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_body`, `empty_content`, `invalid_content`, `unknown_submission`, `idempotency_key_reused`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
        (status = 503, description = "`broker_unavailable`, `database_unavailable`", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let NewSubmission { content, replaces } = intake::typed(intake::json_object(&headers, body)?)?;
    let content = intake::check_content(content, state.max_content_bytes)?;
    let owner = caller.account_id;
    let digest = Sha256::digest(content.as_bytes()).to_vec();
    // A resubmission is keyed by what it replaces, so it is idempotent whatever the client sends.
    let key = match replaces {
        Some(replaced) => Some(idempotency::replacement_key(replaced)),
        None => intake::idempotency_key(&headers)?,
    };
    let data_key = intake::data_key(&state, owner).await?;
    let claimed =
        intake::claim(&state, owner, key, &digest, Recorded::fresh(state.submission_ids.next())).await.map_err(|error| match (error, replaces) {
            (ApiError::IdempotencyKeyReused, Some(replaced)) => ApiError::AlreadyReplaced { replaced, replacement: None },
            (error, _) => error,
        })?;
    let id = claimed.ids.submission_id;
    if let Some(replaced) = replaces {
        if let Err(refused) = resubmission::check(&state.accounts.pool, owner, replaced, id).await {
            claimed.release(&state, owner).await?;
            return Err(refused);
        }
    }
    let admitted = claimed.admit(&state, owner, 1).await?;

    let event = Event::SubmissionCreated { content: data_key.seal_content(id, &content), owner_id: Some(owner), batch: None, replaces };
    let envelope = Envelope::new(id, event, admitted.ids.created_at, intake::correlation_id(&headers));
    let span = tracing::info_span!("submission", submission_id = %id);
    let position = async {
        if let Some(position) = admitted.published {
            tracing::info!(%position, "retry of an accepted submission");
            return Ok(position);
        }
        let position = state.publisher.publish(&envelope).await.map_err(ApiError::BrokerUnavailable)?;
        tracing::debug!(%position, account_id = %owner, replaces = ?replaces, "accepted");
        admitted.acknowledged(&state, owner, position).await;
        Ok::<_, ApiError>(position)
    }
    .instrument(span)
    .await?;

    let location = format!("/api/submissions/{id}?position={position}");
    let body = Accepted {
        id,
        content,
        status: Status::Pending,
        created_at: envelope.occurred_at,
        processed_at: None,
        replaces,
        position: position.to_string(),
    };
    let mut response = (StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(body)).into_response();
    if let Some(decision) = admitted.limit {
        decision.annotate(&mut response);
    }
    Ok(response)
}
