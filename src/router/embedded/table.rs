//! The routing table of the embedded proxy, and the pure decisions around it.
//!
//! A [`Table`] is immutable once built: a change builds a new table and the
//! proxy swaps it in whole, so a request that read the old one keeps a
//! consistent snapshot. Everything here is plain data and plain functions
//! (host lookup, the reconcile plan, drift, the canonical rendering that
//! `render_hash` hashes), unit-tested without sockets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use hyper::http::uri::Authority;
use serde::Serialize;
use sha2::{Digest, Sha256};

use std::sync::atomic::AtomicBool;

use super::activity::{Activities, Cell};
use crate::metrics::{Metrics, ProxyInstanceMetrics};
use crate::router::{Drift, DriftKind, ReconcileReport, Route};

/// One route as the proxy uses it: the route and its upstream authority,
/// computed once when the table is built rather than per request.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) route: Route,
    /// `127.0.0.1:PORT`.
    pub(super) authority: Authority,
    /// Where its requests are counted, looked up once here rather than per
    /// request; `None` for a proxy built without metrics.
    pub(super) metrics: Option<ProxyInstanceMetrics>,
    /// Its instance's traffic (the same cell in every entry made for it).
    pub(super) activity: Arc<Cell>,
    /// Whether a request already asked for this asleep route's instance
    /// to be woken: one ask per entry, however many requests arrive.
    pub(super) wake_asked: AtomicBool,
    /// Whether the upstream is another host's proxy (a cluster).
    pub(super) elsewhere: bool,
}

impl Entry {
    fn new(route: Route, metrics: Option<&Metrics>, activities: &Activities) -> Self {
        let authority = Authority::from_maybe_shared(format!("127.0.0.1:{}", route.port))
            .unwrap_or_else(|_| Authority::from_static("127.0.0.1"));
        let metrics = metrics.map(|m| m.proxy_instance(route.name.as_str()));
        let activity = activities.cell(route.name.as_str());
        Self {
            route,
            authority,
            metrics,
            activity,
            wake_asked: AtomicBool::new(false),
            elsewhere: false,
        }
    }
}

impl Entry {
    /// An entry for one request to an instance of another host of the
    /// cluster: to that host's proxy at `proxy`, which applies the
    /// instance's own limits and state.
    pub(super) fn elsewhere(
        name: crate::model::InstanceName,
        proxy: std::net::SocketAddr,
        activities: &Activities,
    ) -> Self {
        let authority = Authority::from_maybe_shared(proxy.to_string())
            .unwrap_or_else(|_| Authority::from_static("127.0.0.1"));
        Self {
            route: Route {
                name,
                port: proxy.port(),
                hosts: Vec::new(),
                max_body_bytes: u64::MAX,
                read_timeout: crate::router::DEFAULT_READ_TIMEOUT,
                available: true,
                held: false,
                asleep: false,
            },
            authority,
            metrics: None,
            activity: activities.loose(),
            wake_asked: AtomicBool::new(false),
            elsewhere: true,
        }
    }
}

/// A host that more than one route claims; the route whose name sorts first
/// keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HostConflict {
    pub(super) host: String,
    pub(super) kept: String,
    pub(super) ignored: String,
}

/// Host → route, and name → route, for one snapshot of the routes.
#[derive(Debug, Default)]
pub(super) struct Table {
    // Shared keys: a change clones the maps (reference counts, no new
    // strings) rather than building them again, so one route's change
    // costs little at ten thousand routes.
    by_name: BTreeMap<Arc<str>, Arc<Entry>>,
    by_host: HashMap<Arc<str>, Arc<Entry>>,
}

