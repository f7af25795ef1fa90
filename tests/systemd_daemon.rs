//! The daemon with `--runtime systemd`, against a small script in place of
//! `systemctl` that records every call and does what systemd would do with
//! our unit files (start `ExecStart=` in `WorkingDirectory=`, stop it,
//! answer `show`): it checks the exact calls, in order, and runs as any
//! user. The units themselves are checked with the real `systemd-analyze
//! verify`; the same flows under a real systemd are `systemd_real`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::daemon::{alive, Daemon};
use crate::support::{free_port, quiet_port, wait_until, PB_NEW};

/// A recording `systemctl` double that runs our units' `ExecStart=`.
const FAKE_SYSTEMCTL: &str = r#"#!/bin/bash
# Records every call, and plays systemd for units in $FAKE_UNIT_DIR.
state="$FAKE_SYSTEMD_STATE"
mkdir -p "$state"
args=()
for a in "$@"; do
  case "$a" in --no-ask-password) ;; *) args+=("$a") ;; esac
done
echo "${args[*]}" >> "$state/calls.log"
verb="${args[0]}"
unit="${args[${#args[@]}-1]}"
file="$FAKE_UNIT_DIR/$unit"
pidfile="$state/$unit.pid"
running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
start() {
  # Seed 000's units write `Key = value` and quote --http="…".
  exec_line=$(sed -n 's/^ExecStart *= *//p' "$file")
  workdir=$(sed -n 's/^WorkingDirectory *= *//p' "$file")
  out=$(sed -n 's/^StandardOutput *= *append://p' "$file")
  cd "$workdir" || exit 1
  bash -c "exec setsid $exec_line" >> "${out:-/dev/null}" 2>&1 < /dev/null &
  echo $! > "$pidfile"
}
stop() {
  if running; then
    pid=$(cat "$pidfile")
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
}
case "$verb" in
  daemon-reload|enable|disable) exit 0 ;;
  start) running || start ;;
  restart) stop; start ;;
  stop) stop ;;
  show)
    if [ ! -f "$file" ]; then
      printf 'LoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0\nNRestarts=0\n'
    elif running; then
      printf 'LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=%s\nNRestarts=0\n' "$(cat "$pidfile")"
    else
      printf 'LoadState=loaded\nActiveState=inactive\nSubState=dead\nMainPID=0\nNRestarts=0\n'
    fi ;;
  *) echo "fake systemctl: unsupported: ${args[*]}" >&2; exit 1 ;;
esac
"#;

struct FakeSystemd {
    dir: tempfile::TempDir,
}

