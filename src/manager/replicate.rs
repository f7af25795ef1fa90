//! Continuous replication of an instance's `data.db` with Litestream:
//! turn it on (`replicate NAME --to URL`) or off, resume it at daemon
//! start, start a new generation whenever `data.db` is replaced (our
//! restores, and PocketBase's own, which renames its backup's `data.db`
//! into place underneath Litestream), and restore from the replica into a
//! staging file for [`super::backup`]'s safe swap.
//!
//! One writer per replica path: a target that is, holds or lies inside
//! another instance's target is refused, and so a clone restored from a
//! replica does not replicate onto the path it came from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Actor, Manager, ManagerError, Result};
use crate::model::names::shown;
use crate::model::{AuditAction, Destination, InstanceName};
use crate::replication::{self, DbReplication, ReplicationError};
use crate::store::{InstanceRecord, ReplicationRecord};

/// How an instance's replication is doing, for `info` and the API.
#[derive(Debug, Clone)]
pub struct ReplicationView {
    /// The target as the user named it.
    pub target: String,
    /// Where the current generation is written.
    pub location: String,
    pub generation: String,
    pub since: DateTime<Utc>,
    /// `running`, `restarting` (between a crash and its restart) or
    /// `stopped` (not supervised by this daemon: no Litestream installed).
    pub state: &'static str,
    pub pid: Option<u32>,
}

fn replication_error(e: ReplicationError) -> ManagerError {
    match e {
        ReplicationError::NotInstalled | ReplicationError::RestoreFailed(_) => {
            ManagerError::Conflict(e.to_string())
        }
        ReplicationError::Unsupported(why) => ManagerError::Invalid(why),
        ReplicationError::Io { context, source } => ManagerError::Io { context, source },
    }
}

