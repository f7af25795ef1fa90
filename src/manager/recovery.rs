//! Bringing the runtime in line with the store after a daemon start:
//! roll back half-made creates, finish or undo interrupted upgrades, adopt
//! live processes, start dead ones (but for sleeping ones, which stay
//! asleep; one found alive, its sleep cut short by the daemon's end, is
//! adopted and awake).

use crate::model::AuditAction;
use std::path::Path;

use super::marker::Marker;
use super::restore::RestoreMarker;
use super::switch::DeployMarker;
use super::upgrade::UpgradeMarker;
use super::{Actor, Manager, Result};
use crate::model::{DesiredState, Status};
use crate::runtime::Runtime;
use crate::store::{InstanceRecord, Phase};

/// How many instances a daemon start recovers at the same time.
const RECOVER_AT_ONCE: usize = 64;

impl Manager {
    /// Bring the runtime in line with the store after a daemon start:
    /// half-made creates are rolled back; instances that should run are
    /// adopted when their process is still alive (no restart) and started
    /// otherwise; instances that should be stopped are stopped.
    pub async fn recover(&self) -> Result<()> {
        self.end_interrupted_deploys();
        let records = self.store.list_instances()?;
        // Side by side, but a bounded number at a time: a future per
        // instance of a fleet of ten thousand, all at once, would take a
        // hundred megabytes the allocator keeps afterwards.
        futures::StreamExt::for_each_concurrent(
            futures::stream::iter(records),
            RECOVER_AT_ONCE,
            |rec| async move {
                let name = rec.name.clone();
                if let Err(e) = self.recover_one(rec, &Actor::daemon()).await {
                    tracing::error!(instance = %name, error = %e, "cannot recover instance");
                    self.audit(
                        &Actor::daemon(),
                        AuditAction::Recover,
                        Some(&name),
                        Err(e.to_string()),
                    );
                }
            },
        )
        .await;
        self.resume_replications().await;
        Ok(())
    }

    pub(super) async fn recover_one(&self, rec: InstanceRecord, actor: &Actor) -> Result<()> {
        let lock = self.lock_for(&rec.name);
        let _guard = lock.lock().await;
        let spec = self.spec(&rec);
        if rec.phase == Phase::Creating {
            if let Ok(Some(_)) = self.runtime.adopt(spec.clone()).await {
                let _ = self.runtime.stop(&spec.name).await;
            }
            self.roll_back_create(&rec).await;
            self.audit(
                actor,
                AuditAction::Create,
                Some(&rec.name),
                Err("rolled back: the daemon stopped in the middle of the create".to_string()),
            );
            return Ok(());
        }
        let rec = match RestoreMarker::read(&rec.dir) {
            Some(marker) => self.finish_interrupted_restore(rec, marker, actor).await?,
            None => rec,
        };
        let rec = match UpgradeMarker::read(Path::new(&rec.dir)) {
            Some(marker) => self.finish_interrupted_upgrade(rec, marker, actor).await?,
            None => rec,
        };
        let rec = match DeployMarker::read(Path::new(&rec.dir)) {
            Some(marker) => self.finish_interrupted_switch(rec, marker, actor).await?,
            None => rec,
        };
        let spec = self.spec(&rec);
        let adopted = self.runtime.adopt(spec.clone()).await?;
        match (rec.desired, adopted) {
            (DesiredState::Running, Some(pid)) => {
                tracing::info!(instance = %rec.name, pid, "adopted running instance");
                self.set_state(&rec.name, Status::Running, Some(pid), rec.restarts, None);
                self.audit(
                    actor,
                    AuditAction::Adopt,
                    Some(&rec.name),
                    Ok(format!("pid {pid}")),
                );
            }
            // Asleep: it stays asleep, and its route (put by the reconcile
            // that follows) wakes it.
            (DesiredState::Running, None) if rec.status == Status::Sleeping => {}
            (DesiredState::Running, None) => {
                self.set_state(&rec.name, Status::Starting, None, rec.restarts, None);
                self.runtime.start(spec.clone()).await?;
                match self.wait_healthy(&spec).await {
                    Ok(pid) => {
                        self.set_state(&rec.name, Status::Running, Some(pid), rec.restarts, None);
                        self.audit(
                            actor,
                            AuditAction::Start,
                            Some(&rec.name),
                            Ok(format!("pid {pid} (was not running at daemon start)")),
                        );
                    }
                    Err(e) => {
                        self.set_state(
                            &rec.name,
                            Status::Failed,
                            None,
                            rec.restarts,
                            Some(&e.to_string()),
                        );
                        return Err(e);
                    }
                }
            }
            (DesiredState::Stopped, Some(_)) => {
                self.runtime.stop(&spec.name).await?;
                self.set_state(&rec.name, Status::Stopped, None, rec.restarts, None);
            }
            (DesiredState::Stopped, None) => {
                if rec.status != Status::Stopped {
                    self.set_state(&rec.name, Status::Stopped, None, rec.restarts, None);
                }
            }
        }
        Ok(())
    }
}
