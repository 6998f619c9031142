//! The one-command run as a user runs it: the `content-processor` binary with no subcommand,
//! which starts Apache Kafka itself with its log in a data directory.
//!
//! Stopped with SIGTERM and started again, it still has every submission with its verdict, its
//! read model is the same generation (nothing was rebuilt from an empty log), and a live stream
//! resumes where it was. SIGKILLed under load, the broker dies with it, and after a restart
//! every submission that got a 202 is there with its verdict.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use support::process::{free_port, log_dir};
use support::{eventually, read_sse_until, Api, TestDb};
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_content-processor");

/// `content-processor` in one-command mode, started and stopped like a user would.
struct OneCommandRun {
    args: Vec<String>,
    data_dir: PathBuf,
    logs: PathBuf,
    child: Option<Child>,
    api: Api,
}

impl OneCommandRun {
    async fn new(db: &TestDb, logs: &Path) -> OneCommandRun {
        let port = free_port();
        let data_dir = support::scratch_dir("durable");
        let args = vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--database-url".into(),
            db.url.clone(),
            "--kafka-dist".into(),
            support::kafka_dist().dir().display().to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--local-kafka-port".into(),
            local_kafka::free_port_block(2).unwrap().to_string(),
            "--local-kafka-heap-mb".into(),
            "384".into(),
        ];
        let api = Api { base: format!("http://127.0.0.1:{port}"), http: support::admin_client(&db.url).await };
        OneCommandRun { args, data_dir, logs: logs.to_owned(), child: None, api }
    }

    /// A run on a new database and data directory, started, with its one broker checked.
    async fn first_start(test: &str) -> (TestDb, OneCommandRun) {
        let db = TestDb::create().await;
        let mut run = OneCommandRun::new(&db, &log_dir(test)).await;
        run.start().await;
        support::report_broker(&format!("Apache Kafka {} (1 node, started by content-processor)", support::kafka_dist().version()));
        assert_eq!(run.brokers().len(), 1, "the run started one broker");
        (db, run)
    }

    async fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.logs.join("run.log")).unwrap();
        let child = Command::new(BINARY)
            .args(&self.args)
            .env("RUST_LOG", "info,rdkafka=warn,sqlx=warn")
            .env_remove("KAFKA_BROKERS")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("content-processor starts");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + support::DEADLINE;
        loop {
            if let Ok(response) = self.api.http.get(self.api.url("/readyz")).send().await {
                if response.status() == StatusCode::OK {
                    return;
                }
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(self.logs.join("run.log")).unwrap_or_default();
                // An error's backtrace would fill the tail and hide the error itself.
                let log = log.rsplit_once("Stack backtrace:").map_or(log.as_str(), |(before, _)| before);
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                panic!("the run is not ready (exit: {exited:?}); the end of its log:\n{tail}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The Java processes running a broker on this run's data directory.
    fn brokers(&self) -> Vec<u32> {
        let needle = self.data_dir.display().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                cmdline.contains("kafka.Kafka") && cmdline.contains(&needle)
            })
            .collect()
    }

    async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("stops within a minute of SIGTERM").unwrap()
    }

    async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.unwrap();
    }
}

async fn wait_until_no_broker(run: &OneCommandRun) {
    eventually("the broker is gone with the run", || async { run.brokers().is_empty().then_some(()) }).await;
}

async fn live_generation(db: &TestDb) -> i64 {
    let pool = db.pool().await;
    let (generation,): (i64,) = sqlx::query_as("SELECT generation::bigint FROM read_models WHERE state = 'live'").fetch_one(&pool).await.unwrap();
    pool.close().await;
    generation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_run_starts_again_with_everything_and_live_streams_resume() {
    let (db, mut run) = OneCommandRun::first_start("durable-stop").await;

    let mut verdicts = Vec::new();
    for content in ["first of three 1", "second", "third of three 3"] {
        let (status, accepted) = run.api.submit(content).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        verdicts.push(run.api.wait_for_verdict(accepted["id"].as_str().unwrap()).await);
    }
    // A live stream, as an open browser holds it: remember the last event it saw.
    let seen = read_sse_until(&run.api.http, &run.api.url("/api/stream"), Some("1-0"), |events| events.len() >= 9).await;
    let last_seen = seen.last().unwrap().id.clone();
    let generation = live_generation(&db).await;

    let status = run.terminate().await;
    assert!(status.success(), "exit status {status}");
    wait_until_no_broker(&run).await;

    run.start().await;
    for before in &verdicts {
        let (status, after) = run.api.get_json(&format!("/api/submissions/{}", before["id"].as_str().unwrap())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&after, before, "the same submission, verdict and times");
    }
    assert_eq!(live_generation(&db).await, generation, "the read model was kept, not rebuilt");

    // The stream resumes after the last event seen: the new submission's events come next,
    // with no reset and nothing repeated.
    let (_, accepted) = run.api.submit("after the restart 4").await;
    let resumed = read_sse_until(&run.api.http, &run.api.url("/api/stream"), Some(&last_seen), |events| events.len() >= 3).await;
    assert!(resumed.iter().all(|event| event.event == "status"), "no reset: {resumed:?}");
    assert!(resumed.iter().all(|event| event.data["submission_id"] == accepted["id"]), "{resumed:?}");
    assert_eq!(resumed[0].seq(), seen.last().unwrap().seq() + 1);

    assert!(run.terminate().await.success());
    wait_until_no_broker(&run).await;
    db.drop_database().await;
    let _ = std::fs::remove_dir_all(&run.data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_run_and_its_broker_loses_nothing_that_got_a_202() {
    let (db, mut run) = OneCommandRun::first_start("durable-kill").await;
    let broker = run.brokers();

    // Clients keep submitting while the run is SIGKILLed; what got a 202 must survive.
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for worker in 0..4 {
        let (api, accepted, stop) = (run.api.clone(), accepted.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let sent = api
                    .http
                    .post(api.url("/api/submissions"))
                    .json(&serde_json::json!({"content": format!("worker {worker} item {i}")}))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == StatusCode::ACCEPTED => {
                        let body: serde_json::Value = response.json().await.unwrap();
                        accepted.lock().unwrap().push(body["id"].as_str().unwrap().to_owned());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await, // the run is down
                }
            }
        }));
    }
    eventually("a few hundred submissions are accepted", || async { (accepted.lock().unwrap().len() >= 300).then_some(()) }).await;
    run.kill().await;
    wait_until_no_broker(&run).await;
    println!("the run was SIGKILLed; its broker {broker:?} died with it");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    run.start().await;
    let accepted = accepted.lock().unwrap().clone();
    println!("{} submissions got a 202 before the kill", accepted.len());
    for id in &accepted {
        let verdict = run.api.wait_for_verdict(id).await;
        assert!(matches!(verdict["status"].as_str(), Some("PASSED" | "FAILED")), "{verdict}");
    }
    assert!(run.terminate().await.success());
    wait_until_no_broker(&run).await;
    db.drop_database().await;
    let _ = std::fs::remove_dir_all(&run.data_dir);
}
