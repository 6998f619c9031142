//! Turning one `SubmissionCreated` into the two events that follow it.

use chrono::Utc;
use domain::{Envelope, Event};

/// The events the validator emits for one created submission.
pub struct Judgement {
    pub started: Envelope,
    pub verdict: Envelope,
}

/// Judges a created submission; `None` for every other event (the validator reads its own
/// output on the same topic and skips it).
pub fn judgement_for(created: &Envelope) -> Option<Judgement> {
    let Event::SubmissionCreated { content, .. } = &created.event else {
        return None;
    };
    let started = created.follow_up(Event::ProcessingStarted {}, Utc::now());
    // The verdict's time is taken after the judgement, so it never precedes ProcessingStarted.
    let verdict = Event::verdict_for(content);
    let verdict = created.follow_up(verdict, Utc::now());
    Some(Judgement { started, verdict })
}