impl FakeSystemd {
    fn new() -> FakeSystemd {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("units")).unwrap();
        let script = dir.path().join("systemctl");
        std::fs::write(&script, FAKE_SYSTEMCTL).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeSystemd { dir }
    }
    fn units(&self) -> PathBuf {
        self.dir.path().join("units")
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.state().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("show"))
            .map(str::to_string)
            .collect()
    }
    fn args(&self) -> Vec<String> {
        [
            "--runtime",
            "systemd",
            "--unit-dir",
            self.units().to_str().unwrap(),
            "--systemctl",
            self.dir.path().join("systemctl").to_str().unwrap(),
            "--unit-user",
            "root",
            "--unit-setting",
            "RestartSec=2s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.state()) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "pid") {
                    if let Some(pid) = std::fs::read_to_string(e.path())
                        .ok()
                        .and_then(|t| t.trim().parse::<i32>().ok())
                    {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
    }
}

fn verify(unit: &Path) {
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for bad in ["Unknown", "Failed", "ignoring", "not executable"] {
        assert!(!text.contains(bad), "systemd-analyze verify: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_run_as_systemd_units() {
    let fake = FakeSystemd::new();
    let args = fake.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let state = fake.state();
    let units = fake.units();
    let mut d = Daemon::start_with(
        &args,
        &[
            ("FAKE_SYSTEMD_STATE", state.to_str().unwrap()),
            ("FAKE_UNIT_DIR", units.to_str().unwrap()),
        ],
    )
    .await;
    let port = quiet_port().to_string();
    let out = d.cli(&["create", "bad", "--version", PB_NEW, "--memory-max", "lots"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("memory limit"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created = d.cli_json(&[
        "create",
        "unit",
        "--version",
        PB_NEW,
        "--port",
        &port,
        "--memory-max",
        "512M",
        "--cpu-quota",
        "50%",
    ]);
    assert_eq!(created["status"], "running", "{created}");
    assert_eq!(created["memory_max"], "512M");
    let unit = units.join("pockestrator-unit.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains("MemoryMax=512M") && text.contains("CPUQuota=50%"),
        "{text}"
    );
    assert!(
        text.contains("RestartSec=2s") && !text.contains("RestartSec=1s"),
        "{text}"
    );
    assert!(text.contains(&format!("--http=127.0.0.1:{port}")), "{text}");
    assert!(
        text.contains("NoNewPrivileges=yes") && text.contains("LimitNOFILE=4096"),
        "{text}"
    );
    verify(&unit);
    assert_eq!(
        fake.calls(),
        [
            "daemon-reload",
            "enable pockestrator-unit.service",
            "start pockestrator-unit.service"
        ]
    );

    // Stop and start go through systemctl.
    d.cli_json(&["stop", "unit"]);
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/api/health"))
        .await
        .is_err());
    let started = d.cli_json(&["start", "unit"]);
    assert_eq!(started["status"], "running");
    let pid = started["pid"].as_i64().unwrap() as i32;

    // The daemon goes away and comes back: the unit is adopted, not restarted.
    d.kill9();
    assert!(alive(pid));
    d.restart().await;
    let v = d.wait_status("unit", "running").await;
    assert_eq!(v["pid"].as_i64().unwrap() as i32, pid);

    // New limits are written into the unit and applied by a restart.
    let updated = d.cli_json(&[
        "update",
        "unit",
        "--memory-max",
        "1G",
        "--cpu-quota",
        "none",
    ]);
    assert_eq!(updated["memory_max"], "1G");
    assert_eq!(updated["cpu_quota"], serde_json::Value::Null);
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains("MemoryMax=1G") && !text.contains("CPUQuota="),
        "{text}"
    );
    verify(&unit);
    let v = d.wait_status("unit", "running").await;
    let pid = v["pid"].as_i64().unwrap() as i32;

    // A unit edited by hand is drift; --repair writes it back.
    let original = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(
        &unit,
        original.replace("LimitNOFILE=4096", "LimitNOFILE=1024"),
    )
    .unwrap();
    // The dashboard's instance page says so too.
    let (status, page) = d.ui_get("/ui/instances/unit").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<code>pockestrator-unit.service</code>"),
        "{page}"
    );
    assert!(
        page.contains("<span class=\"badge failed\">differs</span>"),
        "{page}"
    );
    let out = d.cli(&["doctor", "--json"]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let drifts = report["drifts"].as_array().unwrap();
    assert!(
        drifts
            .iter()
            .any(|x| x["instance"] == "unit" && x["kind"] == "unit changed"),
        "{report}"
    );
    let repaired = d.cli_json(&["doctor", "--repair"]);
    assert_eq!(repaired["drifts"], serde_json::json!([]), "{repaired}");
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), original);
    let (_, page) = d.ui_get("/ui/instances/unit").await;
    assert!(
        page.contains("<span class=\"badge running\">as written</span>"),
        "{page}"
    );
    let conn = rusqlite::Connection::open(d.data_dir().join("state.db")).unwrap();
    let hash: Option<String> = conn
        .query_row(
            "SELECT systemd_config_hash FROM instances WHERE name = 'unit'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(hash.map(|h| h.len()), Some(64), "the unit's hash is stored");

    // Delete: stop, disable, unit file gone, daemon-reload.
    let before = fake.calls().len();
    d.cli_json(&["delete", "unit", "--purge", "--yes"]);
    let after: Vec<String> = fake.calls().into_iter().skip(before).collect();
    assert!(
        after.contains(&"stop pockestrator-unit.service".to_string()),
        "{after:?}"
    );
    assert!(
        after.contains(&"disable pockestrator-unit.service".to_string()),
        "{after:?}"
    );
    assert_eq!(
        after.last().map(String::as_str),
        Some("daemon-reload"),
        "{after:?}"
    );
    assert!(!unit.exists());
    wait_until(
        Duration::from_secs(10),
        "the unit's process to end",
        || async { (!alive(pid)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_made_by_the_seed_script_are_imported_without_a_restart() {
    let fake = FakeSystemd::new();
    let units = fake.units();
    let state = fake.state();
    // The tree the seed's script leaves: the binary and its data in the
    // project directory, a unit, a Caddy site block.
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home/ubuntu/moots");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::copy(
        crate::support::pocketbase_bin(PB_NEW),
        home.join("pocketbase"),
    )
    .unwrap();
    let port = free_port();
    let unit_text = format!(
        "\n[Unit]\nDescription = moots pocketbase\n\n[Service]\nType           = simple\nUser           = root\nGroup          = root\nLimitNOFILE    = 4096\nRestart        = always\nRestartSec     = 5s\nStandardOutput   = append:{home}/errors.log\nStandardError    = append:{home}/errors.log\nWorkingDirectory = {home}/\nExecStart      = {home}/pocketbase serve --http=\"127.0.0.1:{port}\"\n\n[Install]\nWantedBy = multi-user.target\n\n",
        home = home.display()
    );
    std::fs::write(units.join("moots-pocketbase.service"), unit_text).unwrap();
    let caddyfile = root.path().join("Caddyfile");
    std::fs::write(
        &caddyfile,
        format!("other.example.com {{\n\trespond \"hi\"\n}}\n\nmoots.tigawanna.vip {{\n    request_body {{\n        max_size 10MB\n    }}\n    reverse_proxy 127.0.0.1:{port} {{\n        transport http {{\n            read_timeout 360s\n        }}\n        header_up X-Forwarded-For {{remote_host}}\n        header_up X-Real-IP {{remote_host}}\n    }}\n}}\n"),
    )
    .unwrap();
    let systemctl = fake.dir.path().join("systemctl");
    let env = [
        ("FAKE_SYSTEMD_STATE", state.to_str().unwrap()),
        ("FAKE_UNIT_DIR", units.to_str().unwrap()),
    ];
    let started = std::process::Command::new(&systemctl)
        .args(["start", "moots-pocketbase.service"])
        .envs(env)
        .status()
        .unwrap();
    assert!(started.success());
    let health = format!("http://127.0.0.1:{port}/api/health");
    wait_until(
        Duration::from_secs(20),
        "the script-made instance",
        || async {
            reqwest::get(&health)
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        },
    )
    .await;
    let pid: i64 = std::fs::read_to_string(state.join("moots-pocketbase.service.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let d = Daemon::start_with(
        &[
            "--runtime",
            "systemd",
            "--unit-dir",
            units.to_str().unwrap(),
            "--unit-name",
            "{name}-pocketbase.service",
            "--systemctl",
            systemctl.to_str().unwrap(),
            "--unit-user",
            "root",
            "--router",
            "none",
        ],
        &env,
    )
    .await;
    let unit_dir = units.to_str().unwrap();
    let caddy = caddyfile.to_str().unwrap();
    let dry = d.cli_json(&[
        "import",
        "--dry-run",
        "--unit-dir",
        unit_dir,
        "--caddyfile",
        caddy,
    ]);
    assert_eq!(dry["units"][0]["action"], "would import", "{dry}");
    assert_eq!(dry["units"][0]["version"], PB_NEW);
    assert_eq!(d.cli_json(&["list"]), serde_json::json!([]));

    let done = d.cli_json(&["import", "--unit-dir", unit_dir, "--caddyfile", caddy]);
    let u = &done["units"][0];
    assert_eq!(u["action"], "imported", "{done}");
    assert_eq!(
        (u["name"].as_str(), u["port"].as_u64()),
        (Some("moots"), Some(port as u64))
    );
    let v = d.wait_status("moots", "running").await;
    assert_eq!(
        v["pid"].as_i64(),
        Some(pid),
        "the instance was restarted: {v}"
    );
    assert_eq!(v["domain"], "tigawanna.vip");
    assert_eq!(v["version"], PB_NEW);
    assert_eq!(
        v["dir"].as_str().unwrap().trim_end_matches('/'),
        home.to_str().unwrap()
    );
    assert!(alive(pid as i32));
    // Imported once only.
    let again = d.cli_json(&["import", "--unit-dir", unit_dir, "--caddyfile", caddy]);
    assert_eq!(again["units"][0]["action"], "skipped", "{again}");
    let (_, events) = d.get("/api/v1/events?instance=moots").await;
    assert_eq!(events["events"][0]["action"], "import", "{events}");
}

#[test]
fn unit_settings_cannot_replace_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["ExecStart=/bin/sh", "Evil\nKey=1", "NoEquals"] {
        let out = std::process::Command::new(crate::support::daemon::BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "serve",
                "--runtime",
                "systemd",
                "--listen",
                "none",
                "--unit-setting",
                bad,
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--unit-setting"), "{bad:?}: {err}");
    }
}
