//! Rebuilding the read model with zero downtime: a new generation is built from the beginning
//! of the topic next to the live one, which keeps serving reads and receiving events; when the
//! new one has caught up it replaces the live one atomically and the old one is dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::generations::{self, Generation, GenerationError};
use crate::worker::{Projector, Target};
use crate::Config;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RebuildState {
    #[default]
    Idle,
    Running,
    Switched,
    Cancelled,
    Failed,
}

/// What `GET /admin/rebuild` shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RebuildStatus {
    pub state: RebuildState,
    pub from_generation: Option<Generation>,
    pub to_generation: Option<Generation>,
    /// Events applied to the new generation so far.
    pub events_applied: u64,
    /// Next offset per partition the new generation has read (JSON keys are the partitions
    /// as text)...
    #[schema(value_type = BTreeMap<String, i64>)]
    pub positions: BTreeMap<i32, i64>,
    /// ...and the end of each partition when last looked at.
    #[schema(value_type = BTreeMap<String, i64>)]
    pub topic_ends: BTreeMap<i32, i64>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why the rebuild failed; while it runs, what holds it back (its readers' indexes failing
    /// to build, tried again).
    pub error: Option<String>,
}

/// The progress of the current (or last) rebuild, shared with whoever watches it.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Mutex<RebuildStatus>>);

impl Progress {
    pub fn snapshot(&self) -> RebuildStatus {
        self.lock().clone()
    }

    /// Marks a rebuild as started (its caller holds the [`RebuildLock`], so no other runs), and
    /// says so to every replica before it returns.
    pub async fn begin(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        *self.lock() = RebuildStatus { state: RebuildState::Running, started_at: Some(Utc::now()), ..RebuildStatus::default() };
        self.publish(pool).await?;
        metrics::gauge!("content_processor_rebuild_running").set(1.0);
        metrics::gauge!("content_processor_rebuild_events_applied").set(0.0);
        Ok(())
    }