impl Table {
    /// Build a table from routes; a later route with the same name replaces
    /// an earlier one.
    pub(super) fn build(
        routes: impl IntoIterator<Item = Route>,
        metrics: Option<&Metrics>,
        activities: &Activities,
    ) -> (Self, Vec<HostConflict>) {
        let mut by_name = BTreeMap::new();
        for route in routes {
            by_name.insert(
                Arc::from(route.name.as_str()),
                Arc::new(Entry::new(route, metrics, activities)),
            );
        }
        Self::index(by_name)
    }

    fn index(by_name: BTreeMap<Arc<str>, Arc<Entry>>) -> (Self, Vec<HostConflict>) {
        let mut by_host: HashMap<Arc<str>, Arc<Entry>> = HashMap::new();
        let mut conflicts = Vec::new();
        // BTreeMap order: the name that sorts first wins a contested host,
        // whatever order the routes were put in.
        for entry in by_name.values() {
            for host in &entry.route.hosts {
                let key = normalize_host_owned(host);
                match by_host.get(key.as_str()) {
                    Some(existing) if !Arc::ptr_eq(existing, entry) => {
                        conflicts.push(HostConflict {
                            host: key,
                            kept: existing.route.name.as_str().to_string(),
                            ignored: entry.route.name.as_str().to_string(),
                        });
                    }
                    Some(_) => {}
                    None => {
                        by_host.insert(Arc::from(key), Arc::clone(entry));
                    }
                }
            }
        }
        (Self { by_name, by_host }, conflicts)
    }

    /// This table with `route` added or replaced: the maps cloned, then
    /// only the hosts of this route changed, with the same rule as
    /// [`Table::build`] (the name that sorts first keeps a contested
    /// host). The conflicts returned are those this route is part of.
    pub(super) fn with_put(
        &self,
        route: Route,
        metrics: Option<&Metrics>,
        activities: &Activities,
    ) -> (Self, Vec<HostConflict>) {
        let name: Arc<str> = Arc::from(route.name.as_str());
        let entry = Arc::new(Entry::new(route, metrics, activities));
        let mut by_name = self.by_name.clone();
        let old = by_name.insert(Arc::clone(&name), Arc::clone(&entry));
        let mut by_host = self.by_host.clone();
        let wanted: std::collections::BTreeSet<String> = entry
            .route
            .hosts
            .iter()
            .map(|h| normalize_host_owned(h))
            .collect();
        let mut conflicts = Vec::new();
        // Hosts the old route held and this one does not claim go to the
        // next claimant in name order, if any.
        if let Some(old) = &old {
            for host in old.route.hosts.iter().map(|h| normalize_host_owned(h)) {
                if wanted.contains(&host) {
                    continue;
                }
                let held = by_host
                    .get(host.as_str())
                    .is_some_and(|e| Arc::ptr_eq(e, old));
                if !held {
                    continue;
                }
                by_host.remove(host.as_str());
                let next = by_name.values().find(|e| {
                    !Arc::ptr_eq(e, &entry)
                        && e.route
                            .hosts
                            .iter()
                            .any(|h| normalize_host_owned(h) == host)
                });
                if let Some(next) = next {
                    by_host.insert(Arc::from(host.as_str()), Arc::clone(next));
                }
            }
        }
        for host in wanted {
            let holder = by_host.get(host.as_str()).map(Arc::clone);
            match holder {
                Some(current)
                    if old.as_ref().is_some_and(|o| Arc::ptr_eq(&current, o))
                        || *current.route.name.as_str() == *name =>
                {
                    by_host.insert(Arc::from(host.as_str()), Arc::clone(&entry));
                }
                Some(current) if current.route.name.as_str() > &*name => {
                    conflicts.push(HostConflict {
                        host: host.clone(),
                        kept: name.to_string(),
                        ignored: current.route.name.as_str().to_string(),
                    });
                    by_host.insert(Arc::from(host.as_str()), Arc::clone(&entry));
                }
                Some(current) => conflicts.push(HostConflict {
                    host,
                    kept: current.route.name.as_str().to_string(),
                    ignored: name.to_string(),
                }),
                None => {
                    by_host.insert(Arc::from(host.as_str()), Arc::clone(&entry));
                }
            }
        }
        (Self { by_name, by_host }, conflicts)
    }

