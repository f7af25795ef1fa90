//! Switching an instance to another PocketBase: snapshot, switch, health
//! gate, roll back; and finishing or undoing an upgrade that a daemon stop
//! interrupted (the marker file in the instance directory).

use crate::model::AuditAction;
use std::path::{Path, PathBuf};
use std::time::Duration;

use semver::Version;

use super::install::BinaryChoice;
use super::marker::Marker;
use super::restore::put_archive_in_place;
use super::snapshot::restore_dir;
use super::{Actor, Manager, ManagerError, Result};
use crate::model::{BackupTrigger, DesiredState, Destination, Status};
use crate::pocketbase;
use crate::runtime::Runtime;
use crate::store::InstanceRecord;

/// How many pre-upgrade backups an instance keeps.
const KEEP_PRE_UPGRADE: usize = 3;

/// Put the data an upgrade started from back: from its pre-upgrade backup
/// (an archive), or from a copied `pb_data` directory, which is what
/// upgrade markers written before upgrades took backups point to.
pub(super) fn put_snapshot_back(snapshot: &Path, dir: &Path, data_dir: &Path) -> Result<()> {
    if snapshot.is_dir() {
        restore_dir(snapshot, data_dir).map_err(|source| ManagerError::Io {
            context: format!("cannot copy {} back", snapshot.display()),
            source,
        })
    } else {
        put_archive_in_place(dir, snapshot)
    }
}

impl Manager {
    /// Switch an instance to another PocketBase: snapshot `pb_data`, stop,
    /// switch the binary, start, wait for health; if it does not become
    /// healthy, restore the snapshot and the old binary and say so.
    pub async fn upgrade(
        &self,
        name: &str,
        to: BinaryChoice,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        let result = self.upgrade_inner(name, to, actor).await;
        self.audited(actor, AuditAction::Upgrade, name, result, |r| {
            format!("now at {}", r.version)
        })
    }

