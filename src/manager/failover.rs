//! Failover in a cluster: the leases this host holds on its replicated
//! instances, renewed every heartbeat; the instances it stops (fences)
//! when it cannot renew them in time; the instances of other hosts whose
//! leases ran out, brought back here from their replicas; and this host's
//! own copy archived when it finds another host running its instance.
//!
//! The order that keeps one writer per database: a host fences its
//! instances at [`fence_after`] (three fifths of the lease time) without a
//! renewal; another host can take a lease only once NATS has let it run
//! out (the bucket's `max_age`, counted from the last renewal NATS stored),
//! takes it with compare-and-set, and only then moves the claim and
//! restores. Only replicated instances have leases: nobody else can bring
//! an unreplicated one back, and a list names it with its lost host.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;

use super::cluster::{lock, HeldLease, Membership, NameClaim};
use super::create::{Adopt, CreateRequest};
use super::install::BinaryChoice;
use super::{Actor, Manager, ManagerError, Result};
use crate::cluster::ClusterFailure;
use crate::model::cluster::{
    fence_after, successor, Claim, Desired, HostBeat, HostHealth, HostName, ReplicaSpec,
};
use crate::model::version::VersionRequest;
use crate::model::{AuditAction, DesiredState, Destination, InstanceName};
use crate::store::{InstanceRecord, ReplicationRecord};

/// How long after a failed failover this host tries that instance again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// How many lease renewals are in flight at once.
const RENEWALS_AT_ONCE: usize = 32;

impl Manager {
    fn membership(&self) -> Option<&Membership> {
        self.membership.get()
    }

    /// The instances fenced by an earlier run, to start again once their
    /// leases are renewed.
    pub(super) fn load_fenced(&self, m: &Membership) {
        let names: Vec<String> = std::fs::read(self.layout.fenced())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        lock(&m.fenced).extend(names);
    }

    fn save_fenced(&self, m: &Membership) {
        let mut names: Vec<String> = lock(&m.fenced).iter().cloned().collect();
        names.sort();
        let path = self.layout.fenced();
        let written = if names.is_empty() {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            let bytes = serde_json::to_vec(&names).unwrap_or_default();
            crate::fsutil::atomic_write(&path, &bytes)
        };
        if let Err(e) = written {
            tracing::error!(error = %e, file = %path.display(), "cluster: cannot record the fenced instances");
        }
    }

