//! Prometheus metrics: what `GET /metrics` answers, in the text exposition
//! format (`text/plain; version=0.0.4`).
//!
//! Two kinds of series, kept apart:
//!
//! - **recorded** as things happen, into the families a [`Metrics`] handle
//!   owns: each health probe's duration (`manager::health` observes it) and
//!   each request through the embedded proxy, by status class and with its
//!   time to the response head (`router::embedded` counts it, through a
//!   [`ProxyInstanceMetrics`] made once per route, so the hot path touches
//!   only atomics and never a label map);
//! - **read** at scrape time into a [`Snapshot`]: each instance's state and
//!   restarts (from the manager's records), its CPU time and resident memory
//!   and the daemon's own (from `/proc`, through [`crate::procstat`]).
//!
//! [`render`] turns both into the text Prometheus scrapes. It is a function
//! of its inputs, so a fabricated snapshot pins every name and label in a
//! snapshot test. Recorded series of an instance that no longer exists are
//! dropped at the next scrape ([`Metrics::forget_except`]), so a deleted
//! instance leaves no series behind.
//!
//! Every per-instance series carries the instance's name in the `name`
//! label (see [`NAME_LABEL`] for why not `instance`).
//!
//! This module uses nothing of ours but the pure model and `procstat`: the
//! manager and the router take a handle of it, never the other way round.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::model::Status;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The bucket bounds, in seconds, of both latency histograms: health probes
/// and proxied requests on loopback take a millisecond or two when all is
/// well, and the probe gives up after 3 s; the top buckets catch slow
/// requests up to a route's read timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The label that holds an instance's name on every per-instance series.
/// Not `instance`: Prometheus gives every scraped series an `instance`
/// label of its own (the target's address), and an exported one of that
/// name would be renamed `exported_instance` under the default
/// `honor_labels: false`. node_exporter's systemd units use `name` alike.
const NAME_LABEL: &str = "name";

/// The status classes the proxy counts by, in the `code` label.
const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// A metric that could not be built or encoded: a bug in this module (a
/// name or label the library refuses), never bad input.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// The recorded families, shared by every clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    health_check_duration: HistogramVec,
    proxy_requests: IntCounterVec,
    proxy_request_duration: HistogramVec,
    /// The instances that have series in the families above, so that those
    /// of deleted instances can be removed.
    recorded: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("instances", &self.recorded().len())
            .finish()
    }
}

