//! The notifier writes the submissions it awaits and the notifications it makes once per
//! transaction, not per record: the tables must end as writing each record in turn would have
//! left them, duplicates included.

mod support;

use chrono::Utc;
use notifier::store::{Awaited, AwaitedWrites, NewNotifications, Notification};
use support::TestDb;
use uuid::Uuid;

fn awaited(submission_id: Uuid, owner_id: Uuid, content: &str) -> Awaited {
    Awaited { submission_id, owner_id, content: Some(content.into()), batch: None, created_at: Utc::now() }
}

async fn contents(pool: &sqlx::PgPool, submission_id: Uuid) -> Vec<Option<String>> {
    sqlx::query_scalar("SELECT content FROM notifier.awaited_verdicts WHERE submission_id = $1").bind(submission_id).fetch_all(pool).await.unwrap()
}

#[tokio::test]
async fn awaited_submissions_written_together_end_as_if_written_one_by_one() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    notifier::store::migrate(&pool).await.unwrap();
    let owner = Uuid::new_v4();
    let [twice, twice_then_judged, judged_then_again, older, unknown] = [(); 5].map(|()| Uuid::new_v4());

    // An earlier transaction left `older` awaited.
    let mut tx = pool.begin().await.unwrap();
    let mut writes = AwaitedWrites::default();
    writes.add(awaited(older, owner, "older, first read"));
    writes.flush(&mut tx).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    let mut writes = AwaitedWrites::default();
    // Read twice in one batch: awaited once, as first read.
    writes.add(awaited(twice, owner, "first copy"));
    writes.add(awaited(twice, owner, "second copy"));
    // Read twice, then judged: no longer awaited.
    writes.add(awaited(twice_then_judged, owner, "first copy"));
    writes.add(awaited(twice_then_judged, owner, "second copy"));
    assert!(writes.take_added(twice_then_judged).is_some());
    // Judged in the same batch, then its submission read again (a duplicate after the verdict).
    writes.add(awaited(judged_then_again, owner, "judged"));
    let taken = writes.take_added(judged_then_again).expect("taken from this batch");
    assert_eq!(taken.content.as_deref(), Some("judged"));
    writes.add(awaited(judged_then_again, owner, "read again"));
    // Read again here, then judged: the row from the earlier transaction goes too.
    writes.add(awaited(older, owner, "older, read again"));
    assert!(writes.take_added(older).is_some());
    // Not added here: nothing to take here, nor in the table.
    assert!(writes.take_added(unknown).is_none());
    assert!(notifier::store::take_awaited(&mut tx, unknown).await.unwrap().is_none());
    writes.flush(&mut tx).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(contents(&pool, twice).await, [Some("first copy".to_owned())]);
    assert!(contents(&pool, twice_then_judged).await.is_empty());
    assert_eq!(contents(&pool, judged_then_again).await, [Some("read again".to_owned())]);
    assert_eq!(contents(&pool, older).await, Vec::<Option<String>>::new());

    // A later verdict takes what is in the table.
    let mut tx = pool.begin().await.unwrap();
    assert_eq!(notifier::store::take_awaited(&mut tx, twice).await.unwrap().and_then(|a| a.content).as_deref(), Some("first copy"));
    tx.commit().await.unwrap();
    assert!(contents(&pool, twice).await.is_empty());
    pool.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_notification_made_twice_is_one_and_is_new_only_once() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    notifier::store::migrate(&pool).await.unwrap();
    let account = accounts::create_admin(&pool, "told@example.com", "told password 1".into()).await.unwrap().id;
    let notification = |verdict: &str| Notification {
        id: notifier::store::notification_id(Uuid::from_u128(7), "submission.judged"),
        account_id: account,
        event_type: "submission.judged",
        data: serde_json::json!({ "status": verdict }),
        at: Utc::now(),
    };

    let mut tx = pool.begin().await.unwrap();
    let mut made = NewNotifications::default();
    made.add(notification("first read"));
    made.add(notification("read again"));
    let new = made.insert(&mut tx).await.unwrap();
    assert_eq!(new.iter().map(|n| n.data["status"].clone()).collect::<Vec<_>>(), ["first read"]);
    tx.commit().await.unwrap();

    // Read again after a crash: nothing new, so no second delivery.
    let mut tx = pool.begin().await.unwrap();
    let mut made = NewNotifications::default();
    made.add(notification("after a crash"));
    assert!(made.insert(&mut tx).await.unwrap().is_empty());
    tx.commit().await.unwrap();
    let stored: Vec<serde_json::Value> = sqlx::query_scalar("SELECT payload FROM notifier.notifications").fetch_all(&pool).await.unwrap();
    assert_eq!(stored.iter().map(|p| p["data"]["status"].clone()).collect::<Vec<_>>(), ["first read"]);
    pool.close().await;
    db.drop_database().await;
}
