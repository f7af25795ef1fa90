//! The systemd runtime's part of an instance: files owned by the unit
//! user, the unit hash in the store, drift checks and repairs, resource
//! limits.

use crate::model::AuditAction;
use std::path::Path;

use super::{Actor, Manager, ManagerError, Result};
use crate::router::DriftKind;
use crate::runtime::AnyRuntime;
use crate::store::InstanceRecord;

impl Manager {
    /// With the systemd runtime and a named unit user, the instance's files
    /// must belong to that user (the unit runs as it); a no-op otherwise.
    pub(super) async fn give_to_unit_user(&self, dir: &Path) -> Result<()> {
        let crate::runtime::systemd::UnitUser::Named(user) = &self.cfg.systemd.user else {
            return Ok(());
        };
        if !matches!(*self.runtime, AnyRuntime::Systemd(_)) {
            return Ok(());
        }
        let found = nix::unistd::User::from_name(user).ok().flatten();
        let Some(found) = found else {
            return Err(ManagerError::Invalid(format!(
                "the unit user {user} does not exist: create it (useradd --system {user}) or pass --unit-user"
            )));
        };
        let (uid, gid, dir) = (found.uid, found.gid, dir.to_path_buf());
        tokio::task::spawn_blocking(move || crate::runtime::systemd::chown_tree(&dir, uid, gid))
            .await
            .map_err(|e| ManagerError::Invalid(format!("chown task failed: {e}")))?
            .map_err(|source| ManagerError::Io {
                context: format!("cannot give the instance's files to {user}"),
                source,
            })
    }

    /// With the systemd runtime, store the hash of the unit just written
    /// (seed 000's `systemd_config_hash`).
    pub(super) fn record_unit_hash(&self, name: &str) {
        let AnyRuntime::Systemd(systemd) = self.runtime.as_ref() else {
            return;
        };
        let Ok(rec) = self.get(name) else { return };
        let spec = self.spec(&rec);
        if let Ok(text) = systemd.render(&spec) {
            let hash = crate::runtime::systemd::unit_hash(&text);
            if let Err(e) = self.store.set_systemd_hash(name, Some(&hash)) {
                tracing::warn!(instance = name, error = %e, "cannot record the unit hash");
            }
        }
    }

    /// With the systemd runtime: the instance's unit name, and how the unit
    /// on disk differs from what it should be (`None` when it matches).
    /// `None` with the embedded supervisor.
    pub fn unit_status(&self, rec: &InstanceRecord) -> Option<(String, Option<String>)> {
        let (unit, drift) = self.unit_drift(rec)?;
        Some((unit, drift.map(|(_, detail)| detail)))
    }

    /// With the systemd runtime: the unit name and its drift, with its kind.
    fn unit_drift(&self, rec: &InstanceRecord) -> Option<(String, Option<(DriftKind, String)>)> {
        let AnyRuntime::Systemd(systemd) = self.runtime.as_ref() else {
            return None;
        };
        let spec = self.spec(rec);
        Some((systemd.unit_name(&spec.name), systemd.unit_drift(&spec)))
    }

    /// With the systemd runtime: units that differ from what they should be.
    pub fn check_units(&self) -> Vec<crate::router::Drift> {
        self.list()
            .unwrap_or_default()
            .iter()
            .filter_map(|rec| {
                let (kind, detail) = self.unit_drift(rec)?.1?;
                Some(crate::router::Drift {
                    instance: Some(rec.name.to_string()),
                    kind,
                    detail,
                })
            })
            .collect()
    }

    /// `doctor --repair` for units: write them back and `daemon-reload`.
    /// The names of the units put back.
    pub async fn repair_units(&self, actor: &Actor) -> Result<Vec<String>> {
        let AnyRuntime::Systemd(systemd) = self.runtime.as_ref() else {
            return Ok(Vec::new());
        };
        let mut repaired = Vec::new();
        for drift in self.check_units() {
            let Some(name) = drift.instance else { continue };
            let rec = self.get(&name)?;
            let spec = self.spec(&rec);
            let hash = systemd.rewrite(&spec).await?;
            self.store.set_systemd_hash(&name, Some(&hash))?;
            self.audit(
                actor,
                AuditAction::Repair,
                Some(&name),
                Ok(format!("unit put back ({})", drift.detail)),
            );
            repaired.push(name);
        }
        Ok(repaired)
    }
}