impl Metrics {
    /// Empty families. Fails only if the library refuses one of the fixed
    /// names below (a bug here, caught by the unit tests).
    pub fn new() -> Result<Self, MetricsError> {
        let histogram = |name: &str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                &[NAME_LABEL],
            )
        };
        let inner = Inner {
            health_check_duration: histogram(
                "pockestrator_instance_health_check_duration_seconds",
                "Time a health probe of the instance (GET /api/health) took to answer.",
            )?,
            proxy_requests: IntCounterVec::new(
                Opts::new(
                    "pockestrator_proxy_requests_total",
                    "Requests for the instance through the embedded proxy, by status class of the answer.",
                ),
                &[NAME_LABEL, "code"],
            )?,
            proxy_request_duration: histogram(
                "pockestrator_proxy_request_duration_seconds",
                "Time from a request's arrival at the embedded proxy to its response head.",
            )?,
            recorded: Mutex::new(BTreeSet::new()),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Record one health probe of `instance` that took `took`.
    pub fn observe_health_check(&self, instance: &str, took: Duration) {
        if let Ok(h) = self
            .inner
            .health_check_duration
            .get_metric_with_label_values(&[instance])
        {
            self.remember(instance);
            h.observe(took.as_secs_f64());
        }
    }

    /// The proxy's counters for `instance`: made once per route, then used
    /// for every request on it.
    pub fn proxy_instance(&self, instance: &str) -> ProxyInstanceMetrics {
        self.remember(instance);
        let inner = &self.inner;
        let counters = CODE_CLASSES.map(|class| {
            inner
                .proxy_requests
                .get_metric_with_label_values(&[instance, class])
                .ok()
        });
        ProxyInstanceMetrics {
            by_class: Arc::new(counters),
            duration: inner
                .proxy_request_duration
                .get_metric_with_label_values(&[instance])
                .ok(),
        }
    }

    /// Drop the recorded series of every instance not in `live`.
    pub fn forget_except(&self, live: &BTreeSet<&str>) {
        let mut recorded = self
            .inner
            .recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        recorded.retain(|name| {
            if live.contains(name.as_str()) {
                return true;
            }
            // Err only means "no such series", which is what we want.
            let _ = self
                .inner
                .health_check_duration
                .remove_label_values(&[name]);
            let _ = self
                .inner
                .proxy_request_duration
                .remove_label_values(&[name]);
            for class in CODE_CLASSES {
                let _ = self
                    .inner
                    .proxy_requests
                    .remove_label_values(&[name.as_str(), class]);
            }
            false
        });
    }

    fn remember(&self, instance: &str) {
        let mut recorded = self
            .inner
            .recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !recorded.contains(instance) {
            recorded.insert(instance.to_string());
        }
    }

    fn recorded(&self) -> BTreeSet<String> {
        self.inner
            .recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One route's handles into the proxy's families. Cheap to clone; counting
/// a request is an atomic add and a histogram observation.
#[derive(Clone)]
pub struct ProxyInstanceMetrics {
    by_class: Arc<[Option<IntCounter>; 5]>,
    duration: Option<Histogram>,
}

impl std::fmt::Debug for ProxyInstanceMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyInstanceMetrics")
            .finish_non_exhaustive()
    }
}

impl ProxyInstanceMetrics {
    /// Count one answer with HTTP status `status`, sent `took` after the
    /// request arrived.
    pub fn record(&self, status: u16, took: Duration) {
        if let Some(counter) = code_class(status).and_then(|i| self.by_class[i].as_ref()) {
            counter.inc();
        }
        if let Some(duration) = &self.duration {
            duration.observe(took.as_secs_f64());
        }
    }
}

/// The index in [`CODE_CLASSES`] of a status code (`None` outside 100..=599).
fn code_class(status: u16) -> Option<usize> {
    match status {
        100..=599 => Some(usize::from(status / 100 - 1)),
        _ => None,
    }
}

/// CPU time and memory of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessSample {
    /// User + system CPU time since the process started, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_memory_bytes: u64,
}

/// One instance as a scrape sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSample {
    pub name: String,
    pub status: Status,
    pub restarts: u32,
    /// Its process, when it has one that `/proc` still shows.
    pub process: Option<ProcessSample>,
}

/// The daemon's own process.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DaemonSample {
    pub process: Option<ProcessSample>,
    /// File descriptors open now, and the soft limit on them.
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    /// Tasks alive in the daemon's async runtime.
    pub tasks: Option<u64>,
}

/// Everything a scrape reads rather than records.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    pub instances: Vec<InstanceSample>,
    pub daemon: DaemonSample,
}

