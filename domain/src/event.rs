//! Events and their wire format.
//!
//! Every record on the submission topic is one [`Envelope`] serialised as JSON:
//!
//! ```json
//! {"event_id":"…","submission_id":"…","schema_version":1,"occurred_at":"2026-11-25T10:00:00Z",
//!  "correlation_id":"…","event_type":"SubmissionFailed","payload":{"reasons":["too_short"]}}
//! ```
//!
//! The format is pinned by tests in `tests/wire_format.rs`; change it only in a
//! backward-compatible way and bump the event's schema version (see [`Event::schema_version`]).
//! Recorded fixtures of every version stay in `tests/fixtures/`, and a log holding several
//! versions must fold and replay the same.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Identity of one submission; also the Kafka record key, so all of a submission's events land
/// on one partition, in order.
pub type SubmissionId = Uuid;
/// Identity of one logical event. Derived, never random: see [`Envelope::new`].
pub type EventId = Uuid;
/// Identity of the account that made a submission.
pub type AccountId = Uuid;
/// Identity of a batch of submissions accepted together.
pub type BatchId = Uuid;

/// Where a submission sits in the batch it was accepted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItem {
    pub batch_id: BatchId,
    /// 0-based position in the request.
    pub index: u32,
    /// How many submissions the batch holds, so a reader of any one item knows when the batch
    /// is complete.
    pub size: u32,
}

/// Namespace for deriving event ids (UUID v5). Never change it: stored ids depend on it.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f0b_3c2e_8a41_4d7e_9f52_1c7a_0e3d_b845);

/// Why content failed the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// Fewer than [`crate::rule::MIN_CHARS`] characters.
    TooShort,
    /// No ASCII digit.
    NoDigit,
    /// The account was erased before its content was judged: nobody can read it any more.
    Erased,
}

impl FailureReason {
    /// The wire name, also used in the read model.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::TooShort => "too_short",
            FailureReason::NoDigit => "no_digit",
            FailureReason::Erased => "erased",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "too_short" => Some(FailureReason::TooShort),
            "no_digit" => Some(FailureReason::NoDigit),
            "erased" => Some(FailureReason::Erased),
            _ => None,
        }
    }
}

/// A submission's text as an event carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// The text itself: every version up to 3, and submissions without an owner.
    #[serde(rename = "content")]
    Plain(String),
    /// Since version 4: sealed with the owner's data key (crate `keyring`, the creation event's
    /// id as nonce and associated data), base64 on the wire. Erasing the key erases the text.
    #[serde(rename = "sealed_content", with = "base64_bytes")]
    Sealed(Vec<u8>),
}

/// Sealed bytes as base64 text in JSON.
mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// What happened to a submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum Event {
    SubmissionCreated {
        /// The text: on the wire `content` (plain) or, since version 4, `sealed_content`.
        #[serde(flatten)]
        content: Content,
        /// Since version 2: the account that submitted it. Absent in version 1 (submissions
        /// from before accounts, which only admins see).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner_id: Option<AccountId>,
        /// Since version 3: the batch it was accepted with, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch: Option<BatchItem>,
        /// Since version 3: the failed submission this one was edited from and replaces.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces: Option<SubmissionId>,
    },
    ProcessingStarted {},
    SubmissionPassed {},
    SubmissionFailed {
        reasons: Vec<FailureReason>,
        /// Since version 2: the length the rule measured, in characters. Absent in version 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        char_count: Option<u32>,
    },
    /// The account was erased: its data key is destroyed, so the text of every submission it
    /// made is gone, while their verdicts stay. About a whole account, not one submission: made
    /// by [`Envelope::account_erased`] only.
    AccountErased {
        account_id: AccountId,
    },
}

impl Event {
    /// The schema version this code writes for this event type; it reads every version from 1
    /// up to this one.
    ///
    /// History: `SubmissionFailed` 2 added `char_count`, `SubmissionCreated` 2 added `owner_id`
    /// and `SubmissionCreated` 3 `batch` and `replaces` (all optional, so older records read as
    /// `None`); `SubmissionCreated` 4 may carry `sealed_content` instead of `content`. The
    /// other events are at version 1 (`AccountErased` came with sealed content).
    pub fn schema_version(&self) -> u16 {
        Event::version_written(self.type_name()).unwrap_or(1)
    }

    /// The schema version this build writes (and the highest it reads) for the event type
    /// named `event_type` on the wire; `None` for a type this build does not know.
    pub fn version_written(event_type: &str) -> Option<u16> {
        match event_type {
            "SubmissionCreated" => Some(4),
            "SubmissionFailed" => Some(2),
            "ProcessingStarted" | "SubmissionPassed" | "AccountErased" => Some(1),
            _ => None,
        }
    }

    /// A submission on its own (no batch, replacing nothing).
    pub fn created(content: impl Into<String>, owner_id: Option<AccountId>) -> Event {
        Event::SubmissionCreated { content: Content::Plain(content.into()), owner_id, batch: None, replaces: None }
    }

    /// The verdict event for `content`: judged by [`crate::rule::judge`], with the length
    /// the rule measured when it fails.
    pub fn verdict_for(content: &str) -> Event {
        match crate::rule::judge(content) {
            crate::Verdict::Passed => Event::SubmissionPassed {},
            crate::Verdict::Failed(reasons) => {
                Event::SubmissionFailed { reasons, char_count: Some(u32::try_from(crate::rule::char_count(content)).unwrap_or(u32::MAX)) }
            }
        }
    }

