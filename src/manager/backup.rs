//! Backups of one instance: create (consistent while it runs, and while it
//! is stopped without starting it), list and delete; restoring one is
//! `manager::restore`.
//!
//! A backup copies `data.db` and `auxiliary.db` with SQLite's online
//! backup API (one read snapshot each; writers are not blocked), then zips
//! them with `storage/` and the instance's hooks, migrations, public files
//! and record (see [`crate::archive`]). A restore verifies the archive
//! before it touches anything, extracts it beside the instance, checks
//! both databases' integrity, stops the instance, swaps the directories
//! (each a rename), switches to the backup's PocketBase version if it
//! differs, starts it and waits for health; any failure puts the previous
//! files and version back. A marker file records a restore in progress, so
//! a daemon that dies in the middle puts the old state back on its next
//! start: never a mix of the two.

use std::path::{Path, PathBuf};

use chrono::Utc;
use semver::Version;

use super::{Actor, Manager, ManagerError, Result};
use crate::archive::{self, InstanceSnapshot, Sources};
use crate::destination::{AnyDestination, DestinationError, FailureKind};
use crate::model::{AuditAction, BackupId, BackupTrigger, Destination};
use crate::store::{BackupRecord, InstanceRecord};

/// Run blocking file work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ManagerError::Internal(format!("{what} task failed: {e}")))?
}

/// A scratch directory `<root>/<prefix>…` (made with `root` if missing),
/// removed when dropped.
pub(super) async fn staging_dir(root: PathBuf, prefix: &'static str) -> Result<tempfile::TempDir> {
    blocking("staging", move || {
        std::fs::create_dir_all(&root)
            .and_then(|()| tempfile::Builder::new().prefix(prefix).tempdir_in(&root))
            .map_err(|source| ManagerError::Io {
                context: format!("cannot stage a transfer in {}", root.display()),
                source,
            })
    })
    .await
}

impl Manager {
    /// Where an instance's backups go when no destination is named: under
    /// `serve --backup-to`, else `backups/NAME/` in the data dir.
    pub(super) fn default_destination(&self, name: &str) -> Destination {
        match &self.cfg.backup_to {
            Some(fleet) => fleet.child(name),
            None => Destination::Local(self.layout.backups().join(name)),
        }
    }

    /// Back an instance up to `to` (default: `backups/NAME/` in the data
    /// dir). Works whatever the instance's state, without starting it.
    pub async fn backup_create(
        &self,
        name: &str,
        to: Option<&str>,
        actor: &Actor,
    ) -> Result<BackupRecord> {
        self.backup_create_as(name, to, BackupTrigger::Manual, actor)
            .await
    }

    /// [`Manager::backup_create`], saying why it was made.
    pub(super) async fn backup_create_as(
        &self,
        name: &str,
        to: Option<&str>,
        trigger: BackupTrigger,
        actor: &Actor,
    ) -> Result<BackupRecord> {
        let result = self.backup_create_inner(name, to, trigger).await;
        self.audited(actor, AuditAction::Backup, name, result, |b| {
            format!(
                "{} ({} bytes, sha256 {}) to {}",
                b.id, b.size, b.sha256, b.destination
            )
        })
    }

    async fn backup_create_inner(
        &self,
        name: &str,
        to: Option<&str>,
        trigger: BackupTrigger,
    ) -> Result<BackupRecord> {
        let destination = match to {
            Some(raw) => Destination::parse(raw)?,
            None => self.default_destination(name),
        };
        let lock = self.lock_for(name);
        let _guard = lock.lock().await;
        let rec = self.get(name)?;
        self.backup_locked(&rec, &destination, trigger).await
    }

