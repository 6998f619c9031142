//! Read-model generations: complete read models side by side, one of them live.
//!
//! Generation `n` lives in schema `read_model_n` (tables from `generation_migrations/`). The
//! views `public.submissions`, `public.submission_events` (with a `generation` column),
//! `public.projector_positions` and the tallies (`public.status_counts`,
//! `public.activity_per_minute`) show the live generation, so readers never name a generation. A rebuild fills a new generation from the beginning of the
//! topic while the live one keeps serving and receiving events; [`switch`] then flips the
//! control rows and the views in one transaction, but only once the new generation has read at
//! least as far as the live one on every partition, so no reader ever sees the read model go
//! backwards.

use std::collections::BTreeMap;

use sqlx::migrate::Migrator;
use sqlx::{ConnectOptions, Connection, PgPool, Postgres, Transaction};

pub type Generation = i32;

/// Why a change to the set of generations did not happen.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error("read model unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("refusing to drop generation {0}: it is the live one")]
    Live(Generation),
}

static CONTROL: Migrator = sqlx::migrate!("./migrations");
static GENERATION: Migrator = sqlx::migrate!("./generation_migrations");

/// Serialises changes to the set of generations (creating, switching) across processes.
const CONTROL_LOCK: i64 = 0x636f_6e74_656e_7400;

pub fn schema(generation: Generation) -> String {
    format!("read_model_{generation}")
}

