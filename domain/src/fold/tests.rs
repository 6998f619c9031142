use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;

fn at(second: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + second, 0).unwrap()
}

/// The history this system writes for one submission: created, started, verdict.
fn history(id: SubmissionId, content: &str) -> Vec<Envelope> {
    let created = Envelope::new(id, Event::created(content.to_owned(), None), at(0), Uuid::nil());
    let verdict = Event::verdict_for(content);
    let started = created.follow_up(Event::ProcessingStarted {}, at(1));
    let verdict = created.follow_up(verdict, at(2));
    vec![created, started, verdict]
}

#[test]
fn a_clean_history_ends_in_its_verdict() {
    let id = Uuid::from_u128(1);
    let state = Submission::fold(&history(id, "abcdefghi1")).unwrap().unwrap();
    assert_eq!(state.status, Status::Passed);
    assert_eq!(state.processing_started_at, Some(at(1)));
    assert_eq!(state.processed_at, Some(at(2)));

    let state = Submission::fold(&history(id, "short")).unwrap().unwrap();
    assert_eq!(state.status, Status::Failed);
    assert_eq!(state.reasons, vec![FailureReason::TooShort, FailureReason::NoDigit]);
}

#[test]
fn refuses_events_for_unknown_submissions() {
    let events = history(Uuid::from_u128(2), "abcdefghi1");
    let mut state = None;
    let err = apply(&mut state, &events[1]).unwrap_err();
    assert!(matches!(err, TransitionError::UnknownSubmission { .. }));
    assert_eq!(state, None);
}

#[test]
fn refuses_a_verdict_that_skips_processing() {
    let events = history(Uuid::from_u128(3), "abcdefghi1");
    let mut state = None;
    apply(&mut state, &events[0]).unwrap();
    let before = state.clone();
    let err = apply(&mut state, &events[2]).unwrap_err();
    assert!(matches!(err, TransitionError::SkipsStep { from: Status::Pending, .. }));
    assert_eq!(state, before);
}

#[test]
fn a_verdict_never_changes() {
    let id = Uuid::from_u128(4);
    let events = history(id, "abcdefghi1");
    let mut state = Submission::fold(&events).unwrap();
    let contrary = events[0].follow_up(Event::SubmissionFailed { reasons: vec![FailureReason::NoDigit], char_count: None }, at(3));
    let before = state.clone();
    assert!(matches!(apply(&mut state, &contrary), Err(TransitionError::Contradicts { .. })));
    assert_eq!(state, before);
    assert_eq!(apply(&mut state, &events[2]), Ok(Applied::AlreadyApplied));
}

#[test]
fn refuses_a_second_creation_with_other_content() {
    let id = Uuid::from_u128(5);
    let mut state = Submission::fold(&history(id, "abcdefghi1")[..1]).unwrap();
    let other = Envelope::new(id, Event::created("x", None), at(9), Uuid::nil());
    assert!(matches!(apply(&mut state, &other), Err(TransitionError::Contradicts { .. })));
}

#[test]
fn refuses_another_submissions_event() {
    let mut state = Submission::fold(&history(Uuid::from_u128(6), "abcdefghi1")[..1]).unwrap();
    let foreign = &history(Uuid::from_u128(7), "abcdefghi1")[1];
    assert!(matches!(apply(&mut state, foreign), Err(TransitionError::WrongSubmission { .. })));
}

fn content() -> impl Strategy<Value = String> {
    prop_oneof![".{0,14}", "[a-z0-9]{0,14}", "\\PC{0,12}"]
}

proptest! {
    /// Duplicates alone (retries, replays) leave exactly the state of the clean history.
    #[test]
    fn duplicates_never_change_the_outcome(
        content in content(),
        copies in proptest::collection::vec(1usize..4, 3),
    ) {
        let id = Uuid::from_u128(10);
        let clean = history(id, &content);
        let duplicated: Vec<&Envelope> = clean
            .iter()
            .zip(&copies)
            .flat_map(|(event, &n)| std::iter::repeat_n(event, n))
            .collect();
        let expected = Submission::fold(&clean).unwrap();
        prop_assert_eq!(Submission::fold(duplicated).unwrap(), expected);
    }

    /// Any order with any duplicates: every refused event leaves the state as it was, the
    /// state is always one the clean history passes through, its step never goes backwards
    /// and a verdict, once given, is the right one and stays.
    #[test]
    fn reordered_and_duplicated_events_never_corrupt_state(
        content in content(),
        order in proptest::collection::vec(0usize..3, 0..12),
    ) {
        let id = Uuid::from_u128(11);
        let clean = history(id, &content);
        let reachable: Vec<Submission> = (1..=3)
            .map(|n| Submission::fold(&clean[..n]).unwrap().unwrap())
            .collect();

        let mut state: Option<Submission> = None;
        let mut last_step = None;
        for &i in &order {
            let before = state.clone();
            if apply(&mut state, &clean[i]).is_err() {
                prop_assert_eq!(&state, &before);
            }
            if let Some(s) = &state {
                prop_assert!(reachable.contains(s), "unreachable state {:?}", s);
                prop_assert!(last_step.is_none_or(|step| s.status.step() >= step));
                last_step = Some(s.status.step());
            }
        }
    }
}
