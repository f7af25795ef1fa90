//! The backups table, and the two things pockestrator does to an
//! instance's own SQLite files: copy one consistently while PocketBase
//! writes to it, and check one's integrity. Both live here because this
//! module is the only one that speaks SQL.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use semver::Version;

use super::{parse_ts, ts, Store, StoreError};
use crate::model::{BackupId, BackupTrigger, CronExpr, InstanceName, Retention};

/// One backup as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupRecord {
    pub instance: InstanceName,
    pub id: BackupId,
    pub created_at: DateTime<Utc>,
    /// The archive's size in bytes.
    pub size: u64,
    /// The archive's sha256, hex.
    pub sha256: String,
    /// Where it went, as the user named it (`file:///…`).
    pub destination: String,
    /// The archive itself.
    pub location: PathBuf,
    /// The PocketBase version the instance ran.
    pub version: Version,
    pub trigger: BackupTrigger,
}

impl Store {
    pub fn insert_backup(&self, b: &BackupRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO backups (instance, id, created_at, size, sha256, destination, location, version, trigger) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                b.instance.as_str(),
                b.id.as_str(),
                ts(b.created_at),
                b.size,
                b.sha256,
                b.destination,
                b.location.to_string_lossy(),
                b.version.to_string(),
                b.trigger.as_str(),
            ],
        )?;
        Ok(())
    }

    /// The backups of one instance, newest first.
    pub fn list_backups(&self, instance: &str) -> Result<Vec<BackupRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT instance, id, created_at, size, sha256, destination, location, version, trigger \
             FROM backups WHERE instance = ?1 ORDER BY created_at DESC, id DESC",
        )?;
        let rows = stmt.query_map([instance], raw_backup)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(parse_backup(row?)?);
        }
        Ok(out)
    }

    pub fn get_backup(&self, instance: &str, id: &str) -> Result<Option<BackupRecord>, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT instance, id, created_at, size, sha256, destination, location, version, trigger \
                 FROM backups WHERE instance = ?1 AND id = ?2",
                [instance, id],
                raw_backup,
            )
            .optional()?;
        row.map(parse_backup).transpose()
    }

    pub fn delete_backup(&self, instance: &str, id: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM backups WHERE instance = ?1 AND id = ?2",
            [instance, id],
        )?;
        Ok(n > 0)
    }
}

/// An instance's backup schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    pub instance: InstanceName,
    pub cron: CronExpr,
    pub retention: Retention,
    /// Where its backups go; `None`: the default directory.
    pub destination: Option<String>,
    pub last_run: DateTime<Utc>,
}

impl Store {
    /// Set (or replace) an instance's backup schedule.
    pub fn set_schedule(&self, s: &ScheduleRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO backup_schedules (instance, cron, keep_last, keep_daily, keep_weekly, keep_monthly, destination, last_run) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (instance) DO UPDATE SET cron = ?2, keep_last = ?3, keep_daily = ?4, \
             keep_weekly = ?5, keep_monthly = ?6, destination = ?7, last_run = ?8",
            params![
                s.instance.as_str(),
                s.cron.as_str(),
                s.retention.keep_last,
                s.retention.keep_daily,
                s.retention.keep_weekly,
                s.retention.keep_monthly,
                s.destination,
                ts(s.last_run),
            ],
        )?;
        Ok(())
    }

    pub fn delete_schedule(&self, instance: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM backup_schedules WHERE instance = ?1",
            [instance],
        )?;
        Ok(n > 0)
    }

    pub fn set_schedule_run(&self, instance: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE backup_schedules SET last_run = ?2 WHERE instance = ?1",
            params![instance, ts(at)],
        )?;
        Ok(())
    }

    /// Every schedule, or one instance's.
    pub fn schedules(&self, instance: Option<&str>) -> Result<Vec<ScheduleRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT instance, cron, keep_last, keep_daily, keep_weekly, keep_monthly, destination, last_run \
             FROM backup_schedules WHERE (?1 IS NULL OR instance = ?1) ORDER BY instance",
        )?;
        let rows = stmt.query_map([instance], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, u32>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                instance,
                cron,
                keep_last,
                keep_daily,
                keep_weekly,
                keep_monthly,
                destination,
                last_run,
            ) = row?;
            let label = format!("backup schedule of {instance}");
            let corrupt = |field: &'static str, value: &str| StoreError::Corrupt {
                row: label.clone(),
                field,
                value: value.to_string(),
            };
            out.push(ScheduleRecord {
                instance: InstanceName::parse(&instance)
                    .map_err(|_| corrupt("backup_schedules.instance", &instance))?,
                cron: CronExpr::parse(&cron)
                    .map_err(|_| corrupt("backup_schedules.cron", &cron))?,
                retention: Retention {
                    keep_last,
                    keep_daily,
                    keep_weekly,
                    keep_monthly,
                },
                destination,
                last_run: parse_ts(&label, "backup_schedules.last_run", last_run)?,
            });
        }
        Ok(out)
    }
}

