//! Planned moves in a cluster: `move NAME --to HOST` and `host drain
//! NAME`. A move stops the instance (its route answers 503 meanwhile, so
//! no write is acknowledged and then lost), waits until its replica holds
//! exactly what the stopped `data.db` holds, stops its Litestream, hands
//! the claim to the target and lets go of the lease. The target sees a
//! claim of its own without an instance and brings it back from the
//! replica, as a failover does ([`super::failover`]); once it serves, this
//! host archives its copy. A target that fails gives the claim back, and
//! the instance starts here again as it was.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::cluster::lock;
use super::{Actor, Manager, ManagerError, Result};
use crate::cluster::{ClusterFailure, Forwarded};
use crate::model::cluster::{HostHealth, HostName, ReplicaSpec};
use crate::model::{AuditAction, DesiredState};
use crate::store::InstanceRecord;

/// How long a move waits for the replica to catch up with the stopped
/// instance.
const SYNC_WITHIN: Duration = Duration::from_secs(60);

/// How long a move waits for the target host to serve the instance.
const SERVED_WITHIN: Duration = Duration::from_secs(180);

/// What a drain did with each instance of its host.
#[derive(Debug, Clone, Default)]
pub struct DrainReport {
    /// Moved, and where to.
    pub moved: Vec<(String, HostName)>,
    /// Not moved, and why (not replicated, no host fits, the move failed).
    pub left: Vec<(String, String)>,
}

impl Manager {
    /// Move `name`, an instance of this host, to host `to`: nothing
    /// acknowledged is lost. Its record as the target has it.
    pub async fn move_instance(&self, name: &str, to: &str, actor: &Actor) -> Result<String> {
        let started = Instant::now();
        let result = self.move_inner(name, to).await;
        self.audited(actor, AuditAction::Move, name, result, |(to, archive)| {
            format!(
                "moved to host {to} in {:.1} s; this host's copy is archived to {archive}",
                started.elapsed().as_secs_f64()
            )
        })
        .map(|(to, _)| to.to_string())
    }

    async fn move_inner(&self, name: &str, to: &str) -> Result<(HostName, String)> {
        let m = self
            .membership
            .get()
            .ok_or(ManagerError::Cluster(ClusterFailure::NotClustered))?;
        let me = m.cluster.host().clone();
        let to = HostName::parse(to).map_err(|e| ManagerError::Invalid(e.to_string()))?;
        let rec = self.get(name)?;
        if to == me {
            return Err(ManagerError::Invalid(format!(
                "{name} is on host {me} already"
            )));
        }
        let hosts = m.cluster.hosts().await?;
        match hosts.iter().find(|(h, _)| h.name == to) {
            Some((_, HostHealth::Up)) => {}
            Some((_, health)) => {
                return Err(ManagerError::Conflict(format!(
                    "host {to} is {}: move to a host that is up (see `pockestrator hosts`)",
                    health.as_str()
                )))
            }
            None => {
                return Err(ManagerError::Cluster(ClusterFailure::UnknownHost(
                    to.to_string(),
                )))
            }
        }
        let Some(replication) = self.store.replications(Some(&rec.name))?.into_iter().next() else {
            return Err(ManagerError::Conflict(format!(
                "{name} is not replicated: a move brings it up on host {to} from its replica; turn it on first with `pockestrator replicate {name} --to URL` (a target both hosts reach)"
            )));
        };
        if crate::replication::generation_location(&replication.target, "g").is_none() {
            return Err(ManagerError::Conflict(format!(
                "{name} replicates to a NATS object store, which holds one database's history: replicate it to s3:// or a shared file:// target to move it"
            )));
        }
        if !lock(&m.moving).insert(name.to_string()) {
            return Err(ManagerError::Conflict(format!(
                "{name} is being moved already"
            )));
        }
        let outcome = self.hand_over(&rec, &replication, &me, &to).await;
        lock(&m.moving).remove(name);
        outcome
    }

    /// The move proper, `name` marked as moving (not renewed, not fenced).
    async fn hand_over(
        &self,
        rec: &InstanceRecord,
        replication: &crate::store::ReplicationRecord,
        me: &HostName,
        to: &HostName,
    ) -> Result<(HostName, String)> {
        let m = self.membership.get().expect("in a cluster");
        let name = rec.name.to_string();
        let was_running = rec.desired == DesiredState::Running;
        // 1. No more writes: the route answers 503 until the target serves.
        self.stop_inner(&name, &Actor::daemon()).await?;
        // 2. The replica holds all of it.
        let undo = |why: ManagerError| async move {
            self.resume_replication(rec).await;
            if was_running {
                if let Err(e) = self.start_inner(rec.name.as_str(), &Actor::daemon()).await {
                    tracing::warn!(instance = %rec.name, error = %e, "move: cannot start the instance again");
                }
            }
            why
        };
        if let Err(e) = self.wait_replica_synced(rec).await {
            return Err(undo(e).await);
        }
        self.stop_replication(rec).await;
        // 3. Hand over: the desired state with the replica, the claim to the
        // target, the lease let go of.
        let fresh = self.get(&name)?;
        let mut desired = self.desired_of(
            &fresh,
            Some(ReplicaSpec {
                target: replication.target.to_text(),
                generation: replication.generation.clone(),
            }),
            None,
        );
        // Stopped by the move itself: it runs there as it ran here.
        desired.stopped = !was_running;
        let handed = async {
            m.cluster.publish_desired(&name, &desired).await?;
            m.cluster
                .move_claim(&name, me, to, Some(me.clone()))
                .await?;
            Ok::<_, ClusterFailure>(())
        }
        .await;
        if let Err(e) = handed {
            return Err(undo(e.into()).await);
        }
        lock(&m.published).remove(&name);
        lock(&m.leases).remove(&name);
        if let Err(e) = m.cluster.release_lease(&name).await {
            tracing::warn!(instance = %name, error = %e, "move: cannot let go of the lease; the target takes it when it runs out");
        }
        // 4. Until the target serves it, or gives the claim back.
        match self.wait_served(&name, me, to).await {
            Ok(()) => {}
            Err(e) => {
                // Given back (or never taken): this host's again.
                let _ = m.cluster.move_claim(&name, to, me, None).await;
                return Err(undo(e).await);
            }
        }
        // 5. This host's copy, archived.
        let archive = self.delete_inner(&name, false).await?;
        Ok((
            to.clone(),
            archive.map(|p| p.display().to_string()).unwrap_or_default(),
        ))
    }