    /// This table without the route called `name`, or `None` if there is no
    /// such route.
    pub(super) fn without(&self, name: &str) -> Option<Self> {
        if !self.by_name.contains_key(name) {
            return None;
        }
        let mut by_name = self.by_name.clone();
        by_name.remove(name);
        Some(Self::index(by_name).0)
    }

    /// The route for a host already normalized by
    /// [`super::host::normalize`].
    pub(super) fn lookup(&self, host: &str) -> Option<&Arc<Entry>> {
        self.by_host.get(host)
    }

    /// The routes, by name.
    pub(super) fn routes(&self) -> Vec<Route> {
        self.by_name.values().map(|e| e.route.clone()).collect()
    }

    pub(super) fn get(&self, name: &str) -> Option<&Route> {
        self.by_name.get(name).map(|e| &e.route)
    }

    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(|k| &**k)
    }
}

/// Lowercase, without a trailing dot: the form hosts are indexed under.
fn normalize_host_owned(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// What `reconcile(desired)` changes in a table holding `current`.
pub(super) fn plan(current: &Table, desired: &[Route]) -> ReconcileReport {
    let mut report = ReconcileReport::default();
    let mut wanted: BTreeMap<&str, &Route> = BTreeMap::new();
    for route in desired {
        wanted.insert(route.name.as_str(), route);
    }
    for (name, route) in &wanted {
        match current.get(name) {
            None => report.added.push((*name).to_string()),
            Some(existing) if canonical(existing) != canonical(route) => {
                report.updated.push((*name).to_string())
            }
            Some(_) => {}
        }
    }
    for name in current.names() {
        if !wanted.contains_key(name) {
            report.removed.push(name.to_string());
        }
    }
    report
}

/// How the routes in `current` differ from `desired`, without changing
/// anything.
pub(super) fn drift(current: &Table, desired: &[Route]) -> Vec<Drift> {
    let mut drifts = Vec::new();
    let mut wanted: BTreeMap<&str, &Route> = BTreeMap::new();
    for route in desired {
        wanted.insert(route.name.as_str(), route);
    }
    for (name, route) in &wanted {
        match current.get(name) {
            None => drifts.push(Drift {
                instance: Some((*name).to_string()),
                kind: DriftKind::Missing,
                detail: format!(
                    "no route for {} → 127.0.0.1:{}",
                    route.hosts.join(", "),
                    route.port
                ),
            }),
            Some(existing) => {
                let differences = differences(existing, route);
                if !differences.is_empty() {
                    drifts.push(Drift {
                        instance: Some((*name).to_string()),
                        kind: DriftKind::Changed,
                        detail: differences.join("; "),
                    });
                }
            }
        }
    }
    for name in current.names() {
        if !wanted.contains_key(name) {
            drifts.push(Drift {
                instance: None,
                kind: DriftKind::Stale,
                detail: format!("route {name} has no instance"),
            });
        }
    }
    drifts
}

/// The fields that differ between the route in place and the one wanted,
/// in words.
fn differences(actual: &Route, wanted: &Route) -> Vec<String> {
    let mut out = Vec::new();
    if actual.port != wanted.port {
        out.push(format!(
            "port is {}, should be {}",
            actual.port, wanted.port
        ));
    }
    let (actual_hosts, wanted_hosts) = (sorted_hosts(actual), sorted_hosts(wanted));
    if actual_hosts != wanted_hosts {
        out.push(format!(
            "hosts are [{}], should be [{}]",
            actual_hosts.join(", "),
            wanted_hosts.join(", ")
        ));
    }
    if actual.max_body_bytes != wanted.max_body_bytes {
        out.push(format!(
            "body limit is {} bytes, should be {}",
            actual.max_body_bytes, wanted.max_body_bytes
        ));
    }
    if actual.read_timeout != wanted.read_timeout {
        out.push(format!(
            "read timeout is {:?}, should be {:?}",
            actual.read_timeout, wanted.read_timeout
        ));
    }
    if actual.available != wanted.available {
        out.push(format!(
            "available is {}, should be {}",
            actual.available, wanted.available
        ));
    }
    if actual.held != wanted.held {
        out.push(format!(
            "held is {}, should be {}",
            actual.held, wanted.held
        ));
    }
    if actual.asleep != wanted.asleep {
        out.push(format!(
            "asleep is {}, should be {}",
            actual.asleep, wanted.asleep
        ));
    }
    out
}

fn sorted_hosts(route: &Route) -> Vec<String> {
    let mut hosts: Vec<String> = route
        .hosts
        .iter()
        .map(|h| normalize_host_owned(h))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The canonical rendering of a route: fixed key order (alphabetical),
/// hosts normalized, sorted and deduplicated (their order does not change
/// routing), the timeout in milliseconds.
#[derive(Serialize, PartialEq, Eq)]
struct Canonical<'a> {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    asleep: bool,
    available: bool,
    held: bool,
    hosts: Vec<String>,
    max_body_bytes: u64,
    name: &'a str,
    port: u16,
    read_timeout_ms: u128,
}

fn canonical(route: &Route) -> Canonical<'_> {
    Canonical {
        asleep: route.asleep,
        available: route.available,
        held: route.held,
        hosts: sorted_hosts(route),
        max_body_bytes: route.max_body_bytes,
        name: route.name.as_str(),
        port: route.port,
        read_timeout_ms: route.read_timeout.as_millis(),
    }
}