    /// Renew this host's leases every heartbeat until `stop`, and fence the
    /// instances whose leases it could not renew in time. Its own loop, so
    /// a heartbeat or a list that hangs on a lost NATS server never delays
    /// a fence.
    pub(super) async fn lease_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(m) = self.membership() else {
            return;
        };
        let cfg = m.cluster.config().clone();
        let fence_at = fence_after(cfg.lease_ttl);
        // Renewed every heartbeat; fences looked for twice as often.
        let mut renewed: Option<Instant> = None;
        loop {
            if renewed.map_or(true, |at| at.elapsed() >= cfg.heartbeat) {
                renewed = Some(Instant::now());
                self.renew_leases(m, cfg.heartbeat).await;
            }
            let due: Vec<(String, Duration)> = {
                let fenced = lock(&m.fenced);
                let moving = lock(&m.moving);
                lock(&m.leases)
                    .iter()
                    .filter(|(name, l)| {
                        l.renewed.elapsed() >= fence_at
                            && !fenced.contains(*name)
                            && !moving.contains(*name)
                    })
                    .map(|(name, l)| (name.clone(), l.renewed.elapsed()))
                    .collect()
            };
            for (name, ago) in due {
                lock(&m.fenced).insert(name.clone());
                self.save_fenced(m);
                let me = self.clone();
                tokio::spawn(async move { me.fence(&name, ago).await });
            }
            tokio::select! {
                _ = tokio::time::sleep(cfg.heartbeat / 2) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One round of renewals, each given at most `within`: a lease renewed
    /// clears its fence; a lease another host holds now means this host's
    /// copy was taken over.
    async fn renew_leases(self: &Arc<Self>, m: &Membership, within: Duration) {
        let replicated: HashSet<String> = match self.store.replications(None) {
            Ok(r) => r.into_iter().map(|r| r.instance.to_string()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot read the replicated instances");
                return;
            }
        };
        // Leases of instances no longer replicated here (deleted, turned
        // off, stood down) are let go of; one still here only once its
        // claim names no replica, so no host takes it over meanwhile.
        // Instances being moved are the move's to hand over; those being
        // brought back here are renewed before their replication is on.
        let moving = lock(&m.moving).clone();
        let arriving = lock(&m.orphans).busy.clone();
        let replicated: HashSet<String> = replicated
            .into_iter()
            .chain(arriving)
            .filter(|n| !moving.contains(n))
            .collect();
        let gone: Vec<String> = lock(&m.leases)
            .keys()
            .filter(|n| !replicated.contains(*n) && !moving.contains(*n))
            .cloned()
            .collect();
        let mut kept = Vec::new();
        for name in gone {
            if let Ok(Some(rec)) = self.store.get_instance(&name) {
                let desired = self.desired_of(&rec, None, None);
                let published =
                    tokio::time::timeout(within, m.cluster.publish_desired(&name, &desired)).await;
                if !matches!(published, Ok(Ok(_))) {
                    kept.push(name);
                    continue;
                }
                lock(&m.published).insert(name.clone(), desired);
            }
            lock(&m.leases).remove(&name);
            if lock(&m.fenced).remove(&name) {
                self.save_fenced(m);
            }
            if let Ok(Err(e)) = tokio::time::timeout(within, m.cluster.release_lease(&name)).await {
                tracing::warn!(instance = %name, error = %e, "cluster: cannot let go of a lease");
            }
        }
        let asks: Vec<(String, Option<u64>)> = {
            let mut leases = lock(&m.leases);
            replicated
                .into_iter()
                .chain(kept)
                .map(|name| {
                    let held = leases.entry(name.clone()).or_insert(HeldLease {
                        revision: None,
                        renewed: Instant::now(),
                    });
                    (name, held.revision)
                })
                .collect()
        };
        let cluster = m.cluster.clone();
        let answers: Vec<_> = futures::stream::iter(asks)
            .map(|(name, revision)| {
                let cluster = cluster.clone();
                async move {
                    let answer =
                        tokio::time::timeout(within, cluster.renew_lease(&name, revision)).await;
                    (name, answer)
                }
            })
            .buffer_unordered(RENEWALS_AT_ONCE)
            .collect()
            .await;
        for (name, answer) in answers {
            match answer {
                Ok(Ok(revision)) => {
                    if let Some(held) = lock(&m.leases).get_mut(&name) {
                        held.revision = Some(revision);
                        held.renewed = Instant::now();
                    }
                    if lock(&m.fenced).contains(&name) {
                        let me = self.clone();
                        tokio::spawn(async move { me.unfence(&name).await });
                    }
                }
                Ok(Err(ClusterFailure::LeaseHeld { host, .. })) => {
                    lock(&m.leases).remove(&name);
                    let me = self.clone();
                    tokio::spawn(async move { me.stand_down(&name, &host).await });
                }
                Ok(Err(e)) => {
                    tracing::debug!(instance = %name, error = %e, "cluster: lease not renewed")
                }
                Err(_) => tracing::debug!(instance = %name, "cluster: lease renewal timed out"),
            }
        }
    }

    /// Stop an instance whose lease this host could not renew for `ago`.
    async fn fence(&self, name: &str, ago: Duration) {
        let stopped = self.stop_inner(name, &Actor::daemon()).await;
        self.audit(
            &Actor::daemon(),
            AuditAction::Fence,
            Some(name),
            stopped
                .map(|_| {
                    format!(
                        "stopped: this host could not renew its lease for {}; it starts again once it can, unless another host took it over",
                        crate::model::human::human_duration(ago)
                    )
                })
                .map_err(|e| format!("cannot stop it after its lease could not be renewed: {e}")),
        );
    }

    /// Start an instance fenced earlier, its lease renewed again.
    async fn unfence(&self, name: &str) {
        let Some(m) = self.membership() else {
            return;
        };
        if !lock(&m.fenced).remove(name) {
            return;
        }
        self.save_fenced(m);
        if matches!(self.store.get_instance(name), Ok(None)) {
            return;
        }
        let started = self.start(name, &Actor::daemon()).await;
        self.audit(
            &Actor::daemon(),
            AuditAction::Fence,
            Some(name),
            started
                .map(|_| "started again: its lease is renewed".to_string())
                .map_err(|e| format!("its lease is renewed but it does not start: {e}")),
        );
    }

    /// Another host runs `name` now (it took the lease over after this
    /// host's ran out): this host's copy is stopped and archived, and its
    /// record removed. Nothing is deleted unarchived.
    pub(super) async fn stand_down(&self, name: &str, host: &HostName) {
        let Some(m) = self.membership() else {
            return;
        };
        lock(&m.leases).remove(name);
        lock(&m.published).remove(name);
        if lock(&m.fenced).remove(name) {
            self.save_fenced(m);
        }
        let archived = self.delete_inner(name, false).await;
        self.audit(
            &Actor::daemon(),
            AuditAction::StandDown,
            Some(name),
            archived
                .map(|path| {
                    format!(
                        "host {host} runs it now (it took it over after this host's lease ran out); this host's copy is archived to {}",
                        path.map(|p| p.display().to_string()).unwrap_or_default()
                    )
                })
                .map_err(|e| format!("host {host} runs it now, but this host's copy cannot be archived and removed: {e}")),
        );
    }

    /// At start: every local instance whose claim says another host took
    /// it over from this one is stood down.
    pub async fn stand_down_taken_over(&self) {
        let Some(m) = self.membership() else {
            return;
        };
        let Ok(records) = self.store.list_instances() else {
            return;
        };
        let me = m.cluster.host();
        for rec in records {
            match m.cluster.owner(rec.name.as_str()).await {
                Ok(Some(c)) if &c.host != me && c.from.as_ref() == Some(me) => {
                    self.stand_down(rec.name.as_str(), &c.host).await
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: cannot check which instances were taken over");
                    return;
                }
            }
        }
    }

    /// What the cluster keeps of `rec`; `custom` is its custom domains
    /// (`None`: looked up).
    pub(super) fn desired_of(
        &self,
        rec: &InstanceRecord,
        replica: Option<ReplicaSpec>,
        custom: Option<&[String]>,
    ) -> Desired {
        let looked_up;
        let custom = match custom {
            Some(c) => c,
            None => {
                looked_up = self.store.domains(&rec.name).unwrap_or_default();
                &looked_up
            }
        };
        let mut domains: Vec<String> = custom.iter().map(|d| d.to_ascii_lowercase()).collect();
        domains.sort();
        domains.dedup();
        Desired {
            domain: rec
                .domain
                .as_ref()
                .map(|d| d.to_string().to_ascii_lowercase()),
            domains,
            stopped: rec.desired == DesiredState::Stopped,
            version: rec.version.to_string(),
            port: Some(rec.port),
            replica,
            max_body_bytes: rec.max_body_bytes,
            memory_max: rec.limits.memory_max.as_ref().map(|v| v.to_string()),
            cpu_quota: rec.limits.cpu_quota.as_ref().map(|v| v.to_string()),
            idle_timeout_secs: rec.idle_timeout.map(|t| t.as_secs()),
        }
    }

    /// Publish each local instance's desired state where it changed, in
    /// its claim: what another host needs to bring it back. A replica is
    /// named only once this host holds the instance's lease, so no host
    /// takes over an instance whose first lease is not written yet.
    pub(super) async fn publish_desired(&self, m: &Membership) {
        let Ok(records) = self.store.list_instances() else {
            return;
        };
        let replicas: HashMap<String, ReplicationRecord> = self
            .store
            .replications(None)
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.instance.to_string(), r))
            .collect();
        let custom = self.store.all_domains().unwrap_or_default();
        for rec in records {
            let name = rec.name.to_string();
            if lock(&m.moving).contains(&name) {
                // The move publishes what it hands over.
                continue;
            }
            let leased = lock(&m.leases)
                .get(&name)
                .is_some_and(|l| l.revision.is_some());
            let replica = replicas.get(&name).filter(|_| leased).map(|r| ReplicaSpec {
                target: r.target.to_text(),
                generation: r.generation.clone(),
            });
            let theirs = custom.get(&name).map(Vec::as_slice).unwrap_or(&[]);
            let desired = self.desired_of(&rec, replica, Some(theirs));
            if lock(&m.published).get(&name) == Some(&desired) {
                continue;
            }
            match m.cluster.publish_desired(&name, &desired).await {
                Ok(_) => {
                    lock(&m.published).insert(name, desired);
                }
                Err(e) => {
                    tracing::debug!(instance = %name, error = %e, "cluster: desired state not published yet")
                }
            }
        }
    }

