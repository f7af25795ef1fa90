//! End to end: the real `pockestrator` binary as daemon and CLI, real
//! PocketBase instances.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::daemon::{alive, superuser_auth, Daemon};
use crate::support::{fake_binary, free_port, wait_until, PB_NEW, PB_OLD};

/// Create an instance with the superuser admin@example.com; the instance
/// and its generated password.
fn create_with_admin(d: &Daemon, name: &str, version: &str, port: &str) -> (Value, String) {
    let created = d.cli_json(&[
        "create",
        name,
        "--version",
        version,
        "--port",
        port,
        "--superuser-email",
        "admin@example.com",
    ]);
    let password = created["superuser"]["password"]
        .as_str()
        .expect("a generated password")
        .to_string();
    (created, password)
}

fn port_of(v: &Value) -> u64 {
    v["port"].as_u64().expect("port")
}

#[tokio::test(flavor = "multi_thread")]
async fn create_runs_and_superuser_authenticates_on_both_versions() {
    let d = Daemon::start().await;
    for (name, version) in [("old", PB_OLD), ("new", PB_NEW)] {
        let port = free_port().to_string();
        let created = d.cli_json(&[
            "create",
            name,
            "--version",
            version,
            "--port",
            &port,
            "--superuser-email",
            "admin@example.com",
        ]);
        assert_eq!(created["status"], "running", "{created}");
        assert_eq!(created["version"], version);
        assert_eq!(created["port"].to_string(), port);
        for field in [
            "name",
            "version",
            "port",
            "domain",
            "status",
            "url",
            "pid",
            "restarts",
            "created_at",
            "last_health_check",
        ] {
            assert!(
                created.get(field).is_some(),
                "instance JSON lacks {field}: {created}"
            );
        }
        let password = created["superuser"]["password"]
            .as_str()
            .expect("generated password");
        assert!(password.len() >= 8);
        assert_eq!(
            superuser_auth(&d.http, port_of(&created), "admin@example.com", password).await,
            200
        );
        assert_eq!(
            superuser_auth(
                &d.http,
                port_of(&created),
                "admin@example.com",
                "wrong-password"
            )
            .await,
            400
        );
        // The layout on disk, and the explicit directories on the command line.
        let dir = d.data_dir().join("instances").join(name);
        for sub in ["pb_data", "pb_hooks", "pb_migrations", "pb_public", "logs"] {
            assert!(dir.join(sub).is_dir(), "{sub} missing");
        }
        let pid = created["pid"].as_i64().unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        for flag in [
            "--dir=",
            "--hooksDir=",
            "--migrationsDir=",
            "--publicDir=",
            &format!("--http=127.0.0.1:{port}"),
        ] {
            assert!(cmdline.contains(flag), "{flag} not in {cmdline}");
        }
    }
    // The password from stdin, and `superuser` resetting it later.
    let port = free_port().to_string();
    let out = d.cli_with_stdin(
        &[
            "create",
            "piped",
            "--version",
            PB_NEW,
            "--port",
            &port,
            "--superuser-email",
            "ops@example.com",
            "--password-stdin",
            "--json",
        ],
        Some("correct-horse-battery\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["superuser"]["password"], "correct-horse-battery");
    assert_eq!(
        superuser_auth(
            &d.http,
            port_of(&created),
            "ops@example.com",
            "correct-horse-battery"
        )
        .await,
        200
    );
    let reset = d.cli_json(&["superuser", "piped", "--email", "ops@example.com"]);
    let new_password = reset["password"].as_str().unwrap();
    assert_eq!(
        superuser_auth(&d.http, port_of(&created), "ops@example.com", new_password).await,
        200
    );
    assert_eq!(
        superuser_auth(
            &d.http,
            port_of(&created),
            "ops@example.com",
            "correct-horse-battery"
        )
        .await,
        400
    );

    // Table output and the list.
    let out = d.cli(&["list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(
        text.contains("old") && text.contains("new") && text.contains("piped"),
        "{text}"
    );
    let list = d.cli_json(&["list"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_an_instance_is_restarted() {
    let d = Daemon::start().await;
    let port = free_port().to_string();
    let created = d.cli_json(&["create", "crashy", "--version", PB_NEW, "--port", &port]);
    let pid = created["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let back = wait_until(Duration::from_secs(20), "a new pid, running", || async {
        let (_, v) = d.get("/api/v1/instances/crashy").await;
        (v["status"] == "running" && v["pid"].as_i64().is_some_and(|p| p as i32 != pid))
            .then_some(v)
    })
    .await;
    assert_eq!(back["restarts"], 1, "{back}");
    let health = reqwest::get(format!("http://127.0.0.1:{port}/api/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // The crash and the recovery are in the audit log.
    let audit = d.audit("crashy").await;
    assert!(
        audit.iter().any(|(action, _)| action == "crash"),
        "{audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_restart_adopts_the_same_pids() {
    let mut d = Daemon::start().await;
    let mut pids = Vec::new();
    for name in ["a1", "a2"] {
        let port = free_port().to_string();
        let v = d.cli_json(&["create", name, "--version", PB_NEW, "--port", &port]);
        pids.push((name, v["pid"].as_i64().unwrap(), port));
    }
    d.kill9();
    for (_, pid, port) in &pids {
        assert!(alive(*pid as i32), "instance died with the daemon");
        let health = reqwest::get(format!("http://127.0.0.1:{port}/api/health"))
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
    }
    d.restart().await;
    for (name, pid, _) in &pids {
        let v = d.wait_status(name, "running").await;
        assert_eq!(
            v["pid"].as_i64().unwrap(),
            *pid,
            "{name} was restarted instead of adopted"
        );
        assert_eq!(v["restarts"], 0);
    }
    // An adopted instance is still supervised: kill it, it comes back.
    let (name, pid, _) = &pids[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(*pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(
        Duration::from_secs(20),
        "the adopted instance restarted",
        || async {
            let (_, v) = d.get(&format!("/api/v1/instances/{name}")).await;
            (v["status"] == "running" && v["pid"].as_i64() != Some(*pid)).then_some(())
        },
    )
    .await;
    // A graceful daemon stop leaves them running too.
    let status = d.terminate();
    assert!(status.success(), "daemon exit status {status}");
    assert!(alive(pids[1].1 as i32));
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_creates_get_distinct_ports() {
    let d = Daemon::start().await;
    let creates = (0..20).map(|i| {
        let d = &d;
        async move {
            let (code, v) = d
                .post(
                    "/api/v1/instances",
                    json!({"name": format!("p{i}"), "version": PB_NEW}),
                )
                .await;
            assert_eq!(code, 201, "{v}\n{}", d.log());
            port_of(&v)
        }
    });
    let mut ports = futures::future::join_all(creates).await;
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 20, "ports collided: {ports:?}");
    let (_, list) = d.get("/api/v1/instances").await;
    assert!(list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["status"] == "running"));
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_keeps_data_and_a_failed_upgrade_rolls_back() {
    let d = Daemon::start().await;
    let port = free_port().to_string();
    let (created, password) = create_with_admin(&d, "up", PB_OLD, &port);
    let port = port_of(&created);

    let upgraded = d.cli_json(&["upgrade", "up", "--version", PB_NEW]);
    assert_eq!(upgraded["version"], PB_NEW);
    assert_eq!(upgraded["status"], "running");
    assert_eq!(
        superuser_auth(&d.http, port, "admin@example.com", &password).await,
        200,
        "data lost in upgrade"
    );
    // The snapshot is a backup like any other, of the old version.
    let backups = d.cli_json(&["backup", "list", "up"]);
    let pre: Vec<&serde_json::Value> = backups
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["trigger"] == "pre-upgrade")
        .collect();
    assert_eq!(pre.len(), 1, "{backups}");
    assert_eq!(pre[0]["version"], PB_OLD);
    let pre_upgrade = pre[0]["id"].as_str().unwrap().to_string();

    // A "newer" binary that cannot start: the upgrade rolls back by itself.
    let broken = fake_binary(
        d.data_dir(),
        "0.99.0",
        "echo 'migration failed' >&2; exit 1",
    );
    let out = d.cli(&["upgrade", "up", "--binary", broken.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rolled back to 0.40.6"), "{stderr}");
    let after = d.wait_status("up", "running").await;
    assert_eq!(after["version"], PB_NEW);
    assert_eq!(
        superuser_auth(&d.http, port, "admin@example.com", &password).await,
        200,
        "data lost in rollback"
    );
    // The failed upgrade took a backup too, and rolled back from it.
    let pre = d.cli_json(&["backup", "list", "up"]);
    assert_eq!(
        pre.as_array()
            .unwrap()
            .iter()
            .filter(|b| b["trigger"] == "pre-upgrade")
            .count(),
        2,
        "{pre}"
    );
    // The first upgrade's backup brings the old version back, data and all.
    let back = d.cli_json(&["backup", "restore", "up", &pre_upgrade]);
    assert_eq!(back["version"], PB_OLD, "{back}");
    assert_eq!(back["status"], "running", "{back}");
    assert_eq!(
        superuser_auth(&d.http, port, "admin@example.com", &password).await,
        200,
        "data lost in the restore of the pre-upgrade backup"
    );
    let upgrades: Vec<String> = d
        .audit("up")
        .await
        .into_iter()
        .filter(|(action, _)| action == "upgrade")
        .map(|(_, result)| result)
        .collect();
    assert_eq!(upgrades, ["error", "ok"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_create_leaves_nothing_behind() {
    let d = Daemon::start().await;
    let port = free_port();
    let broken = fake_binary(d.data_dir(), "0.40.6", "echo 'cannot start' >&2; exit 1");
    let (code, v) = d
        .post(
            "/api/v1/instances",
            json!({"name": "doomed", "binary": broken, "port": port}),
        )
        .await;
    assert_eq!(code, 500, "{v}");
    assert_eq!(v["error"]["code"], "start_failed");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot start"),
        "{v}"
    );
    let (_, list) = d.get("/api/v1/instances").await;
    assert_eq!(list["instances"], json!([]));
    assert!(!d.data_dir().join("instances/doomed").exists());
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "port still held"
    );
    // The same name and port work afterwards.
    let (code, v) = d
        .post(
            "/api/v1/instances",
            json!({"name": "doomed", "version": PB_NEW, "port": port}),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    let creates: Vec<String> = d
        .audit("doomed")
        .await
        .into_iter()
        .filter(|(action, _)| action == "create")
        .map(|(_, result)| result)
        .collect();
    assert_eq!(creates, ["ok", "error"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_start_delete_archive_logs_and_events() {
    let d = Daemon::start().await;
    let port = free_port().to_string();
    d.cli_json(&["create", "life", "--version", PB_NEW, "--port", &port]);
    let stopped = d.cli_json(&["stop", "life"]);
    assert_eq!(stopped["status"], "stopped");
    assert_eq!(stopped["pid"], Value::Null);
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/api/health"))
        .await
        .is_err());
    let started = d.cli_json(&["start", "life"]);
    assert_eq!(started["status"], "running");
    let restarted = d.cli_json(&["restart", "life"]);
    assert_ne!(restarted["pid"], started["pid"]);

    let logs = d.cli_json(&["logs", "life", "-n", "200"]);
    let lines = logs["lines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.as_str().unwrap().contains("Server started")),
        "{logs}"
    );

    // Follow: lines appended after the request arrive on the stream.
    let resp = d
        .http
        .get(d.url("/api/v1/instances/life/logs?lines=1&follow=true"))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    use futures::StreamExt;
    let _head = stream.next().await;
    d.cli_json(&["restart", "life"]);
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("Server started") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "followed: {seen}");

    let events = d.cli_json(&["events", "life"]);
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["create", "stop", "start", "restart"] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    assert!(
        events[0]["actor"].as_str().unwrap().starts_with("socket"),
        "{events}"
    );

    let deleted = d.cli_json(&["delete", "life"]);
    let archive = deleted["archive"].as_str().unwrap();
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(archive).unwrap());
    let names: Vec<String> = tar::Archive::new(gz)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n == "life/pb_data/data.db"),
        "{names:?}"
    );
    assert!(!d.data_dir().join("instances/life").exists());
    let out = d.cli(&["status", "life"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no instance named life"));

    // --purge needs confirmation when not on a terminal.
    d.cli_json(&[
        "create",
        "gone",
        "--version",
        PB_NEW,
        "--port",
        &free_port().to_string(),
    ]);
    let out = d.cli(&["delete", "gone", "--purge"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    let purged = d.cli_json(&["delete", "gone", "--purge", "--yes"]);
    assert_eq!(purged["archive"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_auth_errors_and_openapi() {
    let d = Daemon::start().await;
    // TCP needs the token.
    let resp = d.http.get(d.url("/api/v1/instances")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let resp = d
        .http
        .get(d.url("/api/v1/instances"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (code, _) = d.get("/api/v1/instances").await;
    assert_eq!(code, 200);
    // The token file is private; the socket and the state database too,
    // the data dir and the archive of deleted instances are the daemon's.
    use std::os::unix::fs::PermissionsExt;
    let mode_of = |file: &str| {
        std::fs::metadata(d.data_dir().join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    for file in ["token", "pockestrator.sock", "state.db", "state.db-wal"] {
        assert_eq!(mode_of(file), 0o600, "{file}");
    }
    for dir in ["", "archive"] {
        assert_eq!(mode_of(dir), 0o700, "{dir:?}");
    }
    let out = d.cli(&["token"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), d.token);
    // Over --server with the token, the CLI works too.
    let out = std::process::Command::new(crate::support::daemon::BIN)
        .args([
            "list",
            "--json",
            "--server",
            &d.url(""),
            "--token",
            &d.token,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Errors are JSON with a code.
    let (code, v) = d.get("/api/v1/instances/nope").await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (code, v) = d
        .api(
            Method::POST,
            "/api/v1/instances",
            Some(json!({"name": "x", "colour": "red"})),
        )
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );

    let (code, doc) = d.get("/api/v1/openapi.json").await;
    assert_eq!(code, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/api/v1/instances"]["post"].is_object());
    assert!(doc["components"]["schemas"]["InstanceDto"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_and_install_from_the_mirror() {
    let d = Daemon::start().await;
    let v = d.cli_json(&["versions"]);
    assert_eq!(v["latest"], PB_NEW, "{v}");
    assert_eq!(v["installed"], json!([]));
    let (code, installed) = d
        .post("/api/v1/versions/install", json!({"version": PB_OLD}))
        .await;
    assert_eq!(code, 200, "{installed}");
    assert_eq!(installed["version"], PB_OLD);
    let v = d.cli_json(&["versions"]);
    assert_eq!(v["installed"][0]["version"], PB_OLD);
    // Unknown versions name the nearest ones.
    let (code, err) = d
        .post("/api/v1/versions/install", json!({"version": "0.28.9"}))
        .await;
    assert_eq!(code, 400, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("0.28.4"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_instance_is_marked_unhealthy_then_restarted() {
    let d = Daemon::start_with(&["--health-interval", "300ms", "--stop-timeout", "1s"], &[]).await;
    let port = free_port().to_string();
    let created = d.cli_json(&["create", "hung", "--version", PB_NEW, "--port", &port]);
    let pid = created["pid"].as_i64().unwrap() as i32;
    // Alive but not answering: SIGSTOP.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    d.wait_status("hung", "unhealthy").await;
    let back = wait_until(
        Duration::from_secs(30),
        "a restart after failed checks",
        || async {
            let (_, v) = d.get("/api/v1/instances/hung").await;
            (v["status"] == "running" && v["pid"].as_i64().is_some_and(|p| p as i32 != pid))
                .then_some(v)
        },
    )
    .await;
    assert!(back["last_health_check"].is_string(), "{back}");
    assert!(!alive(pid), "the hung process was left behind");
    let audit = d.audit("hung").await;
    assert!(
        audit.iter().any(|(action, _)| action == "health-restart"),
        "{audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_that_cannot_start_ends_failed_and_recovers() {
    let d = Daemon::start().await;
    let port = free_port();
    d.cli_json(&[
        "create",
        "blocked",
        "--version",
        PB_NEW,
        "--port",
        &port.to_string(),
    ]);
    d.cli_json(&["stop", "blocked"]);
    // Another program takes the port: PocketBase refuses to start.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let out = d.cli(&["start", "blocked"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did not become healthy"), "{stderr}");
    let v = d.wait_status("blocked", "failed").await;
    assert!(v["last_error"].is_string(), "{v}");
    drop(squatter);
    let v = d.cli_json(&["start", "blocked"]);
    assert_eq!(v["status"], "running");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_cut_short_by_a_daemon_crash_is_rolled_back() {
    let mut d = Daemon::start().await;
    let port = free_port().to_string();
    let created = d.cli_json(&["create", "half", "--version", PB_NEW, "--port", &port]);
    let pid = created["pid"].as_i64().unwrap() as i32;
    d.cli_json(&[
        "create",
        "whole",
        "--version",
        PB_NEW,
        "--port",
        &free_port().to_string(),
    ]);
    d.kill9();
    // What a daemon killed in the middle of `create half` leaves: the row
    // still in its `creating` phase, the directory, maybe the process.
    let conn = rusqlite::Connection::open(d.data_dir().join("state.db")).unwrap();
    conn.execute(
        "UPDATE instances SET phase = 'creating' WHERE name = 'half'",
        [],
    )
    .unwrap();
    drop(conn);
    d.restart().await;
    let (code, _) = d.get("/api/v1/instances/half").await;
    assert_eq!(code, 404);
    assert!(!d.data_dir().join("instances/half").exists());
    wait_until(
        Duration::from_secs(10),
        "the half-made instance's process to end",
        || async { (!alive(pid)).then_some(()) },
    )
    .await;
    // The other instance was adopted untouched.
    let whole = d.wait_status("whole", "running").await;
    assert_eq!(whole["restarts"], 0);
    let (_, events) = d.get("/api/v1/events?instance=half").await;
    assert_eq!(events["events"][0]["result"], "error");
    assert!(events["events"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("rolled back"));
}

#[tokio::test(flavor = "multi_thread")]
async fn update_records_configuration_history() {
    let d = Daemon::start().await;
    let port = free_port();
    d.cli_json(&[
        "create",
        "conf",
        "--version",
        PB_NEW,
        "--port",
        &port.to_string(),
    ]);
    let (code, v) = d
        .api(
            Method::PATCH,
            "/api/v1/instances/conf",
            Some(json!({"domain": "conf.example.com"})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["domain"], "conf.example.com");
    let new_port = free_port();
    let (code, v) = d
        .api(
            Method::PATCH,
            "/api/v1/instances/conf",
            Some(json!({"port": new_port})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "running");
    let health = reqwest::get(format!("http://127.0.0.1:{new_port}/api/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let (code, v) = d
        .api(
            Method::PATCH,
            "/api/v1/instances/conf",
            Some(json!({"domain": null})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["domain"], Value::Null);
    let history = d.cli_json(&["history", "conf"]);
    let fields: Vec<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} -> {}",
                c["field"].as_str().unwrap(),
                c["old_value"],
                c["new_value"]
            )
        })
        .collect();
    assert!(
        fields.contains(&"domain null -> \"conf.example.com\"".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&format!("port \"{port}\" -> \"{new_port}\"")),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"domain \"conf.example.com\" -> null".to_string()),
        "{fields:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pocketbase_before_0_23_gets_an_admin_instead_of_a_superuser() {
    let d = Daemon::start().await;
    let port = free_port().to_string();
    let (created, password) = create_with_admin(&d, "legacy", crate::support::PB_LEGACY, &port);
    assert_eq!(created["status"], "running", "{created}");
    let admin_auth = |password: String| {
        let http = d.http.clone();
        let port = port.clone();
        async move {
            http.post(format!(
                "http://127.0.0.1:{port}/api/admins/auth-with-password"
            ))
            .json(&json!({"identity": "admin@example.com", "password": password}))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
        }
    };
    assert_eq!(admin_auth(password.clone()).await, 200);
    // Resetting goes through `admin update` since the admin exists.
    let reset = d.cli_json(&["superuser", "legacy", "--email", "admin@example.com"]);
    let new_password = reset["password"].as_str().unwrap().to_string();
    assert_eq!(admin_auth(new_password).await, 200);
    assert_eq!(admin_auth(password).await, 400);
}

/// What a daemon killed in the middle of `upgrade` leaves behind: the
/// marker, the snapshot, the new version recorded, the instance stopped.
fn leave_an_interrupted_upgrade(
    d: &Daemon,
    name: &str,
    to_version: &str,
    to_binary: &str,
    stop_instance: bool,
    backup: Option<&str>,
) {
    let dir = d.data_dir().join("instances").join(name);
    let conn = rusqlite::Connection::open(d.data_dir().join("state.db")).unwrap();
    let (from_version, from_binary): (String, String) = conn
        .query_row(
            "SELECT version, binary_path FROM instances WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    if stop_instance {
        let pid: i32 = std::fs::read_to_string(dir.join("pocketbase.pid"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = std::fs::remove_file(dir.join("pocketbase.pid"));
    }
    // The pre-upgrade backup; or, as markers from before upgrades took
    // backups have it, a copy of pb_data.
    let snapshot = match backup {
        Some(archive) => std::path::PathBuf::from(archive),
        None => {
            let snapshot = dir.join("snapshots/pre-upgrade-test");
            std::fs::create_dir_all(&snapshot).unwrap();
            for entry in std::fs::read_dir(dir.join("pb_data")).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_file() {
                    std::fs::copy(entry.path(), snapshot.join(entry.file_name())).unwrap();
                }
            }
            snapshot
        }
    };
    let marker = json!({
        "from_version": from_version,
        "from_binary": from_binary,
        "to_version": to_version,
        "snapshot": snapshot,
        "was_running": true,
    });
    std::fs::write(dir.join("upgrade-in-progress.json"), marker.to_string()).unwrap();
    conn.execute(
        "UPDATE instances SET version = ?2, binary_path = ?3 WHERE name = ?1",
        rusqlite::params![name, to_version, to_binary],
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_cut_short_by_a_daemon_crash_is_rolled_back() {
    let mut d = Daemon::start().await;
    let port = free_port().to_string();
    let (_, password) = create_with_admin(&d, "midway", PB_OLD, &port);
    let backup = d.cli_json(&["backup", "create", "midway"]);
    d.kill9();
    let broken = fake_binary(d.data_dir(), "0.99.0", "exit 1");
    leave_an_interrupted_upgrade(
        &d,
        "midway",
        "0.99.0",
        broken.to_str().unwrap(),
        true,
        backup["location"].as_str(),
    );
    // The new version got as far as wrecking the data.
    std::fs::remove_file(d.data_dir().join("instances/midway/pb_data/data.db")).unwrap();
    d.restart().await;
    let v = d.wait_status("midway", "running").await;
    assert_eq!(v["version"], PB_OLD);
    assert_eq!(
        superuser_auth(
            &d.http,
            port.parse().unwrap(),
            "admin@example.com",
            &password
        )
        .await,
        200,
        "data not restored from the snapshot"
    );
    assert!(!d
        .data_dir()
        .join("instances/midway/upgrade-in-progress.json")
        .exists());
    let (_, events) = d.get("/api/v1/events?instance=midway").await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "upgrade"
                && e["detail"].as_str().unwrap().contains("interrupted")),
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_that_finished_before_a_daemon_crash_is_kept() {
    let mut d = Daemon::start().await;
    let port = free_port().to_string();
    d.cli_json(&["create", "nearly", "--version", PB_OLD, "--port", &port]);
    let upgraded = d.cli_json(&["upgrade", "nearly", "--version", PB_NEW]);
    let pid = upgraded["pid"].clone();
    d.kill9();
    // As if the daemon died after the new version answered but before it
    // cleared its marker.
    let binary = upgraded["binary"].as_str().unwrap().to_string();
    leave_an_interrupted_upgrade(&d, "nearly", PB_NEW, &binary, false, None);
    d.restart().await;
    let v = d.wait_status("nearly", "running").await;
    assert_eq!(v["version"], PB_NEW);
    assert_eq!(v["pid"], pid, "the upgraded instance was restarted");
    assert!(!d
        .data_dir()
        .join("instances/nearly/upgrade-in-progress.json")
        .exists());
}

/// The children of `pid` (any of its threads') as `(pid, state)`, from
/// `/proc/*/stat`.
fn children(pid: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or_default().to_string();
        if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            found.push((child, state));
        }
    }
    found
}

/// A browser launcher that does nothing and exits at once, found first on
/// the daemon's PATH: this machine has no desktop to open a browser on,
/// and a launcher that exits is what turns into a zombie.
fn launcher_dir(root: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = root.join("launcher-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let launcher = dir.join("xdg-open");
    std::fs::write(&launcher, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_without_a_superuser_leaves_no_zombie_browser_launcher() {
    let tmp = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        launcher_dir(tmp.path()).display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );

    // The control: PocketBase started by hand with that PATH launches the
    // installer's browser and leaves the launcher a zombie.
    let port = free_port();
    let mut bare = std::process::Command::new(crate::support::pocketbase_bin(PB_NEW))
        .arg("serve")
        .arg(format!("--http=127.0.0.1:{port}"))
        .arg(format!(
            "--dir={}",
            tmp.path().join("bare/pb_data").display()
        ))
        .env("PATH", &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Reap<'a>(&'a mut std::process::Child);
    impl Drop for Reap<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let bare = Reap(&mut bare);
    let bare_pid = bare.0.id();
    wait_until(
        Duration::from_secs(30),
        "the control's zombie launcher",
        || async {
            children(bare_pid)
                .iter()
                .any(|(_, s)| s == "Z")
                .then_some(())
        },
    )
    .await;
    drop(bare);

    // Through the daemon, with the same PATH: no zombie.
    let d = Daemon::start_with(&[], &[("PATH", &path)]).await;
    let port = free_port().to_string();
    d.cli_json(&["create", "nosu", "--version", PB_NEW, "--port", &port]);
    let v = d.wait_status("nosu", "running").await;
    let pid = v["pid"].as_u64().expect("a running instance has a pid") as u32;
    let log = d.data_dir().join("instances/nosu/logs/pocketbase.log");
    wait_until(
        Duration::from_secs(30),
        "PocketBase to announce its installer",
        || async {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|t| t.contains("/_/#/pbinstall/"))
                .map(|_| ())
        },
    )
    .await;
    // The launch happens before the announcement; the control's zombie
    // appeared within this long, so a quiet second here means none.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < deadline {
        let zombies: Vec<_> = children(pid)
            .into_iter()
            .filter(|(_, s)| s == "Z")
            .collect();
        assert!(zombies.is_empty(), "zombie children of {pid}: {zombies:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(alive(pid as i32));
    let stub = d
        .data_dir()
        .join("instances/nosu/.pockestrator/no-browser/xdg-open");
    assert_eq!(std::fs::metadata(&stub).unwrap().len(), 0);
}

/// A port found free can be taken by another program before PocketBase
/// binds it; a port the daemon chose itself is then chosen again. The
/// "PocketBase" here refuses the first port it is given, as one would whose
/// port another program took, and is the real one on any other.
#[tokio::test(flavor = "multi_thread")]
async fn a_chosen_port_taken_before_pocketbase_binds_it_is_chosen_again() {
    let d = Daemon::start().await;
    let first = d.data_dir().join("first-port");
    let real = crate::support::pocketbase_bin(PB_NEW);
    let body = format!(
        r#"port=$(printf '%s\n' "$@" | sed -n 's/^--http=.*:\([0-9]*\)$/\1/p')
# Other runs (the data-dir pool's `migrate up`) name no port.
[ -n "$port" ] && [ ! -e '{first}' ] && echo "$port" > '{first}'
if [ -n "$port" ] && [ "$(cat '{first}')" = "$port" ]; then
  echo "Error: listen tcp 127.0.0.1:$port: bind: address already in use" >&2
  exit 1
fi
exec '{real}' "$@""#,
        first = first.display(),
        real = real.display()
    );
    let racy = fake_binary(d.data_dir(), PB_NEW, &body);
    let created = d.cli_json(&["create", "racy", "--binary", racy.to_str().unwrap()]);
    assert_eq!(created["status"], "running", "{created}\n{}", d.log());
    let taken: u64 = std::fs::read_to_string(&first)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let port = port_of(&created);
    assert_ne!(port, taken, "{created}");
    let health = d
        .http
        .get(format!("http://127.0.0.1:{port}/api/health"))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
    // A port asked for is not changed behind the caller's back.
    let asked = free_port().to_string();
    std::fs::remove_file(&first).unwrap();
    let out = d.cli(&[
        "create",
        "asked",
        "--binary",
        racy.to_str().unwrap(),
        "--port",
        &asked,
    ]);
    assert!(!out.status.success(), "{}", d.log());
    let (code, _) = d.get("/api/v1/instances/asked").await;
    assert_eq!(code, 404, "a failed create leaves nothing behind");
}

/// `serve` on a data dir, with nothing else; its exit and what it said.
fn serve_once(data_dir: &std::path::Path) -> std::process::Output {
    let mut child = std::process::Command::new(crate::support::daemon::BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--listen", "none", "--proxy-listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A daemon that got the lock runs until told to stop.
    std::thread::sleep(Duration::from_millis(1500));
    if child.try_wait().unwrap().is_none() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_is_refused_and_a_forked_child_keeps_no_lock() {
    use std::os::unix::process::CommandExt;
    let d = Daemon::start().await;
    let second = serve_once(d.data_dir());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{said}");
    assert!(
        said.contains("another pockestrator daemon is running"),
        "{said}"
    );
    // The first daemon is untouched.
    let (code, _) = d.get("/api/v1/instances").await;
    assert_eq!(code, 200);

    // A daemon killed while a child it forked waits for its exec (a
    // `migrate up` at nice 19 on a busy host) must not keep the next daemon
    // out: the child's copy of the descriptors carries no lock.
    let dir = tempfile::tempdir().unwrap();
    let layout = pockestrator::config::Layout::new(dir.path());
    let lock = pockestrator::daemon::lock_data_dir(&layout).unwrap();
    let (mut forked, in_child) = std::os::unix::net::UnixStream::pair().unwrap();
    let in_child = std::os::fd::AsRawFd::as_raw_fd(&in_child);
    let slow = std::thread::spawn(move || {
        let mut slow = std::process::Command::new("true");
        // SAFETY: write and sleep are async-signal-safe; this is what a
        // child starved of the CPU between fork and exec looks like.
        unsafe {
            slow.pre_exec(move || {
                nix::libc::write(in_child, b"f".as_ptr().cast(), 1);
                nix::libc::sleep(8);
                Ok(())
            });
        }
        slow.status().unwrap()
    });
    let mut byte = [0u8];
    std::io::Read::read_exact(&mut forked, &mut byte).unwrap();
    drop(lock);
    let next = serve_once(dir.path());
    let said = String::from_utf8_lossy(&next.stderr);
    let still_forked = !slow.is_finished();
    assert!(
        !said.contains("another pockestrator daemon"),
        "a forked child kept the data dir locked: {said}"
    );
    assert!(still_forked, "the child reached its exec before the check");
    assert!(slow.join().unwrap().success());
}
