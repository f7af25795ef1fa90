//! The embedded proxy against Caddy and against no proxy at all, on one real
//! PocketBase, in one run.
//!
//! Starts PocketBase 0.40.6 with a public `posts` collection of 50 records,
//! the embedded proxy ([`ProxyRouter::serve`], in this process, counting
//! its requests into the metrics as the daemon's does) and Caddy
//! (`reverse_proxy` with seed 000's body limit and read timeout), then runs
//! `wrk -t2 -c32 -d10s --latency` against
//! `/api/collections/posts/records?perPage=20` directly, through the
//! embedded proxy and through Caddy, and prints requests/s and latency
//! percentiles with the ratios the targets are stated in:
//! - the embedded proxy's throughput at least Caddy's;
//! - the embedded proxy adds at most 0.3 ms to the direct median latency.
//!
//! A second, unloaded round (`wrk -t1 -c1`) shows the latency each proxy
//! adds to one request when nothing queues.
//!
//! Run it with `scripts/bench-proxy` (or `cargo bench --bench proxy` once
//! `scripts/fetch-test-deps` has run and wrk is installed). Everything
//! listens on 127.0.0.1; every process it starts is killed when it ends,
//! fails or is killed itself. It never fails because of a timing.
//!
//! Environment: `BENCH_PROXY_SECONDS` (per measured run, default 10, at
//! most 120), `BENCH_PROXY_PIDFILE` (where to list the processes started,
//! for the script's clean-up).

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use pockestrator::metrics::Metrics;
use pockestrator::model::InstanceName;
use pockestrator::router::embedded::{ProxyConfig, ProxyRouter};
use pockestrator::router::{Route, Router, DEFAULT_MAX_BODY_BYTES, DEFAULT_READ_TIMEOUT};
use serde_json::{json, Value};

const HOST: &str = "bench.localhost";
const PATH: &str = "/api/collections/posts/records?perPage=20";
const RECORDS: usize = 50;
const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "bench-password-123";
const STARTUP_LIMIT: Duration = Duration::from_secs(30);
/// The targets.
const MAX_ADDED_MEDIAN_MS: f64 = 0.3;

fn main() -> ExitCode {
    // `cargo test --benches` runs this binary without `--bench`: nothing to
    // measure then.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("proxy bench: run it with scripts/bench-proxy or `cargo bench --bench proxy`");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxy bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // block_on runs on this (the main) thread, so the children's
    // parent-death signal follows this process's lifetime.
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A child process killed when dropped (and when this process dies).
struct Guard {
    name: &'static str,
    child: Child,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(name: &'static str, command: &mut Command) -> Result<Guard> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; nothing else
    // runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    record_pid(child.id());
    Ok(Guard { name, child })
}

fn record_pid(pid: u32) {
    if let Some(path) = std::env::var_os("BENCH_PROXY_PIDFILE") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{pid}");
        }
    }
}

