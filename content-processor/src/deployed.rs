//! The production topology on this machine, one command away (`content-processor deployed`):
//! three Apache Kafka nodes, two processes of every service (this binary, one role each), and
//! HAProxy in front as the gateway, routing as `ops/kubernetes/routes.yaml` does. The
//! integration test `content-processor/tests/deployed.rs` starts it through [`start`], so what the test
//! proves is what a person runs.
//!
//! Every child listens on its own 127.0.0.1 port, writes its log to `DATA_DIR/logs/NAME.log` and
//! dies with this process: SIGKILL when its handle is dropped, and the kernel's parent-death
//! signal when this process is killed. Children run in their own process group, so a Ctrl-C
//! reaches this process only, which stops the gateway, then the services, then Kafka.
//! `DATA_DIR/deployed.json` (a [`Manifest`]) says where the gateway and every replica listen,
//! for tests and people that need to reach one replica.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use kafka_kit::KafkaArgs;
use local_kafka::{Cluster, ClusterConfig, JvmProfile};
use serde::{Deserialize, Serialize};
use service_kit::secret::Secret;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Processes of each service, as the Kubernetes manifests run them.
const REPLICAS: usize = 2;
/// Enough Kafka nodes for the production topic: replication factor 3, `min.insync.replicas` 2.
const KAFKA_NODES: u16 = 3;
/// From spawn to ready, for a child on a loaded 2-core machine (ten of them start at once).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a child may take to finish its work after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Settings of `content-processor deployed`; every flag has an environment variable. The
/// services take every other setting of theirs from the environment they inherit (e.g.
/// `SUBMISSION_RATE_LIMIT`, `RUST_LOG`).
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "deployed", about = "Runs the production topology on this machine: three Kafka nodes, two of every service, HAProxy in front")]
pub struct DeployedConfig {
    /// Where the gateway serves the UI and every API. Port 0 picks a free one.
    #[arg(long, env = "DEPLOYED_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve the UI from a second origin at this address (the query API's routes only), the
    /// APIs staying on `--listen`: the UI is told where they are (`UI_*_API_URL`) and the
    /// services allow its origin (`CORS_ALLOWED_ORIGINS`). Port 0 picks a free one.
    #[arg(long, env = "DEPLOYED_UI_LISTEN")]
    pub ui_listen: Option<SocketAddr>,
    /// PostgreSQL; the database is created when missing. Passed to the services in their
    /// environment, not on their command lines, where `ps` would show a password.
    #[arg(long, env = "DATABASE_URL", default_value = service_kit::DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// The Apache Kafka distribution to run (`scripts/kafka-dist` fetches it and prints the
    /// directory; `scripts/run-deployed` sets it).
    #[arg(long, env = "KAFKA_DIST")]
    pub kafka_dist: Option<PathBuf>,
    /// Kept across runs: the Kafka nodes' logs in DIR/kafka, the children's logs in DIR/logs,
    /// the gateway's configuration and the manifest.
    #[arg(long, env = "DEPLOYED_DATA_DIR", default_value_os_t = crate::default_data_dir().join("deployed"))]
    pub data_dir: PathBuf,
    /// Client port of the first Kafka node; the three nodes take six consecutive ports (client
    /// and controller each). 0 picks free ports, which only suits a new data directory (the
    /// quorum remembers its ports).
    #[arg(long, env = "DEPLOYED_KAFKA_PORT", default_value_t = 9192)]
    pub kafka_port: u16,
    /// Heap of each Kafka node's JVM.
    #[arg(long, env = "LOCAL_KAFKA_HEAP_MB", default_value_t = 512)]
    pub kafka_heap_mb: u32,
    /// How the Kafka nodes' JVMs are tuned (the tests trade speed for a faster start).
    #[arg(skip = JvmProfile::Server)]
    pub kafka_jvm: JvmProfile,
    /// Partitions of the topic, when it is created.
    #[arg(long, env = "KAFKA_PARTITIONS", default_value_t = 6)]
    pub kafka_partitions: i32,
    /// The built browser UI the query APIs serve.
    #[arg(long, env = "UI_DIR", default_value = "ui/dist")]
    pub ui_dir: PathBuf,
    /// The SMTP server the notifiers send mail through; without it, webhooks only.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,
    /// Let the notifiers call webhooks on loopback and private addresses (trusted networks and
    /// tests only).
    #[arg(long, env = "NOTIFIER_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_webhook_targets: bool,
    /// The HAProxy executable (Debian package `haproxy`).
    #[arg(long, env = "HAPROXY", default_value = "haproxy")]
    pub haproxy: PathBuf,
    /// The binary the services run as; this one when not set (the tests run from a test binary).
    #[arg(skip)]
    pub binary: Option<PathBuf>,
}

