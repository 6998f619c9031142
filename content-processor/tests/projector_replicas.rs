//! Two projector replicas as separate processes, as a two-replica Deployment starts them: one
//! writes the read model and the other waits, writing nothing. The writer is SIGKILLed under
//! load; the other replica commits within [`TAKEOVER_BOUND`], the killed one comes back as the
//! one that waits, and the read model has every submission that got a 202, each event once.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use domain::Envelope;
use support::load::Load;
use support::process::{free_port, log_dir, Component};
use support::{eventually, read_topic, Api, TestDb, TestKafka};
use uuid::Uuid;

const PARTITIONS: i32 = 6;
/// From the writer's death to the other replica's first commit, as ARCHITECTURE.md states it:
/// the lock is free once PostgreSQL sees the dead session's socket close, a waiting replica
/// tries it every 0.5 s, and then starts its Kafka consumer (seconds on a loaded machine).
const TAKEOVER_BOUND: Duration = Duration::from_secs(15);

/// A replica's projector process with its own admin port (its /metrics say what it does).
struct Replica {
    process: Component,
    port: u16,
}

impl Replica {
    /// A projector replica reading `database_url`, with its admin endpoints on a port of its own.
    fn new(name: &str, args: Vec<String>, database_url: &str, logs: &std::path::Path) -> Replica {
        let port = free_port();
        let mut args = args;
        args.extend(["--database-url".into(), database_url.into(), "--admin-listen".into(), format!("127.0.0.1:{port}")]);
        Replica { process: Component::replica("projector", name, args, logs), port }
    }

    /// The value of a metric family without labels on this replica's `/metrics`: `None` while it
    /// does not answer, `Some(None)` when it answers without that family.
    async fn metric(&self, http: &reqwest::Client, family: &str) -> Option<Option<f64>> {
        let text = http.get(format!("http://127.0.0.1:{}/metrics", self.port)).send().await.ok()?.text().await.ok()?;
        Some(text.lines().find_map(|line| line.strip_prefix(family)?.strip_prefix(' ')?.trim().parse().ok()))
    }

    /// Whether it holds the leader lock: `None` while it does not answer yet.
    async fn leads(&self, http: &reqwest::Client) -> Option<bool> {
        self.metric(http, "content_processor_projector_leader").await.map(|value| value == Some(1.0))
    }

