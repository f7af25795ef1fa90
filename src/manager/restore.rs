//! Restoring an instance from a backup archive or from its Litestream
//! replica: in place, or into a new instance (a clone). The archive (or the
//! restored `data.db`) is verified and extracted beside the instance
//! before it is stopped; a marker records the restore while directories
//! move, each a rename; any failure, or a daemon that dies in between,
//! puts the previous files and version back whole.

use std::path::{Path, PathBuf};

use chrono::Utc;
use semver::Version;

use super::backup::{blocking, remote_destination, staging_dir};
use super::create::CreateRequest;
use super::install::BinaryChoice;
use super::marker::Marker;
use super::{Actor, Manager, ManagerError, Result};
use crate::archive;
use crate::destination::AnyDestination;
use crate::model::version::VersionRequest;
use crate::model::{AuditAction, BackupId, DesiredState, Status};
use crate::runtime::Runtime;
use crate::store::InstanceRecord;

/// The instance directories a restore swaps, and whether an archive must
/// hold them (`pb_data` always; the others only in pockestrator archives).
const PARTS: [&str; 4] = ["pb_data", "pb_hooks", "pb_migrations", "pb_public"];

/// Where a restore's `pb_data` comes from: a backup archive (which may
/// also carry hooks, migrations and public files), or an instance's
/// Litestream replica (its `data.db`; the rest of `pb_data` — uploaded
/// files, `auxiliary.db` — is the restored instance's own, linked in).
pub(super) enum RestoreSource<'a> {
    Archive {
        path: &'a Path,
        id: &'a BackupId,
    },
    Replica {
        of: crate::model::InstanceName,
        timestamp: Option<chrono::DateTime<Utc>>,
    },
}

impl RestoreSource<'_> {
    fn label(&self) -> String {
        match self {
            RestoreSource::Archive { id, .. } => format!("backup {id}"),
            RestoreSource::Replica {
                of,
                timestamp: None,
            } => format!("the replica of {of}"),
            RestoreSource::Replica {
                of,
                timestamp: Some(t),
            } => format!("the replica of {of} as at {}", t.to_rfc3339()),
        }
    }
}

/// A restore in progress, recorded in the instance directory before the
/// first directory is moved.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct RestoreMarker {
    backup: String,
    /// Where the instance's own directories were moved to.
    aside: PathBuf,
    from_version: Version,
    from_binary: PathBuf,
}

impl Marker for RestoreMarker {
    const FILE: &'static str = "restore-in-progress.json";
    const WHAT: &'static str = "restore";
}

