//! The fleet dashboard at 1,000 instances, in one run: the page and its
//! live updates as pure functions, then the same page served by a real
//! daemon.
//!
//! Part A, in this process, no I/O: 1,000 [`FleetRow`]s (`app-0000`…, mixed
//! states, every one with process statistics) through [`views`], the median
//! of many calls each:
//! - the fleet page's first render ([`views::fleet_page`] with the default
//!   row window, the first [`PAGE_ROWS`] rows), against the same page
//!   rendering the whole fleet (what a page without the window would send);
//! - one live tick in which every row's statistics changed (the worst case,
//!   every [`STATS_INTERVAL`] while a page is open): [`views::fleet_update`]
//!   windowed against whole-fleet, time and bytes sent per tick;
//! - a tick in which one instance changed state (its row and the counts go
//!   out), and a tick in which nothing changed (nothing goes out, but the
//!   rows are still rendered to find that out);
//! - [`ViewParams::window`] alone, which every one of them starts with.
//!
//! The same rows again for 10,000 instances, as a scaling check.
//!
//! Part B, a real `pockestrator serve` (the release build of this package)
//! on a fresh data dir whose state database was filled before it started
//! with 1,000 stopped instances of PocketBase 0.40.6 (so nothing runs and
//! only the dashboard is measured): it signs in as a browser does, then
//! times, one request at a time, `GET /ui/` (the fleet page) against
//! `GET /api/v1/instances` (the API's list of the same fleet), and the
//! fleet page's stream `GET /ui/fleet/stream` up to its first event and to
//! its whole first update. To place those figures it repeats, in this
//! process on the daemon's database, what the page's handler does (read
//! every record, make the rows, pick the window, render), and it reads the
//! daemon's CPU time over a few seconds with nobody looking and with one
//! fleet page open. Then the same with 10 instances, as the reference.
//!
//! Run it with `scripts/bench-dashboard` (or `cargo bench --bench
//! dashboard` once `scripts/fetch-test-deps` has run). Everything listens
//! on 127.0.0.1; the daemon is stopped when the bench ends, fails or is
//! killed itself. It prints plain-text tables and never fails because of a
//! timing.
//!
//! Environment: `BENCH_DASHBOARD_REQUESTS` (requests per measured row of
//! part B, default 30, between 5 and 1,000), `BENCH_DASHBOARD_PIDFILE`
//! (where to list the processes started, for the script's clean-up),
//! `BENCH_DASHBOARD_WORKDIR` (where the data dirs go, default `/tmp`; keep
//! it short, the daemon's unix socket lives there).

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Utc};
use datastar::prelude::MergeFragments;
use pockestrator::config::Layout;
use pockestrator::dashboard::fleet::{Counts, FleetRow, Sent, SortKey, ViewParams, PAGE_ROWS};
use pockestrator::dashboard::stats::INTERVAL as STATS_INTERVAL;
use pockestrator::dashboard::views::{self, FleetPage};
use pockestrator::model::{DesiredState, Status};
use pockestrator::procstat::ProcStats;
use pockestrator::store::{InstanceRecord, Phase, Store};
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};

const PB_VERSION: &str = "0.40.6";
/// The fleet sizes, each with the one it is compared with.
const FLEET: usize = 1_000;
const FLEET_LARGE: usize = 10_000;
const FLEET_SMALL: usize = 10;
/// Each in-process case runs `ROUNDS` rounds of `ROUND_BUDGET` (at least
/// `MIN_CALLS` calls each) and keeps the fastest round's median, so that a
/// moment of contention on a shared machine does not decide the figure.
const ROUNDS: usize = 3;
const ROUND_BUDGET: Duration = Duration::from_millis(200);
const MIN_CALLS: usize = 3;
const MAX_CALLS: usize = 2_000;
/// How many times the stream is opened, per fleet.
const STREAM_OPENS: usize = 10;
const STARTUP_LIMIT: Duration = Duration::from_secs(90);
const CSRF: &str = "5f0c6a4e1b2d3c4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f";

