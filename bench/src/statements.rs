//! Which statements PostgreSQL ran in a window, from `pg_stat_statements`, when the server
//! loads it (`shared_preload_libraries = 'pg_stat_statements'`; BENCHMARKS.md says how). Without
//! it the suite measures everything else and says so once.

use serde::Serialize;
use sqlx::PgPool;

/// One statement's share of a window.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Statement {
    pub query: String,
    pub calls: i64,
    pub rows: i64,
    /// Milliseconds spent executing it (planning apart), all calls.
    pub total_exec_ms: f64,
    /// Milliseconds spent planning it, all calls: 0 unless the server tracks planning
    /// (`pg_stat_statements.track_planning = on`).
    pub total_plan_ms: f64,
}

/// Starts a window: forgets every statement counted so far. `None` when the server does not
/// load `pg_stat_statements`.
pub async fn reset(database_url: &str) -> Option<PgPool> {
    let pool = PgPool::connect(database_url).await.ok()?;
    let ready = async {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await?;
        sqlx::query("SELECT pg_stat_statements_reset()").execute(&pool).await
    };
    match ready.await {
        Ok(_) => Some(pool),
        Err(error) => {
            println!("  (no statement counts: pg_stat_statements is not loaded: {error})");
            None
        }
    }
}

/// The `limit` statements of this database that took the most time since [`reset`].
pub async fn top(pool: &PgPool, limit: i64) -> Vec<Statement> {
    sqlx::query_as(
        "SELECT query, calls, rows, total_exec_time AS total_exec_ms, total_plan_time AS total_plan_ms FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_statements%'
         ORDER BY total_exec_time + total_plan_time DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
    .unwrap_or_default()
}

/// Prints `statements` with their calls and time per unit of work (`units` of it; 0: per second
/// of `seconds`).
pub fn print(statements: &[Statement], units: u64, seconds: f64) {
    let (per, divisor) = if units == 0 { ("s", seconds.max(f64::EPSILON)) } else { ("submission", units as f64) };
    println!("  statements, per {per}: calls, rows, ms executing, ms planning");
    for statement in statements {
        let query: String = statement.query.split_whitespace().collect::<Vec<_>>().join(" ");
        let query: String = query.chars().take(110).collect();
        println!(
            "    {:>8.3} {:>8.3} {:>8.4} {:>8.4}  {query}",
            statement.calls as f64 / divisor,
            statement.rows as f64 / divisor,
            statement.total_exec_ms / divisor,
            statement.total_plan_ms / divisor
        );
    }
}
