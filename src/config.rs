//! The daemon's configuration: flags and environment folded into one
//! validated [`Config`], passed explicitly to everything that needs it, and
//! the data-dir layout derived from it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::release::SourceSpec;

/// Seed 001's settings for its per-user API (`PB_BINARY_PATH`,
/// `PB_BASE_PORT`, `PB_USER_DBS_PATH`).
#[derive(Debug, Clone)]
pub struct CompatConfig {
    /// The PocketBase binary user instances run. `None`: the newest
    /// installed release, or `latest` from the release sources.
    pub binary_path: Option<PathBuf>,
    /// Ports are `base_port + hash(user id) % 1000`, then the next free one.
    pub base_port: u16,
    /// Where each user's `pb_user_{id}` data directory lives.
    pub user_dbs_path: PathBuf,
    /// How long a user's instance may be idle before it sleeps (`None`:
    /// never).
    pub idle_timeout: Option<crate::model::IdleTimeout>,
}

/// Which runtime runs instance processes (`serve --runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// The daemon's own supervisor (the default).
    Embedded,
    /// One systemd unit per instance.
    Systemd,
}

/// Settings of the systemd runtime.
#[derive(Debug, Clone)]
pub struct SystemdSettings {
    pub unit_dir: PathBuf,
    /// The unit name, `{name}` standing for the instance name.
    pub unit_pattern: String,
    pub systemctl: PathBuf,
    pub user: crate::runtime::systemd::UnitUser,
    pub log: crate::runtime::systemd::UnitLog,
    /// `[Service]` settings replacing or adding to the rendered ones.
    pub overrides: Vec<(String, String)>,
}

impl Default for SystemdSettings {
    fn default() -> Self {
        Self {
            unit_dir: PathBuf::from(crate::runtime::systemd::DEFAULT_UNIT_DIR),
            unit_pattern: crate::runtime::systemd::DEFAULT_UNIT_PATTERN.to_string(),
            systemctl: PathBuf::from("systemctl"),
            user: crate::runtime::systemd::UnitUser::Named("pockestrator".to_string()),
            log: crate::runtime::systemd::UnitLog::InstanceFile,
            overrides: Vec::new(),
        }
    }
}

/// Which router sends requests to instances (`serve --router`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RouterKind {
    /// The daemon's own reverse proxy (`--proxy-listen`).
    Embedded,
    /// Caddy, through its admin API (`--caddy-admin`).
    Caddy,
    /// Managed blocks in a Caddyfile, then `caddy reload`.
    Caddyfile,
    /// No routing: instances answer on 127.0.0.1:PORT only.
    None,
}

/// How requests reach instances.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub kind: RouterKind,
    /// The embedded proxy's listener.
    pub proxy_listen: SocketAddr,
    /// With the Caddy routers: where the wake proxy listens (asleep
    /// instances' Caddy routes point there). Port 0: one the system picks.
    pub wake_listen: SocketAddr,
    /// Instances answer at `NAME.BASE_DOMAIN` unless they have their own.
    pub base_domain: String,
    /// Peers whose `X-Forwarded-For` the embedded proxy keeps.
    pub trusted_proxies: Vec<IpAddr>,
    /// Request body limit (seed 000: 10 MB).
    pub max_body_bytes: u64,
    pub caddy_admin: String,
    pub caddy_listen: Vec<String>,
    pub caddy_tls: crate::router::caddy::CaddyTls,
    pub caddyfile: PathBuf,
    pub caddy_bin: PathBuf,
    /// A command line replacing `caddy reload --config PATH --adapter caddyfile`.
    pub caddy_reload_cmd: Option<Vec<String>>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            kind: RouterKind::Embedded,
            proxy_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            wake_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            base_domain: "localhost".to_string(),
            trusted_proxies: Vec::new(),
            max_body_bytes: crate::router::DEFAULT_MAX_BODY_BYTES,
            caddy_admin: "http://127.0.0.1:2019".to_string(),
            caddy_listen: vec![":80".to_string(), ":443".to_string()],
            caddy_tls: crate::router::caddy::CaddyTls::Auto,
            caddyfile: PathBuf::from("/etc/caddy/Caddyfile"),
            caddy_bin: PathBuf::from("caddy"),
            caddy_reload_cmd: None,
        }
    }
}