impl DeployedConfig {
    /// The defaults of every flag, with `database_url` and `kafka_dist`; the environment is not
    /// read.
    pub fn new(database_url: impl Into<String>, kafka_dist: impl Into<PathBuf>) -> Self {
        DeployedConfig { database_url: database_url.into(), kafka_dist: Some(kafka_dist.into()), ..service_kit::default_config() }
    }
}

/// The services of the system, each run as [`REPLICAS`] processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    CommandApi,
    QueryApi,
    Notifier,
    Projector,
    Validator,
}

impl Service {
    const ALL: [Service; 5] = [Service::CommandApi, Service::QueryApi, Service::Notifier, Service::Projector, Service::Validator];

    /// Its subcommand of this binary, its backend at the gateway and its key in the manifest.
    pub fn role(self) -> &'static str {
        match self {
            Service::CommandApi => "command-api",
            Service::QueryApi => "query-api",
            Service::Notifier => "notifier",
            Service::Projector => "projector",
            Service::Validator => "validator",
        }
    }
}

/// How a gateway rule matches a path (the Gateway API's two kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMatch {
    Exact(&'static str),
    /// Whole path segments: `/admin` matches `/admin` and `/admin/x`, not `/administrator`.
    Prefix(&'static str),
}

/// One match of a gateway rule and where it sends the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: Option<&'static str>,
    pub path: PathMatch,
    pub backend: Service,
}

/// The gateway's rules in order, first match wins: `ops/kubernetes/routes.yaml`, which a unit
/// test holds this equal to. Writes and reads share paths (POST /api/submissions is the command
/// API's, GET the query API's), so rules match methods.
pub const ROUTES: &[Route] = &[
    Route { method: Some("POST"), path: PathMatch::Exact("/api/submissions"), backend: Service::CommandApi },
    Route { method: Some("POST"), path: PathMatch::Exact("/api/batches"), backend: Service::CommandApi },
    Route { method: None, path: PathMatch::Prefix("/api/notification-settings"), backend: Service::Notifier },
    Route { method: None, path: PathMatch::Prefix("/api/webhooks"), backend: Service::Notifier },
    Route { method: None, path: PathMatch::Prefix("/api/deliveries"), backend: Service::Notifier },
    Route { method: None, path: PathMatch::Prefix("/admin"), backend: Service::Projector },
    Route { method: None, path: PathMatch::Prefix("/"), backend: Service::QueryApi },
];

/// One replica: its service, its number (from 1), where it serves, and where its health checks
/// and metrics are.
struct Replica {
    service: Service,
    index: usize,
    addr: SocketAddr,
    internal: SocketAddr,
}

/// Where everything listens: written to `DATA_DIR/deployed.json` once every part is ready.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The gateway: the UI and every API, as users reach them.
    pub gateway: String,
    /// The UI's own origin (`--ui-listen`), when the UI is served apart from the APIs.
    pub ui_origin: Option<String>,
    /// `bootstrap.servers` of the Kafka cluster.
    pub kafka: String,
    /// The directory of the children's logs (`ROLE-N.log`, `haproxy.log`).
    pub logs: PathBuf,
    /// Base URLs of each role's replicas, in order: the command APIs, query APIs and notifiers
    /// serve their APIs there, the projectors their admin endpoints, the validators their
    /// health checks.
    pub replicas: BTreeMap<String, Vec<String>>,
    /// Base URLs of each role's replicas' `/healthz`, `/readyz` and `/metrics`, in the same
    /// order: a listener of their own, which the gateway does not route to.
    pub internal: BTreeMap<String, Vec<String>>,
}

impl Manifest {
    /// Base URLs of the replicas of `service`.
    pub fn replicas_of(&self, service: Service) -> &[String] {
        self.replicas.get(service.role()).map_or(&[], Vec::as_slice)
    }

