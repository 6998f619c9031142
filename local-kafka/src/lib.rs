//! Apache Kafka on this machine: KRaft nodes (broker and controller in one process each) run as
//! child processes of the calling program, from the pinned distribution that
//! `scripts/kafka-dist` fetches from Maven Central.
//!
//! The one-command run keeps one node with its data in a persistent directory; the tests start
//! one node per test on free ports, or three to kill them one by one; the benchmarks measure it.
//!
//! A node never outlives its owner: dropping a [`Cluster`] kills its nodes, and so does the
//! death of the owning process (the kernel's parent-death signal), so a SIGKILLed run leaves no
//! broker behind holding the data directory's lock. Nodes run in their own process group, so a
//! Ctrl-C in the terminal reaches the owner only, which stops the broker after its clients.

mod cluster;
mod config;
mod distribution;
mod node;
mod ports;

pub use cluster::Cluster;
pub use config::{ClusterConfig, JvmProfile};
pub use distribution::Distribution;
pub use node::die_with_parent;
pub use ports::free_port_block;

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no Apache Kafka distribution at {dir}: {reason} (scripts/kafka-dist fetches one)")]
    Distribution { dir: PathBuf, reason: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("formatting the storage of Kafka node {node} failed ({status}); its output: {output}")]
    Format { node: u16, status: std::process::ExitStatus, output: String },
    #[error("Kafka node {node} exited during start-up ({status}); the end of {log}:\n{tail}")]
    Exited { node: u16, status: std::process::ExitStatus, log: PathBuf, tail: String },
    #[error("Kafka node {node} was not ready after {waited:?}; see {log}")]
    NotReady { node: u16, waited: Duration, log: PathBuf },
    #[error("found no {wanted} consecutive free ports below the ephemeral port range")]
    NoFreePorts { wanted: u16 },
    #[error("there is no Kafka node {0} in this cluster")]
    NoSuchNode(u16),
}

impl Error {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
