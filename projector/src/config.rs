use kafka_kit::KafkaArgs;

/// projector settings; every flag has an environment variable.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "projector", about = "Folds the submission events into the PostgreSQL read model")]
pub struct Config {
    /// PostgreSQL holding the read model.
    #[arg(long, env = "DATABASE_URL", default_value = service_kit::DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The key-encryption keys that unwrap the data keys sealed content opens with.
    #[command(flatten)]
    pub keyring: keyring::KeyringArgs,
    /// Most records applied in one transaction.
    #[arg(long, env = "PROJECTOR_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: usize,
    /// How long a batch waits for more records after its first, in milliseconds: while records
    /// come steadily, fewer and larger transactions cost the database less, for at most this
    /// much latency per record.
    #[arg(long, env = "PROJECTOR_LINGER_MS", default_value_t = 10)]
    pub linger_ms: u64,
    /// Most records applied in one transaction while rebuilding: larger, since nobody reads a
    /// generation being built and fewer, bigger transactions rebuild faster.
    #[arg(long, env = "PROJECTOR_REBUILD_BATCH_SIZE", default_value_t = 10_000)]
    pub rebuild_batch_size: usize,
    /// What to do when the stored positions are beyond the end of the topic (the topic was
    /// recreated, or an in-memory broker restarted): stop with an error, or rebuild the read
    /// model from what the topic holds now.
    #[arg(long, env = "ON_TOPIC_RESET", value_enum, default_value_t = TopicResetPolicy::Stop)]
    pub on_topic_reset: TopicResetPolicy,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicResetPolicy {
    Stop,
    Rebuild,
}

impl Config {
    /// The defaults of every flag, with `database_url` and `kafka`.
    pub fn new(database_url: impl Into<String>, kafka: KafkaArgs) -> Self {
        Config { database_url: database_url.into(), kafka, ..service_kit::default_config() }
    }
}
