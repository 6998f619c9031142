//! `content-processor`: the whole system in one process (no subcommand), or one role of it.
//! The per-role subcommands run the same code as the per-service binaries (the projector's role,
//! the writer with the operations endpoints, has no binary of its own); they let one binary play
//! every part, as the process-level tests and the Kubernetes manifests do.

use clap::{Parser, Subcommand};
use content_processor::deployed::DeployedConfig;
use content_processor::{Broker, Config};
use kafka_kit::embedded_broker::EmbeddedBroker;
use kafka_kit::KafkaArgs;

#[derive(Parser)]
#[command(name = "content-processor", about = "Runs content-processor: everything in one process, or one role")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    all_in_one: Config,
}

#[derive(Subcommand)]
enum Role {
    /// Only the command API.
    CommandApi(command_api::Config),
    /// Only a validator instance.
    Validator(validator::Config),
    /// Only the projector.
    Projector(operations::Config),
    /// Only the query API.
    QueryApi(query_api::Config),
    /// Only the notifier.
    Notifier(notifier::Config),
    /// Rebuild the read model from the topic next to the live one, switch when caught up, exit.
    Rebuild(projector::Config),
    /// Create an admin account, or make an existing account an admin (setting its password).
    /// The password is read from ADMIN_PASSWORD, or asked for on the terminal.
    CreateAdmin(CreateAdmin),
    /// Re-wrap every account's data key with the current key-encryption key (a rotation: the
    /// previous keys in PREVIOUS_KEY_ENCRYPTION_KEYS), then exit. The log is not touched.
    RotateKeys(RotateKeys),
    /// The production topology on this machine: three Apache Kafka nodes, two processes of every
    /// service, HAProxy in front routing as ops/kubernetes/routes.yaml does.
    Deployed(DeployedConfig),
    /// Only the embedded (in-memory) broker, with the topics created; prints
    /// `bootstrap.servers=HOST:PORT` when ready. The benchmarks measure it in a process of its own.
    EmbeddedBroker(KafkaArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    return_large_blocks_to_the_system();
    let cli = Cli::parse();
    let telemetry = service_kit::telemetry::init(cli.service_name(), "info,rdkafka=warn,sqlx=warn")?;
    let shutdown = service_kit::shutdown::on_signal();
    let result = match cli.role {
        None => run_all(cli.all_in_one, shutdown).await,
        Some(Role::CommandApi(config)) => command_api::run(config, shutdown).await,
        Some(Role::Validator(config)) => validator::run(config, shutdown).await,
        Some(Role::Projector(config)) => operations::run(config, shutdown).await,
        Some(Role::QueryApi(config)) => query_api::run(config, shutdown).await,
        Some(Role::Notifier(config)) => notifier::run(config, shutdown).await,
        Some(Role::Rebuild(config)) => rebuild(config, shutdown).await,
        Some(Role::CreateAdmin(args)) => create_admin(args).await,
        Some(Role::RotateKeys(args)) => rotate_keys(args).await,
        Some(Role::Deployed(config)) => deployed(config, shutdown).await,
        Some(Role::EmbeddedBroker(kafka)) => {
            let broker = EmbeddedBroker::start(&kafka)?;
            println!("bootstrap.servers={}", broker.bootstrap_servers());
            shutdown.cancelled().await;
            Ok(())
        }
    };
    telemetry.shutdown().await;
    result
}

impl Cli {
    /// The name this process's spans are exported under: its role, or the whole system's.
    fn service_name(&self) -> &'static str {
        match &self.role {
            None => "content-processor",
            Some(Role::CommandApi(_)) => "command-api",
            Some(Role::Validator(_)) => "validator",
            Some(Role::Projector(_)) => "projector",
            Some(Role::QueryApi(_)) => "query-api",
            Some(Role::Notifier(_)) => "notifier",
            Some(Role::Rebuild(_)) => "rebuild",
            Some(Role::CreateAdmin(_)) => "create-admin",
            Some(Role::RotateKeys(_)) => "rotate-keys",
            Some(Role::Deployed(_)) => "deployed",
            Some(Role::EmbeddedBroker(_)) => "embedded-broker",
        }
    }
}

#[derive(clap::Args)]
struct CreateAdmin {
    /// The admin's email address (the sign-in name).
    #[arg(env = "ADMIN_EMAIL")]
    email: String,
    /// Asked for when not given. Better given in the environment than on the command line,
    /// where `ps` shows it.
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    #[arg(long, env = "DATABASE_URL", default_value = service_kit::DEFAULT_DATABASE_URL, hide_env_values = true)]
    database_url: String,
}

