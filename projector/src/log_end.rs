//! Tells the query side where the topic ends, when it asks.
//!
//! A read with `?position=` waits until the read model has passed the position. A position the
//! log never held (invented, or from before the topic was recreated) would make it wait its
//! full time; to refuse one instead, the query side needs the log's end, and it never talks to
//! Kafka. So it NOTIFYs [`service_kit::LOG_END_WANTED`], and any projector replica answers by
//! reading the partitions' high watermarks and storing them in `public.log_end`, numbered from
//! the sequence the requests take their numbers from, before it asked Kafka (so a reading is
//! known to be later than a request). Nothing is read or written while nobody asks, so an idle
//! deployment pays nothing for it.

use std::time::Duration;

use kafka_kit::topics::LogEnds;
use kafka_kit::KafkaArgs;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The least time between two readings: requests arriving meanwhile share the next one, so a
/// flood of waits costs Kafka at most one reading (a metadata request and one offsets request
/// per partition) per interval and replica.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// How long to wait before listening again when the database or Kafka failed.
const RETRY: Duration = Duration::from_secs(1);

/// Answers requests for the log's end until `shutdown`. Failures are logged and retried: a
/// wait that gets no answer only lasts its full time, as it would without this.
pub async fn answer_requests(kafka: KafkaArgs, pool: PgPool, shutdown: CancellationToken) {
    let ends = match kafka.log_ends() {
        Ok(ends) => ends,
        Err(error) => {
            tracing::error!(%error, "cannot create the client that reads the log's end; reads past it will wait their full time");
            return;
        }
    };
    service_kit::shutdown::retry_until_shutdown("answering requests for the log's end", RETRY, &shutdown, || listen_and_answer(&ends, &pool)).await
}

async fn listen_and_answer(ends: &LogEnds, pool: &PgPool) -> anyhow::Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(service_kit::LOG_END_WANTED).await?;
    // A request sent before the listener was up may be waiting: answer once at the start, and
    // after a reconnect (`None`), which loses what was sent meanwhile.
    loop {
        record(ends, pool).await?;
        tokio::time::sleep(MIN_INTERVAL).await;
        if listener.try_recv().await?.is_some() {
            // Every request already received is answered by the reading that follows.
            while listener.next_buffered().is_some() {}
        }
    }
}

/// Reads the partitions' ends and stores them, numbered before the reading.
async fn record(ends: &LogEnds, pool: &PgPool) -> anyhow::Result<()> {
    let read_after: i64 = sqlx::query_scalar("SELECT nextval('public.log_end_asks')").fetch_one(pool).await?;
    let next_offsets = ends.read().await?;
    // Two replicas may answer the same request: the later reading wins.
    sqlx::query(
        "INSERT INTO public.log_end (next_offsets, read_after) VALUES ($1, $2)
         ON CONFLICT (only_row) DO UPDATE SET next_offsets = EXCLUDED.next_offsets, read_after = EXCLUDED.read_after
         WHERE log_end.read_after < EXCLUDED.read_after",
    )
    .bind(&next_offsets)
    .bind(read_after)
    .execute(pool)
    .await?;
    Ok(())
}
