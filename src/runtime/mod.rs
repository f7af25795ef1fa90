//! How instance processes run: the runtime seam and its implementations.
//!
//! [`Runtime`] is the small trait every way of running PocketBase
//! implements, and [`AnyRuntime`] the closed enum of the real ones. Today
//! there is one, the [`embedded`] supervisor (the default); a systemd
//! runtime plugs in later behind the same seam.
//!
//! A runtime knows nothing of desired state or health: it starts, stops,
//! restarts and adopts processes when told, restarts crashed ones by the
//! back-off policy in [`crate::model::backoff`], and reports what happens as
//! [`RuntimeEvent`]s.
//!
//! **Architecture Invariant:** instances outlive the daemon. Nothing in a
//! runtime kills an instance when the daemon exits, is killed or upgraded;
//! a restarted daemon adopts the running processes instead of restarting
//! them.

pub mod embedded;
pub mod systemd;

use std::ffi::OsString;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::backoff::BackoffPolicy;
use crate::model::{InstanceName, ResourceLimits};

/// The `PATH` when none is set: systemd's default for system services.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin";

/// Everything needed to run one instance: which binary, where its files
/// live, which port it listens on, and its own resource limits (applied by
/// the systemd runtime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    pub name: InstanceName,
    pub binary: PathBuf,
    pub instance_dir: PathBuf,
    pub port: u16,
    pub limits: ResourceLimits,
    /// The release deployed from git that runs, if any: its `pb_hooks`,
    /// `pb_migrations` and `pb_public` are used instead of the instance
    /// directory's, and PocketBase neither watches the hooks (a deploy
    /// restarts it; its watcher would restart the process behind the
    /// supervisor's back) nor writes migrations into the release.
    pub release: Option<PathBuf>,
    /// `binary` was built by that release (a PocketBase-based Go program):
    /// it gets only the flags every PocketBase has, and `PORT` and
    /// `DB_DIR` in its environment, as seed 003 says.
    pub release_binary: bool,
}

impl LaunchSpec {
    /// PocketBase's `--dir`: the databases and uploaded files.
    pub fn data_dir(&self) -> PathBuf {
        self.instance_dir.join("pb_data")
    }

    /// Where the code comes from: the release, or the instance directory.
    fn code_dir(&self) -> &std::path::Path {
        self.release.as_deref().unwrap_or(&self.instance_dir)
    }

    pub fn hooks_dir(&self) -> PathBuf {
        self.code_dir().join("pb_hooks")
    }

    pub fn migrations_dir(&self) -> PathBuf {
        self.code_dir().join("pb_migrations")
    }

    pub fn public_dir(&self) -> PathBuf {
        self.code_dir().join("pb_public")
    }

    /// Variables the process gets beyond the inherited environment.
    pub fn env(&self) -> Vec<(String, String)> {
        if !self.release_binary {
            return Vec::new();
        }
        vec![
            ("PORT".to_string(), self.port.to_string()),
            (
                "DB_DIR".to_string(),
                self.data_dir().to_string_lossy().into_owned(),
            ),
        ]
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.instance_dir.join("logs")
    }

    /// Where the process's stdout and stderr go (rotated by size).
    pub fn log_file(&self) -> PathBuf {
        self.logs_dir().join("pocketbase.log")
    }

    /// `"{pid} {starttime}\n"` of the running process, for adoption after a
    /// daemon restart.
    pub fn pid_file(&self) -> PathBuf {
        self.instance_dir.join("pocketbase.pid")
    }

    /// The command line after the binary. Every directory is passed
    /// explicitly: PocketBase guesses defaults relative to the current
    /// directory when its binary lives under a temporary directory.
    pub fn args(&self) -> Vec<OsString> {
        let flag = |name: &str, dir: PathBuf| {
            let mut arg = OsString::from(format!("--{name}="));
            arg.push(dir.as_os_str());
            arg
        };
        let mut args = vec![
            OsString::from("serve"),
            OsString::from(format!("--http=127.0.0.1:{}", self.port)),
            flag("dir", self.data_dir()),
        ];
        if self.release_binary {
            // A custom build may lack the flags of PocketBase's example
            // main (hooks, migrations, public files).
            return args;
        }
        args.extend([
            flag("hooksDir", self.hooks_dir()),
            flag("migrationsDir", self.migrations_dir()),
            flag("publicDir", self.public_dir()),
        ]);
        if self.release.is_some() {
            args.push(OsString::from("--hooksWatch=false"));
            args.push(OsString::from("--automigrate=false"));
        }
        args
    }

