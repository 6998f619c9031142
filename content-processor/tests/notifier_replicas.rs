//! Two notifier replicas share the consumer group `notifier`, so the last two verdicts of one
//! batch can be read by two replicas and stored by two transactions at the same moment. The
//! batch must still get exactly one `batch.completed`: whichever commits second sees it whole.

mod support;

use notifier::store::{self, AwaitedBatch};
use support::{eventually, TestDb};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_last_verdicts_two_replicas_store_at_once_completes_exactly_once() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    store::migrate(&pool).await.unwrap();
    let batch = AwaitedBatch { batch_id: Uuid::now_v7(), size: 2 };
    let (first_item, second_item) = (Uuid::now_v7(), Uuid::now_v7());

    // Replica A stores the first item's verdict and has not committed yet.
    let mut replica_a = pool.begin().await.unwrap();
    assert_eq!(store::count_batch_verdict(&mut replica_a, batch, first_item, true).await.unwrap(), None, "one of two");

    // Replica B stores the second item's verdict meanwhile.
    let mut replica_b = pool.begin().await.unwrap();
    let (b_pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()").fetch_one(&mut *replica_b).await.unwrap();
    let replica_b = tokio::spawn(async move {
        let complete = store::count_batch_verdict(&mut replica_b, batch, second_item, false).await.unwrap();
        replica_b.commit().await.unwrap();
        complete
    });
    // A commits only once B has counted or waits for A: B's count must not have been made
    // without A's (both would then see one of two, and nobody the whole batch).
    eventually("replica B has counted or waits for replica A", || async {
        let (waiting,): (bool,) = sqlx::query_as("SELECT COALESCE(bool_or(wait_event_type = 'Lock'), false) FROM pg_stat_activity WHERE pid = $1")
            .bind(b_pid)
            .fetch_one(&pool)
            .await
            .unwrap();
        (waiting || replica_b.is_finished()).then_some(())
    })
    .await;
    replica_a.commit().await.unwrap();

    assert_eq!(replica_b.await.unwrap(), Some((1, 1)), "the replica that stores last sees the batch complete: 1 passed, 1 failed");

    // A verdict read again (after a crash, or by the next owner of a partition) counts nothing.
    let mut again = pool.begin().await.unwrap();
    assert_eq!(store::count_batch_verdict(&mut again, batch, second_item, false).await.unwrap(), None);
    again.commit().await.unwrap();
    pool.close().await;
    db.drop_database().await;
}