impl RoutingConfig {
    /// How the outside reaches instances through this router, if at all.
    pub fn public_endpoint(&self) -> Option<crate::model::routing::PublicEndpoint> {
        use crate::model::routing::PublicEndpoint;
        use crate::router::caddy::CaddyTls;
        match self.kind {
            RouterKind::None => None,
            RouterKind::Embedded => Some(PublicEndpoint {
                scheme: "http",
                port: Some(self.proxy_listen.port()),
            }),
            RouterKind::Caddy | RouterKind::Caddyfile => {
                let first_port = |wanted: u16| {
                    self.caddy_listen
                        .iter()
                        .filter_map(|a| a.rsplit(':').next()?.parse::<u16>().ok())
                        .find(|p| *p == wanted)
                        .or_else(|| {
                            self.caddy_listen
                                .iter()
                                .filter_map(|a| a.rsplit(':').next()?.parse::<u16>().ok())
                                .next()
                        })
                };
                match self.caddy_tls {
                    CaddyTls::Off => Some(PublicEndpoint {
                        scheme: "http",
                        port: first_port(80),
                    }),
                    _ => Some(PublicEndpoint {
                        scheme: "https",
                        port: first_port(443),
                    }),
                }
            }
        }
    }
}

/// Everything `pockestrator serve` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The TCP API listener (bearer token required). `None`: socket only.
    pub listen: Option<SocketAddr>,
    /// A listener serving only `GET /metrics`, without a token.
    pub metrics_listen: Option<SocketAddr>,
    pub release_sources: Vec<SourceSpec>,
    pub health_interval: Duration,
    /// Consecutive failed health checks of a live process before it is
    /// restarted.
    pub health_failures_before_restart: u32,
    /// How long a new or restarted instance may take to answer its health
    /// endpoint before the start counts as failed.
    pub start_timeout: Duration,
    /// SIGTERM → SIGKILL grace period.
    pub stop_timeout: Duration,
    pub compat: CompatConfig,
    pub routing: RoutingConfig,
    pub runtime: RuntimeKind,
    pub systemd: SystemdSettings,
    /// The backup schedule (a cron expression) every new instance gets,
    /// with the default retention; `None`: none.
    pub backup_schedule: Option<String>,
    /// Where backups go when no `--to` is given (each instance's under
    /// `child(name)`); `None`: `backups/<instance>/` in the data dir.
    pub backup_to: Option<crate::model::Destination>,
    /// S3 and NATS credentials for remote destinations.
    pub credentials: crate::credentials::Credentials,
    /// The Litestream binary for continuous replication; `None`: the one
    /// on the `PATH`.
    pub litestream: Option<PathBuf>,
    /// How many pre-initialised data directories to keep ready for each
    /// PocketBase binary new instances were made with (0: none).
    pub pool_size: usize,
    /// Deploys from git: where local repositories may come from, who
    /// builds, where and within which limits, how many releases are kept.
    pub deploy: DeployConfig,
    /// The cluster to join (`serve --cluster`); `None`: this host alone.
    pub cluster: Option<ClusterConfig>,
}

/// The limits of one deploy's build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildLimits {
    /// The whole build (every command) must end within this.
    pub timeout: Duration,
    /// The resident memory of a command's processes, added up.
    pub memory_bytes: u64,
    /// The workspace (checkout, dependencies, output) may not grow past this.
    pub max_size_bytes: u64,
}

impl Default for BuildLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            memory_bytes: 2 << 30,
            max_size_bytes: 2 << 30,
        }
    }
}

/// How deploys from git run.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// Directories `file://` repositories may be under (none by default).
    pub git_allow_dirs: Vec<PathBuf>,
    /// Who builds when the daemon runs as root (`None`: `nobody`).
    pub build_user: Option<String>,
    /// Where build workspaces are made (`None`: see `Config::build_root`).
    pub build_dir: Option<PathBuf>,
    pub limits: BuildLimits,
    /// The Go toolchain's `go` (`None`: `go` on the `PATH`, if any).
    pub go: Option<PathBuf>,
    /// Releases kept per instance for rollbacks (the current one besides).
    pub keep_releases: usize,
    pub fetch_timeout: Duration,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            git_allow_dirs: Vec::new(),
            build_user: None,
            build_dir: None,
            limits: BuildLimits::default(),
            go: None,
            keep_releases: 5,
            fetch_timeout: Duration::from_secs(300),
        }
    }
}

impl Config {
    /// Defaults for a data dir: TCP API on 127.0.0.1:9000, GitHub then PyPI,
    /// health every 10 s.
    pub fn new(data_dir: PathBuf) -> Self {
        let compat = CompatConfig {
            binary_path: None,
            base_port: 9000,
            user_dbs_path: data_dir.join("user_dbs"),
            idle_timeout: crate::model::IdleTimeout::from_secs(15 * 60),
        };
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9000))),
            metrics_listen: None,
            release_sources: crate::release::default_sources(),
            health_interval: Duration::from_secs(10),
            health_failures_before_restart: 3,
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            compat,
            routing: RoutingConfig::default(),
            runtime: RuntimeKind::Embedded,
            systemd: SystemdSettings::default(),
            backup_schedule: None,
            backup_to: None,
            credentials: crate::credentials::Credentials::default(),
            litestream: None,
            pool_size: 2,
            deploy: DeployConfig::default(),
            cluster: None,
            data_dir,
        }
    }

    pub fn layout(&self) -> Layout {
        Layout::new(&self.data_dir)
    }
}

