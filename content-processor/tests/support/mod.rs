//! Test harness: the real system (Apache Kafka and PostgreSQL on 127.0.0.1, over TCP) in this
//! process, on a fresh broker and a fresh database per test. Every wait here has a deadline, so
//! no test can hang.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod browser;
pub mod load;
pub mod mail;
pub mod process;
pub mod receiver;
pub mod user;

use std::time::{Duration, Instant};

use content_processor::{Broker, Config, Running};
use futures_util::StreamExt;
use kafka_kit::KafkaArgs;
use local_kafka::{Cluster, ClusterConfig, Distribution, JvmProfile};
use rdkafka::consumer::{BaseConsumer, Consumer};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::migrate::MigrateDatabase;
use tokio_util::sync::CancellationToken;

/// An admin account in `database_url` (created, or its password reset) and a new personal API
/// token of it. Admins see every submission, so tests written before accounts read as before.
pub async fn admin_token(database_url: &str) -> String {
    let account =
        content_processor::create_admin(database_url, "admin@tests.example", "admin password 1".into()).await.expect("the test admin is created");
    let pool = sqlx::PgPool::connect(database_url).await.expect("connect to the test database");
    let token = accounts::issue_token(&pool, account.id, "tests").await.expect("the test token is created");
    pool.close().await;
    token
}

/// Headers authenticating every request with `token`.
pub fn bearer(token: &str) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("a token is a valid header"));
    headers
}

/// A client authenticated as the test admin of `database_url`.
pub async fn admin_client(database_url: &str) -> reqwest::Client {
    let token = admin_token(database_url).await;
    reqwest::Client::builder().default_headers(bearer(&token)).build().expect("a client")
}

/// The seed of a test's random moments: `CRASH_SEED` when set (to rerun a failure), else a new
/// one, printed so a failure can be rerun; and the generator it seeds.
pub fn crash_seed(test: &str) -> (u64, fastrand::Rng) {
    let seed = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    println!("{test} seed: {seed} (rerun with CRASH_SEED={seed})");
    (seed, fastrand::Rng::with_seed(seed))
}

/// How long any condition in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_ADMIN_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database of its own for one test, dropped by [`TestDb::drop_database`].
pub struct TestDb {
    pub url: String,
    pub name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("cp_test_{}", uuid::Uuid::new_v4().simple());
        let url = format!("{}/{name}", admin_url());
        sqlx::Postgres::create_database(&url).await.expect("PostgreSQL must be running for integration tests");
        TestDb { url, name }
    }

    /// The URL of this database through a proxy (or another server) at `addr`.
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        format!("postgres://postgres@{addr}/{}", self.name)
    }

    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url).await.expect("connect to test database")
    }

    pub async fn drop_database(self) {
        let _ = sqlx::Postgres::force_drop_database(&self.url).await;
    }
}

/// The pinned Apache Kafka of this source tree, fetched on first use.
pub fn kafka_dist() -> &'static Distribution {
    static DIST: std::sync::OnceLock<Distribution> = std::sync::OnceLock::new();
    DIST.get_or_init(|| Distribution::of_source_tree().expect("the pinned Apache Kafka (scripts/kafka-dist)"))
}

/// A directory of its own for one test's broker data, removed by the test when it passes.
pub fn scratch_dir(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cp-test-{what}-{}", uuid::Uuid::new_v4().simple()))
}

/// Records which broker the running test talks to: printed with the test's output, and
/// collected by `scripts/test` into the summary it prints after the run.
pub fn report_broker(description: &str) {
    let test = std::thread::current().name().unwrap_or("main").replace("::", ".");
    let binary = env!("CARGO_CRATE_NAME");
    eprintln!("[broker] {binary}::{test}: {description}");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("brokers");
    let _ = std::fs::create_dir_all(&dir);
    // Appended: a test may use more than one broker.
    let line = format!("{binary}::{test}\t{description}\n");
    let file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{binary}.{test}")));
    let _ = file.and_then(|mut file| std::io::Write::write_all(&mut file, line.as_bytes()));
}

