//! The fleet view's model, kept pure: rows built from instance records and
//! process statistics, the filter and sort the operator chose, the counts by
//! state, and the diff that decides what a live stream sends next (only
//! the rows that changed while the order stays the same; the whole table
//! when it does not).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::model::Status;
use crate::procstat::ProcStats;
use crate::store::InstanceRecord;

/// One instance as the fleet table shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRow {
    pub name: String,
    pub status: Status,
    pub version: String,
    pub port: u16,
    /// Its public URL (the first the router gives it).
    pub url: Option<String>,
    pub domain: Option<String>,
    pub restarts: u32,
    pub last_check: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// From `/proc`, while its process runs (on this host only).
    pub stats: Option<ProcStats>,
    /// The host it runs on, in a cluster.
    pub host: Option<String>,
}

impl FleetRow {
    pub fn new(rec: &InstanceRecord, url: Option<String>, stats: Option<ProcStats>) -> Self {
        Self {
            name: rec.name.to_string(),
            status: rec.status,
            version: rec.version.to_string(),
            port: rec.port,
            url,
            domain: rec.domain.as_ref().map(|d| d.to_string()),
            restarts: rec.restarts,
            last_check: rec.last_health_check,
            last_error: rec.last_error.clone(),
            stats: if rec.pid.is_some() { stats } else { None },
            host: None,
        }
    }

    /// An instance of another host, as its API listed it.
    pub fn of_host(dto: &crate::api::dto::InstanceDto, host: &str) -> Self {
        Self {
            name: dto.name.clone(),
            status: dto.status,
            version: dto.version.clone(),
            port: dto.port,
            url: dto.urls.first().cloned(),
            domain: dto.domain.clone(),
            restarts: dto.restarts,
            last_check: dto.last_health_check,
            last_error: dto.last_error.clone(),
            stats: None,
            host: Some(host.to_string()),
        }
    }
}

/// How many instances are in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub running: usize,
    pub starting: usize,
    pub unhealthy: usize,
    pub failed: usize,
    pub stopped: usize,
    pub sleeping: usize,
}

impl Counts {
    pub fn of(rows: &[FleetRow]) -> Self {
        let mut c = Counts {
            total: rows.len(),
            ..Counts::default()
        };
        for r in rows {
            match r.status {
                Status::Running => c.running += 1,
                Status::Starting => c.starting += 1,
                Status::Unhealthy => c.unhealthy += 1,
                Status::Failed => c.failed += 1,
                Status::Stopped => c.stopped += 1,
                Status::Sleeping => c.sleeping += 1,
            }
        }
        c
    }
}

/// The sort orders the table offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortKey {
    #[default]
    Name,
    Status,
    Version,
    Port,
    Uptime,
    Cpu,
    Memory,
    Restarts,
}

impl SortKey {
    /// Every key with its label, in the order the picker lists them.
    pub const ALL: [(SortKey, &'static str, &'static str); 8] = [
        (SortKey::Name, "name", "Name"),
        (SortKey::Status, "status", "Status (problems first)"),
        (SortKey::Version, "version", "Version"),
        (SortKey::Port, "port", "Port"),
        (SortKey::Uptime, "uptime", "Uptime (longest first)"),
        (SortKey::Cpu, "cpu", "CPU (busiest first)"),
        (SortKey::Memory, "memory", "Memory (largest first)"),
        (SortKey::Restarts, "restarts", "Restarts (most first)"),
    ];

    /// Lenient parse for query/signal values: unknown keys sort by name.
    pub fn parse(raw: &str) -> SortKey {
        Self::ALL
            .iter()
            .find(|(_, key, _)| *key == raw)
            .map(|(k, _, _)| *k)
            .unwrap_or_default()
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _, _)| *k == self)
            .map(|(_, s, _)| *s)
            .unwrap_or("name")
    }
}

