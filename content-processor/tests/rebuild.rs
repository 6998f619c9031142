//! A rebuild runs while a client reads continuously and new submissions arrive: no read fails,
//! comes back empty or partial, or goes backwards; the new read model switches in atomically,
//! equals the old one plus the new events (the fold of the whole topic), and the old one is
//! dropped.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use domain::Status;
use reqwest::StatusCode;
use support::user::{User, PASSWORD};
use support::{SseConnection, TestSystem, DEADLINE};

const SEEDED: usize = 300;
const DURING: usize = 100;
/// Records a rebuild has to work through when it is stopped.
const BACKLOG: usize = 4_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_switches_with_zero_downtime_while_reads_and_writes_go_on() {
    let system = TestSystem::start().await;
    let mut seeded = Vec::new();
    for i in 0..SEEDED {
        let content = if i % 4 == 0 { "short".to_owned() } else { format!("seeded submission {i}") };
        let (status, accepted) = system.submit(&content).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        seeded.push(accepted["id"].as_str().unwrap().to_owned());
    }
    for id in &seeded {
        system.wait_for_verdict(id).await;
    }

    // A reader that never stops looking while the rebuild runs.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (api, stop) = (system.api.clone(), stop.clone());
        tokio::spawn(async move {
            let mut problems = Vec::new();
            let mut reads = 0usize;
            let mut last_count = 0usize;
            let mut seen: HashMap<String, u8> = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, page) = api.get_json("/api/submissions?limit=500").await;
                reads += 1;
                if status != StatusCode::OK {
                    problems.push(format!("read {reads}: {status} {page}"));
                    continue;
                }
                let items = page["items"].as_array().unwrap();
                if items.len() < last_count {
                    problems.push(format!("read {reads}: {} items after {last_count}", items.len()));
                }
                last_count = items.len();
                for item in items {
                    let step = serde_json::from_value::<Status>(item["status"].clone()).unwrap().step();
                    let before = seen.insert(item["id"].as_str().unwrap().to_owned(), step).unwrap_or(0);
                    if step < before {
                        problems.push(format!("read {reads}: {} went backwards", item["id"]));
                    }
                }
            }
            (reads, problems)
        })
    };
    // A live client, which must be told to reload when the switch happens.
    let sse = {
        let connection = SseConnection::open(&system.http, &system.url("/api/stream"), None).await;
        tokio::spawn(async move {
            let events = connection.read_until(|events| events.last().is_some_and(|e| e.event == "reset")).await;
            events.last().cloned().unwrap()
        })
    };
    // A writer that keeps submitting during the rebuild.
    let writer = {
        let api = system.api.clone();
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            for i in 0..DURING {
                let (status, body) = api.submit(&format!("during the rebuild {i}")).await;
                assert_eq!(status, StatusCode::ACCEPTED);
                let created_at: DateTime<Utc> = body["created_at"].as_str().unwrap().parse().unwrap();
                accepted.push((body["id"].as_str().unwrap().to_owned(), created_at));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            accepted
        })
    };

    let pool = system.db.pool().await;
    let live_indexes = indexes_of(&pool, 1).await;
    assert!(!readers_index_built_after_the_migrations(&pool, 1).await, "the live generation has its indexes from its migrations");
    let response = system.http.post(system.url("/admin/rebuild")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["location"], "/admin/rebuild");
    let started: serde_json::Value = response.json().await.unwrap();
    assert_eq!(started["state"], "running");

    let deadline = Instant::now() + DEADLINE;
    let mut watched_running = 0;
    let finished = loop {
        let (_, status) = system.get_json("/admin/rebuild").await;
        match status["state"].as_str() {
            Some("running") => watched_running += 1,
            Some("switched") => break status,
            other => panic!("rebuild ended as {other:?}: {status}"),
        }
        assert!(Instant::now() < deadline, "the rebuild finished in time: {status}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let during = writer.await.unwrap();
    for (id, _) in &during {
        system.wait_for_verdict(id).await;
    }
    // The writes really overlapped the rebuild: some were accepted between its start and its switch.
    let time = |field: &str| finished[field].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    let (started_at, switched_at) = (time("started_at"), time("finished_at"));
    let overlapping = during.iter().filter(|(_, at)| (started_at..switched_at).contains(at)).count();
    assert!(overlapping > 0, "no write between the rebuild's start {started_at} and its switch {switched_at}");
    stop.store(true, Ordering::Relaxed);
    let (reads, problems) = reader.await.unwrap();
    println!("rebuild: {reads} reads and {overlapping} writes during it, progress seen running {watched_running} times, final {finished}");
    assert!(problems.is_empty(), "reads during the rebuild: {problems:#?}");
    assert!(reads > 10, "the reader really read during the rebuild ({reads})");

    assert_eq!((finished["from_generation"].as_i64(), finished["to_generation"].as_i64()), (Some(1), Some(2)));
    let read: i64 = finished["positions"].as_object().unwrap().values().map(|v| v.as_i64().unwrap()).sum();
    assert!(finished["events_applied"].as_u64().unwrap() >= (SEEDED * 3) as u64, "{finished}");
    assert!(read >= (SEEDED * 3) as i64, "progress shows the positions read: {finished}");

    let reset = tokio::time::timeout(DEADLINE, sse).await.expect("the live client is told").unwrap();
    assert_eq!(reset.data["generation"], 2);

    let live: i32 = sqlx::query_scalar("SELECT generation FROM read_models WHERE state = 'live'").fetch_one(&pool).await.unwrap();
    assert_eq!(live, 2);
    assert_eq!(indexes_of(&pool, 2).await, live_indexes, "the new generation went live with every index of the old one");
    assert!(readers_index_built_after_the_migrations(&pool, 2).await, "the rebuild made the readers' indexes after its migrations, not with them");
    let old_schema: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'read_model_1'").fetch_one(&pool).await.unwrap();
    assert_eq!(old_schema, 0, "the old generation was dropped");
    support::assert_read_model_equals_fold_of_topic(&pool, &system.running.kafka).await;
    let (_, list) = system.get_json("/api/submissions?limit=500").await;
    assert_eq!(list["items"].as_array().unwrap().len(), SEEDED + DURING);
    pool.close().await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rebuild_at_a_time_across_processes_and_leftovers_are_dropped_at_start() {
    let system = TestSystem::start().await;
    let pool = system.db.pool().await;

    // Another process rebuilding: it holds the lock on a database connection of its own.
    let elsewhere = projector::rebuild::RebuildLock::try_acquire(&pool).await.unwrap().expect("the lock is free");
    let response = system.api.http.post(system.api.url("/admin/rebuild")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rebuild_running", "{body}");
    let (_, status) = system.api.get_json("/admin/rebuild").await;
    assert_eq!(status["state"], "idle", "nothing started here: {status}");

    // That process dies mid-rebuild, leaving its generation "building"; the next start drops it.
    let leftover = projector::generations::create(&pool).await.unwrap();
    elsewhere.release().await;
    projector::generations::prepare(&pool).await.unwrap();
    let state: String = sqlx::query_scalar("SELECT state FROM read_models WHERE generation = $1").bind(leftover).fetch_one(&pool).await.unwrap();
    assert_eq!(state, "retired");
    let schema_left: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(projector::generations::schema(leftover))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!schema_left, "its schema is dropped");

    // With the lock free, a rebuild starts and completes.
    let response = system.api.http.post(system.api.url("/admin/rebuild")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    support::eventually("the rebuild switches", || async {
        let (_, status) = system.api.get_json("/admin/rebuild").await;
        (status["state"] == "switched").then_some(())
    })
    .await;
    pool.close().await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_whose_source_was_replaced_learns_it_can_never_switch() {
    use projector::generations::{create, prepare, switch, SwitchWhen, Switched};
    let db = support::TestDb::create().await;
    let pool = db.pool().await;
    let source = prepare(&pool).await.unwrap();
    let (rebuilding, other) = (create(&pool).await.unwrap(), create(&pool).await.unwrap());
    // Something else (a topic reset) replaces the source while the rebuild runs...
    assert_eq!(switch(&pool, source, other, "t", SwitchWhen::Unconditionally).await.unwrap(), Switched::Yes);
    // ...so the rebuild's switch is refused for good, not "not yet": it abandons instead of waiting.
    assert_eq!(switch(&pool, source, rebuilding, "t", SwitchWhen::CaughtUpWithLive).await.unwrap(), Switched::FromNotLive);
    pool.close().await;
    db.drop_database().await;
}

/// The indexes of a generation's tables: their definitions, without the schema's name.
async fn indexes_of(pool: &sqlx::PgPool, generation: i32) -> Vec<String> {
    sqlx::query_scalar("SELECT replace(indexdef, schemaname || '.', '') FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname")
        .bind(format!("read_model_{generation}"))
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Whether a reader index of `generation` was made after its migrations had run: it is then
/// newer than the last table they made.
async fn readers_index_built_after_the_migrations(pool: &sqlx::PgPool, generation: i32) -> bool {
    let schema = format!("read_model_{generation}");
    sqlx::query_scalar(&format!("SELECT '{schema}.submissions_newest'::regclass::oid > '{schema}.erased_accounts'::regclass::oid"))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// While a generation is built, nobody reads it: its rows go only into the indexes its writer
/// finds them by, and the readers' indexes are built again, each in one sort (a rebuild does so
/// when it reaches the end of the topic), completing what a failed attempt left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_being_built_goes_without_the_readers_indexes_until_they_are_built_again() {
    use projector::generations::{create, defer_reader_indexes, prepare};
    let db = support::TestDb::create().await;
    let pool = db.pool().await;
    let live = prepare(&pool).await.unwrap();
    let building = create(&pool).await.unwrap();
    let complete = indexes_of(&pool, building).await;
    assert_eq!(complete, indexes_of(&pool, live).await);

    let deferred = defer_reader_indexes(&pool, building).await.unwrap();
    let whole_table: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND tablename = 'submissions' AND indexdef NOT LIKE '% WHERE %'
         ORDER BY 1",
    )
    .bind(format!("read_model_{building}"))
    .fetch_all(&pool)
    .await
    .unwrap();
    // Of the indexes every row goes into: the key every batch loads and upserts by, and the
    // owner an erasure scrubs by.
    assert_eq!(whole_table, ["submissions_owner_newest", "submissions_pkey"]);
    let events_indexes = |indexes: &[String]| indexes.iter().filter(|i| i.contains(" ON submission_events ")).cloned().collect::<Vec<_>>();
    assert_eq!(events_indexes(&indexes_of(&pool, building).await), events_indexes(&complete), "the events keep their keys");

    // An earlier attempt failed half way: one index built, one left invalid, as a failed
    // concurrent build leaves it. Building again completes the set.
    let schema = format!("read_model_{building}");
    let partial =
        complete.iter().find(|i| i.contains(" submissions_newest ")).unwrap().replace(" ON submissions ", &format!(" ON {schema}.submissions "));
    sqlx::query(&partial).execute(&pool).await.unwrap();
    let broken = complete
        .iter()
        .find(|i| i.contains(" submissions_status_newest "))
        .unwrap()
        .replace(" ON submissions ", &format!(" ON {schema}.submissions "));
    sqlx::query(&broken).execute(&pool).await.unwrap();
    sqlx::query(&format!("UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{schema}.submissions_status_newest'::regclass"))
        .execute(&pool)
        .await
        .unwrap();
    // A timeout an operator set for ordinary statements cancels no build (new connections
    // take it; the pool's open ones, which run the rest of this test, do not).
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&pool).await.unwrap();
    sqlx::query(&format!("ALTER DATABASE \"{database}\" SET statement_timeout = '1ms'")).execute(&pool).await.unwrap();
    let built = deferred.build(&pool).await;
    sqlx::query(&format!("ALTER DATABASE \"{database}\" RESET statement_timeout")).execute(&pool).await.unwrap();
    built.unwrap();
    assert_eq!(indexes_of(&pool, building).await, complete);
    let invalid: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND NOT i.indisvalid",
    )
    .bind(&schema)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(invalid, 0, "every index is usable");
    pool.close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_rebuild_abandons_it_before_the_process_ends() {
    // A batch per record: a backlog of thousands of batches, each ready before its turn.
    let system = rebuilding_in_batches_of(1).await;
    let created: Vec<domain::Envelope> = (0..BACKLOG)
        .map(|i| {
            let event = domain::Event::SubmissionCreated {
                content: domain::Content::Plain(format!("a backlog for a rebuild {i}")),
                owner_id: None,
                batch: None,
                replaces: None,
            };
            domain::Envelope::new(uuid::Uuid::now_v7(), event, Utc::now(), uuid::Uuid::new_v4())
        })
        .collect();
    let publisher = kafka_kit::EventPublisher::new(&system.running.kafka, Duration::from_secs(10)).unwrap();
    publisher.publish_all(created.iter().map(|envelope| kafka_kit::Outgoing { envelope, partition: None, trace: None })).await.unwrap();
    let response = system.http.post(system.url("/admin/rebuild")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // Stopped once it is into its batches.
    support::eventually("the rebuild applies its first batches", || async {
        let (_, status) = system.get_json("/admin/rebuild").await;
        assert_eq!(status["state"], "running", "stopped while it runs: {status}");
        (status["events_applied"].as_u64() > Some(0)).then_some(())
    })
    .await;

    // Once stop returns, the rebuild's generation is gone and its lock released, and it stopped
    // at the stop, not at the end of its backlog.
    let db = system.stop_keeping_database().await;
    let pool = db.pool().await;
    let (outcome,): (serde_json::Value,) = sqlx::query_as("SELECT status FROM rebuild_status").fetch_one(&pool).await.unwrap();
    assert_eq!(outcome["state"], "cancelled", "{outcome}");
    assert!(outcome["events_applied"].as_u64().unwrap() < BACKLOG as u64 / 2, "applied after the stop: {outcome}");
    let states: Vec<(i32, String)> = sqlx::query_as("SELECT generation, state FROM read_models ORDER BY generation").fetch_all(&pool).await.unwrap();
    assert_eq!(states, [(1, "live".to_owned()), (2, "retired".to_owned())]);
    let schema_left: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'read_model_2')").fetch_one(&pool).await.unwrap();
    assert!(!schema_left, "the abandoned generation's schema is dropped");
    assert!(projector::rebuild::RebuildLock::try_acquire(&pool).await.unwrap().is_some(), "the lock is free");
    pool.close().await;
    db.drop_database().await;
}

/// Makes the database refuse the statements tagged `tag` whose text is like `statement` (an
/// event trigger named `refuse`), as a database that will not let a rebuild finish a step.
async fn refuse(pool: &sqlx::PgPool, tag: &str, statement: &str) {
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION refuse() RETURNS event_trigger LANGUAGE plpgsql AS
             $$ BEGIN
                 IF current_query() ILIKE '{statement}' THEN RAISE EXCEPTION 'this database refuses {tag}'; END IF;
             END $$;
         CREATE EVENT TRIGGER refuse ON ddl_command_start WHEN TAG IN ('{tag}') EXECUTE FUNCTION refuse();"
    ))
    .execute(pool)
    .await
    .unwrap();
}

/// The system with its rebuilds in batches of `records`.
async fn rebuilding_in_batches_of(records: usize) -> TestSystem {
    let db = support::TestDb::create().await;
    let mut config = support::test_config(&db);
    config.rebuild_batch_size = Some(records);
    TestSystem::start_with(db, config).await
}

async fn start_a_rebuild(system: &TestSystem) {
    let response = system.http.post(system.url("/admin/rebuild")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

/// The rebuild's status once it is no longer running.
async fn until_the_rebuild_ends(system: &TestSystem) -> serde_json::Value {
    support::eventually("the rebuild ends", || async {
        let (_, status) = system.get_json("/admin/rebuild").await;
        (status["state"] != "running").then_some(status)
    })
    .await
}

/// A rebuild in batches smaller than a submission's history folds each batch onto the states
/// the batch before it left, while that one is still being written: it ends as the fold of the
/// whole log, with nothing refused, and an account erased midway (its batch, and the one after
/// it, folded once it committed) keeps none of its text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_in_batches_smaller_than_a_history_ends_as_the_fold_of_the_log() {
    // A submission's three events fall in two or three batches.
    let system = rebuilding_in_batches_of(3).await;
    let api = &system.api;
    let leaving = User::sign_up(api, "leaving@example.com").await;
    let staying = User::sign_up(api, "staying@example.com").await;
    let (gone, kept) = (format!("gone-{}", uuid::Uuid::new_v4()), format!("kept-{}", uuid::Uuid::new_v4()));
    let mut submitted = Vec::new();
    for i in 0..15 {
        for (user, marker) in [(&leaving, &gone), (&staying, &kept)] {
            let content = if i % 4 == 0 { format!("{marker} {i}") } else { format!("{marker} {i} 42") };
            submitted.push(user.submit(api, &content).await["id"].as_str().unwrap().to_owned());
        }
    }
    for id in &submitted {
        api.wait_for_verdict(id).await;
    }
    let deleted = leaving.http.delete(api.url("/api/account")).json(&serde_json::json!({ "password": PASSWORD })).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let kafka = &system.running.kafka;
    support::eventually("the erasure is on the log", || async {
        let records = support::read_topic(kafka, &kafka.topic);
        records
            .iter()
            .filter_map(|record| domain::Envelope::decode(record.value.as_deref()?).ok())
            .any(|envelope| matches!(envelope.event, domain::Event::AccountErased { .. }))
            .then_some(())
    })
    .await;
    for i in 15..25 {
        let id = staying.submit(api, &format!("{kept} after the erasure {i} 42")).await["id"].as_str().unwrap().to_owned();
        api.wait_for_verdict(&id).await;
    }

    start_a_rebuild(&system).await;
    let status = until_the_rebuild_ends(&system).await;
    assert_eq!(status["state"], "switched", "{status}");
    // Three events for each of the 40 submissions: none refused (a state not carried over makes
    // the next batch's events about a submission it cannot find).
    assert_eq!(status["events_applied"], 120, "{status}");
    let pool = system.db.pool().await;
    support::assert_read_model_equals_fold_of_topic(&pool, kafka).await;
    let with_text = |marker: String| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM submissions WHERE content LIKE $1").bind(format!("{marker}%")).fetch_one(&pool)
    };
    assert_eq!((with_text(gone).await.unwrap(), with_text(kept).await.unwrap()), (0, 25));
    pool.close().await;
    system.stop().await;
}

/// A rebuild that caught up with the topic but cannot build its readers' indexes tries again,
/// and meanwhile its status says why it does not switch, instead of only "running"; once the
/// build succeeds the problem clears and it switches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_whose_indexes_fail_to_build_says_why_and_switches_once_they_build() {
    let system = TestSystem::start().await;
    let (_, accepted) = system.submit("judged before the rebuild 1").await;
    system.wait_for_verdict(accepted["id"].as_str().unwrap()).await;
    let pool = system.db.pool().await;
    // Only the concurrent builds: the new generation's migrations build their indexes plainly.
    refuse(&pool, "CREATE INDEX", "CREATE INDEX CONCURRENTLY%").await;

    start_a_rebuild(&system).await;
    support::eventually("the running rebuild says why it does not switch", || async {
        let (_, status) = system.get_json("/admin/rebuild").await;
        let problem = status["error"].as_str().unwrap_or_default();
        (status["state"] == "running" && problem.contains("this database refuses CREATE INDEX")).then_some(())
    })
    .await;

    sqlx::raw_sql("DROP EVENT TRIGGER refuse").execute(&pool).await.unwrap();
    let status = until_the_rebuild_ends(&system).await;
    assert_eq!((&status["state"], &status["error"]), (&serde_json::json!("switched"), &serde_json::Value::Null), "{status}");
    pool.close().await;
    system.stop().await;
}

