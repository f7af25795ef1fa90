//! Scale to zero against real PocketBase: an instance with an idle timeout
//! sleeps when no request comes through the router, a flood of requests
//! wakes it with one start and every request answered, open realtime
//! streams keep it awake, seed 001's API reports a sleeping user instance
//! `Stopped` and `init_pb` wakes it, a daemon restarted while instances
//! sleep leaves them asleep and they still wake, a wake that cannot start
//! fails the waiting requests with 503 and the instance is `failed`
//! without retrying, requests for an instance deleted while asleep get
//! 404, and through real Caddy a sleeping instance is woken by way of the
//! daemon's wake proxy.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use crate::routing::{via, Caddy};
use crate::support::daemon::Daemon;
use crate::support::{free_port, quiet_port, wait_until, PB_NEW};

/// A GET through the embedded proxy for `host`, with its status and body.
async fn through(proxy: SocketAddr, host: &str, path: &str) -> (u16, String) {
    // A fresh connection each time: the instance behind may have changed.
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let resp = http
        .get(format!("http://{proxy}{path}"))
        .header(reqwest::header::HOST, host)
        .timeout(Duration::from_secs(40))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// Wait for `name` to sleep; on a timeout, say what the daemon said.
async fn asleep(d: &Daemon, name: &str) -> Value {
    for _ in 0..300 {
        let (_, v) = d.get(&format!("/api/v1/instances/{name}")).await;
        if v["status"] == "sleeping" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, v) = d.get(&format!("/api/v1/instances/{name}")).await;
    panic!(
        "{name} did not sleep: {v}\n{:?}\n{}",
        d.audit(name).await,
        d.log()
    );
}

/// The wake's audit line is written once the route is back: wait for it,
/// then check there is exactly one.
async fn woken_once(d: &Daemon, name: &str) {
    wait_until(Duration::from_secs(10), "the wake's audit line", || async {
        (count(&d.audit(name).await, "wake", "ok") >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let audit = d.audit(name).await;
    assert_eq!(count(&audit, "wake", "ok"), 1, "{audit:?}");
}

fn count(audit: &[(String, String)], action: &str, result: &str) -> usize {
    audit
        .iter()
        .filter(|(a, r)| a == action && r == result)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_instance_sleeps_and_a_flood_of_requests_wakes_it_once() {
    let d = Daemon::start().await;
    let proxy = d.proxy.expect("the embedded proxy");
    let port = quiet_port().to_string();
    let made = d.cli_json(&[
        "create",
        "nap",
        "--version",
        PB_NEW,
        "--port",
        &port,
        "--idle-timeout",
        "2s",
    ]);
    assert_eq!(made["idle_timeout_secs"], 2, "{made}");
    let first_pid = made["pid"].as_i64().unwrap() as i32;

    let slept = asleep(&d, "nap").await;
    assert_eq!(slept["pid"], Value::Null, "{slept}");
    // Marked asleep first (so requests meanwhile wake it), then stopped.
    wait_until(Duration::from_secs(15), "its process to go", || async {
        (!crate::support::daemon::alive(first_pid)).then_some(())
    })
    .await;
    let status = d.cli(&["status", "nap"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("sleeping"), "{text}");
    assert!(text.contains("after 2s without a request"), "{text}");
    assert_eq!(count(&d.audit("nap").await, "sleep", "ok"), 1);

    // Forty requests at once: one start, every one answered by PocketBase.
    let requests =
        (0..40).map(|_| through(proxy, "nap.localhost", "/api/collections/nope/records"));
    let answers = futures::future::join_all(requests).await;
    for (status, body) in &answers {
        assert_eq!(
            *status, 404,
            "PocketBase's own 404 for a missing collection: {body}"
        );
        assert!(
            body.contains("\"status\":404") || body.contains("Missing collection"),
            "{body}"
        );
    }
    let awake = d.wait_status("nap", "running").await;
    assert_ne!(awake["pid"].as_i64().unwrap() as i32, first_pid);
    woken_once(&d, "nap").await;

    // An open realtime stream keeps it awake past its timeout.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut stream = http
        .get(format!("http://{proxy}/api/realtime"))
        .header(reqwest::header::HOST, "nap.localhost")
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let hello = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&hello).contains("PB_CONNECT"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, still) = d.get("/api/v1/instances/nap").await;
    assert_eq!(
        still["status"], "running",
        "a realtime client is connected: {still}"
    );
    drop(stream);
    asleep(&d, "nap").await;

    // Health probes through the router wake it (they must be answered) but
    // are not traffic: it sleeps again as if nothing had come.
    let (code, _) = through(proxy, "nap.localhost", "/api/health").await;
    assert_eq!(code, 200);
    asleep(&d, "nap").await;

    // Off again: it wakes on the next request and stays awake.
    let updated = d.cli_json(&["update", "nap", "--idle-timeout", "off"]);
    assert_eq!(updated["idle_timeout_secs"], Value::Null);
    assert_eq!(through(proxy, "nap.localhost", "/api/health").await.0, 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, on) = d.get("/api/v1/instances/nap").await;
    assert_eq!(on["status"], "running", "{on}");

    // Nonsense is refused before anything changes.
    for bad in ["soon", "500ms", "400days", "1s; rm -rf /"] {
        let out = d.cli(&["update", "nap", "--idle-timeout", bad]);
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("idle timeout"), "{bad}: {err}");
    }
    let (code, body) = d
        .api(
            reqwest::Method::PATCH,
            "/api/v1/instances/nap",
            Some(json!({"idle_timeout_secs": 99_999_999})),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = d
        .api(
            reqwest::Method::PATCH,
            "/api/v1/instances/nap",
            Some(json!({"wake_schedule": "every full moon"})),
        )
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (400, Some("invalid_schedule")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sleeping_instances_survive_a_daemon_restart_fail_clearly_and_vanish_when_deleted() {
    let mut d = Daemon::start().await;
    let port = quiet_port();
    d.cli_json(&[
        "create",
        "doze",
        "--version",
        PB_NEW,
        "--port",
        &port.to_string(),
        "--idle-timeout",
        "1s",
    ]);
    d.cli_json(&[
        "create",
        "gone",
        "--version",
        PB_NEW,
        "--port",
        &quiet_port().to_string(),
        "--idle-timeout",
        "1s",
    ]);
    asleep(&d, "doze").await;
    asleep(&d, "gone").await;

    // Killed and started again: still asleep, nothing started.
    d.kill9();
    d.restart().await;
    let proxy = d.proxy.expect("the embedded proxy");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, doze) = d.get("/api/v1/instances/doze").await;
    assert_eq!(doze["status"], "sleeping", "{doze}");
    assert!(d
        .instance_pids()
        .iter()
        .all(|p| !crate::support::daemon::alive(*p)));
    assert_eq!(through(proxy, "doze.localhost", "/api/health").await.0, 200);
    asleep(&d, "doze").await;

    // Its port taken while it sleeps: the wake fails, the waiting request
    // is answered 503 with a reason, it is `failed`, and nothing retries.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (code, body) = through(proxy, "doze.localhost", "/api/health").await;
    assert!(code == 503 || code == 502, "{code}: {body}");
    assert!(body.contains("PocketBase instance"), "{body}");
    let failed = d.wait_status("doze", "failed").await;
    assert!(
        failed["last_error"].as_str().unwrap_or("").contains("doze"),
        "{failed}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let audit = d.audit("doze").await;
    assert_eq!(count(&audit, "wake", "error"), 1, "{audit:?}");
    let (_, still) = d.get("/api/v1/instances/doze").await;
    assert_eq!(still["status"], "failed");
    drop(squatter);
    d.cli_json(&["start", "doze"]);

    // Deleted while asleep: its host is unknown from then on.
    d.cli_json(&["delete", "gone", "--purge", "--yes"]);
    assert_eq!(through(proxy, "gone.localhost", "/api/health").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_001_reports_a_sleeping_user_instance_stopped_and_init_pb_wakes_it() {
    let d = Daemon::start_with(&["--user-idle-timeout", "2s"], &[]).await;
    let (code, made) = d.post("/api/users/sleepy_1/init_pb", json!({})).await;
    assert_eq!(code, 200, "{made}");
    let (_, list) = d.get("/api/v1/instances").await;
    let name = list["instances"][0]["name"].as_str().unwrap().to_string();
    assert_eq!(list["instances"][0]["idle_timeout_secs"], 2, "{list}");
    asleep(&d, &name).await;
    let (_, status) = d.get("/api/users/sleepy_1/pb_status").await;
    assert_eq!(status["instance"]["status"], "Stopped", "{status}");
    let (code, woken) = d.post("/api/users/sleepy_1/init_pb", json!({})).await;
    assert_eq!(code, 200, "{woken}");
    let (_, status) = d.get("/api/users/sleepy_1/pb_status").await;
    assert_eq!(status["instance"]["status"], "Running", "{status}");
    let port = status["instance"]["port"].as_u64().unwrap();
    let health = reqwest::get(format!("http://127.0.0.1:{port}/api/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn through_caddy_a_sleeping_instance_wakes_by_way_of_the_wake_proxy() {
    let caddy = Caddy::start();
    caddy.wait_admin().await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let d = Daemon::start_with(
        &[
            "--router",
            "caddy",
            "--caddy-admin",
            &format!("http://{}", caddy.admin),
            "--caddy-listen",
            &listen.to_string(),
            "--caddy-tls",
            "off",
        ],
        &[],
    )
    .await;
    let port = quiet_port().to_string();
    d.cli_json(&[
        "create",
        "cat",
        "--version",
        PB_NEW,
        "--port",
        &port,
        "--idle-timeout",
        "3s",
    ]);
    wait_until(
        Duration::from_secs(10),
        "the route through caddy",
        || async {
            (via(&d.http, listen, "cat.localhost", "/api/health").await == 200).then_some(())
        },
    )
    .await;
    // Caddy keeps its idle upstream connection for two minutes, which
    // counts as traffic; `sleep` puts it to sleep now.
    let (_, before) = d.get("/api/v1/instances/cat").await;
    assert_eq!(
        before["status"], "running",
        "Caddy's connection keeps it awake: {before}"
    );
    let slept = d.cli_json(&["sleep", "cat"]);
    assert_eq!(slept["status"], "sleeping", "{slept}");
    // Ten at once through Caddy: held by the wake proxy, all answered.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let requests = (0..10).map(|_| via(&http, listen, "cat.localhost", "/api/health"));
    let answers = futures::future::join_all(requests).await;
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    d.wait_status("cat", "running").await;
    woken_once(&d, "cat").await;
}

/// The `_superusers` collection's auth-token secret in a `data.db`.
fn token_secret(db: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    let options: String = conn
        .query_row(
            "SELECT options FROM _collections WHERE name = '_superusers'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let v: Value = serde_json::from_str(&options).unwrap();
    v["authToken"]["secret"].as_str().unwrap().to_string()
}

/// The ready directories of the pool, whatever binary they are for.
fn pooled(d: &Daemon) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for key in std::fs::read_dir(d.data_dir().join("pool"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for entry in std::fs::read_dir(key.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let data = entry.path().join("pb_data/data.db");
            if !entry.file_name().to_string_lossy().starts_with('.') && data.is_file() {
                out.push(data);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn new_instances_start_on_pooled_data_directories_each_with_its_own_secrets() {
    let d = Daemon::start_with(&["--pool-size", "1"], &[]).await;
    d.cli_json(&[
        "create",
        "first",
        "--version",
        PB_NEW,
        "--port",
        &quiet_port().to_string(),
    ]);
    // The create filled the pool for its binary, with a PocketBase run.
    let ready = wait_until(
        Duration::from_secs(30),
        "a pooled data directory",
        || async {
            let found = pooled(&d);
            (found.len() == 1).then_some(found)
        },
    )
    .await;
    let pooled_secret = token_secret(&ready[0]);
    let second = d.cli_json(&[
        "create",
        "second",
        "--version",
        PB_NEW,
        "--port",
        &quiet_port().to_string(),
    ]);
    assert_eq!(second["status"], "running", "{second}");
    let dir = std::path::PathBuf::from(second["dir"].as_str().unwrap());
    let second_secret = token_secret(&dir.join("pb_data/data.db"));
    assert_eq!(
        second_secret, pooled_secret,
        "the second instance took the pooled directory"
    );
    let first_dir = d.cli_json(&["status", "first"])["dir"]
        .as_str()
        .unwrap()
        .to_string();
    let first_secret = token_secret(&std::path::Path::new(&first_dir).join("pb_data/data.db"));
    assert_ne!(
        first_secret, second_secret,
        "no two instances share token secrets"
    );
    // Taken, then made again by a run of its own: another secret again.
    let again = wait_until(Duration::from_secs(30), "the pool refilled", || async {
        let found = pooled(&d);
        (found.len() == 1 && token_secret(&found[0]) != second_secret).then_some(found)
    })
    .await;
    assert_ne!(token_secret(&again[0]), first_secret);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wake_schedule_wakes_a_sleeping_instance_for_its_cron_jobs() {
    let d = Daemon::start().await;
    // Every 15 seconds (six fields, seconds first): woken 5 s before each.
    d.cli_json(&[
        "create",
        "cron",
        "--version",
        PB_NEW,
        "--port",
        &quiet_port().to_string(),
        "--idle-timeout",
        "1s",
        "--wake-schedule",
        "*/15 * * * * *",
    ]);
    asleep(&d, "cron").await;
    wait_until(Duration::from_secs(40), "a scheduled wake", || async {
        let audit = d.audit("cron").await;
        (count(&audit, "wake", "ok") >= 1).then_some(())
    })
    .await;
    let (_, events) = d.get("/api/v1/events?instance=cron").await;
    let woke = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "wake")
        .unwrap()
        .clone();
    assert!(
        woke["detail"]
            .as_str()
            .unwrap()
            .contains("its wake schedule"),
        "{woke}"
    );
    // And it sleeps again once idle.
    asleep(&d, "cron").await;
    let shown = d.cli(&["status", "cron"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("*/15 * * * * *"), "{text}");
}