impl Manager {
    /// Restore an instance from one of its backups, in place; or, with
    /// `as_name`, into a new instance of that name (a clone), leaving the
    /// original untouched.
    pub async fn backup_restore(
        &self,
        name: &str,
        id: &str,
        as_name: Option<&str>,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        let target = as_name.unwrap_or(name).to_string();
        let result = async {
            let id = BackupId::parse(id)?;
            let backup = self.find_backup(name, &id).await?;
            // A remote archive is fetched into a staging directory that
            // goes when this block ends, whatever happens.
            let (archive_path, _download) = match remote_destination(&backup) {
                None => (backup.location.clone(), None),
                Some(remote) => {
                    let store = AnyDestination::open(&remote, &self.cfg.credentials).await?;
                    let root = match (as_name, self.get(name)) {
                        (None, Ok(rec)) => rec.dir,
                        _ => self.layout.backup_staging(),
                    };
                    let download = staging_dir(root, ".download-").await?;
                    let path = download.path().join(id.file_name());
                    store.fetch(&id.file_name(), &path).await?;
                    (path, Some(download))
                }
            };
            let verified = {
                let p = archive_path.clone();
                blocking("archive check", move || Ok(archive::verify(&p)?)).await?
            };
            let version = match &verified.manifest {
                Some(m) => Version::parse(&m.instance.version).map_err(|_| {
                    ManagerError::Invalid(format!(
                        "the backup's manifest names version {:?}, which is not a version",
                        m.instance.version
                    ))
                })?,
                None => backup.version.clone(),
            };
            if let Some(new_name) = as_name {
                let snap = verified.manifest.as_ref().map(|m| m.instance.clone());
                let req = CreateRequest {
                    name: new_name.to_string(),
                    binary: BinaryChoice::Release(VersionRequest::Exact(version.clone())),
                    port: None,
                    domain: None,
                    superuser_email: None,
                    superuser_password: None,
                    max_body_bytes: snap.as_ref().and_then(|s| s.max_body_bytes),
                    memory_max: snap.as_ref().and_then(|s| s.memory_max.clone()),
                    cpu_quota: snap.as_ref().and_then(|s| s.cpu_quota.clone()),
                    idle_timeout_secs: None,
                    wake_schedule: None,
                    fleet: None,
                    tags: Vec::new(),
                };
                self.create(req, actor).await?;
            }
            let restored = async {
                let lock = self.lock_for(&target);
                let _guard = lock.lock().await;
                let rec = self.get(&target)?;
                let source = RestoreSource::Archive {
                    path: &archive_path,
                    id: &id,
                };
                self.restore_locked(rec, source, version, as_name.is_some())
                    .await
            }
            .await;
            if restored.is_err() && as_name.is_some() {
                // A clone that could not be filled is not left behind empty.
                if let Err(e) = self.delete(&target, true, &Actor::daemon()).await {
                    tracing::warn!(instance = %target, error = %e, "cannot remove a failed clone");
                }
            }
            restored
        }
        .await;
        self.audited(
            actor,
            AuditAction::Restore,
            &target,
            result,
            |r| match as_name {
                Some(_) => format!(
                    "cloned from backup {id} of {name}; at version {}",
                    r.version
                ),
                None => format!("restored from backup {id}; at version {}", r.version),
            },
        )
    }

    /// Restore an instance from its Litestream replica, in place; or,
    /// with `as_name`, into a new instance of that name (a clone, which is
    /// not replicated: one writer per replica path). `timestamp` (RFC
    /// 3339) restores the state as it was then instead of the latest.
    pub async fn restore_from_replica(
        &self,
        name: &str,
        as_name: Option<&str>,
        timestamp: Option<&str>,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        let target = as_name.unwrap_or(name).to_string();
        let result = async {
            let timestamp = timestamp
                .map(super::replicate::parse_timestamp)
                .transpose()?;
            let source_rec = self.get(name)?;
            if self.replication_of(&source_rec.name).is_none() {
                return Err(ManagerError::Conflict(format!(
                    "{name} is not replicated: turn it on with `pockestrator replicate {name} --to URL`"
                )));
            }
            let version = source_rec.version.clone();
            if let Some(new_name) = as_name {
                let req = CreateRequest {
                    name: new_name.to_string(),
                    binary: BinaryChoice::Release(VersionRequest::Exact(version.clone())),
                    port: None,
                    domain: None,
                    superuser_email: None,
                    superuser_password: None,
                    max_body_bytes: source_rec.max_body_bytes,
                    memory_max: source_rec.limits.memory_max.as_ref().map(|m| m.to_string()),
                    cpu_quota: source_rec.limits.cpu_quota.as_ref().map(|q| q.to_string()),
                    idle_timeout_secs: None,
                    wake_schedule: None,
                    fleet: None,
                    tags: Vec::new(),
                };
                self.create(req, actor).await?;
            }
            let restored = async {
                let lock = self.lock_for(&target);
                let _guard = lock.lock().await;
                let rec = self.get(&target)?;
                let source = RestoreSource::Replica {
                    of: source_rec.name.clone(),
                    timestamp,
                };
                self.restore_locked(rec, source, version, as_name.is_some())
                    .await
            }
            .await;
            if restored.is_err() && as_name.is_some() {
                if let Err(e) = self.delete(&target, true, &Actor::daemon()).await {
                    tracing::warn!(instance = %target, error = %e, "cannot remove a failed clone");
                }
            }
            restored
        }
        .await;
        let when = timestamp.map(|t| format!(" as at {t}")).unwrap_or_default();
        self.audited(
            actor,
            AuditAction::Restore,
            &target,
            result,
            |r| match as_name {
                Some(_) => format!(
                    "cloned from the replica of {name}{when}; at version {}",
                    r.version
                ),
                None => format!("restored from its replica{when}; at version {}", r.version),
            },
        )
    }

