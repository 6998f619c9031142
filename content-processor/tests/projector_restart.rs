//! A projector stopped in the middle of a stream, by a crash or by a graceful stop, and started
//! again loses nothing and writes no duplicate rows, even when the log itself holds duplicates.

mod support;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use domain::{Envelope, Event};
use kafka_kit::{EventPublisher, Outgoing};
use sqlx::PgPool;
use support::{eventually, TestDb, TestKafka};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SUBMISSIONS: usize = 2_000;
/// Events a run applies before the test stops it: far from either end of the stream.
const STOP_AFTER: u64 = 1_500;

/// The full history of `n` submissions, as the command API and validator write it, plus a
/// replay of every tenth submission's follow-up events (a validator that died before committing).
fn histories(n: usize) -> (Vec<Envelope>, HashMap<Uuid, &'static str>) {
    let mut log = Vec::new();
    let mut expected = HashMap::new();
    for i in 0..n {
        let content = if i % 3 == 0 { format!("short{}", i % 10) } else { format!("long enough content {i}") };
        let created = Envelope::new(Uuid::new_v4(), Event::created(content.clone(), None), Utc::now(), Uuid::new_v4());
        let verdict = Event::verdict_for(&content);
        let status = if matches!(verdict, Event::SubmissionPassed {}) { "PASSED" } else { "FAILED" };
        let started = created.follow_up(Event::ProcessingStarted {}, Utc::now());
        let verdict = created.follow_up(verdict, Utc::now());
        expected.insert(created.submission_id, status);
        log.push(created);
        if i % 10 == 0 {
            log.extend([started.clone(), verdict.clone()]);
        }
        log.extend([started, verdict]);
    }
    (log, expected)
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_as::<_, (i64,)>(sql).fetch_one(pool).await.unwrap().0
}

async fn events_applied(pool: &PgPool) -> i64 {
    count(pool, "SELECT COUNT(*) FROM submission_events").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_stopped_mid_stream_resumes_without_loss_or_duplicates() {
    let db = TestDb::create().await;
    let broker = TestKafka::start(1, 4).await;
    let kafka = broker.kafka.clone();
    kafka.ensure_topic().await.unwrap();

    let (log, expected) = histories(SUBMISSIONS);
    let publisher = EventPublisher::new(&kafka, Duration::from_secs(10)).unwrap();
    for chunk in log.chunks(1000) {
        publisher.publish_all(chunk.iter().map(Outgoing::from)).await.unwrap();
    }
    let distinct_events = (SUBMISSIONS * 3) as i64;

    let mut config = projector::Config::new(&db.url, kafka.clone());
    config.batch_size = 10; // many small transactions, so a stop lands mid-stream
    let pool = projector::connect(&db.url).await.unwrap();
    projector::generations::prepare(&pool).await.unwrap();

    // 1. Crash: the task is dropped wherever it is, possibly inside a transaction.
    let crashed = projector::Projector::start(&config, pool.clone(), projector::Target::Live).await.unwrap();
    let stats = crashed.stats();
    let task = tokio::spawn(crashed.run(CancellationToken::new()));
    wait_until_applied(&stats, STOP_AFTER).await;
    task.abort();
    let _ = task.await;
    let after_crash = events_applied(&pool).await;
    assert!(after_crash > 0 && after_crash < distinct_events, "stopped mid-stream: {after_crash}");

    // 2. Graceful stop, again mid-stream.
    let stop = CancellationToken::new();
    let stopped = projector::Projector::start(&config, pool.clone(), projector::Target::Live).await.unwrap();
    let stats = stopped.stats();
    let task = tokio::spawn(stopped.run(stop.clone()));
    wait_until_applied(&stats, STOP_AFTER).await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let after_stop = events_applied(&pool).await;
    println!("events applied: {after_crash} after the crash, {after_stop} after the graceful stop, of {distinct_events}");
    assert!(after_stop > after_crash, "the second run resumed and progressed: {after_crash} -> {after_stop}");

    // 3. Run to the end of the topic.
    let stop = CancellationToken::new();
    let last = projector::Projector::start(&config, pool.clone(), projector::Target::Live).await.unwrap();
    let task = tokio::spawn(last.run(stop.clone()));
    let ends = support::partition_ends(&kafka).await;
    eventually("positions reach the end of every partition", || async {
        let positions: Vec<(i32, i64)> =
            sqlx::query_as("SELECT partition, next_offset FROM projector_positions ORDER BY partition").fetch_all(&pool).await.unwrap();
        (positions == ends).then_some(())
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();

    assert_eq!(events_applied(&pool).await, distinct_events, "every logical event stored exactly once");
    assert_eq!(count(&pool, "SELECT COUNT(DISTINCT event_id) FROM submission_events").await, distinct_events);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM submissions").await, SUBMISSIONS as i64);
    let statuses: Vec<(Uuid, String)> = sqlx::query_as("SELECT id, status FROM submissions").fetch_all(&pool).await.unwrap();
    for (id, status) in statuses {
        assert_eq!(status, expected[&id], "{id}");
    }
    let per_submission: Vec<(i64,)> = sqlx::query_as("SELECT COUNT(*) FROM submission_events GROUP BY submission_id").fetch_all(&pool).await.unwrap();
    assert!(per_submission.iter().all(|(n,)| *n == 3));
    // seq has no duplicates (primary key) and follows commit order: no seq is below one
    // committed before it, which holds when seq is dense per batch and increasing overall.
    assert_eq!(count(&pool, "SELECT MAX(seq) FROM submission_events").await, distinct_events);

    pool.close().await;
    db.drop_database().await;
    broker.stop().await;
}

/// Polls tightly: the projector is fast, and the stop must land mid-stream.
async fn wait_until_applied(stats: &projector::Stats, at_least: u64) {
    let deadline = std::time::Instant::now() + support::DEADLINE;
    while stats.applied.load(Ordering::Relaxed) < at_least {
        assert!(std::time::Instant::now() < deadline, "projector applied {at_least} events in time");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
