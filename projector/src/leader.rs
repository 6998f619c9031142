//! One writer among projector replicas.
//!
//! Replicas (a Deployment runs two, so that one is always ready to write) race for a
//! session-level advisory lock on a connection of its own. The holder writes the live read
//! model; the others poll for the lock and take over when the holder's session ends. That is
//! at once when the holder's process dies (the kernel closes its socket and PostgreSQL ends the
//! session, releasing the lock), and after the server's TCP keepalives give up when its machine
//! vanishes without closing anything.
//!
//! The lock decides who works; it is not what keeps the read model right. Each batch checks,
//! inside its own transaction, that the writer's session still holds the lock (see
//! [`crate::store::begin_batch`]), and batches of any two writers are
//! serialized by the per-generation transaction lock and applied idempotently.

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

/// The advisory lock key the writing replica holds for as long as it writes.
pub const LEADER_LOCK: i64 = 0x636f_6e74_6c65_6164;

/// How often a waiting replica tries the lock, and how often the writer checks its session:
/// the most a waiting replica adds to a takeover once the lock is free.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The longest the lock's session may take to answer: one that does not is taken as lost (a
/// connection that went silent without closing, which the server may already have ended).
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Server-side keepalives on the lock's session: a writer whose machine vanished loses the lock
/// after about 5 s idle + 3 probes 1 s apart, or 8 s of unacknowledged data.
const KEEPALIVES: &str = "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 1; \
                          SET tcp_keepalives_count = 3; SET tcp_user_timeout = 8000";

/// The lock, held by this process's session.
pub struct LeaderLock(Session);

impl LeaderLock {
    /// Waits until this replica holds the lock. `None` when `shutdown` came first. A database
    /// that cannot be reached is tried again: waiting is this replica's job until it writes.
    pub async fn acquire(database_url: &str, shutdown: &CancellationToken) -> Option<LeaderLock> {
        let mut waiting: Option<Session> = None;
        let mut waiting_said = false;
        loop {
            let session = match waiting.take() {
                Some(session) => Ok(session),
                None => answered(Session::open(database_url)).await,
            };
            match session {
                Ok(mut session) => match answered(session.try_lock()).await {
                    Ok(true) => return Some(LeaderLock(session)),
                    Ok(false) => {
                        if !waiting_said {
                            tracing::info!("another projector replica writes the read model; waiting to take over");
                            waiting_said = true;
                        }
                        waiting = Some(session);
                    }
                    // The session is dropped; the next attempt opens another.
                    Err(error) => tracing::warn!(%error, "cannot ask for the projector's leader lock; trying again"),
                },
                Err(error) => tracing::warn!(%error, "cannot ask for the projector's leader lock; trying again"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }

    /// The PostgreSQL backend process holding the lock (what each batch checks for).
    pub fn session(&self) -> i32 {
        self.0.backend
    }

    /// Resolves when the lock's session has ended, or stopped answering within
    /// [`ANSWER_WITHIN`]: from then on the lock may be another replica's. (Without the bound, a
    /// connection that went silent kept this replica sure it led for ever, while the server had
    /// ended its session and another replica wrote.)
    pub async fn lost(&mut self) -> sqlx::Error {
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            if let Err(error) = answered(sqlx::query("SELECT 1").execute(&mut self.0.connection)).await {
                return error;
            }
        }
    }
}

/// `query`'s outcome, or an error when it did not answer within [`ANSWER_WITHIN`].
async fn answered<T>(query: impl std::future::Future<Output = Result<T, sqlx::Error>>) -> Result<T, sqlx::Error> {
    tokio::time::timeout(ANSWER_WITHIN, query)
        .await
        .unwrap_or_else(|_| Err(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {ANSWER_WITHIN:?}")))))
}

/// A connection of its own: the lock lives and dies with this session, never with a pooled one.
struct Session {
    connection: PgConnection,
    backend: i32,
}

impl Session {
    async fn open(database_url: &str) -> Result<Session, sqlx::Error> {
        let mut connection = PgConnection::connect(database_url).await?;
        sqlx::raw_sql(KEEPALIVES).execute(&mut connection).await?;
        let backend = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut connection).await?;
        Ok(Session { connection, backend })
    }

    async fn try_lock(&mut self) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LEADER_LOCK).fetch_one(&mut self.connection).await
    }
}
