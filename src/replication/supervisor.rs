//! The one supervised `litestream replicate` of the host, replicating
//! every replicated instance's `data.db`.
//!
//! One process for all, because of the figures of
//! `scripts/bench-replication` (ARCHITECTURE.md): at 50 databases one
//! Litestream per instance held 32 MiB each (1.6 GiB in all), one for the
//! host 51 MiB in all, and used less CPU too. The price: a change to one
//! instance's replication (on, off, a new generation) rewrites the shared
//! config and restarts the process, a pause of well under a second for the
//! others, which Litestream catches up on from their WAL (or with a new
//! snapshot when PocketBase checkpointed meanwhile).
//!
//! Built from the embedded runtime's parts: the process leads its own
//! session (a signal to the group reaches it all), its output goes straight
//! to `replication/litestream.log`, a pidfile with the `/proc` start time
//! names it, and a task waits for its exit and starts it again with
//! back-off (1 s doubling to 30 s, back to 1 s after a minute of running).
//!
//! Like an instance, Litestream outlives the daemon — replication goes on
//! while the daemon is down or upgraded — and the next daemon adopts it
//! when its configuration is unchanged, or replaces it otherwise.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::config::DbReplication;
use crate::model::InstanceName;
use crate::runtime::embedded::logfile;
use crate::runtime::embedded::process::{signal_group, Watched};
use crate::runtime::embedded::procfs::{self, PidRecord};

const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(30);
const STEADY: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The host's Litestream files, in `replication/` of the data dir (beside
/// each instance's meta dir, `replication/NAME/meta`).
#[derive(Debug, Clone)]
pub struct HostFiles {
    pub dir: PathBuf,
    /// The stores' credentials, handed to Litestream in its environment.
    pub credentials: crate::credentials::Credentials,
}

impl HostFiles {
    pub fn config(&self) -> PathBuf {
        self.dir.join("litestream.yml")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("litestream.pid")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("litestream.log")
    }
}

#[derive(Default)]
struct Host {
    dbs: BTreeMap<InstanceName, DbReplication>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The host's supervised Litestream and the databases it replicates.
pub struct Replicator {
    files: HostFiles,
    /// Held across a whole change (render, stop, start): changes apply one
    /// at a time, the last one with every database in it.
    host: tokio::sync::Mutex<Host>,
    pid: Arc<Mutex<Option<u32>>>,
    /// The inode of each `data.db` when it joined: another one means the
    /// database was replaced underneath Litestream.
    inodes: Mutex<HashMap<InstanceName, (PathBuf, Option<u64>)>>,
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

impl Replicator {
    pub fn new(dir: PathBuf, credentials: crate::credentials::Credentials) -> Self {
        Self {
            files: HostFiles { dir, credentials },
            host: tokio::sync::Mutex::new(Host::default()),
            pid: Arc::new(Mutex::new(None)),
            inodes: Mutex::new(HashMap::new()),
        }
    }

    /// Litestream's pid while it runs, if `name` is replicated by it; `None`
    /// inside when it is between restarts. The outer `None`: not replicated.
    pub fn state(&self, name: &InstanceName) -> Option<Option<u32>> {
        let inodes = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
        inodes
            .contains_key(name)
            .then(|| *self.pid.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether the instance's `data.db` is another file than the one
    /// replication started on (PocketBase's own restore renames its
    /// backup's `data.db` into place).
    pub fn db_replaced(&self, name: &InstanceName) -> bool {
        let inodes = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
        inodes
            .get(name)
            .is_some_and(|(db, at_start)| match inode(db) {
                Some(now) => *at_start != Some(now),
                None => false,
            })
    }

    /// Replicate `db` for `name` (in place of what it had), restarting
    /// the host's Litestream with the new configuration.
    pub async fn put(
        &self,
        binary: PathBuf,
        name: InstanceName,
        db: DbReplication,
    ) -> std::io::Result<()> {
        let mut host = self.host.lock().await;
        std::fs::create_dir_all(&db.meta)?;
        self.inodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), (db.db.clone(), inode(&db.db)));
        host.dbs.insert(name, db);
        self.apply(&mut host, binary, false).await
    }

