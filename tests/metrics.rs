//! Prometheus metrics end to end: a real daemon with real PocketBase
//! instances and traffic through the embedded proxy; `GET /metrics` behind
//! the token and on `--metrics-listen` without it; the text linted by the
//! real `promtool check metrics`; and a real Prometheus (Debian's
//! `prometheus`, from `scripts/fetch-test-deps`) scraping the daemon and
//! answering PromQL queries for an instance's series.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::daemon::Daemon;
use crate::support::{free_port, skip, wait_until, PB_NEW};

/// A GET through the embedded proxy for one instance's host; the status.
async fn via_proxy(d: &Daemon, host: &str, path: &str) -> u16 {
    let proxy = d.proxy.expect("the embedded proxy is the default router");
    d.http
        .get(format!("http://{proxy}{path}"))
        .header(reqwest::header::HOST, host)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// `GET /metrics` on the API listener with the token: status, content type
/// and body.
async fn scrape_with_token(d: &Daemon) -> (u16, String, String) {
    let resp = d
        .http
        .get(d.url("/metrics"))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, resp.text().await.unwrap())
}

/// The value of the series written exactly as `series` (name and labels
/// in the order the text has them).
fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Create an instance on a free port and wait until it runs.
async fn create_running(d: &Daemon, name: &str) {
    let port = free_port().to_string();
    d.cli_json(&["create", name, "--version", PB_NEW, "--port", &port]);
    d.wait_status(name, "running").await;
}

/// Requests through the proxy for `blog`: two answered 200 by PocketBase,
/// one 404 of PocketBase's own.
async fn send_traffic(d: &Daemon) {
    assert_eq!(via_proxy(d, "blog.localhost", "/api/health").await, 200);
    assert_eq!(via_proxy(d, "blog.localhost", "/api/health").await, 200);
    assert_eq!(
        via_proxy(d, "blog.localhost", "/api/no-such-endpoint").await,
        404
    );
}

