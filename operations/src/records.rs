//! The log as an operator reads it: `GET /admin/records` pages through the submission topic
//! (or the dead-letter topic) by partition and offset, decoding each record, and
//! `GET /admin/dead-letters` shows the latest dead letters with their reason and content.

use std::collections::BTreeMap;

use accounts::Admin;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::Envelope;
use kafka_kit::inspect::LoggedRecord;
use serde::{Deserialize, Serialize};

use crate::AdminUnavailable;
use crate::{AdminError, AdminState};
use service_kit::http_error::{AdminOnly, BadRequest, ErrorBody, QueryParams};

/// Most records one request returns.
const MAX_LIMIT: i64 = 100;
const DEFAULT_LIMIT: i64 = 20;
/// Longest text shown of a record that is not an event, in bytes.
const MAX_TEXT_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TopicChoice {
    /// The submission topic.
    #[default]
    Events,
    DeadLetters,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct RecordsQuery {
    /// `events` (the submission topic, when absent) or `dead_letters`.
    #[serde(default)]
    #[param(inline)]
    topic: TopicChoice,
    /// A partition of that topic.
    #[param(minimum = 0)]
    partition: i32,
    /// The first offset to show; the latest records when absent.
    #[param(minimum = 0)]
    offset: Option<i64>,
    /// 1 to 100; 20 when absent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DeadLettersQuery {
    /// 1 to 100; 20 when absent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

/// One page of a partition.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Records {
    pub topic: String,
    pub partition: i32,
    /// The oldest offset still in the partition.
    pub first_offset: i64,
    /// The offset its next record will get.
    pub end_offset: i64,
    /// In offset order. Offsets can skip: transaction markers take one each, and records of
    /// aborted transactions are not shown.
    pub records: Vec<RecordView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordView {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<DateTime<Utc>>,
    pub key: Option<String>,
    pub headers: Vec<HeaderView>,
    /// The event, when the record is one this build reads.
    pub event: Option<serde_json::Value>,
    /// Why it is not, when it is not...
    pub decode_error: Option<String>,
    /// ...and its value as text (invalid UTF-8 replaced, at most 16 KiB).
    pub text: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeaderView {
    pub key: String,
    pub value: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetters {
    pub topic: String,
    /// Records on the dead-letter topic.
    pub count: i64,
    /// The latest first.
    pub latest: Vec<DeadLetterView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterView {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// Where the record was on the submission topic.
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub key: Option<String>,
    /// The record's value as text (invalid UTF-8 replaced, at most 16 KiB).
    pub content: Option<String>,
}

/// A page of the submission topic (or the dead-letter topic), each record decoded.
#[utoipa::path(get, path = "/admin/records", tag = "operations", params(RecordsQuery), responses(
    (status = 200, description = "the records", body = Records),
    (status = 400, description = "`invalid_query`", body = ErrorBody),
    AdminOnly, AdminUnavailable,
))]
pub(super) async fn records(
    _: Admin,
    State(state): State<AdminState>,
    QueryParams(query): QueryParams<RecordsQuery>,
) -> Result<Json<Records>, AdminError> {
    let limit = limit(query.limit)?;
    if query.offset.is_some_and(|offset| offset < 0) {
        return Err(BadRequest::InvalidQuery("offset must be 0 or more".into()).into());
    }
    let topic = match query.topic {
        TopicChoice::Events => state.config.kafka.topic.clone(),
        TopicChoice::DeadLetters => state.config.kafka.dead_letter_topic(),
    };
    let bounds = state.inspector.bounds(&topic).await?;
    let Some(&(first_offset, end_offset)) = bounds.get(&query.partition) else {
        return Err(BadRequest::InvalidQuery(format!("{topic} has partitions 0 to {}", bounds.len() as i64 - 1)).into());
    };
    let from = query.offset.unwrap_or(end_offset - limit as i64).max(first_offset);
    let logged = if from < end_offset { state.inspector.read(&topic, BTreeMap::from([(query.partition, from)]), limit).await? } else { Vec::new() };
    Ok(Json(Records { topic, partition: query.partition, first_offset, end_offset, records: logged.into_iter().map(RecordView::from).collect() }))
}

/// The latest dead letters, with their reason and content.
#[utoipa::path(get, path = "/admin/dead-letters", tag = "operations", params(DeadLettersQuery), responses(
    (status = 200, description = "the count and the latest", body = DeadLetters),
    (status = 400, description = "`invalid_query`", body = ErrorBody),
    AdminOnly, AdminUnavailable,
))]
pub(super) async fn dead_letters(
    _: Admin,
    State(state): State<AdminState>,
    QueryParams(query): QueryParams<DeadLettersQuery>,
) -> Result<Json<DeadLetters>, AdminError> {
    let limit = limit(query.limit)?;
    let topic = state.config.kafka.dead_letter_topic();
    let bounds = state.inspector.bounds(&topic).await?;
    // The latest `limit` of each partition hold the latest `limit` of all.
    let from: BTreeMap<i32, i64> = bounds
        .iter()
        .filter(|(_, (first, end))| end > first)
        .map(|(&partition, &(first, end))| (partition, (end - limit as i64).max(first)))
        .collect();
    let mut logged = if from.is_empty() { Vec::new() } else { state.inspector.read(&topic, from, limit * bounds.len()).await? };
    logged.sort_by_key(|record| std::cmp::Reverse((record.timestamp_ms, record.offset, record.partition)));
    logged.truncate(limit);
    Ok(Json(DeadLetters {
        count: bounds.values().map(|(first, end)| end - first).sum(),
        topic,
        latest: logged.into_iter().map(DeadLetterView::from).collect(),
    }))
}