    /// Look for other hosts' replicated instances whose leases ran out, and
    /// bring back those this host is the successor for (after a heartbeat
    /// without a lease), or any that nobody brought back for five.
    pub(super) fn find_orphans(self: &Arc<Self>, m: &Membership, hosts: &[(HostBeat, HostHealth)]) {
        let me = m.cluster.host().clone();
        let interval = m.cluster.config().heartbeat;
        let candidates: Vec<(String, Claim)> = {
            let (Ok(claims), Ok(leases)) = (m.elsewhere.claims.read(), m.elsewhere.leases.read())
            else {
                return;
            };
            claims
                .iter()
                .filter(|(name, c)| {
                    // Another host's without a lease (a failover), or this
                    // host's, handed over by a move.
                    (c.host != me || c.from.is_some())
                        && c.desired.as_ref().is_some_and(|d| d.replica.is_some())
                        && !leases.contains_key(*name)
                })
                .map(|(name, c)| (name.clone(), c.clone()))
                .collect()
        };
        let now = Instant::now();
        let mut orphans = lock(&m.orphans);
        let names: HashSet<&String> = candidates.iter().map(|(n, _)| n).collect();
        orphans.seen.retain(|n, _| names.contains(n));
        orphans.retry_after.retain(|_, t| *t > now);
        for (name, claim) in candidates {
            let since = *orphans.seen.entry(name.clone()).or_insert(now);
            if orphans.busy.contains(&name) || orphans.retry_after.contains_key(&name) {
                continue;
            }
            let waited = now.duration_since(since);
            let handed = claim.host == me;
            let mine = successor(hosts, &claim.host).is_some_and(|h| h.name == me);
            if !(handed || (mine && waited >= interval) || waited >= interval * 5) {
                continue;
            }
            if !matches!(self.store.get_instance(&name), Ok(None)) {
                continue;
            }
            orphans.busy.insert(name.clone());
            let me = self.clone();
            tokio::spawn(async move { me.fail_over(name, claim).await });
        }
    }