/// The address the daemon printed for its metrics listener.
fn metrics_listen_addr(d: &Daemon) -> SocketAddr {
    let log = d.log();
    log.lines()
        .find_map(|l| {
            l.split("metrics on http://")
                .nth(1)?
                .split('/')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no metrics listener in the daemon's log:\n{log}"))
}

/// Wait until a scrape shows a health probe of `name`, and return it.
async fn scrape_after_health_round(d: &Daemon, name: &str) -> String {
    let series =
        format!("pockestrator_instance_health_check_duration_seconds_count{{name=\"{name}\"}}");
    wait_until(
        Duration::from_secs(15),
        &format!("a health probe of {name} in /metrics"),
        || async {
            let (status, _, text) = scrape_with_token(d).await;
            (status == 200 && value_of(&text, &series).is_some_and(|n| n >= 1.0)).then_some(text)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_each_instance_behind_the_token() {
    let d = Daemon::start().await;
    create_running(&d, "blog").await;
    create_running(&d, "shop").await;
    send_traffic(&d).await;
    let text = scrape_after_health_round(&d, "blog").await;

    let (status, content_type, _) = scrape_with_token(&d).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    for (series, want) in [
        (
            r#"pockestrator_instance_status{name="blog",status="running"}"#,
            1.0,
        ),
        (
            r#"pockestrator_instance_status{name="blog",status="stopped"}"#,
            0.0,
        ),
        (r#"pockestrator_instance_restarts_total{name="blog"}"#, 0.0),
        (
            r#"pockestrator_proxy_requests_total{code="2xx",name="blog"}"#,
            2.0,
        ),
        (
            r#"pockestrator_proxy_requests_total{code="4xx",name="blog"}"#,
            1.0,
        ),
        (
            r#"pockestrator_proxy_requests_total{code="5xx",name="blog"}"#,
            0.0,
        ),
        (
            r#"pockestrator_proxy_request_duration_seconds_count{name="blog"}"#,
            3.0,
        ),
        (
            r#"pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="+Inf"}"#,
            3.0,
        ),
    ] {
        assert_eq!(value_of(&text, series), Some(want), "{series}\n{text}");
    }
    // Read from /proc: the instance's real process and the daemon's own.
    let positive = |series: &str| {
        let v = value_of(&text, series);
        assert!(v.is_some_and(|v| v > 0.0), "{series} = {v:?}\n{text}");
    };
    positive(r#"pockestrator_instance_resident_memory_bytes{name="blog"}"#);
    positive(r#"pockestrator_instance_resident_memory_bytes{name="shop"}"#);
    positive("process_resident_memory_bytes");
    positive("process_open_fds");
    positive("pockestrator_daemon_tasks");
    assert!(
        value_of(
            &text,
            r#"pockestrator_instance_cpu_seconds_total{name="blog"}"#
        )
        .is_some_and(|v| v >= 0.0),
        "{text}"
    );
    // No traffic for shop, so no proxy latency yet, but its counters exist.
    assert_eq!(
        value_of(
            &text,
            r#"pockestrator_proxy_requests_total{code="2xx",name="shop"}"#
        ),
        Some(0.0),
        "{text}"
    );

    // Without the token, or with a wrong one: refused.
    let resp = d.http.get(d.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = d
        .http
        .get(d.url("/metrics"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // A deleted instance leaves no series behind.
    d.cli_json(&["delete", "shop"]);
    let (_, _, text) = scrape_with_token(&d).await;
    assert!(!text.contains(r#"name="shop""#), "{text}");
    assert!(text.contains(r#"name="blog""#), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_listen_serves_only_metrics_without_a_token() {
    let d = Daemon::start_with(&["--metrics-listen", "127.0.0.1:0"], &[]).await;
    let addr = metrics_listen_addr(&d);
    let resp = d
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("# TYPE process_open_fds gauge"), "{text}");
    // Nothing else answers there, with or without the token.
    for path in ["/api/v1/instances", "/ui/", "/"] {
        let resp = d
            .http
            .get(format!("http://{addr}{path}"))
            .bearer_auth(&d.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
}

/// A Prometheus server, killed when dropped (a failed assertion included).
struct Prometheus {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Prometheus {
    /// Start Prometheus on a free loopback port, scraping `target` every
    /// second, its storage in a temp dir.
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: pockestrator\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        Prometheus { child, dir, addr }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The samples of an instant query, as (labels, value).
    async fn query(&self, http: &reqwest::Client, promql: &str) -> Vec<(Value, f64)> {
        let Ok(resp) = http
            .get(format!("http://{}/api/v1/query", self.addr))
            .query(&[("query", promql)])
            .timeout(Duration::from_secs(5))
            .send()
            .await
        else {
            return Vec::new();
        };
        let Ok(body) = resp.json::<Value>().await else {
            return Vec::new();
        };
        body["data"]["result"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .filter_map(|r| {
                        let value = r["value"][1].as_str()?.parse().ok()?;
                        Some((r["metric"].clone(), value))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_lints_and_prometheus_scrapes_and_queries() {
    const TEST: &str = "metrics::promtool_lints_and_prometheus_scrapes_and_queries";
    for program in ["promtool", "prometheus"] {
        if !on_path(program) {
            skip(
                TEST,
                &format!("{program} is not installed (scripts/fetch-test-deps installs Debian's prometheus as root)"),
            );
            return;
        }
    }
    let d = Daemon::start_with(&["--metrics-listen", "127.0.0.1:0"], &[]).await;
    create_running(&d, "blog").await;
    send_traffic(&d).await;
    let text = scrape_after_health_round(&d, "blog").await;

    // promtool reads the text on stdin: exit 0 and no lint problem printed.
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = lint.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let linted = lint.wait_with_output().unwrap();
    let problems = format!(
        "{}{}",
        String::from_utf8_lossy(&linted.stdout),
        String::from_utf8_lossy(&linted.stderr)
    );
    assert!(
        linted.status.success() && problems.trim().is_empty(),
        "promtool check metrics: {}\n{problems}\n--- metrics ---\n{text}",
        linted.status
    );

    // A real Prometheus scrapes the token-free listener and answers PromQL.
    let prometheus = Prometheus::start(metrics_listen_addr(&d));
    let restarts = wait_until(
        Duration::from_secs(20),
        "Prometheus to answer for blog's restarts",
        || async {
            let samples = prometheus
                .query(
                    &d.http,
                    r#"pockestrator_instance_restarts_total{name="blog"}"#,
                )
                .await;
            (!samples.is_empty()).then_some(samples)
        },
    )
    .await;
    assert_eq!(restarts.len(), 1, "{restarts:?}\n{}", prometheus.log());
    let (labels, value) = &restarts[0];
    assert_eq!(value, &0.0, "{labels}");
    assert_eq!(labels["name"], "blog", "{labels}");
    assert_eq!(labels["job"], "pockestrator", "{labels}");
    assert_eq!(
        labels["instance"],
        metrics_listen_addr(&d).to_string(),
        "Prometheus's own target label stays as it is: {labels}"
    );
    let not_found = prometheus
        .query(
            &d.http,
            r#"sum by (name) (pockestrator_proxy_requests_total{name="blog",code="4xx"})"#,
        )
        .await;
    assert_eq!(not_found.len(), 1, "{not_found:?}\n{}", prometheus.log());
    assert_eq!(not_found[0].1, 1.0, "{not_found:?}");
    let running = prometheus
        .query(
            &d.http,
            r#"pockestrator_instance_status{name="blog",status="running"} == 1"#,
        )
        .await;
    assert_eq!(running.len(), 1, "{running:?}\n{}", prometheus.log());
}