/// Applies the control-plane migrations, drops what an interrupted rebuild left behind, and
/// makes sure a live generation exists (generation 1 on an empty database, which the projector
/// then fills from the beginning of the topic).
///
/// The first generation is created under the rebuild lock, as every other `building` one is:
/// replicas starting together each drop leftover `building` generations when they hold that
/// lock, and one had dropped the first generation while another was still creating it.
pub async fn prepare(pool: &PgPool) -> Result<Generation, GenerationError> {
    CONTROL.run(pool).await.map_err(sqlx::Error::from)?;
    let live = loop {
        if let Some(lock) = crate::rebuild::RebuildLock::try_acquire(pool).await? {
            let outcome = clean_up_and_create_first(pool).await;
            lock.release().await;
            match outcome? {
                Created::First(generation) => return Ok(generation),
                Created::NotNeeded(live) => break live,
            }
        }
        // A rebuild runs somewhere, or another replica is creating the first generation.
        if let Some(live) = live(pool).await? {
            break live;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // Migrations added since the live generation was created apply to it too, and the views
    // show the columns they added.
    migrate(pool, live).await?;
    let mut tx = pool.begin().await?;
    lock_control(&mut tx).await?;
    point_views_at(&mut tx, live).await?;
    tx.commit().await?;
    Ok(live)
}

/// What [`clean_up_and_create_first`] found.
enum Created {
    /// There was no live generation: this one was created and made live.
    First(Generation),
    /// This one was live already.
    NotNeeded(Generation),
}

/// With the rebuild lock held (no rebuild runs anywhere): drops the `building` generations an
/// interrupted rebuild left, and creates the first generation if none is live.
async fn clean_up_and_create_first(pool: &PgPool) -> Result<Created, GenerationError> {
    crate::rebuild::abandon_building(pool).await?;
    if let Some(live) = live(pool).await? {
        return Ok(Created::NotNeeded(live));
    }
    let generation = create(pool).await?;
    let mut tx = pool.begin().await?;
    lock_control(&mut tx).await?;
    make_live(&mut tx, None, generation).await?;
    tx.commit().await?;
    Ok(Created::First(generation))
}

/// The live generation, if any.
pub async fn live<'e>(executor: impl sqlx::PgExecutor<'e>) -> Result<Option<Generation>, sqlx::Error> {
    sqlx::query_scalar("SELECT generation FROM public.read_models WHERE state = 'live'").fetch_optional(executor).await
}

/// Creates an empty generation in state `building`, with its schema and tables.
pub async fn create(pool: &PgPool) -> Result<Generation, sqlx::Error> {
    let generation: Generation = {
        let mut tx = pool.begin().await?;
        lock_control(&mut tx).await?;
        let next = sqlx::query_scalar(
            "INSERT INTO public.read_models (generation, state)
             SELECT COALESCE(MAX(generation), 0) + 1, 'building' FROM public.read_models
             RETURNING generation",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        next
    };
    migrate(pool, generation).await?;
    tracing::info!(generation, "created read-model generation");
    Ok(generation)
}

/// Creates `generation`'s schema if needed and applies the generation migrations in it.
async fn migrate(pool: &PgPool, generation: Generation) -> Result<(), sqlx::Error> {
    service_kit::postgres::migrate_in_schema(pool, &schema(generation), &GENERATION).await
}

/// Indexes only readers use: no statement of the projector's batches finds rows through them
/// (those go by primary key, by `(submission_id, step)` and, for an erasure, by owner). A
/// generation being built has no readers, so a rebuild drops them at its start and builds each
/// once, sorted, when it has caught up ([`defer_reader_indexes`]), instead of inserting every row
/// version into them one by one. The partial indexes stay: they take only batch items and
/// resubmissions, and building one concurrently reads the whole table twice.
const READER_INDEXES: &[&str] = &["submissions_newest", "submissions_status_newest"];

/// A generation's reader indexes, dropped until [`DeferredIndexes::build`] makes them again.
#[must_use = "a generation made live without its reader indexes scans for every read"]
pub struct DeferredIndexes {
    schema: String,
    /// Each index's name and the statement that builds it concurrently (from its definition
    /// in `pg_indexes`, which names its table with the schema).
    indexes: Vec<(String, String)>,
}

/// Drops `generation`'s [`READER_INDEXES`], keeping their definitions. Only for a generation
/// nobody reads: one being built. Should the rebuild not finish, its generation is abandoned,
/// so the definitions need not outlive the process. Only a plain `CREATE INDEX` is deferred:
/// it is what can be built again without locking the table against writes.
pub async fn defer_reader_indexes(pool: &PgPool, generation: Generation) -> Result<DeferredIndexes, sqlx::Error> {
    let schema = schema(generation);
    let mut tx = pool.begin().await?;
    let definitions: Vec<(String, String)> =
        sqlx::query_as("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = ANY($2) ORDER BY indexname")
            .bind(&schema)
            .bind(READER_INDEXES)
            .fetch_all(&mut *tx)
            .await?;
    let mut indexes = Vec::new();
    for (name, definition) in definitions {
        let Some(rest) = definition.strip_prefix("CREATE INDEX ") else { continue };
        sqlx::query(&format!("DROP INDEX {schema}.{name}")).execute(&mut *tx).await?;
        indexes.push((name, format!("CREATE INDEX CONCURRENTLY {rest}")));
    }
    tx.commit().await?;
    Ok(DeferredIndexes { schema, indexes })
}

/// Settings of the connection that builds the indexes: a build may take minutes on a large
/// table, so no timeout an operator set for ordinary statements may cancel it (it would start
/// over, for ever), and the server stops it within a second of losing this client (a process
/// stopped or killed during a build), instead of building for nobody.
const BUILD_SETTINGS: &[&str] = &["SET statement_timeout = 0", "SET lock_timeout = 0", "SET client_connection_check_interval = '1s'"];

impl DeferredIndexes {
    /// Builds the indexes again; what an earlier attempt left is kept if it is whole, dropped
    /// and built again if not, so a failed build can simply be tried again.
    ///
    /// `CONCURRENTLY`, because an erasure scrubs every generation, this one too: waiting
    /// behind a build that locks the table against writes, it would hold the erased owner's
    /// key and live rows, and the live projector, reaching either, would wait with it.
    pub async fn build(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        // A connection of its own that does not log slow statements: a build takes seconds on
        // a large table by design, and is logged once, here, with its time.
        let mut connection = pool.connect_options().as_ref().clone().disable_statement_logging().connect().await?;
        for setting in BUILD_SETTINGS {
            sqlx::query(setting).execute(&mut connection).await?;
        }
        let schema = &self.schema;
        for (name, statement) in &self.indexes {
            let valid: Option<bool> = sqlx::query_scalar(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
            )
            .bind(schema)
            .bind(name)
            .fetch_optional(&mut connection)
            .await?;
            match valid {
                Some(true) => continue,
                // A concurrent build that failed leaves its index behind, marked invalid.
                Some(false) => _ = sqlx::query(&format!("DROP INDEX CONCURRENTLY {schema}.{name}")).execute(&mut connection).await?,
                None => {}
            }
            let started = std::time::Instant::now();
            sqlx::query(statement).execute(&mut connection).await?;
            tracing::info!(schema, index = name, seconds = started.elapsed().as_secs_f64(), "built a reader index");
        }
        connection.close().await
    }
}

/// When a switch may happen.
pub enum SwitchWhen {
    /// The new generation has read at least as far as `from` on every partition.
    CaughtUpWithLive,
    /// Now: `from` no longer matches the log (the topic was reset), so waiting for the new
    /// generation to catch up with it would be waiting for a lie.
    Unconditionally,
}

/// What became of a switch.
#[derive(Debug, PartialEq, Eq)]
pub enum Switched {
    Yes,
    /// `to` has not read as far as `from` yet, or readers held the views longer than a switch
    /// waits: try again later.
    NotYet,
    /// `from` is not live (any more): another switch replaced it, so `to` can never replace it.
    FromNotLive,
}

/// Makes `to` live in place of `from`, in one transaction, if `when` allows.
pub async fn switch(pool: &PgPool, from: Generation, to: Generation, topic: &str, when: SwitchWhen) -> Result<Switched, sqlx::Error> {
    match switch_waiting_at_most(pool, from, to, topic, when).await {
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some(LOCK_NOT_AVAILABLE) => {
            tracing::info!(from, to, "the read model's views or rows were held longer than a switch waits; trying again later");
            Ok(Switched::NotYet)
        }
        outcome => outcome,
    }
}

/// SQLSTATE of a lock not granted within `lock_timeout`.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// How long a switch waits for a lock. Replacing a view takes an ACCESS EXCLUSIVE lock, and
/// every reader arriving after a waiting switch queues behind it: one long read of a view would
/// otherwise stop every read for as long as it ran. A switch that gives up is tried again.
const SWITCH_LOCK_TIMEOUT: &str = "2s";

async fn switch_waiting_at_most(pool: &PgPool, from: Generation, to: Generation, topic: &str, when: SwitchWhen) -> Result<Switched, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{SWITCH_LOCK_TIMEOUT}'")).execute(&mut *tx).await?;
    lock_control(&mut tx).await?;
    // Waits for any batch either writer has open (batches hold these rows FOR SHARE).
    sqlx::query("SELECT generation FROM public.read_models WHERE generation IN ($1, $2) ORDER BY generation FOR UPDATE")
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?;
    if live(&mut *tx).await? != Some(from) {
        return Ok(Switched::FromNotLive);
    }
    if let SwitchWhen::CaughtUpWithLive = when {
        let old = positions(&mut tx, from, topic).await?;
        let new = positions(&mut tx, to, topic).await?;
        let behind = old.iter().any(|(partition, &offset)| new.get(partition).copied().unwrap_or(0) < offset);
        if behind {
            return Ok(Switched::NotYet);
        }
    }
    make_live(&mut tx, Some(from), to).await?;
    tx.commit().await?;
    tracing::info!(from, to, "read model switched to the new generation");
    Ok(Switched::Yes)
}

/// Drops a retired generation's schema. Readers are already on the views of the live one.
pub async fn drop_generation(pool: &PgPool, generation: Generation) -> Result<(), GenerationError> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM public.read_models WHERE generation = $1").bind(generation).fetch_optional(pool).await?;
    if state.as_deref() == Some("live") {
        return Err(GenerationError::Live(generation));
    }
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", schema(generation))).execute(pool).await?;
    tracing::info!(generation, "dropped retired read-model generation");
    Ok(())
}

