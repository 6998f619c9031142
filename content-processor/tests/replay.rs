//! Kafka is the source of truth: a projector on an empty database rebuilds the exact same read
//! model; a log mixing event schema versions replays correctly; a topic that no longer holds
//! what the read model was built from is noticed, never silently served. Whatever the tables
//! held when a statement was planned, the rows are found by key.

mod support;

use std::time::Duration;

use kafka_kit::{KafkaArgs, Outgoing};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use support::{eventually, TestDb, TestKafka, TestSystem};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Runs a live projector on `pool` until its positions reach the end of the topic.
async fn project_everything(kafka: &KafkaArgs, db: &TestDb, pool: &PgPool) {
    projector::generations::prepare(pool).await.unwrap();
    let config = projector::Config::new(&db.url, kafka.clone());
    let projector = projector::Projector::start(&config, pool.clone(), projector::Target::Live).await.unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(projector.run(stop.clone()));
    let ends = support::partition_ends(kafka).await;
    eventually("the projector reaches the end of the topic", || async {
        let positions: Vec<(i32, i64)> = sqlx::query_as("SELECT partition, next_offset FROM projector_positions").fetch_all(pool).await.ok()?;
        ends.iter().filter(|(_, end)| *end > 0).all(|p| positions.contains(p)).then_some(())
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_on_an_empty_database_rebuilds_the_exact_same_read_model() {
    let system = TestSystem::start().await;
    for i in 0..40 {
        let content = if i % 3 == 0 { format!("x{i}") } else { format!("replayable content {i}") };
        let (_, accepted) = system.submit(&content).await;
        system.wait_for_verdict(accepted["id"].as_str().unwrap()).await;
    }
    let original = system.db.pool().await;

    let empty = TestDb::create().await;
    let replayed = empty.pool().await;
    // The text in the log is sealed: reading it takes the accounts' data keys, which are
    // account data, not read model. The new database gets them; its read model starts empty.
    accounts::migrate(&replayed).await.unwrap();
    let keys: Vec<(Uuid, Option<String>, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT account_id, kek_id, wrapped FROM accounts.data_keys").fetch_all(&original).await.unwrap();
    assert!(!keys.is_empty(), "the submissions were sealed");
    for (account, kek_id, wrapped) in keys {
        sqlx::query("INSERT INTO accounts.data_keys (account_id, kek_id, wrapped) VALUES ($1, $2, $3)")
            .bind(account)
            .bind(kek_id)
            .bind(wrapped)
            .execute(&replayed)
            .await
            .unwrap();
    }
    project_everything(&system.running.kafka, &empty, &replayed).await;

    assert_eq!(support::read_model(&replayed).await, support::read_model(&original).await);
    let history = |pool: PgPool| async move {
        let mut rows: Vec<(Uuid, Uuid, String, String, i32, i64)> =
            sqlx::query_as("SELECT event_id, submission_id, event_type, status, kafka_partition, kafka_offset FROM submission_events")
                .fetch_all(&pool)
                .await
                .unwrap();
        rows.sort();
        rows
    };
    assert_eq!(history(replayed.clone()).await, history(original.clone()).await);

    replayed.close().await;
    original.close().await;
    empty.drop_database().await;
    system.stop().await;
}

/// A recorded fixture of the domain crate, re-keyed to a new submission.
fn fixture(name: &str, submission: Uuid) -> String {
    let path = format!("{}/../domain/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // Fresh event ids too: derived ids are per submission, and these fixtures share theirs.
    let event_id = Uuid::new_v5(&submission, name.as_bytes());
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    text.trim()
        .replace(value["submission_id"].as_str().unwrap(), &submission.to_string())
        .replace(value["event_id"].as_str().unwrap(), &event_id.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_mixing_schema_versions_replays_correctly() {
    let broker = TestKafka::start(1, 2).await;
    let kafka = broker.kafka.clone();
    kafka.ensure_topic().await.unwrap();
    let producer = kafka.producer(Duration::from_secs(5)).unwrap();
    let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
    for (submission, verdict) in [(old, "v1/submission_failed"), (new, "v2/submission_failed")] {
        for name in ["v1/submission_created", "v1/processing_started", verdict] {
            let key = submission.to_string();
            let value = fixture(name, submission);
            producer.send(FutureRecord::to(&kafka.topic).key(&key).payload(&value)).await.unwrap();
        }
    }

    let db = TestDb::create().await;
    let pool = db.pool().await;
    project_everything(&kafka, &db, &pool).await;

    let rows = support::read_model(&pool).await;
    for submission in [old, new] {
        assert_eq!(rows[&submission].status, "FAILED");
        assert_eq!(rows[&submission].reasons, ["too_short", "no_digit"]);
    }
    let versions: Vec<(Uuid, i16, serde_json::Value)> =
        sqlx::query_as("SELECT submission_id, schema_version, payload FROM submission_events WHERE event_type = 'SubmissionFailed'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let of = |id: Uuid| versions.iter().find(|(s, _, _)| *s == id).unwrap();
    assert_eq!(of(old).1, 1);
    assert!(of(old).2.get("char_count").is_none());
    assert_eq!((of(new).1, &of(new).2["char_count"]), (2, &serde_json::json!(4)));
    support::assert_read_model_equals_fold_of_topic(&pool, &kafka).await;
    pool.close().await;
    db.drop_database().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_topic_is_detected_and_stops_or_rebuilds_as_configured() {
    // A read model built from one broker...
    let system = TestSystem::start().await;
    for i in 0..3 {
        let (_, accepted) = system.submit(&format!("from the first log {i}")).await;
        system.wait_for_verdict(accepted["id"].as_str().unwrap()).await;
    }
    let pool = system.db.pool().await;

    // ...pointed at a fresh cluster holding a shorter log (as after the log was wiped).
    let other = TestKafka::start(1, 6).await;
    let mut config = projector::Config::new(&system.db.url, other.kafka.clone());

    let refused = projector::Projector::start(&config, pool.clone(), projector::Target::Live).await;
    let message = format!("{:#}", refused.err().expect("the projector refuses to go on"));
    assert!(message.contains("topic reset detected") && message.contains("another topic is behind the name"), "{message}");
    assert_eq!(support::read_model(&pool).await.len(), 3, "stop changes nothing");

    config.on_topic_reset = projector::TopicResetPolicy::Rebuild;
    let rebuilt = projector::Projector::start(&config, pool.clone(), projector::Target::Live).await.unwrap();
    assert_eq!(rebuilt.generation(), 2);
    assert!(support::read_model(&pool).await.is_empty(), "the read model now matches the (empty) log");
    drop(rebuilt);
    pool.close().await;
    system.stop().await;
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_deleted_from_the_log_stops_the_projector_instead_of_a_partial_read_model() {
    let broker = TestKafka::start(1, 1).await;
    let kafka = broker.kafka.clone();
    kafka.ensure_topic().await.unwrap();
    let publisher = kafka_kit::EventPublisher::new(&kafka, Duration::from_secs(30)).unwrap();
    let events: Vec<domain::Envelope> = (0..50)
        .map(|i| {
            let content = format!("soon deleted {i}");
            domain::Envelope::new(Uuid::new_v4(), domain::Event::created(content, None), chrono::Utc::now(), Uuid::nil())
        })
        .collect();
    publisher.publish_all(events.iter().map(Outgoing::from)).await.unwrap();
    // What retention, or an operator's DeleteRecords, does to the oldest records.
    let admin: AdminClient<DefaultClientContext> = broker.cluster.admin_client_config().create().unwrap();
    let mut delete_before = TopicPartitionList::new();
    delete_before.add_partition_offset(&kafka.topic, 0, Offset::Offset(20)).unwrap();
    admin.delete_records(&delete_before, &AdminOptions::new()).await.unwrap();
    let bounds = kafka.partition_bounds().await.unwrap();
    assert_eq!(bounds[&0], (20, 50), "the broker deleted the oldest records");

    let db = TestDb::create().await;
    let pool = db.pool().await;
    projector::generations::prepare(&pool).await.unwrap();
    let config = projector::Config::new(&db.url, kafka.clone());
    let refused = projector::Projector::start(&config, pool.clone(), projector::Target::Live).await;
    let message = format!("{:#}", refused.err().expect("no partial read model"));
    assert!(message.contains("lost records") && message.contains("retention"), "{message}");
    assert!(support::read_model(&pool).await.is_empty());
    pool.close().await;
    db.drop_database().await;
    broker.stop().await;
}

/// A batch looks up the submissions it touches by key. The planner priced a batch's index
/// probes above reading the whole table while the table was small enough (a rebuild's batch of
/// 3,334 ids: below a few hundred thousand rows), so each such batch cost as much as the table
/// was large.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_reads_the_submissions_of_a_batch_by_key_never_by_scanning_the_table() {
    let broker = TestKafka::start(1, 2).await;
    let kafka = broker.kafka.clone();
    kafka.ensure_topic().await.unwrap();
    let publisher = kafka_kit::EventPublisher::new(&kafka, Duration::from_secs(30)).unwrap();
    let submissions = 3_000;
    let events: Vec<domain::Envelope> = (0..submissions)
        .flat_map(|i| {
            let content = format!("submission {i}");
            let created = domain::Envelope::new(Uuid::now_v7(), domain::Event::created(content.clone(), None), chrono::Utc::now(), Uuid::nil());
            let started = created.follow_up(domain::Event::ProcessingStarted {}, chrono::Utc::now());
            let judged = created.follow_up(domain::Event::verdict_for(&content), chrono::Utc::now());
            [created, started, judged]
        })
        .collect();
    publisher.publish_all(events.iter().map(Outgoing::from)).await.unwrap();

    let db = TestDb::create().await;
    let pool = db.pool().await;
    project_everything(&kafka, &db, &pool).await;
    let live = projector::generations::live(&pool).await.unwrap().unwrap();
    pool.close().await;

    // A backend reports its table statistics when it goes idle or exits: wait until these
    // count every row the projector inserted (and any a retried batch inserted and rolled back).
    let pool = db.pool().await;
    let scanned: i64 = eventually("the projector's statistics are reported", || async {
        let row: (i64, i64) =
            sqlx::query_as("SELECT n_tup_ins, COALESCE(seq_tup_read, 0) FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'submissions'")
                .bind(projector::generations::schema(live))
                .fetch_one(&pool)
                .await
                .ok()?;
        (row.0 >= submissions).then_some(row.1)
    })
    .await;
    assert_eq!(scanned, 0, "rows of submissions read by scanning the table whole");
    pool.close().await;
    db.drop_database().await;
    broker.stop().await;
}

/// The connections that run the same few statements all day (the query API's hub, the
/// validator's key reads) plan each once (`service_kit::postgres::planned_once` says why). The
/// plan kept was made when the table held a few rows, analyzed (where reading it whole is
/// cheapest), and still probes the index once the table holds thousands. Left to itself,
/// PostgreSQL took a generic plan after five reads here, a sequential scan, and kept it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_on_a_connection_planned_once_runs_a_generic_plan_that_probes_the_index() {
    let db = TestDb::create().await;
    let options = service_kit::postgres::planned_once(db.url.parse().unwrap());
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    // No autovacuum: an ANALYZE of its own would re-plan the statement mid-test.
    sqlx::query("CREATE TABLE keys (account_id uuid PRIMARY KEY, wrapped bytea) WITH (autovacuum_enabled = off)").execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO keys SELECT gen_random_uuid(), NULL FROM generate_series(1, 5)").execute(&pool).await.unwrap();
    sqlx::query("ANALYZE keys").execute(&pool).await.unwrap();
    let read = "SELECT account_id, wrapped FROM keys WHERE account_id = ANY($1)";
    let read_one = || async { sqlx::query(read).bind(vec![Uuid::new_v4()]).fetch_all(&pool).await.unwrap() };
    for _ in 0..10 {
        read_one().await;
    }
    sqlx::query("INSERT INTO keys SELECT gen_random_uuid(), NULL FROM generate_series(1, 20000)").execute(&pool).await.unwrap();
    for _ in 0..10 {
        read_one().await;
    }

    let mut connection = pool.acquire().await.unwrap();
    let (name, generic, custom): (String, i64, i64) =
        sqlx::query_as("SELECT name, generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1")
            .bind(read)
            .fetch_one(&mut *connection)
            .await
            .unwrap();
    assert_eq!((generic, custom), (20, 0), "plans used for the 20 reads: (generic, custom)");
    let plan: Vec<String> =
        sqlx::query_scalar(&format!("EXPLAIN EXECUTE {name}('{{{}}}')", Uuid::new_v4())).fetch_all(&mut *connection).await.unwrap();
    assert!(plan.iter().any(|line| line.contains("Index")) && !plan.iter().any(|line| line.contains("Seq Scan")), "{plan:#?}");
    drop(connection);
    pool.close().await;
    db.drop_database().await;
}