async fn create_admin(args: CreateAdmin) -> anyhow::Result<()> {
    let password = match args.password {
        Some(password) => password,
        None => rpassword::prompt_password(format!("Password for {}: ", args.email))?,
    };
    let account = content_processor::create_admin(&args.database_url, &args.email, password).await?;
    println!("{} is an admin (account {}); sign in with it at the UI or POST /api/session.", account.email, account.id);
    Ok(())
}

#[derive(clap::Args)]
struct RotateKeys {
    #[arg(long, env = "DATABASE_URL", default_value = service_kit::DEFAULT_DATABASE_URL, hide_env_values = true)]
    database_url: String,
    #[command(flatten)]
    keyring: keyring::KeyringArgs,
}

async fn rotate_keys(args: RotateKeys) -> anyhow::Result<()> {
    let keyring = keyring::Keyring::from_args(&args.keyring)?;
    let pool = service_kit::postgres::connect(&args.database_url, 2).await?;
    let rewrapped = keyring::store::rewrap_all(&pool, &keyring).await?;
    println!("{rewrapped} data keys re-wrapped with key-encryption key {}", keyring.current_id());
    Ok(())
}

/// Rebuilds in the foreground, printing progress every second.
async fn rebuild(config: projector::Config, shutdown: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
    let pool = projector::connect(&config.database_url).await?;
    projector::generations::prepare(&pool).await?;
    let progress = projector::rebuild::Progress::default();
    let lock = projector::rebuild::RebuildLock::try_acquire(&pool)
        .await?
        .ok_or_else(|| anyhow::anyhow!("a rebuild is already running; wait for it (GET /admin/rebuild shows it)"))?;
    progress.begin(&pool).await?;
    let watched = progress.clone();
    let reporter = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let status = watched.snapshot();
            let read: i64 = status.positions.values().sum();
            let end: i64 = status.topic_ends.values().sum();
            println!("rebuilding generation {:?}: {} events applied, {read} of {end} records read", status.to_generation, status.events_applied);
        }
    });
    let outcome = projector::rebuild::rebuild(&config, &pool, &progress, lock, shutdown).await;
    reporter.abort();
    let generation = outcome?;
    println!("done: generation {generation} is live; the previous one was dropped");
    Ok(())
}

/// Runs the deployed topology until Ctrl-C or SIGTERM, or until one of its processes exits.
async fn deployed(config: DeployedConfig, shutdown: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
    let running = content_processor::deployed::start(config).await?;
    let manifest = running.manifest();
    println!();
    println!("content-processor is running as deployed: open {}", manifest.gateway);
    if let Some(ui) = &manifest.ui_origin {
        println!("  The UI on its own origin: {ui} (the APIs stay on {})", manifest.gateway);
    }
    println!("  Kafka: Apache Kafka {}, three nodes at {}", running.kafka().version(), manifest.kafka);
    for (role, replicas) in &manifest.replicas {
        println!("  {role}: {}", replicas.join(", "));
    }
    println!("  Every address: {}; logs: {}", running.manifest_path().display(), manifest.logs.display());
    println!("  Stop with Ctrl-C.");
    println!();
    running.wait(shutdown).await
}

async fn run_all(config: Config, shutdown: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
    let running = content_processor::start(config.clone(), shutdown).await?;
    println!();
    println!("content-processor is running: open http://{}", running.addr);
    let brokers = running.kafka.bootstrap_servers();
    match running.broker() {
        Broker::Local(cluster) => {
            println!("  Kafka: Apache Kafka {} at {brokers}, started here and stopped with this run.", cluster.version());
            println!("         Its log is kept in {}/kafka (its own logs: node-1/logs/server.log).", config.data_dir.display());
        }
        Broker::Embedded(_) => {
            println!("  Kafka: embedded broker at {brokers} (librdkafka's mock cluster).");
            println!("         It keeps events IN MEMORY ONLY: they are lost when this process exits.");
        }
        Broker::External => println!("  Kafka: {brokers}"),
    }
    println!("  PostgreSQL: {}", service_kit::postgres::describe(&config.database_url));
    println!("  Stop with Ctrl-C.");
    println!();
    running.wait().await
}

/// Every allocation of 4 MiB or more gets pages of its own, given back when it is freed.
/// glibc's default raises that threshold to the largest block freed so far, so after the first
/// password hash (Argon2id, 19 MiB) every later one comes from the heap of whichever thread ran
/// it and stays there, so a burst of sign-ups leaves the process holding a hash's memory per
/// thread that ever hashed (`loadgen signups` measures it). Smaller blocks keep glibc's pooling.
fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called once, before anything large is allocated.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks a command line's definition only when it parses one, so a clash (two
    /// flattened settings structs both named `Config`, say) would stop a role at start.
    #[test]
    fn every_role_has_a_well_formed_command_line() {
        super::Cli::command().debug_assert();
    }
}