/// Next offset per partition stored in `generation`.
pub async fn positions(tx: &mut Transaction<'_, Postgres>, generation: Generation, topic: &str) -> Result<BTreeMap<i32, i64>, sqlx::Error> {
    let rows: Vec<(i32, i64)> =
        sqlx::query_as(&format!("SELECT partition, next_offset FROM {}.projector_positions WHERE topic = $1", schema(generation)))
            .bind(topic)
            .fetch_all(&mut **tx)
            .await?;
    Ok(rows.into_iter().collect())
}

async fn lock_control(tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CONTROL_LOCK).execute(&mut **tx).await?;
    Ok(())
}

/// Flips the states and points the views at `to`; announces it to LISTENers on commit.
async fn make_live(tx: &mut Transaction<'_, Postgres>, from: Option<Generation>, to: Generation) -> Result<(), sqlx::Error> {
    if let Some(from) = from {
        sqlx::query("UPDATE public.read_models SET state = 'retired' WHERE generation = $1").bind(from).execute(&mut **tx).await?;
    }
    sqlx::query("UPDATE public.read_models SET state = 'live', live_since = now() WHERE generation = $1").bind(to).execute(&mut **tx).await?;
    point_views_at(tx, to).await?;
    sqlx::query("SELECT pg_notify($1, 'switch')").bind(service_kit::READ_MODEL_CHANGES).execute(&mut **tx).await?;
    Ok(())
}

/// Points the public views at `generation`'s tables. Explicit columns: a column added to a
/// generation must not reshape the views under readers until code that reads it is deployed;
/// a migration that adds one appends it here too (a view may only grow at its end).
async fn point_views_at(tx: &mut Transaction<'_, Postgres>, generation: Generation) -> Result<(), sqlx::Error> {
    let schema = schema(generation);
    let to = generation;
    sqlx::query(&format!(
        "CREATE OR REPLACE VIEW public.submissions AS
         SELECT id, content, status, reasons, created_at, processing_started_at, processed_at, last_event_seq, owner_id,
                batch_id, batch_index, batch_size, replaces
         FROM {schema}.submissions"
    ))
    .execute(&mut **tx)
    .await?;
    sqlx::query(&format!(
        "CREATE OR REPLACE VIEW public.submission_events AS
         SELECT seq, event_id, submission_id, event_type, schema_version, status, occurred_at,
                correlation_id, payload, kafka_partition, kafka_offset, {to}::int AS generation
         FROM {schema}.submission_events"
    ))
    .execute(&mut **tx)
    .await?;
    sqlx::query(&format!(
        "CREATE OR REPLACE VIEW public.projector_positions AS SELECT topic, partition, next_offset FROM {schema}.projector_positions"
    ))
    .execute(&mut **tx)
    .await?;
    for tallies in ["status_counts", "activity_per_minute"] {
        sqlx::query(&format!("CREATE OR REPLACE VIEW public.{tallies} AS SELECT * FROM {schema}.{tallies}")).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Gives up a generation that was being built: retires it and drops its schema.
pub async fn abandon(pool: &PgPool, generation: Generation) -> Result<(), GenerationError> {
    sqlx::query("UPDATE public.read_models SET state = 'retired' WHERE generation = $1 AND state = 'building'")
        .bind(generation)
        .execute(pool)
        .await?;
    drop_generation(pool, generation).await
}
