//! The embedded supervisor: the default runtime, running each instance as a
//! child process of the daemon and keeping it up.
//!
//! Shape: a map of per-instance slots behind a short-lived lock, and one
//! tokio task per running instance that waits for its process to exit and
//! restarts it by the back-off policy. There is no thread per instance and
//! no polling loop; a single background task per supervisor rotates logs.
//!
//! Locking rule: the map lock and a slot's state lock are plain mutexes held
//! only for bookkeeping (never across an `.await`), taken in that order.
//! Each slot also has an async *operation* lock so that start, stop,
//! restart and adopt of one instance do not interleave; it is held across
//! waits, but only for that one instance, so stopping fifty instances at
//! once takes as long as the slowest, not the sum.
//!
//! Supervision tasks carry a generation number. Whenever a task is
//! superseded (an explicit start, a stop during back-off, a shutdown) the
//! slot's generation moves on, and a task that wakes up to a different
//! generation does nothing more. Aborting a task is then only a cleanup,
//! never what keeps it from restarting a process.
//!
//! Instances outlive the supervisor: [`Supervisor::shutdown`] and `Drop`
//! end the supervision tasks but leave the processes running, and a new
//! supervisor adopts them ([`Runtime::adopt`]) through their pidfiles.

pub(crate) mod logfile;
pub(crate) mod process;
pub(crate) mod procfs;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use self::process::{ExitInfo, Watched};
use self::procfs::PidRecord;
use super::{LaunchSpec, Observed, Phase, Runtime, RuntimeError, RuntimeEvent, SupervisorConfig};
use crate::model::backoff::Decision;
use crate::model::InstanceName;

/// How often log files are checked for rotation.
const LOG_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How long a stop waits for the exit after SIGKILL before giving up.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Room for bursts of events before slow subscribers start to lag.
const EVENT_CAPACITY: usize = 1024;

/// The embedded supervisor. Cheap to share behind an `Arc`; dropping it
/// ends supervision but never kills an instance.
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: SupervisorConfig,
    events: broadcast::Sender<RuntimeEvent>,
    slots: Mutex<HashMap<InstanceName, Arc<Slot>>>,
    log_ticker: Mutex<Option<JoinHandle<()>>>,
}

/// Everything about one instance.
struct Slot {
    name: InstanceName,
    /// Serializes start, stop, restart and adopt of this instance.
    ops: tokio::sync::Mutex<()>,
    state: Mutex<SlotState>,
}

struct SlotState {
    spec: LaunchSpec,
    phase: Phase,
    pid: Option<u32>,
    restarts: u32,
    since: DateTime<Utc>,
    /// Set by a stop: the next exit is expected and ends supervision.
    stop_requested: bool,
    /// When the recent crashes happened (within the crash-loop window).
    crashes: Vec<Instant>,
    /// The supervision task that owns the current process, if any.
    task: Option<JoinHandle<()>>,
    generation: u64,
}

/// Why the supervision loop is deciding what to do next.
enum Crash {
    Exited {
        pid: u32,
        exit: ExitInfo,
        uptime: Duration,
    },
    SpawnFailed,
}

enum Respawn {
    Spawned(Watched),
    Failed,
    Cancelled,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain bookkeeping
    // behind, which is still the best information there is.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Supervisor {
    /// A supervisor with nothing to supervise yet. Needs no tokio runtime
    /// until the first start or adoption.
    pub fn new(cfg: SupervisorConfig) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                cfg,
                events,
                slots: Mutex::new(HashMap::new()),
                log_ticker: Mutex::new(None),
            }),
        }
    }

    pub fn config(&self) -> &SupervisorConfig {
        &self.inner.cfg
    }

    /// Stop supervising WITHOUT stopping the instances: they keep running
    /// with their pidfiles in place, ready for a new supervisor (a daemon
    /// restarted or upgraded) to adopt. Waits until every supervision task
    /// is gone.
    pub async fn shutdown(&self) {
        let handles = self.inner.detach_all();
        for handle in handles {
            // A cancelled task reports an error here; that is the point.
            let _ = handle.await;
        }
    }

    /// Rotate every instance's log that has outgrown the limit. Runs by
    /// itself every few seconds once something is supervised.
    pub async fn rotate_logs(&self) {
        self.inner.rotate_logs().await;
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Ends the background tasks only; the processes keep running.
        let _ = self.inner.detach_all();
    }
}

