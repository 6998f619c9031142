use std::net::SocketAddr;
use std::time::Duration;

use kafka_kit::KafkaArgs;
use service_kit::secret::Secret;

/// notifier settings; every flag has an environment variable.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "notifier", about = "Tells owners their verdicts: email and signed webhooks")]
pub struct Config {
    /// Address serving the notification API (settings, webhooks, deliveries) and health.
    #[arg(long, env = "NOTIFIER_LISTEN", default_value = "0.0.0.0:8005")]
    pub listen: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` are served instead: a port of their own that
    /// no gateway routes to, for probes and scrapers only. Unset, they share the API's listener.
    #[arg(long, env = "NOTIFIER_INTERNAL_LISTEN")]
    pub internal_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The key-encryption keys that unwrap the data keys sealed content opens with.
    #[command(flatten)]
    pub keyring: keyring::KeyringArgs,
    /// The notifier's consumer group.
    #[arg(long, env = "NOTIFIER_GROUP_ID", default_value = "notifier")]
    pub group_id: String,
    /// PostgreSQL holding accounts and the notifier's own schema (`notifier`).
    #[arg(long, env = "DATABASE_URL", default_value = service_kit::DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// Connections in the pool to PostgreSQL.
    #[arg(long, env = "NOTIFIER_MAX_CONNECTIONS", default_value_t = 8)]
    pub max_connections: u32,
    #[command(flatten)]
    pub accounts: accounts::AccountsArgs,
    /// The SMTP server to send email through, e.g. smtp://mail:1025 or
    /// smtps://user:password@smtp.example.com; without it, no email is sent. It may hold a
    /// password, so it is never logged.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,
    /// The sender of notification emails.
    #[arg(long, env = "NOTIFIER_MAIL_FROM", default_value = "content-processor <notifications@localhost>")]
    pub mail_from: String,
    /// Allow webhook URLs on loopback, private and link-local addresses (for tests and
    /// trusted networks only: it lets users make this server call internal services).
    #[arg(long, env = "NOTIFIER_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_targets: bool,
    /// Attempts per delivery before it is marked failed.
    #[arg(long, env = "NOTIFIER_MAX_ATTEMPTS", default_value_t = 8)]
    pub max_attempts: i32,
    /// Wait before the second attempt; doubles with each attempt after, with jitter.
    #[arg(long, env = "NOTIFIER_RETRY_BASE_MS", default_value_t = 5_000)]
    pub retry_base_ms: u64,
    /// The longest wait between two attempts.
    #[arg(long, env = "NOTIFIER_RETRY_MAX_MS", default_value_t = 3_600_000)]
    pub retry_max_ms: u64,
    /// How long one webhook request or email may take.
    #[arg(long, env = "NOTIFIER_SEND_TIMEOUT_MS", default_value_t = 10_000)]
    pub send_timeout_ms: u64,
    /// Deliveries sent at once.
    #[arg(long, env = "NOTIFIER_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
    /// Verdicts older than this are not notified (a notifier reading the log for the first
    /// time does not mail its whole history).
    #[arg(long, env = "NOTIFIER_MAX_AGE_SECS", default_value_t = 86_400)]
    pub max_age_secs: u64,
    /// Origins whose pages may call this API; none by default.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    /// How often expired notifier rows are deleted (see `notifier::retention`).
    #[command(flatten)]
    pub retention: service_kit::retention::RetentionArgs,
    /// Days a finished (delivered or failed) delivery, with its attempts and notification, and a
    /// parked record are kept.
    #[arg(long, env = "NOTIFICATION_RETENTION_DAYS", default_value_t = 30)]
    pub notification_retention_days: u32,
}

impl Config {
    /// The defaults of every flag (not read from the environment), with these two.
    pub fn new(database_url: impl Into<String>, kafka: KafkaArgs) -> Self {
        Config { database_url: database_url.into(), kafka, ..service_kit::default_config() }
    }

    pub fn retry(&self) -> crate::delivery::RetryPolicy {
        crate::delivery::RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            base: Duration::from_millis(self.retry_base_ms),
            max: Duration::from_millis(self.retry_max_ms.max(self.retry_base_ms)),
        }
    }

    pub fn send_timeout(&self) -> Duration {
        Duration::from_millis(self.send_timeout_ms)
    }
}