    /// Where the embedded supervisor keeps the `xdg-open` that PocketBase
    /// finds first on its `PATH` (see `embedded::process`): PocketBase
    /// started without a superuser tries to open its installer in a
    /// browser, and never reaps the child it starts for that.
    pub fn no_browser_dir(&self) -> PathBuf {
        self.instance_dir.join(".pockestrator").join("no-browser")
    }

    /// Put the non-executable `xdg-open` in [`Self::no_browser_dir`]
    /// unless it is there: an empty file marked executable, which the
    /// kernel refuses to run (`ENOEXEC`).
    pub fn write_no_browser(&self) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = self.no_browser_dir();
        let stub = dir.join("xdg-open");
        match std::fs::metadata(&stub) {
            Ok(meta)
                if meta.is_file() && meta.len() == 0 && meta.permissions().mode() & 0o111 != 0 =>
            {
                Ok(())
            }
            _ => {
                std::fs::create_dir_all(&dir)?;
                crate::fsutil::atomic_write_mode(&stub, b"", 0o755)
            }
        }
    }

    /// The instance's `PATH`: [`Self::no_browser_dir`] first, then
    /// `inherited` (or a default when unset). `None` when the directory
    /// cannot be on a `PATH` (it holds a `:`): the `PATH` then stays as it
    /// was.
    pub fn path_without_browser(&self, inherited: Option<OsString>) -> Option<OsString> {
        let inherited = inherited
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_PATH.into());
        let mut dirs = vec![self.no_browser_dir()];
        dirs.extend(std::env::split_paths(&inherited));
        std::env::join_paths(dirs).ok()
    }

    /// Create the instance's directories (like `mkdir -p`).
    pub fn create_layout(&self) -> io::Result<()> {
        for dir in [
            self.data_dir(),
            self.instance_dir.join("pb_hooks"),
            self.instance_dir.join("pb_migrations"),
            self.instance_dir.join("pb_public"),
            self.logs_dir(),
        ] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }
}

/// What a runtime reports about its processes.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RuntimeEvent {
    /// A process was started (by a start, a restart or after a crash).
    Spawned { name: InstanceName, pid: u32 },
    /// A process ended. `expected` is true when we stopped it. For an
    /// adopted process (not our child) `code` and `signal` are unknown.
    Exited {
        name: InstanceName,
        pid: u32,
        code: Option<i32>,
        signal: Option<i32>,
        expected: bool,
    },
    /// After a crash, the instance will be started again after `delay_ms`;
    /// `attempt` counts the crashes in the current window.
    RestartScheduled {
        name: InstanceName,
        attempt: u32,
        delay_ms: u64,
    },
    /// The instance crashed too often too fast: no more restarts until an
    /// explicit start. Its state is `failed`.
    CrashLoop { name: InstanceName, crashes: u32 },
    /// A process left running by a previous daemon is supervised again.
    Adopted { name: InstanceName, pid: u32 },
}

impl RuntimeEvent {
    pub fn name(&self) -> &InstanceName {
        match self {
            RuntimeEvent::Spawned { name, .. }
            | RuntimeEvent::Exited { name, .. }
            | RuntimeEvent::RestartScheduled { name, .. }
            | RuntimeEvent::CrashLoop { name, .. }
            | RuntimeEvent::Adopted { name, .. } => name,
        }
    }
}

/// What a runtime knows about one instance right now.
#[derive(Clone, Debug)]
pub struct Observed {
    pub pid: Option<u32>,
    pub phase: Phase,
    /// Automatic restarts since the last explicit start or adoption.
    pub restarts: u32,
    /// When the current process started, or when the current phase began
    /// if there is no process.
    pub since: DateTime<Utc>,
}

/// The process side of an instance's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A process is up (it may not be healthy yet: that is for the prober).
    Running,
    /// It crashed and a restart is scheduled.
    BackingOff,
    /// It crashed too often: given up until an explicit start.
    CrashLoop,
    /// Not running, on purpose (or never started).
    Stopped,
}

/// Settings of the embedded supervisor.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    /// How long a stop waits after SIGTERM before it sends SIGKILL.
    pub stop_timeout: Duration,
    /// `RLIMIT_NOFILE` of every instance.
    pub nofile: u64,
    /// A log file larger than this is rotated.
    pub log_max_bytes: u64,
    /// How many rotated log files to keep.
    pub log_keep: usize,
    pub backoff: BackoffPolicy,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            stop_timeout: Duration::from_secs(10),
            nofile: 4096,
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 5,
            backoff: BackoffPolicy::default(),
        }
    }
}

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("instance {0} is already running: stop it first")]
    AlreadyRunning(InstanceName),
    #[error("instance {0} is not managed by this runtime: start it first")]
    NotManaged(InstanceName),
    #[error("cannot start {}: check that the PocketBase binary exists and is executable", .binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot use {}: check its permissions and free disk space", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot send {signal} to instance {name} (process group {pid}): the daemon must run as the instance's user or as root")]
    Signal {
        name: InstanceName,
        pid: u32,
        signal: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("instance {name} (pid {pid}) has not exited even after SIGKILL: it may be stuck in the kernel (check `ps -o stat {pid}`)")]
    Unkillable { name: InstanceName, pid: u32 },
    #[error("systemd failed for {unit}: {reason}; see `systemctl status {unit}` and `journalctl -u {unit}`")]
    Systemd { unit: String, reason: String },
    #[error("the unit user {user} cannot reach {}: {} (mode {mode:o}) does not let it through; make it traversable (chmod o+x), move the instance, or run the daemon with --unit-user root", .target.display(), .blocker.display())]
    Unreachable {
        user: String,
        target: PathBuf,
        blocker: PathBuf,
        mode: u32,
    },
}