    /// Events it applied to the read model since it started (no family yet: none); `None` while
    /// it does not answer, which says nothing about what it wrote.
    async fn rows_written(&self, http: &reqwest::Client) -> Option<f64> {
        self.metric(http, "content_processor_projector_rows_written_total").await.map(|rows| rows.unwrap_or(0.0))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_is_replaced_by_the_waiting_replica_losing_and_doubling_nothing() {
    let logs = log_dir("projector-replicas");
    let broker = TestKafka::start(1, PARTITIONS).await;
    let db = TestDb::create().await;
    let brokers = broker.kafka.bootstrap_servers().to_owned();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = vec!["--kafka-brokers".into(), brokers.clone(), "--kafka-partitions".into(), PARTITIONS.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let command_port = free_port();
    let mut command_api = Component::new("command-api", args(&["--listen", &format!("127.0.0.1:{command_port}"), "--database-url", &db.url]), &logs);
    let mut validator = Component::new("validator", args(&["--database-url", &db.url]), &logs);
    command_api.start();
    validator.start();
    let mut replicas: Vec<Replica> = (0..2).map(|i| Replica::new(&format!("projector-{i}"), args(&[]), &db.url, &logs)).collect();
    let metrics = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();

    // The first replica up writes; the second one waits.
    replicas[0].process.start();
    eventually("replica 0 leads", || async { (replicas[0].leads(&metrics).await == Some(true)).then_some(()) }).await;
    replicas[1].process.start();
    eventually("replica 1 is up and waits", || async { (replicas[1].leads(&metrics).await == Some(false)).then_some(()) }).await;

    let api = Api { base: format!("http://127.0.0.1:{command_port}"), http: support::admin_client(&db.url).await };
    support::wait_until_accepting(&api.http, &api.url("/api/submissions")).await;
    let load = Load::start(&api, 4);
    eventually("replica 0 projects the load", || async {
        (load.accepted() >= 300 && replicas[0].rows_written(&metrics).await >= Some(300.0)).then_some(())
    })
    .await;
    assert_eq!(replicas[1].rows_written(&metrics).await, Some(0.0), "the waiting replica wrote nothing");
    assert_eq!(replicas[1].leads(&metrics).await, Some(false));

    // SIGKILL the writer in the middle of the stream.
    replicas[0].process.kill().await;
    let killed = Instant::now();
    eventually("replica 1 takes over and commits", || async { (replicas[1].rows_written(&metrics).await > Some(0.0)).then_some(()) }).await;
    let takeover = killed.elapsed();
    println!("replica 1 committed its first batch {takeover:?} after replica 0 was killed (bound {TAKEOVER_BOUND:?})");
    assert!(takeover <= TAKEOVER_BOUND, "took over in {takeover:?}");
    assert_eq!(replicas[1].leads(&metrics).await, Some(true));

    // The killed replica restarts, as its Deployment would restart it, and now waits.
    replicas[0].process.start();
    eventually("replica 0 is back and waits", || async { (replicas[0].leads(&metrics).await == Some(false)).then_some(()) }).await;
    let accepted_then = load.accepted();
    eventually("the load goes on", || async { (load.accepted() >= accepted_then + 100).then_some(()) }).await;
    let (acknowledged, unavailable) = load.stop().await;
    println!("{} submissions got a 202, {unavailable} a 503", acknowledged.len());

    let pool = db.pool().await;
    support::wait_until_projected(&pool, &broker.kafka, &acknowledged).await;
    assert_eq!(replicas[0].rows_written(&metrics).await, Some(0.0), "the restarted replica waits and writes nothing");

    // Nothing lost: every 202 has its verdict, and the read model is the fold of the whole log.
    support::assert_read_model_equals_fold_of_topic(&pool, &broker.kafka).await;
    // Nothing twice: one history row per distinct event in the log, one verdict per submission.
    let log = read_topic(&broker.kafka, &broker.kafka.topic);
    let mut distinct: Vec<Uuid> = log.iter().map(|r| Envelope::decode(r.value.as_deref().unwrap()).unwrap().event_id).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let (history_rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM submission_events").fetch_one(&pool).await.unwrap();
    assert_eq!(history_rows as usize, distinct.len(), "one history row per distinct event");
    let verdicts: HashMap<Uuid, i64> = sqlx::query_as(
        "SELECT submission_id, COUNT(*) FROM submission_events \
         WHERE event_type IN ('SubmissionPassed', 'SubmissionFailed') GROUP BY submission_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    for id in &acknowledged {
        assert_eq!(verdicts.get(id), Some(&1), "{id} has exactly one verdict");
    }

    pool.close().await;
    for replica in &mut replicas {
        replica.process.kill().await;
    }
    db.drop_database().await;
    broker.stop().await;
}

/// A two-replica Deployment starts both projectors at once, and on a first deploy the database
/// is empty: both prepare the read model together. One must create the first generation and the
/// other adopt it. (One replica once dropped the generation the other was still creating,
/// taking it for a rebuild's leftover, and the other died.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_preparing_an_empty_database_at_once_agree_on_one_generation() {
    for attempt in 0..5 {
        let db = TestDb::create().await;
        let (first, second) = (db.pool().await, db.pool().await);
        let (a, b) = tokio::join!(projector::generations::prepare(&first), projector::generations::prepare(&second));
        let (a, b) = (a.unwrap_or_else(|e| panic!("attempt {attempt}: {e}")), b.unwrap_or_else(|e| panic!("attempt {attempt}: {e}")));
        assert_eq!(a, b, "attempt {attempt}: both replicas follow the same live generation");
        let states: Vec<(i64, String)> =
            sqlx::query_as("SELECT generation::bigint, state FROM public.read_models ORDER BY generation").fetch_all(&first).await.unwrap();
        assert_eq!(states, [(i64::from(a), "live".to_owned())], "attempt {attempt}: one generation, live");
        first.close().await;
        second.close().await;
        db.drop_database().await;
    }
}

/// The writer's connections to PostgreSQL go silent without closing, as across a network
/// partition, while the server ends its sessions (so the lock is free): the other replica takes
/// over, and the old writer notices within its check's bound that it no longer leads, instead
/// of believing it does for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_database_goes_silent_stops_leading_and_the_other_takes_over() {
    let logs = log_dir("projector-partition");
    let broker = TestKafka::start(1, PARTITIONS).await;
    let db = TestDb::create().await;
    let postgres = support::admin_url().trim_start_matches("postgres://postgres@").parse().expect("host:port of PostgreSQL");
    let proxy = support::CuttableProxy::start(postgres).await;
    let kafka: Vec<String> =
        vec!["--kafka-brokers".into(), broker.kafka.bootstrap_servers().into(), "--kafka-partitions".into(), PARTITIONS.to_string()];
    let command_port = free_port();
    let mut others = [
        Component::new(
            "command-api",
            [kafka.clone(), vec!["--listen".into(), format!("127.0.0.1:{command_port}"), "--database-url".into(), db.url.clone()]].concat(),
            &logs,
        ),
        Component::new("validator", [kafka.clone(), vec!["--database-url".into(), db.url.clone()]].concat(), &logs),
    ];
    others.iter_mut().for_each(Component::start);
    let mut partitioned = Replica::new("projector-0", kafka.clone(), &db.url_via(proxy.addr), &logs);
    let mut other = Replica::new("projector-1", kafka.clone(), &db.url, &logs);
    let metrics = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    partitioned.process.start();
    eventually("replica 0 leads", || async { (partitioned.leads(&metrics).await == Some(true)).then_some(()) }).await;
    other.process.start();
    eventually("replica 1 is up and waits", || async { (other.leads(&metrics).await == Some(false)).then_some(()) }).await;

    let api = Api { base: format!("http://127.0.0.1:{command_port}"), http: support::admin_client(&db.url).await };
    support::wait_until_accepting(&api.http, &api.url("/api/submissions")).await;
    let load = Load::start(&api, 2);
    eventually("replica 0 projects the load", || async { (partitioned.rows_written(&metrics).await >= Some(50.0)).then_some(()) }).await;

    proxy.black_hole();
    eventually("replica 1 takes over and commits", || async {
        (other.leads(&metrics).await == Some(true) && other.rows_written(&metrics).await > Some(0.0)).then_some(())
    })
    .await;
    eventually("replica 0 knows it no longer leads", || async { (partitioned.leads(&metrics).await == Some(false)).then_some(()) }).await;

    let (acknowledged, _) = load.stop().await;
    let pool = db.pool().await;
    support::wait_until_projected(&pool, &broker.kafka, &acknowledged).await;
    support::assert_read_model_equals_fold_of_topic(&pool, &broker.kafka).await;
    pool.close().await;
    proxy.restore();
    for component in others.iter_mut().chain([&mut partitioned.process, &mut other.process]) {
        component.kill().await;
    }
    db.drop_database().await;
    broker.stop().await;
}

/// The writer's leader-lock session is terminated (`pg_terminate_backend`, as an operator or a
/// failover would end it) while the writer has a batch open under load, and the writer is frozen
/// there (SIGSTOP, as a long GC pause or a stalled VM would hold it) until the other replica
/// holds the lock; then it goes on, its batch still open. No batch of the old writer commits
/// after the new writer's first: every commit is logged, by writer, in commit order (a trigger
/// on the positions each batch moves, which runs under the generation's writer lock), and the
/// read model is the fold of the log. (Unfrozen at once, the old writer may simply win the lock
/// back, which is no takeover to check.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_lock_session_ends_mid_batch_commits_nothing_after_the_new_writers_first() {
    let logs = log_dir("projector-fencing");
    let broker = TestKafka::start(1, PARTITIONS).await;
    let db = TestDb::create().await;
    let kafka: Vec<String> =
        vec!["--kafka-brokers".into(), broker.kafka.bootstrap_servers().into(), "--kafka-partitions".into(), PARTITIONS.to_string()];
    let command_port = free_port();
    let mut others = [
        Component::new(
            "command-api",
            [kafka.clone(), vec!["--listen".into(), format!("127.0.0.1:{command_port}"), "--database-url".into(), db.url.clone()]].concat(),
            &logs,
        ),
        Component::new("validator", [kafka.clone(), vec!["--database-url".into(), db.url.clone()]].concat(), &logs),
    ];
    others.iter_mut().for_each(Component::start);
    // Each replica's sessions carry its name, so the log says whose batch committed.
    let named = |name: &str| format!("{}?application_name={name}", db.url);
    let mut old = Replica::new("projector-0", kafka.clone(), &named("projector-0"), &logs);
    let mut new = Replica::new("projector-1", kafka.clone(), &named("projector-1"), &logs);
    let metrics = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    old.process.start();
    eventually("replica 0 leads", || async { (old.leads(&metrics).await == Some(true)).then_some(()) }).await;
    new.process.start();
    eventually("replica 1 is up and waits", || async { (new.leads(&metrics).await == Some(false)).then_some(()) }).await;
    let pool = db.pool().await;
    let generation: i32 = sqlx::query_scalar("SELECT generation FROM public.read_models WHERE state = 'live'").fetch_one(&pool).await.unwrap();
    sqlx::raw_sql(&format!(
        "CREATE TABLE public.commit_log (serial bigserial PRIMARY KEY, writer text NOT NULL);
         CREATE FUNCTION public.log_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO public.commit_log (writer) VALUES (current_setting('application_name')); RETURN NULL; END $$;
         CREATE TRIGGER log_commit AFTER INSERT OR UPDATE ON {}.projector_positions
             FOR EACH STATEMENT EXECUTE FUNCTION public.log_commit();",
        projector::generations::schema(generation),
    ))
    .execute(&pool)
    .await
    .unwrap();

    let api = Api { base: format!("http://127.0.0.1:{command_port}"), http: support::admin_client(&db.url).await };
    support::wait_until_accepting(&api.http, &api.url("/api/submissions")).await;
    let load = Load::start(&api, 4);
    eventually("replica 0 projects the load", || async { (old.rows_written(&metrics).await >= Some(100.0)).then_some(()) }).await;

    // The moment one of replica 0's batches is open, freeze replica 0 and end its lock session.
    // The leader lock by its key: a batch's transaction holds an advisory lock of its own.
    let lock_session: i32 = sqlx::query_scalar(
        "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND (l.classid::bigint << 32 | l.objid::bigint) = $1
           AND a.application_name = 'projector-0' AND a.datname = current_database()",
    )
    .bind(projector::leader::LEADER_LOCK)
    .fetch_one(&pool)
    .await
    .unwrap();
    eventually("a batch of replica 0 is open", || async {
        let open: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'projector-0' AND pid <> $1 AND xact_start IS NOT NULL)",
        )
        .bind(lock_session)
        .fetch_one(&pool)
        .await
        .unwrap();
        open.then_some(())
    })
    .await;
    old.process.pause();
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(lock_session).fetch_one(&pool).await.unwrap();
    assert!(ended);
    eventually("replica 1 takes the lock", || async { (new.leads(&metrics).await == Some(true)).then_some(()) }).await;
    old.process.resume();
    eventually("replica 1 takes over and commits", || async {
        (new.leads(&metrics).await == Some(true) && new.rows_written(&metrics).await > Some(0.0)).then_some(())
    })
    .await;
    let accepted_then = load.accepted();
    eventually("the load goes on", || async { (load.accepted() >= accepted_then + 100).then_some(()) }).await;
    let (acknowledged, _) = load.stop().await;
    support::wait_until_projected(&pool, &broker.kafka, &acknowledged).await;

    let writers: Vec<String> = sqlx::query_scalar("SELECT writer FROM public.commit_log ORDER BY serial").fetch_all(&pool).await.unwrap();
    let first_of_new = writers.iter().position(|writer| writer == "projector-1").unwrap_or_else(|| panic!("replica 1 committed: {writers:?}"));
    let old_after_new = writers[first_of_new..].iter().filter(|writer| *writer == "projector-0").count();
    println!("{} commits: {first_of_new} by replica 0, then the rest by replica 1; {old_after_new} by replica 0 after that", writers.len());
    assert!(first_of_new > 0, "replica 0 committed before its session ended");
    assert_eq!(old_after_new, 0, "no batch of the old writer commits after the new writer's first");
    assert_eq!(old.leads(&metrics).await, Some(false), "replica 0 knows it no longer leads");
    support::assert_read_model_equals_fold_of_topic(&pool, &broker.kafka).await;
    pool.close().await;
    for component in others.iter_mut().chain([&mut old.process, &mut new.process]) {
        component.kill().await;
    }
    db.drop_database().await;
    broker.stop().await;
}

