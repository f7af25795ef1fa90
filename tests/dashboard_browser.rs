//! The dashboard end to end in a real headless Chromium, driven over
//! WebDriver (Debian's `chromium` and `chromedriver`, installed by
//! `scripts/fetch-test-deps`), against a real daemon running real
//! PocketBase. Screenshots (the fleet and instance views at desktop and
//! phone width, the dark theme, the audit log, a refused sign-in) are saved
//! under `target/test-artifacts/dashboard/` (or `$POCKESTRATOR_TEST_ARTIFACTS`),
//! and the page of a failed wait is saved there too.

use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::support::daemon::Daemon;
use crate::support::{free_port, wait_until, PB_NEW, PB_OLD};

/// How long the browser gets for anything that involves a PocketBase
/// starting or stopping (generous: the CI machine has two cores and runs
/// other tests at the same time).
const LIVE: Duration = Duration::from_secs(60);

fn program(env: &str, default: &str) -> PathBuf {
    let path = std::env::var(env)
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-test-deps (it installs Debian's chromium and \
         chromium-driver), or point {env} at it",
        path.display()
    );
    path
}

/// Where the screenshots go.
fn artifacts() -> PathBuf {
    let dir = std::env::var("POCKESTRATOR_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts"))
        .join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chromedriver, a headless Chromium behind it, and a WebDriver session.
struct Browser {
    client: Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// chromedriver in a process group of its own, with the Chromium it starts:
/// dropping it (a test that ends, fails or panics) kills the whole group,
/// so no browser outlives its test.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

impl Browser {
    async fn start() -> Browser {
        Self::launch(false).await
    }

    /// A browser whose system setting asks for the dark theme.
    async fn start_dark() -> Browser {
        Self::launch(true).await
    }

