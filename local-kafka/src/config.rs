//! What a local cluster looks like, and the `server.properties` each node gets.

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// How the broker's JVM is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JvmProfile {
    /// Fully optimising JIT, parallel GC. For runs that last and for measurements. Kafka's own
    /// start script picks G1, whose concurrent work cost the broker more CPU on this machine of
    /// two cores, and the requests' p99 did not move without it (BENCHMARKS.md, "The broker
    /// sized to the machine").
    Server,
    /// Starts in about half the time (C1 JIT only, serial GC), runs slower. For tests, which
    /// start a broker each and move little data.
    FastStart,
}

impl JvmProfile {
    pub(crate) fn flags(self, heap_mb: u32) -> Vec<String> {
        let mut flags = vec![format!("-Xms{heap_mb}m"), format!("-Xmx{heap_mb}m"), "-Djava.awt.headless=true".into()];
        match self {
            JvmProfile::Server => flags.push("-XX:+UseParallelGC".into()),
            JvmProfile::FastStart => flags.extend(["-XX:TieredStopAtLevel=1".into(), "-XX:+UseSerialGC".into()]),
        }
        flags
    }
}

/// A KRaft cluster on 127.0.0.1 whose every node is both broker and controller.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Node N keeps its log in `DIR/node-N/data` and writes its own logs to `DIR/node-N/logs`.
    /// A directory that already holds a node's data is reused as it is: that is what makes a
    /// local run durable.
    pub dir: PathBuf,
    /// How many nodes (a controller quorum needs a majority of them up).
    pub nodes: u16,
    /// The client port of node 1; node N listens on `base + 2(N-1)` and its controller on the
    /// port after. `None` picks free ports (fine for a cluster whose data is thrown away; a
    /// durable one needs the same ports every time, since they are in the quorum's membership).
    pub base_port: Option<u16>,
    /// Heap of each node's JVM.
    pub heap_mb: u32,
    pub jvm: JvmProfile,
    /// When not empty, clients must authenticate with SASL/PLAIN as one of these
    /// (username, password) pairs; otherwise the client listener is PLAINTEXT.
    pub sasl_users: Vec<(String, String)>,
    /// More `server.properties` entries; they override the defaults above them.
    pub properties: Vec<(String, String)>,
}

impl ClusterConfig {
    /// `nodes` nodes under `dir` on free ports, with a 512 MiB heap each and server JVM flags.
    pub fn new(dir: impl Into<PathBuf>, nodes: u16) -> ClusterConfig {
        ClusterConfig {
            dir: dir.into(),
            nodes,
            base_port: None,
            heap_mb: 512,
            jvm: JvmProfile::Server,
            sasl_users: Vec::new(),
            properties: Vec::new(),
        }
    }

    /// The replication of Kafka's internal topics (consumer offsets, transactions): every node,
    /// up to three.
    fn internal_replication(&self) -> (u16, u16) {
        let replicas = self.nodes.clamp(1, 3);
        let min_in_sync = if replicas >= 3 { 2 } else { 1 };
        (replicas, min_in_sync)
    }

    fn client_listener(&self) -> &'static str {
        if self.sasl_users.is_empty() {
            "PLAINTEXT"
        } else {
            "SASL_PLAINTEXT"
        }
    }
}

/// Where one node listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeAddress {
    pub id: u16,
    pub client_port: u16,
    pub controller_port: u16,
}

