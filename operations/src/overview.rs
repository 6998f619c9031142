//! `GET /admin/overview`: everything the dashboard refreshes every few seconds, from one look at
//! Kafka and three small reads of the read model's tallies (none of them counts a table).

use std::collections::BTreeMap;

use crate::AdminUnavailable;
use accounts::Admin;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::Status;
use kafka_kit::inspect::Member;
use serde::Serialize;
use service_kit::http_error::AdminOnly;

use crate::{AdminError, AdminState};
use projector::rebuild::RebuildStatus;

/// How many minutes of throughput the overview shows.
const THROUGHPUT_MINUTES: i32 = 15;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Overview {
    pub topic: String,
    /// Every partition of the topic, with how far behind its end each reader is.
    pub partitions: Vec<PartitionDepth>,
    pub validator_group: ValidatorGroup,
    /// Submissions per status, every status present.
    pub submissions_by_status: BTreeMap<&'static str, i64>,
    /// Events per minute over the last 15 minutes, oldest first, by when they occurred.
    pub throughput: Vec<MinuteActivity>,
    pub dead_letter_topic: String,
    /// Records on the dead-letter topic.
    pub dead_letters: i64,
    /// Records the notifier could not store and set aside (`/admin/parked-records`).
    pub parked_records: i64,
    /// The rebuild started through this process, if any.
    pub rebuild: RebuildStatus,
    pub observed_at: DateTime<Utc>,
}

/// One partition's bounds and the queue depth (records not yet read) of each reader.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PartitionDepth {
    pub partition: i32,
    /// The oldest offset still in the log.
    pub first_offset: i64,
    /// The offset the next record will get.
    pub end_offset: i64,
    /// The validator group's committed offset; none before its first commit.
    pub validator_offset: Option<i64>,
    pub validator_depth: i64,
    /// The next offset the live read model reads; none before its first batch.
    pub projector_offset: Option<i64>,
    pub projector_depth: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ValidatorGroup {
    pub group_id: String,
    /// As the group coordinator says: `Stable`, `PreparingRebalance`, `CompletingRebalance`,
    /// `Empty` or `Dead`.
    pub state: String,
    pub members: Vec<GroupMember>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    pub partitions: Vec<i32>,
}

/// Events that occurred in one minute, by the status they moved their submission to.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct MinuteActivity {
    pub minute: DateTime<Utc>,
    pub accepted: i64,
    pub started: i64,
    pub passed: i64,
    pub failed: i64,
}

/// What the operations dashboard shows, now.
#[utoipa::path(get, path = "/admin/overview", tag = "operations", responses(
    (status = 200, description = "the overview", body = Overview), AdminOnly, AdminUnavailable,
))]
pub(super) async fn overview(_: Admin, State(state): State<AdminState>) -> Result<Json<Overview>, AdminError> {
    let topic = &state.config.kafka.topic;
    let dead_letter_topic = state.config.kafka.dead_letter_topic();
    let inspector = &state.inspector;
    // Positions first, the ends after: both only grow, so no position shows past its end.
    let partitions: Vec<i32> = (0..inspector.partition_count(topic).await?).collect();
    let committed = inspector.committed(topic, &partitions).await?;
    let projected: BTreeMap<i32, i64> = sqlx::query_as("SELECT partition, next_offset FROM public.projector_positions WHERE topic = $1")
        .bind(topic)
        .fetch_all(&state.pool)
        .await?
        .into_iter()
        .collect();
    let (bounds, group, dead_letter_bounds) =
        tokio::try_join!(inspector.bounds(topic), inspector.group(topic), inspector.bounds(&dead_letter_topic))?;
    let counted: Vec<(String, i64)> = sqlx::query_as("SELECT status, submissions FROM public.status_counts").fetch_all(&state.pool).await?;
    let throughput = sqlx::query_as(
        "SELECT m.minute, COALESCE(a.accepted, 0) AS accepted, COALESCE(a.started, 0) AS started,
                COALESCE(a.passed, 0) AS passed, COALESCE(a.failed, 0) AS failed
         FROM generate_series(date_trunc('minute', now(), 'UTC') - make_interval(mins => $1 - 1),
                              date_trunc('minute', now(), 'UTC'), interval '1 minute') AS m(minute)
         LEFT JOIN public.activity_per_minute a ON a.minute = m.minute
         ORDER BY m.minute",
    )
    .bind(THROUGHPUT_MINUTES)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(Overview {
        topic: topic.clone(),
        partitions: depths(&bounds, &committed, &projected),
        validator_group: ValidatorGroup {
            group_id: inspector.group_id().to_owned(),
            state: group.state,
            members: group.members.into_iter().map(GroupMember::from).collect(),
        },
        submissions_by_status: by_status(counted),
        throughput,
        dead_letter_topic,
        dead_letters: dead_letter_bounds.values().map(|(first, end)| end - first).sum(),
        parked_records: crate::parked::count(&state.pool).await?,
        rebuild: projector::rebuild::shared_status(&state.pool).await?,
        observed_at: Utc::now(),
    }))
}

impl From<Member> for GroupMember {
    fn from(member: Member) -> Self {
        GroupMember { member_id: member.member_id, client_id: member.client_id, host: member.host, partitions: member.partitions }
    }
}

/// How far behind each partition's end the validators and the projector are. A reader with no
/// position yet starts at the oldest record, so all of the partition is ahead of it.
fn depths(bounds: &BTreeMap<i32, (i64, i64)>, committed: &BTreeMap<i32, Option<i64>>, projected: &BTreeMap<i32, i64>) -> Vec<PartitionDepth> {
    bounds
        .iter()
        .map(|(&partition, &(first_offset, end_offset))| {
            let depth = |offset: Option<i64>| (end_offset - offset.unwrap_or(first_offset).max(first_offset)).max(0);
            let validator_offset = committed.get(&partition).copied().flatten();
            let projector_offset = projected.get(&partition).copied();
            PartitionDepth {
                partition,
                first_offset,
                end_offset,
                validator_offset,
                validator_depth: depth(validator_offset),
                projector_offset,
                projector_depth: depth(projector_offset),
            }
        })
        .collect()
}

/// The tallies, with a zero for each status that has no submissions.
fn by_status(counted: Vec<(String, i64)>) -> BTreeMap<&'static str, i64> {
    let counted: BTreeMap<String, i64> = counted.into_iter().collect();
    [Status::Pending, Status::Processing, Status::Passed, Status::Failed]
        .into_iter()
        .map(|status| (status.as_str(), counted.get(status.as_str()).copied().unwrap_or(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_what_lies_between_a_readers_position_and_the_end() {
        let bounds = BTreeMap::from([(0, (0, 10)), (1, (5, 8)), (2, (0, 0))]);
        let committed = BTreeMap::from([(0, Some(4)), (1, None), (2, None)]);
        let projected = BTreeMap::from([(0, 10), (1, 2)]);
        let depths = depths(&bounds, &committed, &projected);
        let shown: Vec<_> = depths.iter().map(|d| (d.partition, d.validator_depth, d.projector_depth)).collect();
        // Partition 1's oldest records were deleted: a position before them counts from the
        // oldest one left.
        assert_eq!(shown, [(0, 6, 0), (1, 3, 3), (2, 0, 0)]);
    }

    #[test]
    fn every_status_is_shown_even_with_no_submissions_in_it() {
        let shown = by_status(vec![("PASSED".into(), 3)]);
        assert_eq!(shown, BTreeMap::from([("FAILED", 0), ("PASSED", 3), ("PENDING", 0), ("PROCESSING", 0)]));
    }
}
