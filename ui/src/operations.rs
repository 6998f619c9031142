//! What the admin dashboard reads from the projector's admin endpoints (`/admin/...`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// `GET /admin/overview`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Overview {
    pub topic: String,
    pub partitions: Vec<PartitionDepth>,
    pub validator_group: ValidatorGroup,
    pub submissions_by_status: BTreeMap<String, i64>,
    pub throughput: Vec<MinuteActivity>,
    pub dead_letter_topic: String,
    pub dead_letters: i64,
    /// Records the notifier could not store and set aside.
    pub parked_records: i64,
    pub rebuild: RebuildStatus,
    pub observed_at: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PartitionDepth {
    pub partition: i32,
    pub end_offset: i64,
    pub validator_offset: Option<i64>,
    pub validator_depth: i64,
    pub projector_offset: Option<i64>,
    pub projector_depth: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ValidatorGroup {
    pub group_id: String,
    pub state: String,
    pub members: Vec<GroupMember>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    pub partitions: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MinuteActivity {
    pub minute: String,
    pub accepted: i64,
    pub passed: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RebuildStatus {
    /// `idle`, `running`, `switched`, `cancelled` or `failed`.
    pub state: String,
    pub from_generation: Option<i64>,
    pub to_generation: Option<i64>,
    pub events_applied: u64,
    pub positions: BTreeMap<String, i64>,
    pub topic_ends: BTreeMap<String, i64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
}

impl RebuildStatus {
    /// How much of the topic the new generation has read, 0 to 100, when a rebuild ran.
    pub fn percent_read(&self) -> Option<u32> {
        let end: i64 = self.topic_ends.values().sum();
        let read: i64 = self.positions.values().sum();
        (end > 0).then(|| (read.min(end) * 100 / end) as u32)
    }
}

/// `GET /admin/dead-letters`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeadLetters {
    pub count: i64,
    pub latest: Vec<DeadLetter>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<String>,
    pub reason: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub content: Option<String>,
}

/// `GET /admin/records`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Records {
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub end_offset: i64,
    pub records: Vec<LoggedRecord>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LoggedRecord {
    pub offset: i64,
    pub timestamp: Option<String>,
    pub key: Option<String>,
    pub headers: Vec<Header>,
    pub event: Option<serde_json::Value>,
    pub decode_error: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Header {
    pub key: String,
    pub value: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuild_progress_is_the_share_of_the_topic_read() {
        let mut status: RebuildStatus = serde_json::from_value(serde_json::json!({
            "state": "running", "from_generation": 1, "to_generation": 2, "events_applied": 30,
            "positions": {"0": 10, "1": 20}, "topic_ends": {"0": 40, "1": 40},
            "started_at": null, "finished_at": null, "error": null
        }))
        .unwrap();
        assert_eq!(status.percent_read(), Some(37));
        status.topic_ends.clear();
        assert_eq!(status.percent_read(), None);
    }
}
