//! Pins the JSON wire format of every event. These fixtures are records as they sit on the
//! topic; if a test here fails, the change breaks every consumer and every stored log.

use chrono::{DateTime, Utc};
use domain::{DecodeError, Envelope, Event, FailureReason};
use uuid::Uuid;

const SUBMISSION: &str = "0b5a9e3c-1f2d-4e6a-8b7c-9d0e1f2a3b4c";
const CORRELATION: &str = "5f3e2d1c-0b9a-4876-9543-210fedcba987";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/v1/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn envelope(event_id: &str, at: &str, event: Event) -> Envelope {
    Envelope {
        event_id: event_id.parse().unwrap(),
        submission_id: SUBMISSION.parse().unwrap(),
        schema_version: 1,
        occurred_at: at.parse::<DateTime<Utc>>().unwrap(),
        correlation_id: CORRELATION.parse().unwrap(),
        event,
    }
}

/// Decoding the fixture gives the expected value, and encoding the value gives back exactly
/// the fixture's bytes (field names, order, time format).
fn assert_pinned(name: &str, expected: Envelope) {
    let text = fixture(name);
    let decoded = Envelope::decode(text.trim().as_bytes()).unwrap();
    assert_eq!(decoded, expected, "{name} decodes");
    assert_eq!(String::from_utf8(expected.encode()).unwrap(), text.trim(), "{name} encodes");
}

#[test]
fn submission_created() {
    assert_pinned(
        "submission_created",
        envelope(
            "a7b1e2d4-4d6d-5b8e-9d29-3f0a4c2c6a11",
            "2026-11-25T10:00:00.123456Z",
            Event::SubmissionCreated { content: "hello world 42".into() },
        ),
    );
}

#[test]
fn processing_started() {
    assert_pinned(
        "processing_started",
        envelope("b7b1e2d4-4d6d-5b8e-9d29-3f0a4c2c6a11", "2026-11-25T10:00:01Z", Event::ProcessingStarted {}),
    );
}

#[test]
fn submission_passed() {
    assert_pinned(
        "submission_passed",
        envelope("c7b1e2d4-4d6d-5b8e-9d29-3f0a4c2c6a11", "2026-11-25T10:00:02Z", Event::SubmissionPassed {}),
    );
}

#[test]
fn submission_failed() {
    assert_pinned(
        "submission_failed",
        envelope(
            "d7b1e2d4-4d6d-5b8e-9d29-3f0a4c2c6a11",
            "2026-11-25T10:00:02Z",
            Event::SubmissionFailed { reasons: vec![FailureReason::TooShort, FailureReason::NoDigit] },
        ),
    );
}

#[test]
fn event_ids_are_derived_from_submission_and_step() {
    let id: Uuid = SUBMISSION.parse().unwrap();
    let created = Envelope::new(id, Event::SubmissionCreated { content: "x".into() }, Utc::now(), Uuid::nil());
    let again = Envelope::new(id, Event::SubmissionCreated { content: "x".into() }, Utc::now(), Uuid::new_v4());
    assert_eq!(created.event_id, again.event_id);
    // Pinned: stored ids depend on the derivation never changing.
    assert_eq!(created.event_id.to_string(), "ee9f0108-da8a-59c8-b563-941ee9c11826");

    let started = created.follow_up(Event::ProcessingStarted {}, Utc::now());
    let passed = created.follow_up(Event::SubmissionPassed {}, Utc::now());
    let failed = created.follow_up(Event::SubmissionFailed { reasons: vec![] }, Utc::now());
    assert_ne!(started.event_id, created.event_id);
    assert_ne!(passed.event_id, started.event_id);
    // One verdict per submission: both kinds share the verdict's identity.
    assert_eq!(passed.event_id, failed.event_id);
    assert_eq!(started.correlation_id, created.correlation_id);
}

#[test]
fn refuses_unknown_schema_versions_and_garbage() {
    let future = fixture("submission_passed").replace("\"schema_version\":1", "\"schema_version\":99");
    assert!(matches!(
        Envelope::decode(future.as_bytes()),
        Err(DecodeError::UnsupportedVersion { version: 99, .. })
    ));
    assert!(matches!(Envelope::decode(b"not json"), Err(DecodeError::Malformed(_))));
    let unknown_type = fixture("submission_passed").replace("SubmissionPassed", "SubmissionExploded");
    assert!(matches!(Envelope::decode(unknown_type.as_bytes()), Err(DecodeError::Malformed(_))));
}

#[test]
fn times_are_kept_to_the_microsecond() {
    let at: DateTime<Utc> = "2026-11-25T10:00:00.123456789Z".parse().unwrap();
    let envelope = Envelope::new(Uuid::nil(), Event::ProcessingStarted {}, at, Uuid::nil());
    assert_eq!(envelope.occurred_at.to_rfc3339(), "2026-11-25T10:00:00.123456+00:00");
}
