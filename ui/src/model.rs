//! What the page shows, and how news from REST and SSE merges into it.
//!
//! Merging only ever moves a submission forward (PENDING -> PROCESSING -> verdict), so the same
//! news arriving twice, or REST and SSE arriving in either order, or a reconnect replaying
//! events, can neither duplicate an entry nor move it backwards.

use domain::Status;
use serde::Deserialize;

/// A submission as `GET /api/submissions` and `POST /api/submissions` answer it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SubmissionView {
    pub id: String,
    /// The text; [`ERASED`] once its account was deleted (the API sends null).
    #[serde(deserialize_with = "erased_when_null")]
    pub content: String,
    pub status: Status,
    #[serde(default)]
    pub reasons: Vec<String>,
    pub created_at: String,
    /// Who submitted it (admins see everyone's submissions).
    #[serde(default)]
    pub owner_email: Option<String>,
    /// The failed submission this one was edited from, and the one edited from this one.
    #[serde(default)]
    pub replaces: Option<String>,
    #[serde(default)]
    pub replaced_by: Option<String>,
}

/// How many of a batch's items are in each status.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Counts {
    pub pending: i64,
    pub processing: i64,
    pub passed: i64,
    pub failed: i64,
}

/// A batch as `GET /api/batches/{id}` and its `counts` events show it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchView {
    pub id: String,
    pub size: i64,
    pub counts: Counts,
    pub complete: bool,
}

/// The answer to an accepted batch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchAccepted {
    pub id: String,
    pub size: i64,
    /// Where Kafka stored its first item: reading the batch with it waits for the read model.
    pub position: String,
}

/// Which notifications the account gets.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NotificationSettings {
    pub email: bool,
    pub webhooks: bool,
    pub email_address: String,
    pub email_available: bool,
}

/// A registered webhook endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    pub description: String,
}

/// An endpoint just created: the only time its signing secret is shown.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CreatedEndpoint {
    pub id: String,
    pub secret: String,
}

/// A notification sent over one channel, with its attempts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub channel: String,
    pub endpoint_id: Option<String>,
    pub event_type: String,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<String>,
    pub attempt_log: Vec<Attempt>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Attempt {
    pub attempt: i32,
    pub attempted_at: String,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// A list answer, `{"items": [...]}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// The signed-in account, as `GET /api/session` answers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Session {
    pub account: Account,
    pub csrf_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub role: String,
    /// Nothing is mailed to the address until its owner confirmed it.
    #[serde(default)]
    pub email_verified: bool,
}

impl Account {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

/// A personal API token as its owner sees it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// A token just created: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub view: TokenView,
    pub token: String,
}

/// One SSE `status` event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StatusChange {
    pub seq: i64,
    pub submission_id: String,
    pub event_type: String,
    pub status: Status,
    pub occurred_at: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// One page of a list (`GET /api/submissions`, `GET /api/tokens`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// One entry of `GET /api/submissions/{id}/events`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HistoryEvent {
    pub seq: i64,
    pub event_type: String,
    pub status: Status,
    pub occurred_at: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct History {
    pub submission_id: String,
    pub events: Vec<HistoryEvent>,
}

/// The list on the page: newest first, one entry per submission.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Board {
    pub entries: Vec<SubmissionView>,
    /// Where the next (older) page starts; `None` once the end is reached.
    pub next_cursor: Option<String>,
    /// Whether the first page has arrived.
    pub loaded: bool,
}

impl Board {
    /// Adds what a page holds; entries already known keep whichever status is newer.
    pub fn merge_page(&mut self, page: Page<SubmissionView>, first: bool) {
        for item in page.items {
            self.upsert(item);
        }
        // Only the last page read says where the next one starts.
        if first && self.loaded {
            return;
        }
        self.next_cursor = page.next_cursor;
        self.loaded = true;
    }

    /// Adds or advances one submission.
    pub fn upsert(&mut self, item: SubmissionView) {
        match self.entries.iter_mut().find(|e| e.id == item.id) {
            Some(known) => {
                if item.status.step() > known.status.step() {
                    known.status = item.status;
                    known.reasons = item.reasons;
                }
                if known.owner_email.is_none() {
                    known.owner_email = item.owner_email;
                }
            }
            None => {
                // Newest first: (created_at, id) descending, as the API orders them.
                let at = self
                    .entries
                    .iter()
                    .position(|e| (e.created_at.as_str(), e.id.as_str()) < (item.created_at.as_str(), item.id.as_str()))
                    .unwrap_or(self.entries.len());
                self.entries.insert(at, item);
            }
        }
    }

    /// Applies one live status change. A change about a submission the page does not know
    /// adds it when the change carries its content (its creation), and is ignored otherwise
    /// (an old submission beyond the pages loaded).
    pub fn apply(&mut self, change: StatusChange) {
        let known = self.entries.iter().any(|e| e.id == change.submission_id);
        if !known && change.content.is_none() {
            return;
        }
        self.upsert(SubmissionView {
            id: change.submission_id,
            content: change.content.unwrap_or_default(),
            status: change.status,
            reasons: change.reasons,
            created_at: change.occurred_at,
            owner_email: None,
            replaces: None,
            replaced_by: None,
        });
    }