type RawBackup = (
    String,
    String,
    String,
    u64,
    String,
    String,
    String,
    String,
    String,
);

fn raw_backup(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawBackup> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn parse_backup(raw: RawBackup) -> Result<BackupRecord, StoreError> {
    let (instance, id, created_at, size, sha256, destination, location, version, trigger) = raw;
    let row = format!("backup {instance}/{id}");
    let corrupt = |field: &'static str, value: &str| StoreError::Corrupt {
        row: row.clone(),
        field,
        value: value.to_string(),
    };
    Ok(BackupRecord {
        instance: InstanceName::parse(&instance)
            .map_err(|_| corrupt("backups.instance", &instance))?,
        id: BackupId::parse(&id).map_err(|_| corrupt("backups.id", &id))?,
        created_at: parse_ts(&row, "backups.created_at", created_at)?,
        size,
        sha256,
        destination,
        location: PathBuf::from(location),
        version: Version::parse(&version).map_err(|_| corrupt("backups.version", &version))?,
        trigger: BackupTrigger::parse(&trigger)
            .ok_or_else(|| corrupt("backups.trigger", &trigger))?,
    })
}

/// Copy the SQLite database at `src` to a new file `dst`, consistently,
/// while other processes may be writing to it: SQLite's online backup API
/// in one step, which reads from a single snapshot (one read transaction)
/// and, in WAL mode, never blocks writers. `src` is opened without
/// creating anything; the copy is a scratch file and is not fsynced.
pub fn snapshot_database(src: &Path, dst: &Path) -> Result<(), StoreError> {
    let open_error = |source| StoreError::Open {
        path: src.to_path_buf(),
        source,
    };
    let from = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_error)?;
    from.busy_timeout(std::time::Duration::from_secs(10))?;
    let mut to = Connection::open(dst).map_err(|source| StoreError::Open {
        path: dst.to_path_buf(),
        source,
    })?;
    // The copy is a scratch file on its way into the archive (which is
    // hashed and fsynced itself): no journal and no fsync of it, so the
    // copy does not flood the disk with a sync that PocketBase's own
    // commits would wait behind.
    to.pragma_update(None, "journal_mode", "OFF")?;
    to.pragma_update(None, "synchronous", "OFF")?;
    // Nor is it flushed as it grows: it is deleted once the archive holds
    // it, so pages that never reach the disk cost the disk nothing. Written
    // out, a copy of a large database filled the device's queue that the
    // instance's own writes then waited in (and its delete discarded as
    // many blocks while every journal commit waited): over half a second
    // of write stall at 1 GB.
    let copied = (|| -> Result<(), StoreError> {
        let backup = rusqlite::backup::Backup::new(&from, &mut to)?;
        // -1: every page in one step, so one read snapshot of the source.
        loop {
            match backup.step(-1)? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => continue,
                // The source is locked by a writer for a moment (rollback
                // journal mode only); wait and go on.
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        Ok(())
    })();
    // While the snapshot was held, no checkpoint could move the instance's
    // commits past it into the database file, so its WAL now holds every
    // write made during the copy. The first commit after the snapshot
    // would checkpoint all of that itself (SQLite's auto-checkpoint runs
    // in the committing connection) and the instance's writers would wait
    // for it: seconds, for a large database under load. Checkpointing it
    // here, at once, takes that work off them: a passive checkpoint never
    // holds the write lock, and an auto-checkpoint that finds this one
    // running skips its turn instead of waiting.
    if copied.is_ok() {
        checkpoint_passive(&from);
    }
    copied?;
    // The copy keeps the source's journal mode (WAL): make it one file
    // that opens anywhere, as PocketBase's own backups are.
    to.pragma_update(None, "journal_mode", "DELETE")?;
    drop(to);
    Ok(())
}

