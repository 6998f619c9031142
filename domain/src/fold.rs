//! The fold: how events turn into a submission's current state.
//!
//! A submission moves PENDING -> PROCESSING -> PASSED | FAILED and never back. [`apply`] is
//! the only way state changes. It recognises an event whose effect the state already holds
//! (a duplicate from a retry or a replay) and refuses an event that would skip a step,
//! contradict a verdict or concern a submission that was never created, with a typed error
//! and the state untouched.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{AccountId, BatchItem, Envelope, Event, FailureReason, SubmissionId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    Processing,
    Passed,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Processing => "PROCESSING",
            Status::Passed => "PASSED",
            Status::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Status::Pending),
            "PROCESSING" => Some(Status::Processing),
            "PASSED" => Some(Status::Passed),
            "FAILED" => Some(Status::Failed),
            _ => None,
        }
    }

    /// Position in the life cycle; PASSED and FAILED are both the last step. A status with a
    /// higher step is newer news about a submission than one with a lower step.
    pub fn step(self) -> u8 {
        match self {
            Status::Pending => 0,
            Status::Processing => 1,
            Status::Passed | Status::Failed => 2,
        }
    }

    pub fn is_final(self) -> bool {
        self.step() == 2
    }
}

/// The current state of one submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub id: SubmissionId,
    pub content: crate::Content,
    /// Who submitted it; `None` for submissions from before accounts.
    pub owner_id: Option<AccountId>,
    /// The batch it was accepted with, if any.
    pub batch: Option<BatchItem>,
    /// The failed submission it was edited from.
    pub replaces: Option<SubmissionId>,
    pub status: Status,
    /// Empty unless FAILED.
    pub reasons: Vec<FailureReason>,
    pub created_at: DateTime<Utc>,
    pub processing_started_at: Option<DateTime<Utc>>,
    pub processed_at: Option<DateTime<Utc>>,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state changed.
    Changed,
    /// The state already reflected this event (a duplicate); nothing changed.
    AlreadyApplied,
}

/// An event the fold refuses. The state is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("{event_type} for submission {submission_id}, which was never created")]
    UnknownSubmission { submission_id: SubmissionId, event_type: &'static str },
    #[error("{event_type} cannot follow {from:?} for submission {submission_id}")]
    SkipsStep { submission_id: SubmissionId, from: Status, event_type: &'static str },
    #[error("{event_type} contradicts what submission {submission_id} already holds")]
    Contradicts { submission_id: SubmissionId, event_type: &'static str },
    #[error("event for submission {event_submission_id} applied to submission {state_submission_id}")]
    WrongSubmission { state_submission_id: SubmissionId, event_submission_id: SubmissionId },
    /// An event about a whole account: its readers act on it themselves.
    #[error("{event_type} is about an account, not a submission")]
    NotAboutASubmission { event_type: &'static str },
}

/// Applies one event to a submission's state (`None` before it exists).
pub fn apply(state: &mut Option<Submission>, envelope: &Envelope) -> Result<Applied, TransitionError> {
    let submission_id = envelope.submission_id;
    let event_type = envelope.event.type_name();
    let at = envelope.occurred_at;
    if let Event::AccountErased { .. } = envelope.event {
        return Err(TransitionError::NotAboutASubmission { event_type });
    }

    let Some(current) = state else {
        return match &envelope.event {
            Event::SubmissionCreated { content, owner_id, batch, replaces } => {
                *state = Some(Submission {
                    id: submission_id,
                    content: content.clone(),
                    owner_id: *owner_id,
                    batch: *batch,
                    replaces: *replaces,
                    status: Status::Pending,
                    reasons: Vec::new(),
                    created_at: at,
                    processing_started_at: None,
                    processed_at: None,
                });
                Ok(Applied::Changed)
            }
            _ => Err(TransitionError::UnknownSubmission { submission_id, event_type }),
        };
    };
    if current.id != submission_id {
        return Err(TransitionError::WrongSubmission { state_submission_id: current.id, event_submission_id: submission_id });
    }
    let contradicts = TransitionError::Contradicts { submission_id, event_type };

    match &envelope.event {
        Event::SubmissionCreated { content, owner_id, batch, replaces } => {
            let same = *content == current.content && *owner_id == current.owner_id && *batch == current.batch && *replaces == current.replaces;
            if same {
                Ok(Applied::AlreadyApplied)
            } else {
                Err(contradicts)
            }
        }
        Event::ProcessingStarted {} => {
            if current.status == Status::Pending {
                current.status = Status::Processing;
                current.processing_started_at = Some(at);
                Ok(Applied::Changed)
            } else {
                Ok(Applied::AlreadyApplied)
            }
        }
        Event::SubmissionPassed {} => give_verdict(current, Status::Passed, &[], at, event_type),
        Event::SubmissionFailed { reasons, .. } => give_verdict(current, Status::Failed, reasons, at, event_type),
        Event::AccountErased { .. } => Err(TransitionError::NotAboutASubmission { event_type }),
    }
}

fn give_verdict(
    current: &mut Submission,
    verdict: Status,
    reasons: &[FailureReason],
    at: DateTime<Utc>,
    event_type: &'static str,
) -> Result<Applied, TransitionError> {
    let submission_id = current.id;
    match current.status {
        Status::Pending => Err(TransitionError::SkipsStep { submission_id, from: Status::Pending, event_type }),
        Status::Processing => {
            current.status = verdict;
            current.reasons = reasons.to_vec();
            current.processed_at = Some(at);
            Ok(Applied::Changed)
        }
        // A verdict, once given, never changes: the same one again is a duplicate,
        // a different one is refused.
        given if given == verdict && current.reasons == reasons => Ok(Applied::AlreadyApplied),
        _ => Err(TransitionError::Contradicts { submission_id, event_type }),
    }
}

impl Submission {
    /// Folds a whole history from scratch, skipping duplicates. Stops at the first refused
    /// event: a history that holds one is not a history this system writes.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a Envelope>) -> Result<Option<Submission>, TransitionError> {
        let mut state = None;
        for envelope in events {
            apply(&mut state, envelope)?;
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests;
