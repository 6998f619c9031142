//! Pins the JSON wire format of every event. These fixtures are records as they sit on the
//! topic; if a test here fails, the change breaks every consumer and every stored log.

use chrono::{DateTime, Utc};
use domain::{DecodeError, Envelope, Event, FailureReason};
use uuid::Uuid;

const SUBMISSION: &str = "0b5a9e3c-1f2d-4e6a-8b7c-9d0e1f2a3b4c";
const CORRELATION: &str = "5f3e2d1c-0b9a-4876-9543-210fedcba987";

/// A recorded event: `name` is `v1/submission_created` and so on.
fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn envelope(event_id: &str, at: &str, event: Event) -> Envelope {
    envelope_v(1, event_id, at, event)
}

fn envelope_v(schema_version: u16, event_id: &str, at: &str, event: Event) -> Envelope {
    Envelope {
        event_id: event_id.parse().unwrap(),
        submission_id: SUBMISSION.parse().unwrap(),
        schema_version,
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
        "v1/submission_created",
        envelope("a7b1e2d4-4d6d-5b8e-9d29-3f0a4c2c6a11", "2026-11-25T10:00:00.123456Z", Event::created("hello world 42", None)),
    );
}

#[test]
fn processing_started() {
    assert_pinned("v1/processing_started", envelope("b7b1e2d4-4d6d-5b8e-9d29-3f0a4c2c6a11", "2026-11-25T10:00:01Z", Event::ProcessingStarted {}));
}

#[test]
fn submission_passed() {
    assert_pinned("v1/submission_passed", envelope("c7b1e2d4-4d6d-5b8e-9d29-3f0a4c2c6a11", "2026-11-25T10:00:02Z", Event::SubmissionPassed {}));
}

#[test]
fn submission_failed_version_1_reads_without_char_count() {
    assert_pinned(
        "v1/submission_failed",
        envelope(
            "d7b1e2d4-4d6d-5b8e-9d29-3f0a4c2c6a11",
            "2026-11-25T10:00:02Z",
            Event::SubmissionFailed { reasons: vec![FailureReason::TooShort, FailureReason::NoDigit], char_count: None },
        ),
    );
}

#[test]
fn submission_failed_version_2_carries_char_count() {
    assert_pinned(
        "v2/submission_failed",
        envelope_v(
            2,
            "e7b1e2d4-4d6d-5b8e-9d29-3f0a4c2c6a11",
            "2026-11-25T10:00:02Z",
            Event::SubmissionFailed { reasons: vec![FailureReason::TooShort, FailureReason::NoDigit], char_count: Some(4) },
        ),
    );
}

#[test]
fn submission_created_version_2_carries_its_owner() {
    let owner = "019ab0c4-7e2a-7c11-9a3b-5d6e7f809112".parse().unwrap();
    assert_pinned(
        "v2/submission_created",
        envelope_v(2, "a7b1e2d4-4d6d-5b8e-9d29-3f0a4c2c6a11", "2026-11-25T10:00:00.123456Z", Event::created("hello world 42", Some(owner))),
    );
}

#[test]
fn submission_created_version_3_carries_its_batch_and_what_it_replaces() {
    let owner = "019ab0c4-7e2a-7c11-9a3b-5d6e7f809112".parse().unwrap();
    let batch = domain::BatchItem { batch_id: "019ab0c5-0000-7000-8000-000000000001".parse().unwrap(), index: 2, size: 3 };
    assert_pinned(
        "v3/submission_created",
        envelope_v(
            3,
            "a7b1e2d4-4d6d-5b8e-9d29-3f0a4c2c6a11",
            "2026-11-25T10:00:00.123456Z",
            Event::SubmissionCreated {
                content: domain::Content::Plain("hello world 42".into()),
                owner_id: Some(owner),
                batch: Some(batch),
                replaces: Some("019ab0c4-0000-7000-8000-0000000000aa".parse().unwrap()),
            },
        ),
    );
    // Older versions read without either.
    let v2 = Envelope::decode(fixture("v2/submission_created").trim().as_bytes()).unwrap();
    assert!(matches!(v2.event, Event::SubmissionCreated { batch: None, replaces: None, .. }));
}

