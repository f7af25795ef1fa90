//! This host's part in a cluster (`serve --cluster`): its heartbeat, the
//! names it holds, and the doors the API uses to reach other hosts (their
//! list, a request forwarded to the host that holds an instance, where a
//! new instance goes).
//!
//! Without `--cluster` every method here says so or does nothing: one
//! host needs no NATS.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};

use super::{Manager, ManagerError, Result};
use crate::cluster::{Answer, Cluster, ClusterFailure, Forwarded};
use crate::model::cluster::{place, Claim, Desired, HostBeat, HostHealth, HostName, Region, Tag};
use crate::model::InstanceName;

/// A cluster this daemon joined, and how other hosts reach it.
pub(super) struct Membership {
    pub cluster: Arc<Cluster>,
    pub api: Option<String>,
    pub proxy: Option<String>,
    pub elsewhere: Arc<Elsewhere>,
    /// The leases this host holds, on its replicated instances.
    pub leases: Mutex<HashMap<String, HeldLease>>,
    /// The instances this host stopped because it could not renew their
    /// leases (kept in [`crate::config::Layout::fenced`] too).
    pub fenced: Mutex<HashSet<String>>,
    /// Instances being moved to another host: not renewed, not fenced.
    pub moving: Mutex<HashSet<String>>,
    /// `host drain` runs on this host: it takes no new instances.
    pub draining: std::sync::atomic::AtomicBool,
    /// What this host last published as each instance's desired state.
    pub published: Mutex<HashMap<String, Desired>>,
    /// Other hosts' replicated instances without a lease: since when this
    /// host has seen them so, and the ones it is bringing back.
    pub orphans: Mutex<Orphans>,
}

/// A lease this host holds: the revision it last wrote (`None` until the
/// first renewal got an answer) and when a renewal last succeeded.
pub(super) struct HeldLease {
    pub revision: Option<u64>,
    pub renewed: std::time::Instant,
}

/// Other hosts' replicated instances without a lease, as this host sees
/// them.
#[derive(Default)]
pub(super) struct Orphans {
    /// Since when each has had no lease.
    pub seen: HashMap<String, std::time::Instant>,
    /// Being brought back here now.
    pub busy: HashSet<String>,
    /// A failover that failed is not tried again before this.
    pub retry_after: HashMap<String, std::time::Instant>,
}

/// Where other hosts' instances are, as this host last heard: each name's
/// claim (from a watch of the claims), each lease's holder (from a watch
/// of the leases) and where each host's proxy listens (from the
/// heartbeats). What this host's proxy sends on, and what failovers start
/// from.
#[derive(Default)]
pub(super) struct Elsewhere {
    pub claims: RwLock<HashMap<String, Claim>>,
    pub leases: RwLock<HashMap<String, HostName>>,
    proxies: RwLock<HashMap<HostName, SocketAddr>>,
}

impl Elsewhere {
    /// The instance a request for `host` (normalized) names, and the proxy
    /// of the other host that holds it: `NAME.BASE_DOMAIN`, or a domain of
    /// its published desired state (its `--domain` or a custom domain).
    fn find(
        &self,
        me: &HostName,
        base_domain: &str,
        host: &str,
    ) -> Option<(InstanceName, SocketAddr)> {
        let claims = self.claims.read().ok()?;
        let by_label = host
            .strip_suffix(base_domain)
            .and_then(|l| l.strip_suffix('.'))
            .and_then(|l| InstanceName::parse(l).ok())
            .and_then(|name| claims.get(name.as_str()).map(|c| (name, c.host.clone())));
        // A domain is looked for only when no name is: one pass over the
        // claims (microseconds at ten thousand), for a host that no local
        // route holds either.
        let (name, holder) = match by_label {
            Some(found) => found,
            None => claims.iter().find_map(|(name, c)| {
                if !c.desired.as_ref()?.answers_at(host) {
                    return None;
                }
                Some((InstanceName::parse(name).ok()?, c.host.clone()))
            })?,
        };
        drop(claims);
        if &holder == me {
            return None;
        }
        let proxy = *self.proxies.read().ok()?.get(&holder)?;
        Some((name, proxy))
    }
}