/// How a test describes the broker it runs on.
pub fn describe_cluster(cluster: &Cluster) -> String {
    let nodes = cluster.node_ids().len();
    format!("Apache Kafka {} ({nodes} node{}, {})", cluster.version(), if nodes == 1 { "" } else { "s" }, cluster.bootstrap_servers())
}

/// An Apache Kafka cluster for one test, with `kafka` set to reach it.
pub struct TestKafka {
    pub cluster: Cluster,
    pub kafka: KafkaArgs,
    dir: std::path::PathBuf,
}

impl TestKafka {
    /// `nodes` nodes on free ports, the topic to be created with `partitions` partitions.
    pub async fn start(nodes: u16, partitions: i32) -> TestKafka {
        let dir = scratch_dir("kafka");
        let mut config = ClusterConfig::new(&dir, nodes);
        config.jvm = JvmProfile::FastStart;
        config.heap_mb = 384;
        TestKafka::start_with(config, partitions).await
    }

    pub async fn start_with(config: ClusterConfig, partitions: i32) -> TestKafka {
        service_kit::telemetry::init_for_tests("warn");
        let dir = config.dir.clone();
        let cluster = Cluster::start(kafka_dist().clone(), config).await.expect("Apache Kafka starts");
        report_broker(&describe_cluster(&cluster));
        let kafka = KafkaArgs { partitions, ..KafkaArgs::for_brokers(cluster.bootstrap_servers()) };
        TestKafka { cluster, kafka, dir }
    }

