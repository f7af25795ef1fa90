//! `pockestrator serve`: flags and environment into a [`Config`], then the
//! daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::GlobalArgs;
use crate::config::Config;
use crate::release::SourceSpec;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The TCP API listener (bearer token required), or `none` for the
    /// unix socket only.
    #[arg(
        long,
        env = "POCKESTRATOR_LISTEN",
        default_value = "127.0.0.1:9000",
        value_name = "ADDR"
    )]
    pub listen: String,
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
    /// How long a starting instance may take to become healthy.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub start_timeout: Duration,
    /// Grace period between SIGTERM and SIGKILL when stopping an instance.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub stop_timeout: Duration,
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
}

/// Absolute form of a path given relative to the working directory: the
/// daemon keeps paths in its state, where a relative one would be ambiguous.
fn absolute(path: PathBuf) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(&path)?)
}

pub fn config(g: &GlobalArgs, args: ServeArgs) -> anyhow::Result<Config> {
    let mut cfg = Config::new(absolute(g.data_dir())?);
    cfg.listen = match args.listen.as_str() {
        "none" | "off" | "" => None,
        raw => Some(raw.parse::<SocketAddr>().map_err(|_| {
            anyhow::anyhow!("--listen {raw:?} is not an address: use e.g. 127.0.0.1:9000, or none")
        })?),
    };
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
    cfg.health_failures_before_restart = args.health_failures.max(1);
    cfg.start_timeout = args.start_timeout;
    cfg.stop_timeout = args.stop_timeout;
    cfg.compat.binary_path = args.pb_binary_path.map(absolute).transpose()?;
    cfg.compat.base_port = args.pb_base_port;
    if let Some(dir) = args.pb_user_dbs_path {
        cfg.compat.user_dbs_path = absolute(dir)?;
    }
    Ok(cfg)
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
