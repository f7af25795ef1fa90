//! Starting an instance process, signalling its process group and noticing
//! at once when it exits.
//!
//! Each instance is the leader of its own session and process group, so a
//! signal to the group reaches everything it started, and a Ctrl-C at the
//! daemon's terminal reaches none of it. Output goes straight into the log
//! file, never through a pipe to the daemon: the instance must outlive the
//! daemon, and a Go program writing to a broken pipe dies of SIGPIPE.
//!
//! PocketBase started without a superuser tries to open its installer in a
//! browser: it starts `xdg-open URL` and never waits for it, so every such
//! start left a zombie behind until PocketBase exited. PocketBase has no
//! setting for this, and it looks `xdg-open` up on its `PATH`. So the
//! instance's `PATH` starts with a directory of ours
//! ([`LaunchSpec::no_browser_dir`], [`LaunchSpec::path_without_browser`])
//! whose `xdg-open` is an empty file
//! marked executable: it is found first, the kernel refuses to execute it
//! (`ENOEXEC`), Go reaps the failed child at once and PocketBase, which
//! ignores the error, prints the installer's URL in its log as always.
//! Everything else on the `PATH` (hooks run programs) is found as before.
//!
//! Exit detection never polls on a timer when the kernel can tell us: our
//! own children are awaited (`wait`), and processes adopted after a daemon
//! restart, which are no longer our children, are watched through a pidfd
//! that becomes readable when the process exits.

use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;

use super::logfile;
use super::procfs;
use crate::runtime::LaunchSpec;

/// How often an adopted process is checked on a kernel without pidfds.
const POLL_WITHOUT_PIDFD: Duration = Duration::from_millis(100);

/// Spawn the instance: its own session, the nofile limit, stdin from
/// `/dev/null`, stdout and stderr appended to the log file. Returns the
/// child and its pid.
pub fn spawn(spec: &LaunchSpec, nofile: u64) -> std::io::Result<(tokio::process::Child, u32)> {
    let log = logfile::open_for_append(&spec.log_file())?;
    let log_err = log.try_clone()?;
    spec.write_no_browser()?;
    let mut command = tokio::process::Command::new(&spec.binary);
    if let Some(path) = spec.path_without_browser(std::env::var_os("PATH")) {
        command.env("PATH", path);
    }
    // The daemon's S3 and NATS secrets are for its backups, not for the
    // instances it runs.
    for name in crate::credentials::NAMES {
        command.env_remove(name);
    }
    command
        .envs(spec.env())
        .args(spec.args())
        .current_dir(&spec.instance_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(false);
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe system calls (setsid, getrlimit, setrlimit);
    // it allocates nothing and takes no locks.
    unsafe {
        command.as_std_mut().pre_exec(move || {
            nix::unistd::setsid()?;
            set_nofile(nofile)?;
            Ok(())
        });
    }
    let child = command.spawn()?;
    // A child that has not been waited for always has its pid.
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("the process vanished before its pid was known"))?;
    Ok((child, pid))
}

/// Set both limits of `RLIMIT_NOFILE` to `nofile`. Without the privilege
/// to raise the hard limit that far, settle for the hard limit we have.
/// (Go raises its soft limit to the hard limit at start, so the hard limit
/// is what counts.)
fn set_nofile(nofile: u64) -> nix::Result<()> {
    match setrlimit(Resource::RLIMIT_NOFILE, nofile, nofile) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => {
            let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
            setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
        }
        Err(e) => Err(e),
    }
}

/// Send `signal` to the process group led by `pid`. If the group is gone
/// but the process is not (it left the group), signal the process alone.
/// A group and process that are both gone is not an error.
pub fn signal_group(pid: u32, signal: Signal) -> nix::Result<()> {
    // 0 would mean our own process group and 1 is init: never ours.
    let raw = match i32::try_from(pid) {
        Ok(raw) if raw > 1 => raw,
        _ => return Err(nix::errno::Errno::EINVAL),
    };
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::ESRCH) => match kill(Pid::from_raw(raw), signal) {
            Err(nix::errno::Errno::ESRCH) => Ok(()),
            other => other,
        },
        Err(e) => Err(e),
    }
}

/// How a process ended, as far as we can know: an adopted process is not
/// our child, so its exit status is not ours to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitInfo {
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => match Signal::try_from(signal) {
                Ok(s) => format!("signal {}", s.as_str()),
                Err(_) => format!("signal {signal}"),
            },
            (None, None) => "unknown status".to_string(),
        }
    }
}

/// A running instance process that can be awaited.
pub enum Watched {
    /// Spawned by this supervisor.
    Child(tokio::process::Child),
    /// Adopted after a daemon restart, watched through a pidfd.
    Pidfd { pid: u32, fd: AsyncFd<OwnedFd> },
    /// Adopted on a kernel without pidfds: checked on a short timer.
    Polled { pid: u32, starttime: u64 },
}

impl Watched {
    /// Watch a process that is not our child. Opens the pidfd *before* the
    /// caller checks the start time, so that the fd cannot end up pointing
    /// at a process that reused the pid after the check.
    pub fn adopt(pid: u32, starttime: u64) -> std::io::Result<Watched> {
        let raw = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        let Some(rustix_pid) = raw else {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        };
        match rustix::process::pidfd_open(rustix_pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => {
                // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, so the
                // descriptor stays open and the same for its whole life.
                let fd =
                    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)? };
                Ok(Watched::Pidfd { pid, fd })
            }
            Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
                Ok(Watched::Polled { pid, starttime })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            Watched::Child(child) => child.id(),
            Watched::Pidfd { pid, .. } | Watched::Polled { pid, .. } => Some(*pid),
        }
    }

    /// Wait until the process has exited.
    pub async fn wait(&mut self) -> ExitInfo {
        match self {
            Watched::Child(child) => match child.wait().await {
                Ok(status) => ExitInfo {
                    code: status.code(),
                    signal: status.signal(),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot wait for instance process");
                    ExitInfo::default()
                }
            },
            Watched::Pidfd { pid, fd } => {
                // Readable means exited: there is nothing to read or clear.
                if let Err(e) = fd.readable().await {
                    tracing::warn!(pid = *pid, error = %e, "cannot watch adopted process, checking on a timer");
                    while procfs::is_alive(*pid) {
                        tokio::time::sleep(POLL_WITHOUT_PIDFD).await;
                    }
                }
                ExitInfo::default()
            }
            Watched::Polled { pid, starttime } => {
                while procfs::is_same_live_process(*pid, *starttime) {
                    tokio::time::sleep(POLL_WITHOUT_PIDFD).await;
                }
                ExitInfo::default()
            }
        }
    }
}
