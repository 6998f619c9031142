//! Components as separate OS processes of the `content-processor` binary (one role each),
//! against a broker process that outlives them. Every child is killed when dropped, so a
//! failing test leaves nothing running.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_content-processor");

/// A directory for the children's logs, kept after the test so a failure can be read.
pub fn log_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("content-processor-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port that was free a moment ago, for a child to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The embedded broker in a process of its own.
pub struct BrokerProcess {
    pub bootstrap_servers: String,
    _child: Child,
}

impl BrokerProcess {
    pub async fn start(partitions: i32, logs: &std::path::Path) -> BrokerProcess {
        let mut child = Command::new(BINARY)
            .args(["broker", "--kafka-partitions", &partitions.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(logs.join("broker.err")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("broker process starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("broker announces itself")
            .unwrap()
            .expect("a line");
        let bootstrap_servers = first.strip_prefix("bootstrap.servers=").expect("bootstrap line").to_owned();
        // Keep draining its output so the pipe never fills and blocks it.
        let mut log = tokio::fs::File::create(logs.join("broker.out")).await.unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = log.write_all(format!("{line}\n").as_bytes()).await;
            }
        });
        BrokerProcess { bootstrap_servers, _child: child }
    }
}

/// One role of the system as a restartable child process.
pub struct Component {
    pub role: &'static str,
    args: Vec<String>,
    logs: PathBuf,
    child: Option<Child>,
    pub starts: u32,
}

impl Component {
    pub fn new(role: &'static str, args: Vec<String>, logs: &std::path::Path) -> Component {
        Component { role, args, logs: logs.to_owned(), child: None, starts: 0 }
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.role);
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{}.log", self.role)))
            .unwrap();
        let child = Command::new(BINARY)
            .arg(self.role)
            .args(&self.args)
            .env("RUST_LOG", "info,rdkafka=warn,sqlx=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", self.role));
        self.child = Some(child);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: no chance to finish anything.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, then waits for the process to exit by itself.
    pub async fn terminate(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("has a pid").to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "SIGTERM sent to {}", self.role);
        match tokio::time::timeout(within, child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("{} did not exit within {within:?} of SIGTERM", self.role),
        }
    }
}
