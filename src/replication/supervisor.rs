//! One supervised `litestream replicate` per replicated instance.
//!
//! Shaped like the embedded runtime's supervisor, and built from its
//! parts: each Litestream is the leader of its own session (a signal to
//! the group reaches it all), its output goes straight to a log file in the
//! instance's `logs/`, a pidfile with the `/proc` start time names it, and
//! one task per instance waits for its exit and starts it again with
//! back-off (1 s doubling to 30 s, back to 1 s after a minute of running).
//!
//! Like an instance, Litestream outlives the daemon — replication goes on
//! while the daemon is down or upgraded — and the next daemon adopts it
//! when it runs with the same configuration, or replaces it otherwise.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::model::InstanceName;
use crate::runtime::embedded::logfile;
use crate::runtime::embedded::process::{signal_group, Watched};
use crate::runtime::embedded::procfs::{self, PidRecord};

const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(30);
const STEADY: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where one instance's replication keeps its files: the config, the meta
/// dir and the pidfile under `replication/NAME/` in the data dir, the log
/// beside PocketBase's.
#[derive(Debug, Clone)]
pub struct ReplicaFiles {
    pub name: InstanceName,
    pub dir: PathBuf,
    pub db: PathBuf,
    pub log: PathBuf,
}

impl ReplicaFiles {
    pub fn config(&self) -> PathBuf {
        self.dir.join("litestream.yml")
    }
    pub fn meta(&self) -> PathBuf {
        self.dir.join("meta")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("litestream.pid")
    }
}

struct Slot {
    task: tokio::task::JoinHandle<()>,
    pid: Arc<Mutex<Option<u32>>>,
    /// The inode of `data.db` when replication started: another one means
    /// the database was replaced underneath Litestream.
    inode: Option<u64>,
    files: ReplicaFiles,
}

/// The supervised Litestream processes, by instance.
#[derive(Default)]
pub struct Replicator {
    slots: Mutex<HashMap<InstanceName, Slot>>,
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

impl Replicator {
    pub fn new() -> Self {
        Self::default()
    }

    /// The pid of an instance's Litestream, if it runs now; `None` inside
    /// when it is between restarts. The outer `None`: not supervised.
    pub fn state(&self, name: &InstanceName) -> Option<Option<u32>> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .get(name)
            .map(|s| *s.pid.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether the instance's `data.db` is another file than the one
    /// replication started on (PocketBase's own restore renames its
    /// backup's `data.db` into place).
    pub fn db_replaced(&self, name: &InstanceName) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(name).is_some_and(|s| match inode(&s.files.db) {
            Some(now) => s.inode != Some(now),
            None => false,
        })
    }

    /// Write the configuration and run Litestream with it, in place of
    /// whatever ran for this instance. A Litestream left running by a
    /// previous daemon with the same configuration is adopted instead.
    pub async fn start(
        &self,
        binary: PathBuf,
        files: ReplicaFiles,
        config_text: String,
    ) -> std::io::Result<()> {
        self.stop(&files.name, &files).await;
        std::fs::create_dir_all(files.meta())?;
        let unchanged = std::fs::read_to_string(files.config()).is_ok_and(|t| t == config_text);
        if !unchanged {
            crate::fsutil::atomic_write_mode(&files.config(), config_text.as_bytes(), 0o600)?;
        }
        let mut adopted = None;
        if let Ok(Some(rec)) = procfs::read_pidfile(&files.pid_file()) {
            if procfs::is_same_live_process(rec.pid, rec.starttime) {
                if unchanged {
                    if let Ok(w) = Watched::adopt(rec.pid, rec.starttime) {
                        if procfs::is_same_live_process(rec.pid, rec.starttime) {
                            logfile::note(&files.log, &format!("litestream {} adopted", rec.pid));
                            adopted = Some(w);
                        }
                    }
                }
                if adopted.is_none() {
                    stop_pid(rec.pid).await;
                }
            }
        }
        let pid = Arc::new(Mutex::new(adopted.as_ref().and_then(Watched::pid)));
        let task = tokio::spawn(supervise(binary, files.clone(), adopted, pid.clone()));
        let inode = inode(&files.db);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.insert(
            files.name.clone(),
            Slot {
                task,
                pid,
                inode,
                files,
            },
        );
        Ok(())
    }