    /// A backup of an instance whose lock the caller holds.
    pub(super) async fn backup_locked(
        &self,
        rec: &InstanceRecord,
        destination: &Destination,
        trigger: BackupTrigger,
    ) -> Result<BackupRecord> {
        let now = Utc::now();
        let id = BackupId::new(&now.format("%Y%m%d-%H%M%S").to_string(), rand::random())?;
        let file_name = id.file_name();
        // A local directory takes the archive itself; a remote store gets
        // it from a staging file in the data dir, removed in any case.
        let (remote, dir, upload_dir) = match destination {
            Destination::Local(dir) => (None, dir.clone(), None),
            remote => {
                let store = AnyDestination::open(remote, &self.cfg.credentials).await?;
                let root = self.layout.backup_staging();
                let upload_dir = staging_dir(root, ".upload-").await?;
                (
                    Some(store),
                    upload_dir.path().to_path_buf(),
                    Some(upload_dir),
                )
            }
        };
        let target = dir.join(&file_name);
        let snapshot = InstanceSnapshot {
            name: rec.name.to_string(),
            version: rec.version.to_string(),
            domain: rec.domain.as_ref().map(|d| d.to_string()),
            custom_domains: self.store.domains(&rec.name)?,
            max_body_bytes: rec.max_body_bytes,
            memory_max: rec.limits.memory_max.as_ref().map(|m| m.to_string()),
            cpu_quota: rec.limits.cpu_quota.as_ref().map(|q| q.to_string()),
            superuser_email: rec.superuser_email.clone(),
        };
        let spec = self.spec(rec);
        // The code the instance runs: its release's, when deployed from git.
        let (data, hooks, migrations, public) = (
            spec.data_dir(),
            spec.hooks_dir(),
            spec.migrations_dir(),
            spec.public_dir(),
        );
        let (id_text, dir_c, target_c) = (id.to_string(), dir.clone(), target.clone());
        let written = blocking("backup", move || {
            std::fs::create_dir_all(&dir_c).map_err(|source| ManagerError::Io {
                context: format!("cannot create the backup directory {}", dir_c.display()),
                source,
            })?;
            let staging = tempfile::Builder::new()
                .prefix(".backup-")
                .tempdir_in(&dir_c)
                .map_err(|source| ManagerError::Io {
                    context: format!("cannot stage a backup in {}", dir_c.display()),
                    source,
                })?;
            let mut databases = Vec::new();
            for db in ["data.db", "auxiliary.db"] {
                let src = data.join(db);
                if !src.exists() {
                    continue;
                }
                let copy = staging.path().join(db);
                // SQLite does not always say that the disk is full: look
                // before the partial copy goes.
                crate::store::snapshot_database(&src, &copy).map_err(|e| {
                    if nearly_full(&dir_c) {
                        ManagerError::Io {
                            context: format!("cannot copy {db} into {}", dir_c.display()),
                            source: std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
                        }
                    } else {
                        e.into()
                    }
                })?;
                databases.push((db.to_string(), copy));
            }
            if databases.is_empty() {
                return Err(ManagerError::Conflict(format!(
                    "{} has no data.db yet: start it once before backing it up",
                    data.display()
                )));
            }
            let sources = Sources {
                databases,
                storage: data.join("storage"),
                hooks,
                migrations,
                public,
            };
            // The staging copies go with `staging` whatever happens; a
            // failed write leaves no partial archive (atomic write).
            Ok(archive::write(
                &target_c, &id_text, &snapshot, &sources, now,
            )?)
        })
        .await
        .map_err(|e| disk_full(e, destination, &dir))?;
        let location = match &remote {
            None => target,
            Some(store) => {
                store.put(&target, &file_name).await?;
                PathBuf::from(destination.child(&file_name).to_text())
            }
        };
        drop(upload_dir);
        let record = BackupRecord {
            instance: rec.name.clone(),
            id,
            created_at: now,
            size: written.size,
            sha256: written.sha256,
            destination: destination.to_text(),
            location,
            version: rec.version.clone(),
            trigger,
        };
        self.store.insert_backup(&record)?;
        Ok(record)
    }

    /// Keep the newest `keep` backups an instance's upgrades (or deploys)
    /// took, and remove the older ones (archive and record).
    pub(super) async fn prune_backups_of(&self, name: &str, trigger: BackupTrigger, keep: usize) {
        let old: Vec<BackupRecord> = match self.store.list_backups(name) {
            Ok(all) => {
                let mut mine: Vec<BackupRecord> =
                    all.into_iter().filter(|b| b.trigger == trigger).collect();
                mine.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
                mine.into_iter().skip(keep).collect()
            }
            Err(e) => {
                tracing::warn!(instance = name, error = %e, "cannot list the pre-upgrade backups");
                return;
            }
        };
        for b in old {
            let location = b.location.clone();
            let removed = tokio::task::spawn_blocking(move || std::fs::remove_file(location)).await;
            match removed {
                Ok(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(instance = name, backup = %b.id, error = %e, "cannot remove an old pre-upgrade backup");
                    continue;
                }
                _ => {}
            }
            if let Err(e) = self.store.delete_backup(name, b.id.as_str()) {
                tracing::warn!(instance = name, backup = %b.id, error = %e, "cannot forget an old pre-upgrade backup");
            }
        }
    }

