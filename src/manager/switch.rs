//! Switching an instance to a release (after a deploy's build, or for a
//! rollback): hold its route, stop it, back `pb_data` up, switch the
//! record, start it (migrations run), wait for health; on any failure put
//! the backup and the previous release back. A daemon that dies in the
//! middle finds `deploy-in-progress.json` and finishes or undoes it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::deploy::{log_line, releases_on_disk, ReleaseInfo};
use super::marker::Marker;
use super::restore::put_archive_in_place;
use super::{Actor, Manager, ManagerError, Result};
use crate::model::deploy::releases_to_prune;
use crate::model::{AuditAction, BackupTrigger, DesiredState, Destination, ReleaseName, Status};
use crate::pocketbase;
use crate::runtime::Runtime;
use crate::store::InstanceRecord;

/// How many pre-deploy backups an instance keeps.
const KEEP_PRE_DEPLOY: usize = 3;

impl Manager {
    /// Whether the embedded proxy should hold an instance's requests.
    pub(super) fn is_held(&self, name: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    pub(super) async fn hold(&self, name: &str, on: bool) {
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if on {
                held.insert(name.to_string());
            } else {
                held.remove(name);
            }
        }
        self.sync_route_now(name).await;
    }

    /// Switch `name` to `release` (described by `info`), health-gated.
    /// A `fresh` release (just built) that fails is removed; a release
    /// rolled back to stays.
    pub(super) async fn switch_release(
        &self,
        name: &str,
        release: &ReleaseName,
        info: &ReleaseInfo,
        fresh: bool,
        log: &Path,
    ) -> Result<()> {
        let lock = self.lock_for(name);
        let _guard = lock.lock().await;
        let old = self.get(name)?;
        let was_running = old.desired == DesiredState::Running;
        let release_dir = self.layout.release_dir(&old.dir, release);
        let mut new = old.clone();
        new.release = Some(release.clone());
        new.release_binary = info.release_binary;
        new.binary_path = info.binary.clone();
        new.version = info.version.clone();
        new.desired = DesiredState::Running;
        if !new.binary_path.is_file() {
            return Err(ManagerError::Invalid(format!(
                "the binary of release {release} is gone ({})",
                new.binary_path.display()
            )));
        }

        log_line(
            log,
            "switching: new requests wait while the instance restarts",
        );
        self.hold(name, true).await;
        let result = self.switch_held(&old, &new, was_running, log).await;
        self.hold(name, false).await;
        if result.is_ok() {
            self.prune_releases(&old.dir, Some(release), log);
            self.prune_backups_of(name, BackupTrigger::PreDeploy, KEEP_PRE_DEPLOY)
                .await;
        } else if fresh {
            // The release that failed is not kept as a rollback target.
            let _ = std::fs::remove_dir_all(&release_dir);
        }
        result
    }

    async fn switch_held(
        &self,
        old: &InstanceRecord,
        new: &InstanceRecord,
        was_running: bool,
        log: &Path,
    ) -> Result<()> {
        let name = old.name.as_str();
        self.runtime.stop(&old.name).await?;
        self.set_state(name, Status::Stopped, None, old.restarts, None);
        // Taken with the instance stopped, so it holds every write: what a
        // failed switch puts back.
        let destination = Destination::Local(self.layout.backups().join(name));
        let snapshot = match self
            .backup_locked(old, &destination, BackupTrigger::PreDeploy)
            .await
        {
            Ok(b) => b.location,
            Err(e) => {
                if was_running {
                    let _ = self.start_and_wait(old).await;
                }
                return Err(ManagerError::Conflict(format!(
                    "the pre-deploy backup of {name} failed ({e}); nothing was switched"
                )));
            }
        };
        log_line(log, &format!("backup of pb_data: {}", snapshot.display()));
        let marker = DeployMarker {
            from: old.release.as_ref().map(|r| r.to_string()),
            from_binary: old.binary_path.clone(),
            from_version: old.version.to_string(),
            from_release_binary: old.release_binary,
            to: new.release.as_ref().map(|r| r.to_string()),
            snapshot: snapshot.clone(),
            was_running,
        };
        marker.write(&old.dir).map_err(|source| ManagerError::Io {
            context: format!("cannot record the switch of {name}"),
            source,
        })?;
        self.store.update_config(new, "deploy")?;
        match self.start_and_wait(new).await {
            Ok(pid) => {
                DeployMarker::clear(&old.dir);
                self.record_unit_hash(name);
                log_line(log, &format!("healthy (pid {pid})"));
                if !was_running {
                    // Started only to prove it works: a stopped instance
                    // stays stopped.
                    self.runtime.stop(&old.name).await?;
                    let mut stopped = new.clone();
                    stopped.desired = DesiredState::Stopped;
                    self.store.update_config(&stopped, "deploy")?;
                    self.set_state(name, Status::Stopped, None, old.restarts, None);
                }
                Ok(())
            }
            Err(e) => {
                let reason = match &e {
                    ManagerError::StartFailed {
                        reason, log_tail, ..
                    } => {
                        for line in log_tail {
                            log_line(log, &format!("  | {line}"));
                        }
                        format!("the new release did not become healthy: {reason}")
                    }
                    other => other.to_string(),
                };
                log_line(
                    log,
                    &format!("{reason}; putting the previous release and pb_data back"),
                );
                let _ = self.runtime.stop(&old.name).await;
                self.put_release_back(old, &snapshot, was_running).await?;
                DeployMarker::clear(&old.dir);
                log_line(log, "the previous release serves again");
                Err(ManagerError::Conflict(reason))
            }
        }
    }

