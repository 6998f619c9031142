//! `POST /api/batches`: many submissions in one request, accepted all or none.
//!
//! Every item is checked first; one bad item refuses the whole batch, with an error per bad
//! item and its index. The items' `SubmissionCreated` events are then published in one Kafka
//! transaction (`AtomicPublisher`): consumers read all of them or, if it aborts, none. Each
//! item counts against the owner's rate limit.

use accounts::Caller;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::{BatchId, BatchItem, Envelope, Event, SubmissionId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use service_kit::http_error::{ErrorBody, SignedInChange};
use sha2::{Digest, Sha256};
use tracing::Instrument;
use uuid::Uuid;

use super::intake;
use crate::error::{item_error, ContentError};
use crate::idempotency::{self, Recorded};
use crate::{ApiError, AppState};

/// The OpenAPI description of `POST /api/batches`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create))]
pub struct BatchesApi;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/batches", post(create))
        .route("/api/batches/", post(create))
        .layer(DefaultBodyLimit::max(state.max_batch_bytes))
        .with_state(state)
}

/// The answer to an accepted batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchAccepted {
    #[schema(value_type = uuid::Uuid)]
    pub id: BatchId,
    pub size: usize,
    pub created_at: DateTime<Utc>,
    /// `partition:offset` of the first item's event; the `Location` carries it, and the query
    /// API answers that URL once its read model holds the batch.
    pub position: String,
    /// Each item's submission id, in the order sent.
    pub items: Vec<AcceptedItem>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AcceptedItem {
    pub index: usize,
    #[schema(value_type = uuid::Uuid)]
    pub id: SubmissionId,
}

/// What `POST /api/batches` takes: the handler reads it and the document describes it. Items
/// are read one by one ([`NewItem`]), so each bad one gets an error of its own.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBatch {
    /// 1 to `MAX_BATCH_ITEMS` (1,000 by default) items.
    #[schema(value_type = Vec<NewItem>, min_items = 1, max_items = 1000)]
    items: Vec<Value>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    /// As a single submission's content.
    #[schema(example = "batch item 1", min_length = 1, max_length = 16384, pattern = "^[^\\u0000]+$")]
    content: String,
}

