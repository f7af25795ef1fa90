//! Talking to systemd: the [`Systemctl`] seam (the real `systemctl`, or a
//! recording double in tests), reading `systemctl show` and mapping a
//! unit's state onto ours.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::Status;
use crate::runtime::Phase;

/// Why a `systemctl` call failed.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot run {}: is systemd installed? (pass --systemctl PATH if it is elsewhere)", .path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`systemctl {args}` failed ({status}): {stderr}")]
    Failed {
        args: String,
        status: String,
        stderr: String,
    },
    #[error("`systemctl {args}` did not finish within {secs} s: is systemd responsive? (`systemctl is-system-running`)")]
    Timeout { args: String, secs: u64 },
}

/// The one way the systemd runtime reaches systemd: run `systemctl ARGS`
/// and return its stdout.
pub trait Systemctl: Send + Sync {
    fn run(&self, args: &[String]) -> impl Future<Output = Result<String, SystemdError>> + Send;
}

/// The real `systemctl`.
#[derive(Clone, Debug)]
pub struct RealSystemctl {
    pub path: PathBuf,
    /// A call that takes longer than this fails (a stop waits for the
    /// process to exit, so this is generous).
    pub timeout: Duration,
}

impl Default for RealSystemctl {
    fn default() -> Self {
        Self {
            path: PathBuf::from("systemctl"),
            timeout: Duration::from_secs(120),
        }
    }
}

impl Systemctl for RealSystemctl {
    async fn run(&self, args: &[String]) -> Result<String, SystemdError> {
        let mut cmd = tokio::process::Command::new(&self.path);
        // Never wait for a password prompt: the daemon has no terminal.
        cmd.arg("--no-ask-password").args(args);
        cmd.stdin(std::process::Stdio::null());
        cmd.kill_on_drop(true);
        let shown_args = args.join(" ");
        let output = match tokio::time::timeout(self.timeout, cmd.output()).await {
            Err(_) => {
                return Err(SystemdError::Timeout {
                    args: shown_args,
                    secs: self.timeout.as_secs(),
                })
            }
            Ok(Err(source)) => {
                return Err(SystemdError::Spawn {
                    path: self.path.clone(),
                    source,
                })
            }
            Ok(Ok(output)) => output,
        };
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr: String = stderr.trim().chars().take(500).collect();
            Err(SystemdError::Failed {
                args: shown_args,
                status: output.status.to_string(),
                stderr,
            })
        }
    }
}

/// A test double: records every call and plays a tiny systemd. `start`
/// makes a unit active/running with a new pid, `stop` makes it
/// inactive/dead, `daemon-reload` forgets stopped units whose file is gone
/// from the watched directory (systemd then reports them `not-found`);
/// `show` answers from that state unless a text was scripted with
/// [`RecordingSystemctl::script_show`]. Verbs listed with
/// [`RecordingSystemctl::fail_on`] fail.
#[derive(Debug, Default)]
pub struct RecordingSystemctl {
    inner: Mutex<Recording>,
    /// When set, every call also records the file names in this directory
    /// at the moment of the call (to check what was on disk when systemd was
    /// told to reload).
    pub watch_dir: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct Recording {
    calls: Vec<Vec<String>>,
    dir_at_call: Vec<Vec<String>>,
    units: HashMap<String, ShowState>,
    scripted: HashMap<String, String>,
    failing: Vec<String>,
    next_pid: u32,
}

impl RecordingSystemctl {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn watching(dir: PathBuf) -> Self {
        Self {
            watch_dir: Some(dir),
            ..Self::default()
        }
    }

    /// Every call so far, each as its argument list.
    pub fn calls(&self) -> Vec<Vec<String>> {
        lock(&self.inner).calls.clone()
    }

    /// The calls so far, one line each (`daemon-reload`, `start x.service`).
    pub fn call_lines(&self) -> Vec<String> {
        self.calls().iter().map(|c| c.join(" ")).collect()
    }

    /// For each call, the sorted file names in `watch_dir` at that moment.
    pub fn dir_at_calls(&self) -> Vec<Vec<String>> {
        lock(&self.inner).dir_at_call.clone()
    }

    /// Answer `show UNIT` with this text from now on.
    pub fn script_show(&self, unit: &str, text: &str) {
        lock(&self.inner)
            .scripted
            .insert(unit.to_string(), text.to_string());
    }

    /// Answer `show UNIT` from the simulated state again.
    pub fn unscript_show(&self, unit: &str) {
        lock(&self.inner).scripted.remove(unit);
    }

    /// Make every call whose first argument is `verb` fail.
    pub fn fail_on(&self, verb: &str) {
        lock(&self.inner).failing.push(verb.to_string());
    }

