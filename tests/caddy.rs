//! The Caddy routers against a real Caddy and real PocketBase processes:
//! the admin API router (routes, catch-all, body limit, client IP, restart
//! recovery, reconcile and drift, a unix-socket admin endpoint, on-demand
//! TLS asking the permission endpoint) and the Caddyfile router (managed
//! blocks, validate, reload, roll back).
//!
//! Every process a test starts is killed when the test ends, passed or
//! failed ([`Proc`]); Caddy's data and config dirs live in the test's
//! temporary directory.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use expect_test::expect;
use pockestrator::model::InstanceName;
use pockestrator::router::caddy::{ask_allows, CaddyAdminConfig, CaddyAdminRouter, CaddyTls};
use pockestrator::router::caddyfile::blocks::{parse_blocks, unmanaged};
use pockestrator::router::caddyfile::{CaddyfileConfig, CaddyfileRouter, CREATED_HEADER};
use pockestrator::router::{
    Drift, Route, Router, RouterError, DEFAULT_MAX_BODY_BYTES, DEFAULT_READ_TIMEOUT,
};
use serde_json::{json, Value};

use crate::support::{deps_dir, free_port, pocketbase_bin, wait_until, PB_NEW};

/// How long anything in these tests may take before it counts as broken.
const LIMIT: Duration = Duration::from_secs(30);

fn caddy_bin() -> PathBuf {
    let path = deps_dir().join("caddy");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-test-deps first (scripts/test does)",
        path.display()
    );
    path
}

/// A child process killed (and reaped) on drop.
struct Proc(Option<Child>);

impl Proc {
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Proc {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let err = out.try_clone().unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    Proc(Some(child))
}

/// A real PocketBase on a free port whose `/` answers `label` (from its
/// public dir), with a superuser.
struct Pocketbase {
    port: u16,
    _proc: Proc,
}

const SUPERUSER: (&str, &str) = ("root@example.com", "correct-horse-battery");

async fn start_pocketbase(dir: &Path, label: &str) -> Pocketbase {
    let home = dir.join(format!("pb-{label}"));
    std::fs::create_dir_all(home.join("pb_public")).unwrap();
    std::fs::write(home.join("pb_public/index.html"), label).unwrap();
    let bin = pocketbase_bin(PB_NEW);
    let data = format!("--dir={}", home.join("pb_data").display());
    let status = Command::new(&bin)
        .args(["superuser", "upsert", SUPERUSER.0, SUPERUSER.1, &data])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "superuser upsert failed");
    let port = free_port();
    let proc = spawn_logged(
        Command::new(&bin).args([
            "serve".to_string(),
            format!("--http=127.0.0.1:{port}"),
            data,
            format!("--hooksDir={}", home.join("pb_hooks").display()),
            format!("--migrationsDir={}", home.join("pb_migrations").display()),
            format!("--publicDir={}", home.join("pb_public").display()),
        ]),
        &home.join("pocketbase.log"),
    );
    let client = reqwest::Client::new();
    wait_until(LIMIT, "pocketbase to answer /api/health", || {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://127.0.0.1:{port}/api/health"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    Pocketbase { port, _proc: proc }
}

/// Where a test's Caddy keeps its admin endpoint.
#[derive(Clone)]
enum Admin {
    Tcp(u16),
    Unix(PathBuf),
}

impl Admin {
    fn listen(&self) -> String {
        match self {
            Admin::Tcp(port) => format!("127.0.0.1:{port}"),
            Admin::Unix(path) => format!("unix/{}", path.display()),
        }
    }

    fn url(&self) -> String {
        match self {
            Admin::Tcp(port) => format!("http://127.0.0.1:{port}"),
            Admin::Unix(path) => format!("unix/{}", path.display()),
        }
    }

    /// GET a path of the admin API; `None` if Caddy is not reachable.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        match self {
            Admin::Tcp(port) => {
                let r = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
                    .await
                    .ok()?;
                let status = r.status().as_u16();
                Some((status, r.text().await.ok()?))
            }
            Admin::Unix(sock) => {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut s = tokio::net::UnixStream::connect(sock).await.ok()?;
                s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
                    .await
                    .ok()?;
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).await.ok()?;
                let text = String::from_utf8_lossy(&buf).into_owned();
                let (head, body) = text.split_once("\r\n\r\n")?;
                let status = head.split_whitespace().nth(1)?.parse().ok()?;
                Some((status, body.to_string()))
            }
        }
    }

    async fn config(&self) -> Value {
        let (status, body) = self
            .get("/config/")
            .await
            .expect("caddy's admin API answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn post_load(&self, config: &Value) {
        let Admin::Tcp(port) = self else {
            panic!("post_load is for TCP admin endpoints")
        };
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/load"))
            .json(config)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "{}",
            r.text().await.unwrap_or_default()
        );
    }
}