/// A name taken in the cluster for a create under way: let go of again
/// when dropped, unless the create succeeded ([`NameClaim::keep`]).
pub(super) struct NameClaim {
    held: Option<(Arc<Cluster>, String)>,
}

impl NameClaim {
    /// A claim made already (a failover's): nothing to let go of.
    pub fn none() -> Self {
        Self { held: None }
    }

    pub fn keep(mut self) {
        self.held = None;
    }
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        if let Some((cluster, name)) = self.held.take() {
            tokio::spawn(async move {
                if let Err(e) = cluster.release(&name).await {
                    tracing::warn!(instance = %name, error = %e, "cluster: cannot let go of the name of a failed create");
                }
            });
        }
    }
}

/// A mutex's guard, even after a panic while it was held (the data is
/// plain maps and sets).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Manager {
    /// Join a cluster: from now on names are claimed in it, and the
    /// cluster loop beats for this host.
    pub fn join_cluster(&self, cluster: Arc<Cluster>, api: Option<String>, proxy: Option<String>) {
        let _ = self.membership.set(Membership {
            cluster,
            api,
            proxy,
            elsewhere: Arc::default(),
            leases: Mutex::default(),
            fenced: Mutex::default(),
            moving: Mutex::default(),
            draining: Default::default(),
            published: Mutex::default(),
            orphans: Mutex::default(),
        });
    }

    /// What the embedded proxy asks for a host it has no route for: the
    /// instance of another host it names (`NAME.BASE_DOMAIN`) and that
    /// host's proxy. `None` outside a cluster.
    pub fn proxy_elsewhere(&self) -> Option<crate::router::embedded::Elsewhere> {
        let m = self.membership.get()?;
        let elsewhere = m.elsewhere.clone();
        let me = m.cluster.host().clone();
        let base = self.cfg.routing.base_domain.to_ascii_lowercase();
        Some(Arc::new(move |host: &str| elsewhere.find(&me, &base, host)))
    }

    pub(super) fn cluster(&self) -> Result<&Arc<Cluster>> {
        self.membership
            .get()
            .map(|m| &m.cluster)
            .ok_or(ManagerError::Cluster(ClusterFailure::NotClustered))
    }

    /// This host's name in its cluster, if it is in one.
    pub fn host_name(&self) -> Option<&HostName> {
        self.membership.get().map(|m| m.cluster.host())
    }

    /// Every host of the cluster with its health, sorted by name.
    pub async fn hosts(&self) -> Result<Vec<(HostBeat, HostHealth)>> {
        Ok(self.cluster()?.hosts().await?)
    }

    /// The host that holds `name`, when that is not this one: an instance
    /// with a local record is this host's, whatever the cluster says.
    pub async fn held_elsewhere(&self, name: &str) -> Result<Option<HostName>> {
        let Some(m) = self.membership.get() else {
            return Ok(None);
        };
        if self.store.get_instance(name)?.is_some() {
            return Ok(None);
        }
        Ok(m.cluster
            .owner(name)
            .await?
            .map(|c| c.host)
            .filter(|h| h != m.cluster.host()))
    }

    /// Send an API request to another host and wait for its answer (an
    /// operation: up to [`crate::cluster::FORWARD_TIMEOUT`]).
    pub async fn forward(&self, host: &HostName, req: Forwarded) -> Result<Answer> {
        let within = crate::cluster::FORWARD_TIMEOUT;
        Ok(self.cluster()?.forward(host, req, within).await?)
    }

    /// Send an API request to another host and get its answer as it is
    /// made (a followed log): its status within
    /// [`crate::cluster::FORWARD_TIMEOUT`], then its body as it comes.
    pub async fn forward_streamed(
        &self,
        host: &HostName,
        req: Forwarded,
    ) -> Result<crate::cluster::Streamed> {
        let within = crate::cluster::FORWARD_TIMEOUT;
        Ok(self.cluster()?.forward_streamed(host, req, within).await?)
    }

    /// Ask another host for its part of a list (up to
    /// [`crate::cluster::ASK_TIMEOUT`]).
    pub async fn ask(&self, host: &HostName, req: Forwarded) -> Result<Answer> {
        let within = crate::cluster::ASK_TIMEOUT;
        Ok(self.cluster()?.forward(host, req, within).await?)
    }

    /// Ask `host` for a GET (`path_and_query`, on behalf of `actor`) and
    /// give its answer as JSON, or why there is none.
    pub async fn ask_json<T: serde::de::DeserializeOwned>(
        &self,
        host: &HostName,
        path_and_query: &str,
        actor: &str,
    ) -> std::result::Result<T, String> {
        let me = self.host_name().cloned().ok_or("not in a cluster")?;
        let req = Forwarded {
            method: "GET".into(),
            path_and_query: path_and_query.into(),
            content_type: None,
            body: bytes::Bytes::new(),
            actor: actor.into(),
            from: me,
        };
        let answer = self.ask(host, req).await.map_err(|e| e.to_string())?;
        if answer.status != 200 {
            return Err(format!(
                "answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
            ));
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| format!("answered JSON that does not parse: {e}"))
    }

    /// Ask every other host of the cluster for the same GET at once (its
    /// part of a list): each host's answer as JSON, or why it has none
    /// (lost, no answer in time, a failure). Nobody outside a cluster.
    pub async fn ask_others<T: serde::de::DeserializeOwned>(
        &self,
        path_and_query: &str,
        actor: &str,
    ) -> Result<Vec<(HostName, std::result::Result<T, String>)>> {
        let others = self.other_hosts().await?;
        let asked = others.into_iter().map(|(host, health, seen)| async move {
            if health == HostHealth::Lost {
                let why = format!(
                    "lost: no heartbeat since {}, so its instances are not listed",
                    seen.format("%Y-%m-%d %H:%M:%S UTC")
                );
                return (host, Err(why));
            }
            let answer = self.ask_json(&host, path_and_query, actor).await;
            (host, answer)
        });
        Ok(futures::future::join_all(asked).await)
    }

    /// Which host a new instance goes to: `host` if named (it must be a
    /// host of the cluster that is up), else the roomiest up host in
    /// `region` with every tag of `tags`. Without a cluster, only no
    /// choice at all is possible.
    pub async fn placement(
        &self,
        host: Option<&str>,
        region: Option<&str>,
        tags: &[String],
    ) -> Result<Option<HostName>> {
        let Some(m) = self.membership.get() else {
            if host.is_some() || region.is_some() || !tags.is_empty() {
                return Err(ManagerError::Cluster(ClusterFailure::NotClustered));
            }
            return Ok(None);
        };
        let invalid = |e: crate::model::cluster::ClusterError| ManagerError::Invalid(e.to_string());
        let hosts = m.cluster.hosts().await?;
        if let Some(host) = host {
            let host = HostName::parse(host).map_err(invalid)?;
            return match hosts.iter().find(|(h, _)| h.name == host) {
                // A late host is asked: it answers, or the forward says it
                // did not.
                Some((beat, _)) if beat.draining => Err(ManagerError::Conflict(format!(
                    "host {host} is being drained: it takes no new instances until `pockestrator host undrain {host}`"
                ))),
                Some((_, HostHealth::Up | HostHealth::Late)) => Ok(Some(host)),
                Some((_, HostHealth::Lost)) => Err(ManagerError::Conflict(format!(
                    "host {host} is lost (no heartbeat for longer than its lease): it takes no new instances now (see `pockestrator hosts`)"
                ))),
                None => Err(ManagerError::Cluster(ClusterFailure::UnknownHost(
                    host.to_string(),
                ))),
            };
        }
        let region = region.map(Region::parse).transpose().map_err(invalid)?;
        let tags = tags
            .iter()
            .map(|t| Tag::parse(t))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(invalid)?;
        match place(&hosts, region.as_ref(), &tags) {
            Some(beat) => Ok(Some(beat.name.clone())),
            None => Err(ManagerError::Conflict(format!(
                "no host of the cluster that is up fits{}{}: see `pockestrator hosts`",
                region.map(|r| format!(" region {r}")).unwrap_or_default(),
                if tags.is_empty() {
                    String::new()
                } else {
                    format!(
                        " with tags {}",
                        tags.iter()
                            .map(|t| t.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                }
            ))),
        }
    }

    /// The other hosts of the cluster, with their health and last
    /// heartbeat: the ones a list of the whole fleet asks (or, lost, names).
    pub async fn other_hosts(&self) -> Result<Vec<(HostName, HostHealth, DateTime<Utc>)>> {
        let Some(m) = self.membership.get() else {
            return Ok(Vec::new());
        };
        Ok(m.cluster
            .hosts()
            .await?
            .into_iter()
            .filter(|(h, _)| &h.name != m.cluster.host())
            .map(|(h, health)| (h.name, health, h.seen_at))
            .collect())
    }

    /// A fenced instance is not started by hand: its lease is not this
    /// host's for sure, and another host may be bringing it back.
    pub(super) fn refuse_if_fenced(&self, name: &str) -> Result<()> {
        let Some(m) = self.membership.get() else {
            return Ok(());
        };
        if m.fenced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
        {
            return Err(ManagerError::Conflict(format!(
                "{name} is fenced: this host cannot renew its lease in the cluster, so another host may run it; it starts again by itself once the lease is renewed"
            )));
        }
        Ok(())
    }

    /// The instances the cluster says `host` holds, sorted, each with
    /// whether another host can bring it back (it is replicated).
    pub fn held_by(&self, host: &HostName) -> Vec<(String, bool)> {
        let Some(m) = self.membership.get() else {
            return Vec::new();
        };
        let Ok(claims) = m.elsewhere.claims.read() else {
            return Vec::new();
        };
        let mut held: Vec<(String, bool)> = claims
            .iter()
            .filter(|(_, c)| &c.host == host)
            .map(|(name, c)| {
                let replicated = c.desired.as_ref().is_some_and(|d| d.replica.is_some());
                (name.clone(), replicated)
            })
            .collect();
        held.sort();
        held
    }

    /// Take `name` in the cluster before a create makes anything: two hosts
    /// creating one name at once, one of them gets it.
    pub(super) async fn claim_name(&self, name: &str) -> Result<NameClaim> {
        let Some(m) = self.membership.get() else {
            return Ok(NameClaim { held: None });
        };
        m.cluster.claim(name).await?;
        Ok(NameClaim {
            held: Some((m.cluster.clone(), name.to_string())),
        })
    }

    /// Let go of a deleted instance's name.
    pub(super) async fn release_name(&self, name: &str) {
        if let Some(m) = self.membership.get() {
            if let Err(e) = m.cluster.release(name).await {
                tracing::warn!(instance = name, error = %e, "cluster: cannot let go of the name of a deleted instance");
            }
        }
    }

    pub(super) fn host_beat(&self, m: &Membership) -> HostBeat {
        let (instances, running) = self.store.instance_counts().unwrap_or((0, 0));
        let (total, available) = crate::procstat::host_memory().unwrap_or((0, 0));
        let cfg = m.cluster.config();
        HostBeat {
            name: cfg.host.clone(),
            region: cfg.region.clone(),
            tags: cfg.tags.clone(),
            api: m.api.clone(),
            proxy: m.proxy.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            instances,
            running,
            mem_available_bytes: available,
            mem_total_bytes: total,
            load1: crate::procstat::load_average().unwrap_or(0.0),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            started_at: m.cluster.started_at(),
            seen_at: chrono::Utc::now(),
            draining: m.draining.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Beat for this host until `stop`; first, hold every local instance's
    /// name (a name held by another host is logged: two hosts' records of
    /// one name need an operator).
    pub async fn cluster_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(m) = self.membership.get() else {
            return;
        };
        let interval = m.cluster.config().heartbeat;
        let (cluster, elsewhere, halt) = (m.cluster.clone(), m.elsewhere.clone(), stop.clone());
        let watcher = tokio::spawn(async move {
            follow("claims", &elsewhere.claims, || cluster.watch_claims(), halt).await
        });
        let (cluster, elsewhere, halt) = (m.cluster.clone(), m.elsewhere.clone(), stop.clone());
        let lease_watcher = tokio::spawn(async move {
            follow("leases", &elsewhere.leases, || cluster.watch_leases(), halt).await
        });
        self.load_fenced(m);
        let leases = tokio::spawn(self.clone().lease_loop(stop.clone()));
        let mut claimed = false;
        loop {
            // A beat that hangs (its server just died, the client not yet
            // moved to another) is given up for the next one.
            let beat = self.host_beat(m);
            match tokio::time::timeout(interval * 2, m.cluster.beat(&beat)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cluster: heartbeat failed"),
                Err(_) => tracing::warn!("cluster: a heartbeat got no answer in time"),
            }
            // Where the other hosts' proxies are, for this host's proxy.
            if let Ok(hosts) = m.cluster.hosts().await {
                self.publish_desired(m).await;
                self.find_orphans(m, &hosts);
                let proxies = hosts
                    .into_iter()
                    .filter(|(_, health)| *health != HostHealth::Lost)
                    .filter_map(|(h, _)| {
                        let addr = h.proxy.as_deref()?.strip_prefix("http://")?.parse().ok()?;
                        Some((h.name, addr))
                    })
                    .collect();
                if let Ok(mut known) = m.elsewhere.proxies.write() {
                    *known = proxies;
                }
            }
            if !claimed {
                claimed = self.claim_local_names(&m.cluster).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        let _ = watcher.await;
        let _ = lease_watcher.await;
        let _ = leases.await;
    }

    /// Claim the names of this host's instances, and let go of the names a
    /// previous run of this host held but has no instance for (a create cut
    /// short by a crash, a delete whose let-go did not reach NATS); true
    /// once every claim got an answer.
    async fn claim_local_names(&self, cluster: &Cluster) -> bool {
        let Ok(records) = self.store.list_instances() else {
            return false;
        };
        match cluster.held_here().await {
            Ok(held) => {
                for (name, claim) in held {
                    // Claims of this run belong to creates under way.
                    let stale = claim.since < cluster.started_at();
                    if stale && matches!(self.store.get_instance(&name), Ok(None)) {
                        match cluster.release(&name).await {
                            Ok(()) => {
                                tracing::info!(instance = %name, "cluster: let go of a name this host held without an instance")
                            }
                            Err(e) => {
                                tracing::warn!(instance = %name, error = %e, "cluster: cannot let go of a stale name")
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot read the names this host holds yet");
                return false;
            }
        }
        let mut answered = true;
        for rec in records {
            match cluster.claim(rec.name.as_str()).await {
                Ok(()) => {}
                Err(ClusterFailure::HeldElsewhere { name, host }) => {
                    // Taken over from this host while it was away: the
                    // other host runs it now.
                    let taken = m_from(cluster, &name).await;
                    if taken.as_ref() == Some(cluster.host()) {
                        self.stand_down(&name, &host).await;
                    } else {
                        tracing::error!(instance = %name, other = %host, "cluster: this host has an instance whose name another host holds: rename or delete one of them");
                    }
                }
                Err(e) => {
                    tracing::warn!(instance = %rec.name, error = %e, "cluster: cannot claim the name yet");
                    answered = false;
                }
            }
        }
        answered
    }
}

/// The host a name was taken over from, if its claim says so.
async fn m_from(cluster: &Cluster, name: &str) -> Option<HostName> {
    cluster
        .owner(name)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.from)
}

/// Keep `into` equal to a bucket (every key now, then every change) from
/// the watches `open` makes, until `stop`; a watch that breaks (a NATS node
/// gone) is made again.
async fn follow<T, S, Fut>(
    what: &str,
    into: &RwLock<HashMap<String, T>>,
    open: impl Fn() -> Fut,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    Fut: std::future::Future<Output = std::result::Result<S, ClusterFailure>>,
    S: futures::Stream<Item = (String, Option<T>)>,
{
    use futures::StreamExt;
    loop {
        match open().await {
            Ok(changes) => {
                let mut changes = std::pin::pin!(changes);
                loop {
                    let change = tokio::select! {
                        c = changes.next() => c,
                        _ = stop.wait_for(|s| *s) => return,
                    };
                    let Some((name, value)) = change else { break };
                    let Ok(mut map) = into.write() else {
                        return;
                    };
                    match value {
                        Some(v) => map.insert(name, v),
                        None => map.remove(&name),
                    };
                }
            }
            Err(e) => tracing::warn!(error = %e, "cluster: cannot watch the {what} yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_goes_to_the_proxy_of_the_host_that_holds_its_instance() {
        let e = Elsewhere::default();
        let (me, b) = (HostName::parse("a").unwrap(), HostName::parse("b").unwrap());
        let addr: SocketAddr = "10.0.0.2:8080".parse().unwrap();
        let claim = |h: &HostName| Claim {
            host: h.clone(),
            since: chrono::Utc::now(),
            desired: None,
            from: None,
        };
        let mut claims = e.claims.write().unwrap();
        claims.insert("blog".into(), claim(&b));
        claims.insert("mine".into(), claim(&me));
        claims.insert("nohost".into(), claim(&HostName::parse("c").unwrap()));
        drop(claims);
        e.proxies.write().unwrap().insert(b, addr);
        let name = |n: &str| InstanceName::parse(n).unwrap();
        assert_eq!(
            e.find(&me, "example.com", "blog.example.com"),
            Some((name("blog"), addr))
        );
        // Ours, unknown, a host with no proxy, another domain, a deeper name.
        for host in [
            "mine.example.com",
            "other.example.com",
            "nohost.example.com",
            "blog.example.org",
            "x.blog.example.com",
            "blogexample.com",
            "example.com",
        ] {
            assert_eq!(e.find(&me, "example.com", host), None, "{host}");
        }
    }

    #[test]
    fn a_custom_domain_goes_to_the_host_whose_instance_answers_at_it() {
        let e = Elsewhere::default();
        let (me, b) = (HostName::parse("a").unwrap(), HostName::parse("b").unwrap());
        let addr: SocketAddr = "10.0.0.2:8080".parse().unwrap();
        let desired = |domains: &[&str]| Desired {
            version: "0.28.4".into(),
            port: None,
            replica: None,
            max_body_bytes: None,
            memory_max: None,
            cpu_quota: None,
            idle_timeout_secs: None,
            domain: domains.first().map(|d| d.to_string()),
            domains: domains.iter().skip(1).map(|d| d.to_string()).collect(),
            stopped: false,
        };
        let claim = |h: &HostName, domains: &[&str]| Claim {
            host: h.clone(),
            since: chrono::Utc::now(),
            desired: Some(desired(domains)),
            from: None,
        };
        let mut claims = e.claims.write().unwrap();
        claims.insert(
            "shop".into(),
            claim(&b, &["shop.example.org", "www.shop.test"]),
        );
        claims.insert("mine".into(), claim(&me, &["mine.example.org"]));
        drop(claims);
        e.proxies.write().unwrap().insert(b, addr);
        let name = |n: &str| InstanceName::parse(n).unwrap();
        for host in ["shop.example.org", "www.shop.test", "shop.example.com"] {
            assert_eq!(
                e.find(&me, "example.com", host),
                Some((name("shop"), addr)),
                "{host}"
            );
        }
        // Ours, a domain nobody has, a part of one.
        for host in [
            "mine.example.org",
            "example.org",
            "shop.test",
            "hop.example.org",
        ] {
            assert_eq!(e.find(&me, "example.com", host), None, "{host}");
        }
    }
}