    pub fn clear(&self) {
        let mut rec = lock(&self.inner);
        rec.calls.clear();
        rec.dir_at_call.clear();
    }
}

impl Systemctl for RecordingSystemctl {
    async fn run(&self, args: &[String]) -> Result<String, SystemdError> {
        let listing = self.watch_dir.as_ref().map(|dir| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        });
        let mut rec = lock(&self.inner);
        rec.calls.push(args.to_vec());
        if let Some(listing) = &listing {
            rec.dir_at_call.push(listing.clone());
        }
        let verb = args.first().map(String::as_str).unwrap_or("");
        if rec.failing.iter().any(|f| f == verb) {
            return Err(SystemdError::Failed {
                args: args.join(" "),
                status: "exit status: 1".to_string(),
                stderr: format!("scripted failure of {verb}"),
            });
        }
        let unit = args
            .iter()
            .skip(1)
            .rfind(|a| !a.starts_with("--"))
            .cloned()
            .unwrap_or_default();
        match verb {
            "start" | "restart" => {
                rec.next_pid += 1;
                let pid = 4000 + rec.next_pid;
                rec.units.insert(
                    unit,
                    ShowState {
                        load_state: "loaded".into(),
                        active_state: "active".into(),
                        sub_state: "running".into(),
                        main_pid: Some(pid),
                        n_restarts: 0,
                    },
                );
                Ok(String::new())
            }
            "daemon-reload" => {
                if let Some(names) = &listing {
                    rec.units.retain(|unit, state| {
                        state.active_state == "active" || names.contains(unit)
                    });
                }
                Ok(String::new())
            }
            "stop" => {
                if let Some(state) = rec.units.get_mut(&unit) {
                    state.active_state = "inactive".into();
                    state.sub_state = "dead".into();
                    state.main_pid = None;
                }
                Ok(String::new())
            }
            "show" => {
                if let Some(text) = rec.scripted.get(&unit) {
                    return Ok(text.clone());
                }
                let state = rec.units.get(&unit).cloned().unwrap_or_else(|| ShowState {
                    load_state: "not-found".into(),
                    active_state: "inactive".into(),
                    sub_state: "dead".into(),
                    main_pid: None,
                    n_restarts: 0,
                });
                Ok(state.to_show_text())
            }
            _ => Ok(String::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The properties we ask `systemctl show` for.
pub const SHOW_PROPERTIES: &str = "LoadState,ActiveState,SubState,MainPID,NRestarts";

/// A unit's state as `systemctl show` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShowState {
    /// `loaded`, `not-found`, `bad-setting`, `error`, `masked`.
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    /// `None` when systemd reports 0 (no main process).
    pub main_pid: Option<u32>,
    /// Automatic restarts since the unit was last started explicitly.
    pub n_restarts: u32,
}

impl ShowState {
    fn to_show_text(&self) -> String {
        format!(
            "LoadState={}\nActiveState={}\nSubState={}\nMainPID={}\nNRestarts={}\n",
            self.load_state,
            self.active_state,
            self.sub_state,
            self.main_pid.unwrap_or(0),
            self.n_restarts
        )
    }

    /// Whether systemd knows a unit file for it.
    pub fn exists(&self) -> bool {
        !matches!(self.load_state.as_str(), "not-found" | "")
    }
}

/// Read `KEY=value` lines of `systemctl show`; unknown keys are ignored,
/// missing ones stay empty (or 0).
pub fn parse_show(text: &str) -> ShowState {
    let mut state = ShowState::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "LoadState" => state.load_state = value.to_string(),
            "ActiveState" => state.active_state = value.to_string(),
            "SubState" => state.sub_state = value.to_string(),
            "MainPID" => state.main_pid = value.parse().ok().filter(|&pid: &u32| pid != 0),
            "NRestarts" => state.n_restarts = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    state
}

/// Our state of an instance from its unit's. Health checks refine
/// `running` into `unhealthy` later; systemd cannot tell.
///
/// - `active` (any sub-state), `reloading`, `refreshing`: running;
/// - `activating`: starting, including `auto-restart` (a crash, a restart
///   is scheduled);
/// - `failed`: failed (systemd gave up: start limit hit, or a start failed);
/// - `inactive`, `deactivating`, `maintenance`, or no unit at all: stopped;
/// - anything else: failed, because we cannot vouch for it.
pub fn map_state(state: &ShowState) -> Status {
    if !state.exists() && state.active_state != "failed" {
        return Status::Stopped;
    }
    match state.active_state.as_str() {
        "active" | "reloading" | "refreshing" => Status::Running,
        "activating" => Status::Starting,
        "failed" => Status::Failed,
        "inactive" | "deactivating" | "maintenance" => Status::Stopped,
        _ => Status::Failed,
    }
}

/// The runtime's [`Phase`] of a unit's state.
pub fn map_phase(state: &ShowState) -> Phase {
    match map_state(state) {
        Status::Running | Status::Unhealthy => Phase::Running,
        Status::Starting if state.sub_state == "auto-restart" => Phase::BackingOff,
        Status::Starting => Phase::Running,
        Status::Failed => Phase::CrashLoop,
        Status::Stopped | Status::Sleeping => Phase::Stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn parses_show_output() {
        let state = parse_show(
            "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=1234\nNRestarts=3\nId=x.service\nbroken line\n",
        );
        assert_eq!(
            state,
            ShowState {
                load_state: "loaded".into(),
                active_state: "active".into(),
                sub_state: "running".into(),
                main_pid: Some(1234),
                n_restarts: 3,
            }
        );
        let none = parse_show("MainPID=0\nNRestarts=x\n");
        assert_eq!(none.main_pid, None);
        assert_eq!(none.n_restarts, 0);
        assert!(!none.exists());
    }

    #[test]
    fn maps_every_state() {
        let combos = [
            ("loaded", "active", "running"),
            ("loaded", "active", "exited"),
            ("loaded", "reloading", "reload"),
            ("loaded", "refreshing", "running"),
            ("loaded", "activating", "start"),
            ("loaded", "activating", "start-pre"),
            ("loaded", "activating", "auto-restart"),
            ("loaded", "deactivating", "stop-sigterm"),
            ("loaded", "deactivating", "final-sigkill"),
            ("loaded", "failed", "failed"),
            ("loaded", "inactive", "dead"),
            ("loaded", "maintenance", "cleaning"),
            ("not-found", "inactive", "dead"),
            ("not-found", "failed", "failed"),
            ("masked", "inactive", "dead"),
            ("bad-setting", "inactive", "dead"),
            ("loaded", "weird", "new"),
        ];
        let lines: Vec<String> = combos
            .iter()
            .map(|(load, active, sub)| {
                let state = ShowState {
                    load_state: load.to_string(),
                    active_state: active.to_string(),
                    sub_state: sub.to_string(),
                    main_pid: None,
                    n_restarts: 0,
                };
                format!(
                    "{load}/{active}/{sub} -> {} {:?}",
                    map_state(&state),
                    map_phase(&state)
                )
            })
            .collect();
        expect![[r#"
            loaded/active/running -> running Running
            loaded/active/exited -> running Running
            loaded/reloading/reload -> running Running
            loaded/refreshing/running -> running Running
            loaded/activating/start -> starting Running
            loaded/activating/start-pre -> starting Running
            loaded/activating/auto-restart -> starting BackingOff
            loaded/deactivating/stop-sigterm -> stopped Stopped
            loaded/deactivating/final-sigkill -> stopped Stopped
            loaded/failed/failed -> failed CrashLoop
            loaded/inactive/dead -> stopped Stopped
            loaded/maintenance/cleaning -> stopped Stopped
            not-found/inactive/dead -> stopped Stopped
            not-found/failed/failed -> failed CrashLoop
            masked/inactive/dead -> stopped Stopped
            bad-setting/inactive/dead -> stopped Stopped
            loaded/weird/new -> failed CrashLoop"#]]
        .assert_eq(&lines.join("\n"));
    }

    #[tokio::test]
    async fn recording_double_plays_a_tiny_systemd() {
        let sc = RecordingSystemctl::new();
        let show = |u: &str| {
            vec![
                "show".to_string(),
                format!("--property={SHOW_PROPERTIES}"),
                u.to_string(),
            ]
        };
        let before = parse_show(&sc.run(&show("a.service")).await.unwrap());
        assert_eq!(map_state(&before), Status::Stopped);
        sc.run(&["start".into(), "a.service".into()]).await.unwrap();
        let after = parse_show(&sc.run(&show("a.service")).await.unwrap());
        assert_eq!(
            (map_state(&after), after.main_pid),
            (Status::Running, Some(4001))
        );
        sc.script_show("a.service", "ActiveState=failed\nLoadState=loaded\n");
        let failed = parse_show(&sc.run(&show("a.service")).await.unwrap());
        assert_eq!(map_state(&failed), Status::Failed);
        sc.fail_on("enable");
        let err = sc
            .run(&["enable".into(), "a.service".into()])
            .await
            .unwrap_err();
        expect!["`systemctl enable a.service` failed (exit status: 1): scripted failure of enable"]
            .assert_eq(&err.to_string());
        assert_eq!(sc.calls().len(), 5);
    }

    #[tokio::test]
    async fn real_systemctl_reports_a_missing_binary() {
        let sc = RealSystemctl {
            path: PathBuf::from("/nonexistent/systemctl"),
            ..RealSystemctl::default()
        };
        let err = sc.run(&["daemon-reload".into()]).await.unwrap_err();
        expect!["cannot run /nonexistent/systemctl: is systemd installed? (pass --systemctl PATH if it is elsewhere)"]
            .assert_eq(&err.to_string());
    }
}
