//! Rolling an instance back to a release built before: the newest
//! successful one before the current release, or the one of a commit
//! (`--to`), as long as its directory is still kept. The switch itself is
//! `manager::switch`, health-gated like a deploy's. Data is not rolled
//! back: migrations the newer release ran stay (PocketBase has no down
//! migrations that run by themselves).

use std::path::Path;
use std::sync::Arc;

use super::deploy::{commit_matches, ReleaseInfo};
use super::{Actor, Manager, ManagerError, Result};
use crate::model::{DeployId, DeployKind, DeployStatus};
use crate::store::DeployRecord;

impl Manager {
    /// Start a rollback of `name`; `to` is a commit (at least 4 hex
    /// digits of it). Returns the recorded deploy; it runs in a task.
    pub async fn rollback(
        self: &Arc<Self>,
        name: &str,
        to: Option<&str>,
        actor: &Actor,
    ) -> Result<DeployRecord> {
        let rec = self.get(name)?;
        let history = self.store.deploys(name)?;
        let current = rec.release.clone();
        let candidates = history.iter().filter(|d| {
            d.status == DeployStatus::Succeeded
                && d.release.is_some()
                && d.release != current
                && d.release
                    .as_ref()
                    .is_some_and(|r| self.layout.release_dir(&rec.dir, r).is_dir())
        });
        let target = match to {
            Some(prefix) => {
                if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(ManagerError::Invalid(format!(
                        "--to {}: give a commit id (at least 4 hex digits), see `pockestrator deploys {name}`",
                        crate::model::names::shown(prefix)
                    )));
                }
                let mut found = candidates
                    .filter(|d| d.commit.as_ref().is_some_and(|c| commit_matches(c, prefix)));
                found.next().cloned().ok_or_else(|| {
                    // The instance is there; what it lacks is that release.
                    ManagerError::Conflict(format!(
                        "{name} has no kept release of commit {prefix} (releases kept: see `pockestrator deploys {name}`; a pruned one must be deployed again)"
                    ))
                })?
            }
            None => {
                let current_id = current
                    .as_ref()
                    .map(|r| r.deploy_id())
                    .unwrap_or(DeployId(u32::MAX));
                candidates
                    .filter(|d| {
                        d.release
                            .as_ref()
                            .is_some_and(|r| r.deploy_id() < current_id)
                    })
                    .max_by_key(|d| d.id)
                    .cloned()
                    .ok_or_else(|| {
                        ManagerError::Conflict(format!(
                            "{name} has no earlier release to roll back to"
                        ))
                    })?
            }
        };
        let mut d = DeployRecord::queued(
            rec.name.clone(),
            DeployKind::Rollback,
            target.repo.clone(),
            target.branch.clone(),
            target.subdir.clone(),
            &actor.0,
        );
        d.commit = target.commit.clone();
        d.release = target.release.clone();
        let first_line = format!(
            "of {name} to release {} (deploy {})",
            target
                .release
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            target.id
        );
        self.queue_deploy(d, &rec.dir, &first_line, actor)
    }

    /// The switch of a rollback.
    pub(super) async fn run_rollback(
        &self,
        d: &mut DeployRecord,
        log: &Path,
    ) -> Result<String, String> {
        let name = d.instance.to_string();
        let rec = self.get(&name).map_err(|e| e.to_string())?;
        let release = d.release.clone().ok_or("the rollback names no release")?;
        let dir = self.layout.release_dir(&rec.dir, &release);
        let info = ReleaseInfo::read(&dir)
            .ok_or_else(|| format!("release {release} is gone or has no {}", ReleaseInfo::FILE))?;
        d.status = DeployStatus::Switching;
        let _ = self.store.update_deploy(d);
        self.switch_release(&name, &release, &info, false, log)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{release} ({}) serves again",
            d.commit.as_ref().map(|c| c.short()).unwrap_or("?")
        ))
    }
}