/// The check each batch makes, alone: a batch begins only while the writer's session holds the
/// leader lock. Not once that session has ended, even with the lock now held by another
/// session; and the new holder's batches begin. (The takeover tests above cannot tell it apart
/// from the lock's watchdog, which stops an old writer as soon as it runs again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_begins_only_while_its_writers_session_holds_the_leader_lock() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let generation = projector::generations::prepare(&pool).await.unwrap();
    let begins = |session: i32| {
        let pool = pool.clone();
        async move { matches!(projector::begin_batch(&pool, generation, true, Some(session)).await.unwrap(), projector::Begun::Batch(_)) }
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let first = projector::leader::LeaderLock::acquire(&db.url, &shutdown).await.unwrap();
    let ended = first.session();
    assert!(begins(ended).await, "the holder's batch begins");
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(ended).fetch_one(&pool).await.unwrap();
    assert!(terminated);
    let second = projector::leader::LeaderLock::acquire(&db.url, &shutdown).await.unwrap();
    assert_ne!(second.session(), ended);
    let refused = projector::begin_batch(&pool, generation, true, Some(ended)).await.unwrap();
    assert!(matches!(refused, projector::Begun::NotLeader), "a batch of the ended session is refused");
    assert!(begins(second.session()).await, "the new holder's batch begins");
    drop((first, second));
    pool.close().await;
    db.drop_database().await;
}