    /// Stores the snapshot where every replica reads it ([`shared_status`]).
    async fn publish(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO public.rebuild_status (only_row, status, updated_at) VALUES (true, $1, now())
             ON CONFLICT (only_row) DO UPDATE SET status = EXCLUDED.status, updated_at = now()",
        )
        .bind(sqlx::types::Json(self.snapshot()))
        .execute(pool)
        .await?;
        Ok(())
    }

    pub(crate) fn record(&self, applied: usize, next_offsets: &BTreeMap<i32, i64>) {
        let mut status = self.lock();
        status.events_applied += applied as u64;
        status.positions.extend(next_offsets);
        metrics::gauge!("content_processor_rebuild_events_applied").set(status.events_applied as f64);
    }

    pub(crate) fn set_ends(&self, ends: BTreeMap<i32, i64>) {
        self.lock().topic_ends = ends;
    }

    fn set_generations(&self, from: Generation, to: Generation) {
        let mut status = self.lock();
        status.from_generation = Some(from);
        status.to_generation = Some(to);
    }

    /// What holds a running rebuild back, shown with its progress until it clears (`None`).
    pub(crate) fn set_problem(&self, problem: Option<String>) {
        self.lock().error = problem;
    }

    fn finish(&self, state: RebuildState, error: Option<String>) {
        metrics::gauge!("content_processor_rebuild_running").set(0.0);
        let mut status = self.lock();
        status.state = state;
        status.error = error;
        status.finished_at = Some(Utc::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RebuildStatus> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The right to rebuild: one rebuild at a time across every process sharing the database. A
/// session-level advisory lock on a connection of its own: [`RebuildLock::release`] gives it up
/// at once; a lock dropped, or held by a process that dies, is freed when the server notices
/// its connection closed.
pub struct RebuildLock {
    connection: sqlx::PgConnection,
}

/// Key of the rebuild lock.
const REBUILD_LOCK: i64 = 0x636f_6e74_656e_7401;

/// How often a running rebuild's progress is published to the other replicas.
const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The current (or last) rebuild, whichever replica runs it: what `GET /admin/rebuild` and the
/// dashboard show, the same from every replica. One recorded as running whose lock nobody holds
/// was interrupted (its process died before it could say so).
pub async fn shared_status(pool: &PgPool) -> Result<RebuildStatus, sqlx::Error> {
    // pg_locks shows a bigint advisory key as its high half in classid, its low half in objid;
    // it lists every database's locks, and advisory locks are per database.
    let row: Option<(sqlx::types::Json<RebuildStatus>, bool)> = sqlx::query_as(
        "SELECT status, EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
                                AND classid = ($1 >> 32)::oid AND objid = ($1 & 4294967295)::oid
                                AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
         FROM public.rebuild_status",
    )
    .bind(REBUILD_LOCK)
    .fetch_optional(pool)
    .await?;
    let Some((sqlx::types::Json(mut status), locked)) = row else { return Ok(RebuildStatus::default()) };
    if status.state == RebuildState::Running && !locked {
        status.state = RebuildState::Failed;
        status.error = Some("interrupted: the process running it stopped".into());
    }
    Ok(status)
}

impl RebuildLock {
    /// The lock, or `None` when a rebuild holds it somewhere.
    pub async fn try_acquire(pool: &PgPool) -> Result<Option<RebuildLock>, sqlx::Error> {
        let mut connection = pool.acquire().await?.detach();
        let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(REBUILD_LOCK).fetch_one(&mut connection).await?;
        Ok(acquired.then_some(RebuildLock { connection }))
    }

    /// Unlocks and closes the connection, so the next rebuild can start right away.
    pub async fn release(mut self) {
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)").bind(REBUILD_LOCK).execute(&mut self.connection).await;
        if let Err(error) = unlocked {
            tracing::warn!(%error, "could not unlock the rebuild lock; it is freed when its connection closes");
        }
        let _ = self.connection.close().await;
    }
}

/// Drops generations an interrupted rebuild left in state `building` (its process was killed).
/// Only with the rebuild lock held: then no rebuild runs anywhere, so nobody is building them.
pub(crate) async fn abandon_building(pool: &PgPool) -> Result<(), GenerationError> {
    let leftovers: Vec<Generation> = sqlx::query_scalar("SELECT generation FROM public.read_models WHERE state = 'building'").fetch_all(pool).await?;
    for generation in leftovers {
        tracing::warn!(generation, "dropping a generation an interrupted rebuild left behind");
        generations::abandon(pool, generation).await?;
    }
    Ok(())
}

/// Runs one rebuild to its end, holding `lock`; `progress` must have been begun with
/// [`Progress::begin`]. Returns the new live generation. Its progress is published every
/// [`PUBLISH_EVERY`], and its outcome before the lock is released, so no replica ever reads a
/// finished rebuild as interrupted.
pub async fn rebuild(
    config: &Config,
    pool: &PgPool,
    progress: &Progress,
    lock: RebuildLock,
    shutdown: CancellationToken,
) -> anyhow::Result<Generation> {
    let stop_publishing = CancellationToken::new();
    let publisher = {
        let (progress, pool, stop) = (progress.clone(), pool.clone(), stop_publishing.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(PUBLISH_EVERY) => {}
                }
                if let Err(error) = progress.publish(&pool).await {
                    tracing::debug!(%error, "rebuild progress not published this time");
                }
            }
        })
    };
    let outcome = build_and_switch(config, pool, progress, shutdown).await;
    // Stopped and awaited, so no progress it was writing lands after the outcome.
    stop_publishing.cancel();
    let _ = publisher.await;
    match &outcome {
        Ok(_) => progress.finish(RebuildState::Switched, None),
        Err(error) if error.is::<Cancelled>() => progress.finish(RebuildState::Cancelled, None),
        Err(error) => progress.finish(RebuildState::Failed, Some(format!("{error:#}"))),
    }
    if let Err(error) = progress.publish(pool).await {
        tracing::warn!(%error, "could not publish the rebuild's outcome; replicas report it interrupted");
    }
    lock.release().await;
    outcome
}

#[derive(Debug, thiserror::Error)]
#[error("the rebuild was cancelled by shutdown; the live read model is unchanged")]
struct Cancelled;

async fn build_and_switch(config: &Config, pool: &PgPool, progress: &Progress, shutdown: CancellationToken) -> anyhow::Result<Generation> {
    let live = generations::live(pool).await?.context("no live read model to rebuild")?;
    let fresh = generations::create(pool).await?;
    progress.set_generations(live, fresh);
    tracing::info!(live, fresh, "rebuilding the read model from the beginning of the topic");
    let built = match Projector::start(config, pool.clone(), Target::Rebuild(fresh)).await {
        Ok(projector) => projector.rebuild(live, progress, shutdown).await,
        Err(error) => Err(error),
    };
    match built {
        Ok(true) => {
            // The switch is what counts; a retired schema left behind only takes space.
            if let Err(error) = generations::drop_generation(pool, live).await {
                tracing::warn!(%error, generation = live, "switched, but could not drop the retired generation");
            }
            Ok(fresh)
        }
        Ok(false) => {
            generations::abandon(pool, fresh).await?;
            Err(Cancelled.into())
        }
        Err(error) => {
            if let Err(cleanup) = generations::abandon(pool, fresh).await {
                tracing::warn!(%cleanup, generation = fresh, "could not drop the abandoned generation");
            }
            Err(error)
        }
    }
}
