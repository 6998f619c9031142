use std::net::SocketAddr;
use std::path::PathBuf;

/// query-api settings; every flag has an environment variable.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "query-api", about = "Serves the read model over REST and server-sent events")]
pub struct Config {
    /// Address to serve HTTP on.
    #[arg(long, env = "QUERY_API_LISTEN", default_value = "0.0.0.0:8002")]
    pub listen: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` are served instead: a port of their own that
    /// no gateway routes to, for probes and scrapers only. Unset, they share the API's listener.
    #[arg(long, env = "QUERY_API_INTERNAL_LISTEN")]
    pub internal_listen: Option<SocketAddr>,
    /// PostgreSQL holding the read model (written by the projector).
    #[arg(long, env = "DATABASE_URL", default_value = service_kit::DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// The built browser UI (scripts/build-ui), served at `/`.
    #[arg(long, env = "UI_DIR", default_value = "ui/dist")]
    pub ui_dir: PathBuf,
    /// Where the UI sends submissions, when the command API is on another origin.
    #[arg(long, env = "UI_COMMAND_API_URL", default_value = "")]
    pub ui_command_api_url: String,
    /// Where the UI manages notifications, when the notifier is on another origin.
    #[arg(long, env = "UI_NOTIFIER_API_URL", default_value = "")]
    pub ui_notifier_api_url: String,
    /// Where the UI's operations dashboard reads, when the projector's admin endpoints are on
    /// another origin (PROJECTOR_ADMIN_LISTEN).
    #[arg(long, env = "UI_ADMIN_API_URL", default_value = "")]
    pub ui_admin_api_url: String,
    /// Origins (e.g. https://ui.example.com) whose pages may call this API; none by default.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    /// The SMTP server that mails verification and password-reset links (smtp://, smtps://,
    /// with credentials if any). Without it the server mails nothing: addresses stay
    /// unverified and no password can be reset by email.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<service_kit::secret::Secret>,
    /// The sender of those emails.
    #[arg(long, env = "ACCOUNTS_MAIL_FROM", default_value = "content-processor <accounts@localhost>")]
    pub mail_from: String,
    /// Where users reach the UI: the links mailed to them point there.
    #[arg(long, env = "PUBLIC_URL", default_value = "http://localhost:8000")]
    pub public_url: String,
    /// Connections in the pool (SSE streams hold none while idle).
    #[arg(long, env = "QUERY_API_MAX_CONNECTIONS", default_value_t = 8)]
    pub max_connections: u32,
    #[command(flatten)]
    pub accounts: accounts::AccountsArgs,
}

impl Config {
    /// The defaults of every flag, with `database_url`.
    pub fn new(database_url: impl Into<String>) -> Self {
        Config { database_url: database_url.into(), ..service_kit::default_config() }
    }
}