    /// Base URLs of the health checks and metrics of the replicas of `service`.
    pub fn internal_of(&self, service: Service) -> &[String] {
        self.internal.get(service.role()).map_or(&[], Vec::as_slice)
    }
}

/// A child process and its log.
struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &str, command: &mut Command, logs: &Path) -> anyhow::Result<Process> {
        let log = logs.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone().with_context(|| format!("cannot share {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Ctrl-C in the terminal reaches the owner only, which stops the children in order.
            .process_group(0)
            .kill_on_drop(true);
        local_kafka::die_with_parent(command);
        let program = command.as_std().get_program().to_string_lossy().into_owned();
        let child = command.spawn().with_context(|| format!("cannot run {program} for {name}"))?;
        tracing::debug!(name, pid = child.id(), "started");
        Ok(Process { name: name.to_owned(), child, log })
    }

    /// Waits until `url` answers 2xx; fails at once, with the end of its log, if the process exits.
    async fn wait_ready(&mut self, http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().with_context(|| format!("cannot watch {}", self.name))? {
                anyhow::bail!("{} exited while starting ({status}); the end of {}:\n{}", self.name, self.log.display(), self.log_tail());
            }
            if http.get(url).send().await.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                anyhow::bail!("{} was not ready at {url} after {READY_TIMEOUT:?}; see {}", self.name, self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM, then SIGKILL if it still runs after [`STOP_GRACE`].
    async fn terminate(&mut self) -> Option<ExitStatus> {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child's pid, which stays reserved until we reap it.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                tracing::warn!(name = %self.name, grace = ?STOP_GRACE, "ignored SIGTERM; killing it");
                let _ = self.child.kill().await;
                None
            }
        }
    }

    /// Why it stopped: the error it ended with (without the backtrace `RUST_BACKTRACE` adds),
    /// or else the last lines of its log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        if let Some(start) = text.rfind("\nError: ").map(|at| at + 1).or_else(|| text.starts_with("Error: ").then_some(0)) {
            let error = &text[start..];
            return error.split("\nStack backtrace:").next().unwrap_or(error).trim_end().to_owned();
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// The running topology. Dropping it kills every child; [`Deployed::stop`] stops them in order.
pub struct Deployed {
    manifest: Manifest,
    manifest_path: PathBuf,
    gateway: Process,
    services: Vec<Process>,
    kafka: Cluster,
}

impl Deployed {
    /// Where everything listens (what `deployed.json` holds).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn manifest_path(&self) -> &Path {
        &self.manifest_path
    }

    /// The Kafka cluster the services run on.
    pub fn kafka(&self) -> &Cluster {
        &self.kafka
    }

    /// SIGKILLs the child named `name` (`ROLE-N`, as in the manifest's order), as a node failure
    /// would; it is not restarted, and [`Deployed::stop`] no longer counts it.
    pub async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let index = self.services.iter().position(|process| process.name == name).with_context(|| format!("no process {name}"))?;
        let mut process = self.services.remove(index);
        process.child.kill().await.with_context(|| format!("cannot kill {name}"))?;
        Ok(())
    }

    /// Runs until `shutdown` or until a child exits (a failure: the others are stopped then).
    pub async fn wait(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let failure = {
            let exits = std::iter::once(&mut self.gateway).chain(self.services.iter_mut()).map(|process| {
                Box::pin(async move {
                    let status = process.child.wait().await;
                    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    anyhow::anyhow!("{} exited ({status}); the end of {}:\n{}", process.name, process.log.display(), process.log_tail())
                })
            });
            tokio::select! {
                _ = shutdown.cancelled() => None,
                (error, _, _) = futures_util::future::select_all(exits) => Some(error),
            }
        };
        if let Some(error) = &failure {
            tracing::error!(error = %format!("{error:#}"), "a child exited; stopping the others");
        }
        let stopped = self.stop().await;
        failure.map_or(stopped, Err)
    }

    /// Stops the gateway, then every service (they finish and commit), then Kafka. Fails when a
    /// service did not exit cleanly.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.gateway.terminate().await;
        let exits = futures_util::future::join_all(self.services.iter_mut().map(|process| async {
            let status = process.terminate().await;
            (process.name.clone(), status)
        }))
        .await;
        self.kafka.stop().await;
        let unclean: Vec<String> = exits
            .into_iter()
            .filter(|(_, status)| !status.is_some_and(|s| s.success()))
            .map(|(name, status)| format!("{name} ({status:?})"))
            .collect();
        anyhow::ensure!(unclean.is_empty(), "did not stop cleanly: {}", unclean.join(", "));
        Ok(())
    }
}