    /// Start an instance as its record says and wait for health.
    async fn start_and_wait(&self, rec: &InstanceRecord) -> Result<u32> {
        let spec = self.spec(rec);
        self.set_state(
            rec.name.as_str(),
            Status::Starting,
            None,
            rec.restarts,
            None,
        );
        self.runtime.start(spec.clone()).await?;
        let pid = self.wait_healthy(&spec).await?;
        self.set_state(
            rec.name.as_str(),
            Status::Running,
            Some(pid),
            rec.restarts,
            None,
        );
        Ok(pid)
    }

    /// Put `pb_data` from `snapshot` and the record `old` back, and start
    /// it if it ran.
    async fn put_release_back(
        &self,
        old: &InstanceRecord,
        snapshot: &Path,
        was_running: bool,
    ) -> Result<()> {
        let name = old.name.as_str();
        let restored = tokio::task::spawn_blocking({
            let (snap, dir) = (snapshot.to_path_buf(), old.dir.clone());
            move || put_archive_in_place(&dir, &snap)
        })
        .await
        .map_err(|e| ManagerError::Internal(format!("restore task failed: {e}")))?;
        if let Err(e) = restored {
            let msg = format!(
                "the switch of {name} failed and its data could not be put back automatically ({e}): the pre-deploy backup is at {}",
                snapshot.display()
            );
            self.set_state(name, Status::Failed, None, old.restarts, Some(&msg));
            return Err(ManagerError::Internal(msg));
        }
        let mut back = old.clone();
        back.desired = if was_running {
            DesiredState::Running
        } else {
            DesiredState::Stopped
        };
        self.store.update_config(&back, "deploy")?;
        self.give_to_unit_user(&old.dir).await?;
        if was_running {
            self.start_and_wait(&back).await?;
        } else {
            self.set_state(name, Status::Stopped, None, old.restarts, None);
        }
        Ok(())
    }

    /// Remove all but the newest releases (never the current one).
    fn prune_releases(&self, dir: &Path, current: Option<&ReleaseName>, log: &Path) {
        let root = self.layout.app_releases(dir);
        let all = releases_on_disk(&root);
        for gone in releases_to_prune(&all, current, None, self.cfg.deploy.keep_releases + 1) {
            match std::fs::remove_dir_all(root.join(gone.as_str())) {
                Ok(()) => log_line(log, &format!("pruned the old release {gone}")),
                Err(e) => {
                    tracing::warn!(release = %gone, error = %e, "cannot prune an old release")
                }
            }
        }
    }