/// Paths inside the data dir. One place, so no module invents its own.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("pockestrator.sock")
    }
    pub fn token(&self) -> PathBuf {
        self.root.join("token")
    }
    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.db")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }
    pub fn instances(&self) -> PathBuf {
        self.root.join("instances")
    }
    pub fn instance(&self, name: &str) -> PathBuf {
        self.instances().join(name)
    }
    pub fn archive(&self) -> PathBuf {
        self.root.join("archive")
    }
    /// An instance's releases deployed from git: `releases/` in its
    /// directory, one directory per release.
    pub fn app_releases(&self, instance_dir: &Path) -> PathBuf {
        instance_dir.join("releases")
    }
    pub fn release_dir(&self, instance_dir: &Path, release: &crate::model::ReleaseName) -> PathBuf {
        self.app_releases(instance_dir).join(release.as_str())
    }
    /// A deploy's log: `logs/deploy-ID.log` in the instance directory.
    pub fn deploy_log(&self, instance_dir: &Path, id: crate::model::DeployId) -> PathBuf {
        instance_dir.join("logs").join(format!("deploy-{id}.log"))
    }
    /// The bare repositories deploys fetch into, one per instance.
    pub fn git_cache(&self, name: &str) -> PathBuf {
        self.root.join("git-cache").join(format!("{name}.git"))
    }
    /// An instance's deploy secrets (webhook secret, repository token or
    /// SSH key), each a 0600 file, never in the state database.
    pub fn deploy_secrets(&self, name: &str) -> PathBuf {
        self.root.join("deploy-secrets").join(name)
    }
    /// Where builds run when they run as the daemon's own user.
    pub fn builds(&self) -> PathBuf {
        self.root.join("builds")
    }
    /// Where backups go by default: `backups/<instance>/`.
    pub fn backups(&self) -> PathBuf {
        self.root.join("backups")
    }

    /// Where archives for remote destinations are written before they
    /// are uploaded (on the data dir's filesystem, not `/tmp`).
    pub fn backup_staging(&self) -> PathBuf {
        self.backups().join(".staging")
    }

    /// The host's Litestream files (config, pidfile, log), outside every
    /// instance's `pb_data`.
    pub fn replication_dir(&self) -> PathBuf {
        self.root.join("replication")
    }
    /// The instances this host stopped because it could not renew their
    /// leases in its cluster, to start again once it can.
    pub fn fenced(&self) -> PathBuf {
        self.root.join("cluster-fenced.json")
    }
    /// Pre-initialised data directories for new instances:
    /// `pool/<binary key>/<id>/pb_data`.
    pub fn pool(&self) -> PathBuf {
        self.root.join("pool")
    }
    /// Litestream's state for one instance: `replication/<instance>/meta`.
    pub fn replication_meta(&self, name: &str) -> PathBuf {
        self.replication_dir().join(name).join("meta")
    }

    pub fn releases(&self) -> PathBuf {
        self.root.join("releases")
    }
}

/// The credentials of remote backup destinations: the daemon's
/// environment, then `file` (`serve --credentials`), whose values win.
pub fn load_credentials(
    file: Option<&Path>,
) -> Result<crate::credentials::Credentials, crate::credentials::CredentialsError> {
    crate::credentials::Credentials::load(file, |name| std::env::var(name).ok())
}

/// The default data dir: `/var/lib/pockestrator` for root, otherwise
/// `$XDG_DATA_HOME/pockestrator` (or `~/.local/share/pockestrator`).
pub fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/pockestrator");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("pockestrator");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/pockestrator");
    }
    PathBuf::from(".pockestrator")
}

/// What `serve --cluster` was given.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `nats://HOST:PORT` (or `tls://`), validated by
    /// [`crate::model::cluster::parse_servers`].
    pub servers: Vec<String>,
    pub host: crate::model::cluster::HostName,
    pub region: Option<crate::model::cluster::Region>,
    pub tags: Vec<crate::model::cluster::Tag>,
    pub prefix: crate::model::cluster::ClusterPrefix,
    /// `--nats-creds`: a `.creds` file (a JWT and an NKey seed).
    pub creds: Option<PathBuf>,
    /// How often this host says it is alive.
    pub heartbeat: Duration,
    /// A host silent for this long is reported `lost`.
    pub lost_after: Duration,
    /// How long a lease on an instance lasts unless renewed: a host that
    /// cannot renew stops its replicated instances before it ends, and
    /// another host brings them back from their replicas after it.
    pub lease_ttl: Duration,
    /// Copies of the cluster's buckets (`--cluster-replicas`, 3: a
    /// JetStream R3 stream survives one server lost).
    pub replicas: usize,
}
