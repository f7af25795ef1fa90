//! The systemd runtime: generated units checked by the real
//! `systemd-analyze` (verify and the security score), the whole lifecycle
//! against a recording `systemctl`, and import of a tree laid out exactly as
//! seed 000's script leaves it. The same under a real systemd is
//! `systemd_real`.

use std::path::{Path, PathBuf};
use std::process::Command;

use expect_test::expect;
use pockestrator::model::InstanceName;
use pockestrator::runtime::systemd::import::{self, ImportCandidate};
use pockestrator::runtime::systemd::{
    map_state, parse_show, render_unit, unit_name, RealSystemctl, RecordingSystemctl,
    SystemdConfig, SystemdRuntime, UnitLog, UnitOptions, UnitUser,
};
use pockestrator::runtime::{LaunchSpec, Phase, Runtime, RuntimeError, RuntimeEvent};

use crate::support::{pocketbase_bin, PB_NEW};

const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

/// Seed 000's unit, verbatim, for a project at `home` (the script's
/// `/home/ubuntu/${project_name}`).
pub(crate) fn seed_unit(home: &str, port: u16) -> String {
    format!(
        r#"
[Unit]
Description = moots pocketbase

[Service]
Type           = simple
User           = root
Group          = root
LimitNOFILE    = 4096
Restart        = always
RestartSec     = 5s
StandardOutput   = append:{home}/errors.log
StandardError    = append:{home}/errors.log
WorkingDirectory = {home}/
ExecStart      = {home}/pocketbase serve --http="127.0.0.1:{port}"

[Install]
WantedBy = multi-user.target

"#
    )
}

/// Seed 000's Caddyfile block, as its script appends it.
pub(crate) fn seed_site_block(project: &str, port: u16) -> String {
    format!(
        r#"
{project}.tigawanna.vip {{
    request_body {{
        max_size 10MB
    }}
    reverse_proxy 127.0.0.1:{port} {{
        transport http {{
            read_timeout 360s
        }}
        # Add these headers to forward client IP
        header_up X-Forwarded-For {{remote_host}}
        header_up X-Real-IP {{remote_host}}
    }}
}}

"#
    )
}

fn spec(binary: &Path, instance_dir: &Path) -> LaunchSpec {
    LaunchSpec {
        name: InstanceName::parse("moots").unwrap(),
        binary: binary.to_path_buf(),
        instance_dir: instance_dir.to_path_buf(),
        port: 8094,
        limits: Default::default(),
        release: None,
        release_binary: false,
    }
}

