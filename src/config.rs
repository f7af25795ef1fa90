//! The daemon's configuration: flags and environment folded into one
//! validated [`Config`], passed explicitly to everything that needs it, and
//! the data-dir layout derived from it.

use std::net::SocketAddr;
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
}

/// Everything `pockestrator serve` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The TCP API listener (bearer token required). `None`: socket only.
    pub listen: Option<SocketAddr>,
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
}

impl Config {
    /// Defaults for a data dir: TCP API on 127.0.0.1:9000, GitHub then PyPI,
    /// health every 10 s.
    pub fn new(data_dir: PathBuf) -> Self {
        let compat = CompatConfig {
            binary_path: None,
            base_port: 9000,
            user_dbs_path: data_dir.join("user_dbs"),
        };
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9000))),
            release_sources: crate::release::default_sources(),
            health_interval: Duration::from_secs(10),
            health_failures_before_restart: 3,
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            compat,
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
    pub fn releases(&self) -> PathBuf {
        self.root.join("releases")
    }
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
