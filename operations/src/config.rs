use std::net::SocketAddr;

/// The `projector` role's settings: the writer's, and where the operations API is served.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "projector", about = "Folds the submission events into the PostgreSQL read model, and serves the operations API")]
// Its own group name: clap names each flattened struct's group after the struct, and both are `Config`.
#[group(id = "operations")]
pub struct Config {
    #[command(flatten)]
    pub projector: projector::Config,
    /// Serve the admin endpoints (the dashboard's `/admin/...`, including the rebuild), health
    /// checks and metrics on this address.
    #[arg(long, env = "PROJECTOR_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served instead of on the admin listener: a
    /// port of their own that no gateway routes to, for probes and scrapers only. Unset, they
    /// share the admin listener.
    #[arg(long, env = "PROJECTOR_INTERNAL_LISTEN")]
    pub internal_listen: Option<SocketAddr>,
    /// The validators' consumer group, whose members and offsets the admin dashboard shows.
    #[arg(long, env = "VALIDATOR_GROUP_ID", default_value = "validator")]
    pub validator_group_id: String,
    /// Origins whose pages may call the admin endpoints (the UI, when the query API serves it
    /// from another origin); none by default.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
}
