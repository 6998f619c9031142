use std::net::SocketAddr;

/// query-api settings; every flag has an environment variable.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "query-api", about = "Serves the read model over REST and server-sent events")]
pub struct Config {
    /// Address to serve HTTP on.
    #[arg(long, env = "QUERY_API_LISTEN", default_value = "0.0.0.0:8002")]
    pub listen: SocketAddr,
    /// PostgreSQL holding the read model (written by the projector).
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/content_processor")]
    pub database_url: String,
    /// Connections in the pool (SSE streams hold none while idle).
    #[arg(long, env = "QUERY_API_MAX_CONNECTIONS", default_value_t = 8)]
    pub max_connections: u32,
}

impl Config {
    pub fn new(database_url: impl Into<String>) -> Self {
        Config { listen: ([0, 0, 0, 0], 8002).into(), database_url: database_url.into(), max_connections: 8 }
    }
}