    async fn launch(dark: bool) -> Browser {
        let chromium = program("POCKESTRATOR_TEST_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("POCKESTRATOR_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = free_port();
        let driver = Driver(
            Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn chromedriver"),
        );
        wait_until(
            Duration::from_secs(30),
            "chromedriver to listen",
            || async move { TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()) },
        )
        .await;
        let profile = tempfile::tempdir().unwrap();
        // The flags keep a headless Chromium off the network: this machine
        // has none, and its background connections would only be refused.
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if dark {
            args.push("--force-dark-mode".into());
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        // Plain HTTP to chromedriver on loopback: no TLS needed.
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with headless Chromium");
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(LIVE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Wait until an element matching `css` exists (e.g. a row in a given
    /// state, `#row-shop[data-status="running"]`).
    async fn wait_for(&self, css: &str, what: &str) {
        self.wait_text(css, what, |_| true).await;
    }

    /// Wait until the text of `css` satisfies `ok`; returns it. On time-out
    /// the page is saved (screenshot and HTML) next to the other artifacts
    /// and the panic says where.
    async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + LIVE;
        let mut last = None;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if let Ok(text) = el.text().await {
                    if ok(&text) {
                        return text;
                    }
                    last = Some(text);
                }
            }
            if std::time::Instant::now() > deadline {
                let slug: String = what
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                let shot = self.screenshot(&format!("failed-{slug}.png")).await;
                let html = self.client.source().await.unwrap_or_default();
                let page = artifacts().join(format!("failed-{slug}.html"));
                std::fs::write(&page, html).unwrap();
                panic!(
                    "timed out after {LIVE:?} waiting for {what} ({css}); last text: {last:?}; \
                     the page is in {} and {}",
                    shot.display(),
                    page.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Mark the document; [`Self::same_document`] tells whether the page
    /// was reloaded since (a live update must not reload it).
    async fn mark_document(&self) {
        self.js("window.__pockestratorMark = 'still here'; return null;")
            .await;
    }

    async fn same_document(&self) -> bool {
        self.js("return window.__pockestratorMark === 'still here';")
            .await
            == json!(true)
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = artifacts().join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Whether the page fits the window's width (no sideways scrolling).
    async fn fits_width(&self) -> bool {
        self.js("return document.documentElement.scrollWidth <= window.innerWidth + 1;")
            .await
            == json!(true)
    }
}

/// Sign in through the form.
async fn sign_in(b: &Browser, d: &Daemon) {
    b.client.goto(&d.url("/ui/login")).await.unwrap();
    type_into(&b.find("#token").await, &d.token).await;
    b.find("#login-submit").await.click().await.unwrap();
    b.find("#fleet").await;
}

async fn type_into(el: &Element, text: &str) {
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_in_a_real_browser() {
    let d = Daemon::start().await;
    let b = Browser::start().await;
    let c = &b.client;

    // Without a session the dashboard sends the browser to sign in.
    c.goto(&d.url("/")).await.unwrap();
    b.find("#login-form").await;
    assert_eq!(b.path().await, "/ui/login");

    // A wrong token is refused with the reason on the page.
    type_into(&b.find("#token").await, "not-the-token").await;
    b.find("#login-submit").await.click().await.unwrap();
    let error = b
        .wait_text("#login-error", "the sign-in error", |t| !t.is_empty())
        .await;
    assert!(error.contains("not the admin token"), "{error}");
    b.screenshot("sign-in-refused.png").await;

    // The right token opens the fleet.
    type_into(&b.find("#token").await, &d.token).await;
    b.find("#login-submit").await.click().await.unwrap();
    b.find("#fleet").await;
    assert_eq!(b.path().await, "/ui/");
    assert_eq!(b.find("#count-total").await.text().await.unwrap(), "0");
    // The latest release is preselected.
    let version = b.find("#create-version").await.prop("value").await.unwrap();
    assert_eq!(version.as_deref(), Some(PB_NEW));
    b.mark_document().await;

    // An invalid name: the inline message is the API's own, and creating
    // anyway is refused with the same message and nothing created.
    let (api_status, api) = d
        .post(
            "/api/v1/instances",
            json!({"name": "Bad Name!", "version": PB_NEW}),
        )
        .await;
    assert_eq!(api_status, 400);
    let api_message = api["error"]["message"].as_str().unwrap().to_string();
    let name_input = b.find("#create-name").await;
    type_into(&name_input, "Bad Name!").await;
    let inline = b
        .wait_text("#create-error-name", "the inline name error", |t| {
            !t.is_empty()
        })
        .await;
    assert_eq!(inline, api_message);
    b.find("#create-submit").await.click().await.unwrap();
    let refused = b
        .wait_text("#create-error", "the create form's error", |t| {
            !t.is_empty()
        })
        .await;
    assert!(refused.contains("Fix the marked fields"), "{refused}");
    let (_, list) = d.get("/api/v1/instances").await;
    assert_eq!(
        list["instances"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );

    // A valid create: the message clears, and the new row arrives and
    // turns `running` without a reload.
    type_into(&name_input, "shop").await;
    b.wait_text(
        "#create-error-name",
        "the name error to clear",
        str::is_empty,
    )
    .await;
    // From the keyboard: Enter in the last field submits the form.
    type_into(&b.find("#create-email").await, "admin@example.com\u{E007}").await;
    b.wait_for(
        "#row-shop[data-status=\"running\"]",
        "the new instance to show as running",
    )
    .await;
    let done = b
        .wait_text("#create-progress", "the create to report", |t| {
            t.contains("Created")
        })
        .await;
    assert!(done.contains("admin@example.com"), "{done}");
    assert!(done.contains("not shown again"), "{done}");
    b.wait_text("#count-running", "the running count", |t| t == "1")
        .await;
    assert!(b.same_document().await, "the fleet page reloaded");
    let row = b.find("#row-shop").await.text().await.unwrap();
    assert!(row.contains(PB_NEW), "{row}");
    // Statistics from /proc arrive while the page is open.
    b.wait_text(
        "#row-shop td[data-label=\"Memory\"]",
        "the instance's memory",
        |t| t.ends_with("MiB"),
    )
    .await;

    // A change made elsewhere (the API) shows up live too.
    let (status, body) = d.post("/api/v1/instances/shop/stop", json!({})).await;
    assert_eq!(status, 200, "{body}");
    b.wait_for(
        "#row-shop[data-status=\"stopped\"]",
        "the API's stop to show",
    )
    .await;
    let (status, body) = d.post("/api/v1/instances/shop/start", json!({})).await;
    assert_eq!(status, 200, "{body}");
    b.wait_for(
        "#row-shop[data-status=\"running\"]",
        "the API's start to show",
    )
    .await;
    assert!(b.same_document().await, "the fleet page reloaded");

    // Filtering narrows the table on the server's side.
    type_into(&b.find("#filter").await, "no-such-thing").await;
    b.wait_for("#fleet-empty", "the filter to hide every row")
        .await;
    type_into(&b.find("#filter").await, "sho").await;
    b.wait_for("#row-shop", "the filter to show the row again")
        .await;
    b.wait_text("#row-shop td[data-label=\"Memory\"]", "the memory", |t| {
        t.ends_with("MiB")
    })
    .await;
    let fleet_shot = b.screenshot("fleet.png").await;

    // The instance page: facts, a live log tail, health, the audit log.
    b.find("#row-shop a.instance-link")
        .await
        .click()
        .await
        .unwrap();
    b.wait_for(
        "#instance-status[data-status=\"running\"]",
        "the instance page",
    )
    .await;
    assert_eq!(b.path().await, "/ui/instances/shop");
    b.mark_document().await;
    let log = b
        .wait_text("#log", "the log tail", |t| t.contains("Server started"))
        .await;
    assert!(log.contains("http://127.0.0.1:"), "{log}");
    let wiring = b.find("#instance-wiring").await.text().await.unwrap();
    assert!(wiring.contains("the embedded proxy"), "{wiring}");
    assert!(wiring.contains("the embedded supervisor"), "{wiring}");
    b.wait_for("#route-state[data-ok=\"true\"]", "the route in place")
        .await;
    let admin = b.find("#admin-link").await.attr("href").await.unwrap();
    assert!(admin.is_some_and(|h| h.ends_with("/_/")));
    b.wait_text("#health", "a health check", |t| t.contains("checks passed"))
        .await;
    let audit = b.find("#instance-audit").await.text().await.unwrap();
    assert!(audit.contains("create"), "{audit}");
    c.set_window_size(1280, 1500).await.unwrap();
    let instance_shot = b.screenshot("instance.png").await;
    c.set_window_size(1280, 1000).await.unwrap();

    // A running instance is offered Stop and Restart, not Start.
    let offered = "return ['start', 'stop', 'restart']\
        .filter(b => document.getElementById('action-' + b)).join(' ')";
    assert_eq!(b.js(offered).await, "stop restart");

    // Stop from the page: the status turns `stopped` live, and the audit
    // table gains the stop.
    b.find("#action-stop").await.click().await.unwrap();
    b.wait_for(
        "#instance-status[data-status=\"stopped\"]",
        "the instance to show as stopped",
    )
    .await;
    b.wait_text("#action-result", "the stop to report", |t| {
        t.contains("stopped.")
    })
    .await;
    b.wait_text("#instance-audit", "the stop in the audit table", |t| {
        t.lines()
            .any(|l| l.contains("stop") && l.contains("dashboard@"))
    })
    .await;
    assert!(b.same_document().await, "the instance page reloaded");
    let (_, v) = d.get("/api/v1/instances/shop").await;
    assert_eq!(v["status"], "stopped", "{v}");
    // The buttons followed the state live: only Start is left.
    b.wait_for("#action-start", "Start offered once stopped")
        .await;
    assert_eq!(b.js(offered).await, "start");

    // Start again; the log tail follows the new process.
    b.find("#action-start").await.click().await.unwrap();
    b.wait_for(
        "#instance-status[data-status=\"running\"]",
        "the instance to run again",
    )
    .await;
    b.wait_text("#log", "the restarted process in the log", |t| {
        t.matches("Server started").count() >= 2
    })
    .await;

    // A delete needs the name typed: a wrong one is refused.
    type_into(&b.find("#delete-confirm").await, "shoe").await;
    b.find("#action-delete").await.click().await.unwrap();
    b.wait_text("#action-result", "the delete refusal", |t| {
        t.contains("Type the instance's name")
    })
    .await;
    let (status, _) = d.get("/api/v1/instances/shop").await;
    assert_eq!(status, 200, "a refused delete deleted");

    // Restart from the page: a new process.
    let pid_before = d.get("/api/v1/instances/shop").await.1["pid"].clone();
    b.find("#action-restart").await.click().await.unwrap();
    b.wait_text("#action-result", "the restart to report", |t| {
        t.contains("restarted.")
    })
    .await;
    let pid_after = d.get("/api/v1/instances/shop").await.1["pid"].clone();
    assert_ne!(pid_before, pid_after, "the restart kept the process");

    // Upgrade an older instance from its page: the newest other version is
    // offered, and the version shown changes live when it is done.
    let (status, body) = d
        .post(
            "/api/v1/instances",
            json!({"name": "legacy", "version": PB_OLD}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    c.goto(&d.url("/ui/instances/legacy")).await.unwrap();
    b.wait_text("#instance-version", "the old version", |t| t == PB_OLD)
        .await;
    let offered = b
        .find("#upgrade-version")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(offered.as_deref(), Some(PB_NEW));
    b.mark_document().await;
    b.find("#action-upgrade").await.click().await.unwrap();
    b.wait_text("#action-result", "the upgrade to report", |t| {
        t.contains(&format!("now runs PocketBase {PB_NEW}"))
    })
    .await;
    b.wait_text("#instance-version", "the new version", |t| t == PB_NEW)
        .await;
    b.wait_for(
        "#instance-status[data-status=\"running\"]",
        "the upgraded instance to run",
    )
    .await;
    assert!(b.same_document().await, "the instance page reloaded");

    // Delete it with the name typed: the browser goes back to the fleet,
    // and the data is archived.
    type_into(&b.find("#delete-confirm").await, "legacy").await;
    b.find("#action-delete").await.click().await.unwrap();
    b.wait_for("#fleet", "the fleet page after the delete")
        .await;
    assert_eq!(b.path().await, "/ui/");
    let (status, _) = d.get("/api/v1/instances/legacy").await;
    assert_eq!(status, 404);
    let archived: Vec<String> = std::fs::read_dir(d.data_dir().join("archive"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        archived
            .iter()
            .any(|f| f.starts_with("legacy") && f.ends_with(".tar.gz")),
        "{archived:?}"
    );
    b.wait_text("#count-total", "the fleet to count one", |t| t == "1")
        .await;
    assert!(b.client.find(Locator::Id("row-legacy")).await.is_err());

    // Phone width: the fleet still fits, rows become cards.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&d.url("/ui/")).await.unwrap();
    b.wait_text("#row-shop td[data-label=\"Memory\"]", "the memory", |t| {
        t.ends_with("MiB")
    })
    .await;
    assert!(
        b.fits_width().await,
        "the fleet page scrolls sideways at 390 px"
    );
    let phone_shot = b.screenshot("fleet-phone.png").await;
    c.goto(&d.url("/ui/instances/shop")).await.unwrap();
    b.wait_for("#instance-status", "the instance page").await;
    assert!(
        b.fits_width().await,
        "the instance page scrolls sideways at 390 px"
    );
    b.screenshot("instance-phone.png").await;
    c.set_window_size(1280, 1000).await.unwrap();

    // The fleet's audit log lists what the session did.
    b.find("#nav-audit").await.click().await.unwrap();
    b.find("#audit-table").await;
    let audit = b.find("#audit-table").await.text().await.unwrap();
    for action in ["sign-in", "create", "stop", "start"] {
        assert!(audit.contains(action), "{action} missing from {audit}");
    }
    b.screenshot("audit.png").await;

    // Sign out: back at the sign-in page, and the dashboard is closed.
    b.find("#logout").await.click().await.unwrap();
    b.find("#login-form").await;
    assert_eq!(b.path().await, "/ui/login");
    c.goto(&d.url("/ui/instances/shop")).await.unwrap();
    b.find("#login-form").await;
    assert_eq!(b.path().await, "/ui/login");

    // The dark theme follows the system setting.
    let light_bg = b
        .js("return getComputedStyle(document.body).backgroundColor;")
        .await;
    let dark = Browser::start_dark().await;
    sign_in(&dark, &d).await;
    dark.wait_for("#row-shop", "the fleet in the dark theme")
        .await;
    let dark_bg = dark
        .js("return getComputedStyle(document.body).backgroundColor;")
        .await;
    assert_ne!(light_bg, dark_bg, "the dark theme looks like the light one");
    let dark_shot = dark.screenshot("fleet-dark.png").await;
    dark.client.clone().close().await.unwrap();

    for shot in [fleet_shot, instance_shot, phone_shot, dark_shot] {
        assert!(
            std::fs::metadata(&shot).unwrap().len() > 10_000,
            "{}",
            shot.display()
        );
    }
    c.clone().close().await.unwrap();
}