    /// Stop an instance's Litestream (SIGTERM to its group, SIGKILL after
    /// a grace period), supervised or only named by its pidfile.
    pub async fn stop(&self, name: &InstanceName, files: &ReplicaFiles) {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if let Some(slot) = slot {
            slot.task.abort();
            let _ = slot.task.await;
            let pid = *slot.pid.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(pid) = pid {
                stop_pid(pid).await;
            }
        }
        if let Ok(Some(rec)) = procfs::read_pidfile(&files.pid_file()) {
            if procfs::is_same_live_process(rec.pid, rec.starttime) {
                stop_pid(rec.pid).await;
            }
        }
        let _ = procfs::remove_pidfile(&files.pid_file());
    }

    /// End the supervision tasks, leaving the processes running for the
    /// next daemon to adopt.
    pub fn shutdown(&self) {
        let slots: Vec<Slot> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        for slot in slots {
            slot.task.abort();
        }
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn stop_pid(pid: u32) {
    let Some(stat) = procfs::read_stat(pid) else {
        return;
    };
    let _ = signal_group(pid, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while procfs::is_same_live_process(pid, stat.starttime) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if procfs::is_same_live_process(pid, stat.starttime) {
        let _ = signal_group(pid, Signal::SIGKILL);
    }
}

fn spawn(binary: &Path, files: &ReplicaFiles) -> std::io::Result<(tokio::process::Child, u32)> {
    let log = logfile::open_for_append(&files.log)?;
    let log_err = log.try_clone()?;
    let mut command = tokio::process::Command::new(binary);
    command
        .arg("replicate")
        .arg("-config")
        .arg(files.config())
        .arg("-no-expand-env")
        .current_dir(&files.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(false);
    super::adjust_environment(command.as_std_mut());
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setsid, which is async-signal-safe.
    unsafe {
        command.as_std_mut().pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let child = command.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("litestream vanished before its pid was known"))?;
    Ok((child, pid))
}

async fn supervise(
    binary: PathBuf,
    files: ReplicaFiles,
    mut adopted: Option<Watched>,
    pid: Arc<Mutex<Option<u32>>>,
) {
    let mut delay = FIRST_DELAY;
    loop {
        let mut watched = match adopted.take() {
            Some(w) => w,
            None => match spawn(&binary, &files) {
                Ok((child, child_pid)) => {
                    *pid.lock().unwrap_or_else(|p| p.into_inner()) = Some(child_pid);
                    if let Some(stat) = procfs::read_stat(child_pid) {
                        let record = PidRecord {
                            pid: child_pid,
                            starttime: stat.starttime,
                        };
                        if let Err(e) = procfs::write_pidfile(&files.pid_file(), record) {
                            tracing::warn!(instance = %files.name, error = %e, "cannot write litestream's pidfile");
                        }
                    }
                    logfile::note(&files.log, &format!("litestream {child_pid} started"));
                    Watched::Child(child)
                }
                Err(e) => {
                    logfile::note(&files.log, &format!("cannot start litestream: {e}"));
                    tracing::warn!(instance = %files.name, error = %e, "cannot start litestream");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_DELAY);
                    continue;
                }
            },
        };
        let started = Instant::now();
        let exit = watched.wait().await;
        *pid.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if started.elapsed() > STEADY {
            delay = FIRST_DELAY;
        }
        logfile::note(
            &files.log,
            &format!(
                "litestream exited ({}), starting it again in {} ms",
                exit.describe(),
                delay.as_millis()
            ),
        );
        tracing::warn!(instance = %files.name, exit = %exit.describe(), "litestream exited, restarting it");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
}