fn deps_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/deps")
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn seconds() -> u64 {
    std::env::var("BENCH_PROXY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
        .clamp(1, 120)
}

async fn run() -> Result<()> {
    record_pid(std::process::id());
    let pocketbase = deps_dir().join("pocketbase-0.40.6");
    let caddy = deps_dir().join("caddy");
    for (what, path) in [("PocketBase 0.40.6", &pocketbase), ("Caddy", &caddy)] {
        if !path.exists() {
            bail!(
                "{what} is missing at {}: run scripts/fetch-test-deps",
                path.display()
            );
        }
    }
    let wrk_version = Command::new("wrk").arg("-v").output();
    if wrk_version.is_err() {
        bail!("wrk is not installed: apt-get install wrk (scripts/bench-proxy does)");
    }
    let dir = tempfile::Builder::new()
        .prefix("pockestrator-bench-proxy")
        .tempdir_in("/tmp")
        .context("cannot create a temporary directory")?;
    let http = reqwest::Client::builder().no_proxy().build()?;

    // PocketBase, with 50 public records.
    let pb_port = free_port()?;
    let data = dir.path().join("pb_data");
    let upsert = Command::new(&pocketbase)
        .args(["superuser", "upsert", EMAIL, PASSWORD])
        .arg(format!("--dir={}", data.display()))
        .output()
        .context("cannot run pocketbase superuser upsert")?;
    if !upsert.status.success() {
        bail!(
            "pocketbase superuser upsert failed: {}",
            String::from_utf8_lossy(&upsert.stderr)
        );
    }
    let _pocketbase = spawn(
        "pocketbase",
        Command::new(&pocketbase)
            .arg("serve")
            .arg(format!("--http=127.0.0.1:{pb_port}"))
            .arg(format!("--dir={}", data.display()))
            .arg(format!(
                "--hooksDir={}",
                dir.path().join("pb_hooks").display()
            ))
            .arg(format!(
                "--migrationsDir={}",
                dir.path().join("pb_migrations").display()
            ))
            .arg(format!(
                "--publicDir={}",
                dir.path().join("pb_public").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let direct = format!("http://127.0.0.1:{pb_port}");
    wait_ok(&http, &format!("{direct}/api/health"), "pocketbase").await?;
    seed_records(&http, &direct).await?;

    // The embedded proxy, in this process.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let embedded_port = listener.local_addr()?.port();
    // Counting requests, as the daemon's proxy does.
    let router = ProxyRouter::with_metrics(ProxyConfig::default(), Metrics::new()?);
    router
        .put(&Route {
            name: InstanceName::parse("bench")?,
            port: pb_port,
            hosts: vec![HOST.to_string()],
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            read_timeout: DEFAULT_READ_TIMEOUT,
            available: true,
            held: false,
            asleep: false,
        })
        .await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = router.clone();
    let served = tokio::spawn(async move {
        serving
            .serve(listener, async move {
                let _ = stopped.await;
            })
            .await
    });
    let embedded = format!("http://127.0.0.1:{embedded_port}");
    wait_ok(
        &http,
        &format!("{embedded}/api/health"),
        "the embedded proxy",
    )
    .await?;

    // Caddy, the same route.
    let caddy_port = free_port()?;
    let caddy_admin = free_port()?;
    let config = caddy_config(caddy_port, caddy_admin, pb_port, dir.path());
    let config_path = dir.path().join("caddy.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
    let caddy_version = Command::new(&caddy)
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let _caddy = spawn(
        "caddy",
        Command::new(&caddy)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("caddy-config"))
            .env("XDG_DATA_HOME", dir.path().join("caddy-data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("caddy.log"))?),
    )?;
    let through_caddy = format!("http://127.0.0.1:{caddy_port}");
    wait_ok(&http, &format!("{through_caddy}/api/health"), "caddy").await?;

    let secs = seconds();
    let targets = [
        ("direct", direct.as_str()),
        ("embedded", embedded.as_str()),
        ("caddy", through_caddy.as_str()),
    ];
    println!(
        "proxy bench: PocketBase 0.40.6, {} , {}; GET {PATH} ({RECORDS} records), Host: {HOST}",
        caddy_version
            .split_whitespace()
            .next()
            .map_or("caddy ?".to_string(), |v| format!("Caddy {v}")),
        String::from_utf8_lossy(&wrk_version.map(|o| o.stdout).unwrap_or_default())
            .lines()
            .next()
            .unwrap_or("wrk")
            .split(" [")
            .next()
            .unwrap_or("wrk"),
    );
    println!(
        "{} cores; wrk, PocketBase and the proxies share them",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let loaded = measure(&targets, "-t2", "-c32", secs).await?;
    println!();
    println!("loaded: wrk -t2 -c32 -d{secs}s --latency");
    print!("{}", table(&loaded));

    let unloaded = measure(&targets, "-t1", "-c1", secs.min(5)).await?;
    println!();
    println!(
        "unloaded: wrk -t1 -c1 -d{}s --latency (what one request pays, nothing queued)",
        secs.min(5)
    );
    print!("{}", table(&unloaded));

    println!();
    print!("{}", verdict(&loaded, &unloaded));

    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(15), served).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("proxy bench: the embedded proxy ended with {e}"),
        _ => eprintln!("proxy bench: the embedded proxy did not stop in time"),
    }
    Ok(())
}

async fn wait_ok(http: &reqwest::Client, url: &str, what: &str) -> Result<()> {
    let deadline = Instant::now() + STARTUP_LIMIT;
    loop {
        let answered = http
            .get(url)
            .header("Host", HOST)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if let Ok(r) = answered {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{what} did not answer {url} within {STARTUP_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn seed_records(http: &reqwest::Client, direct: &str) -> Result<()> {
    let auth: Value = http
        .post(format!(
            "{direct}/api/collections/_superusers/auth-with-password"
        ))
        .json(&json!({"identity": EMAIL, "password": PASSWORD}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = auth["token"]
        .as_str()
        .context("no token in the auth answer")?;
    http.post(format!("{direct}/api/collections"))
        .header("Authorization", token)
        .json(&json!({
            "name": "posts",
            "type": "base",
            "listRule": "",
            "viewRule": "",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "body", "type": "text"},
            ],
        }))
        .send()
        .await?
        .error_for_status()
        .context("cannot create the posts collection")?;
    for i in 0..RECORDS {
        http.post(format!("{direct}/api/collections/posts/records"))
            .header("Authorization", token)
            .json(&json!({
                "title": format!("Post number {i}"),
                "body": "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(4),
            }))
            .send()
            .await?
            .error_for_status()
            .context("cannot create a record")?;
    }
    Ok(())
}

/// Seed 000's site block as Caddy JSON, for one host.
fn caddy_config(port: u16, admin: u16, upstream: u16, dir: &Path) -> Value {
    json!({
        "admin": {"listen": format!("127.0.0.1:{admin}"), "config": {"persist": false}},
        "logging": {"logs": {"default": {"level": "ERROR"}}},
        "storage": {"module": "file_system", "root": dir.join("caddy-storage")},
        "apps": {"http": {"servers": {"bench": {
            "listen": [format!("127.0.0.1:{port}")],
            "automatic_https": {"disable": true},
            "routes": [{
                "match": [{"host": [HOST]}],
                "handle": [
                    {"handler": "request_body", "max_size": DEFAULT_MAX_BODY_BYTES},
                    {
                        "handler": "reverse_proxy",
                        "transport": {"protocol": "http", "read_timeout": "360s"},
                        "upstreams": [{"dial": format!("127.0.0.1:{upstream}")}],
                    },
                ],
                "terminal": true,
            }],
        }}}},
    })
}

/// One wrk run, read back.
#[derive(Debug, Clone)]
struct Run {
    name: &'static str,
    requests_per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    /// Non-2xx answers and socket errors: a run with any is not comparable.
    errors: u64,
}

async fn measure(
    targets: &[(&'static str, &str)],
    threads: &str,
    connections: &str,
    secs: u64,
) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for (name, base) in targets {
        let url = format!("{base}{PATH}");
        // Warm up: pooled connections, caches, the Go runtime's heap.
        wrk(name, &url, threads, connections, 2).await?;
        runs.push(wrk(name, &url, threads, connections, secs).await?);
    }
    Ok(runs)
}

async fn wrk(
    name: &'static str,
    url: &str,
    threads: &str,
    connections: &str,
    secs: u64,
) -> Result<Run> {
    let mut command = Command::new("wrk");
    command
        .args([threads, connections])
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .args(["--timeout", "10s"])
        .args(["-H", &format!("Host: {HOST}")])
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let guard = spawn("wrk", &mut command)?;
    let name_for_wait = guard.name;
    let output = tokio::task::spawn_blocking(move || {
        let mut guard = guard;
        let mut stdout = String::new();
        if let Some(mut out) = guard.child.stdout.take() {
            use std::io::Read as _;
            let _ = out.read_to_string(&mut stdout);
        }
        let status = guard.child.wait();
        (stdout, status)
    })
    .await?;
    let (stdout, status) = output;
    let status = status.with_context(|| format!("waiting for {name_for_wait}"))?;
    if !status.success() {
        bail!("wrk against {name} failed ({status}):\n{stdout}");
    }
    parse_wrk(name, &stdout)
        .with_context(|| format!("cannot read wrk's output for {name}:\n{stdout}"))
}

fn parse_wrk(name: &'static str, out: &str) -> Result<Run> {
    let mut run = Run {
        name,
        requests_per_sec: f64::NAN,
        p50_ms: f64::NAN,
        p90_ms: f64::NAN,
        p99_ms: f64::NAN,
        errors: 0,
    };
    for line in out.lines() {
        let line = line.trim();
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => run.requests_per_sec = v.parse()?,
            (Some("50%"), Some(v)) => run.p50_ms = millis(v)?,
            (Some("90%"), Some(v)) => run.p90_ms = millis(v)?,
            (Some("99%"), Some(v)) => run.p99_ms = millis(v)?,
            (Some("Non-2xx"), _) => {
                run.errors += line
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
            }
            (Some("Socket"), Some("errors:")) => {
                run.errors += line
                    .split(',')
                    .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if run.requests_per_sec.is_nan() || run.p50_ms.is_nan() {
        bail!("no Requests/sec or latency distribution");
    }
    Ok(run)
}

/// wrk's durations (`812.00us`, `1.23ms`, `2.01s`) in milliseconds.
fn millis(v: &str) -> Result<f64> {
    let (number, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        bail!("unknown duration {v}");
    };
    Ok(number.parse::<f64>()? * factor)
}

fn find<'a>(runs: &'a [Run], name: &str) -> Option<&'a Run> {
    runs.iter().find(|r| r.name == name)
}

fn table(runs: &[Run]) -> String {
    let caddy = find(runs, "caddy");
    let direct = find(runs, "direct");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:>10} {:>9} {:>9} {:>9} {:>12} {:>14} {:>7}",
        "target", "req/s", "p50 ms", "p90 ms", "p99 ms", "req/s÷caddy", "p50-direct ms", "errors"
    );
    for run in runs {
        let ratio = caddy.map_or(f64::NAN, |c| run.requests_per_sec / c.requests_per_sec);
        let added = direct.map_or(f64::NAN, |d| run.p50_ms - d.p50_ms);
        let _ = writeln!(
            out,
            "{:<9} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>12.2} {:>+14.3} {:>7}",
            run.name,
            run.requests_per_sec,
            run.p50_ms,
            run.p90_ms,
            run.p99_ms,
            ratio,
            added,
            run.errors
        );
    }
    out
}

fn verdict(loaded: &[Run], unloaded: &[Run]) -> String {
    let mut out = String::new();
    let (Some(direct), Some(embedded), Some(caddy)) = (
        find(loaded, "direct"),
        find(loaded, "embedded"),
        find(loaded, "caddy"),
    ) else {
        return "targets: a run is missing\n".to_string();
    };
    let ratio = embedded.requests_per_sec / caddy.requests_per_sec;
    let added = embedded.p50_ms - direct.p50_ms;
    let yes = |ok: bool| if ok { "met" } else { "NOT met" };
    let _ = writeln!(
        out,
        "target: embedded throughput ≥ caddy's: {} (embedded/caddy = {ratio:.2}×)",
        yes(ratio >= 1.0)
    );
    let _ = writeln!(
        out,
        "target: embedded adds ≤ {MAX_ADDED_MEDIAN_MS} ms to the direct median (loaded): {} ({added:+.3} ms)",
        yes(added <= MAX_ADDED_MEDIAN_MS)
    );
    if let (Some(d), Some(e), Some(c)) = (
        find(unloaded, "direct"),
        find(unloaded, "embedded"),
        find(unloaded, "caddy"),
    ) {
        let added = e.p50_ms - d.p50_ms;
        let _ = writeln!(
            out,
            "        unloaded: embedded adds {added:+.3} ms to the direct median ({}), caddy adds {:+.3} ms",
            yes(added <= MAX_ADDED_MEDIAN_MS),
            c.p50_ms - d.p50_ms
        );
    }
    if loaded.iter().chain(unloaded).any(|r| r.errors > 0) {
        let _ = writeln!(
            out,
            "warning: some runs had errors (non-2xx or socket errors); see the tables"
        );
    }
    out
}
