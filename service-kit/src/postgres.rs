//! PostgreSQL helpers shared by the components that own a schema.

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// How a service's pools are set up: at most `max_connections`, and a request waits at most 3 s
/// for one before it is answered 503.
///
/// Connections are not pinged when taken from the pool. sqlx already pings each one when it is
/// given back, so a second ping on taking it doubles the round trips of every query. Worse,
/// under contention a wait that times out during that ping drops the connection (sqlx issue
/// #3132): the pool then opens new ones, each a PostgreSQL backend to fork, exactly when the
/// machine is busiest (BENCHMARKS.md). A connection that died while idle fails its one query
/// instead, which answers that request 503 like any lost database.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new().max_connections(max_connections).acquire_timeout(std::time::Duration::from_secs(3)).test_before_acquire(false)
}

/// `options` for connections that run a few statements again and again, each finding its rows
/// by key: every statement is planned once, on first use, and that plan is kept.
///
/// Left to itself, PostgreSQL plans a statement anew at every call when the plan for its values
/// looks cheaper than the generic one, as for `= ANY($1)` with one element; the planning then cost
/// several times the running (BENCHMARKS.md). With table scans ruled out wherever an index
/// serves, the plan kept probes the indexes however small the tables were when it was made: a
/// plan cached while a table was small had scanned it whole as it grew, until an ANALYZE
/// replaced it.
///
/// Unnamed statements (`.persistent(false)`) get the generic plan here too: only statements
/// whose best plan is the same for every value belong on such connections.
pub fn planned_once(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("plan_cache_mode", "force_generic_plan"), ("enable_seqscan", "off")])
}

/// A pool of at most `max_connections` to `database_url`, failing at once, with the address,
/// when PostgreSQL cannot be reached: what a service that needs the database from its start does.
pub async fn connect(database_url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    use anyhow::Context;
    pool_options(max_connections).connect(database_url).await.with_context(|| format!("cannot reach PostgreSQL at {}", describe(database_url)))
}

/// Where `database_url` points (user, host, port, database), without its password or any
/// other parameter: what a log line or an error may say about it.
pub fn describe(database_url: &str) -> String {
    match database_url.parse::<PgConnectOptions>() {
        Ok(options) => {
            format!("{}@{}:{}/{}", options.get_username(), options.get_host(), options.get_port(), options.get_database().unwrap_or_default())
        }
        Err(_) => "a URL that does not parse as a PostgreSQL URL".to_owned(),
    }
}

/// Applies `migrator` inside `schema`, creating it when missing. The migrations and their
/// bookkeeping table land in that schema, so each owner of a schema migrates it on its own
/// without seeing another owner's migrations as unknown.
pub async fn migrate_in_schema(pool: &PgPool, schema: &str, migrator: &Migrator) -> Result<(), sqlx::Error> {
    // Components starting together create the schema together; `IF NOT EXISTS` alone races.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(schema).execute(&mut *tx).await?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).execute(&mut *tx).await?;
    tx.commit().await?;
    // A pool of one connection of its own whose search_path points into the schema.
    let search_path = format!("SET search_path TO {schema}");
    let in_schema = PgPoolOptions::new()
        .max_connections(1)
        .after_connect(move |conn, _| {
            let search_path = search_path.clone();
            Box::pin(async move { sqlx::query(&search_path).execute(conn).await.map(|_| ()) })
        })
        .connect_with((*pool.connect_options()).clone())
        .await?;
    let migrated = migrator.run(&in_schema).await;
    in_schema.close().await;
    Ok(migrated?)
}

/// Whether `error` means the database cannot be used right now (unreachable, pool exhausted,
/// schema not there yet), as opposed to a fault in the query: the former answers 503.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db.code().as_deref() == Some("42P01"),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        _ => false,
    }
}

/// Whether the database refused the statement for the data it carries (a constraint, an
/// invalid value: SQLSTATE classes 22 and 23), so running it again can only fail the same way.
/// Anything else (a lost connection, a deadlock, a serialization failure) may pass on a retry.
pub fn is_refused_for_good(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_described_url_keeps_where_it_points_and_drops_the_password() {
        let described = describe("postgres://app:hunter2secret@db.internal:6432/content?sslmode=require&password=other");
        assert_eq!(described, "app@db.internal:6432/content");
        assert!(!describe("postgres://app:hunter2secret@").contains("hunter2"));
        assert!(!describe("not a url hunter2").contains("hunter2"));
    }
}