/// Starts Kafka, the services and the gateway; returns once every part answers.
pub async fn start(config: DeployedConfig) -> anyhow::Result<Deployed> {
    let binary = match &config.binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe().context("cannot find this program's path to run the services")?,
    };
    let Some(dist) = &config.kafka_dist else {
        anyhow::bail!("no Apache Kafka to run: give --kafka-dist DIR (./scripts/run-deployed does that for you)");
    };
    let logs = config.data_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    // A previous run's addresses must not be mistaken for this one's.
    let manifest_path = config.data_dir.join("deployed.json");
    let _ = std::fs::remove_file(&manifest_path);
    crate::ensure_database(&config.database_url).await?;

    // One block of ports for the services and any gateway port left to pick.
    let replicas = Service::ALL.iter().flat_map(|&service| (1..=REPLICAS).map(move |index| (service, index)));
    let base = local_kafka::free_port_block((Service::ALL.len() * REPLICAS * 2 + 2) as u16)?;
    let mut ports = base..;
    let mut next_addr = || SocketAddr::from(([127, 0, 0, 1], ports.next().expect("an unbounded range")));
    let replicas: Vec<Replica> = replicas
        .map(|(service, index)| {
            let addr = next_addr();
            // A validator serves nothing but its health checks and metrics.
            let internal = if service == Service::Validator { addr } else { next_addr() };
            Replica { service, index, addr, internal }
        })
        .collect();
    let mut pick = |addr: SocketAddr| if addr.port() == 0 { next_addr() } else { addr };
    let gateway = pick(config.listen);
    let ui = config.ui_listen.map(&mut pick);

    let mut cluster_config = ClusterConfig::new(config.data_dir.join("kafka"), KAFKA_NODES);
    cluster_config.base_port = (config.kafka_port != 0).then_some(config.kafka_port);
    cluster_config.heap_mb = config.kafka_heap_mb;
    cluster_config.jvm = config.kafka_jvm;
    let dist = local_kafka::Distribution::at(dist)?;
    let kafka = Cluster::start(dist, cluster_config).await.with_context(|| format!("cannot start Apache Kafka in {}", config.data_dir.display()))?;
    // Created here, once, rather than raced by ten services starting together.
    let topic = KafkaArgs {
        partitions: config.kafka_partitions,
        replication_factor: i32::from(KAFKA_NODES),
        min_insync_replicas: Some(2),
        ..KafkaArgs::for_brokers(kafka.bootstrap_servers())
    };
    topic.ensure_topic().await.context("cannot create the topic")?;

    let settings = Settings { config: &config, topic: &topic, gateway: format!("http://{gateway}"), ui_origin: ui.map(|ui| format!("http://{ui}")) };
    let mut services = Vec::new();
    for replica in &replicas {
        let (service, index) = (replica.service, replica.index);
        let mut command = Command::new(&binary);
        command.arg(service.role()).args(settings.args(replica)).env("DATABASE_URL", &config.database_url);
        // The gateway reaches every service from loopback: its X-Forwarded-For names the client.
        command.env("TRUSTED_PROXIES", "127.0.0.1/32");
        if let (Service::Notifier | Service::QueryApi, Some(smtp)) = (service, &config.smtp_url) {
            command.env("SMTP_URL", smtp.expose());
        }
        command.env("PUBLIC_URL", ui.map_or_else(|| format!("http://{gateway}"), |ui| format!("http://{ui}")));
        services.push(Process::spawn(&format!("{}-{index}", service.role()), &mut command, &logs)?);
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let ready_urls: Vec<String> = replicas.iter().map(|replica| format!("http://{}/readyz", replica.internal)).collect();
    futures_util::future::try_join_all(services.iter_mut().zip(&ready_urls).map(|(process, url)| process.wait_ready(&http, url))).await?;

    let haproxy_config = config.data_dir.join("haproxy.cfg");
    let text = haproxy_config_text(gateway, ui, &replicas);
    std::fs::write(&haproxy_config, text).with_context(|| format!("cannot write {}", haproxy_config.display()))?;
    let mut command = Command::new(&config.haproxy);
    // -db: in the foreground, one process, so it dies with this one.
    command.arg("-db").arg("-f").arg(&haproxy_config);
    let mut proxy = Process::spawn("haproxy", &mut command, &logs).context("is HAProxy installed? (Debian package haproxy; --haproxy PATH)")?;
    // The gateway does not route health checks: it is ready once it reaches a query API.
    for origin in std::iter::once(&settings.gateway).chain(&settings.ui_origin) {
        proxy.wait_ready(&http, &format!("{origin}/api/openapi.json")).await?;
    }

    let (mut by_role, mut internal): (BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>) = Default::default();
    for replica in &replicas {
        by_role.entry(replica.service.role().to_owned()).or_default().push(format!("http://{}", replica.addr));
        internal.entry(replica.service.role().to_owned()).or_default().push(format!("http://{}", replica.internal));
    }
    let manifest = Manifest {
        gateway: settings.gateway.clone(),
        ui_origin: settings.ui_origin.clone(),
        kafka: kafka.bootstrap_servers(),
        logs,
        replicas: by_role,
        internal,
    };
    let json = serde_json::to_string_pretty(&manifest)?;
    std::fs::write(&manifest_path, json).with_context(|| format!("cannot write {}", manifest_path.display()))?;
    tracing::info!(gateway = %manifest.gateway, manifest = %manifest_path.display(), "the deployed topology is ready");
    Ok(Deployed { manifest, manifest_path, gateway: proxy, services, kafka })
}

