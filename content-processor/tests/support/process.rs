//! Components as separate OS processes of the `content-processor` binary (one role each),
//! against a broker that outlives them. Every child is killed when dropped, so a
//! failing test leaves nothing running.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::{Child, Command};

pub const BINARY: &str = env!("CARGO_BIN_EXE_content-processor");

/// A directory for the children's logs, kept after the test so a failure can be read.
pub fn log_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("content-processor-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port that was free a moment ago, for a child to listen on. It lies below the ephemeral
/// range: a child may bind it seconds later (after starting a broker), and in between any
/// outgoing connection of a parallel test could take an ephemeral port.
pub fn free_port() -> u16 {
    local_kafka::free_port_block(1).expect("a free port below the ephemeral range")
}

/// One role of the system as a restartable child process.
pub struct Component {
    pub role: &'static str,
    /// Its log is `{name}.log` in the log directory: the role, unless replicas need telling apart.
    name: String,
    args: Vec<String>,
    logs: PathBuf,
    child: Option<Child>,
    env: Vec<(String, String)>,
    pub starts: u32,
}

impl Component {
    pub fn new(role: &'static str, args: Vec<String>, logs: &std::path::Path) -> Component {
        Component { role, name: role.to_owned(), args, logs: logs.to_owned(), child: None, env: Vec::new(), starts: 0 }
    }

    /// A replica of `role`, logging to `{name}.log`.
    pub fn replica(role: &'static str, name: &str, args: Vec<String>, logs: &std::path::Path) -> Component {
        Component { name: name.to_owned(), ..Component::new(role, args, logs) }
    }

    /// Sets an environment variable for the process from its next start (`RUST_LOG` included).
    pub fn with_env(mut self, key: &str, value: &str) -> Component {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        self.starts += 1;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.logs.join(format!("{}.log", self.name))).unwrap();
        let child = Command::new(BINARY)
            .arg(self.role)
            .args(&self.args)
            .env("RUST_LOG", "info,rdkafka=warn,sqlx=warn")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", self.name));
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

    /// SIGSTOP: the process is frozen where it is, its open connections and transactions with it.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`Component::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().and_then(Child::id).expect("running").to_string();
        let sent = std::process::Command::new("kill").args([format!("-{name}"), pid]).status().unwrap();
        assert!(sent.success(), "SIG{name} sent to {}", self.name);
    }

    /// SIGTERM, then waits for the process to exit by itself.
    pub async fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().expect("running");
        match tokio::time::timeout(within, child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("{} did not exit within {within:?} of SIGTERM", self.name),
        }
    }
}
