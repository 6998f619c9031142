use service_kit::kafka::KafkaArgs;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/content_processor";

/// projector settings; every flag has an environment variable.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "projector", about = "Folds the submission events into the PostgreSQL read model")]
pub struct Config {
    /// PostgreSQL holding the read model.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Most records applied in one transaction.
    #[arg(long, env = "PROJECTOR_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: usize,
}

impl Config {
    pub fn new(database_url: impl Into<String>, kafka: KafkaArgs) -> Self {
        Config { database_url: database_url.into(), kafka, batch_size: 1000 }
    }
}
