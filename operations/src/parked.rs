//! `GET /admin/parked-records`: the records the notifier set aside because they can never be
//! stored (an account deleted while its verdict was pending, say), with the reason and where
//! they are in the log, so an operator sees what was not told and why. The notifier owns the
//! table; it is read here, in the one database every component shares, as the dashboard's other
//! tallies are.

use accounts::Admin;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_kit::http_error::{AdminOnly, ErrorBody, QueryParams};
use sqlx::PgPool;
use uuid::Uuid;

use crate::records::limit;
use crate::{AdminError, AdminState, AdminUnavailable};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ParkedQuery {
    /// 1 to 100; 20 when absent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ParkedRecords {
    /// Records parked in all.
    pub count: i64,
    /// The latest first.
    pub latest: Vec<ParkedRecord>,
}

/// A record of the submission topic the notifier could not store, and why.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ParkedRecord {
    pub partition: i32,
    pub offset: i64,
    /// The submission it is about, when it could be read.
    pub submission_id: Option<Uuid>,
    /// What PostgreSQL refused.
    pub reason: String,
    pub parked_at: DateTime<Utc>,
}

/// The records the notifier parked, latest first.
#[utoipa::path(get, path = "/admin/parked-records", tag = "operations", params(ParkedQuery), responses(
    (status = 200, description = "the count and the latest", body = ParkedRecords),
    (status = 400, description = "`invalid_query`", body = ErrorBody),
    AdminOnly, AdminUnavailable,
))]
pub(super) async fn parked_records(
    _: Admin,
    State(state): State<AdminState>,
    QueryParams(query): QueryParams<ParkedQuery>,
) -> Result<Json<ParkedRecords>, AdminError> {
    let limit = limit(query.limit)?;
    let latest = sqlx::query_as(
        "SELECT kafka_partition AS partition, kafka_offset AS offset, submission_id, reason, parked_at
         FROM notifier.parked_records ORDER BY parked_at DESC, kafka_partition, kafka_offset LIMIT $1",
    )
    .bind(limit as i64)
    .fetch_all(&state.pool)
    .await;
    Ok(Json(ParkedRecords { count: count(&state.pool).await?, latest: none_before_the_notifier_ran(latest)? }))
}

/// How many records the notifier parked.
pub(super) async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    none_before_the_notifier_ran(sqlx::query_scalar("SELECT count(*) FROM notifier.parked_records").fetch_one(pool).await)
}

/// Before the notifier first started, its table does not exist: nothing is parked.
fn none_before_the_notifier_ran<T: Default>(read: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
    match read {
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P01") => Ok(T::default()),
        read => read,
    }
}