    /// The restore proper, under the instance's lock.
    pub(super) async fn restore_locked(
        &self,
        rec: InstanceRecord,
        source: RestoreSource<'_>,
        version: Version,
        clone: bool,
    ) -> Result<InstanceRecord> {
        let name = rec.name.clone();
        let dir = rec.dir.clone();
        let label = source.label();
        let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
        let staging = match &source {
            RestoreSource::Archive { id, .. } => dir.join(format!(".restore-{id}-{stamp}")),
            RestoreSource::Replica { .. } => dir.join(format!(".restore-replica-{stamp}")),
        };
        let aside = dir.join(format!(".before-restore-{stamp}"));
        let from_replica = matches!(source, RestoreSource::Replica { .. });
        // 1. Extract and check, with the instance still running as it was.
        let extracted = match source {
            RestoreSource::Replica { of, timestamp } => {
                let data = staging.join("pb_data");
                match self
                    .restore_replica_to(&of, timestamp, data.join("data.db"))
                    .await
                {
                    Ok(()) => {
                        let db = data.join("data.db");
                        blocking("secret rotation", move || {
                            if clone {
                                crate::store::rotate_auth_secrets(&db)?;
                            }
                            Ok(())
                        })
                        .await
                        .map(|()| archive::Extracted {
                            data,
                            hooks: None,
                            migrations: None,
                            public: None,
                        })
                    }
                    Err(e) => Err(e),
                }
            }
            RestoreSource::Archive { path, .. } => {
                let (a, s) = (path.to_path_buf(), staging.clone());
                blocking("archive extraction", move || {
                let x = archive::extract(&a, &s)?;
                for db in ["data.db", "auxiliary.db"] {
                    let path = x.data.join(db);
                    if !path.exists() {
                        continue;
                    }
                    if let Err(found) = crate::store::integrity_check(&path)? {
                        return Err(ManagerError::Invalid(format!(
                            "the backup's {db} fails SQLite's integrity check ({found}): nothing was changed"
                        )));
                    }
                }
                if clone {
                    crate::store::rotate_auth_secrets(&x.data.join("data.db"))?;
                }
                Ok(x)
            })
            .await
            }
        };
        let extracted = match extracted {
            Ok(x) => x,
            Err(e) => {
                remove_tree(staging).await;
                return Err(e);
            }
        };
        // 2. The backup's PocketBase, before anything is stopped.
        let binary = if version == rec.version {
            rec.binary_path.clone()
        } else {
            match self
                .install(&BinaryChoice::Release(VersionRequest::Exact(
                    version.clone(),
                )))
                .await
            {
                Ok(installed) => installed.binary,
                Err(e) => {
                    remove_tree(staging).await;
                    return Err(e);
                }
            }
        };
        // 3. Stop, swap, switch.
        let was_running = rec.desired == DesiredState::Running;
        if let Err(e) = self.sync_route(&name).await {
            tracing::warn!(instance = %name, error = %e, "route not updated before the restore");
        }
        self.runtime.stop(&name).await?;
        self.set_state(&name, Status::Stopped, None, rec.restarts, None);
        // Litestream must not follow the swap: it would ship the restored
        // file's pages as changes of the old one.
        self.stop_replication(&rec).await;
        if from_replica {
            // The rest of pb_data (uploaded files, auxiliary.db) is the
            // instance's own: linked, so the directory swap stays whole.
            let (from, to) = (self.spec(&rec).data_dir(), extracted.data.clone());
            if let Err(e) = blocking("pb_data links", move || {
                link_rest(&from, &to).map_err(|source| ManagerError::Io {
                    context: format!("cannot link {} into the restore", from.display()),
                    source,
                })
            })
            .await
            {
                remove_tree(staging).await;
                self.resume_replication(&rec).await;
                if was_running {
                    let spec = self.spec(&rec);
                    self.runtime.start(spec.clone()).await?;
                    let pid = self.wait_healthy(&spec).await?;
                    self.set_state(&name, Status::Running, Some(pid), rec.restarts, None);
                }
                return Err(e);
            }
        }
        let marker = RestoreMarker {
            backup: label.clone(),
            aside: aside.clone(),
            from_version: rec.version.clone(),
            from_binary: rec.binary_path.clone(),
        };
        marker.write(&dir).map_err(|source| ManagerError::Io {
            context: format!("cannot record the restore of {name}"),
            source,
        })?;
        let parts: Vec<(&'static str, PathBuf)> = [
            ("pb_data", Some(extracted.data.clone())),
            ("pb_hooks", extracted.hooks.clone()),
            ("pb_migrations", extracted.migrations.clone()),
            ("pb_public", extracted.public.clone()),
        ]
        .into_iter()
        .filter_map(|(part, from)| from.map(|f| (part, f)))
        .collect();
        let swapped = {
            let (dir, aside) = (dir.clone(), aside.clone());
            blocking("directory swap", move || {
                swap_in(&dir, &aside, &parts).map_err(|source| ManagerError::Io {
                    context: format!("cannot swap the restored files into {}", dir.display()),
                    source,
                })
            })
            .await
        };
        let mut restored = rec.clone();
        restored.version = version;
        restored.binary_path = binary;
        let outcome = match swapped {
            Ok(()) => {
                self.store.update_config(&restored, "restore")?;
                self.give_to_unit_user(&dir).await?;
                if was_running {
                    let spec = self.spec(&restored);
                    match self.runtime.start(spec.clone()).await {
                        Ok(_) => self.wait_healthy(&spec).await.map(Some),
                        Err(e) => Err(e.into()),
                    }
                } else {
                    Ok(None)
                }
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(pid) => {
                RestoreMarker::clear(&dir);
                self.reset_replication(&restored, &format!("restored from {label}"))
                    .await;
                remove_tree(aside).await;
                remove_tree(staging).await;
                match pid {
                    Some(pid) => {
                        self.set_state(&name, Status::Running, Some(pid), rec.restarts, None)
                    }
                    None => self.set_state(&name, Status::Stopped, None, rec.restarts, None),
                }
                self.record_unit_hash(&name);
                self.sync_route_now(&name).await;
                self.get(&name)
            }
            Err(e) => {
                let reason = match &e {
                    ManagerError::StartFailed { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                tracing::warn!(instance = %name, %reason, "restore failed, putting the previous files back");
                let _ = self.runtime.stop(&name).await;
                self.put_back(&rec, &marker).await?;
                remove_tree(staging).await;
                self.resume_replication(&rec).await;
                if was_running {
                    let spec = self.spec(&rec);
                    self.runtime.start(spec.clone()).await?;
                    let pid = self.wait_healthy(&spec).await?;
                    self.set_state(&name, Status::Running, Some(pid), rec.restarts, None);
                }
                self.sync_route_now(&name).await;
                Err(ManagerError::Conflict(format!(
                    "restore of {name} from {label} failed ({reason}); its previous files and version are back in place"
                )))
            }
        }
    }

    /// Undo a restore: the instance's own directories back from `aside`,
    /// its version and binary back in the record.
    async fn put_back(&self, rec: &InstanceRecord, marker: &RestoreMarker) -> Result<()> {
        let (dir, aside) = (rec.dir.clone(), marker.aside.clone());
        blocking("restore roll-back", move || {
            swap_back(&dir, &aside).map_err(|source| ManagerError::Io {
                context: format!(
                    "cannot put the previous files of {} back from {}",
                    dir.display(),
                    aside.display()
                ),
                source,
            })
        })
        .await?;
        let mut back = rec.clone();
        back.version = marker.from_version.clone();
        back.binary_path = marker.from_binary.clone();
        self.store.update_config(&back, "restore")?;
        RestoreMarker::clear(&rec.dir);
        self.give_to_unit_user(&rec.dir).await
    }

    /// A daemon that stopped in the middle of a restore: put the previous
    /// state back, whole. Returns the record to recover with.
    pub(super) async fn finish_interrupted_restore(
        &self,
        rec: InstanceRecord,
        marker: RestoreMarker,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        if let Ok(Some(_)) = self.runtime.adopt(self.spec(&rec)).await {
            self.runtime.stop(&rec.name).await?;
        }
        self.put_back(&rec, &marker).await?;
        self.audit(
            actor,
            AuditAction::Restore,
            Some(&rec.name),
            Err(format!(
                "the restore from backup {} was interrupted by a daemon stop: its previous files and version {} are back in place",
                marker.backup, marker.from_version
            )),
        );
        Ok(self.store.get_instance(&rec.name)?.unwrap_or(rec))
    }
}

/// Put an archive's directories in place of a stopped instance's own,
/// whole: extract beside them, check both databases, swap each part in,
/// then drop what was there. What an upgrade that failed rolls back with.
pub(super) fn put_archive_in_place(dir: &Path, archive_path: &Path) -> Result<()> {
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let staging = dir.join(format!(".rollback-{stamp}"));
    let aside = dir.join(format!(".before-rollback-{stamp}"));
    let result = (|| {
        let x = archive::extract(archive_path, &staging)?;
        for db in ["data.db", "auxiliary.db"] {
            let path = x.data.join(db);
            if path.exists() {
                if let Err(found) = crate::store::integrity_check(&path)? {
                    return Err(ManagerError::Invalid(format!(
                        "{} holds a {db} that fails SQLite's integrity check ({found})",
                        archive_path.display()
                    )));
                }
            }
        }
        let parts: Vec<(&'static str, PathBuf)> = [
            ("pb_data", Some(x.data.clone())),
            ("pb_hooks", x.hooks.clone()),
            ("pb_migrations", x.migrations.clone()),
            ("pb_public", x.public.clone()),
        ]
        .into_iter()
        .filter_map(|(part, from)| from.map(|f| (part, f)))
        .collect();
        swap_in(dir, &aside, &parts).map_err(|source| ManagerError::Io {
            context: format!(
                "cannot put {} back into {}",
                archive_path.display(),
                dir.display()
            ),
            source,
        })
    })();
    for leftover in [&staging, &aside] {
        if let Err(e) = std::fs::remove_dir_all(leftover) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %leftover.display(), error = %e, "cannot remove a roll-back's leftovers");
            }
        }
    }
    result
}