    /// The daemon stopped in the middle of a switch: if the new release
    /// runs and answers, the switch is done; otherwise `pb_data` and the
    /// previous release are put back.
    pub(super) async fn finish_interrupted_switch(
        &self,
        rec: InstanceRecord,
        marker: DeployMarker,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        let spec = self.spec(&rec);
        let on_new = rec.release.as_ref().map(|r| r.to_string()) == marker.to;
        if on_new {
            if let Some(_pid) = self.runtime.adopt(spec.clone()).await? {
                if pocketbase::is_healthy(&self.http, rec.port, Duration::from_secs(3)).await {
                    DeployMarker::clear(&rec.dir);
                    self.end_switching_deploys(&rec, Ok(()));
                    self.audit(
                        actor,
                        AuditAction::Deploy,
                        Some(&rec.name),
                        Ok(format!(
                            "{} serves (the switch finished after a daemon restart)",
                            marker.to.clone().unwrap_or_default()
                        )),
                    );
                    return Ok(rec);
                }
                self.runtime.stop(&spec.name).await?;
            }
        }
        let mut old = rec.clone();
        old.release = match &marker.from {
            Some(r) => {
                Some(ReleaseName::parse(r).map_err(|e| ManagerError::Internal(e.to_string()))?)
            }
            None => None,
        };
        old.binary_path = marker.from_binary.clone();
        old.version = crate::model::version::Version::parse(&marker.from_version)
            .map_err(|e| ManagerError::Internal(e.to_string()))?;
        old.release_binary = marker.from_release_binary;
        let (snapshot, dir) = (marker.snapshot.clone(), rec.dir.clone());
        tokio::task::spawn_blocking(move || put_archive_in_place(&dir, &snapshot))
            .await
            .map_err(|e| ManagerError::Internal(format!("restore task failed: {e}")))??;
        old.desired = if marker.was_running {
            DesiredState::Running
        } else {
            DesiredState::Stopped
        };
        self.store.update_config(&old, &actor.0)?;
        self.give_to_unit_user(&rec.dir).await?;
        DeployMarker::clear(&rec.dir);
        self.end_switching_deploys(&rec, Err("the daemon stopped during the switch: the previous release and pb_data were put back".into()));
        self.audit(
            actor,
            AuditAction::Deploy,
            Some(&rec.name),
            Err(format!(
                "the switch to {} was interrupted by a daemon stop: the previous release and its data were put back",
                marker.to.clone().unwrap_or_default()
            )),
        );
        Ok(old)
    }

    /// A deploy found `switching` at daemon start: with its marker, the
    /// instance's recovery finishes or undoes the switch; without one the
    /// switch had ended, and the record says which release won.
    pub(super) fn settle_unmarked_switch(&self, d: &crate::store::DeployRecord) {
        let Ok(rec) = self.get(d.instance.as_str()) else {
            return;
        };
        if DeployMarker::read(&rec.dir).is_some() {
            return;
        }
        let won = d.release.is_some() && rec.release == d.release;
        let result = if won {
            Ok(())
        } else {
            Err("the daemon stopped during the switch; the previous release serves".into())
        };
        self.end_switching_deploys(&rec, result);
    }

    /// Mark an instance's deploys stuck in `switching` as ended.
    fn end_switching_deploys(&self, rec: &InstanceRecord, result: Result<(), String>) {
        let Ok(unfinished) = self.store.unfinished_deploys() else {
            return;
        };
        for mut d in unfinished.into_iter().filter(|d| d.instance == rec.name) {
            let log = self.layout.deploy_log(&rec.dir, d.id);
            match &result {
                Ok(()) => {
                    d.status = crate::model::DeployStatus::Succeeded;
                    log_line(
                        &log,
                        "succeeded (the switch finished after a daemon restart)",
                    );
                }
                Err(why) => {
                    d.status = crate::model::DeployStatus::Failed;
                    d.reason = Some(why.clone());
                    log_line(&log, &format!("failed: {why}"));
                }
            }
            d.finished_at = Some(chrono::Utc::now());
            let _ = self.store.update_deploy(&d);
        }
    }
}

/// A switch in progress, recorded in the instance directory.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct DeployMarker {
    from: Option<String>,
    from_binary: PathBuf,
    from_version: String,
    from_release_binary: bool,
    to: Option<String>,
    /// The pre-deploy backup (a `.zip`).
    snapshot: PathBuf,
    was_running: bool,
}

impl Marker for DeployMarker {
    const FILE: &'static str = "deploy-in-progress.json";
    const WHAT: &'static str = "deploy";
}
