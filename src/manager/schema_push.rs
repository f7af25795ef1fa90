//! `schema push`: one schema file made into one PocketBase migration and
//! rolled out instance by instance. For each: stop it, back it up
//! (trigger `pre-schema`), put the migration in its `pb_migrations`, start
//! it (PocketBase runs the migration before it serves) and wait for
//! health. A migration that fails stops the start: the instance is
//! stopped, the migration taken out, its data put back from that backup
//! and the instance started as it was. The first instance is the canary;
//! after any failure the rest are left untouched and reported skipped.

use chrono::Utc;
use serde_json::Value;

use super::{Actor, Manager, ManagerError, Result};
use crate::model::migration::{self, SchemaFileError};
use crate::model::{AuditAction, BackupTrigger, DesiredState, Destination, Status};
use crate::runtime::Runtime;
use crate::store::Phase;

/// Which instances a push goes to.
#[derive(Debug, Clone)]
pub enum PushTargets {
    /// These, in this order (the first is the canary).
    Names(Vec<String>),
    /// Every instance (seed 001's user instances aside), by name.
    All,
    /// Every instance with this tag, by name.
    Tag(String),
}

/// What a push did to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushResult {
    /// Migrated and healthy.
    Applied,
    /// This very migration was there already.
    Unchanged,
    /// The migration failed; the instance is back as it was before.
    RolledBack,
    /// It could not be tried (say why), or an earlier one failed.
    Skipped,
    /// It failed and could not be put back automatically (say how to).
    Failed,
}

impl PushResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::RolledBack => "rolled-back",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }
}

/// One instance's part of a push.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    pub name: String,
    pub result: PushResult,
    pub detail: String,
    /// The `pre-schema` backup taken first.
    pub snapshot: Option<String>,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The migration's file name.
    pub migration: String,
    /// How many collections it imports.
    pub collections: usize,
    pub outcomes: Vec<PushOutcome>,
}