    /// At daemon start: every recorded replication at once, adopting a
    /// Litestream that survived the previous daemon with this very
    /// configuration.
    pub async fn resume(
        &self,
        binary: PathBuf,
        dbs: Vec<(InstanceName, DbReplication)>,
    ) -> std::io::Result<()> {
        let mut host = self.host.lock().await;
        for (name, db) in dbs {
            std::fs::create_dir_all(&db.meta)?;
            self.inodes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), (db.db.clone(), inode(&db.db)));
            host.dbs.insert(name, db);
        }
        self.apply(&mut host, binary, true).await
    }

    /// Stop replicating `name`: Litestream goes on with the others (or
    /// stops when there are none). Returns when it no longer reads the
    /// database.
    pub async fn remove(&self, binary: Option<PathBuf>, name: &InstanceName) {
        let mut host = self.host.lock().await;
        self.inodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if host.dbs.remove(name).is_none() {
            return;
        }
        let applied = match binary {
            Some(binary) => self.apply(&mut host, binary, false).await,
            None => {
                host.dbs.clear();
                self.stop_process(&mut host).await;
                Ok(())
            }
        };
        if let Err(e) = applied {
            tracing::warn!(error = %e, "cannot restart litestream without {name}");
        }
    }

    async fn stop_process(&self, host: &mut Host) {
        if let Some(task) = host.task.take() {
            task.abort();
            let _ = task.await;
        }
        let pid = self.pid.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(pid) = pid {
            stop_pid(pid).await;
        }
        if let Ok(Some(rec)) = procfs::read_pidfile(&self.files.pid_file()) {
            if procfs::is_same_live_process(rec.pid, rec.starttime) {
                stop_pid(rec.pid).await;
            }
        }
        let _ = procfs::remove_pidfile(&self.files.pid_file());
    }

    async fn apply(&self, host: &mut Host, binary: PathBuf, adopt: bool) -> std::io::Result<()> {
        if host.dbs.is_empty() {
            self.stop_process(host).await;
            return Ok(());
        }
        std::fs::create_dir_all(&self.files.dir)?;
        let dbs: Vec<DbReplication> = host.dbs.values().cloned().collect();
        let text = super::render(&dbs);
        let unchanged = std::fs::read_to_string(self.files.config()).is_ok_and(|t| t == text);
        let mut adopted = None;
        if adopt && unchanged && host.task.is_none() {
            if let Ok(Some(rec)) = procfs::read_pidfile(&self.files.pid_file()) {
                if let Ok(w) = Watched::adopt(rec.pid, rec.starttime) {
                    if procfs::is_same_live_process(rec.pid, rec.starttime) {
                        logfile::note(
                            &self.files.log(),
                            &format!("litestream {} adopted", rec.pid),
                        );
                        adopted = Some(w);
                    }
                }
            }
        }
        if adopted.is_none() {
            self.stop_process(host).await;
            if !unchanged {
                crate::fsutil::atomic_write_mode(&self.files.config(), text.as_bytes(), 0o600)?;
            }
        }
        *self.pid.lock().unwrap_or_else(|p| p.into_inner()) =
            adopted.as_ref().and_then(Watched::pid);
        host.task = Some(tokio::spawn(supervise(
            binary,
            self.files.clone(),
            adopted,
            self.pid.clone(),
        )));
        Ok(())
    }

    /// End the supervision task, leaving the process running for the next
    /// daemon to adopt.
    pub fn shutdown(&self) {
        if let Ok(mut host) = self.host.try_lock() {
            if let Some(task) = host.task.take() {
                task.abort();
            }
        }
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        if let Some(task) = self.host.get_mut().task.take() {
            task.abort();
        }
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

fn spawn(binary: &Path, files: &HostFiles) -> std::io::Result<(tokio::process::Child, u32)> {
    let log = logfile::open_for_append(&files.log())?;
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
    super::adjust_environment(command.as_std_mut(), &files.credentials);
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
    files: HostFiles,
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
                            tracing::warn!(error = %e, "cannot write litestream's pidfile");
                        }
                    }
                    logfile::note(&files.log(), &format!("litestream {child_pid} started"));
                    Watched::Child(child)
                }
                Err(e) => {
                    logfile::note(&files.log(), &format!("cannot start litestream: {e}"));
                    tracing::warn!(error = %e, "cannot start litestream");
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
            &files.log(),
            &format!(
                "litestream exited ({}), starting it again in {} ms",
                exit.describe(),
                delay.as_millis()
            ),
        );
        tracing::warn!(exit = %exit.describe(), "litestream exited, restarting it");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
}