fn main() -> ExitCode {
    // `cargo test --benches` runs this binary without `--bench`: nothing to
    // measure then.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "dashboard bench: run it with scripts/bench-dashboard or `cargo bench --bench dashboard`"
        );
        return ExitCode::SUCCESS;
    }
    record_pid(std::process::id());
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dashboard bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let pocketbase = deps_dir().join(format!("pocketbase-{PB_VERSION}"));
    let mirror = mirror_dir();
    if !pocketbase.exists() || !mirror.join(format!("v{PB_VERSION}/checksums.txt")).exists() {
        bail!(
            "PocketBase {PB_VERSION} or its release mirror is missing ({}, {}): run scripts/fetch-test-deps",
            pocketbase.display(),
            mirror.display()
        );
    }
    let daemon_bin = PathBuf::from(env!("CARGO_BIN_EXE_pockestrator"));
    println!(
        "dashboard bench: {} cores; the daemon and this bench share them",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Part A: no I/O, before anything else runs.
    let in_process: Vec<(usize, Vec<Pure>)> = [FLEET, FLEET_LARGE]
        .into_iter()
        .map(|n| {
            eprintln!("dashboard bench: the views at {} instances…", count(n));
            (n, pure_cases(n))
        })
        .collect();
    println!();
    print!("{}", pure_table(&in_process));

    // Part B.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // block_on runs on this (the main) thread, so the daemon's parent-death
    // signal follows this process's lifetime.
    let served = runtime.block_on(async {
        let mut served = Vec::new();
        for n in [FLEET, FLEET_SMALL] {
            served.push((n, served_cases(n, &daemon_bin, &pocketbase, &mirror).await?));
        }
        anyhow::Ok(served)
    })?;
    println!();
    print!("{}", served_table(&served, &daemon_bin));
    println!();
    print!("{}", summary(&in_process, &served));
    Ok(())
}

// ----- part A: the views, in this process -----------------------------------

/// One measured case: the median time of a call and what it produced.
#[derive(Debug, Clone)]
struct Pure {
    case: &'static str,
    view: &'static str,
    /// Median time per call.
    micros: f64,
    calls: usize,
    /// Fragments (SSE events) per call; 0 for a whole page.
    events: usize,
    /// The page's HTML, or the ticks' SSE events as sent.
    bytes: usize,
}

/// Fixed "now" for every render, so that only what the case changes changes.
fn bench_now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now())
}

/// `n` rows as the fleet page gets them, at statistics sample `tick`: every
/// row's uptime, CPU and memory read differently from one tick to the next.
fn fleet_rows(n: usize, tick: u64) -> Vec<FleetRow> {
    let now = bench_now();
    (0..n)
        .map(|i| {
            let status = match i % 20 {
                0 => Status::Failed,
                1 => Status::Unhealthy,
                2 => Status::Starting,
                3 | 4 => Status::Stopped,
                _ => Status::Running,
            };
            let name = format!("app-{i:04}");
            let i = i as u64;
            FleetRow {
                url: Some(format!("http://{name}.localhost:8080/")),
                domain: (i % 10 == 0).then(|| format!("{name}.example.com")),
                version: if i % 3 == 0 { "0.28.4" } else { PB_VERSION }.to_string(),
                port: 20_000 + i as u16,
                status,
                restarts: (i % 7) as u32,
                last_check: Some(now - chrono::Duration::seconds(1 + (i % 5) as i64)),
                last_error: (status == Status::Failed)
                    .then(|| "crashed 5 times in 60 s: exit status 1".to_string()),
                // Under an hour, so the uptime shows its seconds.
                stats: Some(ProcStats {
                    uptime: Duration::from_secs(60 + i % 3_000 + 2 * tick),
                    cpu_percent: Some(((i + 37 * tick) % 100) as f64 + 0.25),
                    rss_bytes: (20 + i % 50) * (1 << 20) + tick * 200 * 1024,
                }),
                host: None,
                name,
            }
        })
        .collect()
}

/// The first `limit` rows by name, or the whole fleet (`limit` = its size;
/// built directly because [`ViewParams::new`] caps the limit at `MAX_ROWS`).
fn view(limit: usize) -> ViewParams {
    ViewParams {
        filter: String::new(),
        sort: SortKey::Name,
        limit,
    }
}

fn sse_bytes(fragments: &[String]) -> usize {
    fragments
        .iter()
        .map(|f| {
            MergeFragments::new(f.clone())
                .into_event()
                .to_string()
                .len()
        })
        .sum()
}

/// Calls `f` in [`ROUNDS`] rounds of [`ROUND_BUDGET`] (after a warm-up);
/// returns the fastest round's median time per call in µs, the median of
/// what `f` reports (events, bytes) and the number of calls timed.
fn measure(mut f: impl FnMut() -> (usize, usize)) -> (f64, usize, usize, usize) {
    for _ in 0..2 {
        black_box(f());
    }
    let mut best = f64::INFINITY;
    let mut events = Vec::new();
    let mut bytes = Vec::new();
    let mut calls = 0;
    for _ in 0..ROUNDS {
        let mut times = Vec::new();
        let started = Instant::now();
        while times.len() < MIN_CALLS
            || (started.elapsed() < ROUND_BUDGET && times.len() < MAX_CALLS)
        {
            let t = Instant::now();
            let (e, b) = black_box(f());
            times.push(t.elapsed().as_secs_f64() * 1e6);
            events.push(e);
            bytes.push(b);
        }
        calls += times.len();
        best = best.min(median_f64(&mut times));
    }
    (
        best,
        median_usize(&mut events),
        median_usize(&mut bytes),
        calls,
    )
}