    pub fn get(&self, id: &str) -> Option<&SubmissionView> {
        self.entries.iter().find(|e| e.id == id)
    }
}

/// What an admin sees of a deleted account's submission: its text is gone everywhere.
pub const ERASED: &str = "(erased: the account was deleted)";

fn erased_when_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_else(|| ERASED.to_owned()))
}

/// A failure reason in words.
pub fn describe_reason(code: &str) -> String {
    match domain::FailureReason::parse(code) {
        Some(domain::FailureReason::TooShort) => {
            format!("too short: fewer than {} characters", domain::rule::MIN_CHARS)
        }
        Some(domain::FailureReason::NoDigit) => "no digit: contains no 0-9".to_owned(),
        Some(domain::FailureReason::Erased) => "erased: the account was deleted before it was judged".to_owned(),
        None => code.to_owned(),
    }
}

/// "14:03:07" from an RFC 3339 time (UTC), or the text itself if it is not one.
pub fn clock_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map(|t| t.format("%H:%M:%S UTC").to_string()).unwrap_or_else(|_| rfc3339.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_accounts_text_reads_as_erased() {
        let view: SubmissionView =
            serde_json::from_str(r#"{"id": "a", "content": null, "status": "PASSED", "created_at": "2026-12-06T10:00:00Z"}"#).unwrap();
        assert_eq!(view.content, ERASED);
    }

    fn view(id: &str, at: &str, status: Status) -> SubmissionView {
        SubmissionView {
            id: id.into(),
            content: format!("content {id}"),
            status,
            reasons: vec![],
            created_at: at.into(),
            owner_email: None,
            replaces: None,
            replaced_by: None,
        }
    }

    fn change(id: &str, status: Status, content: Option<&str>) -> StatusChange {
        StatusChange {
            seq: 1,
            submission_id: id.into(),
            event_type: String::new(),
            status,
            occurred_at: "2026-01-01T00:00:09Z".into(),
            content: content.map(Into::into),
            reasons: vec![],
        }
    }

    #[test]
    fn keeps_newest_first_and_one_entry_per_submission() {
        let mut board = Board::default();
        board.upsert(view("a", "2026-01-01T00:00:01Z", Status::Pending));
        board.upsert(view("c", "2026-01-01T00:00:03Z", Status::Pending));
        board.upsert(view("b", "2026-01-01T00:00:02Z", Status::Pending));
        board.upsert(view("b", "2026-01-01T00:00:02Z", Status::Pending));
        let ids: Vec<&str> = board.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
    }

    #[test]
    fn status_only_moves_forward_whatever_the_order_of_news() {
        let mut board = Board::default();
        board.upsert(view("a", "2026-01-01T00:00:01Z", Status::Passed));
        board.apply(change("a", Status::Pending, Some("content a")));
        board.apply(change("a", Status::Processing, None));
        assert_eq!(board.get("a").unwrap().status, Status::Passed);
        assert_eq!(board.entries.len(), 1);
    }

    #[test]
    fn live_creation_adds_an_entry_and_unknown_updates_are_ignored() {
        let mut board = Board::default();
        board.apply(change("old", Status::Passed, None));
        assert!(board.entries.is_empty());
        board.apply(change("new", Status::Pending, Some("<b>hi</b> 1234567")));
        board.apply(change("new", Status::Failed, None));
        let entry = board.get("new").unwrap();
        assert_eq!((entry.status, entry.content.as_str()), (Status::Failed, "<b>hi</b> 1234567"));
    }

    #[test]
    fn pages_append_and_remember_where_the_next_starts() {
        let mut board = Board::default();
        let page = |ids: &[&str], next: Option<&str>| Page {
            items: ids.iter().map(|id| view(id, &format!("2026-01-01T00:00:0{id}Z"), Status::Passed)).collect(),
            next_cursor: next.map(Into::into),
        };
        board.merge_page(page(&["9", "8"], Some("c1")), true);
        board.merge_page(page(&["7", "6"], None), false);
        assert_eq!(board.entries.len(), 4);
        assert_eq!(board.next_cursor, None);
        // A reconnect reloading the first page does not bring back an old cursor.
        board.merge_page(page(&["9", "8"], Some("c1")), true);
        assert_eq!(board.next_cursor, None);
        assert_eq!(board.entries.len(), 4);
    }

    #[test]
    fn reasons_in_words() {
        assert_eq!(describe_reason("too_short"), "too short: fewer than 10 characters");
        assert_eq!(describe_reason("no_digit"), "no digit: contains no 0-9");
        assert_eq!(clock_time("2026-11-25T10:11:12.5Z"), "10:11:12 UTC");
    }
}
