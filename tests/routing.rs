//! Routing end to end: the daemon with each router, real PocketBase, real
//! Caddy.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::daemon::Daemon;
use crate::support::{deps_dir, free_port, wait_until, PB_NEW};

/// GET through a router with a given Host header; the status, or 0 when
/// the router cannot be reached.
pub(crate) async fn via(http: &reqwest::Client, router: SocketAddr, host: &str, path: &str) -> u16 {
    // Caddy swaps its listeners on config changes: a refused connection
    // is retried briefly; any HTTP answer is returned as it is.
    for _ in 0..40 {
        let sent = http
            .get(format!("http://{router}{path}"))
            .header(reqwest::header::HOST, host)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Ok(r) = sent {
            return r.status().as_u16();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    0
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_proxy_routes_by_name_and_custom_domain() {
    let d = Daemon::start().await;
    let proxy = d.proxy.expect("the embedded proxy is the default router");
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
    let urls: Vec<&str> = created["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            format!("http://moots.localhost:{}", proxy.port()),
            format!("http://127.0.0.1:{port}")
        ]
    );
    assert_eq!(
        via(&d.http, proxy, "moots.localhost", "/api/health").await,
        200
    );
    assert_eq!(
        via(
            &d.http,
            proxy,
            &format!("MOOTS.localhost:{}", proxy.port()),
            "/api/health"
        )
        .await,
        200
    );
    assert_eq!(
        via(&d.http, proxy, "other.localhost", "/api/health").await,
        404
    );

    // The client IP PocketBase sees is the real peer, not a spoofed header.
    let password = created["superuser"]["password"].as_str().unwrap();
    let token: Value = d
        .http
        .post(format!(
            "http://{proxy}/api/collections/_superusers/auth-with-password"
        ))
        .header(reqwest::header::HOST, "moots.localhost")
        .json(&json!({"identity": "admin@example.com", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let health: Value = d
        .http
        .get(format!("http://{proxy}/api/health"))
        .header(reqwest::header::HOST, "moots.localhost")
        .header("X-Forwarded-For", "6.6.6.6")
        .header(
            reqwest::header::AUTHORIZATION,
            token["token"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["data"]["realIP"], "127.0.0.1", "{health}");
    let audit = d.audit("moots").await;
    assert!(
        audit.contains(&("trusted-proxy".to_string(), "ok".to_string())),
        "{audit:?}"
    );
    // PocketBase was told to trust the router's X-Forwarded-For.
    let settings: Value = d
        .http
        .get(format!("http://{proxy}/api/settings"))
        .header(reqwest::header::HOST, "moots.localhost")
        .header(
            reqwest::header::AUTHORIZATION,
            token["token"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        settings["trustedProxy"]["headers"],
        json!(["X-Forwarded-For"]),
        "{settings}"
    );
    assert_eq!(settings["trustedProxy"]["useLeftmostIP"], false);

    // Stopped: 503 with Retry-After; started again: 200.
    d.cli_json(&["stop", "moots"]);
    let resp = d
        .http
        .get(format!("http://{proxy}/api/health"))
        .header(reqwest::header::HOST, "moots.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    d.cli_json(&["start", "moots"]);
    wait_until(
        Duration::from_secs(10),
        "the route to follow the start",
        || async {
            (via(&d.http, proxy, "moots.localhost", "/api/health").await == 200).then_some(())
        },
    )
    .await;

    // Custom domains.
    let list = d.cli_json(&["domain", "add", "moots", "Moots.Example.COM"]);
    assert_eq!(list["domains"], json!(["moots.example.com"]));
    assert_eq!(
        via(&d.http, proxy, "moots.example.com", "/api/health").await,
        200
    );
    let status = d.cli_json(&["status", "moots"]);
    assert_eq!(status["route"]["in_place"], true, "{status}");
    assert!(status["urls"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u.as_str().unwrap().starts_with("http://moots.example.com:")));
    // The on-demand TLS question: yes for routed domains only, no token needed.
    let ask = |domain: &str| {
        let url = d.url(&format!("/api/v1/tls/ask?domain={domain}"));
        let http = d.http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(ask("moots.example.com").await, 200);
    assert_eq!(ask("moots.localhost").await, 200);
    assert_eq!(ask("evil.example.com").await, 404);
    // A domain cannot reach two instances; hostile domains are refused.
    d.cli_json(&[
        "create",
        "other",
        "--version",
        PB_NEW,
        "--port",
        &free_port().to_string(),
    ]);
    let (code, v) = d
        .api(
            Method::POST,
            "/api/v1/instances/other/domains",
            Some(json!({"domain": "moots.example.com"})),
        )
        .await;
    assert_eq!(code, 409, "{v}");
    let (code, v) = d
        .api(
            Method::POST,
            "/api/v1/instances/other/domains",
            Some(json!({"domain": "moots.localhost"})),
        )
        .await;
    assert_eq!(code, 409, "{v}");
    for bad in ["x.com\n}", "a b.com", "*.example.com", "../x", ""] {
        let (code, v) = d
            .api(
                Method::POST,
                "/api/v1/instances/other/domains",
                Some(json!({"domain": bad})),
            )
            .await;
        assert_eq!(code, 400, "{bad:?}: {v}");
    }
    // An instance made without a superuser learns to trust the router when
    // pockestrator gives it one.
    assert!(!d
        .audit("other")
        .await
        .iter()
        .any(|(a, _)| a == "trusted-proxy"));
    d.cli_json(&["superuser", "other", "--email", "ops@example.com"]);
    let audit = d.audit("other").await;
    assert!(
        audit.contains(&("trusted-proxy".to_string(), "ok".to_string())),
        "{audit:?}"
    );
    let list = d.cli_json(&["domain", "remove", "moots", "moots.example.com"]);
    assert_eq!(list["domains"], json!([]));
    assert_eq!(
        via(&d.http, proxy, "moots.example.com", "/api/health").await,
        404
    );
    let doctor = d.cli_json(&["doctor"]);
    assert_eq!(doctor["drifts"], json!([]), "{doctor}");
    assert_eq!(doctor["router"], "embedded");
    let checks: Vec<&str> = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in [
        "writable",
        "disk space",
        "open files",
        "inotify",
        "systemd",
        "caddy",
    ] {
        assert!(checks.contains(&name), "{name} not checked: {checks:?}");
    }

    d.cli_json(&["delete", "moots"]);
    assert_eq!(
        via(&d.http, proxy, "moots.localhost", "/api/health").await,
        404
    );
}

/// A real Caddy with only an admin endpoint, killed on drop (the SDK
/// tests put it in front of the daemon too).
pub(crate) struct Caddy {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub(crate) admin: SocketAddr,
}

impl Caddy {
    pub(crate) fn start() -> Caddy {
        let dir = tempfile::tempdir().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut caddy = Caddy {
            child: None,
            dir,
            admin,
        };
        caddy.spawn();
        caddy
    }

    pub(crate) fn spawn(&mut self) {
        let config = self.dir.path().join("caddy.json");
        std::fs::write(
            &config,
            json!({"admin": {"listen": self.admin.to_string()}}).to_string(),
        )
        .unwrap();
        let child = Command::new(deps_dir().join("caddy"))
            .args(["run", "--config"])
            .arg(&config)
            .env("HOME", self.dir.path())
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) async fn wait_admin(&self) {
        let url = format!("http://{}/config/", self.admin);
        wait_until(
            Duration::from_secs(20),
            "caddy's admin endpoint",
            || async {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            },
        )
        .await;
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_admin_api_routes_and_comes_back_after_a_caddy_restart() {
    let mut caddy = Caddy::start();
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
    let port = free_port().to_string();
    let created = d.cli_json(&["create", "web", "--version", PB_NEW, "--port", &port]);
    assert!(
        created["urls"][0]
            .as_str()
            .unwrap()
            .starts_with("http://web.localhost"),
        "{created}"
    );
    wait_until(
        Duration::from_secs(10),
        "the route through caddy",
        || async {
            (via(&d.http, listen, "web.localhost", "/api/health").await == 200).then_some(())
        },
    )
    .await;
    assert_eq!(
        via(&d.http, listen, "nobody.localhost", "/api/health").await,
        404
    );
    let status = d.cli_json(&["status", "web"]);
    assert_eq!(status["route"]["in_place"], true, "{status}");

    // Caddy restarted with its bare config: the routes come back by themselves.
    caddy.kill();
    caddy.spawn();
    caddy.wait_admin().await;
    wait_until(
        Duration::from_secs(30),
        "the routes back after caddy's restart",
        || async {
            (via(&d.http, listen, "web.localhost", "/api/health").await == 200).then_some(())
        },
    )
    .await;

    // A route removed behind our back is drift; --repair puts it back.
    let resp = d
        .http
        .delete(format!("http://{}/id/pockestrator-web", caddy.admin))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let out = d.cli(&["doctor", "--json"]);
    assert!(
        !out.status.success(),
        "doctor must fail while a route is missing"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["drifts"][0]["instance"], "web", "{report}");
    let repaired = d.cli_json(&["doctor", "--repair"]);
    assert_eq!(repaired["drifts"], json!([]), "{repaired}");
    assert_eq!(
        via(&d.http, listen, "web.localhost", "/api/health").await,
        200
    );

    d.cli_json(&["delete", "web", "--purge", "--yes"]);
    wait_until(Duration::from_secs(10), "the route removed", || async {
        (via(&d.http, listen, "web.localhost", "/api/health").await == 404).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn caddyfile_router_keeps_hand_written_sites() {
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let site_port = free_port();
    let listen_port = free_port();
    let caddyfile = dir.path().join("Caddyfile");
    let hand_written = format!(
        "{{\n\tadmin {admin}\n\tauto_https off\n}}\n\n# a site written by hand\nhttp://hand.localhost:{site_port} {{\n\trespond \"by hand\"\n}}\n"
    );
    std::fs::write(&caddyfile, &hand_written).unwrap();
    let caddy_bin = deps_dir().join("caddy");
    let mut caddy = Command::new(&caddy_bin)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut caddy);
    let hand: SocketAddr = format!("127.0.0.1:{site_port}").parse().unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    wait_until(
        Duration::from_secs(20),
        "caddy serving the hand-written site",
        || async { (via(&http, hand, "hand.localhost", "/").await == 200).then_some(()) },
    )
    .await;

    let reload = format!(
        "{} reload --config {} --adapter caddyfile --address {admin}",
        caddy_bin.display(),
        caddyfile.display()
    );
    let d = Daemon::start_with(
        &[
            "--router",
            "caddyfile",
            "--caddyfile",
            caddyfile.to_str().unwrap(),
            "--caddy-bin",
            caddy_bin.to_str().unwrap(),
            "--caddy-reload-cmd",
            &reload,
            "--caddy-tls",
            "off",
            "--caddy-listen",
            &format!(":{listen_port}"),
        ],
        &[],
    )
    .await;
    let listen: SocketAddr = format!("127.0.0.1:{listen_port}").parse().unwrap();
    for round in 0..2 {
        let port = free_port().to_string();
        d.cli_json(&["create", "filed", "--version", PB_NEW, "--port", &port]);
        wait_until(
            Duration::from_secs(20),
            "the managed block served",
            || async {
                (via(&d.http, listen, "filed.localhost", "/api/health").await == 200).then_some(())
            },
        )
        .await;
        let text = std::fs::read_to_string(&caddyfile).unwrap();
        assert!(
            text.starts_with(&hand_written),
            "round {round}: hand-written part changed:\n{text}"
        );
        assert!(text.contains("# pockestrator:begin filed"), "{text}");
        assert_eq!(via(&http, hand, "hand.localhost", "/").await, 200);
        d.cli_json(&["delete", "filed", "--purge", "--yes"]);
        let text = std::fs::read_to_string(&caddyfile).unwrap();
        assert_eq!(
            text, hand_written,
            "round {round}: deleting did not restore the file byte for byte"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn body_limit_is_set_per_instance() {
    let d = Daemon::start().await;
    let proxy = d.proxy.unwrap();
    let port = free_port().to_string();
    let created = d.cli_json(&[
        "create",
        "tiny",
        "--version",
        PB_NEW,
        "--port",
        &port,
        "--max-body",
        "2KB",
    ]);
    assert_eq!(created["max_body_bytes"], 2000);
    let post = |size: usize| {
        let http = d.http.clone();
        async move {
            http.post(format!("http://{proxy}/api/collections/none/records"))
                .header(reqwest::header::HOST, "tiny.localhost")
                .body(vec![b'x'; size])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(5000).await, 413);
    assert_ne!(post(500).await, 413);
    let updated = d.cli_json(&["update", "tiny", "--default-max-body"]);
    assert_eq!(updated["max_body_bytes"], 10_000_000);
    assert_ne!(post(5000).await, 413);
    let out = d.cli(&["update", "tiny", "--max-body", "10XB"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("write e.g. 10MB"));
    let history = d.cli_json(&["history", "tiny"]);
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"] == "max_body_bytes"),
        "{history}"
    );
}