/// Dropping the retired generation is housekeeping after the switch: when it fails, the rebuild
/// still reports that it switched (the new read model is live), and the old schema stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_that_switched_but_could_not_drop_the_old_generation_reports_switched() {
    let system = TestSystem::start().await;
    let (_, accepted) = system.submit("judged before the rebuild 1").await;
    let id = accepted["id"].as_str().unwrap();
    system.wait_for_verdict(id).await;
    let pool = system.db.pool().await;
    refuse(&pool, "DROP SCHEMA", "%").await;

    start_a_rebuild(&system).await;
    let status = until_the_rebuild_ends(&system).await;
    assert_eq!(status["state"], "switched", "{status}");
    let states: Vec<(i32, String)> = sqlx::query_as("SELECT generation, state FROM read_models ORDER BY generation").fetch_all(&pool).await.unwrap();
    assert_eq!(states, [(1, "retired".to_owned()), (2, "live".to_owned())]);
    let old_schema_left: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'read_model_1')").fetch_one(&pool).await.unwrap();
    assert!(old_schema_left, "the drop really failed");
    let (code, submission) = system.get_json(&format!("/api/submissions/{id}")).await;
    assert_eq!(code, StatusCode::OK, "served from the new generation: {submission}");
    pool.close().await;
    system.stop().await;
}