    /// Bring `name` back here from its replica: take its lease (the first
    /// host to do so wins), move its claim here, create it and restore its
    /// `data.db`; on any failure give the claim and the lease back.
    async fn fail_over(self: Arc<Self>, name: String, claim: Claim) {
        let Some(m) = self.membership() else {
            return;
        };
        let started = Instant::now();
        let outcome = self.fail_over_inner(m, &name, &claim).await;
        {
            let mut orphans = lock(&m.orphans);
            orphans.busy.remove(&name);
            if outcome.is_err() {
                orphans
                    .retry_after
                    .insert(name.clone(), Instant::now() + RETRY_AFTER);
            }
        }
        let detail = match outcome {
            Ok(false) => return,
            Ok(true) if claim.host == *m.cluster.host() => Ok(format!(
                "moved here from host {}: restored from its replica and started in {:.1} s",
                claim.from.as_ref().map(|h| h.as_str()).unwrap_or("-"),
                started.elapsed().as_secs_f64()
            )),
            Ok(true) => Ok(format!(
                "brought back from its replica after host {}'s lease ran out, in {:.1} s",
                claim.host,
                started.elapsed().as_secs_f64()
            )),
            Err(e) => Err(format!(
                "cannot bring it back from its replica after host {}'s lease ran out (tried again in {} s): {e}",
                claim.host,
                RETRY_AFTER.as_secs()
            )),
        };
        match &detail {
            Ok(d) => tracing::info!(instance = %name, "cluster: failover: {d}"),
            Err(e) => tracing::warn!(instance = %name, "cluster: failover: {e}"),
        }
        self.audit(&Actor::daemon(), AuditAction::Failover, Some(&name), detail);
    }