    /// Stops the nodes and removes their data.
    pub async fn stop(mut self) {
        self.cluster.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The whole system running in this process.
pub struct TestSystem {
    pub running: Running,
    pub api: Api,
    pub db: TestDb,
    pub shutdown: CancellationToken,
    pub data_dir: std::path::PathBuf,
    _fail_fast: FailFast,
}

/// Ends a failing test's process soon after its panic. Unwinding kills the test's Kafka node
/// (child processes are killed on drop), then the runtime's shutdown drops the components'
/// tasks, and rust-rdkafka 0.39's consumer drop waits for a group close that never completes
/// with the broker gone: the test failed only at nextest's timeout, 300 s later. The panic is
/// reported already; the 5 s let the rest of the unwinding kill the other child processes.
/// Each test runs in a process of its own under the README's test command (nextest).
struct FailFast;

impl Drop for FailFast {
    fn drop(&mut self) {
        if std::thread::panicking() {
            std::thread::spawn(|| {
                std::thread::sleep(std::time::Duration::from_secs(5));
                std::process::exit(101);
            });
        }
    }
}

impl std::ops::Deref for TestSystem {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// HTTP access to a running system; cheap to clone into tasks.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

/// The one-process mode on free ports, with an Apache Kafka node of its own in a new directory.
pub fn test_config(db: &TestDb) -> Config {
    let mut config = Config::new(&db.url);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.publish_timeout_ms = 2_000;
    config.kafka.brokers = None;
    config.embedded_broker = false;
    config.kafka_dist = Some(kafka_dist().dir().to_owned());
    config.data_dir = scratch_dir("system");
    config.local_kafka_port = 0;
    config.local_kafka_heap_mb = 384;
    config.local_kafka_jvm = JvmProfile::FastStart;
    config
}

impl TestSystem {
    pub async fn start() -> TestSystem {
        let db = TestDb::create().await;
        let config = test_config(&db);
        TestSystem::start_with(db, config).await
    }

    /// As [`TestSystem::start`], with webhooks allowed to reach loopback, where the tests'
    /// receivers listen.
    pub async fn start_with_loopback_webhooks() -> TestSystem {
        let db = TestDb::create().await;
        let mut config = test_config(&db);
        config.allow_private_webhook_targets = true;
        TestSystem::start_with(db, config).await
    }

    pub async fn start_with(db: TestDb, config: Config) -> TestSystem {
        service_kit::telemetry::init_for_tests("warn");
        let shutdown = CancellationToken::new();
        let data_dir = config.data_dir.clone();
        let running = content_processor::start(config, shutdown.clone()).await.expect("system starts");
        match running.broker() {
            Broker::Local(cluster) => report_broker(&describe_cluster(cluster)),
            Broker::Embedded(broker) => report_broker(&format!("embedded mock broker (librdkafka MockCluster, {})", broker.bootstrap_servers())),
            // A cluster the test started itself, which reported it (TestKafka).
            Broker::External => {}
        }
        let api = Api { base: format!("http://{}", running.addr), http: admin_client(&db.url).await };
        TestSystem { running, api, db, shutdown, data_dir, _fail_fast: FailFast }
    }

    pub async fn stop(self) {
        self.stop_keeping_database().await.drop_database().await;
    }

    /// Stops everything, returning the database to look at what the stop left.
    pub async fn stop_keeping_database(self) -> TestDb {
        self.running.stop().await.expect("clean shutdown");
        let _ = std::fs::remove_dir_all(&self.data_dir);
        self.db
    }

    /// The system's own Apache Kafka node (tests stop and kill it).
    pub fn kafka_node(&mut self) -> &mut Cluster {
        self.running.local_kafka().expect("the system runs its own Apache Kafka")
    }

    /// Total records in the topic: the sum of high watermarks over its partitions.
    pub async fn records_in_topic(&self) -> i64 {
        records_in_topic(&self.running.kafka).await
    }
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs `{"content": content}`; returns the status and the JSON body.
    pub async fn submit(&self, content: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url("/api/submissions"))
            .json(&serde_json::json!({ "content": content }))
            .send()
            .await
            .expect("POST reaches the server");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(self.url(path)).send().await.expect("GET reaches the server");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    /// Polls the submission until it has a verdict; returns it as the API shows it.
    pub async fn wait_for_verdict(&self, id: &str) -> Value {
        eventually(&format!("submission {id} gets a verdict"), || async {
            let (status, body) = self.get_json(&format!("/api/submissions/{id}")).await;
            (status == StatusCode::OK && matches!(body["status"].as_str(), Some("PASSED" | "FAILED"))).then_some(body)
        })
        .await
    }
}

pub async fn records_in_topic(kafka: &KafkaArgs) -> i64 {
    partition_ends(kafka).await.iter().map(|(_, end)| end).sum()
}

/// (partition, high watermark) for every partition of the submission topic.
pub async fn partition_ends(kafka: &KafkaArgs) -> Vec<(i32, i64)> {
    let bounds = kafka.partition_bounds().await.expect("watermarks of the topic");
    bounds.into_iter().map(|(partition, (_, end))| (partition, end)).collect()
}

/// Waits until consumer group `group` has committed at least up to `ends` (partition, offset) on
/// every partition whose end is past 0 (asked as the operations dashboard asks).
pub async fn wait_until_group_has_read(kafka: &KafkaArgs, group: &str, ends: &[(i32, i64)]) {
    let inspector = kafka_kit::inspect::Inspector::new(kafka, group).expect("an inspector of the group");
    let partitions: Vec<i32> = ends.iter().map(|(partition, _)| *partition).collect();
    eventually(&format!("group {group} has read up to {ends:?}"), || async {
        let committed = inspector.committed(&kafka.topic, &partitions).await.ok()?;
        ends.iter().all(|(partition, end)| *end == 0 || committed.get(partition).copied().flatten().is_some_and(|at| at >= *end)).then_some(())
    })
    .await
}

/// Waits until the command API at `url` accepts a submission.
pub async fn wait_until_accepting(http: &reqwest::Client, url: &str) {
    eventually("the command API accepts", || async {
        let sent = http.post(url).json(&serde_json::json!({"content": "warm-up 0000"})).send().await;
        sent.ok().filter(|r| r.status() == StatusCode::ACCEPTED).map(|_| ())
    })
    .await;
}

/// Waits until every one of `ids` has its verdict and the projector has read the whole topic
/// (so the fold of the log can be compared with the read model).
pub async fn wait_until_projected(pool: &sqlx::PgPool, kafka: &KafkaArgs, ids: &[uuid::Uuid]) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (judged,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM submissions WHERE id = ANY($1) AND status IN ('PASSED', 'FAILED')")
            .bind(ids)
            .fetch_one(pool)
            .await
            .unwrap();
        let ends = records_in_topic(kafka).await;
        let (read,): (Option<i64>,) = sqlx::query_as("SELECT SUM(next_offset)::bigint FROM projector_positions").fetch_one(pool).await.unwrap();
        if judged == ids.len() as i64 && read == Some(ends) {
            return;
        }
        assert!(Instant::now() < deadline, "projected in time: {judged}/{} judged, {read:?}/{ends} records projected", ids.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Retries `probe` until it yields a value; fails the test at [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One server-sent event as a client sees it.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: Value,
}

impl SseEvent {
    /// The `seq` part of the `generation-seq` id.
    pub fn seq(&self) -> i64 {
        self.id.split_once('-').and_then(|(_, seq)| seq.parse().ok()).expect("a generation-seq id")
    }
}

/// Reads `count` SSE events from `url` (sending `last_event_id` when given).
pub async fn read_sse(http: &reqwest::Client, url: &str, last_event_id: Option<&str>, count: usize) -> Vec<SseEvent> {
    read_sse_until(http, url, last_event_id, |events| events.len() >= count).await
}

/// Reads SSE events from one connection to `url` until `done` says so.
pub async fn read_sse_until(http: &reqwest::Client, url: &str, last_event_id: Option<&str>, done: impl Fn(&[SseEvent]) -> bool) -> Vec<SseEvent> {
    SseConnection::open(http, url, last_event_id).await.read_until(done).await
}

/// An open SSE connection. Once open, the server follows every change committed after it
/// answered, so a test can open one, then cause changes, then read them, without sleeping.
pub struct SseConnection {
    events: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<eventsource_stream::Event, String>> + Send>>,
}

impl SseConnection {
    pub async fn open(http: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> SseConnection {
        let mut request = http.get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("SSE request");
        assert_eq!(response.status(), StatusCode::OK);
        let events = eventsource_stream::EventStream::new(response.bytes_stream()).map(|event| event.map_err(|e| e.to_string()));
        SseConnection { events: Box::pin(events) }
    }

    pub async fn read(self, count: usize) -> Vec<SseEvent> {
        self.read_until(|events| events.len() >= count).await
    }

    pub async fn read_until(mut self, done: impl Fn(&[SseEvent]) -> bool) -> Vec<SseEvent> {
        self.next_events(done).await
    }

    /// Reads events until `done` says so, leaving the connection open for more.
    pub async fn next_events(&mut self, done: impl Fn(&[SseEvent]) -> bool) -> Vec<SseEvent> {
        let mut received = Vec::new();
        let read = async {
            while !done(&received) {
                let event = self.events.next().await.expect("stream stays open").expect("well-formed SSE");
                received.push(SseEvent { event: event.event, id: event.id, data: serde_json::from_str(&event.data).expect("JSON data") });
            }
        };
        tokio::time::timeout(DEADLINE, read).await.expect("SSE events arrive in time");
        received
    }
}

/// A submission row as the read model holds it, comparable with a fold of the topic.
#[derive(Debug, PartialEq, sqlx::FromRow)]
pub struct Row {
    /// None once the owner was erased.
    pub content: Option<String>,
    pub status: String,
    pub reasons: Vec<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub processing_started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub processed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Row {
    /// The row the read model should hold for `s`, whose text is `content`.
    pub fn of(s: &domain::Submission, content: Option<String>) -> Row {
        Row {
            content,
            status: s.status.as_str().to_owned(),
            reasons: s.reasons.iter().map(|r| r.as_str().to_owned()).collect(),
            created_at: s.created_at,
            processing_started_at: s.processing_started_at,
            processed_at: s.processed_at,
        }
    }
}

/// Every submission in the live read model.
pub async fn read_model(pool: &sqlx::PgPool) -> std::collections::HashMap<uuid::Uuid, Row> {
    #[derive(sqlx::FromRow)]
    struct Keyed {
        id: uuid::Uuid,
        #[sqlx(flatten)]
        row: Row,
    }
    let rows: Vec<Keyed> = sqlx::query_as("SELECT id, content, status, reasons, created_at, processing_started_at, processed_at FROM submissions")
        .fetch_all(pool)
        .await
        .unwrap();
    rows.into_iter().map(|k| (k.id, k.row)).collect()
}

/// Folds every event of the topic from scratch, as a new read model would.
pub fn fold_topic(kafka: &KafkaArgs) -> std::collections::HashMap<uuid::Uuid, domain::Submission> {
    let mut states: std::collections::HashMap<uuid::Uuid, Option<domain::Submission>> = Default::default();
    for record in read_topic(kafka, &kafka.topic) {
        let envelope = domain::Envelope::decode(record.value.as_deref().unwrap()).expect("only valid events in this log");
        if let domain::Event::AccountErased { .. } = envelope.event {
            continue;
        }
        let state = states.entry(envelope.submission_id).or_default();
        domain::fold::apply(state, &envelope).unwrap_or_else(|e| panic!("the log holds an impossible transition: {e}"));
    }
    states.into_iter().filter_map(|(id, s)| Some((id, s?))).collect()
}

/// The text of each of `created` (submission, owner, content as its event carries it): plain,
/// or sealed and opened with the owner's data key in `pool`, wrapped by the development
/// key-encryption key the tests run with; `None` once the owner is erased.
pub async fn texts(pool: &sqlx::PgPool, created: &[(uuid::Uuid, Option<uuid::Uuid>, &domain::Content)]) -> Vec<Option<String>> {
    let keyring = keyring::Keyring::from_args(&keyring::KeyringArgs::default()).unwrap();
    let owners: Vec<uuid::Uuid> = created.iter().filter_map(|(_, owner, _)| *owner).collect();
    let keys = keyring::store::stored_keys(pool, &keyring, &owners).await.unwrap();
    created
        .iter()
        .map(|(submission, owner, content)| keyring::store::readable_text(content, owner.and_then(|owner| keys.get(&owner)), *submission).unwrap())
        .collect()
}

/// The ids of the submissions created in the log, by their text (opened with the keys in
/// `database_url`).
pub async fn submissions_in_log(kafka: &KafkaArgs, database_url: &str) -> std::collections::HashMap<String, std::collections::HashSet<uuid::Uuid>> {
    let created: Vec<(uuid::Uuid, Option<uuid::Uuid>, domain::Content)> = read_topic(kafka, &kafka.topic)
        .into_iter()
        .filter_map(|record| domain::Envelope::decode(record.value.as_deref()?).ok())
        .filter_map(|envelope| match envelope.event {
            domain::Event::SubmissionCreated { content, owner_id, .. } => Some((envelope.submission_id, owner_id, content)),
            _ => None,
        })
        .collect();
    let borrowed: Vec<_> = created.iter().map(|(id, owner, content)| (*id, *owner, content)).collect();
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    let texts = texts(&pool, &borrowed).await;
    pool.close().await;
    let mut found: std::collections::HashMap<String, std::collections::HashSet<uuid::Uuid>> = Default::default();
    for ((id, _, _), text) in created.iter().zip(texts) {
        found.entry(text.unwrap_or_default()).or_default().insert(*id);
    }
    found
}

/// Asserts that the live read model is exactly the fold of the whole topic.
pub async fn assert_read_model_equals_fold_of_topic(pool: &sqlx::PgPool, kafka: &KafkaArgs) {
    let rows = read_model(pool).await;
    let folded = fold_topic(kafka);
    assert_eq!(rows.len(), folded.len(), "same submissions in the read model and the log");
    let created: Vec<_> = folded.values().map(|s| (s.id, s.owner_id, &s.content)).collect();
    let texts = texts(pool, &created).await;
    for (submission, text) in folded.values().zip(texts) {
        assert_eq!(rows.get(&submission.id), Some(&Row::of(submission, text)), "{}", submission.id);
    }
}

/// A record as read back from a topic.
#[derive(Debug)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: std::collections::HashMap<String, String>,
}

/// Every record of `topic` from the beginning to its current end, as consumers read it
/// (committed transactions only).
pub fn read_topic(kafka: &KafkaArgs, topic: &str) -> Vec<ReadRecord> {
    read_topic_as(kafka, topic, "read_committed")
}

/// Every record of `topic`, read at `isolation` (`read_uncommitted` shows records of aborted
/// and open transactions too). Reading stops when every partition reported its end: offsets
/// alone cannot tell, since transaction markers take offsets too.
pub fn read_topic_as(kafka: &KafkaArgs, topic: &str, isolation: &str) -> Vec<ReadRecord> {
    use rdkafka::error::KafkaError;
    use rdkafka::message::{Headers, Message};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer =
        kafka.consumer_config("reader").set("enable.partition.eof", "true").set("isolation.level", isolation).create().unwrap();
    let mut assignment = TopicPartitionList::new();
    let partitions = kafka_kit::topic_partition_count(consumer.client(), topic, Duration::from_secs(10)).expect("the topic's partitions");
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut records = Vec::new();
    let mut at_end = std::collections::HashSet::new();
    while at_end.len() < partitions as usize {
        assert!(Instant::now() < deadline, "topic {topic} read in time");
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
                continue;
            }
            Some(message) => message.unwrap(),
        };
        let headers = message
            .headers()
            .map(|hs| hs.iter().map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())).collect())
            .unwrap_or_default();
        records.push(ReadRecord {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    records
}

/// A TCP proxy the test can cut: every open connection is dropped and new ones are refused
/// until it is restored. Stands between a component and PostgreSQL to simulate an outage
/// without stopping the server other tests share. Or it can black-hole: the server's side of
/// every connection is closed (the server ends those sessions), while the client's side stays
/// open and hears nothing, as across a network partition; new connections are held silent too.
pub struct CuttableProxy {
    pub addr: std::net::SocketAddr,
    state: tokio::sync::watch::Sender<ProxyState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyState {
    Open,
    Cut,
    BlackHole,
}

impl CuttableProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (state, watch) = tokio::sync::watch::channel(ProxyState::Open);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut state = watch.clone();
                let now = *state.borrow();
                match now {
                    ProxyState::Cut => continue, // dropped: connection refused in effect
                    ProxyState::BlackHole => {
                        // Accepted, then silent until the proxy is restored or cut.
                        tokio::spawn(async move {
                            let _ = state.wait_for(|s| *s != ProxyState::BlackHole).await;
                            drop(client);
                        });
                        continue;
                    }
                    ProxyState::Open => {}
                }
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    let changed = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                        changed = state.wait_for(|s| *s != ProxyState::Open) => changed.map(|s| *s),
                    };
                    drop(server);
                    if matches!(changed, Ok(ProxyState::BlackHole)) {
                        let _ = state.wait_for(|s| *s != ProxyState::BlackHole).await;
                    }
                    drop(client);
                });
            }
        });
        CuttableProxy { addr, state }
    }

    pub fn cut(&self) {
        self.state.send_replace(ProxyState::Cut);
    }

    /// Closes the server's side of every connection and leaves the client's silent: see above.
    pub fn black_hole(&self) {
        self.state.send_replace(ProxyState::BlackHole);
    }

    pub fn restore(&self) {
        self.state.send_replace(ProxyState::Open);
    }
}
