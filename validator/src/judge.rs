//! Turning one `SubmissionCreated` into the two events that follow it.

use chrono::Utc;
use domain::{Envelope, Event, FailureReason};

/// The events the validator emits for one created submission.
pub struct Judgement {
    pub started: Envelope,
    pub verdict: Envelope,
}

/// Judges a created submission whose text is `text`; `None` when its account was erased before
/// it was judged: nobody can read it any more, so it fails as `erased`.
pub fn judgement_for(created: &Envelope, text: Option<&str>) -> Judgement {
    let started = created.follow_up(Event::ProcessingStarted {}, Utc::now());
    // The verdict's time is taken after the judgement, so it never precedes ProcessingStarted.
    let verdict = match text {
        Some(text) => Event::verdict_for(text),
        None => Event::SubmissionFailed { reasons: vec![FailureReason::Erased], char_count: None },
    };
    let verdict = created.follow_up(verdict, Utc::now());
    Judgement { started, verdict }
}