#[test]
fn submission_created_version_4_carries_sealed_content() {
    let owner = "019ab0c4-7e2a-7c11-9a3b-5d6e7f809112".parse().unwrap();
    assert_pinned(
        "v4/submission_created",
        envelope_v(
            4,
            "a7b1e2d4-4d6d-5b8e-9d29-3f0a4c2c6a11",
            "2026-11-25T10:00:00.123456Z",
            Event::SubmissionCreated {
                content: domain::Content::Sealed(vec![0, 1, 2, 250, 251, 252]),
                owner_id: Some(owner),
                batch: None,
                replaces: None,
            },
        ),
    );
}

#[test]
fn account_erased_is_keyed_by_its_account_and_about_no_submission() {
    let account: Uuid = "019ab0c4-7e2a-7c11-9a3b-5d6e7f809112".parse().unwrap();
    let erased = Envelope::account_erased(account, "2026-12-06T10:00:00.123456Z".parse().unwrap());
    let text = fixture("v1/account_erased");
    assert_eq!(Envelope::decode(text.trim().as_bytes()).unwrap(), erased, "decodes");
    assert_eq!(String::from_utf8(erased.encode()).unwrap(), text.trim(), "encodes");
    assert_eq!(erased.key(), account.to_string(), "on the partition of the account's id");
    assert_eq!(erased.submission_id, Uuid::nil());
    // Announced twice (a crash between publishing and recording it), it is the same event.
    assert_eq!(Envelope::account_erased(account, "2026-12-06T10:00:00.123456Z".parse().unwrap()).event_id, erased.event_id);
    let mut state = None;
    assert!(domain::fold::apply(&mut state, &erased).is_err(), "no submission's fold takes it");
    assert_eq!(state, None);
}

#[test]
fn a_submission_from_before_accounts_folds_without_an_owner() {
    let v1 = Envelope::decode(fixture("v1/submission_created").trim().as_bytes()).unwrap();
    let v2 = Envelope::decode(fixture("v2/submission_created").trim().as_bytes()).unwrap();
    assert_eq!(domain::Submission::fold([&v1]).unwrap().unwrap().owner_id, None);
    let owned = domain::Submission::fold([&v2]).unwrap().unwrap();
    assert_eq!(owned.owner_id.map(|id| id.to_string()).as_deref(), Some("019ab0c4-7e2a-7c11-9a3b-5d6e7f809112"));
    // The same id with another owner is not a duplicate: it contradicts the submission.
    let mut state = Some(owned);
    assert!(domain::fold::apply(&mut state, &v1).is_err());
}

#[test]
fn new_events_are_written_at_the_current_version() {
    let failed = Envelope::new(Uuid::nil(), Event::verdict_for("abc"), Utc::now(), Uuid::nil());
    assert_eq!(failed.schema_version, 2);
    assert!(matches!(failed.event, Event::SubmissionFailed { char_count: Some(3), .. }));
    let passed = Envelope::new(Uuid::nil(), Event::verdict_for("abcdefghi1"), Utc::now(), Uuid::nil());
    assert_eq!(passed.schema_version, 1);
    let created = Envelope::new(Uuid::nil(), Event::created("x", None), Utc::now(), Uuid::nil());
    assert_eq!(created.schema_version, 4);
}