/// The seam every runtime implements (the embedded supervisor now, systemd
/// later).
pub trait Runtime: Send + Sync {
    /// Spawn and supervise the instance; returns its pid. `AlreadyRunning`
    /// if it is alive.
    fn start(&self, spec: LaunchSpec) -> impl Future<Output = Result<u32, RuntimeError>> + Send;

    /// SIGTERM to the process group, SIGKILL to the group after the stop
    /// timeout; waits for the exit; no restart afterwards. `Ok` if it was
    /// not running.
    fn stop(&self, name: &InstanceName) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Stop, then start with the same spec.
    fn restart(
        &self,
        name: &InstanceName,
    ) -> impl Future<Output = Result<u32, RuntimeError>> + Send;

    /// Supervise the process a previous daemon left running, without
    /// restarting it: `Some(pid)` if the pidfile names a live process with
    /// the recorded start time, otherwise `None` (a stale pidfile is
    /// removed).
    fn adopt(
        &self,
        spec: LaunchSpec,
    ) -> impl Future<Output = Result<Option<u32>, RuntimeError>> + Send;

    fn observe(&self, name: &InstanceName) -> Option<Observed>;

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RuntimeEvent>;

    /// Drop the bookkeeping of a deleted instance (only when it is not
    /// running).
    fn forget(&self, name: &InstanceName);
}

/// The runtimes there are.
pub enum AnyRuntime {
    Embedded(embedded::Supervisor),
    Systemd(Box<systemd::SystemdRuntime<systemd::RealSystemctl>>),
}

impl AnyRuntime {
    /// Remove what the runtime keeps for a deleted instance beyond its
    /// process (systemd: stop, disable and delete its unit).
    pub async fn uninstall(&self, name: &InstanceName) -> Result<(), RuntimeError> {
        match self {
            AnyRuntime::Embedded(r) => {
                r.forget(name);
                Ok(())
            }
            AnyRuntime::Systemd(r) => r.remove(name).await,
        }
    }
}

impl Runtime for AnyRuntime {
    async fn start(&self, spec: LaunchSpec) -> Result<u32, RuntimeError> {
        match self {
            AnyRuntime::Embedded(r) => r.start(spec).await,
            AnyRuntime::Systemd(r) => r.start(spec).await,
        }
    }

    async fn stop(&self, name: &InstanceName) -> Result<(), RuntimeError> {
        match self {
            AnyRuntime::Embedded(r) => r.stop(name).await,
            AnyRuntime::Systemd(r) => r.stop(name).await,
        }
    }

    async fn restart(&self, name: &InstanceName) -> Result<u32, RuntimeError> {
        match self {
            AnyRuntime::Embedded(r) => r.restart(name).await,
            AnyRuntime::Systemd(r) => r.restart(name).await,
        }
    }

    async fn adopt(&self, spec: LaunchSpec) -> Result<Option<u32>, RuntimeError> {
        match self {
            AnyRuntime::Embedded(r) => r.adopt(spec).await,
            AnyRuntime::Systemd(r) => r.adopt(spec).await,
        }
    }

