//! The systemd runtime: one unit per instance, run by systemd itself.
//!
//! [`SystemdRuntime`] implements the [`Runtime`] seam by writing a unit file
//! per instance (rendered by [`unit::render_unit`], written atomically into
//! the unit directory), then `daemon-reload`, `enable` and `start`; a
//! delete is `stop`, `disable`, remove the file, `daemon-reload`. systemd
//! restarts crashed instances (`Restart=always`) and gives up after its
//! start limit, which we report as `failed`.
//!
//! Every call to systemd goes through the [`Systemctl`] seam, so tests run
//! the whole lifecycle against [`RecordingSystemctl`]. State comes from
//! `systemctl show` (`ActiveState`, `SubState`, `MainPID`, `NRestarts`):
//! [`SystemdRuntime::refresh`] reads it for every known instance, keeps it
//! for [`Runtime::observe`] and turns changes into [`RuntimeEvent`]s.
//!
//! Instances outlive the daemon by construction here: they are systemd's
//! services, and a new daemon adopts a unit that is active.
//!
//! [`import`] finds instances made by seed 000's script so that they can be
//! recorded as managed without being stopped.

pub mod import;
pub mod systemctl;
pub mod unit;

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::model::InstanceName;
use crate::router::DriftKind;
use crate::runtime::{LaunchSpec, Observed, Runtime, RuntimeError, RuntimeEvent};

pub use systemctl::{
    map_phase, map_state, parse_show, RealSystemctl, RecordingSystemctl, ShowState, Systemctl,
    SystemdError, SHOW_PROPERTIES,
};
pub use unit::{render_unit, unit_hash, unit_name, UnitError, UnitLog, UnitOptions, UnitUser};

/// Where unit files go by default.
pub const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";
/// The default unit name pattern; seed 000's is `{name}-pocketbase.service`.
pub const DEFAULT_UNIT_PATTERN: &str = "pockestrator-{name}.service";

const EVENT_CAPACITY: usize = 256;

/// Settings of the systemd runtime.
#[derive(Clone, Debug)]
pub struct SystemdConfig {
    pub unit_dir: PathBuf,
    /// The unit name, with `{name}` standing for the instance name.
    pub unit_pattern: String,
    /// How units are rendered unless an instance has its own options.
    pub options: UnitOptions,
}

impl Default for SystemdConfig {
    fn default() -> Self {
        Self {
            unit_dir: PathBuf::from(DEFAULT_UNIT_DIR),
            unit_pattern: DEFAULT_UNIT_PATTERN.to_string(),
            options: UnitOptions::default(),
        }
    }
}

/// What the runtime remembers of one instance.
struct Entry {
    spec: LaunchSpec,
    /// The last `systemctl show`, if any.
    show: Option<ShowState>,
    /// When the last change of state was seen.
    since: DateTime<Utc>,
}

/// The systemd runtime over a [`Systemctl`].
pub struct SystemdRuntime<S: Systemctl> {
    cfg: SystemdConfig,
    systemctl: S,
    entries: Mutex<HashMap<InstanceName, Entry>>,
    events: broadcast::Sender<RuntimeEvent>,
}

impl<S: Systemctl> SystemdRuntime<S> {
    /// Checks the unit name pattern against the longest instance name, so
    /// that every instance's unit name is valid afterwards.
    pub fn new(cfg: SystemdConfig, systemctl: S) -> Result<Self, UnitError> {
        let longest = InstanceName::parse(&"a".repeat(63)).map_err(|e| UnitError::Pattern {
            shown: cfg.unit_pattern.clone(),
            why: e.to_string(),
        })?;
        unit::unit_name(&cfg.unit_pattern, &longest)?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Ok(Self {
            cfg,
            systemctl,
            entries: Mutex::new(HashMap::new()),
            events,
        })
    }

    pub fn config(&self) -> &SystemdConfig {
        &self.cfg
    }

    pub fn systemctl(&self) -> &S {
        &self.systemctl
    }

