//! Announces every erased account on the log: an `AccountErased` event on the submission topic,
//! so every consumer and every future replay learns from the log itself that the account's
//! text is gone, not only from its key's tombstone.
//!
//! The erasure cannot publish it: it runs where the account endpoints are served (the query
//! API, which has no Kafka client), and answers once the key is destroyed. It leaves the
//! tombstone unannounced and notifies [`keyring::store::ERASURES`]. Every command API listens,
//! publishes the event for each unannounced tombstone, and once the broker acknowledged it marks
//! the tombstone announced. Replicas take turns on an advisory lock (one that notices another
//! announcing leaves it the work: that one looks again after its notification), so each erasure
//! is published once; no row lock is held across the publish (readers lock key rows `FOR SHARE`,
//! and must not wait on a broker). A crash between the acknowledgement and the mark announces
//! the erasure again after the restart: the same event with the same id, which its readers apply
//! idempotently. Announcing also runs at start, after a lost connection
//! and every [`BACKSTOP`], for a notification sent while nobody listened.
//!
//! A build from before `AccountErased` cannot read it (an unknown event type): its projector
//! dead-letters the record. Upgrade the projector, validator and notifier before the command
//! APIs.

use std::time::Duration;

use domain::Envelope;
use kafka_kit::{EventPublisher, Outgoing};
use service_kit::retention::SweepLock;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How long announcing waits for a notification before it looks anyway.
const BACKSTOP: Duration = Duration::from_secs(300);
/// The pause after a failure (the database or the broker away).
const RETRY: Duration = Duration::from_secs(2);
/// Erasures announced per round.
const CHUNK: i64 = 100;
/// The advisory lock the command APIs' announcers take turns by.
const ANNOUNCE_LOCK: i64 = 0x636f_6e74_6572_6101;

/// Announces erasures as they are notified, until `shutdown`.
pub async fn run(pool: PgPool, publisher: EventPublisher, shutdown: CancellationToken) {
    service_kit::shutdown::retry_until_shutdown("announcing erased accounts", RETRY, &shutdown, || listen_and_announce(&pool, &publisher)).await
}

async fn listen_and_announce(pool: &PgPool, publisher: &EventPublisher) -> anyhow::Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(keyring::store::ERASURES).await?;
    loop {
        announce_pending(pool, publisher).await?;
        // A notification, a reconnect (`None`: some may have been lost) or the backstop: each is
        // followed by a look at every tombstone still unannounced.
        if let Ok(received) = tokio::time::timeout(BACKSTOP, listener.try_recv()).await {
            received?;
            while listener.next_buffered().is_some() {}
        }
    }
}

/// Publishes `AccountErased` for every unannounced tombstone, a chunk at a time, unless
/// another announcer is at it.
async fn announce_pending(pool: &PgPool, publisher: &EventPublisher) -> anyhow::Result<()> {
    let Some(lock) = SweepLock::try_acquire(pool, ANNOUNCE_LOCK).await? else { return Ok(()) };
    announce_all(pool, publisher).await?;
    lock.release().await;
    Ok(())
}

async fn announce_all(pool: &PgPool, publisher: &EventPublisher) -> anyhow::Result<()> {
    loop {
        let erased = keyring::store::unannounced_erasures(pool, CHUNK).await?;
        if erased.is_empty() {
            return Ok(());
        }
        let events: Vec<Envelope> = erased.iter().map(|&(account, erased_at)| Envelope::account_erased(account, erased_at)).collect();
        let outgoing: Vec<Outgoing> = events.iter().map(Outgoing::from).collect();
        publisher.publish_all(outgoing).await?;
        let accounts: Vec<uuid::Uuid> = erased.iter().map(|&(account, _)| account).collect();
        keyring::store::mark_announced(pool, &accounts).await?;
        for account_id in &accounts {
            tracing::info!(%account_id, "account erasure announced on the log");
        }
        if (accounts.len() as i64) < CHUNK {
            return Ok(());
        }
    }
}