impl Manager {
    /// Push a schema (PocketBase's collections export) to instances.
    pub async fn schema_push(
        &self,
        schema: &Value,
        targets: PushTargets,
        delete_missing: bool,
        actor: &Actor,
    ) -> Result<PushReport> {
        let collections = migration::collections_to_push(schema).map_err(|e| match e {
            SchemaFileError::Invalid(m) => ManagerError::Invalid(format!("schema: {m}")),
            SchemaFileError::Clash(m) => ManagerError::Conflict(format!("schema: {m}")),
        })?;
        if collections.is_empty() {
            return Err(ManagerError::Invalid(
                "schema: no collections to push (system collections are never pushed)".into(),
            ));
        }
        let names = self.push_targets(targets)?;
        let digest = migration::push_digest(&collections, delete_missing);
        let file_name = migration::migration_file_name(Utc::now().timestamp(), &digest);
        let js = migration::migration_js(&collections, delete_missing, &digest);
        let mut outcomes = Vec::new();
        let mut stopped = false;
        for name in names {
            if stopped {
                outcomes.push(PushOutcome {
                    name,
                    result: PushResult::Skipped,
                    detail: "not tried: an instance before it failed".into(),
                    snapshot: None,
                });
                continue;
            }
            let outcome = self.push_one(&name, &file_name, &digest, &js).await;
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => PushOutcome {
                    name: name.clone(),
                    result: PushResult::Skipped,
                    detail: e.to_string(),
                    snapshot: None,
                },
            };
            let ok = matches!(outcome.result, PushResult::Applied | PushResult::Unchanged);
            self.audit(
                actor,
                AuditAction::SchemaPush,
                Some(&name),
                if ok {
                    Ok(format!("{} {}", outcome.result.as_str(), file_name))
                } else {
                    Err(format!("{}: {}", outcome.result.as_str(), outcome.detail))
                },
            );
            stopped = !ok;
            outcomes.push(outcome);
        }
        Ok(PushReport {
            migration: file_name,
            collections: collections.len(),
            outcomes,
        })
    }

    fn push_targets(&self, targets: PushTargets) -> Result<Vec<String>> {
        let everyone = || -> Result<Vec<String>> {
            Ok(self
                .store
                .list_instances()?
                .into_iter()
                .filter(|r| r.phase == Phase::Ready && r.compat_user.is_none())
                .map(|r| r.name.to_string())
                .collect())
        };
        let names = match targets {
            PushTargets::Names(names) => {
                let mut seen = Vec::new();
                for n in names {
                    self.get(&n)?;
                    if !seen.contains(&n) {
                        seen.push(n);
                    }
                }
                seen
            }
            PushTargets::All => everyone()?,
            PushTargets::Tag(tag) => {
                let tag = crate::model::cluster::Tag::parse(&tag)
                    .map_err(|e| ManagerError::Invalid(e.to_string()))?;
                let labels = self.store.labels()?;
                everyone()?
                    .into_iter()
                    .filter(|n| {
                        labels
                            .get(n)
                            .is_some_and(|l| l.tags.iter().any(|t| t == tag.as_str()))
                    })
                    .collect()
            }
        };
        if names.is_empty() {
            return Err(ManagerError::NotFound(
                "any instance to push to (none matched)".into(),
            ));
        }
        Ok(names)
    }

    async fn push_one(
        &self,
        name: &str,
        file_name: &str,
        digest: &str,
        js: &str,
    ) -> Result<PushOutcome> {
        let lock = self.lock_for(name);
        let _guard = lock.lock().await;
        let rec = self.get(name)?;
        let outcome = |result, detail: String, snapshot: Option<String>| PushOutcome {
            name: name.to_string(),
            result,
            detail,
            snapshot,
        };
        if rec.release.is_some() {
            return Ok(outcome(
                PushResult::Skipped,
                "deployed from git: its pb_migrations come from its repository; commit the migration there and deploy".into(),
                None,
            ));
        }
        let spec = self.spec(&rec);
        let dir = spec.migrations_dir();
        let already = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .any(|e| migration::is_migration_of(&e.file_name().to_string_lossy(), digest))
            })
            .unwrap_or(false);
        if already {
            return Ok(outcome(
                PushResult::Unchanged,
                "this schema's migration is there already".into(),
                None,
            ));
        }
        let was_running = rec.desired == DesiredState::Running && rec.status != Status::Sleeping;
        self.runtime.stop(&rec.name).await?;
        self.set_state(name, Status::Stopped, None, rec.restarts, None);
        let destination = Destination::Local(self.layout.backups().join(name));
        let backup = match self
            .backup_locked(&rec, &destination, BackupTrigger::PreSchema)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                self.put_back_state(&rec, was_running).await?;
                return Ok(outcome(
                    PushResult::Skipped,
                    format!("its pre-schema backup failed ({e}); nothing was changed"),
                    None,
                ));
            }
        };
        let snapshot = Some(backup.id.to_string());
        let path = dir.join(file_name);
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| crate::fsutil::atomic_write(&path, js.as_bytes()));
        if let Err(e) = written {
            self.put_back_state(&rec, was_running).await?;
            return Ok(outcome(
                PushResult::Skipped,
                format!("cannot write {}: {e}; nothing was changed", path.display()),
                snapshot,
            ));
        }
        self.give_to_unit_user(&rec.dir).await?;
        self.set_state(name, Status::Starting, None, rec.restarts, None);
        let started = match self.runtime.start(spec.clone()).await {
            Ok(_) => self.wait_healthy(&spec).await,
            Err(e) => Err(e.into()),
        };
        match started {
            Ok(pid) => {
                if was_running {
                    self.set_state(name, Status::Running, Some(pid), rec.restarts, None);
                } else {
                    // Started only to run the migration: back as it was.
                    self.runtime.stop(&rec.name).await?;
                    self.set_state(name, rec.status, None, rec.restarts, None);
                }
                Ok(outcome(
                    PushResult::Applied,
                    format!("migrated ({file_name})"),
                    snapshot,
                ))
            }
            Err(e) => {
                let reason = match &e {
                    ManagerError::StartFailed {
                        reason, log_tail, ..
                    } => {
                        let said: Vec<&str> = log_tail
                            .iter()
                            .rev()
                            .filter(|l| !l.trim().is_empty())
                            .take(3)
                            .map(String::as_str)
                            .collect();
                        if said.is_empty() {
                            reason.clone()
                        } else {
                            let mut said = said;
                            said.reverse();
                            format!("{reason}: {}", said.join(" | "))
                        }
                    }
                    other => other.to_string(),
                };
                tracing::warn!(instance = name, %reason, "schema migration failed, rolling back");
                let _ = self.runtime.stop(&rec.name).await;
                let _ = std::fs::remove_file(&path);
                let restored = tokio::task::spawn_blocking({
                    let (snap, dir, data) =
                        (backup.location.clone(), rec.dir.clone(), spec.data_dir());
                    move || super::upgrade::put_snapshot_back(&snap, &dir, &data)
                })
                .await;
                match restored {
                    Ok(Ok(())) => {
                        self.give_to_unit_user(&rec.dir).await?;
                        self.put_back_state(&rec, was_running).await?;
                        Ok(outcome(
                            PushResult::RolledBack,
                            format!("the migration failed ({reason}); rolled back to the pre-schema backup"),
                            snapshot,
                        ))
                    }
                    other => {
                        let why = match other {
                            Ok(Err(e)) => e.to_string(),
                            Err(e) => e.to_string(),
                            Ok(Ok(())) => String::new(),
                        };
                        let msg = format!(
                            "the migration failed ({reason}) and the data could not be put back automatically ({why}): restore it with `pockestrator backup restore {name} {}`",
                            backup.id
                        );
                        self.set_state(name, Status::Failed, None, rec.restarts, Some(&msg));
                        Ok(outcome(PushResult::Failed, msg, snapshot))
                    }
                }
            }
        }
    }

    /// Start an instance again if it ran, else leave it in its state.
    async fn put_back_state(
        &self,
        rec: &crate::store::InstanceRecord,
        was_running: bool,
    ) -> Result<()> {
        if was_running {
            let spec = self.spec(rec);
            self.runtime.start(spec.clone()).await?;
            let pid = self.wait_healthy(&spec).await?;
            self.set_state(
                rec.name.as_str(),
                Status::Running,
                Some(pid),
                rec.restarts,
                None,
            );
        } else {
            self.set_state(rec.name.as_str(), rec.status, None, rec.restarts, None);
        }
        Ok(())
    }
}