    /// The unit name of an instance. The pattern was checked in
    /// [`SystemdRuntime::new`] with the longest possible name, and instance
    /// names only hold characters unit names allow.
    pub fn unit_name(&self, name: &InstanceName) -> String {
        self.cfg.unit_pattern.replace("{name}", name.as_str())
    }

    pub fn unit_path(&self, name: &InstanceName) -> PathBuf {
        self.cfg.unit_dir.join(self.unit_name(name))
    }

    /// The fleet's unit options with this instance's own limits.
    pub fn options_for(&self, spec: &LaunchSpec) -> UnitOptions {
        let mut options = self.cfg.options.clone();
        options.memory_max = spec.limits.memory_max.as_ref().map(|m| m.to_string());
        options.cpu_quota = spec.limits.cpu_quota.as_ref().map(|q| q.to_string());
        options
    }

    /// The unit file this instance should have.
    pub fn render(&self, spec: &LaunchSpec) -> Result<String, UnitError> {
        unit::render_unit(spec, &self.options_for(spec))
    }

    /// `None` when the unit file on disk is exactly what we would render,
    /// otherwise what differs, in words.
    pub fn drift(&self, spec: &LaunchSpec) -> Option<String> {
        self.unit_drift(spec).map(|(_, detail)| detail)
    }