    pub(super) async fn upgrade_inner(
        &self,
        name: &str,
        to: BinaryChoice,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        // Download first, outside the lock: the instance keeps running while
        // the new release arrives, and a download error changes nothing.
        self.get(name)?;
        let installed = self.install(&to).await?;
        let lock = self.lock_for(name);
        let _guard = lock.lock().await;
        let old = self.get(name)?;
        if old.release_binary {
            return Err(ManagerError::Conflict(format!(
                "{name} runs a binary built from its repository (backend/go.mod): its PocketBase version is the one its go.mod requires; change it there and deploy again"
            )));
        }
        if old.binary_path == installed.binary {
            return Err(ManagerError::Conflict(format!(
                "{name} already runs {} ({})",
                old.version,
                installed.binary.display()
            )));
        }
        let instance = old.name.clone();
        let was_running = old.desired == DesiredState::Running;
        self.runtime.stop(&instance).await?;
        self.set_state(name, Status::Stopped, None, old.restarts, None);
        let data_dir = self.spec(&old).data_dir();
        // The snapshot is a backup like any other, taken with the instance
        // stopped: listed by `backup list` (trigger `pre-upgrade`), and
        // restorable later with its version.
        let destination = Destination::Local(self.layout.backups().join(name));
        let snapshot = match self
            .backup_locked(&old, &destination, BackupTrigger::PreUpgrade)
            .await
        {
            Ok(b) => b.location,
            Err(e) => {
                if was_running {
                    let _ = self.runtime.start(self.spec(&old)).await;
                }
                return Err(ManagerError::Conflict(format!(
                    "no upgrade of {name}: its pre-upgrade backup failed ({e}); nothing was changed"
                )));
            }
        };
        let mut new = old.clone();
        new.version = installed.version.clone();
        new.binary_path = installed.binary.clone();
        new.desired = DesiredState::Running;
        // Should the daemon die from here on, its next start finds this
        // marker and finishes the upgrade or rolls it back (`recover`).
        let marker = UpgradeMarker {
            from_version: old.version.clone(),
            from_binary: old.binary_path.clone(),
            to_version: new.version.clone(),
            snapshot: snapshot.clone(),
            was_running,
        };
        marker.write(&old.dir).map_err(|source| ManagerError::Io {
            context: format!("cannot record the upgrade of {name}"),
            source,
        })?;
        self.store.update_config(&new, &actor.0)?;
        let spec = self.spec(&new);
        self.set_state(name, Status::Starting, None, old.restarts, None);
        let outcome = match self.runtime.start(spec.clone()).await {
            Ok(_) => self.wait_healthy(&spec).await,
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(pid) => {
                UpgradeMarker::clear(&old.dir);
                self.record_unit_hash(name);
                self.prune_backups_of(name, BackupTrigger::PreUpgrade, KEEP_PRE_UPGRADE)
                    .await;
                if was_running {
                    self.set_state(name, Status::Running, Some(pid), old.restarts, None);
                } else {
                    // The new version was started only to prove it works: a
                    // stopped instance stays stopped after its upgrade.
                    self.runtime.stop(&instance).await?;
                    new.desired = DesiredState::Stopped;
                    self.store.update_config(&new, &actor.0)?;
                    self.set_state(name, Status::Stopped, None, old.restarts, None);
                }
                self.get(name)
            }
            Err(e) => {
                let reason = match &e {
                    ManagerError::StartFailed { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                tracing::warn!(instance = name, %reason, "upgrade failed, rolling back");
                let _ = self.runtime.stop(&instance).await;
                let restored = tokio::task::spawn_blocking({
                    let (snap, dir) = (snapshot.clone(), old.dir.clone());
                    move || put_snapshot_back(&snap, &dir, &data_dir)
                })
                .await;
                if !matches!(restored, Ok(Ok(()))) {
                    let why = match restored {
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => e.to_string(),
                        Ok(Ok(())) => String::new(),
                    };
                    let msg = format!(
                        "upgrade of {name} failed ({reason}) and its data could not be restored automatically ({why}): the pre-upgrade backup is at {}",
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
                self.store.update_config(&back, &actor.0)?;
                UpgradeMarker::clear(&old.dir);
                self.give_to_unit_user(&old.dir).await?;
                if was_running {
                    let old_spec = self.spec(&back);
                    self.runtime.start(old_spec.clone()).await?;
                    let pid = self.wait_healthy(&old_spec).await?;
                    self.set_state(name, Status::Running, Some(pid), old.restarts, None);
                } else {
                    self.set_state(name, Status::Stopped, None, old.restarts, None);
                }
                Err(ManagerError::UpgradeRolledBack {
                    name: name.to_string(),
                    from: old.version.to_string(),
                    to: new.version.to_string(),
                    reason,
                })
            }
        }
    }

    /// The daemon stopped in the middle of an upgrade. If the new version
    /// runs and answers, the upgrade is done; otherwise the data is put back
    /// from the snapshot and the old version is recorded again. Returns the
    /// record to recover with.
    pub(super) async fn finish_interrupted_upgrade(
        &self,
        mut rec: InstanceRecord,
        marker: UpgradeMarker,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        let spec = self.spec(&rec);
        if let Some(_pid) = self.runtime.adopt(spec.clone()).await? {
            if rec.version == marker.to_version
                && pocketbase::is_healthy(&self.http, rec.port, Duration::from_secs(3)).await
            {
                UpgradeMarker::clear(&rec.dir);
                self.audit(
                    actor,
                    AuditAction::Upgrade,
                    Some(&rec.name),
                    Ok(format!(
                        "now at {} (finished after a daemon restart)",
                        rec.version
                    )),
                );
                return Ok(rec);
            }
            self.runtime.stop(&spec.name).await?;
        }
        let (snapshot, dir, data_dir) = (marker.snapshot.clone(), rec.dir.clone(), spec.data_dir());
        tokio::task::spawn_blocking(move || put_snapshot_back(&snapshot, &dir, &data_dir))
            .await
            .map_err(|e| ManagerError::Internal(format!("restore task failed: {e}")))?
            .map_err(|e| {
                ManagerError::Internal(format!(
                    "the upgrade of {} was interrupted and its pre-upgrade backup {} cannot be put back: {e}",
                    rec.name,
                    marker.snapshot.display()
                ))
            })?;
        self.give_to_unit_user(&rec.dir).await?;
        rec.version = marker.from_version.clone();
        rec.binary_path = marker.from_binary.clone();
        rec.desired = if marker.was_running {
            DesiredState::Running
        } else {
            DesiredState::Stopped
        };
        self.store.update_config(&rec, &actor.0)?;
        UpgradeMarker::clear(&rec.dir);
        self.audit(
            actor,
            AuditAction::Upgrade,
            Some(&rec.name),
            Err(format!(
                "the upgrade to {} was interrupted by a daemon stop: rolled back to {} with its data as before",
                marker.to_version, marker.from_version
            )),
        );
        Ok(rec)
    }
}

/// An upgrade in progress, recorded in the instance directory while the
/// binary is switched, so that a daemon that dies in the middle can finish
/// or undo it on its next start.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct UpgradeMarker {
    from_version: Version,
    from_binary: PathBuf,
    to_version: Version,
    /// The pre-upgrade backup (a `.zip`), or a copy of `pb_data` (a
    /// directory) in markers from before upgrades took backups.
    snapshot: PathBuf,
    was_running: bool,
}

impl Marker for UpgradeMarker {
    const FILE: &'static str = "upgrade-in-progress.json";
    const WHAT: &'static str = "upgrade";
}