/// What every replica's command line is made from.
struct Settings<'a> {
    config: &'a DeployedConfig,
    topic: &'a KafkaArgs,
    gateway: String,
    ui_origin: Option<String>,
}

impl Settings<'_> {
    /// The flags of `replica` (the database comes in its environment).
    fn args(&self, replica: &Replica) -> Vec<String> {
        let (service, addr) = (replica.service, replica.addr);
        let mut args: Vec<String> = Vec::new();
        let mut flag = |name: &str, value: String| args.extend([format!("--{name}"), value]);
        if service != Service::QueryApi {
            flag("kafka-brokers", self.topic.bootstrap_servers().to_owned());
            flag("kafka-partitions", self.topic.partitions.to_string());
            flag("kafka-replication-factor", self.topic.replication_factor.to_string());
            if let Some(min_insync) = self.topic.min_insync_replicas {
                flag("kafka-min-insync-replicas", min_insync.to_string());
            }
        }
        match service {
            Service::CommandApi | Service::QueryApi | Service::Notifier => flag("listen", addr.to_string()),
            Service::Projector => flag("admin-listen", addr.to_string()),
            Service::Validator => flag("health-listen", addr.to_string()),
        }
        if service != Service::Validator {
            flag("internal-listen", replica.internal.to_string());
        }
        if service == Service::QueryApi {
            flag("ui-dir", self.config.ui_dir.display().to_string());
        }
        if let Some(ui_origin) = &self.ui_origin {
            if service != Service::Validator {
                flag("cors-allowed-origins", ui_origin.clone());
            }
            if service == Service::QueryApi {
                for api in ["ui-command-api-url", "ui-notifier-api-url", "ui-admin-api-url"] {
                    flag(api, self.gateway.clone());
                }
            }
        }
        if service == Service::Notifier && self.config.allow_private_webhook_targets {
            args.push("--allow-private-targets".into());
        }
        args
    }
}

