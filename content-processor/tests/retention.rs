//! Retention (issue 22, item 12): one sweep of each service deletes exactly the rows past their
//! retention, and leaves every row that is not, on a real PostgreSQL. Rows are written with
//! times set in the past by SQL; each table holds rows on both sides of its limit, so each
//! assertion fails if the sweep deleted nothing, or too much. Chunks of 2 rows make every
//! table take several statements.

mod support;

use std::collections::BTreeMap;

use sqlx::PgPool;
use support::TestDb;
use uuid::Uuid;

/// A database with the schemas of accounts, the command API and the notifier, and two accounts.
async fn prepared() -> (TestDb, PgPool, Uuid, Uuid) {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    accounts::migrate(&pool).await.expect("accounts schema");
    command_api::idempotency::migrate(&pool).await.expect("commands schema");
    notifier::store::migrate(&pool).await.expect("notifier schema");
    let (ada, bob) = (Uuid::new_v4(), Uuid::new_v4());
    for (id, email) in [(ada, "ada@retention.example"), (bob, "bob@retention.example")] {
        sqlx::query("INSERT INTO accounts.accounts (id, email, password_hash) VALUES ($1, $2, 'not a hash')")
            .bind(id)
            .bind(email)
            .execute(&pool)
            .await
            .unwrap();
    }
    (db, pool, ada, bob)
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sql).execute(pool).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// The values of `column` (as text) left in `table`, sorted.
async fn left(pool: &PgPool, table: &str, column: &str) -> Vec<String> {
    sqlx::query_scalar(&format!("SELECT ({column})::text FROM {table} ORDER BY 1")).fetch_all(pool).await.unwrap()
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

fn command_settings() -> command_api::retention::Settings {
    let retention = service_kit::retention::RetentionArgs { retention_chunk_rows: 2, ..Default::default() };
    // Submission window 3600 s, sign-in 900 s (the defaults); tokens 30 days.
    command_api::retention::Settings::from_args(&accounts::AccountsArgs::default(), &retention, 30)
}

fn notifier_settings() -> notifier::retention::Settings {
    let retention = service_kit::retention::RetentionArgs { retention_chunk_rows: 2, ..Default::default() };
    // Notifications 30 days; --max-age-secs a day.
    notifier::retention::Settings::from_args(&retention, 30, 86_400)
}

#[tokio::test]
async fn command_api_sweep_deletes_expired_keys_counters_sessions_and_tokens() {
    let (db, pool, ada, bob) = prepared().await;
    let key = |account: Uuid, key: &str, hours_ago: i32| {
        format!(
            "INSERT INTO commands.idempotency_keys (account_id, key, request_digest, submission_id, created_at)
             VALUES ('{account}', '{key}', '\\x00', gen_random_uuid(), now() - interval '{hours_ago} hours')"
        )
    };
    // 24 hours is the keys' lifetime, for every account (Bob never claims a key again).
    exec(&pool, &key(ada, "ada-25h", 25)).await;
    exec(&pool, &key(ada, "ada-48h", 48)).await;
    exec(&pool, &key(ada, "ada-23h", 23)).await;
    exec(&pool, &key(bob, "bob-30h", 30)).await;
    exec(&pool, &key(bob, "bob-now", 0)).await;
    // The longest window is the submissions' hour: a sign-in counter 20 minutes old stays.
    exec(
        &pool,
        "INSERT INTO accounts.rate_limits (key, window_start, spent) VALUES
         ('submissions:61min', now() - interval '61 minutes', 3),
         ('sign-in-account:2h', now() - interval '2 hours', 1),
         ('submissions:59min', now() - interval '59 minutes', 3),
         ('sign-in-address:20min', now() - interval '20 minutes', 1)",
    )
    .await;
    exec(
        &pool,
        &format!(
            "INSERT INTO accounts.sessions (token_digest, account_id, csrf_token, expires_at) VALUES
             ('\\x01', '{ada}', 'expired-1min', now() - interval '1 minute'),
             ('\\x02', '{ada}', 'expired-8days', now() - interval '8 days'),
             ('\\x03', '{bob}', 'valid-1h', now() + interval '1 hour')"
        ),
    )
    .await;
    exec(
        &pool,
        &format!(
            "INSERT INTO accounts.api_tokens (id, account_id, name, token_digest, expires_at, revoked_at) VALUES
             (gen_random_uuid(), '{ada}', 'revoked-31d', '\\x11', NULL, now() - interval '31 days'),
             (gen_random_uuid(), '{ada}', 'revoked-29d', '\\x12', NULL, now() - interval '29 days'),
             (gen_random_uuid(), '{bob}', 'expired-31d', '\\x13', now() - interval '31 days', NULL),
             (gen_random_uuid(), '{bob}', 'expired-1d', '\\x14', now() - interval '1 day', NULL),
             (gen_random_uuid(), '{bob}', 'expires-later', '\\x15', now() + interval '1 day', NULL),
             (gen_random_uuid(), '{bob}', 'forever', '\\x16', NULL, NULL)"
        ),
    )
    .await;
    // Mailed links open nothing once expired.
    exec(
        &pool,
        &format!(
            "INSERT INTO accounts.email_tokens (token_digest, account_id, purpose, expires_at) VALUES
             ('\\x21', '{ada}', 'verify', now() - interval '1 minute'),
             ('\\x22', '{bob}', 'reset', now() + interval '1 hour')"
        ),
    )
    .await;

    let swept = command_api::retention::sweep_once(&pool, &command_settings()).await.expect("sweep").expect("no other sweep runs");
    let expected: BTreeMap<&str, u64> = BTreeMap::from([
        ("commands.idempotency_keys", 3),
        ("accounts.rate_limits", 2),
        ("accounts.sessions", 2),
        ("accounts.email_tokens", 1),
        ("accounts.api_tokens", 2),
    ]);
    assert_eq!(swept, expected);
    assert_eq!(left(&pool, "commands.idempotency_keys", "key").await, strings(&["ada-23h", "bob-now"]));
    assert_eq!(left(&pool, "accounts.rate_limits", "key").await, strings(&["sign-in-address:20min", "submissions:59min"]));
    assert_eq!(left(&pool, "accounts.sessions", "csrf_token").await, strings(&["valid-1h"]));
    assert_eq!(left(&pool, "accounts.email_tokens", "purpose").await, strings(&["reset"]));
    assert_eq!(left(&pool, "accounts.api_tokens", "name").await, strings(&["expired-1d", "expires-later", "forever", "revoked-29d"]));

    // Nothing left to do: a second sweep (another replica's, or the next period's) deletes nothing.
    let again = command_api::retention::sweep_once(&pool, &command_settings()).await.unwrap().unwrap();
    assert_eq!(again.values().sum::<u64>(), 0, "{again:?}");
    pool.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn notifier_sweep_deletes_finished_deliveries_old_notifications_and_settled_batches() {
    let (db, pool, ada, _bob) = prepared().await;
    // Notifications, each named by its event type; all but the last are 40 days old.
    let notification = |name: &str, days_ago: i32| {
        format!(
            "INSERT INTO notifier.notifications (id, account_id, event_type, payload, created_at)
             VALUES (md5('{name}')::uuid, '{ada}', '{name}', '{{}}', now() - interval '{days_ago} days')"
        )
    };
    for name in ["done", "mixed", "pending", "silent"] {
        exec(&pool, &notification(name, 40)).await;
    }
    exec(&pool, &notification("recent", 1)).await;
    let delivery = |id: &str, of: &str, state: &str, finished_days_ago: Option<i32>| {
        let finished = finished_days_ago.map_or("NULL".to_owned(), |days| format!("now() - interval '{days} days'"));
        format!(
            "INSERT INTO notifier.deliveries (id, notification_id, account_id, channel, state, finished_at)
             VALUES ('{id}', md5('{of}')::uuid, '{ada}', 'email', '{state}', {finished})"
        )
    };
    exec(&pool, &delivery("done-31d", "done", "delivered", Some(31))).await;
    exec(&pool, &delivery("mixed-31d", "mixed", "failed", Some(31))).await;
    exec(&pool, &delivery("mixed-29d", "mixed", "delivered", Some(29))).await;
    exec(&pool, &delivery("pending", "pending", "pending", None)).await;
    exec(&pool, &delivery("recent-now", "recent", "delivered", Some(0))).await;
    exec(
        &pool,
        "INSERT INTO notifier.delivery_attempts (delivery_id, attempt, attempted_at, duration_ms) VALUES
         ('done-31d', 1, now() - interval '32 days', 5), ('done-31d', 2, now() - interval '31 days', 5),
         ('mixed-31d', 1, now() - interval '31 days', 5), ('mixed-29d', 1, now() - interval '29 days', 5),
         ('pending', 1, now() - interval '40 days', 5), ('recent-now', 1, now(), 5)",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO notifier.parked_records (kafka_partition, kafka_offset, reason, parked_at) VALUES
         (0, 31, 'refused', now() - interval '31 days'), (0, 1, 'refused', now() - interval '1 day')",
    )
    .await;
    // Awaited verdicts: kept as long as notifications, 30 days. `d-item` belongs to batch d.
    let awaited = |name: &str, batch: Option<&str>, hours_ago: i32| {
        let batch = batch.map_or("NULL".to_owned(), |b| format!("md5('batch {b}')::uuid"));
        format!(
            "INSERT INTO notifier.awaited_verdicts (submission_id, owner_id, content, batch_id, batch_size, created_at)
             VALUES (md5('{name}')::uuid, '{ada}', '{name}', {batch}, 3, now() - interval '{hours_ago} hours')"
        )
    };
    exec(&pool, &awaited("single-31d", None, 31 * 24)).await;
    exec(&pool, &awaited("single-29d", None, 29 * 24)).await;
    exec(&pool, &awaited("b-item-29d", Some("b"), 29 * 24)).await;
    exec(&pool, &awaited("d-item-31d", Some("d"), 31 * 24)).await;
    // Batches: a last counted 25 h ago, nothing awaited: goes. b counted 25 h ago but an item is
    // still awaited (and not expired): stays, or its count would restart. c counted an hour ago:
    // stays. d counted 25 h ago with an item awaited 31 days: the awaited row expires, then d goes.
    let batch = |name: &str, verdicts: usize, hours_ago: i32| {
        let rows: Vec<String> = (0..verdicts).map(|i| format!("(md5('batch {name}')::uuid, md5('{name} verdict {i}')::uuid, true)")).collect();
        format!(
            "INSERT INTO notifier.batch_progress (batch_id, judged, passed, counted_at)
             VALUES (md5('batch {name}')::uuid, {verdicts}, {verdicts}, now() - interval '{hours_ago} hours');
             INSERT INTO notifier.batch_verdicts (batch_id, submission_id, passed) VALUES {}",
            rows.join(", ")
        )
    };
    exec(&pool, &batch("a", 3, 25)).await;
    exec(&pool, &batch("b", 2, 25)).await;
    exec(&pool, &batch("c", 2, 1)).await;
    exec(&pool, &batch("d", 1, 25)).await;

    let swept = notifier::retention::sweep_once(&pool, &notifier_settings()).await.expect("sweep").expect("no other sweep runs");
    let expected: BTreeMap<&str, u64> = BTreeMap::from([
        ("notifier.delivery_attempts", 3),
        ("notifier.deliveries", 2),
        ("notifier.notifications", 2),
        ("notifier.parked_records", 1),
        ("notifier.awaited_verdicts", 2),
        ("notifier.batch_verdicts", 4),
        ("notifier.batch_progress", 2),
    ]);
    assert_eq!(swept, expected);
    assert_eq!(left(&pool, "notifier.deliveries", "id").await, strings(&["mixed-29d", "pending", "recent-now"]));
    assert_eq!(
        left(&pool, "notifier.delivery_attempts", "delivery_id || '#' || attempt").await,
        strings(&["mixed-29d#1", "pending#1", "recent-now#1"])
    );
    // `mixed` keeps its recent delivery, `pending` its pending one; `silent` never had one.
    assert_eq!(left(&pool, "notifier.notifications", "event_type").await, strings(&["mixed", "pending", "recent"]));
    assert_eq!(left(&pool, "notifier.parked_records", "kafka_offset").await, strings(&["1"]));
    assert_eq!(left(&pool, "notifier.awaited_verdicts", "content").await, strings(&["b-item-29d", "single-29d"]));
    let batches_left = "(SELECT name FROM unnest(array['a', 'b', 'c', 'd']) name WHERE md5('batch ' || name)::uuid = batch_id)";
    assert_eq!(left(&pool, "notifier.batch_progress", batches_left).await, strings(&["b", "c"]));
    assert_eq!(left(&pool, "notifier.batch_verdicts", batches_left).await, strings(&["b", "b", "c", "c"]));

    let again = notifier::retention::sweep_once(&pool, &notifier_settings()).await.unwrap().unwrap();
    assert_eq!(again.values().sum::<u64>(), 0, "{again:?}");
    pool.close().await;
    db.drop_database().await;
}

/// The batch's count goes on after a sweep: `counted_at` moves with every verdict counted, so a
/// batch still being judged is never old enough to go, however long ago it started.
#[tokio::test]
async fn counting_a_verdict_keeps_its_batch_from_the_sweep() {
    let (db, pool, _ada, _bob) = prepared().await;
    exec(
        &pool,
        "INSERT INTO notifier.batch_progress (batch_id, judged, passed, counted_at) VALUES (md5('batch e')::uuid, 1, 1, now() - interval '2 days');
         INSERT INTO notifier.batch_verdicts (batch_id, submission_id, passed) VALUES (md5('batch e')::uuid, md5('e 0')::uuid, true)",
    )
    .await;
    let mut tx = pool.begin().await.unwrap();
    let batch =
        notifier::store::AwaitedBatch { batch_id: sqlx::query_scalar("SELECT md5('batch e')::uuid").fetch_one(&pool).await.unwrap(), size: 3 };
    let counted = notifier::store::count_batch_verdict(&mut tx, batch, Uuid::new_v4(), false).await.unwrap();
    assert_eq!(counted, None, "two of three counted: not complete");
    tx.commit().await.unwrap();
    let swept = notifier::retention::sweep_once(&pool, &notifier_settings()).await.unwrap().unwrap();
    assert_eq!(swept["notifier.batch_progress"], 0);
    assert_eq!(swept["notifier.batch_verdicts"], 0);
    let judged: i32 = sqlx::query_scalar("SELECT judged FROM notifier.batch_progress").fetch_one(&pool).await.unwrap();
    assert_eq!(judged, 2);
    pool.close().await;
    db.drop_database().await;
}

/// Two replicas sweeping at once delete each expired row once between them and nothing else.
#[tokio::test]
async fn two_replicas_sweeping_together_delete_each_expired_row_once() {
    let (db, pool, ada, _bob) = prepared().await;
    exec(
        &pool,
        &format!(
            "INSERT INTO commands.idempotency_keys (account_id, key, request_digest, submission_id, created_at)
             SELECT '{ada}', 'old-' || i, '\\x00', gen_random_uuid(), now() - interval '2 days' FROM generate_series(1, 3000) i;
             INSERT INTO commands.idempotency_keys (account_id, key, request_digest, submission_id, created_at)
             SELECT '{ada}', 'new-' || i, '\\x00', gen_random_uuid(), now() - interval '1 hour' FROM generate_series(1, 500) i"
        ),
    )
    .await;
    let mut settings = command_settings();
    settings.chunk_rows = 100;
    let (one, other) = tokio::join!(command_api::retention::sweep_once(&pool, &settings), command_api::retention::sweep_once(&pool, &settings));
    let deleted: u64 = [one.unwrap(), other.unwrap()].into_iter().flatten().map(|swept| swept["commands.idempotency_keys"]).sum();
    assert_eq!(deleted, 3000);
    let counts: (i64, i64) =
        sqlx::query_as("SELECT count(*) FILTER (WHERE key LIKE 'old-%'), count(*) FILTER (WHERE key LIKE 'new-%') FROM commands.idempotency_keys")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(counts, (0, 500));
    pool.close().await;
    db.drop_database().await;
}
