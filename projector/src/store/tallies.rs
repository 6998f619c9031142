//! Tallies the admin dashboard reads instead of counting the tables (`status_counts`,
//! `activity_per_minute`). A batch adds to them in its own transaction, so they always agree
//! with the rows, and a rebuild computes them again from the log.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use domain::Status;
use sqlx::{Postgres, Transaction};

/// What one batch adds.
#[derive(Default)]
pub(super) struct Tallies {
    submissions_by_status: BTreeMap<&'static str, i64>,
    /// Events per minute of when they occurred: accepted, started, passed, failed (see [`column`]).
    events_by_minute: BTreeMap<DateTime<Utc>, [i64; 4]>,
}

impl Tallies {
    /// An applied event moved a submission from `from` (none: it is new) to `to`.
    pub(super) fn moved(&mut self, from: Option<Status>, to: Status, occurred_at: DateTime<Utc>) {
        if from != Some(to) {
            if let Some(from) = from {
                *self.submissions_by_status.entry(from.as_str()).or_default() -= 1;
            }
            *self.submissions_by_status.entry(to.as_str()).or_default() += 1;
        }
        // Truncating to a minute cannot fail for any time chrono represents.
        let minute = occurred_at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(occurred_at);
        self.events_by_minute.entry(minute).or_default()[column(to)] += 1;
    }

    pub(super) async fn write(&self, tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        let per_status = |index: usize| self.events_by_minute.values().map(|counts| counts[index]).collect::<Vec<_>>();
        // One statement for both tables: a round trip costs more than their few rows.
        sqlx::query(
            "WITH by_status AS (
                 INSERT INTO status_counts (status, submissions)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[])
                 ON CONFLICT (status) DO UPDATE SET submissions = status_counts.submissions + EXCLUDED.submissions
             )
             INSERT INTO activity_per_minute (minute, accepted, started, passed, failed)
             SELECT * FROM UNNEST($3::timestamptz[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
             ON CONFLICT (minute) DO UPDATE SET
                 accepted = activity_per_minute.accepted + EXCLUDED.accepted,
                 started = activity_per_minute.started + EXCLUDED.started,
                 passed = activity_per_minute.passed + EXCLUDED.passed,
                 failed = activity_per_minute.failed + EXCLUDED.failed",
        )
        .bind(self.submissions_by_status.keys().copied().collect::<Vec<_>>())
        .bind(self.submissions_by_status.values().copied().collect::<Vec<_>>())
        .bind(self.events_by_minute.keys().copied().collect::<Vec<_>>())
        .bind(per_status(0))
        .bind(per_status(1))
        .bind(per_status(2))
        .bind(per_status(3))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// The column of `activity_per_minute` an event moving a submission to `status` counts in.
fn column(status: Status) -> usize {
    match status {
        Status::Pending => 0,
        Status::Processing => 1,
        Status::Passed => 2,
        Status::Failed => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submission_counts_once_under_its_latest_status_and_each_event_in_its_minute() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let mut tallies = Tallies::default();
        tallies.moved(None, Status::Pending, at("2026-11-26T10:00:59.9Z"));
        tallies.moved(Some(Status::Pending), Status::Processing, at("2026-11-26T10:01:00Z"));
        tallies.moved(Some(Status::Processing), Status::Failed, at("2026-11-26T10:01:30Z"));
        tallies.moved(None, Status::Pending, at("2026-11-26T10:01:31Z"));
        assert_eq!(tallies.submissions_by_status, BTreeMap::from([("FAILED", 1), ("PENDING", 1), ("PROCESSING", 0)]));
        assert_eq!(
            tallies.events_by_minute,
            BTreeMap::from([(at("2026-11-26T10:00:00Z"), [1, 0, 0, 0]), (at("2026-11-26T10:01:00Z"), [1, 1, 0, 1])])
        );
    }
}