    /// The failover proper: false when another host took the lease first.
    async fn fail_over_inner(&self, m: &Membership, name: &str, claim: &Claim) -> Result<bool> {
        let me = m.cluster.host().clone();
        match m.cluster.take_lease(name).await {
            Ok(revision) => {
                lock(&m.leases).insert(
                    name.to_string(),
                    HeldLease {
                        revision: Some(revision),
                        renewed: Instant::now(),
                    },
                );
            }
            Err(ClusterFailure::LeaseHeld { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let release = || async {
            lock(&m.leases).remove(name);
            if let Err(e) = m.cluster.release_lease(name).await {
                tracing::warn!(instance = name, error = %e, "cluster: cannot let go of the lease of a failed failover");
            }
        };
        // The watches may lag: the claim as NATS has it now must still be
        // the lost host's, with a replica (not turned off meanwhile).
        let fresh = match m.cluster.owner(name).await {
            Ok(c) => c,
            Err(e) => {
                release().await;
                return Err(e.into());
            }
        };
        let fresh = fresh.filter(|c| {
            c.host == claim.host
                && c.from == claim.from
                && c.desired.as_ref().is_some_and(|d| d.replica.is_some())
        });
        let Some(desired) = fresh.and_then(|c| c.desired) else {
            release().await;
            return Ok(false);
        };
        let Some(replica) = desired.replica.clone() else {
            release().await;
            return Ok(false);
        };
        let give_back = |why: ManagerError| async move {
            release().await;
            why
        };
        // Handed over by a move, the claim is this host's already; if this
        // fails it goes back to the host that moved it.
        let giver = if claim.host == me {
            match &claim.from {
                Some(from) => from.clone(),
                None => return Ok(false),
            }
        } else {
            claim.host.clone()
        };
        if claim.host != me {
            if let Err(e) = m
                .cluster
                .move_claim(name, &claim.host, &me, Some(claim.host.clone()))
                .await
            {
                return Err(give_back(e.into()).await);
            }
        }
        if let Err(e) = self.bring_back(name, &desired, &replica).await {
            // The claim goes back first: removing what was made lets go of
            // the name only while it is this host's.
            if let Err(back) = m.cluster.move_claim(name, &me, &giver, None).await {
                tracing::warn!(instance = name, error = %back, "cluster: cannot give the claim of a failed failover back");
            }
            if !matches!(self.store.get_instance(name), Ok(None)) {
                // Whoever holds the claim now keeps it.
                if let Err(e) = self.remove_instance(name, true, false).await {
                    tracing::warn!(instance = name, error = %e, "cluster: cannot remove what a failed failover made");
                }
            }
            return Err(give_back(e).await);
        }
        Ok(true)
    }

    /// Restore `name`'s `data.db` from `replica` and create it here from
    /// that, as `desired` says: it is never served empty, not for a moment.
    /// It then replicates to the same target, as a new generation. Only
    /// `data.db` comes back: uploaded files and `auxiliary.db` (logs) are in
    /// backups, not in the replica.
    async fn bring_back(&self, name: &str, desired: &Desired, replica: &ReplicaSpec) -> Result<()> {
        InstanceName::parse(name)?;
        let target = Destination::parse(&replica.target)?;
        let version = semver::Version::parse(&desired.version).map_err(|e| {
            ManagerError::Invalid(format!("version {} of its claim: {e}", desired.version))
        })?;
        let location = crate::replication::replica_location(&target, &replica.generation);
        let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let staging = self
            .layout
            .instances()
            .join(format!(".failover-{name}-{stamp}"));
        let data = staging.join("pb_data");
        let binary = self.litestream_binary()?;
        let restored = self
            .restore_location_to(location, None, data.join("data.db"), binary)
            .await;
        let made = match restored {
            Ok(()) => {
                // The same port when it is free here: what reached the
                // instance directly still does.
                let port = desired.port.filter(|p| {
                    super::create::port_is_free(*p)
                        && self.store.used_ports().is_ok_and(|used| !used.contains(p))
                });
                let req = CreateRequest {
                    port: port.map(u32::from),
                    domain: desired.domain.clone(),
                    max_body_bytes: desired.max_body_bytes,
                    memory_max: desired.memory_max.clone(),
                    cpu_quota: desired.cpu_quota.clone(),
                    idle_timeout_secs: desired.idle_timeout_secs,
                    ..CreateRequest::named(
                        name,
                        BinaryChoice::Release(VersionRequest::Exact(version)),
                    )
                };
                let adopt = Adopt {
                    claim: NameClaim::none(),
                    data,
                };
                self.create_inner(req, &Actor::daemon(), None, Some(adopt))
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        };
        let leftover = staging.clone();
        let _ = tokio::task::spawn_blocking(move || super::files::remove_dir_if_exists(&leftover))
            .await;
        made?;
        // Its custom domains route here now; one that cannot (a domain this
        // host's router refuses) is said, and the instance serves on.
        for domain in &desired.domains {
            if let Err(e) = self.add_domain(name, domain, &Actor::daemon()).await {
                tracing::warn!(instance = %name, domain, error = %e, "failover: a custom domain does not route here");
            }
        }
        self.replicate(name, &replica.target, &Actor::daemon())
            .await?;
        if desired.stopped {
            self.stop(name, &Actor::daemon()).await?;
        }
        Ok(())
    }
}