/// `systemd-analyze verify`: exit status 0 and no complaint.
fn verify(unit: &Path) -> Result<(), String> {
    let out = Command::new(SYSTEMD_ANALYZE)
        .arg("verify")
        .arg(unit)
        .output()
        .map_err(|e| format!("cannot run {SYSTEMD_ANALYZE}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            [
                "unknown",
                "failed",
                "ignoring",
                "invalid",
                "not executable",
                "bad",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect();
    if out.status.success() && complaints.is_empty() {
        Ok(())
    } else {
        Err(format!("{} ({}):\n{text}", unit.display(), out.status))
    }
}

/// The overall exposure of `systemd-analyze security --offline=true`.
fn exposure(unit: &Path) -> (f64, String) {
    let out = Command::new(SYSTEMD_ANALYZE)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    let after = line.rsplit_once(": ").expect("score after ': '").1;
    let mut words = after.split_whitespace();
    let score: f64 = words.next().unwrap().parse().unwrap();
    (score, words.next().unwrap_or("").to_string())
}

/// Write `text` as unit `name` in `dir`.
fn write_unit(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn variants() -> Vec<(&'static str, UnitOptions)> {
    vec![
        ("default", UnitOptions::default()),
        (
            "dynamic-with-limits",
            UnitOptions {
                user: UnitUser::Dynamic,
                memory_max: Some("512M".into()),
                cpu_quota: Some("50%".into()),
                ..UnitOptions::default()
            },
        ),
        (
            "log-to-file",
            UnitOptions {
                log: UnitLog::InstanceFile,
                ..UnitOptions::default()
            },
        ),
        (
            "root",
            UnitOptions {
                user: UnitUser::Root,
                ..UnitOptions::default()
            },
        ),
        (
            "unhardened",
            UnitOptions {
                hardening: false,
                ..UnitOptions::default()
            },
        ),
        (
            "overrides",
            UnitOptions {
                extra: vec![
                    ("IPAddressDeny".into(), "any".into()),
                    ("IPAddressAllow".into(), "localhost".into()),
                    ("TimeoutStopSec".into(), "20s".into()),
                ],
                ..UnitOptions::default()
            },
        ),
    ]
}

#[test]
fn every_generated_unit_passes_systemd_analyze_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let binary = pocketbase_bin(PB_NEW);
    // Paths systemd must be told about carefully: spaces, '%' and '$'.
    let awkward = tmp.path().join("Pocket Base 100%");
    std::fs::create_dir_all(&awkward).unwrap();
    std::os::unix::fs::symlink(&binary, awkward.join("pocketbase")).unwrap();
    let cases = [
        (binary.clone(), tmp.path().join("instances/moots")),
        (awkward.join("pocketbase"), tmp.path().join("50%/a$b/moots")),
    ];
    let mut checked = 0;
    for (binary, instance_dir) in &cases {
        for pattern in ["pockestrator-{name}.service", "{name}-pocketbase.service"] {
            for (label, opts) in variants() {
                let spec = spec(binary, instance_dir);
                let text = render_unit(&spec, &opts).unwrap();
                let dir = tmp.path().join(format!("units-{checked}"));
                std::fs::create_dir_all(&dir).unwrap();
                let unit = write_unit(&dir, &unit_name(pattern, &spec.name).unwrap(), &text);
                verify(&unit).unwrap_or_else(|e| panic!("{label}: {e}\n{text}"));
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 24);

    // The check bites: an unknown setting is reported.
    let opts = UnitOptions {
        extra: vec![("NoSuchSetting".into(), "1".into())],
        ..UnitOptions::default()
    };
    let text = render_unit(&spec(&binary, &tmp.path().join("x")), &opts).unwrap();
    let unit = write_unit(tmp.path(), "bad.service", &text);
    let err = verify(&unit).unwrap_err();
    assert!(err.contains("Unknown key"), "{err}");
}

#[test]
fn hostile_names_and_patterns_never_reach_a_unit() {
    for raw in [
        "evil\nExecStart=/bin/sh",
        "a b",
        "../x",
        "%n",
        "x$y",
        "Moots",
    ] {
        assert!(InstanceName::parse(raw).is_err(), "{raw:?} accepted");
    }
    let name = InstanceName::parse("moots").unwrap();
    for pattern in [
        "pb-{name}.service\n[Service]\nExecStartPre=/bin/sh",
        "pb %{name}.service",
        "pb/{name}.service",
        "pb@{name}.service",
        "pb-$name.service",
    ] {
        assert!(unit_name(pattern, &name).is_err(), "{pattern:?} accepted");
    }
}

#[test]
fn hardened_unit_scores_ok_and_the_seeds_unsafe() {
    let tmp = tempfile::tempdir().unwrap();
    let binary = pocketbase_bin(PB_NEW);
    let instance = PathBuf::from("/var/lib/pockestrator/instances/moots");

    let default = render_unit(&spec(&binary, &instance), &UnitOptions::default()).unwrap();
    let unit = write_unit(tmp.path(), "pockestrator-moots.service", &default);
    let (score, verdict) = exposure(&unit);
    eprintln!("default (named user) unit: {score} {verdict}");
    assert!(score <= 2.0, "default unit scores {score} {verdict}");
    assert_eq!(verdict, "OK");

    for (label, opts) in variants() {
        if label == "unhardened" || label == "default" {
            continue;
        }
        let text = render_unit(&spec(&binary, &instance), &opts).unwrap();
        let unit = write_unit(tmp.path(), &format!("pockestrator-{label}.service"), &text);
        let (score, verdict) = exposure(&unit);
        eprintln!("{label} unit: {score} {verdict}");
        assert!(score <= 2.0, "{label} unit scores {score} {verdict}");
    }

    let seed = write_unit(
        tmp.path(),
        "moots-pocketbase.service",
        &seed_unit("/home/ubuntu/moots", 8094),
    );
    let (score, verdict) = exposure(&seed);
    eprintln!("seed unit: {score} {verdict}");
    assert!(score >= 9.0, "seed unit scores {score} {verdict}");
    assert_eq!(verdict, "UNSAFE");
}

fn runtime(unit_dir: &Path, pattern: &str) -> SystemdRuntime<RecordingSystemctl> {
    SystemdRuntime::new(
        SystemdConfig {
            unit_dir: unit_dir.to_path_buf(),
            unit_pattern: pattern.to_string(),
            // Root: what the calls are is checked here; a named user's
            // access to its instance (which a 0700 temp dir would deny) is
            // checked under a real systemd in `systemd_real`.
            options: UnitOptions {
                user: UnitUser::Root,
                ..UnitOptions::default()
            },
        },
        RecordingSystemctl::watching(unit_dir.to_path_buf()),
    )
    .unwrap()
}

#[tokio::test]
async fn lifecycle_against_a_recording_systemctl() {
    let tmp = tempfile::tempdir().unwrap();
    let units = tmp.path().join("units");
    let rt = runtime(&units, "pockestrator-{name}.service");
    let mut events = rt.subscribe();
    let spec = spec(&pocketbase_bin(PB_NEW), &tmp.path().join("instances/moots"));
    let name = spec.name.clone();
    let unit = "pockestrator-moots.service";
    assert_eq!(rt.unit_path(&name), units.join(unit));

    // Start: the unit is on disk (and no temporary file) before systemd is
    // told to reload; then enable, start, and the pid from `show`.
    let pid = rt.start(spec.clone()).await.unwrap();
    assert_eq!(pid, 4001);
    expect![[r#"
        show --property=LoadState,ActiveState,SubState,MainPID,NRestarts pockestrator-moots.service
        daemon-reload
        enable pockestrator-moots.service
        start pockestrator-moots.service
        show --property=LoadState,ActiveState,SubState,MainPID,NRestarts pockestrator-moots.service"#]]
    .assert_eq(&rt.systemctl().call_lines().join("\n"));
    let dirs = rt.systemctl().dir_at_calls();
    assert!(dirs[0].is_empty(), "{dirs:?}");
    for listing in &dirs[1..] {
        assert_eq!(listing, &[unit.to_string()]);
    }
    let on_disk = std::fs::read_to_string(units.join(unit)).unwrap();
    assert_eq!(on_disk, rt.render(&spec).unwrap());
    assert_eq!(rt.drift(&spec), None);
    assert!(matches!(
        events.try_recv().unwrap(),
        RuntimeEvent::Spawned { pid: 4001, .. }
    ));
    let seen = rt.observe(&name).unwrap();
    assert_eq!(
        (seen.pid, seen.phase, seen.restarts),
        (Some(4001), Phase::Running, 0)
    );

    // Starting a running instance is refused, and changes nothing on disk.
    assert!(matches!(
        rt.start(spec.clone()).await,
        Err(RuntimeError::AlreadyRunning(_))
    ));

    // Drift: a hand edit is noticed.
    std::fs::write(units.join(unit), format!("{on_disk}\n# edited\n")).unwrap();
    let drift = rt.drift(&spec).unwrap();
    assert!(
        drift.contains("was changed outside pockestrator"),
        "{drift}"
    );
    std::fs::write(units.join(unit), &on_disk).unwrap();

    // What systemd does by itself shows up on refresh.
    let sc = rt.systemctl();
    sc.script_show(
        unit,
        "LoadState=loaded\nActiveState=activating\nSubState=auto-restart\nMainPID=0\nNRestarts=1\n",
    );
    let shown = |evs: Vec<RuntimeEvent>| {
        evs.iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    expect![[r#"
        {"event":"exited","name":"moots","pid":4001,"code":null,"signal":null,"expected":false}
        {"event":"restart_scheduled","name":"moots","attempt":2,"delay_ms":1000}"#]]
    .assert_eq(&shown(rt.refresh().await));
    assert_eq!(rt.observe(&name).unwrap().phase, Phase::BackingOff);
    sc.script_show(
        unit,
        "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=5151\nNRestarts=1\n",
    );
    expect![[r#"{"event":"spawned","name":"moots","pid":5151}"#]]
        .assert_eq(&shown(rt.refresh().await));
    let seen = rt.observe(&name).unwrap();
    assert_eq!(
        (seen.pid, seen.phase, seen.restarts),
        (Some(5151), Phase::Running, 1)
    );
    let failed = "LoadState=loaded\nActiveState=failed\nSubState=failed\nMainPID=0\nNRestarts=5\n";
    sc.script_show(unit, failed);
    expect![[r#"
        {"event":"exited","name":"moots","pid":5151,"code":null,"signal":null,"expected":false}
        {"event":"crash_loop","name":"moots","crashes":5}"#]]
    .assert_eq(&shown(rt.refresh().await));
    assert_eq!(
        map_state(&parse_show(failed)),
        pockestrator::model::Status::Failed
    );
    assert_eq!(rt.observe(&name).unwrap().phase, Phase::CrashLoop);
    assert_eq!(shown(rt.refresh().await), "");
    sc.unscript_show(unit);

    // Restart re-renders, reloads and restarts.
    sc.clear();
    let pid = rt.restart(&name).await.unwrap();
    assert_eq!(pid, 4002);
    expect![[r#"
        daemon-reload
        enable pockestrator-moots.service
        restart pockestrator-moots.service
        show --property=LoadState,ActiveState,SubState,MainPID,NRestarts pockestrator-moots.service"#]]
    .assert_eq(&sc.call_lines().join("\n"));
    let unknown = InstanceName::parse("nobody").unwrap();
    assert!(matches!(
        rt.restart(&unknown).await,
        Err(RuntimeError::NotManaged(_))
    ));

    // Stop.
    sc.clear();
    while events.try_recv().is_ok() {}
    rt.stop(&name).await.unwrap();
    expect![[r#"
        stop pockestrator-moots.service
        show --property=LoadState,ActiveState,SubState,MainPID,NRestarts pockestrator-moots.service"#]]
    .assert_eq(&sc.call_lines().join("\n"));
    assert!(matches!(
        events.try_recv().unwrap(),
        RuntimeEvent::Exited {
            pid: 4002,
            expected: true,
            ..
        }
    ));
    assert_eq!(rt.observe(&name).unwrap().phase, Phase::Stopped);

    // Remove: stop, disable, delete, reload; the file is gone before the
    // reload.
    sc.clear();
    rt.remove(&name).await.unwrap();
    expect![[r#"
        stop pockestrator-moots.service
        show --property=LoadState,ActiveState,SubState,MainPID,NRestarts pockestrator-moots.service
        disable pockestrator-moots.service
        daemon-reload"#]]
    .assert_eq(&sc.call_lines().join("\n"));
    assert_eq!(sc.dir_at_calls().last().unwrap(), &Vec::<String>::new());
    assert!(!units.join(unit).exists());
    assert!(rt.observe(&name).is_none());
    let drift = rt.drift(&spec).unwrap();
    assert!(drift.ends_with("is missing"), "{drift}");

    // Removing again asks systemd whether it knows the unit from
    // elsewhere, and does nothing; stopping what does not exist calls
    // nothing.
    sc.clear();
    rt.remove(&name).await.unwrap();
    rt.stop(&name).await.unwrap();
    expect!["show --property=LoadState,ActiveState,SubState,MainPID,NRestarts pockestrator-moots.service"]
        .assert_eq(&sc.call_lines().join("\n"));
}

#[tokio::test]
async fn adoption_and_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let units = tmp.path().join("units");
    let spec = spec(&pocketbase_bin(PB_NEW), &tmp.path().join("instances/moots"));

    // No unit, here or anywhere systemd looks: nothing to adopt.
    let rt = runtime(&units, "{name}-pocketbase.service");
    assert_eq!(rt.adopt(spec.clone()).await.unwrap(), None);
    assert!(rt.observe(&spec.name).is_none());

    // A unit systemd loads from another directory (seed 000's script
    // writes /lib/systemd/system) is adopted, and a removal stops and
    // disables it but leaves its file alone: none of ours is written.
    rt.systemctl().script_show(
        "moots-pocketbase.service",
        "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=555\nNRestarts=0\n",
    );
    assert_eq!(rt.adopt(spec.clone()).await.unwrap(), Some(555));
    rt.systemctl().clear();
    rt.remove(&spec.name).await.unwrap();
    expect![[r#"
        show --property=LoadState,ActiveState,SubState,MainPID,NRestarts moots-pocketbase.service
        stop moots-pocketbase.service
        show --property=LoadState,ActiveState,SubState,MainPID,NRestarts moots-pocketbase.service
        disable moots-pocketbase.service
        daemon-reload"#]]
    .assert_eq(&rt.systemctl().call_lines().join("\n"));
    assert!(!units.join("moots-pocketbase.service").exists());
    rt.systemctl().unscript_show("moots-pocketbase.service");

    // A seed-style unit name, left running by a previous daemon.
    rt.write_unit(&spec).unwrap();
    assert!(units.join("moots-pocketbase.service").exists());
    rt.systemctl().script_show(
        "moots-pocketbase.service",
        "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=777\nNRestarts=0\n",
    );
    let mut events = rt.subscribe();
    assert_eq!(rt.adopt(spec.clone()).await.unwrap(), Some(777));
    assert!(matches!(
        events.try_recv().unwrap(),
        RuntimeEvent::Adopted { pid: 777, .. }
    ));
    assert_eq!(rt.observe(&spec.name).unwrap().pid, Some(777));

    // Present but stopped: not adopted.
    rt.systemctl().script_show(
        "moots-pocketbase.service",
        "LoadState=loaded\nActiveState=inactive\nSubState=dead\nMainPID=0\n",
    );
    rt.forget(&spec.name);
    assert_eq!(rt.adopt(spec.clone()).await.unwrap(), None);
    assert!(rt.observe(&spec.name).is_none());

    // A failing systemctl surfaces with its message.
    let rt = runtime(&tmp.path().join("units2"), "pockestrator-{name}.service");
    rt.systemctl().fail_on("enable");
    let err = rt.start(spec.clone()).await.unwrap_err();
    expect!["systemd failed for pockestrator-moots.service: `systemctl enable pockestrator-moots.service` failed (exit status: 1): scripted failure of enable; see `systemctl status pockestrator-moots.service` and `journalctl -u pockestrator-moots.service`"]
        .assert_eq(&err.to_string());

    // A unit that cannot be rendered is refused before anything is written.
    let bad = LaunchSpec {
        binary: PathBuf::from("/opt/pb\nExecStartPre=/bin/sh"),
        ..spec.clone()
    };
    let rt = runtime(&tmp.path().join("units3"), "pockestrator-{name}.service");
    assert!(rt.start(bad).await.is_err());
    assert!(!tmp
        .path()
        .join("units3/pockestrator-moots.service")
        .exists());
}

#[tokio::test]
async fn real_systemctl_failures_are_reported() {
    use pockestrator::runtime::systemd::Systemctl;
    let sc = RealSystemctl {
        path: PathBuf::from("/bin/false"),
        ..RealSystemctl::default()
    };
    let err = sc.run(&["daemon-reload".to_string()]).await.unwrap_err();
    expect!["`systemctl daemon-reload` failed (exit status: 1): "].assert_eq(&err.to_string());
}

/// A tree laid out as seed 000's script leaves it, under `root`: the unit in
/// `lib/systemd/system`, the project in `home/ubuntu/NAME` (paths inside the
/// unit point into the tree), the site block appended to `etc/caddy/Caddyfile`.
fn seed_tree(root: &Path) {
    let lib = root.join("lib/systemd/system");
    let etc = root.join("etc/systemd/system");
    let home = root.join("home/ubuntu/moots");
    for dir in [&lib, &etc, &home, &root.join("etc/caddy")] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::copy(pocketbase_bin(PB_NEW), home.join("pocketbase")).unwrap();
    std::fs::write(
        lib.join("moots-pocketbase.service"),
        seed_unit(home.to_str().unwrap(), 8094),
    )
    .unwrap();
    let mut caddyfile = "example.com {\n    root * /var/www\n    file_server\n}\n".to_string();
    caddyfile.push_str(&seed_site_block("moots", 8094));
    std::fs::write(root.join("etc/caddy/Caddyfile"), caddyfile).unwrap();

    // Not PocketBase.
    std::fs::write(
        lib.join("notes-pocketbase.service"),
        "[Service]\nExecStart=/usr/bin/python3 -m http.server 8095\n",
    )
    .unwrap();
    // Malformed.
    std::fs::write(
        lib.join("broken-pocketbase.service"),
        "[Service]\nExecStart = /x/pocketbase serve --http=\"127.0.0.1:8096\nthis is not a setting\n",
    )
    .unwrap();
    // Hostile names.
    let hostile = seed_unit(home.to_str().unwrap(), 8097);
    std::fs::write(lib.join("Evil name;rm-pocketbase.service"), &hostile).unwrap();
    std::fs::write(lib.join("x\ny-pocketbase.service"), &hostile).unwrap();
    // Someone else's unit, not matching the seed's naming.
    std::fs::write(
        etc.join("caddy.service"),
        "[Service]\nExecStart=/usr/bin/caddy run\n",
    )
    .unwrap();
}

fn describe(c: &ImportCandidate, root: &Path) -> String {
    let rel = |p: &Path| {
        p.strip_prefix(root)
            .map(|r| format!("ROOT/{}", r.display()))
            .unwrap_or_else(|_| p.display().to_string())
    };
    format!(
        "{:?} name={:?} port={:?} binary={:?} workdir={:?} data={:?} domain={:?} log={:?} user={:?} importable={}\n  problems={:?}\n  notes={:?}",
        c.unit_name,
        c.name.as_ref().map(|n| n.to_string()),
        c.port,
        c.binary.as_deref().map(rel),
        c.working_dir.as_deref().map(rel),
        c.data_dir.as_deref().map(rel),
        c.domain.as_ref().map(|d| d.to_string()),
        c.log_file.as_deref().map(rel),
        c.user,
        c.is_importable(),
        c.problems,
        c.notes,
    )
}

#[tokio::test]
async fn import_finds_the_seeds_instances() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    seed_tree(root);
    let dirs = [
        root.join("etc/systemd/system"),
        root.join("lib/systemd/system"),
    ];
    let found = import::scan(&dirs, Some(&root.join("etc/caddy/Caddyfile")));
    let shown: Vec<String> = found.iter().map(|c| describe(c, root)).collect();
    let shown = shown
        .join("\n")
        .replace(&root.display().to_string(), "ROOT");
    expect![[r#"
        "Evil name;rm-pocketbase.service" name=None port=Some(8097) binary=Some("ROOT/home/ubuntu/moots/pocketbase") workdir=Some("ROOT/home/ubuntu/moots") data=Some("ROOT/home/ubuntu/moots/pb_data") domain=None log=Some("ROOT/home/ubuntu/moots/errors.log") user=Some("root") importable=false
          problems=["unit \"Evil name;rm-pocketbase.service\": name \"Evil name;rm\" contains uppercase 'E': use only lowercase a-z, digits 0-9 and '-'"]
          notes=["no site in ROOT/etc/caddy/Caddyfile proxies to port 8097"]
        "broken-pocketbase.service" name=Some("broken") port=None binary=None workdir=None data=None domain=None log=None user=None importable=false
          problems=["ROOT/lib/systemd/system/broken-pocketbase.service: line 3 is not KEY=value: \"this is not a setting\""]
          notes=[]
        "moots-pocketbase.service" name=Some("moots") port=Some(8094) binary=Some("ROOT/home/ubuntu/moots/pocketbase") workdir=Some("ROOT/home/ubuntu/moots") data=Some("ROOT/home/ubuntu/moots/pb_data") domain=Some("moots.tigawanna.vip") log=Some("ROOT/home/ubuntu/moots/errors.log") user=Some("root") importable=true
          problems=[]
          notes=[]
        "notes-pocketbase.service" name=Some("notes") port=None binary=None workdir=None data=None domain=None log=None user=None importable=false
          problems=["its ExecStart does not run `pocketbase serve`: \"/usr/bin/python3 -m http.server 8095\""]
          notes=[]
        "x\ny-pocketbase.service" name=None port=Some(8097) binary=Some("ROOT/home/ubuntu/moots/pocketbase") workdir=Some("ROOT/home/ubuntu/moots") data=Some("ROOT/home/ubuntu/moots/pb_data") domain=None log=Some("ROOT/home/ubuntu/moots/errors.log") user=Some("root") importable=false
          problems=["unit \"x\\ny-pocketbase.service\": name \"x\\ny\" contains a newline: use only lowercase a-z, digits 0-9 and '-'", "port 8097 is also used by \"Evil name;rm-pocketbase.service\""]
          notes=["no site in ROOT/etc/caddy/Caddyfile proxies to port 8097"]"#]].assert_eq(&shown);

    let moots = found
        .iter()
        .find(|c| c.unit_name == "moots-pocketbase.service")
        .unwrap();
    assert!(moots.is_importable());
    assert_eq!(
        import::read_version(moots.binary.as_deref().unwrap())
            .await
            .unwrap(),
        PB_NEW
    );
    assert_eq!(found.iter().filter(|c| c.is_importable()).count(), 1);
}