    /// The backups of an instance, newest first: pockestrator's, and those
    /// PocketBase made itself in its `pb_data/backups/`. The backups of a
    /// deleted instance are still listed.
    pub async fn backups(&self, name: &str) -> Result<Vec<BackupRecord>> {
        let mut out = self.store.list_backups(name)?;
        if let Ok(rec) = self.get(name) {
            let dir = self.spec(&rec).data_dir().join("backups");
            let (instance, version) = (rec.name.clone(), rec.version.clone());
            let found = blocking("backup listing", move || {
                Ok(pocketbase_backups(&dir, &instance, &version))
            })
            .await?;
            out.extend(found);
            out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        } else if out.is_empty() {
            return Err(ManagerError::NotFound(super::shown_name(name)));
        }
        Ok(out)
    }

    /// Find one backup of an instance by id.
    pub(super) async fn find_backup(&self, name: &str, id: &BackupId) -> Result<BackupRecord> {
        self.backups(name)
            .await?
            .into_iter()
            .find(|b| b.id == *id)
            .ok_or_else(|| {
                ManagerError::NotFound(format!(
                    "backup {id} of {name}: see `pockestrator backup list {name}`"
                ))
            })
    }

    /// Delete a backup (its archive and its record).
    pub async fn backup_delete(&self, name: &str, id: &str, actor: &Actor) -> Result<()> {
        let result = async {
            let id = BackupId::parse(id)?;
            let backup = self.find_backup(name, &id).await?;
            if let Some(remote) = remote_destination(&backup) {
                AnyDestination::open(&remote, &self.cfg.credentials)
                    .await?
                    .delete(&id.file_name())
                    .await?;
                self.store.delete_backup(name, id.as_str())?;
                return Ok(id);
            }
            let location = backup.location.clone();
            blocking("backup removal", move || {
                match std::fs::remove_file(&location) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ManagerError::Io {
                        context: format!("cannot remove {}", location.display()),
                        source: e,
                    }),
                    _ => Ok(()),
                }
            })
            .await?;
            self.store.delete_backup(name, id.as_str())?;
            Ok(id)
        }
        .await;
        self.audited(actor, AuditAction::BackupDelete, name, result, |id| {
            format!("backup {id} deleted")
        })
        .map(drop)
    }
}

/// The remote store a backup is in, or `None` for a file on this host.
pub(super) fn remote_destination(backup: &BackupRecord) -> Option<Destination> {
    match Destination::parse(&backup.destination) {
        Ok(Destination::Local(_)) | Err(_) => None,
        Ok(remote) => Some(remote),
    }
}

/// Whether the filesystem of `dir` has (next to) no room left.
fn nearly_full(dir: &Path) -> bool {
    nix::sys::statvfs::statvfs(dir)
        .is_ok_and(|fs| fs.blocks_available().saturating_mul(fs.fragment_size()) < 64 * 1024)
}

/// A failure to write an archive, said as a full disk when it is one.
fn disk_full(e: ManagerError, destination: &Destination, dir: &Path) -> ManagerError {
    let text = e.to_string();
    let full = text.contains("No space left on device")
        || text.contains("database or disk is full")
        || text.contains("Disk quota exceeded");
    if !full {
        return e;
    }
    ManagerError::Destination(DestinationError::new(
        "cannot write the backup to",
        destination,
        FailureKind::DiskFull,
        format!(
            "the disk is full (no space left on device) at {}: nothing was kept there; free some space or choose another destination",
            dir.display()
        ),
    ))
}

/// The backups PocketBase made itself, in `pb_data/backups/`: only those
/// whose file name is a valid backup id.
fn pocketbase_backups(
    dir: &Path,
    instance: &crate::model::InstanceName,
    version: &Version,
) -> Vec<BackupRecord> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        if !file.ends_with(".zip") {
            continue;
        }
        let Ok(id) = BackupId::parse(file) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        let created_at = meta
            .modified()
            .map(chrono::DateTime::<Utc>::from)
            .unwrap_or_else(|_| Utc::now());
        let Ok((size, sha256)) = archive::hash_file(&path) else {
            continue;
        };
        out.push(BackupRecord {
            instance: instance.clone(),
            id,
            created_at,
            size,
            sha256,
            destination: "pocketbase".to_string(),
            location: path,
            version: version.clone(),
            trigger: BackupTrigger::PocketBase,
        });
    }
    out
}