/// A real Caddy started with `caddy run --config CONFIG.json`.
struct Caddy {
    dir: PathBuf,
    config: Value,
    admin: Admin,
    proc: Proc,
}

impl Caddy {
    async fn start(dir: &Path, admin: Admin, extra: Value) -> Caddy {
        let mut config = json!({ "admin": { "listen": admin.listen() } });
        if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        let dir = dir.join("caddy");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
        let mut caddy = Caddy {
            proc: Proc(None),
            dir,
            config,
            admin,
        };
        caddy.run().await;
        caddy
    }

    /// (Re)start the process on the initial config, as a service manager
    /// would without `--resume`.
    async fn run(&mut self) {
        let mut cmd = Command::new(caddy_bin());
        cmd.args(["run", "--config"])
            .arg(self.dir.join("config.json"))
            .env("XDG_DATA_HOME", self.dir.join("data"))
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("HOME", &self.dir);
        self.proc = spawn_logged(&mut cmd, &self.dir.join("caddy.log"));
        let admin = self.admin.clone();
        wait_until(LIMIT, "caddy's admin endpoint", || {
            let admin = admin.clone();
            async move { (admin.get("/config/").await?.0 == 200).then_some(()) }
        })
        .await;
    }

    fn kill(&mut self) {
        self.proc.kill();
    }
}

fn route(name: &str, port: u16, hosts: &[&str]) -> Route {
    Route {
        name: InstanceName::parse(name).unwrap(),
        port,
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        read_timeout: DEFAULT_READ_TIMEOUT,
        available: true,
        held: false,
        asleep: false,
    }
}

fn admin_router(admin: &Admin, listen: u16) -> CaddyAdminRouter {
    CaddyAdminRouter::new(CaddyAdminConfig {
        admin: admin.url(),
        listen: vec![format!("127.0.0.1:{listen}")],
        tls: CaddyTls::Off,
        server_name: "pockestrator".into(),
        ask_url: None,
    })
    .unwrap()
}