    fn observe(&self, name: &InstanceName) -> Option<Observed> {
        match self {
            AnyRuntime::Embedded(r) => r.observe(name),
            AnyRuntime::Systemd(r) => r.observe(name),
        }
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RuntimeEvent> {
        match self {
            AnyRuntime::Embedded(r) => r.subscribe(),
            AnyRuntime::Systemd(r) => r.subscribe(),
        }
    }

    fn forget(&self, name: &InstanceName) {
        match self {
            AnyRuntime::Embedded(r) => r.forget(name),
            AnyRuntime::Systemd(r) => r.forget(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn spec() -> LaunchSpec {
        LaunchSpec {
            name: InstanceName::parse("moots").unwrap(),
            binary: PathBuf::from("/opt/pb/pocketbase"),
            instance_dir: PathBuf::from("/var/lib/pockestrator/instances/moots"),
            port: 8091,
            limits: Default::default(),
            release: None,
            release_binary: false,
        }
    }

    #[test]
    fn the_no_browser_dir_comes_first_on_the_path() {
        let spec = spec();
        assert_eq!(
            spec.path_without_browser(Some(OsString::from("/usr/bin:/bin"))),
            Some(OsString::from(
                "/var/lib/pockestrator/instances/moots/.pockestrator/no-browser:/usr/bin:/bin"
            ))
        );
        for unset in [None, Some(OsString::new())] {
            assert_eq!(
                spec.path_without_browser(unset),
                Some(OsString::from(
                    "/var/lib/pockestrator/instances/moots/.pockestrator/no-browser:\
                     /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
                ))
            );
        }
        // A directory with a `:` cannot be on a PATH: the PATH stays as it was.
        let colon = LaunchSpec {
            instance_dir: PathBuf::from("/srv/a:b"),
            ..spec
        };
        assert_eq!(colon.path_without_browser(None), None);
    }

    #[test]
    fn the_no_browser_stub_is_an_empty_executable_written_once() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let spec = LaunchSpec {
            instance_dir: tmp.path().to_path_buf(),
            ..spec()
        };
        spec.write_no_browser().unwrap();
        let stub = spec.no_browser_dir().join("xdg-open");
        let meta = std::fs::metadata(&stub).unwrap();
        assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (0, 0o755));
        // A stub that was changed is put back; an intact one is left alone.
        std::fs::write(&stub, "#!/bin/sh\n").unwrap();
        spec.write_no_browser().unwrap();
        assert_eq!(std::fs::metadata(&stub).unwrap().len(), 0);
        let before = std::fs::metadata(&stub).unwrap().modified().unwrap();
        spec.write_no_browser().unwrap();
        assert_eq!(
            std::fs::metadata(&stub).unwrap().modified().unwrap(),
            before
        );
    }

    #[test]
    fn paths_and_arguments() {
        let spec = spec();
        let shown = format!(
            "{}\n{}\n{}\n{:#?}",
            spec.data_dir().display(),
            spec.log_file().display(),
            spec.pid_file().display(),
            spec.args()
        );
        expect![[r#"
            /var/lib/pockestrator/instances/moots/pb_data
            /var/lib/pockestrator/instances/moots/logs/pocketbase.log
            /var/lib/pockestrator/instances/moots/pocketbase.pid
            [
                "serve",
                "--http=127.0.0.1:8091",
                "--dir=/var/lib/pockestrator/instances/moots/pb_data",
                "--hooksDir=/var/lib/pockestrator/instances/moots/pb_hooks",
                "--migrationsDir=/var/lib/pockestrator/instances/moots/pb_migrations",
                "--publicDir=/var/lib/pockestrator/instances/moots/pb_public",
            ]"#]]
        .assert_eq(&shown);
    }

    #[test]
    fn layout_is_created_idempotently() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = LaunchSpec {
            instance_dir: tmp.path().join("moots"),
            ..spec()
        };
        spec.create_layout().unwrap();
        spec.create_layout().unwrap();
        let mut made: Vec<String> = std::fs::read_dir(&spec.instance_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        made.sort();
        expect![[r#"["logs", "pb_data", "pb_hooks", "pb_migrations", "pb_public"]"#]]
            .assert_eq(&format!("{made:?}"));
    }

    #[test]
    fn events_serialize_with_a_tag() {
        let event = RuntimeEvent::Exited {
            name: InstanceName::parse("moots").unwrap(),
            pid: 42,
            code: None,
            signal: Some(9),
            expected: false,
        };
        expect![[
            r#"{"event":"exited","name":"moots","pid":42,"code":null,"signal":9,"expected":false}"#
        ]]
        .assert_eq(&serde_json::to_string(&event).unwrap());
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let name = InstanceName::parse("moots").unwrap();
        let errors = [
            RuntimeError::AlreadyRunning(name.clone()),
            RuntimeError::NotManaged(name.clone()),
            RuntimeError::Spawn {
                binary: PathBuf::from("/opt/pb/pocketbase"),
                source: io::Error::from(io::ErrorKind::NotFound),
            },
            RuntimeError::Unkillable { name, pid: 7 },
        ];
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        expect![[r#"
            instance moots is already running: stop it first
            instance moots is not managed by this runtime: start it first
            cannot start /opt/pb/pocketbase: check that the PocketBase binary exists and is executable
            instance moots (pid 7) has not exited even after SIGKILL: it may be stuck in the kernel (check `ps -o stat 7`)"#]]
        .assert_eq(&shown.join("\n"));
    }
}