/// How many rows a fleet page shows at first, and how many more each
/// "show more" adds. A page never renders the whole of a large fleet: the
/// live updates of a page stay the same size at 10 or 10,000 instances,
/// and the filter finds the rest.
pub const PAGE_ROWS: usize = 100;

/// The most rows a page may ask for.
pub const MAX_ROWS: usize = 5_000;

/// What the operator asked the table to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewParams {
    /// Case-insensitive text matched against name, status, version, port
    /// and domain; `status:failed`-style prefixes are not needed: the
    /// status is just another field to match.
    pub filter: String,
    pub sort: SortKey,
    /// At most this many rows are shown.
    pub limit: usize,
}

impl Default for ViewParams {
    fn default() -> Self {
        Self {
            filter: String::new(),
            sort: SortKey::default(),
            limit: PAGE_ROWS,
        }
    }
}

/// The rows a page shows, and how many matched in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    pub rows: Vec<FleetRow>,
    pub matching: usize,
    pub total: usize,
}

impl ViewParams {
    /// From the page's signals; an over-long filter is cut, not refused,
    /// and the limit is kept between one page and [`MAX_ROWS`].
    pub fn new(filter: &str, sort: &str, limit: usize) -> Self {
        Self {
            filter: filter
                .trim()
                .chars()
                .take(200)
                .collect::<String>()
                .to_lowercase(),
            sort: SortKey::parse(sort),
            limit: limit.clamp(PAGE_ROWS, MAX_ROWS),
        }
    }

    /// The first [`Self::limit`] rows of [`Self::apply`], with the counts
    /// for the "showing N of M" line.
    pub fn window(&self, rows: &[FleetRow]) -> Shown {
        let mut shown = self.apply(rows);
        let matching = shown.len();
        shown.truncate(self.limit);
        Shown {
            rows: shown.into_iter().cloned().collect(),
            matching,
            total: rows.len(),
        }
    }

    fn matches(&self, row: &FleetRow) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        self.filter.split_whitespace().all(|word| {
            row.name.contains(word)
                || row.status.as_str() == word
                || row.version.contains(word)
                || row.port.to_string().contains(word)
                || row.host.as_deref() == Some(word)
                || row
                    .domain
                    .as_deref()
                    .is_some_and(|d| d.to_lowercase().contains(word))
        })
    }

    /// The rows to show, in order. The name breaks every tie, so the order
    /// is stable from one update to the next.
    pub fn apply<'a>(&self, rows: &'a [FleetRow]) -> Vec<&'a FleetRow> {
        let mut out: Vec<&FleetRow> = rows.iter().filter(|r| self.matches(r)).collect();
        let uptime = |r: &FleetRow| r.stats.as_ref().map(|s| s.uptime).unwrap_or_default();
        let cpu = |r: &FleetRow| r.stats.as_ref().and_then(|s| s.cpu_percent).unwrap_or(-1.0);
        let mem = |r: &FleetRow| r.stats.as_ref().map(|s| s.rss_bytes).unwrap_or(0);
        out.sort_by(|a, b| {
            let primary = match self.sort {
                SortKey::Name => std::cmp::Ordering::Equal,
                SortKey::Status => status_rank(a.status).cmp(&status_rank(b.status)),
                SortKey::Version => version_key(&b.version).cmp(&version_key(&a.version)),
                SortKey::Port => a.port.cmp(&b.port),
                SortKey::Uptime => uptime(b).cmp(&uptime(a)),
                SortKey::Cpu => cpu(b).total_cmp(&cpu(a)),
                SortKey::Memory => mem(b).cmp(&mem(a)),
                SortKey::Restarts => b.restarts.cmp(&a.restarts),
            };
            primary.then_with(|| a.name.cmp(&b.name))
        });
        out
    }
}

/// Problems first: failed, unhealthy, starting, running, stopped,
/// sleeping.
fn status_rank(s: Status) -> u8 {
    match s {
        Status::Failed => 0,
        Status::Unhealthy => 1,
        Status::Starting => 2,
        Status::Running => 3,
        Status::Stopped => 4,
        Status::Sleeping => 5,
    }
}