/// GET `http://127.0.0.1:PORT/PATH` with `Host: host`: status and body;
/// status 0 and the error when the request fails (Caddy swaps its
/// listeners on config changes, so a poll may hit the moment in between).
async fn through(port: u16, host: &str, path: &str) -> (u16, String) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut last = String::new();
    // A connection refused while Caddy swaps listeners is retried briefly;
    // any HTTP answer is returned as it is.
    for _ in 0..40 {
        let sent = client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .header("Host", host)
            .send()
            .await;
        match sent {
            Ok(r) => {
                let status = r.status().as_u16();
                return (status, r.text().await.unwrap_or_default());
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (0, last)
}

/// Wait until a host through Caddy answers `/` with `want` (a PocketBase
/// label, or the catch-all's 404).
async fn wait_for_page(port: u16, host: &str, want: (u16, &str)) {
    let what = format!("{host} to answer {want:?}");
    wait_until(LIMIT, &what, || async move {
        let got = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/"))
            .header("Host", host)
            .send()
            .await
            .ok()?;
        let status = got.status().as_u16();
        let body = got.text().await.ok()?;
        (status == want.0 && body == want.1).then_some(())
    })
    .await;
}

const CATCH_ALL: (u16, &str) = (404, "no instance at this address");

/// An unrelated, hand-made server that must survive everything we do.
fn unrelated_server(port: u16) -> Value {
    json!({ "apps": { "http": { "servers": { "theirs": {
        "listen": [format!("127.0.0.1:{port}")],
        "automatic_https": { "disable": true },
        "routes": [{
            "@id": "hand-made",
            "match": [{ "host": ["theirs.localhost"] }],
            "handle": [{ "handler": "static_response", "body": "theirs" }]
        }]
    }}}}})
}

/// The admin block and the unrelated server are exactly as they were, and
/// the unrelated server still answers.
async fn assert_untouched(caddy: &Caddy, theirs_port: u16) {
    let now = caddy.admin.config().await;
    assert_eq!(now["admin"], caddy.config["admin"], "admin block changed");
    assert_eq!(
        now["apps"]["http"]["servers"]["theirs"], caddy.config["apps"]["http"]["servers"]["theirs"],
        "unrelated server changed"
    );
    assert_eq!(
        through(theirs_port, "theirs.localhost", "/").await,
        (200, "theirs".into())
    );
}

fn our_route_ids(config: &Value) -> Vec<String> {
    config["apps"]["http"]["servers"]["pockestrator"]["routes"]
        .as_array()
        .map(|routes| {
            routes
                .iter()
                .map(|r| r["@id"].as_str().unwrap_or("(none)").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn drift_lines(drifts: &[Drift]) -> String {
    let mut lines: Vec<String> = drifts
        .iter()
        .map(|d| format!("{} {:?}: {}", d.kind, d.instance, d.detail))
        .collect();
    lines.sort();
    lines.join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_routes_instances_and_leaves_the_rest_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = tokio::join!(
        start_pocketbase(dir.path(), "instance a"),
        start_pocketbase(dir.path(), "instance b")
    );
    let theirs_port = free_port();
    let caddy = Caddy::start(
        dir.path(),
        Admin::Tcp(free_port()),
        unrelated_server(theirs_port),
    )
    .await;
    let listen = free_port();
    let router = admin_router(&caddy.admin, listen);

    // No ensure_server first: put sets the server up itself.
    router
        .put(&route("a", a.port, &["a.localhost"]))
        .await
        .unwrap();
    assert_eq!(through(listen, "a.localhost", "/api/health").await.0, 200);
    assert_eq!(
        through(listen, "a.localhost", "/").await,
        (200, "instance a".into())
    );
    assert_eq!(
        through(listen, "nobody.localhost", "/").await,
        (404, CATCH_ALL.1.into())
    );
    assert_untouched(&caddy, theirs_port).await;

    router
        .put(&route("b", b.port, &["b.localhost", "b.example.org"]))
        .await
        .unwrap();
    assert_eq!(
        through(listen, "b.localhost", "/").await,
        (200, "instance b".into())
    );
    assert_eq!(
        through(listen, "b.example.org", "/").await,
        (200, "instance b".into())
    );
    assert_eq!(
        through(listen, "a.localhost", "/").await,
        (200, "instance a".into())
    );
    assert_eq!(
        our_route_ids(&caddy.admin.config().await),
        ["pockestrator-a", "pockestrator-b", "pockestrator-catch-all"]
    );
    assert_untouched(&caddy, theirs_port).await;

    // Putting the same route again changes nothing at all.
    let before = caddy.admin.config().await;
    router
        .put(&route("b", b.port, &["b.localhost", "b.example.org"]))
        .await
        .unwrap();
    router.ensure_server().await.unwrap();
    assert_eq!(caddy.admin.config().await, before);

    // A port change follows.
    router
        .put(&route("a", b.port, &["a.localhost"]))
        .await
        .unwrap();
    assert_eq!(
        through(listen, "a.localhost", "/").await,
        (200, "instance b".into())
    );
    router
        .put(&route("a", a.port, &["a.localhost"]))
        .await
        .unwrap();
    assert_eq!(
        through(listen, "a.localhost", "/").await,
        (200, "instance a".into())
    );
    assert_untouched(&caddy, theirs_port).await;

    router
        .remove(&InstanceName::parse("a").unwrap())
        .await
        .unwrap();
    assert_eq!(
        through(listen, "a.localhost", "/").await,
        (404, CATCH_ALL.1.into())
    );
    assert_eq!(
        through(listen, "b.localhost", "/").await,
        (200, "instance b".into())
    );
    // Removing what is not there is fine.
    router
        .remove(&InstanceName::parse("a").unwrap())
        .await
        .unwrap();
    assert_untouched(&caddy, theirs_port).await;

    let b_route = route("b", b.port, &["b.localhost", "b.example.org"]);
    assert_eq!(
        router.check(std::slice::from_ref(&b_route)).await.unwrap(),
        vec![]
    );
    assert_eq!(
        our_route_ids(&caddy.admin.config().await),
        ["pockestrator-b", "pockestrator-catch-all"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn body_limit_and_real_client_ip() {
    let dir = tempfile::tempdir().unwrap();
    let pb = start_pocketbase(dir.path(), "instance a").await;
    let caddy = Caddy::start(dir.path(), Admin::Tcp(free_port()), json!({})).await;
    let listen = free_port();
    let router = admin_router(&caddy.admin, listen);
    router.ensure_server().await.unwrap();
    router
        .put(&route("a", pb.port, &["a.localhost"]))
        .await
        .unwrap();

    // Over seed 000's 10MB: 413 from Caddy once the upstream reads the
    // body (a file upload); under it, PocketBase answers for itself.
    let upload = |len: usize| async move {
        let boundary = "pockestrator-test-boundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend(std::iter::repeat_n(b'x', len));
        body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
        reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{listen}/api/collections/users/records"
            ))
            .header("Host", "a.localhost")
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(upload(10_000_100).await, 413);
    assert_ne!(upload(1_000_000).await, 413);

    // The client connects from 127.0.0.2 and lies in both headers; what
    // reaches PocketBase is its real address.
    let direct = reqwest::Client::new();
    let auth: Value = direct
        .post(format!(
            "http://127.0.0.1:{}/api/collections/_superusers/auth-with-password",
            pb.port
        ))
        .json(&json!({ "identity": SUPERUSER.0, "password": SUPERUSER.1 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = auth["token"].as_str().unwrap().to_string();
    let from_elsewhere = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();
    for trusted in [
        json!({ "headers": ["X-Real-IP"], "useLeftmostIP": false }),
        json!({ "headers": ["X-Forwarded-For"], "useLeftmostIP": true }),
        json!({ "headers": ["X-Forwarded-For"], "useLeftmostIP": false }),
    ] {
        let r = direct
            .patch(format!("http://127.0.0.1:{}/api/settings", pb.port))
            .header("Authorization", &token)
            .json(&json!({ "trustedProxy": trusted }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let health: Value = from_elsewhere
            .get(format!("http://127.0.0.1:{listen}/api/health"))
            .header("Host", "a.localhost")
            .header("Authorization", &token)
            .header("X-Real-IP", "6.6.6.6")
            .header("X-Forwarded-For", "6.6.6.6")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            health["data"]["realIP"], "127.0.0.2",
            "with {trusted}: {health}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_puts_routes_back_after_caddy_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let pb = start_pocketbase(dir.path(), "instance a").await;
    let theirs_port = free_port();
    let mut caddy = Caddy::start(
        dir.path(),
        Admin::Tcp(free_port()),
        unrelated_server(theirs_port),
    )
    .await;
    let listen = free_port();
    let router = admin_router(&caddy.admin, listen);

    let wanted = vec![route("a", pb.port, &["a.localhost"])];
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = {
        let router = router.clone();
        let wanted = wanted.clone();
        tokio::spawn(async move {
            router
                .watch(move || wanted.clone(), async {
                    let _ = stop_rx.await;
                })
                .await
        })
    };

    // On first contact the routes are put in place.
    wait_for_page(listen, "a.localhost", (200, "instance a")).await;

    // Killed and started again on its initial config: our routes are gone
    // until the watcher notices.
    caddy.kill();
    caddy.run().await;
    wait_for_page(listen, "a.localhost", (200, "instance a")).await;
    wait_for_page(listen, "nobody.localhost", CATCH_ALL).await;
    assert_untouched(&caddy, theirs_port).await;

    // Someone loads a config without our server: back within seconds too.
    caddy.admin.post_load(&caddy.config).await;
    wait_for_page(listen, "a.localhost", (200, "instance a")).await;
    assert_untouched(&caddy, theirs_port).await;

    stop_tx.send(()).unwrap();
    tokio::time::timeout(LIMIT, watcher).await.unwrap().unwrap();
    assert_eq!(router.check(&wanted).await.unwrap(), vec![]);
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_adds_missing_removes_stale_and_check_reports_drift() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = tokio::join!(
        start_pocketbase(dir.path(), "instance a"),
        start_pocketbase(dir.path(), "instance b")
    );
    let theirs_port = free_port();
    let caddy = Caddy::start(
        dir.path(),
        Admin::Tcp(free_port()),
        unrelated_server(theirs_port),
    )
    .await;
    let listen = free_port();
    let router = admin_router(&caddy.admin, listen);
    router.ensure_server().await.unwrap();
    router
        .put(&route("a", b.port, &["a.localhost"]))
        .await
        .unwrap();
    router
        .put(&route("old", a.port, &["old.localhost"]))
        .await
        .unwrap();
    router
        .put(&route("c", a.port, &["c.localhost"]))
        .await
        .unwrap();

    // A route someone else put into our server, without an id of ours.
    let r = reqwest::Client::new()
        .put(format!(
            "{}/config/apps/http/servers/pockestrator/routes/0",
            caddy.admin.url()
        ))
        .json(&json!({
            "@id": "someone-else",
            "match": [{ "host": ["else.localhost"] }],
            "handle": [{ "handler": "static_response", "body": "else" }]
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let wanted = vec![
        route("a", a.port, &["a.localhost"]),
        route("b", b.port, &["b.localhost"]),
    ];
    expect![[r#"
        changed Some("a"): upstream "127.0.0.1:B" instead of "127.0.0.1:A"
        missing Some("b"): no route pockestrator-b
        stale None: route pockestrator-c has no instance
        stale None: route pockestrator-old has no instance"#]]
    .assert_eq(
        &drift_lines(&router.check(&wanted).await.unwrap())
            .replace(&b.port.to_string(), "B")
            .replace(&a.port.to_string(), "A"),
    );

    let report = router.reconcile(&wanted).await.unwrap();
    assert_eq!(report.added, ["b"]);
    assert_eq!(report.updated, ["a"]);
    assert_eq!(
        report
            .removed
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["c", "old"])
    );
    assert_eq!(router.check(&wanted).await.unwrap(), vec![]);
    assert_eq!(
        our_route_ids(&caddy.admin.config().await),
        [
            "someone-else",
            "pockestrator-a",
            "pockestrator-b",
            "pockestrator-catch-all"
        ]
    );
    assert_eq!(
        through(listen, "a.localhost", "/").await,
        (200, "instance a".into())
    );
    assert_eq!(
        through(listen, "b.localhost", "/").await,
        (200, "instance b".into())
    );
    assert_eq!(
        through(listen, "old.localhost", "/").await,
        (404, CATCH_ALL.1.into())
    );
    assert_eq!(
        through(listen, "else.localhost", "/").await,
        (200, "else".into())
    );
    assert_untouched(&caddy, theirs_port).await;

    // A second reconcile has nothing to do.
    let again = router.reconcile(&wanted).await.unwrap();
    assert!(again.added.is_empty() && again.updated.is_empty() && again.removed.is_empty());

    // The catch-all moved away from the end is reported and put back.
    let mut config = caddy.admin.config().await;
    let routes = config["apps"]["http"]["servers"]["pockestrator"]["routes"]
        .as_array_mut()
        .unwrap();
    let catch_all = routes.pop().unwrap();
    routes.insert(0, catch_all);
    caddy.admin.post_load(&config).await;
    expect![[r#"changed None: the catch-all route pockestrator-catch-all is not last: routes after it are never reached"#]]
        .assert_eq(&drift_lines(&router.check(&wanted).await.unwrap()));
    router.reconcile(&wanted).await.unwrap();
    assert_eq!(router.check(&wanted).await.unwrap(), vec![]);
    assert_eq!(
        through(listen, "a.localhost", "/").await,
        (200, "instance a".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let pb = start_pocketbase(dir.path(), "instance a").await;
    let socket = dir.path().join("admin.sock");
    let caddy = Caddy::start(dir.path(), Admin::Unix(socket.clone()), json!({})).await;
    let listen = free_port();
    let router = admin_router(&caddy.admin, listen);

    let wanted = vec![route("a", pb.port, &["a.localhost"])];
    let report = router.reconcile(&wanted).await.unwrap();
    assert_eq!(report.added, ["a"]);
    assert_eq!(
        through(listen, "a.localhost", "/").await,
        (200, "instance a".into())
    );
    assert_eq!(
        through(listen, "b.localhost", "/").await,
        (404, CATCH_ALL.1.into())
    );
    assert_eq!(router.check(&wanted).await.unwrap(), vec![]);
    router
        .remove(&InstanceName::parse("a").unwrap())
        .await
        .unwrap();
    assert_eq!(
        through(listen, "a.localhost", "/").await,
        (404, CATCH_ALL.1.into())
    );
    assert_eq!(
        caddy.admin.config().await["admin"],
        json!({ "listen": format!("unix/{}", socket.display()) })
    );

    // Nobody listening: a clear error naming the endpoint.
    let nowhere = admin_router(&Admin::Unix(dir.path().join("nothing.sock")), listen);
    match nowhere.ensure_server().await {
        Err(RouterError::Unreachable { endpoint, .. }) => {
            assert!(endpoint.ends_with("nothing.sock"))
        }
        other => panic!("expected unreachable, got {other:?}"),
    }
}

/// A permission endpoint like the daemon's: 2xx only for names one of
/// `routes` answers at; it remembers what it was asked.
async fn start_ask_endpoint(routes: Vec<Route>) -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::extract::{Query, State};
    use axum::http::StatusCode;
    #[derive(serde::Deserialize)]
    struct Ask {
        domain: String,
    }
    type Shared = (Arc<Vec<Route>>, Arc<Mutex<Vec<String>>>);
    async fn ask(State((routes, asked)): State<Shared>, Query(q): Query<Ask>) -> StatusCode {
        asked.lock().unwrap().push(q.domain.clone());
        if ask_allows(&routes, &q.domain) {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        }
    }
    let asked = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/ask", axum::routing::get(ask))
        .with_state((Arc::new(routes), asked.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/ask"), asked)
}

#[tokio::test(flavor = "multi_thread")]
async fn on_demand_tls_asks_the_permission_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let pb = start_pocketbase(dir.path(), "instance a").await;
    // The local CA must not touch the system trust store, and Caddy's
    // HTTP->HTTPS redirects need a free port of their own.
    let caddy = Caddy::start(
        dir.path(),
        Admin::Tcp(free_port()),
        json!({
            "apps": {
                "http": { "http_port": free_port() },
                "pki": { "certificate_authorities": { "local": { "install_trust": false } } }
            }
        }),
    )
    .await;
    let shop = route("shop", pb.port, &["shop.localhost", "shop.test"]);
    let denied = route("denied", pb.port, &["denied.localhost", "denied.test"]);
    // The daemon routes `shop` only; `denied` is in Caddy but the
    // permission endpoint does not know it.
    let (ask_url, asked) = start_ask_endpoint(vec![shop.clone()]).await;
    let https = free_port();
    let router = CaddyAdminRouter::new(CaddyAdminConfig {
        admin: caddy.admin.url(),
        listen: vec![format!("127.0.0.1:{https}")],
        tls: CaddyTls::Internal,
        server_name: "pockestrator".into(),
        ask_url: Some(ask_url.clone()),
    })
    .unwrap();
    router
        .reconcile(&[shop.clone(), denied.clone()])
        .await
        .unwrap();
    assert_eq!(
        router.check(&[shop.clone(), denied.clone()]).await.unwrap(),
        vec![]
    );
    let config = caddy.admin.config().await;
    assert_eq!(
        config["apps"]["tls"]["automation"]["on_demand"],
        json!({ "@id": "pockestrator.on-demand", "permission": { "module": "http", "endpoint": ask_url } })
    );
    assert_eq!(config["apps"]["pki"], caddy.config["apps"]["pki"]);

    let addr = SocketAddr::from(([127, 0, 0, 1], https));
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("shop.localhost", addr)
        .resolve("shop.test", addr)
        .resolve("denied.test", addr)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let get = |host: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(format!("https://{host}:{https}/"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    // The base name has its certificate from the start, the custom domain
    // once the permission endpoint said yes.
    let base = wait_until(LIMIT, "https://shop.localhost", || async {
        get("shop.localhost").await.ok()
    })
    .await;
    assert_eq!(base, 200);
    assert_eq!(get("shop.test").await.unwrap(), 200);
    assert!(
        get("denied.test").await.is_err(),
        "a refused name got a certificate"
    );
    let asked = asked.lock().unwrap().clone();
    assert!(asked.contains(&"shop.test".to_string()), "{asked:?}");
    assert!(asked.contains(&"denied.test".to_string()), "{asked:?}");
    assert!(!asked.contains(&"shop.localhost".to_string()), "{asked:?}");

    // Removing an instance takes its TLS policies with it.
    router
        .remove(&InstanceName::parse("denied").unwrap())
        .await
        .unwrap();
    let policies = caddy.admin.config().await["apps"]["tls"]["automation"]["policies"].clone();
    let ids: Vec<&str> = policies
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["@id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["pockestrator.tls.shop", "pockestrator.tls.shop.on-demand"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rendering_snapshots_and_hostile_hosts() {
    let admin = admin_router(&Admin::Tcp(1), 2);
    let file = CaddyfileRouter::new(CaddyfileConfig {
        path: "/nonexistent/Caddyfile".into(),
        caddy_bin: "caddy".into(),
        reload_cmd: None,
        tls: CaddyTls::Auto,
        site_port: None,
    });
    let r = route("moots", 8094, &["moots.tigawanna.vip", "app.moots.example"]);
    expect![[r#"{"@id":"pockestrator-moots","handle":[{"handler":"subroute","routes":[{"handle":[{"handler":"request_body","max_size":10000000},{"handler":"reverse_proxy","headers":{"request":{"set":{"X-Real-IP":["{http.request.remote.host}"]}}},"transport":{"protocol":"http","read_timeout":"360s"},"upstreams":[{"dial":"127.0.0.1:8094"}]}]}]}],"match":[{"host":["moots.tigawanna.vip","app.moots.example"]}],"terminal":true}"#]]
        .assert_eq(&pockestrator::router::caddy::render::canonical(&admin.route_json(&r)));
    expect![[r#"
        # pockestrator:begin moots
        moots.tigawanna.vip, app.moots.example {
        	request_body {
        		max_size 10MB
        	}
        	reverse_proxy 127.0.0.1:8094 {
        		transport http {
        			read_timeout 360s
        		}
        		header_up X-Real-IP {remote_host}
        	}
        }
        # pockestrator:end moots
    "#]]
    .assert_eq(&file.render_block(&r));

    // Hostile hosts are refused before anything is sent or written (the
    // admin endpoint and the Caddyfile here do not even exist).
    for hosts in [
        &["evil.example.com\n:80 {\n\trespond pwned\n}"][..],
        &["{env.HOME}.example.com"],
        &["ok.example.com", "b}.example.com"],
    ] {
        let bad = route("evil", 1, hosts);
        let admin_err = admin.put(&bad).await.unwrap_err().to_string();
        let file_err = file.put(&bad).await.unwrap_err().to_string();
        assert!(
            admin_err.starts_with("refusing to route host"),
            "{admin_err}"
        );
        assert!(file_err.starts_with("refusing to route host"), "{file_err}");
        let rendered = file.render_block(&bad);
        assert!(
            rendered.starts_with("# pockestrator: not rendered: "),
            "{rendered}"
        );
        assert_eq!(rendered.lines().count(), 1, "{rendered}");
    }
    // No instance can be named like the catch-all route.
    assert!(InstanceName::parse("catch-all").is_err());
    assert!(!Path::new("/nonexistent/Caddyfile").exists());
}

/// The hand-written part of the test Caddyfile: a global options block,
/// comments, a snippet, odd spacing and indentation.
fn hand_written_caddyfile(admin: u16, http: u16) -> String {
    format!(
        "# Caddy on this host -- edited by hand, keep it tidy!\n\
         {{\n\
         \tadmin 127.0.0.1:{admin}\n\
         \thttp_port   {http}\n\
         \tpersist_config off\n\
         }}\n\
         \n\
         (common) {{\n\
         \x20   header -Server\n\
         }}\n\
         \n\
         # a hand-made site\n\
         http://hand.localhost   {{\n\
         \x20 import common\n\
         \t\trespond \"hand-made\"    200\n\
         }}\n\
         \n\
         \n"
    )
}

fn file_router(path: &Path, reload_cmd: Vec<String>) -> CaddyfileRouter {
    CaddyfileRouter::new(CaddyfileConfig {
        path: path.to_path_buf(),
        caddy_bin: caddy_bin(),
        reload_cmd: Some(reload_cmd),
        tls: CaddyTls::Off,
        site_port: None,
    })
}

fn unmanaged_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    unmanaged(&text, &parse_blocks(&text).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn caddyfile_blocks_validate_reload_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = tokio::join!(
        start_pocketbase(dir.path(), "instance a"),
        start_pocketbase(dir.path(), "instance b")
    );
    let (admin, http) = (free_port(), free_port());
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let path = etc.join("Caddyfile");
    let original = hand_written_caddyfile(admin, http);
    std::fs::write(&path, &original).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();

    let caddy_home = dir.path().join("caddy");
    let mut cmd = Command::new(caddy_bin());
    cmd.args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env("XDG_DATA_HOME", caddy_home.join("data"))
        .env("XDG_CONFIG_HOME", caddy_home.join("config"))
        .env("HOME", &caddy_home);
    std::fs::create_dir_all(&caddy_home).unwrap();
    let _caddy = spawn_logged(&mut cmd, &dir.path().join("caddy.log"));
    wait_for_page(http, "hand.localhost", (200, "hand-made")).await;

    let caddy = caddy_bin().display().to_string();
    let reload = vec![
        caddy.clone(),
        "reload".into(),
        "--config".into(),
        path.display().to_string(),
        "--adapter".into(),
        "caddyfile".into(),
        "--address".into(),
        format!("127.0.0.1:{admin}"),
    ];
    let router = file_router(&path, reload);
    let assert_intact = |path: &Path| {
        assert_eq!(unmanaged_of(path), original, "hand-written bytes changed");
        assert_eq!(
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o640
        );
    };

    // Create.
    router
        .put(&route("a", a.port, &["a.localhost"]))
        .await
        .unwrap();
    assert_intact(&path);
    assert_eq!(
        through(http, "a.localhost", "/").await,
        (200, "instance a".into())
    );
    assert_eq!(
        through(http, "hand.localhost", "/").await,
        (200, "hand-made".into())
    );
    router
        .put(&route("b", b.port, &["b.localhost", "b.example.org"]))
        .await
        .unwrap();
    assert_intact(&path);
    assert_eq!(
        through(http, "b.example.org", "/").await,
        (200, "instance b".into())
    );

    // Update: the port change follows.
    router
        .put(&route("a", b.port, &["a.localhost"]))
        .await
        .unwrap();
    assert_intact(&path);
    assert_eq!(
        through(http, "a.localhost", "/").await,
        (200, "instance b".into())
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        parse_blocks(&text)
            .unwrap()
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );

    // Drift: a block edited by hand is reported, and put back.
    let wanted = vec![
        route("a", b.port, &["a.localhost"]),
        route("b", b.port, &["b.localhost", "b.example.org"]),
    ];
    std::fs::write(
        &path,
        text.replace(&format!("127.0.0.1:{}", b.port), "127.0.0.1:1"),
    )
    .unwrap();
    expect![[r#"
        changed Some("a"): line 6 of the block is "reverse_proxy 127.0.0.1:1 {" instead of "reverse_proxy 127.0.0.1:B {"
        changed Some("b"): line 6 of the block is "reverse_proxy 127.0.0.1:1 {" instead of "reverse_proxy 127.0.0.1:B {""#]]
    .assert_eq(&drift_lines(&router.check(&wanted).await.unwrap()).replace(&b.port.to_string(), "B"));
    let report = router.reconcile(&wanted).await.unwrap();
    assert_eq!(report.updated, ["a", "b"]);
    assert_eq!(router.check(&wanted).await.unwrap(), vec![]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert_intact(&path);

    // Delete.
    router
        .remove(&InstanceName::parse("a").unwrap())
        .await
        .unwrap();
    assert_intact(&path);
    wait_for_page(http, "a.localhost", (200, "")).await;
    assert_eq!(
        through(http, "b.localhost", "/").await,
        (200, "instance b".into())
    );

    // A reload that fails: the previous bytes come back.
    let before = std::fs::read(&path).unwrap();
    let failing = file_router(
        &path,
        vec![
            "sh".into(),
            "-c".into(),
            "echo reload refused >&2; exit 3".into(),
        ],
    );
    match failing.put(&route("c", a.port, &["c.localhost"])).await {
        Err(RouterError::ReloadFailed { output }) => {
            assert!(output.contains("reload refused"), "{output}")
        }
        other => panic!("expected a failed reload, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_intact(&path);

    // A hand-made mistake elsewhere in the file: validation fails, the
    // file stays exactly as it was, Caddy keeps running the old config.
    let corrupted = format!(
        "{}http://broken.localhost {{\n\tno_such_directive\n}}\n",
        String::from_utf8(before.clone()).unwrap()
    );
    std::fs::write(&path, &corrupted).unwrap();
    match router.put(&route("c", a.port, &["c.localhost"])).await {
        Err(RouterError::Invalid { output }) => {
            assert!(output.contains("no_such_directive"), "{output}")
        }
        other => panic!("expected an invalid Caddyfile, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), corrupted);
    assert_eq!(
        through(http, "b.localhost", "/").await,
        (200, "instance b".into())
    );
    std::fs::write(&path, &before).unwrap();

    // Remove the rest: the file is the hand-written one again, to the byte.
    router.reconcile(&[]).await.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    wait_for_page(http, "b.localhost", (200, "")).await;
    assert_eq!(
        through(http, "hand.localhost", "/").await,
        (200, "hand-made".into())
    );

    // No temporary files are left next to the Caddyfile.
    let left: Vec<_> = std::fs::read_dir(&etc)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("Caddyfile")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn caddyfile_is_created_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/etc/caddy/Caddyfile");
    let router = file_router(&path, vec!["true".into()]);
    let r = route("a", 8091, &["a.localhost"]);
    router.put(&r).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{CREATED_HEADER}{}", router.render_block(&r))
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(
        router.check(std::slice::from_ref(&r)).await.unwrap(),
        vec![]
    );
    // With the last block gone the file is not empty (Caddy would refuse it).
    router.remove(&r.name).await.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), CREATED_HEADER);

    // A file that held nothing but one block keeps a comment, not nothing.
    std::fs::write(&path, router.render_block(&r)).unwrap();
    router.reconcile(&[]).await.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), CREATED_HEADER);

    // A failed reload of a file that did not exist removes it again.
    let fresh = dir.path().join("fresh/Caddyfile");
    let failing = file_router(&fresh, vec!["false".into()]);
    assert!(matches!(
        failing.put(&r).await,
        Err(RouterError::ReloadFailed { .. })
    ));
    assert!(!fresh.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn caddyfile_hand_edit_during_an_edit_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Caddyfile");
    let original = "http://hand.localhost {\n\trespond \"hand\"\n}\n";
    std::fs::write(&path, original).unwrap();
    // A `caddy` that, the first time it validates, lets someone append a
    // site to the Caddyfile by hand, as if an operator saved at that moment.
    let late = "http://late.localhost {\n\trespond \"late\"\n}\n";
    let wrapper = dir.path().join("caddy-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = validate ] && [ ! -e {once} ]; then touch {once}; printf '%s' '{late}' >> {path}; fi\nexec {caddy} \"$@\"\n",
            once = dir.path().join("once").display(),
            path = path.display(),
            caddy = caddy_bin().display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let router = CaddyfileRouter::new(CaddyfileConfig {
        path: path.clone(),
        caddy_bin: wrapper,
        reload_cmd: Some(vec!["true".into()]),
        tls: CaddyTls::Off,
        site_port: None,
    });
    let r = route("a", 8091, &["a.localhost"]);
    router.put(&r).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{original}{late}{}", router.render_block(&r))
    );
}