pub(super) fn limit(asked: Option<usize>) -> Result<usize, AdminError> {
    let asked = asked.map(|limit| i64::try_from(limit).unwrap_or(i64::MAX));
    let limit = service_kit::page::limit_within(asked, DEFAULT_LIMIT, MAX_LIMIT)?;
    Ok(limit as usize)
}

impl From<LoggedRecord> for RecordView {
    fn from(record: LoggedRecord) -> Self {
        let (event, decode_error) = match record.value.as_deref().map(Envelope::decode) {
            Some(Ok(envelope)) => (serde_json::to_value(&envelope).ok(), None),
            Some(Err(error)) => (None, Some(error.to_string())),
            None => (None, Some("the record has no value".to_owned())),
        };
        RecordView {
            partition: record.partition,
            offset: record.offset,
            timestamp: timestamp(record.timestamp_ms),
            key: record.key.as_deref().map(text),
            headers: record.headers.into_iter().map(|(key, value)| HeaderView { key, value: value.as_deref().map(text) }).collect(),
            text: if event.is_none() { record.value.as_deref().map(text) } else { None },
            event,
            decode_error,
        }
    }
}

impl From<LoggedRecord> for DeadLetterView {
    fn from(record: LoggedRecord) -> Self {
        let header = |name: &str| record.headers.iter().find(|(key, _)| key == name).and_then(|(_, value)| value.as_deref()).map(text);
        DeadLetterView {
            partition: record.partition,
            offset: record.offset,
            timestamp: timestamp(record.timestamp_ms),
            reason: header("dead-letter.reason"),
            source_partition: header("dead-letter.partition").and_then(|p| p.parse().ok()),
            source_offset: header("dead-letter.offset").and_then(|o| o.parse().ok()),
            key: record.key.as_deref().map(text),
            content: record.value.as_deref().map(text),
        }
    }
}

fn timestamp(millis: Option<i64>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis?)
}

/// Bytes as text for people: invalid UTF-8 replaced, cut after [`MAX_TEXT_BYTES`] (a character
/// cut in two shows as a replacement character) and marked as cut.
fn text(bytes: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_TEXT_BYTES)]).into_owned();
    if bytes.len() > MAX_TEXT_BYTES {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(value: Option<&[u8]>, headers: &[(&str, &str)]) -> LoggedRecord {
        LoggedRecord {
            partition: 1,
            offset: 7,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(b"k".to_vec()),
            value: value.map(<[u8]>::to_vec),
            headers: headers.iter().map(|(k, v)| (k.to_string(), Some(v.as_bytes().to_vec()))).collect(),
        }
    }

    #[test]
    fn an_event_is_shown_decoded_and_anything_else_as_text_with_the_reason() {
        let envelope = Envelope::new(uuid::Uuid::new_v4(), domain::Event::created("text 12345", None), Utc::now(), uuid::Uuid::new_v4());
        let shown = RecordView::from(logged(Some(&envelope.encode()), &[]));
        assert_eq!(shown.event.as_ref().and_then(|e| e["event_type"].as_str()), Some("SubmissionCreated"));
        assert_eq!((shown.decode_error, shown.text), (None, None));

        let shown = RecordView::from(logged(Some(b"{\"not\": \xff an event"), &[("traceparent", "00-ab")]));
        assert!(shown.event.is_none());
        assert!(shown.decode_error.unwrap().starts_with("not a valid event"));
        assert_eq!(shown.text.as_deref(), Some("{\"not\": \u{fffd} an event"));
        assert_eq!(shown.headers[0].value.as_deref(), Some("00-ab"));
    }

    #[test]
    fn a_dead_letter_shows_why_and_where_it_came_from() {
        let shown = DeadLetterView::from(logged(
            Some(b"garbage"),
            &[("dead-letter.reason", "not a valid event: x"), ("dead-letter.partition", "3"), ("dead-letter.offset", "41")],
        ));
        assert_eq!(shown.reason.as_deref(), Some("not a valid event: x"));
        assert_eq!((shown.source_partition, shown.source_offset), (Some(3), Some(41)));
        assert_eq!(shown.content.as_deref(), Some("garbage"));
        assert_eq!(shown.timestamp.map(|t| t.timestamp()), Some(1_700_000_000));
    }

    #[test]
    fn long_values_are_cut_and_marked() {
        let long = "é".repeat(MAX_TEXT_BYTES);
        let shown = text(long.as_bytes());
        assert!(shown.ends_with('…') && shown.len() <= MAX_TEXT_BYTES + '…'.len_utf8());
    }
}