    /// [`SystemdRuntime::drift`] with its kind: missing, or changed (a
    /// unit that cannot be rendered or read counts as changed).
    pub fn unit_drift(&self, spec: &LaunchSpec) -> Option<(DriftKind, String)> {
        let path = self.unit_path(&spec.name);
        let wanted = match self.render(spec) {
            Ok(text) => text,
            Err(e) => {
                return Some((
                    DriftKind::UnitChanged,
                    format!("cannot render the unit: {e}"),
                ))
            }
        };
        match std::fs::read_to_string(&path) {
            Ok(on_disk) if on_disk == wanted => None,
            Ok(on_disk) => Some((
                DriftKind::UnitChanged,
                format!(
                    "{} was changed outside pockestrator (sha256 {} on disk, {} expected)",
                    path.display(),
                    short(&unit::unit_hash(&on_disk)),
                    short(&unit::unit_hash(&wanted))
                ),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some((
                DriftKind::UnitMissing,
                format!("{} is missing", path.display()),
            )),
            Err(e) => Some((
                DriftKind::UnitChanged,
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    }

    /// Render and write the unit atomically (a temporary file in the same
    /// directory, renamed over the unit); returns the unit's hash.
    pub fn write_unit(&self, spec: &LaunchSpec) -> Result<String, RuntimeError> {
        let path = self.unit_path(&spec.name);
        let text = self.checked_render(spec)?;
        if !self.options_for(spec).hardening {
            spec.write_no_browser().map_err(|source| RuntimeError::Io {
                path: spec.no_browser_dir(),
                source,
            })?;
        }
        write_atomically(&self.cfg.unit_dir, &path, &text).map_err(|source| RuntimeError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(unit::unit_hash(&text))
    }

    /// [`SystemdRuntime::render`], its error as the runtime reports it.
    fn checked_render(&self, spec: &LaunchSpec) -> Result<String, RuntimeError> {
        self.render(spec).map_err(|e| RuntimeError::Io {
            path: self.unit_path(&spec.name),
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })
    }

    /// Put the unit file back as it should be and `daemon-reload`; the
    /// running process keeps its old settings until its next restart.
    pub async fn rewrite(&self, spec: &LaunchSpec) -> Result<String, RuntimeError> {
        let hash = self.write_unit(spec)?;
        self.call(&spec.name, &["daemon-reload".to_string()])
            .await?;
        Ok(hash)
    }

    /// `systemctl show` of one instance's unit.
    pub async fn show(&self, name: &InstanceName) -> Result<ShowState, RuntimeError> {
        let unit = self.unit_name(name);
        let text = self
            .call(
                name,
                &[
                    "show".to_string(),
                    format!("--property={SHOW_PROPERTIES}"),
                    unit,
                ],
            )
            .await?;
        Ok(systemctl::parse_show(&text))
    }

    /// Read the state of every known instance from systemd, keep it for
    /// [`Runtime::observe`], and broadcast what changed since the last look.
    pub async fn refresh(&self) -> Vec<RuntimeEvent> {
        let names: Vec<InstanceName> = lock(&self.entries).keys().cloned().collect();
        let mut all = Vec::new();
        for name in names {
            let Ok(state) = self.show(&name).await else {
                continue;
            };
            let delay = self.cfg.options.restart_sec;
            let events = {
                let mut entries = lock(&self.entries);
                let Some(entry) = entries.get_mut(&name) else {
                    continue;
                };
                let events = events_between(&name, entry.show.as_ref(), &state, delay);
                if entry.show.as_ref() != Some(&state) {
                    entry.since = Utc::now();
                }
                entry.show = Some(state);
                events
            };
            for event in events {
                let _ = self.events.send(event.clone());
                all.push(event);
            }
        }
        all
    }

    /// Stop, disable and delete the instance's unit, then `daemon-reload`.
    /// A unit that is already gone is fine. A unit systemd loads from
    /// another directory than ours (seed 000's script writes
    /// `/lib/systemd/system`) is stopped and disabled, and its file left
    /// where it is: it is not ours to delete.
    pub async fn remove(&self, name: &InstanceName) -> Result<(), RuntimeError> {
        let path = self.unit_path(name);
        let unit = self.unit_name(name);
        let present = path.exists() || self.show(name).await?.exists();
        if present {
            self.stop_unit(name).await?;
            self.call(name, &["disable".to_string(), unit]).await?;
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(RuntimeError::Io { path, source }),
            }
            self.call(name, &["daemon-reload".to_string()]).await?;
        }
        self.forget(name);
        Ok(())
    }

    async fn call(&self, name: &InstanceName, args: &[String]) -> Result<String, RuntimeError> {
        self.systemctl
            .run(args)
            .await
            .map_err(|e| RuntimeError::Systemd {
                unit: self.unit_name(name),
                reason: e.to_string(),
            })
    }

    fn remember(&self, spec: LaunchSpec, show: ShowState) {
        lock(&self.entries).insert(
            spec.name.clone(),
            Entry {
                spec,
                show: Some(show),
                since: Utc::now(),
            },
        );
    }

    fn emit(&self, event: RuntimeEvent) {
        let _ = self.events.send(event);
    }

    /// `systemctl stop`, then the state it leaves.
    async fn stop_unit(&self, name: &InstanceName) -> Result<(), RuntimeError> {
        let before = lock(&self.entries)
            .get(name)
            .and_then(|e| e.show.as_ref().and_then(|s| s.main_pid));
        self.call(name, &["stop".to_string(), self.unit_name(name)])
            .await?;
        let after = self.show(name).await?;
        if let Some(entry) = lock(&self.entries).get_mut(name) {
            entry.show = Some(after);
            entry.since = Utc::now();
        }
        if let Some(pid) = before {
            self.emit(RuntimeEvent::Exited {
                name: name.clone(),
                pid,
                code: None,
                signal: None,
                expected: true,
            });
        }
        Ok(())
    }

    /// Make the instance's directory ready for its unit: the layout exists
    /// (an imported instance of seed 000's has no `logs/`, where the unit
    /// sends its output), and with a named unit user the tree is that
    /// user's (an imported instance's was made by the script's root-run
    /// unit) and the directories above it and its binary let the user
    /// through. Ours pass at the cost of a few `stat`s; the tree is walked
    /// only when one of its directories belongs to someone else.
    async fn ready_instance_dir(&self, spec: &LaunchSpec) -> Result<(), RuntimeError> {
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RuntimeError::Io { path, source }
        };
        spec.create_layout().map_err(io_error(&spec.instance_dir))?;
        let UnitUser::Named(user) = &self.cfg.options.user else {
            return Ok(());
        };
        // A user that does not exist is systemd's to report (the daemon
        // creates it at start).
        let Some(found) = nix::unistd::User::from_name(user)
            .map_err(|e| io_error(&spec.instance_dir)(io::Error::from(e)))?
        else {
            return Ok(());
        };
        let groups = nix::unistd::getgrouplist(
            &std::ffi::CString::new(user.as_str())
                .map_err(|e| io_error(&spec.instance_dir)(io::Error::other(e)))?,
            found.gid,
        )
        .unwrap_or_else(|_| vec![found.gid])
        .iter()
        .map(|g| g.as_raw())
        .collect::<Vec<u32>>();
        for target in [&spec.instance_dir, &spec.binary] {
            for dir in target.ancestors().skip(1) {
                let meta = std::fs::metadata(dir).map_err(io_error(dir))?;
                if !lets_through(
                    meta.mode(),
                    meta.uid(),
                    meta.gid(),
                    found.uid.as_raw(),
                    &groups,
                ) {
                    return Err(RuntimeError::Unreachable {
                        user: user.clone(),
                        target: target.clone(),
                        blocker: dir.to_path_buf(),
                        mode: meta.mode() & 0o7777,
                    });
                }
            }
        }
        let layout = [
            spec.instance_dir.clone(),
            spec.data_dir(),
            spec.hooks_dir(),
            spec.migrations_dir(),
            spec.public_dir(),
            spec.logs_dir(),
        ];
        let foreign = layout
            .iter()
            .any(|dir| std::fs::metadata(dir).map_or(true, |m| m.uid() != found.uid.as_raw()));
        if foreign {
            let (dir, uid, gid) = (spec.instance_dir.clone(), found.uid, found.gid);
            tokio::task::spawn_blocking(move || chown_tree(&dir, uid, gid))
                .await
                .map_err(|e| io_error(&spec.instance_dir)(io::Error::other(e)))?
                .map_err(io_error(&spec.instance_dir))?;
        }
        Ok(())
    }

    /// Write the unit, reload systemd, then `verb` (`start` or `restart`)
    /// it; returns the main pid.
    async fn launch(&self, spec: LaunchSpec, verb: &str) -> Result<u32, RuntimeError> {
        let name = spec.name.clone();
        let unit = self.unit_name(&name);
        self.checked_render(&spec)?;
        self.ready_instance_dir(&spec).await?;
        self.write_unit(&spec)?;
        self.call(&name, &["daemon-reload".to_string()]).await?;
        self.call(&name, &["enable".to_string(), unit.clone()])
            .await?;
        self.call(&name, &[verb.to_string(), unit.clone()]).await?;
        let state = self.show(&name).await?;
        let pid = state.main_pid;
        self.remember(spec.clone(), state.clone());
        match pid {
            Some(pid) => {
                self.emit(RuntimeEvent::Spawned { name, pid });
                Ok(pid)
            }
            None => Err(RuntimeError::Spawn {
                binary: spec.binary,
                source: io::Error::other(format!(
                    "{unit} is {}/{} with no main process: see `journalctl -u {unit}`",
                    state.active_state, state.sub_state
                )),
            }),
        }
    }
}

impl<S: Systemctl> Runtime for SystemdRuntime<S> {
    async fn start(&self, spec: LaunchSpec) -> Result<u32, RuntimeError> {
        let current = self.show(&spec.name).await?;
        if current.active_state == "active" {
            self.remember(spec.clone(), current);
            return Err(RuntimeError::AlreadyRunning(spec.name));
        }
        self.launch(spec, "start").await
    }

    async fn stop(&self, name: &InstanceName) -> Result<(), RuntimeError> {
        let known = lock(&self.entries).contains_key(name);
        if !known && !self.unit_path(name).exists() {
            return Ok(());
        }
        self.stop_unit(name).await
    }

    async fn restart(&self, name: &InstanceName) -> Result<u32, RuntimeError> {
        let (spec, before) = {
            let entries = lock(&self.entries);
            let entry = entries
                .get(name)
                .ok_or_else(|| RuntimeError::NotManaged(name.clone()))?;
            (
                entry.spec.clone(),
                entry.show.as_ref().and_then(|s| s.main_pid),
            )
        };
        if let Some(pid) = before {
            self.emit(RuntimeEvent::Exited {
                name: name.clone(),
                pid,
                code: None,
                signal: None,
                expected: true,
            });
        }
        self.launch(spec, "restart").await
    }

    async fn adopt(&self, spec: LaunchSpec) -> Result<Option<u32>, RuntimeError> {
        // systemd is asked even when our unit directory has no file for it:
        // an imported unit lives where seed 000's script wrote it.
        let state = self.show(&spec.name).await?;
        if !state.exists() {
            return Ok(None);
        }
        let pid = match (state.active_state.as_str(), state.main_pid) {
            ("active", Some(pid)) => pid,
            _ => return Ok(None),
        };
        let name = spec.name.clone();
        self.remember(spec, state);
        self.emit(RuntimeEvent::Adopted { name, pid });
        Ok(Some(pid))
    }

    fn observe(&self, name: &InstanceName) -> Option<Observed> {
        let entries = lock(&self.entries);
        let entry = entries.get(name)?;
        let show = entry.show.clone().unwrap_or_default();
        Some(Observed {
            pid: show.main_pid,
            phase: systemctl::map_phase(&show),
            restarts: show.n_restarts,
            since: entry.since,
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }

    fn forget(&self, name: &InstanceName) {
        lock(&self.entries).remove(name);
    }
}

/// What a change between two looks at a unit means in runtime events.
/// Explicit starts and stops report their own events; this sees what
/// systemd did by itself: crashes, automatic restarts, giving up.
pub fn events_between(
    name: &InstanceName,
    old: Option<&ShowState>,
    new: &ShowState,
    restart_delay: Duration,
) -> Vec<RuntimeEvent> {
    let Some(old) = old else {
        return Vec::new();
    };
    let mut events = Vec::new();
    if old.main_pid != new.main_pid {
        if let Some(pid) = old.main_pid {
            events.push(RuntimeEvent::Exited {
                name: name.clone(),
                pid,
                code: None,
                signal: None,
                expected: false,
            });
        }
    }
    if new.sub_state == "auto-restart" && old.sub_state != "auto-restart" {
        events.push(RuntimeEvent::RestartScheduled {
            name: name.clone(),
            attempt: new.n_restarts + 1,
            delay_ms: restart_delay.as_millis() as u64,
        });
    }
    if old.main_pid != new.main_pid {
        if let Some(pid) = new.main_pid {
            events.push(RuntimeEvent::Spawned {
                name: name.clone(),
                pid,
            });
        }
    }
    if new.active_state == "failed" && old.active_state != "failed" {
        events.push(RuntimeEvent::CrashLoop {
            name: name.clone(),
            crashes: new.n_restarts,
        });
    }
    events
}

/// Create the system user units run as, unless it exists; returns whether
/// it was created.
pub async fn ensure_system_user(user: &str) -> io::Result<bool> {
    if nix::unistd::User::from_name(user)
        .map_err(io::Error::from)?
        .is_some()
    {
        return Ok(false);
    }
    let output = tokio::process::Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            user,
        ])
        .output()
        .await?;
    if output.status.success() {
        Ok(true)
    } else {
        Err(io::Error::other(format!(
            "useradd {user} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Whether a directory of `mode`, owned by `owner` and `group`, lets the
/// user `uid` (in `groups`) search it: the owner's, the group's or the
/// others' bit, whichever class the user falls in, as the kernel decides.
pub fn lets_through(mode: u32, owner: u32, group: u32, uid: u32, groups: &[u32]) -> bool {
    if owner == uid {
        mode & 0o100 != 0
    } else if groups.contains(&group) {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// Change the owner of a directory tree (symlinks themselves, not their
/// targets).
pub fn chown_tree(dir: &Path, uid: nix::unistd::Uid, gid: nix::unistd::Gid) -> io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid.as_raw()), Some(gid.as_raw()))?;
    if dir.is_dir() && !dir.is_symlink() {
        for entry in std::fs::read_dir(dir)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn write_atomically(dir: &Path, path: &Path, text: &str) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // The temporary file is a dot-file ending in .tmp: systemd never loads it.
    crate::fsutil::atomic_write_mode(path, text.as_bytes(), 0o644)
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn name() -> InstanceName {
        InstanceName::parse("moots").unwrap()
    }

    fn state(active: &str, sub: &str, pid: Option<u32>, restarts: u32) -> ShowState {
        ShowState {
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: sub.into(),
            main_pid: pid,
            n_restarts: restarts,
        }
    }

    fn shown(events: &[RuntimeEvent]) -> String {
        events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn events_from_changes() {
        let d = Duration::from_secs(1);
        let running = state("active", "running", Some(10), 0);
        let crashed = state("activating", "auto-restart", None, 1);
        let again = state("active", "running", Some(11), 1);
        let gave_up = state("failed", "failed", None, 5);
        let steps = [
            (None, &running),
            (Some(&running), &running),
            (Some(&running), &crashed),
            (Some(&crashed), &again),
            (Some(&running), &again),
            (Some(&again), &gave_up),
        ];
        let out: Vec<String> = steps
            .iter()
            .enumerate()
            .map(|(i, (old, new))| {
                format!("{i}: [{}]", shown(&events_between(&name(), *old, new, d)))
            })
            .collect();
        expect![[r#"
            0: []
            1: []
            2: [{"event":"exited","name":"moots","pid":10,"code":null,"signal":null,"expected":false}
            {"event":"restart_scheduled","name":"moots","attempt":2,"delay_ms":1000}]
            3: [{"event":"spawned","name":"moots","pid":11}]
            4: [{"event":"exited","name":"moots","pid":10,"code":null,"signal":null,"expected":false}
            {"event":"spawned","name":"moots","pid":11}]
            5: [{"event":"exited","name":"moots","pid":11,"code":null,"signal":null,"expected":false}
            {"event":"crash_loop","name":"moots","crashes":5}]"#]]
        .assert_eq(&out.join("\n"));
    }

    #[test]
    fn patterns_are_checked_once_with_the_longest_name() {
        let cfg = |pattern: &str| SystemdConfig {
            unit_pattern: pattern.to_string(),
            ..SystemdConfig::default()
        };
        assert!(
            SystemdRuntime::new(cfg("{name}-pocketbase.service"), RecordingSystemctl::new())
                .is_ok()
        );
        let err = SystemdRuntime::new(
            cfg(&format!("{}-{{name}}.service", "x".repeat(190))),
            RecordingSystemctl::new(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("the limit is 255"), "{err}");
        assert!(SystemdRuntime::new(cfg("{name}"), RecordingSystemctl::new()).is_err());
    }

    #[test]
    fn search_permission_by_class() {
        let (uid, group, other) = (999, 995, 1000);
        // (mode, owner, group) → whether uid 999 in group 995 passes.
        let cases = [
            (0o700, uid, 0, true),
            (0o070, uid, group, false),
            (0o710, 0, group, true),
            (0o700, 0, group, false),
            (0o701, 0, group, false),
            (0o711, 0, 0, true),
            (0o750, other, other, false),
            (0o755, other, other, true),
        ];
        for (mode, owner, grp, expected) in cases {
            assert_eq!(
                lets_through(mode, owner, grp, uid, &[group]),
                expected,
                "mode {mode:o} owner {owner} group {grp}"
            );
        }
    }

    #[tokio::test]
    async fn root_exists_so_no_user_is_created() {
        assert!(!ensure_system_user("root").await.unwrap());
    }
}