impl NodeAddress {
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

/// A node's network and request-handler threads on a machine of `cores` cores: Kafka's
/// defaults (3 and 8) are for a server of its own, and on a machine of two cores shared with
/// the services more threads than cores only take turns, each hand-off a wake-up.
fn request_threads(cores: usize) -> (usize, usize) {
    ((cores / 2).clamp(1, 3), cores.clamp(2, 8))
}

/// The `server.properties` of node `me`. `broker_password` is what the nodes use among
/// themselves when clients must authenticate.
pub(crate) fn server_properties(config: &ClusterConfig, nodes: &[NodeAddress], me: &NodeAddress, data_dir: &Path, broker_password: &str) -> String {
    let voters: Vec<String> = nodes.iter().map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port)).collect();
    let listener = config.client_listener();
    let (replicas, min_in_sync) = config.internal_replication();
    let (network_threads, io_threads) = request_threads(std::thread::available_parallelism().map_or(1, usize::from));
    let mut entries: Vec<(String, String)> = vec![
        ("process.roles".into(), "broker,controller".into()),
        ("node.id".into(), me.id.to_string()),
        ("controller.quorum.voters".into(), voters.join(",")),
        ("listeners".into(), format!("{listener}://127.0.0.1:{},CONTROLLER://127.0.0.1:{}", me.client_port, me.controller_port)),
        ("advertised.listeners".into(), format!("{listener}://127.0.0.1:{}", me.client_port)),
        ("listener.security.protocol.map".into(), format!("{listener}:{listener},CONTROLLER:PLAINTEXT")),
        ("controller.listener.names".into(), "CONTROLLER".into()),
        ("inter.broker.listener.name".into(), listener.into()),
        ("log.dirs".into(), data_dir.display().to_string()),
        // Topics are created by the services, with the settings they are configured with.
        ("auto.create.topics.enable".into(), "false".into()),
        ("group.initial.rebalance.delay.ms".into(), "0".into()),
        ("offsets.topic.replication.factor".into(), replicas.to_string()),
        ("transaction.state.log.replication.factor".into(), replicas.to_string()),
        ("transaction.state.log.min.isr".into(), min_in_sync.to_string()),
        ("share.coordinator.state.topic.replication.factor".into(), replicas.to_string()),
        ("share.coordinator.state.topic.min.isr".into(), min_in_sync.to_string()),
        ("num.network.threads".into(), network_threads.to_string()),
        ("num.io.threads".into(), io_threads.to_string()),
    ];
    if !config.sasl_users.is_empty() {
        let mut jaas = format!(
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"broker\" password=\"{broker_password}\" user_broker=\"{broker_password}\""
        );
        for (user, password) in &config.sasl_users {
            let _ = write!(jaas, " user_{user}=\"{password}\"");
        }
        jaas.push(';');
        entries.extend([
            ("sasl.enabled.mechanisms".into(), "PLAIN".into()),
            ("sasl.mechanism.inter.broker.protocol".into(), "PLAIN".into()),
            ("listener.name.sasl_plaintext.plain.sasl.jaas.config".into(), jaas),
        ]);
    }
    entries.extend(config.properties.iter().cloned());
    let mut text = String::from("# Written by local-kafka on every start; edits are overwritten.\n");
    for (key, value) in entries {
        // A backslash starts an escape in a properties file.
        let _ = writeln!(text, "{key}={}", value.replace('\\', "\\\\"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: u16) -> Vec<NodeAddress> {
        (1..=n).map(|id| NodeAddress { id, client_port: 9000 + 2 * id, controller_port: 9001 + 2 * id }).collect()
    }

    fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
        text.lines().rev().find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
    }

    #[test]
    fn a_single_node_is_its_own_quorum_with_unreplicated_internal_topics() {
        let config = ClusterConfig::new("/tmp/x", 1);
        let all = nodes(1);
        let text = server_properties(&config, &all, &all[0], Path::new("/tmp/x/node-1/data"), "pw");
        assert_eq!(value(&text, "controller.quorum.voters"), Some("1@127.0.0.1:9003"));
        assert_eq!(value(&text, "listeners"), Some("PLAINTEXT://127.0.0.1:9002,CONTROLLER://127.0.0.1:9003"));
        assert_eq!(value(&text, "offsets.topic.replication.factor"), Some("1"));
        assert_eq!(value(&text, "transaction.state.log.min.isr"), Some("1"));
        assert_eq!(value(&text, "log.dirs"), Some("/tmp/x/node-1/data"));
        assert!(!text.contains("sasl"));
    }

    #[test]
    fn three_nodes_replicate_internal_topics_three_times_and_need_two_in_sync() {
        let config = ClusterConfig::new("/tmp/x", 3);
        let all = nodes(3);
        let text = server_properties(&config, &all, &all[1], Path::new("/d"), "pw");
        assert_eq!(value(&text, "node.id"), Some("2"));
        assert_eq!(value(&text, "controller.quorum.voters"), Some("1@127.0.0.1:9003,2@127.0.0.1:9005,3@127.0.0.1:9007"));
        assert_eq!(value(&text, "advertised.listeners"), Some("PLAINTEXT://127.0.0.1:9004"));
        assert_eq!(value(&text, "offsets.topic.replication.factor"), Some("3"));
        assert_eq!(value(&text, "transaction.state.log.min.isr"), Some("2"));
    }

    #[test]
    fn sasl_users_make_the_client_listener_authenticate() {
        let mut config = ClusterConfig::new("/tmp/x", 1);
        config.sasl_users = vec![("alice".into(), "alice-secret".into())];
        let all = nodes(1);
        let text = server_properties(&config, &all, &all[0], Path::new("/d"), "internal");
        assert_eq!(value(&text, "listeners"), Some("SASL_PLAINTEXT://127.0.0.1:9002,CONTROLLER://127.0.0.1:9003"));
        assert_eq!(value(&text, "inter.broker.listener.name"), Some("SASL_PLAINTEXT"));
        let jaas = value(&text, "listener.name.sasl_plaintext.plain.sasl.jaas.config").unwrap();
        assert!(jaas.contains("user_alice=\"alice-secret\"") && jaas.contains("user_broker=\"internal\""), "{jaas}");
        assert!(jaas.ends_with(';'));
    }

    #[test]
    fn request_threads_follow_the_cores_up_to_kafkas_defaults() {
        assert_eq!(request_threads(1), (1, 2));
        assert_eq!(request_threads(2), (1, 2));
        assert_eq!(request_threads(4), (2, 4));
        assert_eq!(request_threads(64), (3, 8));
        let config = ClusterConfig::new("/tmp/x", 1);
        let all = nodes(1);
        let text = server_properties(&config, &all, &all[0], Path::new("/d"), "pw");
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let (network, io) = request_threads(cores);
        assert_eq!(value(&text, "num.network.threads"), Some(network.to_string().as_str()));
        assert_eq!(value(&text, "num.io.threads"), Some(io.to_string().as_str()));
    }

    #[test]
    fn extra_properties_come_last_and_so_override() {
        let mut config = ClusterConfig::new("/tmp/x", 1);
        config.properties = vec![("offsets.topic.num.partitions".into(), "3".into()), ("log.dirs".into(), "C:\\k".into())];
        let all = nodes(1);
        let text = server_properties(&config, &all, &all[0], Path::new("/d"), "pw");
        assert_eq!(value(&text, "offsets.topic.num.partitions"), Some("3"));
        assert_eq!(value(&text, "log.dirs"), Some("C:\\\\k"), "backslashes escaped");
    }
}
