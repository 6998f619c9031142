//! One Kafka node: its directory, its storage format, its process.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use tokio::process::{Child, Command};

use crate::config::{server_properties, ClusterConfig, NodeAddress};
use crate::distribution::{java, Distribution};
use crate::Error;

/// The broker's logging set-up: everything to `logs/server.log` in the node's directory.
const LOG_CONFIG: &str = include_str!("../log4j2.properties");

pub(crate) struct Node {
    pub address: NodeAddress,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn new(address: NodeAddress, cluster_dir: &Path) -> Node {
        Node { address, dir: cluster_dir.join(format!("node-{}", address.id)), child: None }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The broker's own log, where it says why it stopped.
    pub fn server_log(&self) -> PathBuf {
        self.logs_dir().join("server.log")
    }

    /// The cluster id this node's storage was formatted with, if it was.
    pub fn formatted_cluster_id(&self) -> Option<String> {
        let meta = std::fs::read_to_string(self.data_dir().join("meta.properties")).ok()?;
        meta.lines().find_map(|line| line.strip_prefix("cluster.id=")).map(str::to_owned)
    }

    /// Writes this start's configuration and formats the storage unless it already holds data.
    pub async fn prepare(
        &self,
        dist: &Distribution,
        config: &ClusterConfig,
        nodes: &[NodeAddress],
        cluster_id: &str,
        broker_password: &str,
    ) -> Result<(), Error> {
        for dir in [self.data_dir(), self.logs_dir()] {
            tokio::fs::create_dir_all(&dir).await.map_err(Error::io(format!("cannot create {}", dir.display())))?;
        }
        let properties = server_properties(config, nodes, &self.address, &self.data_dir(), broker_password);
        write(&self.dir.join("server.properties"), &properties).await?;
        write(&self.dir.join("log4j2.properties"), LOG_CONFIG).await?;
        if self.formatted_cluster_id().is_some() {
            return Ok(());
        }
        let output = self
            .java(dist, config)
            .args(["kafka.tools.StorageTool", "format", "--ignore-formatted", "--cluster-id", cluster_id, "--config"])
            .arg(self.dir.join("server.properties"))
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(Error::io("cannot run java (is a Java 17+ runtime installed?)"))?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(Error::Format { node: self.address.id, status: output.status, output: text });
        }
        Ok(())
    }

    /// `java` with the JVM flags, class path and logging of this node.
    fn java(&self, dist: &Distribution, config: &ClusterConfig) -> Command {
        let mut command = Command::new(java());
        command
            .args(config.jvm.flags(config.heap_mb))
            .arg("-cp")
            .arg(dist.class_path())
            .arg(format!("-Dlog4j2.configurationFile={}", self.dir.join("log4j2.properties").display()))
            .arg(format!("-Dkafka.logs.dir={}", self.logs_dir().display()));
        command
    }