fn pure_cases(n: usize) -> Vec<Pure> {
    let now = bench_now();
    let a = fleet_rows(n, 0);
    let b = fleet_rows(n, 1);
    // One instance stops; it is in the first window (sorted by name).
    let mut stopped = a.clone();
    stopped[5].status = Status::Stopped;
    stopped[5].stats = None;
    let versions: Vec<String> = ["0.40.6", "0.28.4", "0.22.27"].map(String::from).to_vec();
    let mut out = Vec::new();
    for (label, params) in [("window", ViewParams::default()), ("whole fleet", view(n))] {
        let (micros, _, bytes, calls) = measure(|| {
            let html = render_fleet_page(&a, &params, &versions, now);
            (0, html.len())
        });
        out.push(Pure {
            case: "first page render",
            view: label,
            micros,
            calls,
            events: 0,
            bytes,
        });
    }
    for (label, params) in [("window", ViewParams::default()), ("whole fleet", view(n))] {
        let (micros, _, _, calls) = measure(|| (params.window(&a).rows.len(), 0));
        out.push(Pure {
            case: "ViewParams::window alone",
            view: label,
            micros,
            calls,
            events: 0,
            bytes: 0,
        });
    }
    let ticks: [(&str, &[FleetRow]); 3] = [
        ("tick, every row's stats changed", &b),
        ("tick, one instance stopped", &stopped),
        ("tick, nothing changed", &a),
    ];
    for (case, other) in ticks {
        for (label, params) in [("window", ViewParams::default()), ("whole fleet", view(n))] {
            // Primed with `a`; then `a` and `other` take turns, so every
            // call sends the case's change (or, for `a` itself, nothing).
            let mut sent = Sent::default();
            views::fleet_update(&a, &params, CSRF, &mut sent, now);
            let mut turn = 0usize;
            let (micros, events, bytes, calls) = measure(|| {
                turn += 1;
                let rows = if turn % 2 == 1 { other } else { &a[..] };
                let fragments = views::fleet_update(rows, &params, CSRF, &mut sent, now);
                (fragments.len(), sse_bytes(&fragments))
            });
            out.push(Pure {
                case,
                view: label,
                micros,
                calls,
                events,
                bytes,
            });
        }
    }
    out
}

fn pure_table(sizes: &[(usize, Vec<Pure>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "part A: the fleet views in this process (no I/O); median µs per call (the fastest of {ROUNDS} rounds)"
    );
    let _ = writeln!(
        out,
        "        window = the first {PAGE_ROWS} rows by name (what a page shows); whole fleet = every row"
    );
    let _ = writeln!(
        out,
        "        bytes: the page's HTML; for a tick, its SSE events as the stream frames them (framing included in the time)"
    );
    let _ = write!(out, "{:<34} {:<12}", "case", "view");
    for (n, _) in sizes {
        let _ = write!(
            out,
            " | {:>12} {:>6} {:>10}",
            format!("{} µs", count(*n)),
            "events",
            "bytes"
        );
    }
    let _ = writeln!(out);
    let Some((_, first)) = sizes.first() else {
        return out;
    };
    for (i, row) in first.iter().enumerate() {
        let _ = write!(out, "{:<34} {:<12}", row.case, row.view);
        for (_, cases) in sizes {
            match cases.get(i) {
                Some(c) => {
                    let events = if c.case.starts_with("tick") {
                        c.events.to_string()
                    } else {
                        "-".to_string()
                    };
                    let _ = write!(out, " | {:>12.1} {:>6} {:>10}", c.micros, events, c.bytes);
                }
                None => {
                    let _ = write!(out, " | {:>12} {:>6} {:>10}", "-", "-", "-");
                }
            }
        }
        let _ = writeln!(out);
    }
    let calls: Vec<String> = sizes
        .iter()
        .map(|(n, cases)| {
            let fewest = cases.iter().map(|c| c.calls).min().unwrap_or(0);
            let most = cases.iter().map(|c| c.calls).max().unwrap_or(0);
            format!("{}: {fewest}–{most} calls per case", count(*n))
        })
        .collect();
    let _ = writeln!(out, "        ({})", calls.join("; "));
    out
}

// ----- part B: a real daemon -------------------------------------------------

/// A daemon process on its own data dir, stopped when dropped (and when
/// this process dies), with any process still naming its data dir.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    token: String,
    /// From spawn to "pockestrator is ready".
    startup: Duration,
}