/// A long read of the read model (an analyst's query, a report) holds its views while a
/// rebuild is ready to switch. Replacing the views needs them to itself, and every read that
/// arrives behind a waiting switch queues behind it: the switch gives up after a short wait and
/// tries again, so other reads go on, and it switches once the long read ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_read_delays_the_switch_but_never_stops_other_reads() {
    let system = TestSystem::start().await;
    for i in 0..5 {
        let (status, accepted) = system.submit(&format!("before the rebuild {i}")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        system.wait_for_verdict(accepted["id"].as_str().unwrap()).await;
    }
    let pool = system.db.pool().await;
    let mut long_read = pool.begin().await.unwrap();
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM submissions").fetch_one(&mut *long_read).await.unwrap();
    assert!(rows >= 5);

    let started = system.api.http.post(system.url("/admin/rebuild")).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    // The rebuild catches up and asks for the views: its request waits behind the long read.
    support::eventually("the switch waits for the views", || async {
        let (waiting,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                            WHERE NOT l.granted AND l.mode = 'AccessExclusiveLock' AND c.relname = 'submissions'
                            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        waiting.then_some(())
    })
    .await;
    // Another reader meanwhile gets its answer while the long read is still open (queued behind
    // a switch that waited for ever, it would wait as long as the long read lasts).
    let read = tokio::time::timeout(DEADLINE, system.get_json("/api/submissions?limit=5")).await;
    assert_eq!(read.expect("a read is answered while the long read is open").0, StatusCode::OK);
    let (rows_now,): (i64,) = sqlx::query_as("SELECT count(*) FROM submissions").fetch_one(&mut *long_read).await.unwrap();
    assert_eq!(rows_now, rows, "the long read was open all along");

    long_read.commit().await.unwrap();
    support::eventually("the rebuild switches once the long read ends", || async {
        let (_, rebuild) = system.get_json("/admin/rebuild").await;
        (rebuild["state"] == "switched").then_some(())
    })
    .await;
    pool.close().await;
    system.stop().await;
}