/// The canonical JSON of a route.
pub(super) fn canonical_json(route: &Route) -> String {
    // Serializing a struct of plain fields cannot fail.
    serde_json::to_string(&canonical(route)).unwrap_or_default()
}

/// Hex sha256 of [`canonical_json`].
pub(super) fn render_hash(route: &Route) -> String {
    hex::encode(Sha256::digest(canonical_json(route).as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use expect_test::{expect, Expect};

    use super::*;
    use crate::model::InstanceName;

    fn route(name: &str, port: u16, hosts: &[&str]) -> Route {
        Route {
            name: InstanceName::parse(name).unwrap(),
            port,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            max_body_bytes: crate::router::DEFAULT_MAX_BODY_BYTES,
            read_timeout: crate::router::DEFAULT_READ_TIMEOUT,
            available: true,
            held: false,
            asleep: false,
        }
    }

    fn table(routes: &[Route]) -> Table {
        Table::build(routes.iter().cloned(), None, &Activities::default()).0
    }

    fn check_plan(current: &[Route], desired: &[Route], expect: Expect) {
        let report = plan(&table(current), desired);
        expect.assert_eq(&format!(
            "added {:?} updated {:?} removed {:?}",
            report.added, report.updated, report.removed
        ));
    }

    fn check_drift(current: &[Route], desired: &[Route], expect: Expect) {
        let rendered: Vec<String> = drift(&table(current), desired)
            .into_iter()
            .map(|d| format!("{} {:?}: {}", d.kind, d.instance, d.detail))
            .collect();
        expect.assert_eq(&rendered.join("\n"));
    }

    #[test]
    fn lookup_by_every_host_normalized() {
        let t = table(&[route(
            "blog",
            8091,
            &["blog.localhost", "Blog.Example.COM."],
        )]);
        assert_eq!(t.lookup("blog.localhost").unwrap().route.port, 8091);
        assert_eq!(t.lookup("blog.example.com").unwrap().route.port, 8091);
        assert!(t.lookup("shop.localhost").is_none());
        assert_eq!(
            t.lookup("blog.localhost").unwrap().authority.as_str(),
            "127.0.0.1:8091"
        );
    }

    #[test]
    fn contested_host_goes_to_the_first_name() {
        let (t, conflicts) = Table::build(
            [
                route("shop", 8092, &["shop.localhost", "shared.example.com"]),
                route("blog", 8091, &["blog.localhost", "shared.example.com"]),
            ],
            None,
            &Activities::default(),
        );
        assert_eq!(
            t.lookup("shared.example.com").unwrap().route.name.as_str(),
            "blog"
        );
        assert_eq!(
            conflicts,
            vec![HostConflict {
                host: "shared.example.com".into(),
                kept: "blog".into(),
                ignored: "shop".into()
            }]
        );
    }

    #[test]
    fn put_replaces_and_without_removes() {
        let t = table(&[route("blog", 8091, &["blog.localhost"])]);
        let (t2, _) = t.with_put(
            route("blog", 8095, &["blog.localhost", "b.example.com"]),
            None,
            &Activities::default(),
        );
        assert_eq!(t2.lookup("b.example.com").unwrap().route.port, 8095);
        // The old snapshot is untouched.
        assert_eq!(t.lookup("blog.localhost").unwrap().route.port, 8091);
        assert!(t.lookup("b.example.com").is_none());
        let t3 = t2.without("blog").unwrap();
        assert!(t3.lookup("blog.localhost").is_none());
        assert!(t3.without("blog").is_none());
    }

    /// Route changes made one at a time give the same table as building
    /// it from the final routes: contested hosts, hosts given up and taken
    /// over, in random orders.
    #[test]
    fn one_change_at_a_time_equals_a_full_build() {
        let names = ["a", "b", "c", "d"];
        let hosts = ["x.test", "y.test", "z.test", "W.test.", "v.test"];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let activities = Activities::default();
        for _round in 0..200 {
            let mut t = Table::default();
            let mut current: BTreeMap<&str, Route> = BTreeMap::new();
            for step in 0..12 {
                let name = names[next(names.len() as u64) as usize];
                let mut picked: Vec<&str> =
                    hosts.iter().copied().filter(|_| next(3) == 0).collect();
                picked.push(match name {
                    "a" => "a.localhost",
                    "b" => "b.localhost",
                    "c" => "c.localhost",
                    _ => "d.localhost",
                });
                let r = route(name, 8000 + step, &picked);
                current.insert(name, r.clone());
                t = if next(5) == 0 {
                    current.remove(name);
                    t.without(name).unwrap_or(t)
                } else {
                    t.with_put(r, None, &activities).0
                };
                let full = table(&current.values().cloned().collect::<Vec<_>>());
                let mut all: Vec<String> = hosts.iter().map(|h| normalize_host_owned(h)).collect();
                all.extend(names.iter().map(|n| format!("{n}.localhost")));
                for host in &all {
                    let got = t
                        .lookup(host)
                        .map(|e| (e.route.name.to_string(), e.route.port));
                    let want = full
                        .lookup(host)
                        .map(|e| (e.route.name.to_string(), e.route.port));
                    assert_eq!(got, want, "{host} after step {step}: {current:?}");
                }
            }
        }
    }

    #[test]
    fn reconcile_plan() {
        let blog = route("blog", 8091, &["blog.localhost"]);
        let shop = route("shop", 8092, &["shop.localhost"]);
        let crm = route("crm", 8093, &["crm.localhost"]);
        check_plan(&[], &[], expect![[r#"added [] updated [] removed []"#]]);
        check_plan(
            &[blog.clone(), shop.clone()],
            &[shop.clone(), blog.clone()],
            expect![[r#"added [] updated [] removed []"#]],
        );
        let mut moved = blog.clone();
        moved.port = 9000;
        check_plan(
            &[blog.clone(), shop.clone()],
            &[moved, crm.clone()],
            expect![[r#"added ["crm"] updated ["blog"] removed ["shop"]"#]],
        );
        // Host order does not matter; a change of availability does.
        let mut reordered = route("blog", 8091, &["b.example.com", "blog.localhost"]);
        let with_domain = route("blog", 8091, &["blog.localhost", "b.example.com"]);
        check_plan(
            std::slice::from_ref(&with_domain),
            std::slice::from_ref(&reordered),
            expect![[r#"added [] updated [] removed []"#]],
        );
        reordered.available = false;
        check_plan(
            std::slice::from_ref(&with_domain),
            &[reordered],
            expect![[r#"added [] updated ["blog"] removed []"#]],
        );
        // So does holding it, and letting it go again.
        let mut held = with_domain.clone();
        held.held = true;
        check_plan(
            std::slice::from_ref(&with_domain),
            std::slice::from_ref(&held),
            expect![[r#"added [] updated ["blog"] removed []"#]],
        );
        check_plan(
            &[held],
            &[with_domain],
            expect![[r#"added [] updated ["blog"] removed []"#]],
        );
    }

    #[test]
    fn drift_in_words() {
        let blog = route("blog", 8091, &["blog.localhost"]);
        let shop = route("shop", 8092, &["shop.localhost"]);
        check_drift(
            std::slice::from_ref(&blog),
            std::slice::from_ref(&blog),
            expect![[r#""#]],
        );
        let mut changed = route("blog", 8099, &["blog.localhost", "blog.example.com"]);
        changed.max_body_bytes = 1_000_000;
        changed.read_timeout = Duration::from_secs(30);
        changed.available = false;
        changed.held = true;
        check_drift(
            &[blog.clone(), route("old", 8097, &["old.localhost"])],
            &[changed, shop],
            expect![[r#"
                changed Some("blog"): port is 8091, should be 8099; hosts are [blog.localhost], should be [blog.example.com, blog.localhost]; body limit is 10000000 bytes, should be 1000000; read timeout is 360s, should be 30s; available is true, should be false; held is false, should be true
                missing Some("shop"): no route for shop.localhost → 127.0.0.1:8092
                stale None: route old has no instance"#]],
        );
    }

    #[test]
    fn drift_of_a_hold_alone() {
        let blog = route("blog", 8091, &["blog.localhost"]);
        let mut held = blog.clone();
        held.held = true;
        check_drift(
            std::slice::from_ref(&blog),
            std::slice::from_ref(&held),
            expect![[r#"changed Some("blog"): held is false, should be true"#]],
        );
        check_drift(
            std::slice::from_ref(&held),
            std::slice::from_ref(&blog),
            expect![[r#"changed Some("blog"): held is true, should be false"#]],
        );
    }

    #[test]
    fn canonical_rendering_and_hash() {
        let r = route(
            "blog",
            8091,
            &["blog.localhost", "Blog.Example.com", "blog.localhost"],
        );
        expect![[r#"{"available":true,"held":false,"hosts":["blog.example.com","blog.localhost"],"max_body_bytes":10000000,"name":"blog","port":8091,"read_timeout_ms":360000}"#]]
            .assert_eq(&canonical_json(&r));
        expect!["f1b312c8c1cff42a70423412bda757e9b823fe1a1ef7fb4d4b457e264b0719f1"]
            .assert_eq(&render_hash(&r));
        let same = route("blog", 8091, &["blog.example.com", "blog.localhost"]);
        assert_eq!(render_hash(&r), render_hash(&same));
        let mut other = same.clone();
        other.port = 8092;
        assert_ne!(render_hash(&r), render_hash(&other));
        let mut held = same.clone();
        held.held = true;
        expect![[r#"{"available":true,"held":true,"hosts":["blog.example.com","blog.localhost"],"max_body_bytes":10000000,"name":"blog","port":8091,"read_timeout_ms":360000}"#]].assert_eq(&canonical_json(&held));
        assert_ne!(render_hash(&r), render_hash(&held));
    }
}