fn version_key(v: &str) -> Option<semver::Version> {
    semver::Version::parse(v).ok()
}

/// What a stream last sent to one page: the order of the rows and each
/// row's HTML, so the next update sends only what changed.
#[derive(Debug, Default)]
pub struct Sent {
    order: Vec<String>,
    rows: HashMap<String, String>,
    counts: Option<Counts>,
    footer: Option<String>,
}

/// What to send next.
#[derive(Debug, PartialEq, Eq)]
pub enum Patch {
    /// Nothing changed.
    None,
    /// The order or membership changed: the whole table body.
    Table,
    /// Only these rows changed (in display order).
    Rows(Vec<String>),
}

impl Sent {
    /// Compare the rows about to be shown (with their rendered HTML) with
    /// what was sent, remember the new state, and say what to send.
    pub fn update(&mut self, shown: &[(String, String)]) -> Patch {
        let order: Vec<String> = shown.iter().map(|(n, _)| n.clone()).collect();
        let patch = if order != self.order {
            Patch::Table
        } else {
            let changed: Vec<String> = shown
                .iter()
                .filter(|(name, html)| self.rows.get(name) != Some(html))
                .map(|(name, _)| name.clone())
                .collect();
            if changed.is_empty() {
                Patch::None
            } else {
                Patch::Rows(changed)
            }
        };
        self.order = order;
        self.rows = shown.iter().cloned().collect();
        patch
    }

    /// Whether the counts changed since last sent (and remember them).
    pub fn counts_changed(&mut self, counts: &Counts) -> bool {
        if self.counts.as_ref() == Some(counts) {
            return false;
        }
        self.counts = Some(counts.clone());
        true
    }

    /// Whether the rendered "showing N of M" line changed since last sent
    /// (and remember it).
    pub fn footer_changed(&mut self, html: &str) -> bool {
        if self.footer.as_deref() == Some(html) {
            return false;
        }
        self.footer = Some(html.to_string());
        true
    }