/// HAProxy's configuration: the gateway frontend routing by [`ROUTES`], the UI's frontend
/// when asked for, and a backend per service balancing round-robin over its replicas, each
/// checked on `/readyz` (on its internal port) so a replica that is down gets no requests.
fn haproxy_config_text(gateway: SocketAddr, ui: Option<SocketAddr>, replicas: &[Replica]) -> String {
    let mut text = String::from(
        "# Written by `content-processor deployed` at every start; edits are lost.\n\
         global\n\
        \x20   log stdout format raw local0 info\n\
        \x20   maxconn 4096\n\
         \n\
         defaults\n\
        \x20   mode http\n\
        \x20   log global\n\
        \x20   option httplog\n\
        \x20   # X-Forwarded-For: the client's address.\n\
        \x20   option forwardfor\n\
        \x20   # A request whose connection to a replica fails (one that just died, before the\n\
        \x20   # health check noticed) goes to the other replica: it never reached the first.\n\
        \x20   retries 2\n\
        \x20   option redispatch 1\n\
        \x20   timeout connect 5s\n\
        \x20   timeout http-request 10s\n\
        \x20   timeout http-keep-alive 10s\n\
        \x20   # Inactivity limits, not request limits: a live stream (the query API sends a\n\
        \x20   # keep-alive every 15 s) stays open as long as its page, as routes.yaml's\n\
        \x20   # `timeouts: {request: 0s}` wants; HAProxy has no limit on a whole request.\n\
        \x20   timeout client 60s\n\
        \x20   timeout server 60s\n",
    );
    let frontend = |text: &mut String, name: &str, addr: SocketAddr| {
        text.push_str(&format!(
            "\nfrontend {name}\n    bind {addr}\n    # What the client spoke to the gateway, whatever it claims.\n    http-request set-header X-Forwarded-Proto http\n"
        ));
    };
    frontend(&mut text, "gateway", gateway);
    for route in ROUTES {
        let method = route.method.map(|method| format!("{{ method {method} }} ")).unwrap_or_default();
        let backend = route.backend.role();
        match route.path {
            PathMatch::Prefix("/") => text.push_str(&format!("    default_backend {backend}\n")),
            PathMatch::Exact(path) => text.push_str(&format!("    use_backend {backend} if {method}{{ path {path} }}\n")),
            PathMatch::Prefix(path) => {
                text.push_str(&format!("    use_backend {backend} if {method}{{ path {path} }} || {method}{{ path_beg {path}/ }}\n"))
            }
        }
    }
    if let Some(ui) = ui {
        frontend(&mut text, "ui", ui);
        text.push_str(&format!("    default_backend {}\n", Service::QueryApi.role()));
    }
    for service in [Service::CommandApi, Service::QueryApi, Service::Notifier, Service::Projector] {
        text.push_str(&format!(
            "\nbackend {}\n    balance roundrobin\n    option httpchk GET /readyz\n    default-server check inter 2s fall 2 rise 1\n",
            service.role()
        ));
        for replica in replicas.iter().filter(|replica| replica.service == service) {
            let (index, addr, port) = (replica.index, replica.addr, replica.internal.port());
            // `port`: where the health check goes.
            text.push_str(&format!("    server {}-{index} {addr} port {port}\n", service.role()));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gateway routes exactly as the production one: `ops/kubernetes/routes.yaml`.
    #[test]
    fn routes_are_those_of_the_kubernetes_gateway() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/kubernetes/routes.yaml");
        let routes: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut in_yaml = Vec::new();
        for rule in routes["spec"]["rules"].as_sequence().unwrap() {
            let backend = rule["backendRefs"][0]["name"].as_str().unwrap().to_owned();
            for matched in rule["matches"].as_sequence().unwrap() {
                let method = matched["method"].as_str().map(str::to_owned);
                let kind = matched["path"]["type"].as_str().unwrap().to_owned();
                let value = matched["path"]["value"].as_str().unwrap().to_owned();
                in_yaml.push((method, kind, value, backend.clone()));
            }
        }
        let here: Vec<_> = ROUTES
            .iter()
            .map(|route| {
                let (kind, value) = match route.path {
                    PathMatch::Exact(path) => ("Exact", path),
                    PathMatch::Prefix(path) => ("PathPrefix", path),
                };
                (route.method.map(str::to_owned), kind.to_owned(), value.to_owned(), route.backend.role().to_owned())
            })
            .collect();
        assert_eq!(here, in_yaml);
    }

    #[test]
    fn a_prefix_matches_whole_segments_and_methods_are_matched() {
        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let replica = |index, port| Replica { service: Service::CommandApi, index, addr: addr(port), internal: addr(port + 10) };
        let text = haproxy_config_text(addr(1), None, &[replica(1, 2), replica(2, 3)]);
        assert!(text.contains("use_backend command-api if { method POST } { path /api/submissions }\n"), "{text}");
        assert!(text.contains("use_backend projector if { path /admin } || { path_beg /admin/ }\n"), "{text}");
        assert!(text.contains("server command-api-1 127.0.0.1:2 port 12\n    server command-api-2 127.0.0.1:3 port 13\n"), "{text}");
        assert!(!text.contains("frontend ui"));
    }
}