    /// Starts the node's process (it is not ready yet: see [`Node::wait_ready`]).
    pub fn spawn(&mut self, dist: &Distribution, config: &ClusterConfig) -> Result<(), Error> {
        assert!(self.child.is_none(), "node {} is running already", self.address.id);
        let out_path = self.logs_dir().join("stdout.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .map_err(Error::io(format!("cannot open {}", out_path.display())))?;
        let err = out.try_clone().map_err(Error::io("cannot share the stdout log"))?;
        let mut command = self.java(dist, config);
        command
            .arg("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Not in the terminal's process group: Ctrl-C goes to the owner, which stops the
            // broker after the clients that still need it.
            .process_group(0)
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let child = command.spawn().map_err(Error::io("cannot run java (is a Java 17+ runtime installed?)"))?;
        tracing::debug!(node = self.address.id, pid = child.id(), "started a Kafka node");
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the node serves metadata that lists itself: it has joined the quorum and
    /// is unfenced, so clients can use it. `client` holds the librdkafka settings that reach it
    /// (credentials, when its listener asks for them).
    pub async fn wait_ready(&mut self, client: &ClientConfig, timeout: Duration) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(self.exited(status));
                }
            }
            if self.lists_itself(client.clone()).await {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(Error::NotReady { node: self.address.id, waited: timeout, log: self.server_log() });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn lists_itself(&self, mut config: ClientConfig) -> bool {
        let id = i32::from(self.address.id);
        // Refused connections while it starts are expected: not worth a log line each.
        config.set("bootstrap.servers", self.address.bootstrap()).set("log_level", "0");
        tokio::task::spawn_blocking(move || {
            let Ok(consumer) = config.create::<BaseConsumer>() else { return false };
            consumer.fetch_metadata(None, Duration::from_secs(1)).is_ok_and(|metadata| metadata.brokers().iter().any(|broker| broker.id() == id))
        })
        .await
        .unwrap_or(false)
    }

    fn exited(&self, status: ExitStatus) -> Error {
        let server_log = std::fs::read_to_string(self.server_log()).unwrap_or_default();
        let stdout = std::fs::read_to_string(self.logs_dir().join("stdout.log")).unwrap_or_default();
        let tail = format!("{}{}", why_it_stopped(&server_log), last_lines(&stdout, 10));
        Error::Exited { node: self.address.id, status, log: self.server_log(), tail }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref()?.id()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: the node gets no chance to flush or hand over leadership.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM (Kafka's controlled shutdown), then SIGKILL if it is still running after `grace`.
    pub async fn terminate(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else { return };
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on our own child's pid, which stays reserved until we reap it.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(_) => tracing::debug!(node = self.address.id, "Kafka node stopped"),
            Err(_) => {
                tracing::warn!(node = self.address.id, ?grace, "Kafka node ignored SIGTERM; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

/// Asks the kernel to SIGKILL the child when the thread that forked it ends (the owning process
/// dying, even by SIGKILL), so no broker outlives the run that started it. Public for the other
/// children such a run starts (the deployed topology's services and proxy), which must not
/// outlive it either.
pub fn die_with_parent(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

async fn write(path: &Path, text: &str) -> Result<(), Error> {
    tokio::fs::write(path, text).await.map_err(Error::io(format!("cannot write {}", path.display())))
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].iter().map(|line| format!("{line}\n")).collect()
}

/// The broker's ERROR lines, each with the exception line after it: a fatal start-up error is
/// followed by a long stack trace and the shutdown's log, which a plain tail would show instead.
fn why_it_stopped(server_log: &str) -> String {
    let lines: Vec<&str> = server_log.lines().collect();
    let mut reasons = String::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("] ERROR ") || line.contains("] FATAL ") {
            reasons.push_str(line);
            reasons.push('\n');
            if let Some(next) = lines.get(i + 1).filter(|next| !next.starts_with('[')) {
                reasons.push_str(next);
                reasons.push('\n');
            }
        }
    }
    if reasons.is_empty() {
        last_lines(server_log, 20)
    } else {
        reasons
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_a_node_stopped_is_its_error_lines_with_their_exceptions() {
        let log = "[t] INFO starting (x)\n[t] ERROR [BrokerServer id=1] Fatal error during broker startup. (kafka.server.BrokerServer)\n\
                   org.apache.kafka.common.KafkaException: Socket server failed to bind to 127.0.0.1:9092: Address already in use.\n\
                   \tat org.apache.kafka.X(X.java:1)\n[t] INFO shutting down (y)\n";
        let why = why_it_stopped(log);
        assert!(why.contains("Fatal error during broker startup") && why.contains("Address already in use"), "{why}");
        assert!(!why.contains("shutting down") && !why.contains("X.java"), "{why}");
        assert_eq!(why_it_stopped("[t] INFO a\n[t] INFO b\n"), "[t] INFO a\n[t] INFO b\n");
    }
}