/// Move each of the instance's `parts` aside and the restored one in. A
/// part already aside stays there (a second call after a crash).
fn swap_in(dir: &Path, aside: &Path, parts: &[(&str, PathBuf)]) -> std::io::Result<()> {
    std::fs::create_dir_all(aside)?;
    for (part, from) in parts {
        let current = dir.join(part);
        if current.exists() {
            std::fs::rename(&current, aside.join(part))?;
        }
        std::fs::rename(from, &current)?;
    }
    crate::fsutil::sync_dir(dir)
}

/// Put every part found in `aside` back in place of what is there now.
fn swap_back(dir: &Path, aside: &Path) -> std::io::Result<()> {
    for part in PARTS {
        let saved = aside.join(part);
        if !saved.exists() {
            continue;
        }
        let current = dir.join(part);
        if current.exists() {
            let failed = aside.join(format!("{part}.restored"));
            std::fs::rename(&current, &failed)?;
        }
        std::fs::rename(&saved, &current)?;
    }
    crate::fsutil::sync_dir(dir)?;
    match std::fs::remove_dir_all(aside) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Hard-link everything in `from` but `data.db` and its WAL into `to`
/// (copying where a link cannot be made), keeping the tree's shape.
fn link_rest(from: &Path, to: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    std::fs::create_dir_all(to)?;
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        if matches!(
            file_name.to_str(),
            Some("data.db" | "data.db-wal" | "data.db-shm")
        ) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&file_name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&src, &dst)?;
        } else if kind.is_file() && std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&src, &dst)?;
        } else if kind.is_file() && std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

async fn remove_tree(path: PathBuf) {
    let shown = path.display().to_string();
    let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&path)).await;
    if let Ok(Err(e)) = removed {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %shown, error = %e, "cannot remove a restore's leftovers");
        }
    }
}