/// A passive checkpoint of the WAL database `conn` is open on: as much of
/// the WAL as no reader needs is copied into the database file, without
/// blocking its writers. Best effort: a database not in WAL mode has
/// nothing to checkpoint, and a failure only leaves the work to the
/// database's own next checkpoint.
fn checkpoint_passive(conn: &Connection) {
    // It answers one row (busy, frames in the WAL, frames checkpointed);
    // nothing here depends on it.
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::debug!("the checkpoint after a snapshot did not run: {e}");
    }
}

/// `PRAGMA integrity_check` of a database file: `Ok(())` when it says `ok`,
/// otherwise what it found (the first lines).
pub fn integrity_check(path: &Path) -> Result<Result<(), String>, StoreError> {
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(|source| {
            StoreError::Open {
                path: path.to_path_buf(),
                source,
            }
        })?;
    let checked = conn.prepare("PRAGMA integrity_check").and_then(|mut stmt| {
        stmt.query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.take(5).collect::<Result<Vec<_>, _>>())
    });
    let lines: Vec<String> = match checked {
        Ok(lines) => lines,
        // Not a database at all ("file is not a database").
        Err(e) => return Ok(Err(e.to_string())),
    };
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(Ok(()))
    } else {
        Ok(Err(lines.join("; ")))
    }
}

/// A digest of everything a database holds: every table's name and rows
/// (in rowid order, each value with its type). Two files with the same
/// digest hold the same data, whatever their pages look like: how a move
/// knows its replica caught up with the stopped instance.
pub fn content_digest(path: &Path) -> Result<[u8; 32], StoreError> {
    use rusqlite::types::ValueRef;
    use sha2::{Digest, Sha256};
    let open = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(open)?;
    let mut hash = Sha256::new();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(open)?;
    for table in tables {
        hash.update(b"T");
        hash.update(table.as_bytes());
        hash.update([0]);
        let quoted = table.replace('"', "\"\"");
        let sql = format!("SELECT * FROM \"{quoted}\" ORDER BY rowid");
        let mut stmt = match conn.prepare(&sql) {
            Ok(s) => s,
            // A table without rowids: in its own order.
            Err(_) => conn
                .prepare(&format!("SELECT * FROM \"{quoted}\""))
                .map_err(open)?,
        };
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).map_err(open)?;
        while let Some(row) = rows.next().map_err(open)? {
            hash.update(b"R");
            for i in 0..columns {
                match row.get_ref(i).map_err(open)? {
                    ValueRef::Null => hash.update(b"n"),
                    ValueRef::Integer(v) => {
                        hash.update(b"i");
                        hash.update(v.to_le_bytes());
                    }
                    ValueRef::Real(v) => {
                        hash.update(b"r");
                        hash.update(v.to_le_bytes());
                    }
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        hash.update(b"s");
                        hash.update((t.len() as u64).to_le_bytes());
                        hash.update(t);
                    }
                }
            }
        }
    }
    Ok(hash.finalize().into())
}

/// The token secrets PocketBase keeps per auth collection.
const SECRET_KEYS: [&str; 5] = [
    "authToken",
    "passwordResetToken",
    "emailChangeToken",
    "verificationToken",
    "fileToken",
];