/// Whether two targets would have two writers on one path: the same, or
/// one inside the other.
fn overlaps(a: &Destination, b: &Destination) -> bool {
    let (a, b) = (a.to_text(), b.to_text());
    let base = |t: &str| {
        t.split('?')
            .next()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_string()
    };
    let (a, b) = (base(&a), base(&b));
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

impl Manager {
    fn db_replication(&self, rec: &InstanceRecord, record: &ReplicationRecord) -> DbReplication {
        DbReplication {
            db: self.spec(rec).data_dir().join("data.db"),
            meta: self.layout.replication_meta(&rec.name),
            replica: replication::replica_location(&record.target, &record.generation),
        }
    }

    pub(super) fn litestream_binary(&self) -> Result<PathBuf> {
        replication::find_binary(self.cfg.litestream.as_deref()).map_err(replication_error)
    }

    /// The replication of an instance, if it has one.
    pub fn replication_of(&self, name: &InstanceName) -> Option<ReplicationView> {
        let record = self
            .store
            .replications(Some(name))
            .ok()?
            .into_iter()
            .next()?;
        Some(self.replication_view(record))
    }

    /// Every replicated instance's replication, by name, in one query.
    pub fn replications_by_name(&self) -> HashMap<String, ReplicationView> {
        self.store
            .replications(None)
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.instance.to_string(), self.replication_view(r)))
            .collect()
    }

    fn replication_view(&self, record: crate::store::ReplicationRecord) -> ReplicationView {
        let name = record.instance.clone();
        let name = &name;
        let (state, pid) = match self.replicator.state(name) {
            Some(Some(pid)) => ("running", Some(pid)),
            Some(None) => ("restarting", None),
            None => ("stopped", None),
        };
        ReplicationView {
            target: record.target.to_text(),
            location: replication::replica_location(&record.target, &record.generation).to_text(),
            generation: record.generation,
            since: record.since,
            state,
            pid,
        }
    }

    /// Replicate an instance's `data.db` to `to` continuously (a
    /// `file://`, `s3://` or `nats://` URL), in place of any earlier target.
    pub async fn replicate(&self, name: &str, to: &str, actor: &Actor) -> Result<InstanceRecord> {
        let result = async {
            let target = Destination::parse(to)?;
            replication::check_target(&target).map_err(replication_error)?;
            let lock = self.lock_for(name);
            let _guard = lock.lock().await;
            let rec = self.get(name)?;
            for other in self.store.replications(None)? {
                if other.instance != rec.name && overlaps(&other.target, &target) {
                    return Err(ManagerError::Conflict(format!(
                        "{} is replicated to {} already: one writer per replica path, give {name} a path of its own",
                        other.instance,
                        other.target.to_text()
                    )));
                }
            }
            let binary = self.litestream_binary()?;
            let current = self.store.replications(Some(&rec.name))?.into_iter().next();
            let record = match current {
                // The same target again: carry on with the generation
                // Litestream follows (its meta dir knows where it is).
                Some(r) if r.target == target => r,
                _ => {
                    self.replicator
                        .remove(Some(binary.clone()), &rec.name)
                        .await;
                    wipe_meta(self.layout.replication_meta(&rec.name)).await;
                    let now = Utc::now();
                    ReplicationRecord {
                        instance: rec.name.clone(),
                        target,
                        generation: replication::new_generation(now),
                        since: now,
                    }
                }
            };
            self.store.set_replication(&record)?;
            self.run_litestream(&rec, &record, binary).await?;
            Ok(rec)
        }
        .await;
        let detail = self
            .replication_of_name(name)
            .map(|v| format!("replicating to {} (generation {})", v.target, v.generation));
        self.audited(actor, AuditAction::Replicate, name, result, |_| {
            detail.unwrap_or_default()
        })
    }

    fn replication_of_name(&self, name: &str) -> Option<ReplicationView> {
        InstanceName::parse(name)
            .ok()
            .and_then(|n| self.replication_of(&n))
    }

    /// Stop replicating an instance; the replica stays where it is.
    pub async fn replicate_off(&self, name: &str, actor: &Actor) -> Result<InstanceRecord> {
        let result = async {
            let lock = self.lock_for(name);
            let _guard = lock.lock().await;
            let rec = self.get(name)?;
            let Some(record) = self.store.replications(Some(&rec.name))?.into_iter().next() else {
                return Err(ManagerError::Conflict(format!(
                    "{name} is not replicated: see `pockestrator replicate --help`"
                )));
            };
            self.stop_replication(&rec).await;
            self.store.delete_replication(&rec.name)?;
            Ok((rec, record))
        }
        .await;
        self.audited(actor, AuditAction::ReplicateOff, name, result, |(_, r)| {
            format!(
                "replication to {} stopped; the replica stays there",
                r.target.to_text()
            )
        })
        .map(|(rec, _)| rec)
    }

    async fn run_litestream(
        &self,
        rec: &InstanceRecord,
        record: &ReplicationRecord,
        binary: PathBuf,
    ) -> Result<()> {
        self.replicator
            .put(binary, rec.name.clone(), self.db_replication(rec, record))
            .await
            .map_err(|source| ManagerError::Io {
                context: format!("cannot start litestream for {}", rec.name),
                source,
            })
    }

    /// Run an instance's recorded replication again as it was (after a
    /// restore was undone: the same `data.db` is back).
    pub(super) async fn resume_replication(&self, rec: &InstanceRecord) {
        let Ok(Some(record)) = self
            .store
            .replications(Some(&rec.name))
            .map(|r| r.into_iter().next())
        else {
            return;
        };
        let started = match self.litestream_binary() {
            Ok(binary) => self.run_litestream(rec, &record, binary).await,
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            tracing::error!(instance = %rec.name, error = %e, "cannot resume replication");
        }
    }

    /// Stop an instance's Litestream (before its `data.db` is swapped, or
    /// when it is deleted). Its record stays.
    pub(super) async fn stop_replication(&self, rec: &InstanceRecord) {
        self.replicator
            .remove(self.litestream_binary().ok(), &rec.name)
            .await;
    }

    /// After `data.db` was replaced: a new generation, a clean meta dir,
    /// Litestream started on it. Nothing when the instance is not
    /// replicated.
    pub(super) async fn reset_replication(&self, rec: &InstanceRecord, why: &str) {
        let Ok(Some(mut record)) = self
            .store
            .replications(Some(&rec.name))
            .map(|r| r.into_iter().next())
        else {
            return;
        };
        self.replicator
            .remove(self.litestream_binary().ok(), &rec.name)
            .await;
        wipe_meta(self.layout.replication_meta(&rec.name)).await;
        let outcome = async {
            if replication::generation_location(&record.target, "g").is_none() {
                self.store.delete_replication(&rec.name)?;
                return Err(ManagerError::Conflict(format!(
                    "replication to {} stopped: a NATS bucket holds one database's history, so replicate {} to a new bucket",
                    record.target.to_text(),
                    rec.name
                )));
            }
            let now = Utc::now();
            record.generation = replication::new_generation(now);
            record.since = now;
            self.store.set_replication(&record)?;
            let binary = self.litestream_binary()?;
            self.run_litestream(rec, &record, binary).await?;
            Ok(format!(
                "{why}: replicating to {} as generation {}",
                record.target.to_text(),
                record.generation
            ))
        }
        .await;
        self.audit(
            &Actor::daemon(),
            AuditAction::ReplicaReset,
            Some(&rec.name),
            outcome.map_err(|e| e.to_string()),
        );
    }

    /// At daemon start: every recorded replication runs again (its
    /// Litestream adopted when it survived the previous daemon).
    pub(super) async fn resume_replications(&self) {
        let records = match self.store.replications(None) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the replications");
                return;
            }
        };
        let mut dbs = Vec::new();
        for record in &records {
            if let Ok(rec) = self.get(&record.instance) {
                dbs.push((rec.name.clone(), self.db_replication(&rec, record)));
            }
        }
        if dbs.is_empty() {
            return;
        }
        let resumed = match self.litestream_binary() {
            Ok(binary) => self
                .replicator
                .resume(binary, dbs.clone())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = resumed {
            tracing::error!(error = %e, "cannot resume replication");
            for (name, _) in dbs {
                self.audit(
                    &Actor::daemon(),
                    AuditAction::Recover,
                    Some(&name),
                    Err(format!("replication not resumed: {e}")),
                );
            }
        }
    }

    /// Every second: a replicated `data.db` that is another file than the
    /// one Litestream started on (PocketBase's own restore) gets a new
    /// generation.
    pub async fn replication_loop(
        self: std::sync::Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let Ok(records) = self.store.replications(None) else {
                continue;
            };
            for record in records {
                if !self.replicator.db_replaced(&record.instance) {
                    continue;
                }
                let lock = self.lock_for(&record.instance);
                let _guard = lock.lock().await;
                if !self.replicator.db_replaced(&record.instance) {
                    continue;
                }
                if let Ok(rec) = self.get(&record.instance) {
                    tracing::info!(instance = %rec.name, "data.db was replaced: new replication generation");
                    self.reset_replication(&rec, "data.db was replaced (PocketBase's own restore)")
                        .await;
                }
            }
        }
        self.replicator.shutdown();
    }

    /// Restore `name`'s replica (latest, or as at `timestamp`) into
    /// `output`, and check it. Blocking work off the async threads.
    pub(super) async fn restore_replica_to(
        &self,
        name: &InstanceName,
        timestamp: Option<DateTime<Utc>>,
        output: PathBuf,
    ) -> Result<()> {
        let Some(record) = self.store.replications(Some(name))?.into_iter().next() else {
            return Err(ManagerError::Conflict(format!(
                "{name} is not replicated: turn it on with `pockestrator replicate {name} --to URL`"
            )));
        };
        let binary = self.litestream_binary()?;
        let location = replication::replica_location(&record.target, &record.generation);
        if let Some(t) = timestamp {
            if t < record.since {
                return Err(ManagerError::Invalid(format!(
                    "{} is before the replica's current generation began ({}): restore a backup for earlier states",
                    t.to_rfc3339(),
                    record.since.to_rfc3339()
                )));
            }
        }
        self.restore_location_to(location, timestamp, output, binary)
            .await
    }

    /// Restore the database replicated to `location` into `output` (which
    /// must not exist), checked with SQLite's integrity check.
    pub(super) async fn restore_location_to(
        &self,
        location: Destination,
        timestamp: Option<DateTime<Utc>>,
        output: PathBuf,
        binary: PathBuf,
    ) -> Result<()> {
        let credentials = self.cfg.credentials.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = output.parent() {
                std::fs::create_dir_all(dir).map_err(|source| ManagerError::Io {
                    context: format!("cannot create {}", dir.display()),
                    source,
                })?;
            }
            replication::restore(&binary, &location, &output, timestamp, &credentials)
                .map_err(replication_error)?;
            if let Err(found) = crate::store::integrity_check(&output)? {
                return Err(ManagerError::Invalid(format!(
                    "the database restored from the replica fails SQLite's integrity check ({found}): nothing was changed"
                )));
            }
            Ok(())
        })
        .await
        .map_err(|e| ManagerError::Internal(format!("replica restore task failed: {e}")))?
    }
}

