use std::net::SocketAddr;
use std::time::Duration;

use kafka_kit::KafkaArgs;

/// Largest content accepted unless `MAX_CONTENT_BYTES` says otherwise.
pub const DEFAULT_MAX_CONTENT_BYTES: usize = 64 * 1024;

/// command-api settings; every flag has an environment variable.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "command-api", about = "Accepts submissions and appends them to Kafka")]
pub struct Config {
    /// Address to serve HTTP on.
    #[arg(long, env = "COMMAND_API_LISTEN", default_value = "0.0.0.0:8001")]
    pub listen: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` are served instead: a port of their own that
    /// no gateway routes to, for probes and scrapers only. Unset, they share the API's listener.
    #[arg(long, env = "COMMAND_API_INTERNAL_LISTEN")]
    pub internal_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The key-encryption keys that wrap the data keys content is sealed with.
    #[command(flatten)]
    pub keyring: keyring::KeyringArgs,
    /// PostgreSQL holding accounts (to authenticate), rate-limit counters and idempotency keys.
    #[arg(long, env = "DATABASE_URL", default_value = service_kit::DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// Connections in the pool to PostgreSQL.
    #[arg(long, env = "COMMAND_API_MAX_CONNECTIONS", default_value_t = 8)]
    pub max_connections: u32,
    #[command(flatten)]
    pub accounts: accounts::AccountsArgs,
    /// Largest accepted content, in bytes of UTF-8.
    #[arg(long, env = "MAX_CONTENT_BYTES", default_value_t = DEFAULT_MAX_CONTENT_BYTES)]
    pub max_content_bytes: usize,
    /// Most items one batch may hold.
    #[arg(long, env = "MAX_BATCH_ITEMS", default_value_t = 1_000)]
    pub max_batch_items: usize,
    /// Largest body of a batch request, in bytes.
    #[arg(long, env = "MAX_BATCH_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_batch_bytes: usize,
    /// Kafka transactions (batches) that can be open at once: one producer each.
    #[arg(long, env = "BATCH_PRODUCERS", default_value_t = 2)]
    pub batch_producers: usize,
    /// Origins (e.g. https://ui.example.com) whose pages may call this API; none by default.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    /// How long to wait for Kafka's acknowledgement before answering 503.
    #[arg(long, env = "PUBLISH_TIMEOUT_MS", default_value_t = 5_000)]
    pub publish_timeout_ms: u64,
    /// How often expired idempotency keys, rate-limit counters, sessions and tokens are deleted.
    #[command(flatten)]
    pub retention: service_kit::retention::RetentionArgs,
    /// Days an expired or revoked API token stays listed before it is deleted.
    #[arg(long, env = "TOKEN_RETENTION_DAYS", default_value_t = 30)]
    pub token_retention_days: u32,
}

impl Config {
    /// The defaults of every flag (not read from the environment), with these two.
    pub fn new(database_url: impl Into<String>, kafka: KafkaArgs) -> Self {
        Config { database_url: database_url.into(), kafka, ..service_kit::default_config() }
    }

    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }
}