/// Give every auth collection of a PocketBase `data.db` new token secrets
/// (`_collections.options`, see TECH-NOTES): a clone made from a backup
/// must not accept the original's tokens, superusers' included. Its users
/// sign in again; their passwords are unchanged. Returns how many
/// collections got new secrets (0 for a PocketBase that keeps no secrets
/// there).
pub fn rotate_auth_secrets(db: &Path) -> Result<usize, StoreError> {
    use rand::distributions::{Alphanumeric, DistString};
    let mut conn =
        Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(|source| {
            StoreError::Open {
                path: db.to_path_buf(),
                source,
            }
        })?;
    let has_options: bool = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('_collections') WHERE name IN ('options', 'type')",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n == 2)
        .unwrap_or(false);
    if !has_options {
        return Ok(0);
    }
    let tx = conn.transaction()?;
    let rows: Vec<(String, String)> = {
        let mut stmt = tx.prepare("SELECT id, options FROM _collections WHERE type = 'auth'")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let mut rotated = 0;
    for (id, options) in rows {
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&options) else {
            continue;
        };
        let mut changed = false;
        for key in SECRET_KEYS {
            if let Some(secret) = value.get_mut(key).and_then(|o| o.get_mut("secret")) {
                *secret = serde_json::Value::String(
                    Alphanumeric.sample_string(&mut rand::thread_rng(), 50),
                );
                changed = true;
            }
        }
        if changed {
            tx.execute(
                "UPDATE _collections SET options = ?2 WHERE id = ?1",
                params![id, value.to_string()],
            )?;
            rotated += 1;
        }
    }
    tx.commit()?;
    Ok(rotated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_digest_follows_the_rows_not_the_pages() {
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, vacuum: bool, extra: bool| {
            let path = dir.path().join(name);
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE \"odd \"\"name\" (id INTEGER PRIMARY KEY, t TEXT, b BLOB, r REAL);
                 INSERT INTO \"odd \"\"name\" (t, b, r) VALUES ('a', x'00ff', 1.5), (NULL, NULL, NULL);
                 CREATE TABLE pad (x TEXT); INSERT INTO pad VALUES (hex(randomblob(5000)));
                 DELETE FROM pad;",
            )
            .unwrap();
            if extra {
                conn.execute("INSERT INTO pad VALUES ('one more')", [])
                    .unwrap();
            }
            if vacuum {
                conn.execute_batch("VACUUM").unwrap();
            }
            path
        };
        let a = content_digest(&make("a.db", false, false)).unwrap();
        // Other pages, the same rows.
        let b = content_digest(&make("b.db", true, false)).unwrap();
        assert_eq!(a, b);
        // One row more.
        let c = content_digest(&make("c.db", false, true)).unwrap();
        assert_ne!(a, c);
        assert!(content_digest(&dir.path().join("missing.db")).is_err());
    }

    #[test]
    fn backups_are_recorded_listed_and_deleted() {
        let store = Store::open_in_memory().unwrap();
        let rec = |id: &str, at: &str| BackupRecord {
            instance: InstanceName::parse("shop").unwrap(),
            id: BackupId::parse(id).unwrap(),
            created_at: DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc),
            size: 10,
            sha256: "ab".into(),
            destination: "file:///b".into(),
            location: "/b/x.zip".into(),
            version: Version::new(0, 40, 6),
            trigger: BackupTrigger::Manual,
        };
        store
            .insert_backup(&rec("a1", "2026-12-01T10:00:00Z"))
            .unwrap();
        store
            .insert_backup(&rec("a2", "2026-12-01T11:00:00Z"))
            .unwrap();
        let ids: Vec<_> = store
            .list_backups("shop")
            .unwrap()
            .into_iter()
            .map(|b| b.id.to_string())
            .collect();
        assert_eq!(ids, ["a2", "a1"]);
        assert_eq!(
            store.get_backup("shop", "a1").unwrap(),
            Some(rec("a1", "2026-12-01T10:00:00Z"))
        );
        assert!(store.delete_backup("shop", "a1").unwrap());
        assert!(!store.delete_backup("shop", "a1").unwrap());
        assert!(store.get_backup("shop", "a1").unwrap().is_none());
    }

    #[test]
    fn snapshot_copies_a_live_wal_database_and_checks_it() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("data.db");
        let live = Connection::open(&src).unwrap();
        live.pragma_update(None, "journal_mode", "WAL").unwrap();
        live.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);")
            .unwrap();
        // Uncheckpointed rows live only in the WAL: a file copy would miss them.
        live.execute("INSERT INTO t VALUES (3)", []).unwrap();
        let dst = dir.path().join("copy.db");
        snapshot_database(&src, &dst).unwrap();
        let copy = Connection::open(&dst).unwrap();
        let n: i64 = copy
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(integrity_check(&dst).unwrap(), Ok(()));
        std::fs::write(
            dir.path().join("junk.db"),
            b"not a database at all, not at all",
        )
        .unwrap();
        assert!(integrity_check(&dir.path().join("junk.db"))
            .unwrap()
            .is_err());
    }

    #[test]
    fn a_snapshot_checkpoints_the_wal_behind_it_so_the_next_commit_need_not() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("data.db");
        let live = Connection::open(&src).unwrap();
        live.pragma_update(None, "journal_mode", "WAL").unwrap();
        // The instance's own checkpoints off: only the snapshot's can move
        // the rows from the WAL into the database file.
        live.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        live.execute_batch(
            "CREATE TABLE t (x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO t SELECT hex(randomblob(200)) FROM n;",
        )
        .unwrap();
        let before = std::fs::metadata(&src).unwrap().len();
        snapshot_database(&src, &dir.path().join("copy.db")).unwrap();
        let after = std::fs::metadata(&src).unwrap().len();
        // 2,000 rows of 400 characters are in the database file now, not
        // only in the WAL.
        assert!(
            after >= before + 800_000,
            "data.db grew from {before} to {after} bytes only"
        );
        let n: i64 = live
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2000);
    }
}