impl Inner {
    fn emit(&self, event: RuntimeEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    fn get(&self, name: &InstanceName) -> Option<Arc<Slot>> {
        lock(&self.slots).get(name).cloned()
    }

    fn slot_for(&self, spec: &LaunchSpec) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        slots
            .entry(spec.name.clone())
            .or_insert_with(|| {
                Arc::new(Slot {
                    name: spec.name.clone(),
                    ops: tokio::sync::Mutex::new(()),
                    state: Mutex::new(SlotState {
                        spec: spec.clone(),
                        phase: Phase::Stopped,
                        pid: None,
                        restarts: 0,
                        since: Utc::now(),
                        stop_requested: false,
                        crashes: Vec::new(),
                        task: None,
                        generation: 0,
                    }),
                })
            })
            .clone()
    }

    /// Start the log rotation tick if it is not running yet.
    fn ensure_log_ticker(self: &Arc<Self>) {
        let mut ticker = lock(&self.log_ticker);
        if ticker.is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(self);
        *ticker = Some(runtime.spawn(async move {
            loop {
                tokio::time::sleep(LOG_CHECK_INTERVAL).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                inner.rotate_logs().await;
            }
        }));
    }

    async fn rotate_logs(&self) {
        let logs: Vec<_> = {
            let slots: Vec<Arc<Slot>> = lock(&self.slots).values().cloned().collect();
            // Only instances with a process write to their logs: stopped
            // and sleeping ones are passed by.
            slots
                .iter()
                .filter_map(|slot| {
                    let state = lock(&slot.state);
                    (state.phase != Phase::Stopped).then(|| state.spec.log_file())
                })
                .collect()
        };
        let (max_bytes, keep) = (self.cfg.log_max_bytes, self.cfg.log_keep);
        let rotated = tokio::task::spawn_blocking(move || {
            for log in logs {
                match logfile::rotate_if_needed(&log, max_bytes, keep) {
                    Ok(true) => logfile::note(&log, "log rotated: older lines are in the numbered files"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(log = %log.display(), error = %e, "cannot rotate instance log"),
                }
            }
        })
        .await;
        if let Err(e) = rotated {
            tracing::warn!(error = %e, "log rotation task failed");
        }
    }

    /// End every supervision task and the log tick, leave the processes
    /// alone, forget everything. Returns the handles to await.
    fn detach_all(&self) -> Vec<JoinHandle<()>> {
        let mut handles = Vec::new();
        if let Some(ticker) = lock(&self.log_ticker).take() {
            ticker.abort();
            handles.push(ticker);
        }
        let slots: Vec<Arc<Slot>> = lock(&self.slots).drain().map(|(_, slot)| slot).collect();
        for slot in slots {
            let mut st = lock(&slot.state);
            st.generation += 1;
            if let Some(task) = st.task.take() {
                task.abort();
                handles.push(task);
            }
        }
        handles
    }

    /// Spawn the instance and start supervising it. The caller holds the
    /// slot's operation lock.
    fn start_locked(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        spec: LaunchSpec,
    ) -> Result<u32, RuntimeError> {
        let mut st = lock(&slot.state);
        if st.phase == Phase::Running {
            return Err(RuntimeError::AlreadyRunning(slot.name.clone()));
        }
        // A process left behind by an earlier daemon that nobody adopted.
        let pid_file = spec.pid_file();
        match procfs::read_pidfile(&pid_file) {
            Ok(Some(record)) if procfs::is_same_live_process(record.pid, record.starttime) => {
                return Err(RuntimeError::AlreadyRunning(slot.name.clone()));
            }
            Ok(_) => {}
            Err(source) => {
                return Err(RuntimeError::Io {
                    path: pid_file,
                    source,
                })
            }
        }

        // Supersede a pending back-off restart, if any.
        st.generation += 1;
        if let Some(task) = st.task.take() {
            task.abort();
        }
        st.spec = spec;
        st.restarts = 0;
        st.crashes.clear();
        st.stop_requested = false;

        let (child, pid) = match process::spawn(&st.spec, self.cfg.nofile) {
            Ok(spawned) => spawned,
            Err(source) => {
                st.phase = Phase::Stopped;
                st.pid = None;
                st.since = Utc::now();
                logfile::note(
                    &st.spec.log_file(),
                    &format!("cannot start {}: {source}", st.spec.binary.display()),
                );
                return Err(RuntimeError::Spawn {
                    binary: st.spec.binary.clone(),
                    source,
                });
            }
        };
        record_running(&mut st, pid, Utc::now());
        logfile::note(&st.spec.log_file(), &format!("started pid {pid}"));
        tracing::info!(instance = %slot.name, pid, "started");
        st.task = Some(tokio::spawn(supervise(
            Arc::clone(self),
            Arc::clone(slot),
            st.generation,
            Watched::Child(child),
            Instant::now(),
        )));
        drop(st);
        self.emit(RuntimeEvent::Spawned {
            name: slot.name.clone(),
            pid,
        });
        Ok(pid)
    }

    /// Stop the instance and wait for it to be gone. The caller holds the
    /// slot's operation lock.
    async fn stop_locked(&self, slot: &Slot) -> Result<(), RuntimeError> {
        let (pid, task, log) = {
            let mut st = lock(&slot.state);
            st.stop_requested = true;
            match (st.phase, st.pid) {
                (Phase::Running, Some(pid)) => (pid, st.task.take(), st.spec.log_file()),
                (phase, _) => {
                    // Nothing runs: cancel a pending restart, settle on Stopped.
                    st.generation += 1;
                    if let Some(task) = st.task.take() {
                        task.abort();
                    }
                    if phase != Phase::Stopped {
                        st.phase = Phase::Stopped;
                        st.pid = None;
                        st.since = Utc::now();
                    }
                    let pid_file = st.spec.pid_file();
                    drop(st);
                    if let Err(e) = procfs::remove_pidfile(&pid_file) {
                        tracing::warn!(instance = %slot.name, error = %e, "cannot remove pidfile");
                    }
                    return Ok(());
                }
            }
        };

        let timeout = self.cfg.stop_timeout;
        logfile::note(
            &log,
            &format!("stopping pid {pid}: SIGTERM to its process group"),
        );
        tracing::info!(instance = %slot.name, pid, "stopping");
        let mut task = task;
        if let Err(e) = signal(slot, pid, Signal::SIGTERM) {
            // Still ours to supervise: as you were.
            let mut st = lock(&slot.state);
            st.task = task;
            st.stop_requested = false;
            return Err(e);
        }
        if !wait_for_exit(&mut task, pid, timeout).await {
            logfile::note(
                &log,
                &format!("pid {pid} did not stop within {timeout:?}: SIGKILL to its process group"),
            );
            tracing::warn!(instance = %slot.name, pid, "did not stop in time, killing");
            let killed = signal(slot, pid, Signal::SIGKILL);
            let exited = killed.is_ok() && wait_for_exit(&mut task, pid, KILL_WAIT).await;
            if !exited {
                // Keep supervising: the exit, whenever it comes, still counts
                // as the stop's.
                lock(&slot.state).task = task;
                killed?;
                return Err(RuntimeError::Unkillable {
                    name: slot.name.clone(),
                    pid,
                });
            }
        }
        {
            // Normally the supervision task booked the exit; if it was cut
            // short, book it here.
            let mut st = lock(&slot.state);
            if st.phase == Phase::Running && st.pid == Some(pid) && !procfs::is_alive(pid) {
                st.phase = Phase::Stopped;
                st.pid = None;
                st.since = Utc::now();
                if let Err(e) = procfs::remove_pidfile(&st.spec.pid_file()) {
                    tracing::warn!(instance = %slot.name, error = %e, "cannot remove pidfile");
                }
            }
        }
        // Whatever the leader left behind in its group goes too.
        if let Err(e) = process::signal_group(pid, Signal::SIGKILL) {
            tracing::debug!(instance = %slot.name, pid, error = %e, "cannot clear process group");
        }
        Ok(())
    }

    fn adopt_locked(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        spec: LaunchSpec,
    ) -> Result<Option<u32>, RuntimeError> {
        {
            let st = lock(&slot.state);
            if let (Phase::Running, Some(pid)) = (st.phase, st.pid) {
                return Ok(Some(pid));
            }
        }
        let pid_file = spec.pid_file();
        let stale = |why: &str| {
            tracing::info!(instance = %spec.name, pidfile = %pid_file.display(), "not adopting: {why}");
            procfs::remove_pidfile(&pid_file).map_err(|source| RuntimeError::Io {
                path: pid_file.clone(),
                source,
            })
        };
        let record = match procfs::read_pidfile(&pid_file) {
            Ok(Some(record)) => record,
            Ok(None) => {
                stale("no usable pidfile")?;
                return Ok(None);
            }
            Err(source) => {
                return Err(RuntimeError::Io {
                    path: pid_file.clone(),
                    source,
                })
            }
        };
        // The watcher first, then the identity check: a pidfd opened before
        // the check cannot end up naming a process that reused the pid.
        let watched = match Watched::adopt(record.pid, record.starttime) {
            Ok(watched) => watched,
            Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => {
                stale("the process is gone")?;
                return Ok(None);
            }
            // Anything else (out of descriptors, say) says nothing about the
            // process: keep the pidfile so that a later attempt can adopt it.
            Err(source) => {
                return Err(RuntimeError::Io {
                    path: PathBuf::from(format!("/proc/{}", record.pid)),
                    source,
                })
            }
        };
        let Some(stat) = procfs::read_stat(record.pid) else {
            stale("the process is gone")?;
            return Ok(None);
        };
        if stat.is_dead() {
            stale("the process is a zombie")?;
            return Ok(None);
        }
        if stat.starttime != record.starttime {
            stale("the pid now belongs to another process")?;
            return Ok(None);
        }

        let started_wall = procfs::start_time_to_wall(record.starttime).unwrap_or_else(Utc::now);
        let uptime = (Utc::now() - started_wall)
            .to_std()
            .unwrap_or(Duration::ZERO);
        let started = Instant::now()
            .checked_sub(uptime)
            .unwrap_or_else(Instant::now);
        let pid = record.pid;
        {
            let mut st = lock(&slot.state);
            st.generation += 1;
            if let Some(task) = st.task.take() {
                task.abort();
            }
            st.spec = spec;
            st.phase = Phase::Running;
            st.pid = Some(pid);
            st.restarts = 0;
            st.since = started_wall;
            st.stop_requested = false;
            st.crashes.clear();
            st.task = Some(tokio::spawn(supervise(
                Arc::clone(self),
                Arc::clone(slot),
                st.generation,
                watched,
                started,
            )));
            logfile::note(&st.spec.log_file(), &format!("adopted running pid {pid}"));
        }
        tracing::info!(instance = %slot.name, pid, "adopted");
        self.emit(RuntimeEvent::Adopted {
            name: slot.name.clone(),
            pid,
        });
        Ok(Some(pid))
    }

    /// Book an exit or a failed restart; returns the delay before the next
    /// restart, or `None` when supervision of this process ends.
    fn after_crash(&self, slot: &Slot, generation: u64, crash: Crash) -> Option<Duration> {
        let mut st = lock(&slot.state);
        if st.generation != generation {
            return None;
        }
        let policy = &self.cfg.backoff;
        let log = st.spec.log_file();
        let uptime = match crash {
            Crash::Exited { pid, exit, uptime } => {
                st.pid = None;
                let expected = st.stop_requested;
                self.emit(RuntimeEvent::Exited {
                    name: slot.name.clone(),
                    pid,
                    code: exit.code,
                    signal: exit.signal,
                    expected,
                });
                if expected {
                    st.phase = Phase::Stopped;
                    st.since = Utc::now();
                    st.task = None;
                    logfile::note(&log, &format!("pid {pid} stopped ({})", exit.describe()));
                    tracing::info!(instance = %slot.name, pid, "stopped");
                    if let Err(e) = procfs::remove_pidfile(&st.spec.pid_file()) {
                        tracing::warn!(instance = %slot.name, error = %e, "cannot remove pidfile");
                    }
                    return None;
                }
                logfile::note(
                    &log,
                    &format!("pid {pid} exited unexpectedly ({})", exit.describe()),
                );
                tracing::warn!(instance = %slot.name, pid, status = %exit.describe(), "exited unexpectedly");
                // A fresh start gets a clean process group.
                if let Err(e) = process::signal_group(pid, Signal::SIGKILL) {
                    tracing::debug!(instance = %slot.name, pid, error = %e, "cannot clear process group");
                }
                uptime
            }
            Crash::SpawnFailed => {
                if st.stop_requested {
                    st.phase = Phase::Stopped;
                    st.since = Utc::now();
                    return None;
                }
                Duration::ZERO
            }
        };

        let now = Instant::now();
        if policy.is_stable(uptime) {
            st.crashes.clear();
        }
        st.crashes.push(now);
        st.crashes
            .retain(|at| policy.in_window(now.duration_since(*at)));
        let agos: Vec<Duration> = st
            .crashes
            .iter()
            .map(|at| now.duration_since(*at))
            .collect();
        let crashes = u32::try_from(agos.len()).unwrap_or(u32::MAX);
        st.since = Utc::now();
        match policy.decide(&agos, uptime) {
            Decision::GiveUp => {
                st.phase = Phase::CrashLoop;
                st.task = None;
                let window = policy.crash_loop_window;
                logfile::note(
                    &log,
                    &format!("crashed {crashes} times within {window:?}: not restarting until the next start"),
                );
                tracing::error!(instance = %slot.name, crashes, "crash loop, giving up");
                if let Err(e) = procfs::remove_pidfile(&st.spec.pid_file()) {
                    tracing::warn!(instance = %slot.name, error = %e, "cannot remove pidfile");
                }
                self.emit(RuntimeEvent::CrashLoop {
                    name: slot.name.clone(),
                    crashes,
                });
                None
            }
            Decision::RestartAfter(delay) => {
                st.phase = Phase::BackingOff;
                self.emit(RuntimeEvent::RestartScheduled {
                    name: slot.name.clone(),
                    attempt: crashes,
                    delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                });
                Some(delay)
            }
        }
    }

    /// Start the process again after a crash, unless that was called off.
    fn respawn(&self, slot: &Slot, generation: u64) -> Respawn {
        let mut st = lock(&slot.state);
        if st.generation != generation || st.stop_requested {
            return Respawn::Cancelled;
        }
        let log = st.spec.log_file();
        match process::spawn(&st.spec, self.cfg.nofile) {
            Ok((child, pid)) => {
                st.restarts += 1;
                record_running(&mut st, pid, Utc::now());
                let restarts = st.restarts;
                logfile::note(&log, &format!("restarted: pid {pid} (restart {restarts})"));
                tracing::info!(instance = %slot.name, pid, restarts, "restarted");
                self.emit(RuntimeEvent::Spawned {
                    name: slot.name.clone(),
                    pid,
                });
                Respawn::Spawned(Watched::Child(child))
            }
            Err(e) => {
                logfile::note(
                    &log,
                    &format!("cannot restart {}: {e}", st.spec.binary.display()),
                );
                tracing::warn!(instance = %slot.name, error = %e, "cannot restart");
                Respawn::Failed
            }
        }
    }
}

/// Mark the slot running with `pid` and write the pidfile.
fn record_running(st: &mut SlotState, pid: u32, since: DateTime<Utc>) {
    st.pid = Some(pid);
    st.phase = Phase::Running;
    st.since = since;
    let pid_file = st.spec.pid_file();
    let written = match procfs::read_stat(pid) {
        Some(stat) => procfs::write_pidfile(
            &pid_file,
            PidRecord {
                pid,
                starttime: stat.starttime,
            },
        ),
        None => Err(std::io::Error::other("cannot read the process start time")),
    };
    if let Err(e) = written {
        // Without a pidfile the process is supervised all the same; only
        // adoption by a future daemon is lost.
        tracing::warn!(instance = %st.spec.name, pid, error = %e, "cannot write pidfile");
        let _ = procfs::remove_pidfile(&pid_file);
    }
}

fn signal(slot: &Slot, pid: u32, signal: Signal) -> Result<(), RuntimeError> {
    process::signal_group(pid, signal).map_err(|source| RuntimeError::Signal {
        name: slot.name.clone(),
        pid,
        signal: signal.as_str(),
        source,
    })
}

/// Wait up to `limit` for the supervision task to see the exit (it records
/// the exit before it finishes). Without a task, watch `/proc`.
async fn wait_for_exit(task: &mut Option<JoinHandle<()>>, pid: u32, limit: Duration) -> bool {
    match task {
        Some(handle) => tokio::time::timeout(limit, handle).await.is_ok(),
        None => tokio::time::timeout(limit, async {
            while procfs::is_alive(pid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .is_ok(),
    }
}

/// The supervision loop of one instance: wait for the exit, book it, wait
/// out the back-off, start again; until a stop, a crash loop or a newer
/// generation ends it.
async fn supervise(
    inner: Arc<Inner>,
    slot: Arc<Slot>,
    generation: u64,
    first: Watched,
    started: Instant,
) {
    let mut current = Some((first, started));
    loop {
        let crash = match current.take() {
            Some((mut watched, started)) => {
                // Read the pid before waiting: a reaped child has none.
                let pid = watched.pid().unwrap_or(0);
                let exit = watched.wait().await;
                Crash::Exited {
                    pid,
                    exit,
                    uptime: started.elapsed(),
                }
            }
            None => Crash::SpawnFailed,
        };
        let Some(delay) = inner.after_crash(&slot, generation, crash) else {
            return;
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match inner.respawn(&slot, generation) {
            Respawn::Spawned(watched) => current = Some((watched, Instant::now())),
            Respawn::Failed => current = None,
            Respawn::Cancelled => return,
        }
    }
}

impl Runtime for Supervisor {
    async fn start(&self, spec: LaunchSpec) -> Result<u32, RuntimeError> {
        spec.create_layout().map_err(|source| RuntimeError::Io {
            path: spec.instance_dir.clone(),
            source,
        })?;
        self.inner.ensure_log_ticker();
        let slot = self.inner.slot_for(&spec);
        let _op = slot.ops.lock().await;
        self.inner.start_locked(&slot, spec)
    }

    async fn stop(&self, name: &InstanceName) -> Result<(), RuntimeError> {
        let Some(slot) = self.inner.get(name) else {
            return Ok(());
        };
        let _op = slot.ops.lock().await;
        self.inner.stop_locked(&slot).await
    }

    async fn restart(&self, name: &InstanceName) -> Result<u32, RuntimeError> {
        let slot = self
            .inner
            .get(name)
            .ok_or_else(|| RuntimeError::NotManaged(name.clone()))?;
        let _op = slot.ops.lock().await;
        self.inner.stop_locked(&slot).await?;
        let spec = lock(&slot.state).spec.clone();
        self.inner.start_locked(&slot, spec)
    }

    async fn adopt(&self, spec: LaunchSpec) -> Result<Option<u32>, RuntimeError> {
        self.inner.ensure_log_ticker();
        let slot = self.inner.slot_for(&spec);
        let _op = slot.ops.lock().await;
        self.inner.adopt_locked(&slot, spec)
    }

    fn observe(&self, name: &InstanceName) -> Option<Observed> {
        let slot = self.inner.get(name)?;
        let st = lock(&slot.state);
        Some(Observed {
            pid: st.pid,
            phase: st.phase,
            restarts: st.restarts,
            since: st.since,
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.inner.events.subscribe()
    }

    fn forget(&self, name: &InstanceName) {
        let mut slots = lock(&self.inner.slots);
        let Some(slot) = slots.get(name) else {
            return;
        };
        // Busy (an operation in flight) or running: keep the bookkeeping.
        let Ok(_op) = slot.ops.try_lock() else {
            return;
        };
        let idle = matches!(lock(&slot.state).phase, Phase::Stopped | Phase::CrashLoop);
        if idle {
            drop(_op);
            slots.remove(name);
        }
    }
}
