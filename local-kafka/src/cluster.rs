//! A set of nodes started, watched and stopped together.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use rdkafka::ClientConfig;

use crate::config::{ClusterConfig, NodeAddress};
use crate::node::Node;
use crate::{Distribution, Error};

/// How long a node may take from spawn to serving clients. A first start formats storage; a
/// start after a crash recovers the log's unflushed tail first.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a node may take for its controlled shutdown before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// A running local Apache Kafka cluster. Dropping it kills every node (SIGKILL); [`Cluster::stop`]
/// stops them gracefully.
pub struct Cluster {
    dist: Distribution,
    config: ClusterConfig,
    nodes: Vec<Node>,
    /// The nodes' own SASL password (random per start), when clients must authenticate.
    broker_password: String,
}

impl Cluster {
    /// Formats what is not formatted yet, starts every node and waits until all serve clients.
    pub async fn start(dist: Distribution, config: ClusterConfig) -> Result<Cluster, Error> {
        let addresses = addresses(&config)?;
        let nodes: Vec<Node> = addresses.iter().map(|address| Node::new(*address, &config.dir)).collect();
        // A durable cluster keeps the id it was formatted with; a node formatted with another
        // id would refuse to join.
        let cluster_id = nodes.iter().find_map(Node::formatted_cluster_id).unwrap_or_else(new_cluster_id);
        let broker_password = uuid::Uuid::new_v4().simple().to_string();
        futures_util::future::try_join_all(nodes.iter().map(|node| node.prepare(&dist, &config, &addresses, &cluster_id, &broker_password))).await?;
        let mut cluster = Cluster { dist, config, nodes, broker_password };
        for node in &mut cluster.nodes {
            node.spawn(&cluster.dist, &cluster.config)?;
        }
        let client = cluster.admin_client_config();
        futures_util::future::try_join_all(cluster.nodes.iter_mut().map(|node| node.wait_ready(&client, READY_TIMEOUT))).await?;
        tracing::info!(
            version = cluster.version(),
            nodes = cluster.nodes.len(),
            bootstrap = %cluster.bootstrap_servers(),
            dir = %cluster.config.dir.display(),
            "Apache Kafka is ready"
        );
        Ok(cluster)
    }

    /// The Apache Kafka version these nodes run.
    pub fn version(&self) -> &str {
        self.dist.version()
    }

    /// `host:port` of every node, comma separated, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.nodes.iter().map(|node| node.address.bootstrap()).collect::<Vec<_>>().join(",")
    }

    /// Node ids, 1 to N; Kafka's metadata names brokers by them.
    pub fn node_ids(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.address.id).collect()
    }

    /// The operating-system process of a node, while it runs.
    pub fn pid(&self, id: u16) -> Option<u32> {
        self.nodes.iter().find(|node| node.address.id == id)?.pid()
    }

    /// The broker log of a node, to read when something went wrong.
    pub fn server_log(&self, id: u16) -> Result<PathBuf, Error> {
        Ok(self.node(id)?.server_log())
    }

    /// SIGKILLs a node, as a crash or a power cut of its machine would stop it.
    pub async fn kill(&mut self, id: u16) -> Result<(), Error> {
        self.node_mut(id)?.kill().await;
        Ok(())
    }

    /// Stops a node with SIGTERM (controlled shutdown: it hands over its leaderships first).
    pub async fn terminate(&mut self, id: u16) -> Result<(), Error> {
        self.node_mut(id)?.terminate(STOP_GRACE).await;
        Ok(())
    }

    /// Starts a stopped node again and waits until it serves clients (in a cluster, it may
    /// need a quorum majority of the nodes to be up for that).
    pub async fn restart(&mut self, id: u16) -> Result<(), Error> {
        let client = self.admin_client_config();
        let index = self.index(id)?;
        let node = &mut self.nodes[index];
        if !node.is_running() {
            node.spawn(&self.dist, &self.config)?;
        }
        node.wait_ready(&client, READY_TIMEOUT).await
    }

    /// Stops every node gracefully (all at once, so none waits for a quorum that is leaving).
    pub async fn stop(&mut self) {
        futures_util::future::join_all(self.nodes.iter_mut().map(|node| node.terminate(STOP_GRACE))).await;
    }

    /// Settings for a client that may do anything on this cluster: the nodes' own identity when
    /// the listener asks for authentication. Test support and readiness checks use it.
    pub fn admin_client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap_servers());
        if !self.config.sasl_users.is_empty() {
            config
                .set("security.protocol", "SASL_PLAINTEXT")
                .set("sasl.mechanism", "PLAIN")
                .set("sasl.username", "broker")
                .set("sasl.password", &self.broker_password);
        }
        config
    }

    fn index(&self, id: u16) -> Result<usize, Error> {
        self.nodes.iter().position(|node| node.address.id == id).ok_or(Error::NoSuchNode(id))
    }

    fn node(&self, id: u16) -> Result<&Node, Error> {
        Ok(&self.nodes[self.index(id)?])
    }

    fn node_mut(&mut self, id: u16) -> Result<&mut Node, Error> {
        let index = self.index(id)?;
        Ok(&mut self.nodes[index])
    }
}

/// Where each node listens: consecutive ports from the configured base, or from a free block
/// (one a restarted node can count on, see [`crate::free_port_block`]).
fn addresses(config: &ClusterConfig) -> Result<Vec<NodeAddress>, Error> {
    let base = match config.base_port {
        Some(base) => base,
        None => crate::free_port_block(2 * config.nodes)?,
    };
    Ok((1..=config.nodes).map(|id| NodeAddress { id, client_port: base + 2 * (id - 1), controller_port: base + 2 * (id - 1) + 1 }).collect())
}

/// A new cluster id as Kafka writes them: 16 random bytes in URL-safe base64 without padding,
/// never starting with `-` (as Kafka's own `Uuid.randomUuid` ensures), which the storage tool's
/// command line would take for an option.
fn new_cluster_id() -> String {
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_have_kafkas_shape() {
        // One id in 64 would start with '-' if nothing prevented it: 2,000 cover that.
        for _ in 0..2_000 {
            let id = new_cluster_id();
            assert_eq!(id.len(), 22);
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{id}");
            assert!(!id.starts_with('-'), "{id} would be read as an option");
        }
        assert_ne!(new_cluster_id(), new_cluster_id());
    }

    #[test]
    fn a_fixed_base_port_gives_each_node_a_client_and_a_controller_port() {
        let mut config = ClusterConfig::new("/tmp/x", 3);
        config.base_port = Some(9092);
        let addresses = addresses(&config).unwrap();
        assert_eq!(
            addresses,
            vec![
                NodeAddress { id: 1, client_port: 9092, controller_port: 9093 },
                NodeAddress { id: 2, client_port: 9094, controller_port: 9095 },
                NodeAddress { id: 3, client_port: 9096, controller_port: 9097 },
            ]
        );
    }

    #[test]
    fn free_ports_are_distinct() {
        let config = ClusterConfig::new("/tmp/x", 3);
        let mut ports: Vec<u16> = addresses(&config).unwrap().iter().flat_map(|a| [a.client_port, a.controller_port]).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 6);
    }
}
