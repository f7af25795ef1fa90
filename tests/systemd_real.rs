//! The systemd runtime under a real systemd. Each test boots systemd as
//! PID 1 of namespaces of its own over a throwaway root
//! (`support::systemd_host`), runs `pockestrator serve --runtime systemd`
//! inside it with the units we ship (hardened, run as the `pockestrator`
//! user), and drives the daemon from outside over its API, its CLI and its
//! proxy, reading systemd's side with the real `systemctl` inside. Where
//! such a systemd cannot be booted, the test says why and is counted as
//! skipped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::daemon::{Daemon, Inside, BIN};
use crate::support::systemd_host::SystemdHost;
use crate::support::{deps_dir, free_port, mirror_dir, pocketbase_bin, skip, wait_until, PB_NEW};

const DATA_DIR: &str = "/var/lib/pockestrator";
const UNIT_DIR: &str = "/etc/systemd/system";

/// A systemd of its own, with the binaries the tests run inside; `None`
/// (and the skip recorded) where this machine cannot host one.
fn boot(test: &str) -> Option<SystemdHost> {
    let binds = [PathBuf::from(BIN), deps_dir(), mirror_dir()];
    match SystemdHost::boot(&binds) {
        Ok(host) => {
            eprintln!("{test}: systemd booted in {:?}", host.boot_time);
            Some(host)
        }
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

/// `pockestrator serve --runtime systemd` inside `host`, its data dir
/// where a root daemon keeps it by default.
async fn daemon_in(host: &SystemdHost, extra: &[&str]) -> Daemon {
    let inside = Inside {
        enter: host.enter(),
        data_dir: PathBuf::from(DATA_DIR),
        data_dir_here: host.path(DATA_DIR),
    };
    let mut args = vec!["--runtime", "systemd"];
    args.extend_from_slice(extra);
    Daemon::start_inside(inside, &args, &[]).await
}

/// A request through the daemon's embedded proxy for `host_name`; the
/// status, or `None` when the proxy does not answer.
async fn via_proxy(d: &Daemon, host_name: &str, path: &str) -> Option<u16> {
    let proxy = d.proxy.expect("the daemon runs its proxy");
    d.http
        .get(format!("http://{proxy}{path}"))
        .header(reqwest::header::HOST, host_name)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn healthy_via_proxy(d: &Daemon, host_name: &str) {
    wait_until(
        Duration::from_secs(20),
        &format!("{host_name} to answer /api/health through the proxy"),
        || async { (via_proxy(d, host_name, "/api/health").await == Some(200)).then_some(()) },
    )
    .await;
}

/// Superuser sign-in through the proxy: PocketBase reads and writes its
/// data as the unit user.
async fn superuser_signs_in(d: &Daemon, host_name: &str, password: &str) -> u16 {
    let proxy = d.proxy.expect("the daemon runs its proxy");
    d.http
        .post(format!(
            "http://{proxy}/api/collections/_superusers/auth-with-password"
        ))
        .header(reqwest::header::HOST, host_name)
        .json(&serde_json::json!({"identity": "admin@example.com", "password": password}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// One line of `/proc/PID/status` of a process inside.
fn proc_status(host: &SystemdHost, pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(host.path(format!("/proc/{pid}/status")))
        .unwrap_or_else(|e| panic!("no process {pid} inside: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{text}"))
        .trim()
        .to_string()
}

fn main_pid(host: &SystemdHost, unit: &str) -> u32 {
    host.show(unit, "MainPID")
        .parse()
        .expect("MainPID is a number")
}

fn pid_of(v: &Value) -> u32 {
    v["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {v}")) as u32
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_live_and_die_as_units_of_a_real_systemd() {
    const TEST: &str = "systemd_real::instances_live_and_die_as_units_of_a_real_systemd";
    let started = Instant::now();
    let user_here_before = nix::unistd::User::from_name("pockestrator")
        .ok()
        .flatten()
        .is_some();
    let Some(host) = boot(TEST) else { return };
    let mut d = daemon_in(&host, &[]).await;
    let unit = "pockestrator-moots.service";
    let unit_file = host.path(format!("{UNIT_DIR}/{unit}"));

    // Create: the unit we ship, enabled and active under its sandbox.
    let port = free_port().to_string();
    let created = d.cli_json(&[
        "create",
        "moots",
        "--version",
        PB_NEW,
        "--port",
        &port,
        "--superuser-email",
        "admin@example.com",
    ]);
    assert_eq!(created["status"], "running", "{created}");
    let password = created["superuser"]["password"]
        .as_str()
        .expect("a generated password")
        .to_string();
    let text = std::fs::read_to_string(&unit_file).unwrap();
    for line in [
        "User=pockestrator",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateUsers=yes",
        "PrivateDevices=yes",
        "ProtectProc=invisible",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=",
        "LimitNOFILE=4096",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert_eq!(
        (
            host.show(unit, "LoadState"),
            host.show(unit, "ActiveState"),
            host.show(unit, "SubState"),
            host.show(unit, "UnitFileState"),
        ),
        (
            "loaded".to_string(),
            "active".to_string(),
            "running".to_string(),
            "enabled".to_string()
        )
    );
    let first = main_pid(&host, unit);
    assert_eq!(pid_of(&created), first, "{created}");
    let uid = String::from_utf8(host.run("id", &["-u", "pockestrator"]).stdout).unwrap();
    let uids = proc_status(&host, first, "Uid");
    assert_eq!(uids.split_whitespace().next(), Some(uid.trim()), "{uids}");
    assert_eq!(proc_status(&host, first, "CapEff"), "0000000000000000");
    assert_eq!(proc_status(&host, first, "NoNewPrivs"), "1");
    assert_eq!(
        proc_status(&host, first, "Seccomp"),
        "2",
        "no syscall filter"
    );

    // The unit user may pass through the data dir, and read nothing in it.
    let mode_of = |path: &str| {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(host.path(path)).unwrap();
        (meta.mode() & 0o7777, meta.gid())
    };
    let gid = String::from_utf8(host.run("id", &["-g", "pockestrator"]).stdout).unwrap();
    assert_eq!(
        mode_of(DATA_DIR),
        (0o710, gid.trim().parse().unwrap()),
        "the data dir"
    );
    for private in ["token", "state.db", "state.db-wal", "pockestrator.sock"] {
        assert_eq!(
            mode_of(&format!("{DATA_DIR}/{private}")).0,
            0o600,
            "{private}"
        );
    }
    assert_eq!(mode_of(&format!("{DATA_DIR}/archive")).0, 0o700);

    // Reachable through the proxy by its host name, its superuser too.
    healthy_via_proxy(&d, "moots.localhost").await;
    assert_eq!(
        superuser_signs_in(&d, "moots.localhost", &password).await,
        200
    );

    // kill -9 of the main process: systemd starts a new one.
    let killed = host.run("kill", &["-KILL", &first.to_string()]);
    assert!(killed.status.success(), "{killed:?}");
    let second = wait_until(
        Duration::from_secs(20),
        "systemd to restart the unit",
        || async {
            let pid = main_pid(&host, unit);
            (pid != 0 && pid != first && host.show(unit, "ActiveState") == "active").then_some(pid)
        },
    )
    .await;
    assert!(host.show(unit, "NRestarts").parse::<u32>().unwrap() >= 1);
    healthy_via_proxy(&d, "moots.localhost").await;
    assert_eq!(
        superuser_signs_in(&d, "moots.localhost", &password).await,
        200,
        "the restarted instance cannot use its data"
    );
    wait_until(
        Duration::from_secs(20),
        "the daemon to see the new main process",
        || async {
            let (_, v) = d.get("/api/v1/instances/moots").await;
            (v["pid"].as_u64() == Some(second as u64) && v["status"] == "running").then_some(())
        },
    )
    .await;

    // Limits: written into the unit, loaded by systemd, applied by a restart.
    let updated = d.cli_json(&[
        "update",
        "moots",
        "--memory-max",
        "256M",
        "--cpu-quota",
        "50%",
    ]);
    assert_eq!(
        (
            updated["memory_max"].as_str(),
            updated["cpu_quota"].as_str()
        ),
        (Some("256M"), Some("50%")),
        "{updated}"
    );
    // What systemd loaded. Whether the kernel enforces it depends on the
    // cgroup2 controllers this machine gives the test's systemd (none
    // where memory and cpu are bound to cgroup v1).
    assert_eq!(host.show(unit, "MemoryMax"), (256u64 << 20).to_string());
    assert_eq!(host.show(unit, "CPUQuotaPerSecUSec"), "500ms");
    let third = wait_until(
        Duration::from_secs(20),
        "the unit to run with its limits",
        || async {
            let pid = main_pid(&host, unit);
            (pid != 0 && pid != second && host.show(unit, "ActiveState") == "active").then_some(pid)
        },
    )
    .await;
    healthy_via_proxy(&d, "moots.localhost").await;

    // The daemon dies and comes back: the unit is adopted, not restarted.
    let restarts = host.show(unit, "NRestarts");
    d.kill9();
    assert_eq!(host.show(unit, "ActiveState"), "active");
    d.restart().await;
    let v = d.wait_status("moots", "running").await;
    assert_eq!(pid_of(&v), third, "{v}");
    assert_eq!(main_pid(&host, unit), third);
    assert_eq!(host.show(unit, "NRestarts"), restarts);

    // Stop, then delete: the unit is stopped, disabled and gone.
    d.cli_json(&["stop", "moots"]);
    assert_eq!(host.show(unit, "ActiveState"), "inactive");
    assert_eq!(
        via_proxy(&d, "moots.localhost", "/api/health").await,
        Some(503)
    );
    d.cli_json(&["delete", "moots", "--purge", "--yes"]);
    assert!(!unit_file.exists());
    let wants = host.path(format!("{UNIT_DIR}/multi-user.target.wants/{unit}"));
    assert!(std::fs::symlink_metadata(&wants).is_err(), "still enabled");
    assert_eq!(host.show(unit, "LoadState"), "not-found");
    assert!(!host.path(format!("{DATA_DIR}/instances/moots")).exists());
    assert_eq!(d.cli_json(&["list"]), serde_json::json!([]));

    // The unit user was made inside, not on this machine.
    assert!(host.run("id", &["pockestrator"]).status.success());
    if !user_here_before {
        assert!(nix::unistd::User::from_name("pockestrator")
            .unwrap()
            .is_none());
    }
    eprintln!("{TEST}: {:?} in all", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_script_units_under_a_real_systemd_are_imported_without_a_restart() {
    const TEST: &str =
        "systemd_real::seed_script_units_under_a_real_systemd_are_imported_without_a_restart";
    let started = Instant::now();
    let Some(host) = boot(TEST) else { return };
    let unit = "moots-pocketbase.service";

    // What seed 000's script leaves: the binary in the project directory,
    // its unit (verbatim, as root) in /lib/systemd/system, a Caddy site
    // block; enabled and started as the script does.
    let home = "/home/ubuntu/moots";
    std::fs::create_dir_all(host.path(home)).unwrap();
    std::fs::copy(
        pocketbase_bin(PB_NEW),
        host.path(format!("{home}/pocketbase")),
    )
    .unwrap();
    let port = free_port();
    std::fs::write(
        host.path(format!("/lib/systemd/system/{unit}")),
        crate::systemd::seed_unit(home, port),
    )
    .unwrap();
    std::fs::create_dir_all(host.path("/etc/caddy")).unwrap();
    std::fs::write(
        host.path("/etc/caddy/Caddyfile"),
        format!(
            "other.example.com {{\n\trespond \"hi\"\n}}\n{}",
            crate::systemd::seed_site_block("moots", port)
        ),
    )
    .unwrap();
    host.systemctl(&["daemon-reload"]);
    host.systemctl(&["enable", "--now", unit]);
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
    let pid = main_pid(&host, unit);
    let since = host.show(unit, "ExecMainStartTimestampMonotonic");

    // The daemon as README says to run it, import with its defaults (the
    // usual unit directories, the daemon's Caddyfile).
    let d = daemon_in(&host, &["--unit-name", "{name}-pocketbase.service"]).await;
    let dry = d.cli_json(&["import", "--dry-run"]);
    assert_eq!(dry["units"][0]["action"], "would import", "{dry}");
    assert_eq!(dry["units"][0]["version"], PB_NEW);
    assert_eq!(dry["units"].as_array().map(Vec::len), Some(1), "{dry}");
    assert_eq!(d.cli_json(&["list"]), serde_json::json!([]));

    let done = d.cli_json(&["import"]);
    let u = &done["units"][0];
    assert_eq!(u["action"], "imported", "{done}");
    assert_eq!(
        (u["name"].as_str(), u["port"].as_u64()),
        (Some("moots"), Some(port as u64))
    );
    let v = d.wait_status("moots", "running").await;
    assert_eq!(pid_of(&v), pid, "the instance was restarted: {v}");
    assert_eq!(v["domain"], "tigawanna.vip");
    // systemd agrees: the same process, never restarted.
    assert_eq!(main_pid(&host, unit), pid);
    assert_eq!(host.show(unit, "NRestarts"), "0");
    assert_eq!(host.show(unit, "ExecMainStartTimestampMonotonic"), since);
    healthy_via_proxy(&d, "moots.tigawanna.vip").await;

    // It runs the script's unit, not ours: doctor says so.
    let out = d.cli(&["doctor", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["drifts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["instance"] == "moots" && x["kind"] == "unit missing"),
        "{report}"
    );

    // doctor --repair puts our unit in place (it overrides the script's
    // from /etc/systemd/system); the next restart runs the instance under
    // it, as the unit user, on the data the script's root-run unit made.
    let repaired = d.cli_json(&["doctor", "--repair"]);
    assert_eq!(repaired["drifts"], serde_json::json!([]), "{repaired}");
    assert_eq!(main_pid(&host, unit), pid, "a repair restarts nothing");
    assert_eq!(
        host.show(unit, "FragmentPath"),
        format!("{UNIT_DIR}/{unit}")
    );
    let restarted = d.cli_json(&["restart", "moots"]);
    assert_eq!(restarted["status"], "running", "{restarted}");
    let new_pid = main_pid(&host, unit);
    assert_ne!(new_pid, pid);
    let uid = String::from_utf8(host.run("id", &["-u", "pockestrator"]).stdout).unwrap();
    let uids = proc_status(&host, new_pid, "Uid");
    assert_eq!(uids.split_whitespace().next(), Some(uid.trim()), "{uids}");
    healthy_via_proxy(&d, "moots.tigawanna.vip").await;
    eprintln!("{TEST}: {:?} in all", started.elapsed());
}
