use std::time::Duration;

use kafka_kit::KafkaArgs;

/// validator settings; every flag has an environment variable.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "validator", about = "Judges submissions and emits the verdicts")]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// PostgreSQL holding the accounts' data keys, which sealed content opens with.
    #[arg(long, env = "DATABASE_URL", default_value = service_kit::DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// The key-encryption keys that unwrap the data keys.
    #[command(flatten)]
    pub keyring: keyring::KeyringArgs,
    /// Consumer group shared by all validator instances.
    #[arg(long, env = "VALIDATOR_GROUP_ID", default_value = "validator")]
    pub group_id: String,
    /// Pause between ProcessingStarted and the verdict, to make PROCESSING visible in demos.
    #[arg(long, env = "PROCESSING_DELAY_MS", default_value_t = 0)]
    pub processing_delay_ms: u64,
    /// Most records judged per batch (one acknowledgement wait per batch; offsets are committed once a second).
    #[arg(long, env = "VALIDATOR_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,
    /// How long to wait for Kafka to acknowledge output before retrying the batch.
    #[arg(long, env = "PUBLISH_TIMEOUT_MS", default_value_t = 5_000)]
    pub publish_timeout_ms: u64,
    /// Serve `/healthz` and `/readyz` on this address (not ready while a partition is held at
    /// a record only a newer build reads).
    #[arg(long, env = "VALIDATOR_HEALTH_LISTEN")]
    pub health_listen: Option<std::net::SocketAddr>,
}

impl Config {
    /// The defaults of every flag, with `kafka`.
    pub fn new(kafka: KafkaArgs) -> Self {
        Config { kafka, ..service_kit::default_config() }
    }

    pub fn processing_delay(&self) -> Duration {
        Duration::from_millis(self.processing_delay_ms)
    }
}