    /// Wait until the replica of the stopped `rec` holds what its
    /// `data.db` holds (Litestream ships the last changes within a second
    /// or so).
    async fn wait_replica_synced(&self, rec: &InstanceRecord) -> Result<()> {
        let local = self.spec(rec).data_dir().join("data.db");
        let want = {
            let local = local.clone();
            tokio::task::spawn_blocking(move || crate::store::content_digest(&local))
                .await
                .map_err(|e| ManagerError::Internal(e.to_string()))??
        };
        let deadline = Instant::now() + SYNC_WITHIN;
        let staging = self.layout.instances().join(format!(
            ".move-check-{}-{}",
            rec.name,
            Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        ));
        let outcome = loop {
            let last;
            let out = staging.join("data.db");
            let _ = std::fs::remove_dir_all(&staging);
            match self.restore_replica_to(&rec.name, None, out.clone()).await {
                Ok(()) => {
                    let got =
                        tokio::task::spawn_blocking(move || crate::store::content_digest(&out))
                            .await
                            .map_err(|e| ManagerError::Internal(e.to_string()))?;
                    match got {
                        Ok(d) if d == want => break Ok(()),
                        Ok(_) => last = "it does not hold the last changes yet".to_string(),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                break Err(ManagerError::Conflict(format!(
                    "the replica of {} did not catch up with it within {} s ({last}): nothing was moved",
                    rec.name,
                    SYNC_WITHIN.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let _ = std::fs::remove_dir_all(&staging);
        outcome
    }

    /// Wait until host `to` answers for `name` with it running, or the
    /// claim came back to this host (the target failed).
    async fn wait_served(&self, name: &str, me: &HostName, to: &HostName) -> Result<()> {
        let m = self.membership.get().expect("in a cluster");
        let deadline = Instant::now() + SERVED_WITHIN;
        loop {
            if let Ok(Some(c)) = m.cluster.owner(name).await {
                if &c.host == me {
                    return Err(ManagerError::Conflict(format!(
                        "host {to} could not bring {name} up (see its audit log); it runs here again"
                    )));
                }
            }
            let asked = self
                .ask(
                    to,
                    Forwarded {
                        method: "GET".into(),
                        path_and_query: format!("/api/v1/instances/{name}"),
                        content_type: None,
                        body: Default::default(),
                        actor: "daemon".into(),
                        from: me.clone(),
                    },
                )
                .await;
            if let Ok(answer) = asked {
                let status = serde_json::from_slice::<serde_json::Value>(&answer.body)
                    .ok()
                    .and_then(|v| v["status"].as_str().map(str::to_string));
                if answer.status == 200
                    && matches!(status.as_deref(), Some("running" | "stopped" | "sleeping"))
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(ManagerError::Conflict(format!(
                    "host {to} did not serve {name} within {} s",
                    SERVED_WITHIN.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Move every instance of this host elsewhere (each to the host
    /// placement picks), and take no new ones meanwhile and after. What
    /// cannot move (not replicated, no host fits, a failed move) is left,
    /// with the reason.
    pub async fn drain(&self, actor: &Actor) -> Result<DrainReport> {
        let m = self
            .membership
            .get()
            .ok_or(ManagerError::Cluster(ClusterFailure::NotClustered))?;
        m.draining.store(true, std::sync::atomic::Ordering::Relaxed);
        // Said at once, so no host places anything here meanwhile.
        let _ = m.cluster.beat(&self.host_beat(m)).await;
        let mut report = DrainReport::default();
        let replicated: std::collections::HashSet<String> = self
            .store
            .replications(None)?
            .into_iter()
            .map(|r| r.instance.to_string())
            .collect();
        for rec in self.store.list_instances()? {
            let name = rec.name.to_string();
            if !replicated.contains(&name) {
                report.left.push((
                    name.clone(),
                    format!("not replicated: `pockestrator replicate {name} --to URL`, then drain again"),
                ));
                continue;
            }
            let to = match self.placement(None, None, &[]).await {
                Ok(Some(h)) if &h != m.cluster.host() => h,
                Ok(_) => {
                    report
                        .left
                        .push((name, "no other host that is up fits".into()));
                    continue;
                }
                Err(e) => {
                    report.left.push((name, e.to_string()));
                    continue;
                }
            };
            match self.move_instance(&name, to.as_str(), actor).await {
                Ok(_) => report.moved.push((name, to)),
                Err(e) => report.left.push((name, e.to_string())),
            }
        }
        self.audit(
            actor,
            AuditAction::Drain,
            None,
            Ok(format!(
                "{} moved, {} left",
                report.moved.len(),
                report.left.len()
            )),
        );
        Ok(report)
    }

    /// Take new instances again after a drain.
    pub fn undrain(&self) -> Result<()> {
        let m = self
            .membership
            .get()
            .ok_or(ManagerError::Cluster(ClusterFailure::NotClustered))?;
        m.draining
            .store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