/// The text exposition of `snapshot` and of what `metrics` recorded,
/// families sorted by name, series by label.
pub fn render(metrics: &Metrics, snapshot: &Snapshot) -> Result<String, MetricsError> {
    let registry = Registry::new();
    let inner = &metrics.inner;
    registry.register(Box::new(inner.health_check_duration.clone()))?;
    registry.register(Box::new(inner.proxy_requests.clone()))?;
    registry.register(Box::new(inner.proxy_request_duration.clone()))?;
    for collector in snapshot_collectors(snapshot)? {
        registry.register(collector)?;
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    // The encoder writes only UTF-8 (names, escaped label values, numbers).
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The families read at scrape time, filled from `snapshot`.
fn snapshot_collectors(snapshot: &Snapshot) -> Result<Vec<Box<dyn Collector>>, MetricsError> {
    let status = IntGaugeVec::new(
        Opts::new(
            "pockestrator_instance_status",
            "The instance's state: 1 for the state it is in, 0 for the others.",
        ),
        &[NAME_LABEL, "status"],
    )?;
    // Counters, as their `_total` says, though read rather than counted
    // here: each scrape builds them afresh at the value the record holds.
    let restarts = IntCounterVec::new(
        Opts::new(
            "pockestrator_instance_restarts_total",
            "Restarts of the instance after a crash or failed health checks.",
        ),
        &[NAME_LABEL],
    )?;
    let cpu = CounterVec::new(
        Opts::new(
            "pockestrator_instance_cpu_seconds_total",
            "User and system CPU time of the instance's current process.",
        ),
        &[NAME_LABEL],
    )?;
    let memory = IntGaugeVec::new(
        Opts::new(
            "pockestrator_instance_resident_memory_bytes",
            "Resident memory of the instance's process.",
        ),
        &[NAME_LABEL],
    )?;
    for instance in &snapshot.instances {
        let name = instance.name.as_str();
        for s in Status::ALL {
            status
                .get_metric_with_label_values(&[name, s.as_str()])?
                .set(i64::from(s == instance.status));
        }
        restarts
            .get_metric_with_label_values(&[name])?
            .inc_by(u64::from(instance.restarts));
        if let Some(p) = instance.process {
            cpu.get_metric_with_label_values(&[name])?
                .inc_by(p.cpu_seconds.max(0.0));
            memory
                .get_metric_with_label_values(&[name])?
                .set(saturating_i64(p.resident_memory_bytes));
        }
    }
    let mut collectors: Vec<Box<dyn Collector>> = vec![
        Box::new(status),
        Box::new(restarts),
        Box::new(cpu),
        Box::new(memory),
    ];
    // The daemon's own, under the names every Prometheus client library
    // uses for its process (`process_*`), so existing dashboards fit.
    let daemon = &snapshot.daemon;
    if let Some(p) = daemon.process {
        let cpu = prometheus::Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "User and system CPU time of the daemon.",
        ))?;
        cpu.inc_by(p.cpu_seconds.max(0.0));
        collectors.push(Box::new(cpu));
    }
    let mut single = |name: &str, help: &str, value: Option<f64>| -> Result<(), MetricsError> {
        if let Some(value) = value {
            let gauge = prometheus::Gauge::with_opts(Opts::new(name, help))?;
            gauge.set(value);
            collectors.push(Box::new(gauge));
        }
        Ok(())
    };
    single(
        "process_resident_memory_bytes",
        "Resident memory of the daemon.",
        daemon.process.map(|p| p.resident_memory_bytes as f64),
    )?;
    single(
        "process_open_fds",
        "File descriptors the daemon has open.",
        daemon.open_fds.map(|n| n as f64),
    )?;
    single(
        "process_max_fds",
        "The daemon's limit on open file descriptors.",
        daemon.max_fds.map(|n| n as f64),
    )?;
    single(
        "pockestrator_daemon_tasks",
        "Tasks alive in the daemon's async runtime (servers, loops, connections, streams).",
        daemon.tasks.map(|n| n as f64),
    )?;
    Ok(collectors)
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Reads the CPU time and memory of `pid` from `/proc`; `None` if it is
/// gone.
pub fn read_process(pid: u32) -> Option<ProcessSample> {
    let sample = crate::procstat::read_sample(pid)?;
    let ticks = rustix::param::clock_ticks_per_second();
    if ticks == 0 {
        return None;
    }
    Some(ProcessSample {
        cpu_seconds: sample.cpu_ticks as f64 / ticks as f64,
        resident_memory_bytes: sample.rss_bytes,
    })
}

/// Reads the daemon's own process from `/proc`: CPU, memory, open files
/// and their limit. `tasks` is left for the caller, which runs in the
/// async runtime.
pub fn read_daemon() -> DaemonSample {
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|entries| entries.count() as u64);
    let max_fds = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _hard)| soft);
    DaemonSample {
        process: read_process(std::process::id()),
        open_fds,
        max_fds,
        tasks: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn fabricated() -> (Metrics, Snapshot) {
        let metrics = Metrics::new().unwrap();
        metrics.observe_health_check("blog", Duration::from_micros(1_800));
        metrics.observe_health_check("blog", Duration::from_millis(40));
        let blog = metrics.proxy_instance("blog");
        blog.record(200, Duration::from_millis(3));
        blog.record(404, Duration::from_millis(1));
        blog.record(502, Duration::from_secs(2));
        // Outside every class: timed, not counted.
        blog.record(42, Duration::from_millis(1));
        let snapshot = Snapshot {
            instances: vec![
                InstanceSample {
                    name: "blog".to_string(),
                    status: Status::Running,
                    restarts: 2,
                    process: Some(ProcessSample {
                        cpu_seconds: 1.25,
                        resident_memory_bytes: 25 << 20,
                    }),
                },
                InstanceSample {
                    name: "shop".to_string(),
                    status: Status::Stopped,
                    restarts: 0,
                    process: None,
                },
            ],
            daemon: DaemonSample {
                process: Some(ProcessSample {
                    cpu_seconds: 0.5,
                    resident_memory_bytes: 12 << 20,
                }),
                open_fds: Some(17),
                max_fds: Some(65_536),
                tasks: Some(9),
            },
        };
        (metrics, snapshot)
    }

    #[test]
    fn renders_every_family_with_its_labels() {
        let (metrics, snapshot) = fabricated();
        let text = render(&metrics, &snapshot).unwrap();
        expect![[r##"
            # HELP pockestrator_daemon_tasks Tasks alive in the daemon's async runtime (servers, loops, connections, streams).
            # TYPE pockestrator_daemon_tasks gauge
            pockestrator_daemon_tasks 9
            # HELP pockestrator_instance_cpu_seconds_total User and system CPU time of the instance's current process.
            # TYPE pockestrator_instance_cpu_seconds_total counter
            pockestrator_instance_cpu_seconds_total{name="blog"} 1.25
            # HELP pockestrator_instance_health_check_duration_seconds Time a health probe of the instance (GET /api/health) took to answer.
            # TYPE pockestrator_instance_health_check_duration_seconds histogram
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="0.0005"} 0
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="0.001"} 0
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="0.0025"} 1
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="0.005"} 1
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="0.01"} 1
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="0.025"} 1
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="0.05"} 2
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="0.1"} 2
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="0.25"} 2
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="0.5"} 2
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="1"} 2
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="2.5"} 2
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="5"} 2
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="10"} 2
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="30"} 2
            pockestrator_instance_health_check_duration_seconds_bucket{name="blog",le="+Inf"} 2
            pockestrator_instance_health_check_duration_seconds_sum{name="blog"} 0.041800000000000004
            pockestrator_instance_health_check_duration_seconds_count{name="blog"} 2
            # HELP pockestrator_instance_resident_memory_bytes Resident memory of the instance's process.
            # TYPE pockestrator_instance_resident_memory_bytes gauge
            pockestrator_instance_resident_memory_bytes{name="blog"} 26214400
            # HELP pockestrator_instance_restarts_total Restarts of the instance after a crash or failed health checks.
            # TYPE pockestrator_instance_restarts_total counter
            pockestrator_instance_restarts_total{name="blog"} 2
            pockestrator_instance_restarts_total{name="shop"} 0
            # HELP pockestrator_instance_status The instance's state: 1 for the state it is in, 0 for the others.
            # TYPE pockestrator_instance_status gauge
            pockestrator_instance_status{name="blog",status="failed"} 0
            pockestrator_instance_status{name="blog",status="running"} 1
            pockestrator_instance_status{name="blog",status="sleeping"} 0
            pockestrator_instance_status{name="blog",status="starting"} 0
            pockestrator_instance_status{name="blog",status="stopped"} 0
            pockestrator_instance_status{name="blog",status="unhealthy"} 0
            pockestrator_instance_status{name="shop",status="failed"} 0
            pockestrator_instance_status{name="shop",status="running"} 0
            pockestrator_instance_status{name="shop",status="sleeping"} 0
            pockestrator_instance_status{name="shop",status="starting"} 0
            pockestrator_instance_status{name="shop",status="stopped"} 1
            pockestrator_instance_status{name="shop",status="unhealthy"} 0
            # HELP pockestrator_proxy_request_duration_seconds Time from a request's arrival at the embedded proxy to its response head.
            # TYPE pockestrator_proxy_request_duration_seconds histogram
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="0.0005"} 0
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="0.001"} 2
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="0.0025"} 2
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="0.005"} 3
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="0.01"} 3
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="0.025"} 3
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="0.05"} 3
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="0.1"} 3
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="0.25"} 3
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="0.5"} 3
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="1"} 3
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="2.5"} 4
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="5"} 4
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="10"} 4
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="30"} 4
            pockestrator_proxy_request_duration_seconds_bucket{name="blog",le="+Inf"} 4
            pockestrator_proxy_request_duration_seconds_sum{name="blog"} 2.005
            pockestrator_proxy_request_duration_seconds_count{name="blog"} 4
            # HELP pockestrator_proxy_requests_total Requests for the instance through the embedded proxy, by status class of the answer.
            # TYPE pockestrator_proxy_requests_total counter
            pockestrator_proxy_requests_total{code="1xx",name="blog"} 0
            pockestrator_proxy_requests_total{code="2xx",name="blog"} 1
            pockestrator_proxy_requests_total{code="3xx",name="blog"} 0
            pockestrator_proxy_requests_total{code="4xx",name="blog"} 1
            pockestrator_proxy_requests_total{code="5xx",name="blog"} 1
            # HELP process_cpu_seconds_total User and system CPU time of the daemon.
            # TYPE process_cpu_seconds_total counter
            process_cpu_seconds_total 0.5
            # HELP process_max_fds The daemon's limit on open file descriptors.
            # TYPE process_max_fds gauge
            process_max_fds 65536
            # HELP process_open_fds File descriptors the daemon has open.
            # TYPE process_open_fds gauge
            process_open_fds 17
            # HELP process_resident_memory_bytes Resident memory of the daemon.
            # TYPE process_resident_memory_bytes gauge
            process_resident_memory_bytes 12582912
        "##]]
        .assert_eq(&text);
    }

    #[test]
    fn a_forgotten_instance_leaves_no_series() {
        let (metrics, mut snapshot) = fabricated();
        snapshot.instances.retain(|i| i.name == "shop");
        metrics.forget_except(&BTreeSet::from(["shop"]));
        let text = render(&metrics, &snapshot).unwrap();
        assert!(!text.contains("\"blog\""), "{text}");
        assert!(text.contains("name=\"shop\""), "{text}");
        assert!(metrics.recorded().is_empty());
        // Recording again brings the instance back.
        metrics.observe_health_check("blog", Duration::from_millis(1));
        let text = render(&metrics, &snapshot).unwrap();
        assert!(
            text.contains(
                "pockestrator_instance_health_check_duration_seconds_count{name=\"blog\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn status_classes() {
        assert_eq!(code_class(100), Some(0));
        assert_eq!(code_class(101), Some(0));
        assert_eq!(code_class(200), Some(1));
        assert_eq!(code_class(399), Some(2));
        assert_eq!(code_class(404), Some(3));
        assert_eq!(code_class(599), Some(4));
        assert_eq!(code_class(99), None);
        assert_eq!(code_class(600), None);
        assert_eq!(code_class(0), None);
    }

    #[test]
    fn the_daemon_reads_itself() {
        let daemon = read_daemon();
        let process = daemon.process.expect("this process is in /proc");
        assert!(process.resident_memory_bytes > 0);
        assert!(process.cpu_seconds >= 0.0);
        assert!(daemon.open_fds.is_some_and(|n| n >= 3), "{daemon:?}");
        assert!(daemon
            .max_fds
            .is_some_and(|n| n >= daemon.open_fds.unwrap_or(0)));
        assert_eq!(read_process(u32::MAX), None);
    }
}