    /// Forget everything: the next update sends the whole table.
    pub fn reset(&mut self) {
        *self = Sent::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn row(name: &str, status: Status, version: &str, port: u16) -> FleetRow {
        FleetRow {
            name: name.into(),
            status,
            version: version.into(),
            port,
            url: None,
            domain: None,
            restarts: 0,
            last_check: None,
            last_error: None,
            stats: None,
            host: None,
        }
    }

    fn names(rows: &[FleetRow]) -> Vec<&str> {
        rows.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn filter_and_sort() {
        let mut rows = vec![
            row("shop", Status::Running, "0.40.6", 8091),
            row("blog", Status::Failed, "0.28.4", 8092),
            row("api", Status::Stopped, "0.40.6", 8093),
            row("crm", Status::Unhealthy, "0.22.27", 8094),
        ];
        rows[0].stats = Some(ProcStats {
            uptime: Duration::from_secs(50),
            cpu_percent: Some(3.0),
            rss_bytes: 30 << 20,
        });
        rows[3].stats = Some(ProcStats {
            uptime: Duration::from_secs(500),
            cpu_percent: Some(1.0),
            rss_bytes: 10 << 20,
        });
        rows[1].restarts = 7;
        rows[2].domain = Some("API.example.com".into());
        let by = |f: &str, s: &str| {
            ViewParams::new(f, s, 0)
                .apply(&rows)
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(by("", "name"), "api blog crm shop");
        assert_eq!(by("", "status"), "blog crm shop api");
        assert_eq!(by("", "version"), "api shop blog crm");
        assert_eq!(by("", "port"), "shop blog api crm");
        assert_eq!(by("", "uptime"), "crm shop api blog");
        assert_eq!(by("", "cpu"), "shop crm api blog");
        assert_eq!(by("", "memory"), "shop crm api blog");
        assert_eq!(by("", "restarts"), "blog api crm shop");
        assert_eq!(by("", "nonsense"), "api blog crm shop");
        assert_eq!(by("failed", "name"), "blog");
        assert_eq!(by("0.40", "name"), "api shop");
        assert_eq!(by("  SHOP ", "name"), "shop");
        assert_eq!(by("example.com", "name"), "api");
        assert_eq!(by("0.40 running", "name"), "shop");
        assert_eq!(by("8092", "name"), "blog");
        assert_eq!(by("nothing-matches", "name"), "");
        assert_eq!(
            ViewParams::new(&"x".repeat(10_000), "name", 0).filter.len(),
            200
        );
    }

    #[test]
    fn counts_by_state() {
        let rows = vec![
            row("a", Status::Running, "1", 1),
            row("b", Status::Running, "1", 2),
            row("c", Status::Failed, "1", 3),
            row("d", Status::Stopped, "1", 4),
        ];
        assert_eq!(
            Counts::of(&rows),
            Counts {
                total: 4,
                running: 2,
                starting: 0,
                unhealthy: 0,
                failed: 1,
                stopped: 1,
                sleeping: 0,
            }
        );
    }

    #[test]
    fn diff_sends_only_what_changed() {
        let mut sent = Sent::default();
        let s = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(sent.update(&s(&[("a", "1"), ("b", "1")])), Patch::Table);
        assert_eq!(sent.update(&s(&[("a", "1"), ("b", "1")])), Patch::None);
        assert_eq!(
            sent.update(&s(&[("a", "1"), ("b", "2")])),
            Patch::Rows(vec!["b".into()])
        );
        // A new row, a removed row or another order: the whole table.
        assert_eq!(
            sent.update(&s(&[("a", "1"), ("b", "2"), ("c", "1")])),
            Patch::Table
        );
        assert_eq!(
            sent.update(&s(&[("b", "2"), ("a", "1"), ("c", "1")])),
            Patch::Table
        );
        assert_eq!(sent.update(&s(&[("b", "2"), ("c", "1")])), Patch::Table);
        sent.reset();
        assert_eq!(sent.update(&s(&[("b", "2"), ("c", "1")])), Patch::Table);
        let counts = Counts::default();
        assert!(sent.counts_changed(&counts));
        assert!(!sent.counts_changed(&counts));
    }

    #[test]
    fn a_page_shows_a_window_of_a_large_fleet() {
        let rows: Vec<FleetRow> = (0..1_000)
            .map(|i| row(&format!("app-{i:04}"), Status::Running, "0.40.6", 9000 + i))
            .collect();
        let first = ViewParams::default().window(&rows);
        assert_eq!(first.rows.len(), PAGE_ROWS);
        assert_eq!((first.matching, first.total), (1_000, 1_000));
        assert_eq!(first.rows[0].name, "app-0000");
        // "Show more" widens it; nothing asks for less than a page or more
        // than the cap.
        let more = ViewParams::new("", "name", 2 * PAGE_ROWS).window(&rows);
        assert_eq!(more.rows.len(), 2 * PAGE_ROWS);
        assert_eq!(ViewParams::new("", "name", 0).limit, PAGE_ROWS);
        assert_eq!(ViewParams::new("", "name", usize::MAX).limit, MAX_ROWS);
        // The filter looks at the whole fleet, not just the window.
        let found = ViewParams::new("app-0999", "name", 0).window(&rows);
        assert_eq!(names(&found.rows), ["app-0999"]);
        assert_eq!((found.matching, found.total), (1, 1_000));
    }

    #[test]
    fn footer_is_sent_when_it_changes() {
        let mut sent = Sent::default();
        assert!(sent.footer_changed("a"));
        assert!(!sent.footer_changed("a"));
        assert!(sent.footer_changed("b"));
        sent.reset();
        assert!(sent.footer_changed("b"));
    }
}
