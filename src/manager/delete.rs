//! Deleting an instance: stop, archive its directory (unless purged),
//! remove it, forget its route.

use crate::model::AuditAction;
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::files::remove_dir_if_exists;
use super::{Actor, Manager, ManagerError, Result};
use crate::events::Event;
use crate::model::DesiredState;
use crate::runtime::Runtime;

impl Manager {
    /// Stop, archive (unless `purge`), and remove an instance.
    pub async fn delete(&self, name: &str, purge: bool, actor: &Actor) -> Result<Option<PathBuf>> {
        let result = self.delete_inner(name, purge).await;
        self.audited(
            actor,
            AuditAction::Delete,
            name,
            result,
            |archive| match archive {
                Some(path) => format!("data archived to {}", path.display()),
                None => "purged without archive".to_string(),
            },
        )
    }

    pub(super) async fn delete_inner(&self, name: &str, purge: bool) -> Result<Option<PathBuf>> {
        self.remove_instance(name, purge, true).await
    }

    /// [`Self::delete_inner`]; `let_go`: its name is let go of in the
    /// cluster too (not after a failed failover, whose claim went back).
    pub(super) async fn remove_instance(
        &self,
        name: &str,
        purge: bool,
        let_go: bool,
    ) -> Result<Option<PathBuf>> {
        let lock = self.lock_for(name);
        let _guard = lock.lock().await;
        let rec = self.get(name)?;
        let instance = rec.name.clone();
        let was_running = rec.desired == DesiredState::Running;
        self.runtime.stop(&instance).await?;
        self.stop_replication(&rec).await;
        let dir = rec.dir.clone();
        let archive = if purge {
            None
        } else {
            let archive_dir = self.layout.archive();
            let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
            let target = archive_dir.join(format!("{name}-{stamp}.tar.gz"));
            let made = tokio::task::spawn_blocking({
                let dir = dir.clone();
                let target = target.clone();
                let name = name.to_string();
                move || archive_dir_to(&dir, &name, &target)
            })
            .await
            .map_err(|e| ManagerError::Internal(format!("archive task failed: {e}")))
            .and_then(|r| {
                r.map_err(|source| ManagerError::Io {
                    context: format!("cannot archive {} to {}", dir.display(), target.display()),
                    source,
                })
            });
            if let Err(e) = made {
                // Nothing is deleted when the archive cannot be written.
                if was_running {
                    let _ = self.runtime.start(self.spec(&rec)).await;
                }
                return Err(e);
            }
            Some(target)
        };
        let removed = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || remove_dir_if_exists(&dir)
        })
        .await
        .map_err(|e| ManagerError::Internal(format!("removal task failed: {e}")))?;
        removed.map_err(|source| ManagerError::Io {
            context: format!("cannot remove {}", dir.display()),
            source,
        })?;
        self.runtime.uninstall(&instance).await?;
        // What deploys kept outside the instance directory: its fetch cache
        // and its secrets (the archive has its releases).
        for extra in [
            self.layout.git_cache(name),
            self.layout.deploy_secrets(name),
        ] {
            if let Err(e) = remove_dir_if_exists(&extra) {
                tracing::warn!(instance = name, dir = %extra.display(), error = %e, "cannot remove");
            }
        }
        self.store.delete_instance(name)?;
        if let_go {
            self.release_name(name).await;
        }
        self.sync_route_now(name).await;
        self.events.publish(Event::InstanceRemoved {
            name: name.to_string(),
        });
        // Still under its lock: later operations on this name start afresh.
        self.forget(&instance);
        Ok(archive)
    }
}

/// Write `dir` as `name/…` into a gzip-compressed tar at `target`,
/// atomically (temp file, fsync, rename, directory fsync).
pub(super) fn archive_dir_to(dir: &Path, name: &str, target: &Path) -> std::io::Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::fsutil::atomic_write_with(target, |file| {
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.follow_symlinks(false);
        if dir.exists() {
            tar.append_dir_all(name, dir)?;
        }
        tar.into_inner()?.finish()?;
        Ok(())
    })
}