/// Parse `--timestamp`: RFC 3339.
pub(super) fn parse_timestamp(raw: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ManagerError::Invalid(format!(
                "timestamp {} is not an RFC 3339 time: use e.g. 2026-12-01T13:00:00Z",
                shown(raw)
            ))
        })
}

async fn wipe_meta(meta: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || remove_dir(&meta)).await;
}

fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot clear litestream's meta dir");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_per_path() {
        let d = |s: &str| Destination::parse(s).unwrap();
        assert!(overlaps(&d("file:///r/a"), &d("file:///r/a/")));
        assert!(overlaps(&d("file:///r/a"), &d("file:///r/a/b")));
        assert!(overlaps(&d("file:///r/a/b"), &d("/r/a")));
        assert!(!overlaps(&d("file:///r/a"), &d("file:///r/ab")));
        assert!(overlaps(
            &d("s3://bkt/p?endpoint=http://h:1"),
            &d("s3://bkt/p/q")
        ));
        assert!(!overlaps(&d("s3://bkt/p"), &d("s3://cat/p")));
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert!(parse_timestamp("2026-12-01T13:00:00Z").is_ok());
        assert!(parse_timestamp("2026-12-01T13:00:00.5+01:00").is_ok());
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2026-12-01").is_err());
    }
}