#[test]
fn a_log_mixing_versions_folds_the_same_as_either_version_alone() {
    let history = |failed: &str| -> Vec<Envelope> {
        ["v1/submission_created", "v1/processing_started", failed]
            .iter()
            .map(|name| Envelope::decode(fixture(name).trim().as_bytes()).unwrap())
            .collect()
    };
    let with_v1 = domain::Submission::fold(&history("v1/submission_failed")).unwrap().unwrap();
    let with_v2 = domain::Submission::fold(&history("v2/submission_failed")).unwrap().unwrap();
    assert_eq!(with_v1.status, domain::Status::Failed);
    assert_eq!(with_v1.reasons, vec![FailureReason::TooShort, FailureReason::NoDigit]);
    // The version 2 verdict is the same verdict: equal state, and a duplicate of the other.
    assert_eq!(with_v1.reasons, with_v2.reasons);
    let mut state = Some(with_v1);
    let v2 = Envelope::decode(fixture("v2/submission_failed").trim().as_bytes()).unwrap();
    assert_eq!(domain::fold::apply(&mut state, &v2), Ok(domain::Applied::AlreadyApplied));
}

#[test]
fn event_ids_are_derived_from_submission_and_step() {
    let id: Uuid = SUBMISSION.parse().unwrap();
    let created = Envelope::new(id, Event::created("x", None), Utc::now(), Uuid::nil());
    let again = Envelope::new(id, Event::created("x", None), Utc::now(), Uuid::new_v4());
    assert_eq!(created.event_id, again.event_id);
    // Pinned: stored ids depend on the derivation never changing.
    assert_eq!(created.event_id.to_string(), "ee9f0108-da8a-59c8-b563-941ee9c11826");

    let started = created.follow_up(Event::ProcessingStarted {}, Utc::now());
    let passed = created.follow_up(Event::SubmissionPassed {}, Utc::now());
    let failed = created.follow_up(Event::SubmissionFailed { reasons: vec![], char_count: None }, Utc::now());
    assert_ne!(started.event_id, created.event_id);
    assert_ne!(passed.event_id, started.event_id);
    // One verdict per submission: both kinds share the verdict's identity.
    assert_eq!(passed.event_id, failed.event_id);
    assert_eq!(started.correlation_id, created.correlation_id);
}

#[test]
fn refuses_unknown_schema_versions_and_garbage() {
    let zero = fixture("v1/submission_passed").replace("\"schema_version\":1", "\"schema_version\":0");
    assert!(matches!(Envelope::decode(zero.as_bytes()), Err(ref e @ DecodeError::UnsupportedVersion { .. }) if !e.is_newer_version()));
    assert!(matches!(Envelope::decode(b"not json"), Err(DecodeError::Malformed(_))));
    let unknown_type = fixture("v1/submission_passed").replace("SubmissionPassed", "SubmissionExploded");
    assert!(matches!(Envelope::decode(unknown_type.as_bytes()), Err(DecodeError::Malformed(_))));
}

#[test]
fn a_known_type_at_a_newer_version_is_told_apart_from_garbage() {
    let future = fixture("v1/submission_passed").replace("\"schema_version\":1", "\"schema_version\":2");
    let error = Envelope::decode(future.as_bytes()).unwrap_err();
    assert!(error.is_newer_version(), "{error}");
    assert!(matches!(error, DecodeError::NewerVersion { version: 2, supported: 1, .. }));
    let future = fixture("v2/submission_failed").replace("\"schema_version\":2", "\"schema_version\":3");
    assert!(matches!(Envelope::decode(future.as_bytes()), Err(DecodeError::NewerVersion { version: 3, supported: 2, .. })));
    // A newer version may reshape the payload so that this build's types cannot parse it.
    let reshaped =
        fixture("v2/submission_created").replace("\"schema_version\":2", "\"schema_version\":5").replace("\"content\":", "\"content_parts\":");
    let error = Envelope::decode(reshaped.as_bytes()).unwrap_err();
    assert!(error.is_newer_version(), "{error}");
    assert_eq!(error.to_string(), "SubmissionCreated has schema version 5, newer than this build reads (1 to 4); a newer build must read it");
}

#[test]
fn times_are_kept_to_the_microsecond() {
    let at: DateTime<Utc> = "2026-11-25T10:00:00.123456789Z".parse().unwrap();
    let envelope = Envelope::new(Uuid::nil(), Event::ProcessingStarted {}, at, Uuid::nil());
    assert_eq!(envelope.occurred_at.to_rfc3339(), "2026-11-25T10:00:00.123456+00:00");
}