/// Accepts every item or none: one Kafka transaction holds their events.
#[utoipa::path(post, path = "/api/batches", operation_id = "create_batch", tag = "batches", request_body = NewBatch,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key answers with the same batch and item ids", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 202, description = "accepted: every item in the log; `Location` is where to read the batch", body = BatchAccepted,
            headers(("Location" = String, description = "`/api/batches/{id}?position=...`"))),
        (status = 400, description = "`malformed_json`, `unreadable_body`, `invalid_idempotency_key`", body = ErrorBody),
        SignedInChange,
        (status = 409, description = "`idempotency_key_in_use` (with `Retry-After`)", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_body`, `invalid_batch_size`, `invalid_items` (with `items`: each bad item's index, code and message), `idempotency_key_reused`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
        (status = 503, description = "`broker_unavailable`, `database_unavailable`", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    intake::refuse_if_spent(&state, &caller, &headers)?;
    let NewBatch { items } = intake::typed(intake::json_object(&headers, body)?)?;
    if items.is_empty() || items.len() > state.max_batch_items {
        return Err(ApiError::BatchSize { actual: items.len(), limit: state.max_batch_items });
    }
    let contents = check_items(items, state.max_content_bytes)?;
    let owner = caller.account_id;
    let size = u32::try_from(contents.len()).map_err(|_| ApiError::BatchSize { actual: contents.len(), limit: state.max_batch_items })?;

    let batch_id = Uuid::now_v7();
    let fresh = Recorded { batch_id: Some(batch_id), ..Recorded::fresh(item_id(batch_id, 0)) };
    let digest = idempotency::request_digest(std::iter::once(&b"batch"[..]).chain(contents.iter().map(|c| c.as_bytes())));
    let key = intake::idempotency_key(&headers)?;
    let data_key = intake::data_key(&state, owner).await?;
    let admitted = intake::claim(&state, owner, key, &digest, fresh).await?.admit(&state, owner, size).await?;
    let batch_id = admitted.ids.batch_id.ok_or(ApiError::IdempotencyKeyReused)?;

    let correlation_id = intake::correlation_id(&headers);
    let envelopes: Vec<Envelope> = contents
        .into_iter()
        .zip(0..)
        .map(|(content, index)| {
            let batch = Some(BatchItem { batch_id, index, size });
            let id = item_id(batch_id, index);
            let event = Event::SubmissionCreated { content: data_key.seal_content(id, &content), owner_id: Some(owner), batch, replaces: None };
            Envelope::new(id, event, admitted.ids.created_at, correlation_id)
        })
        .collect();
    let items: Vec<AcceptedItem> = envelopes.iter().enumerate().map(|(index, e)| AcceptedItem { index, id: e.submission_id }).collect();
    let span = tracing::info_span!("batch", %batch_id, size);
    let position = async {
        if let Some(position) = admitted.published {
            tracing::info!(%position, "retry of an accepted batch");
            return Ok(position);
        }
        let positions = state.batches.publish_atomically(envelopes).await.map_err(ApiError::BrokerUnavailable)?;
        let first = positions[0];
        tracing::debug!(position = %first, account_id = %owner, "accepted batch");
        admitted.acknowledged(&state, owner, first).await;
        Ok::<_, ApiError>(first)
    }
    .instrument(span)
    .await?;

    let body = BatchAccepted { id: batch_id, size: items.len(), created_at: admitted.ids.created_at, position: position.to_string(), items };
    let location = format!("/api/batches/{batch_id}?position={position}");
    let mut response = (StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(body)).into_response();
    if let Some(decision) = admitted.limit {
        decision.annotate(&mut response);
    }
    Ok(response)
}

/// Every item's content, or an error for each bad item.
fn check_items(items: Vec<Value>, max_content_bytes: usize) -> Result<Vec<String>, ApiError> {
    let mut contents = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        // An object: serde's derive would take an array as the fields in order.
        let checked = match item {
            Value::Object(_) => NewItem::deserialize(item)
                .map_err(|error| ContentError::Shape(error.to_string()))
                .and_then(|NewItem { content }| intake::check_content(content, max_content_bytes)),
            _ => Err(ContentError::Shape("an item is an object with `content`".into())),
        };
        match checked {
            Ok(content) => contents.push(content),
            Err(error) => errors.push(item_error(index, &error)),
        }
    }
    if errors.is_empty() {
        Ok(contents)
    } else {
        Err(ApiError::InvalidItems(errors))
    }
}

/// The id of item `index` of `batch`: a UUIDv7 with the batch's time, its random bits derived
/// from the batch id and the index, so a retry under the batch's `Idempotency-Key` publishes
/// the same ids without storing them.
fn item_id(batch: BatchId, index: u32) -> SubmissionId {
    let millis = batch
        .get_timestamp()
        .map(|at| {
            let (secs, nanos) = at.to_unix();
            secs * 1000 + u64::from(nanos) / 1_000_000
        })
        .unwrap_or_default();
    let digest = Sha256::new().chain_update(batch.as_bytes()).chain_update(index.to_be_bytes()).finalize();
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_ids_are_stable_distinct_and_carry_the_batch_time() {
        let batch = Uuid::now_v7();
        let ids: Vec<_> = (0..1000).map(|index| item_id(batch, index)).collect();
        assert_eq!(ids, (0..1000).map(|index| item_id(batch, index)).collect::<Vec<_>>());
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        for id in &ids {
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_timestamp().map(|t| t.to_unix().0), batch.get_timestamp().map(|t| t.to_unix().0));
        }
        assert_ne!(item_id(Uuid::now_v7(), 0), ids[0]);
    }

    #[test]
    fn every_bad_item_is_reported_with_its_index() {
        let items = serde_json::json!([{"content": "fine 1"}, {"content": ""}, "text", {"content": "a\u{0}b"}, {"content": 5}]);
        let Err(ApiError::InvalidItems(errors)) = check_items(serde_json::from_value(items).unwrap(), 100) else {
            panic!("refused");
        };
        let seen: Vec<_> = errors.iter().map(|e| (e.index, e.code.as_str())).collect();
        assert_eq!(seen, [(1, "empty_content"), (2, "invalid_body"), (3, "invalid_content"), (4, "invalid_body")]);
    }
}