impl Daemon {
    fn log_path(dir: &Path) -> PathBuf {
        dir.join("daemon.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(Self::log_path(self.dir.path())).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Nothing should run here (every instance is stopped), but anything
        // that does and names this data dir was started for the bench.
        kill_naming(self.dir.path());
    }
}

/// SIGKILL every process whose command line names `dir`.
fn kill_naming(dir: &Path) {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline)
            .split('\0')
            .any(|arg| arg.contains(&needle))
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn record_pid(pid: u32) {
    if let Some(path) = std::env::var_os("BENCH_DASHBOARD_PIDFILE") {
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

fn mirror_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/mirror")
}

fn requests() -> usize {
    std::env::var("BENCH_DASHBOARD_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
        .clamp(5, 1_000)
}

/// A data dir with `n` stopped, fully created instances, as the daemon
/// would leave them: phase ready, desired and observed state stopped, no
/// process; on start it has nothing to roll back, adopt or start.
fn seed_data_dir(n: usize, pocketbase: &Path) -> Result<tempfile::TempDir> {
    // Short: the daemon's unix socket lives in it.
    let base = std::env::var_os("BENCH_DASHBOARD_WORKDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let dir = tempfile::Builder::new()
        .prefix("pk-bench-dash")
        .tempdir_in(&base)
        .with_context(|| format!("cannot create a temporary directory in {}", base.display()))?;
    let layout = Layout::new(dir.path());
    pockestrator::daemon::prepare_data_dir(&layout, pockestrator::daemon::DataDirAccess::Private)?;
    let store = Store::open(&layout.state_db())?;
    let now = Utc::now();
    for i in 0..n {
        let name = format!("app-{i:04}");
        let instance_dir = layout.instance(&name);
        for sub in ["pb_data", "pb_hooks", "pb_migrations", "pb_public", "logs"] {
            std::fs::create_dir_all(instance_dir.join(sub))
                .with_context(|| format!("cannot create {}", instance_dir.display()))?;
        }
        store.insert_instance(&InstanceRecord {
            name: pockestrator::model::InstanceName::parse(&name)?,
            port: 20_000 + i as u16,
            version: semver::Version::parse(PB_VERSION)?,
            binary_path: pocketbase.to_path_buf(),
            dir: instance_dir.clone(),
            domain: None,
            desired: DesiredState::Stopped,
            status: Status::Stopped,
            phase: Phase::Ready,
            pid: None,
            restarts: 0,
            superuser_email: None,
            compat_user: None,
            systemd_config_hash: None,
            caddy_config_hash: None,
            created_by: "bench".to_string(),
            created_at: now,
            updated_at: now,
            last_health_check: None,
            last_error: None,
            max_body_bytes: None,
            limits: Default::default(),
            release: None,
            release_binary: false,
            idle_timeout: None,
            wake_schedule: None,
        })?;
    }
    drop(store);
    Ok(dir)
}

/// What the fleet page's handler does with the daemon's state, repeated in
/// this process on a second connection to the same database: every fleet
/// page, stream update and API list starts by reading all the records
/// (`Store::list_instances`); the page then turns them into rows, picks
/// its window and renders. Returns both, each as [`Served`] (`bytes`: the
/// records read, then the page's HTML).
fn page_work_in_process(data_dir: &Path) -> Result<(Served, Served)> {
    let store = Store::open(&Layout::new(data_dir).state_db())?;
    let versions = vec![PB_VERSION.to_string()];
    let mut list_times = Vec::new();
    let mut page_times = Vec::new();
    let (mut listed, mut html_bytes) = (0, 0);
    for round in 0..requests() + 3 {
        let started = Instant::now();
        let records = black_box(store.list_instances()?);
        let listed_at = started.elapsed();
        let rows: Vec<FleetRow> = records
            .iter()
            .filter(|r| r.phase == Phase::Ready)
            .map(|r| {
                let url = format!("http://{}.localhost:8080", r.name);
                FleetRow::new(r, Some(url), None)
            })
            .collect();
        let html = render_fleet_page(&rows, &ViewParams::default(), &versions, Utc::now());
        let done = started.elapsed();
        if round >= 3 {
            list_times.push(listed_at.as_secs_f64() * 1e3);
            page_times.push(done.as_secs_f64() * 1e3);
        }
        listed = records.len();
        html_bytes = html.len();
    }
    Ok((
        Served::of(list_times, listed),
        Served::of(page_times, html_bytes),
    ))
}

async fn start_daemon(bin: &Path, dir: tempfile::TempDir, mirror: &Path) -> Result<Daemon> {
    let log_path = Daemon::log_path(dir.path());
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut command = Command::new(bin);
    command
        .arg("--data-dir")
        .arg(dir.path())
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"])
        .arg("--release-source")
        .arg(mirror)
        .env("POCKESTRATOR_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; nothing else
    // runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let started = Instant::now();
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    record_pid(child.id());
    let mut daemon = Daemon {
        child,
        dir,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        token: String::new(),
        startup: Duration::ZERO,
    };
    loop {
        let log = daemon.log();
        if daemon.addr.port() == 0 {
            if let Some(addr) = log
                .lines()
                .find(|l| l.contains("API on http://"))
                .and_then(|l| l.split("http://").nth(1)?.split_whitespace().next())
                .and_then(|a| a.parse().ok())
            {
                daemon.addr = addr;
            }
        }
        if daemon.addr.port() != 0 && log.contains("pockestrator is ready") {
            break;
        }
        if let Ok(Some(status)) = daemon.child.try_wait() {
            bail!("the daemon exited ({status}) while starting:\n{log}");
        }
        if started.elapsed() > STARTUP_LIMIT {
            bail!("the daemon was not ready within {STARTUP_LIMIT:?}:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.startup = started.elapsed();
    daemon.token = std::fs::read_to_string(daemon.dir.path().join("token"))
        .context("cannot read the daemon's token")?
        .trim()
        .to_string();
    Ok(daemon)
}

/// Latencies of one kind of request, and the size of its answer.
#[derive(Debug, Clone, Default)]
struct Served {
    p50_ms: f64,
    p95_ms: f64,
    bytes: usize,
}

impl Served {
    fn of(mut times_ms: Vec<f64>, bytes: usize) -> Self {
        times_ms.sort_by(f64::total_cmp);
        Served {
            p50_ms: percentile(&times_ms, 50.0),
            p95_ms: percentile(&times_ms, 95.0),
            bytes,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct ServedFleet {
    startup: Duration,
    /// `Store::list_instances` on the daemon's database, in this process;
    /// `bytes` holds the records read.
    store_list: Served,
    /// That, plus rows, window and render of the page, in this process.
    page_work: Served,
    page: Served,
    page_rows: usize,
    api: Served,
    api_instances: usize,
    first_event: Served,
    first_update: Served,
    first_update_events: usize,
    stream_rows: usize,
    /// The daemon's CPU time, in ms per second: with no page open, and
    /// with one fleet page's stream open and nothing changing.
    cpu_idle: Option<f64>,
    cpu_one_page: Option<f64>,
    /// What that open stream received meanwhile.
    idle_stream_bytes: usize,
}

async fn served_cases(
    n: usize,
    bin: &Path,
    pocketbase: &Path,
    mirror: &Path,
) -> Result<ServedFleet> {
    eprintln!(
        "dashboard bench: a daemon with {} stopped instances…",
        count(n)
    );
    let dir = seed_data_dir(n, pocketbase)?;
    let daemon = start_daemon(bin, dir, mirror).await?;
    let result = measure_daemon(&daemon, n).await;
    let result = result.map(|mut r| {
        r.startup = daemon.startup;
        r
    });
    let result = result.with_context(|| {
        let log = daemon.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        format!(
            "against the daemon with {n} instances; the end of its log:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    });
    drop(daemon);
    result
}

async fn measure_daemon(d: &Daemon, n: usize) -> Result<ServedFleet> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let rounds = requests();

    // Sign in as the browser does.
    let resp = http
        .post(d.url("/ui/login"))
        .form(&[("token", d.token.as_str())])
        .send()
        .await
        .context("POST /ui/login")?;
    if resp.status().as_u16() != 303
        || resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) != Some("/ui/")
    {
        bail!("POST /ui/login answered {}, not 303 to /ui/", resp.status());
    }
    let cookie = resp
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie after sign-in")?
        .to_string();

    let page = || http.get(d.url("/ui/")).header(COOKIE, &cookie);
    let api = || {
        http.get(d.url("/api/v1/instances"))
            .header(AUTHORIZATION, format!("Bearer {}", d.token))
    };

    // Warm up both (connections, SQLite's page cache, the release list).
    for _ in 0..3 {
        timed_get(page()).await.context("GET /ui/")?;
        timed_get(api()).await.context("GET /api/v1/instances")?;
    }
    let mut page_times = Vec::new();
    let mut api_times = Vec::new();
    let mut page_body = String::new();
    let mut api_body = String::new();
    // Interleaved, so both see the same machine.
    for _ in 0..rounds {
        let (t, body) = timed_get(page()).await.context("GET /ui/")?;
        page_times.push(t);
        page_body = body;
        let (t, body) = timed_get(api()).await.context("GET /api/v1/instances")?;
        api_times.push(t);
        api_body = body;
    }
    let page_rows = page_body.matches("<tr id=\"row-").count();
    let api_instances = serde_json::from_str::<serde_json::Value>(&api_body)
        .ok()
        .and_then(|v| v["instances"].as_array().map(Vec::len))
        .context("GET /api/v1/instances did not answer a list of instances")?;
    if api_instances != n {
        bail!("the API lists {api_instances} instances, not the {n} seeded");
    }

    // The fleet page's stream, opened as the page opens it.
    let signals = serde_json::json!({
        "page": "bench",
        "filter": "",
        "sort": "name",
        "limit": PAGE_ROWS,
    })
    .to_string();
    let stream = || {
        http.get(d.url("/ui/fleet/stream"))
            .query(&[("datastar", signals.as_str())])
            .header(COOKIE, &cookie)
            .header("datastar-request", "true")
    };
    let mut first_times = Vec::new();
    let mut update_times = Vec::new();
    let mut first_bytes = 0;
    let mut update_bytes = 0;
    let mut update_events = 0;
    let mut stream_rows = 0;
    let (_, warm) = first_update(stream())
        .await
        .context("GET /ui/fleet/stream")?;
    drop(warm);
    for _ in 0..STREAM_OPENS {
        let (opened, open) = first_update(stream())
            .await
            .context("GET /ui/fleet/stream")?;
        drop(open);
        first_times.push(opened.first_ms);
        update_times.push(opened.update_ms);
        first_bytes = opened.first_bytes;
        update_bytes = opened.update_bytes;
        update_events = opened.events;
        stream_rows = opened.rows;
    }

    // What the daemon spends with nobody looking, and with one fleet page
    // open on which nothing changes (every instance is stopped).
    let pid = d.child.id();
    let cpu_idle = cpu_ms_per_second(pid, IDLE_WINDOW, async {
        tokio::time::sleep(IDLE_WINDOW).await;
    })
    .await;
    let (_, mut open) = first_update(stream())
        .await
        .context("GET /ui/fleet/stream")?;
    let mut idle_stream_bytes = 0;
    let cpu_one_page = cpu_ms_per_second(pid, IDLE_WINDOW, async {
        let deadline = tokio::time::Instant::now() + IDLE_WINDOW;
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, open.chunk()).await {
            idle_stream_bytes += chunk.len();
        }
    })
    .await;
    drop(open);

    let (store_list, page_work) = page_work_in_process(d.dir.path())?;

    Ok(ServedFleet {
        startup: Duration::ZERO,
        store_list,
        page_work,
        page: Served::of(page_times, page_body.len()),
        page_rows,
        api: Served::of(api_times, api_body.len()),
        api_instances,
        first_event: Served::of(first_times, first_bytes),
        first_update: Served::of(update_times, update_bytes),
        first_update_events: update_events,
        stream_rows,
        cpu_idle,
        cpu_one_page,
        idle_stream_bytes,
    })
}

/// How long the daemon's CPU time is watched, with and without an open page.
const IDLE_WINDOW: Duration = Duration::from_secs(8);

/// The CPU time `pid` used while `during` ran (about `window`), in ms per
/// second; `None` if `/proc` could not be read.
async fn cpu_ms_per_second(
    pid: u32,
    window: Duration,
    during: impl std::future::Future<Output = ()>,
) -> Option<f64> {
    let before = cpu_ns(pid)?;
    let started = Instant::now();
    during.await;
    let elapsed = started.elapsed().max(window / 2);
    let after = cpu_ns(pid)?;
    Some(after.saturating_sub(before) as f64 / 1e6 / elapsed.as_secs_f64())
}

/// CPU time used by `pid` so far, in ns: the sum of its threads' run times
/// from `/proc/<pid>/task/*/schedstat` (nanoseconds), or, where the kernel
/// keeps no schedstat, `/proc/<pid>/stat` (clock ticks, usually 10 ms).
fn cpu_ns(pid: u32) -> Option<u64> {
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    let mut read_any = false;
    for thread in threads.flatten() {
        let Ok(text) = std::fs::read_to_string(thread.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            total += ns;
            read_any = true;
        }
    }
    if read_any {
        return Some(total);
    }
    let sample = pockestrator::procstat::read_sample(pid)?;
    let ticks_per_second = rustix::param::clock_ticks_per_second().max(1);
    Some(sample.cpu_ticks * (1_000_000_000 / ticks_per_second))
}

/// One request to its last byte: milliseconds and the body.
async fn timed_get(req: reqwest::RequestBuilder) -> Result<(f64, String)> {
    let started = Instant::now();
    let resp = req.timeout(Duration::from_secs(30)).send().await?;
    let status = resp.status();
    let body = resp.text().await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if !status.is_success() {
        bail!(
            "answered {status}: {}",
            body.chars().take(300).collect::<String>()
        );
    }
    Ok((ms, body))
}

/// What a fleet stream sent first.
struct Opened {
    first_ms: f64,
    first_bytes: usize,
    update_ms: f64,
    update_bytes: usize,
    events: usize,
    rows: usize,
}

/// Events a fresh fleet stream sends at once: the counts, the table and
/// the line under it ([`views::fleet_update`] with nothing sent yet).
const FIRST_UPDATE_EVENTS: usize = 3;

/// Opens a stream and reads it until its first update is complete (or
/// nothing more comes for a while); dropping the response closes it.
async fn first_update(req: reqwest::RequestBuilder) -> Result<(Opened, reqwest::Response)> {
    let started = Instant::now();
    let mut resp = req.send().await?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        bail!(
            "answered {status}: {}",
            body.chars().take(300).collect::<String>()
        );
    }
    let mut buf: Vec<u8> = Vec::new();
    // Where the line being read starts, and whether the event being read
    // has a field yet (a blank line then ends it).
    let mut line_start = 0;
    let mut in_event = false;
    let mut ends: Vec<(f64, usize)> = Vec::new();
    let quiet = Duration::from_secs(5);
    while ends.len() < FIRST_UPDATE_EVENTS {
        let chunk = match tokio::time::timeout(quiet, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => break,
        };
        let at = started.elapsed().as_secs_f64() * 1e3;
        let from = buf.len();
        buf.extend_from_slice(&chunk);
        for i in from..buf.len() {
            if buf[i] != b'\n' {
                continue;
            }
            let line = &buf[line_start..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                if in_event {
                    ends.push((at, i + 1));
                    in_event = false;
                }
            } else {
                in_event = true;
            }
            line_start = i + 1;
        }
    }
    let Some(&(first_ms, first_bytes)) = ends.first() else {
        bail!("no event within {quiet:?}");
    };
    let &(update_ms, update_bytes) = ends.last().unwrap_or(&(first_ms, first_bytes));
    let text = String::from_utf8_lossy(&buf[..update_bytes]);
    let opened = Opened {
        first_ms,
        first_bytes,
        update_ms,
        update_bytes,
        events: ends.len(),
        rows: text.matches("<tr id=\"row-").count(),
    };
    Ok((opened, resp))
}

fn served_table(fleets: &[(usize, ServedFleet)], bin: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "part B: a real daemon ({}), every instance stopped; one request at a time on a kept-alive connection",
        bin.display()
    );
    let _ = writeln!(
        out,
        "        p50/p95 of {} requests each ({STREAM_OPENS} stream opens); time to the last byte; bytes: the body",
        requests()
    );
    let _ = write!(out, "{:<50}", "request");
    for (n, _) in fleets {
        let title = format!("{} instances", count(*n));
        let _ = write!(out, " | {:<32}", title);
    }
    let _ = writeln!(out);
    let _ = write!(out, "{:<50}", "");
    for _ in fleets {
        let _ = write!(out, " | {:>9} {:>9} {:>12}", "p50 ms", "p95 ms", "bytes");
    }
    let _ = writeln!(out);
    type Pick = fn(&ServedFleet) -> &Served;
    let rows: [(String, Pick); 6] = [
        ("GET /ui/ (fleet page, signed in)".into(), |f| &f.page),
        ("GET /api/v1/instances (the API's list)".into(), |f| &f.api),
        ("GET /ui/fleet/stream: first event".into(), |f| {
            &f.first_event
        }),
        (
            format!("GET /ui/fleet/stream: first update ({FIRST_UPDATE_EVENTS} events)"),
            |f| &f.first_update,
        ),
        (
            "in this process: Store::list_instances (records)".into(),
            |f| &f.store_list,
        ),
        (
            "in this process: that + rows + window + render".into(),
            |f| &f.page_work,
        ),
    ];
    for (label, pick) in rows {
        let _ = write!(out, "{label:<50}");
        for (_, fleet) in fleets {
            let s = pick(fleet);
            let _ = write!(
                out,
                " | {:>9.2} {:>9.2} {:>12}",
                s.p50_ms, s.p95_ms, s.bytes
            );
        }
        let _ = writeln!(out);
    }
    let _ = write!(out, "{:<50}", "daemon start to ready");
    for (_, fleet) in fleets {
        let _ = write!(out, " | {:>9.2} s{:>21}", fleet.startup.as_secs_f64(), "");
    }
    let _ = writeln!(out);
    let cpu = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.1}"));
    for (label, pick) in [
        (
            "daemon CPU ms/s, nobody looking",
            (|f| f.cpu_idle) as fn(&ServedFleet) -> Option<f64>,
        ),
        ("daemon CPU ms/s, one fleet page open", |f| f.cpu_one_page),
    ] {
        let _ = write!(out, "{label:<50}");
        for (_, fleet) in fleets {
            let _ = write!(out, " | {:>9}{:>23}", cpu(pick(fleet)), "");
        }
        let _ = writeln!(out);
    }
    for (n, fleet) in fleets {
        let _ = writeln!(
            out,
            "        {} instances: the page shows {} rows, its stream's first update {} rows in {} events; the API lists {}",
            count(*n),
            fleet.page_rows,
            fleet.stream_rows,
            fleet.first_update_events,
            fleet.api_instances
        );
    }
    let _ = writeln!(
        out,
        "        CPU time of all the daemon's threads over {} s each; the open page's stream received {} bytes meanwhile",
        IDLE_WINDOW.as_secs(),
        fleets
            .iter()
            .map(|(n, f)| format!("{} at {}", f.idle_stream_bytes, count(*n)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}

fn summary(pure: &[(usize, Vec<Pure>)], served: &[(usize, ServedFleet)]) -> String {
    let mut out = String::new();
    let find = |n: usize, case: &str, view: &str| {
        pure.iter()
            .find(|(m, _)| *m == n)
            .and_then(|(_, cases)| cases.iter().find(|c| c.case == case && c.view == view))
    };
    let _ = writeln!(
        out,
        "ratios (whole fleet ÷ window, at {} instances):",
        count(FLEET)
    );
    for case in [
        "first page render",
        "tick, every row's stats changed",
        "tick, one instance stopped",
        "tick, nothing changed",
    ] {
        if let (Some(w), Some(f)) = (
            find(FLEET, case, "window"),
            find(FLEET, case, "whole fleet"),
        ) {
            let _ = writeln!(
                out,
                "  {case:<34} time {:>6.1}×   bytes {:>6.1}×",
                f.micros / w.micros,
                f.bytes as f64 / w.bytes.max(1) as f64
            );
        }
    }
    if let Some(w) = find(FLEET, "tick, every row's stats changed", "window") {
        let secs = STATS_INTERVAL.as_secs_f64();
        let _ = writeln!(
            out,
            "  one open page at {} instances, stats every {secs:.0} s, every row changing: {:.1} KiB/s sent, {:.2} ms of rendering per tick",
            count(FLEET),
            w.bytes as f64 / 1024.0 / secs,
            w.micros / 1e3
        );
    }
    if let Some((_, big)) = served.iter().find(|(n, _)| *n == FLEET) {
        if let (Some(idle), Some(open)) = (big.cpu_idle, big.cpu_one_page) {
            let _ = writeln!(
                out,
                "  the daemon at {} instances (all stopped, nothing sent): one open page adds {:.1} ms of CPU per second",
                count(FLEET),
                open - idle
            );
        }
    }
    if let (Some((_, big)), Some((_, small))) = (
        served.iter().find(|(n, _)| *n == FLEET),
        served.iter().find(|(n, _)| *n == FLEET_SMALL),
    ) {
        let _ = writeln!(
            out,
            "  served, {} vs {} instances (p50): GET /ui/ {:.1}×, GET /api/v1/instances {:.1}×, stream's first update {:.1}×",
            count(FLEET),
            count(FLEET_SMALL),
            big.page.p50_ms / small.page.p50_ms,
            big.api.p50_ms / small.api.p50_ms,
            big.first_update.p50_ms / small.first_update.p50_ms
        );
        let _ = writeln!(
            out,
            "  at {} instances GET /ui/ takes {:.2}× the API's list (p50), and sends {:.2}× its bytes",
            count(FLEET),
            big.page.p50_ms / big.api.p50_ms,
            big.page.bytes as f64 / big.api.bytes.max(1) as f64
        );
    }
    out
}

// ----- small helpers -----------------------------------------------------------

fn median_f64(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn median_usize(v: &mut [usize]) -> usize {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// 1000 → "1,000".
fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The fleet page as its handler renders it: the window, the counts, the
/// page.
fn render_fleet_page(
    rows: &[FleetRow],
    params: &ViewParams,
    versions: &[String],
    now: DateTime<Utc>,
) -> String {
    let shown = params.window(rows);
    let counts = Counts::of(rows);
    views::fleet_page(&FleetPage {
        csrf: CSRF,
        page_id: "0123456789abcdef",
        counts: &counts,
        shown: &shown,
        versions,
        latest: Some(PB_VERSION),
        versions_error: None,
        now,
        clustered: false,
        missing: &[],
    })
    .into_string()
}