    /// The id of the event that creates `submission`: what its content is sealed for.
    pub fn creation_id(submission: SubmissionId) -> EventId {
        derive_event_id(submission, "created")
    }

    /// The `event_type` field on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::SubmissionCreated { .. } => "SubmissionCreated",
            Event::ProcessingStarted {} => "ProcessingStarted",
            Event::SubmissionPassed {} => "SubmissionPassed",
            Event::SubmissionFailed { .. } => "SubmissionFailed",
            Event::AccountErased { .. } => "AccountErased",
        }
    }

    /// The step of a submission's life this event records. Passed and Failed share one step:
    /// a submission gets one verdict, so both derive the same event id and a second, different
    /// verdict can never slip in as a "new" event.
    fn step(&self) -> &'static str {
        match self {
            Event::SubmissionCreated { .. } => "created",
            Event::ProcessingStarted {} => "processing-started",
            Event::SubmissionPassed {} | Event::SubmissionFailed { .. } => "verdict",
            Event::AccountErased { .. } => "account-erased",
        }
    }
}

/// The metadata every event carries, around the event itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub event_id: EventId,
    /// The submission the event is about; nil for an event about a whole account.
    pub submission_id: SubmissionId,
    pub schema_version: u16,
    pub occurred_at: DateTime<Utc>,
    /// Ties every event of one request together across services (the HTTP request id).
    pub correlation_id: Uuid,
    #[serde(flatten)]
    pub event: Event,
}

/// Why a record cannot be read as an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a valid event: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("{event_type} has schema version {version}, which no build writes")]
    UnsupportedVersion { event_type: &'static str, version: u16 },
    /// A known event type at a version a newer build writes. Not garbage: the record must wait
    /// for a build that reads it, never be skipped.
    #[error("{event_type} has schema version {version}, newer than this build reads (1 to {supported}); a newer build must read it")]
    NewerVersion { event_type: String, version: u16, supported: u16 },
}

impl DecodeError {
    /// Whether a newer build can read the record: consumers pause on it instead of skipping it.
    pub fn is_newer_version(&self) -> bool {
        matches!(self, DecodeError::NewerVersion { .. })
    }
}

/// The fields that say what a record is, read on their own when the whole does not parse: a
/// newer version's payload may not fit this build's types at all.
#[derive(Deserialize)]
struct Header {
    event_type: String,
    schema_version: u16,
}

impl Envelope {
    /// Wraps an event. The event id is derived from the submission id and the step the event
    /// records, so a producer that emits the same step twice (a retry, a validator replaying
    /// after a crash) emits the same id, and consumers can recognise the duplicate.
    /// Times are kept to the microsecond, what PostgreSQL stores, so a read model and a fold of
    /// the log agree exactly.
    pub fn new(submission_id: SubmissionId, event: Event, occurred_at: DateTime<Utc>, correlation_id: Uuid) -> Self {
        Envelope {
            event_id: derive_event_id(submission_id, event.step()),
            submission_id,
            schema_version: event.schema_version(),
            occurred_at: occurred_at.trunc_subsecs(6),
            correlation_id,
            event,
        }
    }

    /// An event that follows this one for the same submission and request.
    pub fn follow_up(&self, event: Event, occurred_at: DateTime<Utc>) -> Self {
        Envelope::new(self.submission_id, event, occurred_at, self.correlation_id)
    }

    /// The event that says `account` was erased at `erased_at`. Its id is derived from the
    /// account, so announcing the same erasure again is the same event.
    pub fn account_erased(account: AccountId, erased_at: DateTime<Utc>) -> Self {
        let event = Event::AccountErased { account_id: account };
        let event_id = derive_event_id(account, event.step());
        Envelope {
            event_id,
            submission_id: Uuid::nil(),
            schema_version: event.schema_version(),
            occurred_at: erased_at.trunc_subsecs(6),
            correlation_id: event_id,
            event,
        }
    }

    /// The Kafka record key: the submission id as text, or the account's for an event about an
    /// account.
    pub fn key(&self) -> String {
        match self.event {
            Event::AccountErased { account_id } => account_id.to_string(),
            _ => self.submission_id.to_string(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).expect("an envelope always serialises")
    }

    /// Reads a record, parsing it once when it is readable.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let envelope: Envelope = match serde_json::from_slice(bytes) {
            Ok(envelope) => envelope,
            Err(malformed) => {
                let newer = serde_json::from_slice::<Header>(bytes).ok().and_then(|header| newer_version(header.event_type, header.schema_version));
                return Err(newer.unwrap_or(DecodeError::Malformed(malformed)));
            }
        };
        if let Some(newer) = newer_version(envelope.event.type_name().to_owned(), envelope.schema_version) {
            return Err(newer);
        }
        if envelope.schema_version == 0 {
            return Err(DecodeError::UnsupportedVersion { event_type: envelope.event.type_name(), version: 0 });
        }
        Ok(envelope)
    }
}

/// `NewerVersion` when a known `event_type` comes at a version above what this build reads.
fn newer_version(event_type: String, version: u16) -> Option<DecodeError> {
    let supported = Event::version_written(&event_type)?;
    (version > supported).then_some(DecodeError::NewerVersion { event_type, version, supported })
}

fn derive_event_id(submission_id: SubmissionId, step: &str) -> EventId {
    let mut name = Vec::with_capacity(16 + step.len());
    name.extend_from_slice(submission_id.as_bytes());
    name.extend_from_slice(step.as_bytes());
    Uuid::new_v5(&EVENT_ID_NAMESPACE, &name)
}
