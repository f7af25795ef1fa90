//! SQLite state in the data dir: instances, the append-only audit log, the
//! history of configuration changes, and seed 001's user → instance map.
//!
//! **Architecture Invariant:** this is the only module that writes SQL.
//! Everything else sees plain Rust records.
//!
//! The schema is versioned with `PRAGMA user_version` and migrated forward
//! on open (see [`migrations`]); a database written by a newer pockestrator
//! is refused rather than misread. The connection runs in WAL mode with
//! `synchronous=NORMAL`: a crash of the daemon at any point leaves every
//! committed transaction on disk (the WAL is written before a commit
//! returns); only a power loss can drop the last few, and never corrupts the
//! database. FULL would fsync on every commit, which made bringing up many
//! instances at once wait on the disk.

mod backups;
mod collections;
mod deploys;
mod fleet;
mod migrations;
mod replications;

pub use backups::{
    content_digest, integrity_check, rotate_auth_secrets, snapshot_database, BackupRecord,
    ScheduleRecord,
};
pub use collections::{read_collections, CollectionsError};
pub use deploys::{DeployRecord, DeploySource};
pub use fleet::Labels;
pub use replications::ReplicationRecord;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};

use semver::Version;

use crate::model::names;
use crate::model::{
    AuditAction, AuditOutcome, CpuQuota, CronExpr, DesiredState, Domain, IdleTimeout, InstanceName,
    MemoryMax, ReleaseName, ResourceLimits, Status, UserId,
};

/// What went wrong in the store. Constraint violations that a user can
/// cause are their own variants so that the API can answer 409.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("an instance named {0} already exists: pick another name")]
    NameTaken(String),
    #[error(
        "port {0} is already used by another instance: pick another, or leave it out to get one"
    )]
    PortTaken(u16),
    #[error("user {0} already has an instance")]
    UserTaken(String),
    #[error("domain {domain} is already routed to instance {owner}: remove it there first")]
    DomainTaken { domain: String, owner: String },
    #[error("the state database {path} was written by a newer pockestrator (schema {found}, this one knows up to {known}): upgrade pockestrator")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("cannot open the state database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the state database holds an invalid value in {field} of {row}: {value:?}")]
    Corrupt {
        row: String,
        field: &'static str,
        value: String,
    },
}

/// Where an instance is in its life cycle, as far as the store is concerned.
/// `Creating` rows are rolled back on daemon start: a crash in the middle of
/// a create must not leave a half-made instance behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Creating,
    Ready,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Creating => "creating",
            Phase::Ready => "ready",
        }
    }
}

/// One instance as stored, parsed: a row whose values do not parse is a
/// [`StoreError::Corrupt`] naming the row, never a panic further on.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRecord {
    pub name: InstanceName,
    pub port: u16,
    pub version: Version,
    pub binary_path: PathBuf,
    /// The instance directory: `pb_data`, `pb_hooks`, `pb_migrations`,
    /// `pb_public` and `logs` live under it.
    pub dir: PathBuf,
    pub domain: Option<Domain>,
    pub desired: DesiredState,
    pub status: Status,
    pub phase: Phase,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub superuser_email: Option<String>,
    pub compat_user: Option<UserId>,
    pub systemd_config_hash: Option<String>,
    pub caddy_config_hash: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_health_check: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The request body limit of its route; `None`: the router's default.
    pub max_body_bytes: Option<u64>,
    /// systemd's `MemoryMax=` and `CPUQuota=` (systemd runtime).
    pub limits: ResourceLimits,
    /// The release deployed from git that runs (`releases/NAME` in the
    /// instance directory: its hooks, migrations and public files), if the
    /// instance is deployed from a repository.
    pub release: Option<ReleaseName>,
    /// Whether `binary_path` is a binary that release built (a custom
    /// PocketBase-based Go program) rather than a stock release.
    pub release_binary: bool,
    /// How long it may go without a request through the router before it
    /// is stopped and marked `sleeping`; `None`: it never sleeps.
    pub idle_timeout: Option<IdleTimeout>,
    /// When a sleeping instance is woken for its own cron jobs.
    pub wake_schedule: Option<CronExpr>,
}

/// A dashboard sign-in session as stored: the hash of its id (the cookie
/// holds the id itself), its CSRF token, and who signed in.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id_hash: String,
    pub csrf: String,
    pub actor: String,
    /// A fingerprint of the admin token the session was opened with.
    pub token_fp: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One line of the audit log: who did what, when, with which result.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: AuditAction,
    pub instance: Option<String>,
    pub result: AuditOutcome,
    pub detail: String,
}

/// A new audit line, before the store gives it an id.
#[derive(Debug, Clone)]
pub struct NewAudit<'a> {
    pub actor: &'a str,
    pub action: AuditAction,
    pub instance: Option<&'a str>,
    pub result: AuditOutcome,
    pub detail: &'a str,
}

/// One change of one configuration field of an instance.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConfigChange {
    pub id: i64,
    pub instance: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub field: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
}

/// The SQLite store. Cheap to share behind an `Arc`; every call takes the
/// connection lock for one short statement or transaction.
pub struct Store {
    conn: Mutex<Connection>,
    /// A read-only second connection (a file store's; an in-memory one has
    /// only `conn`) for the reads of the whole fleet: in WAL mode it reads
    /// a committed snapshot while `conn` writes, so a list of ten thousand
    /// instances never holds up a wake's or a health check's write.
    reader: Option<Mutex<Connection>>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A stored timestamp (as `ts` writes it), if it is one.
fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn parse_ts(row: &str, field: &'static str, raw: String) -> Result<DateTime<Utc>, StoreError> {
    parse_time(&raw).ok_or_else(|| StoreError::Corrupt {
        row: row.to_string(),
        field,
        value: raw,
    })
}

/// How an instance row is named in an error: a valid name as it is,
/// anything else quoted and bounded.
fn row_label(row: &str) -> String {
    if InstanceName::parse(row).is_ok() {
        row.to_string()
    } else {
        names::shown(row)
    }
}

/// Map a UNIQUE violation to the variant a user understands.
fn map_unique(err: rusqlite::Error, rec: &InstanceRecord) -> StoreError {
    if let rusqlite::Error::SqliteFailure(e, Some(msg)) = &err {
        if e.code == rusqlite::ErrorCode::ConstraintViolation {
            if msg.contains("instances.name") {
                return StoreError::NameTaken(rec.name.to_string());
            }
            if msg.contains("instances.port") {
                return StoreError::PortTaken(rec.port);
            }
            if msg.contains("instances.compat_user") {
                return StoreError::UserTaken(
                    rec.compat_user
                        .as_ref()
                        .map(UserId::to_string)
                        .unwrap_or_default(),
                );
            }
        }
    }
    StoreError::Sql(err)
}

/// How much of the database file SQLite may map instead of copying pages
/// in with `pread` (address space, not memory: the pages are the file's).
const MMAP_BYTES: i64 = 256 << 20;

const INSTANCE_COLUMNS: &str =
    "name, port, version, binary_path, dir, domain, desired, status, phase, \
     pid, restarts, superuser_email, compat_user, systemd_config_hash, caddy_config_hash, \
     created_by, created_at, updated_at, last_health_check, last_error, max_body_bytes, \
     memory_max, cpu_quota, release, release_binary, idle_timeout_secs, wake_schedule";

fn instance_from_row(row: &Row<'_>) -> rusqlite::Result<Result<InstanceRecord, StoreError>> {
    let name: String = row.get(0)?;
    let version: String = row.get(2)?;
    let binary_path: String = row.get(3)?;
    let dir: String = row.get(4)?;
    let domain: Option<String> = row.get(5)?;
    let desired: String = row.get(6)?;
    let status: String = row.get(7)?;
    let phase: String = row.get(8)?;
    let compat_user: Option<String> = row.get(12)?;
    let created_at: String = row.get(16)?;
    let updated_at: String = row.get(17)?;
    let last_health: Option<String> = row.get(18)?;
    let memory_max: Option<String> = row.get(21)?;
    let cpu_quota: Option<String> = row.get(22)?;
    let release: Option<String> = row.get(23)?;
    let release_binary: bool = row.get(24)?;
    let idle_timeout_secs: Option<i64> = row.get(25)?;
    let wake_schedule: Option<String> = row.get(26)?;
    // The row's label is made only for an error: a list of ten thousand
    // rows should not format ten thousand labels it never shows.
    let corrupt = |field: &'static str, value: &str| StoreError::Corrupt {
        row: row_label(&name),
        field,
        value: value.to_string(),
    };
    let time = |field: &'static str, raw: &str| parse_time(raw).ok_or_else(|| corrupt(field, raw));
    let build = || -> Result<InstanceRecord, StoreError> {
        Ok(InstanceRecord {
            name: InstanceName::parse(&name).map_err(|_| corrupt("instances.name", &name))?,
            port: row.get(1)?,
            version: Version::parse(&version)
                .map_err(|_| corrupt("instances.version", &version))?,
            binary_path: PathBuf::from(&binary_path),
            dir: PathBuf::from(&dir),
            domain: domain
                .as_deref()
                .map(|d| Domain::parse(d).map_err(|_| corrupt("instances.domain", d)))
                .transpose()?,
            desired: DesiredState::parse(&desired)
                .ok_or_else(|| corrupt("instances.desired", &desired))?,
            status: Status::parse(&status).ok_or_else(|| corrupt("instances.status", &status))?,
            phase: match phase.as_str() {
                "creating" => Phase::Creating,
                "ready" => Phase::Ready,
                _ => return Err(corrupt("instances.phase", &phase)),
            },
            pid: row.get(9)?,
            restarts: row.get(10)?,
            superuser_email: row.get(11)?,
            compat_user: compat_user
                .as_deref()
                .map(|u| UserId::parse(u).map_err(|_| corrupt("instances.compat_user", u)))
                .transpose()?,
            systemd_config_hash: row.get(13)?,
            caddy_config_hash: row.get(14)?,
            created_by: row.get(15)?,
            created_at: time("instances.created_at", &created_at)?,
            updated_at: time("instances.updated_at", &updated_at)?,
            last_health_check: last_health
                .as_deref()
                .map(|t| time("instances.last_health_check", t))
                .transpose()?,
            last_error: row.get(19)?,
            max_body_bytes: row.get(20)?,
            limits: ResourceLimits {
                memory_max: memory_max
                    .as_deref()
                    .map(|m| MemoryMax::parse(m).map_err(|_| corrupt("instances.memory_max", m)))
                    .transpose()?,
                cpu_quota: cpu_quota
                    .as_deref()
                    .map(|q| CpuQuota::parse(q).map_err(|_| corrupt("instances.cpu_quota", q)))
                    .transpose()?,
            },
            release: release
                .as_deref()
                .map(|r| ReleaseName::parse(r).map_err(|_| corrupt("instances.release", r)))
                .transpose()?,
            release_binary,
            idle_timeout: idle_timeout_secs
                .map(|secs| {
                    u64::try_from(secs)
                        .ok()
                        .and_then(IdleTimeout::from_secs)
                        .ok_or_else(|| corrupt("instances.idle_timeout_secs", &secs.to_string()))
                })
                .transpose()?,
            wake_schedule: wake_schedule
                .as_deref()
                .map(|c| CronExpr::parse(c).map_err(|_| corrupt("instances.wake_schedule", c)))
                .transpose()?,
        })
    };
    Ok(build())
}

/// The configuration fields whose changes are kept in `config_history`.
fn config_fields(rec: &InstanceRecord) -> [(&'static str, Option<String>); 12] {
    [
        ("port", Some(rec.port.to_string())),
        ("version", Some(rec.version.to_string())),
        ("binary_path", Some(path_text(&rec.binary_path))),
        ("domain", rec.domain.as_ref().map(Domain::to_string)),
        ("desired", Some(rec.desired.as_str().to_string())),
        ("superuser_email", rec.superuser_email.clone()),
        ("max_body_bytes", rec.max_body_bytes.map(|b| b.to_string())),
        (
            "memory_max",
            rec.limits.memory_max.as_ref().map(MemoryMax::to_string),
        ),
        (
            "cpu_quota",
            rec.limits.cpu_quota.as_ref().map(CpuQuota::to_string),
        ),
        ("release", rec.release.as_ref().map(ReleaseName::to_string)),
        ("idle_timeout", rec.idle_timeout.map(|t| t.to_string())),
        (
            "wake_schedule",
            rec.wake_schedule.as_ref().map(|c| c.as_str().to_string()),
        ),
    ]
}

/// A path as stored: its text (paths in the store come from our own
/// layout and from `--binary`, both valid UTF-8 in practice; anything
/// else is stored lossily rather than refused).
fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

impl Store {
    /// Open (creating if needed) and migrate the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut store = Self::setup(conn, path)?;
        let reader = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        reader.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        store.reader = Some(Mutex::new(reader));
        Ok(store)
    }

    /// An in-memory store, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        Self::setup(conn, Path::new(":memory:"))
    }

    fn setup(mut conn: Connection, path: &Path) -> Result<Store, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        migrations::migrate(&mut conn, path)?;
        Ok(Store {
            conn: Mutex::new(conn),
            reader: None,
        })
    }

    /// The connection for reads of the whole fleet (see `reader`).
    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        match &self.reader {
            Some(reader) => reader.lock().unwrap_or_else(|p| p.into_inner()),
            None => self.conn(),
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent
        // (statements are atomic), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The schema version of this database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    pub fn insert_instance(&self, rec: &InstanceRecord) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            &format!(
                "INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)"
            ),
            params![
                rec.name.as_str(),
                rec.port,
                rec.version.to_string(),
                path_text(&rec.binary_path),
                path_text(&rec.dir),
                rec.domain.as_ref().map(Domain::as_str),
                rec.desired.as_str(),
                rec.status.as_str(),
                rec.phase.as_str(),
                rec.pid,
                rec.restarts,
                rec.superuser_email,
                rec.compat_user.as_ref().map(UserId::as_str),
                rec.systemd_config_hash,
                rec.caddy_config_hash,
                rec.created_by,
                ts(rec.created_at),
                ts(rec.updated_at),
                rec.last_health_check.map(ts),
                rec.last_error,
                rec.max_body_bytes,
                rec.limits.memory_max.as_ref().map(MemoryMax::as_str),
                rec.limits.cpu_quota.as_ref().map(CpuQuota::as_str),
                rec.release.as_ref().map(ReleaseName::as_str),
                rec.release_binary,
                rec.idle_timeout.map(|t| t.as_secs() as i64),
                rec.wake_schedule.as_ref().map(CronExpr::as_str),
            ],
        )
        .map_err(|e| map_unique(e, rec))?;
        Ok(())
    }

    pub fn get_instance(&self, name: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE name = ?1"),
                [name],
                instance_from_row,
            )
            .optional()?;
        row.transpose()
    }

    pub fn get_instance_by_user(&self, user: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE compat_user = ?1"),
                [user],
                instance_from_row,
            )
            .optional()?;
        row.transpose()
    }

    /// Every instance, by name.
    pub fn list_instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        self.select_instances("1")
    }

    /// How many instances there are, and how many of them run (a host's
    /// heartbeat): one counting query, not a read of every row.
    pub fn instance_counts(&self) -> Result<(usize, usize), StoreError> {
        let conn = self.reader();
        let (total, running): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(status = 'running'), 0) FROM instances WHERE phase = 'ready'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        Ok((total as usize, running as usize))
    }

    /// The instances scale to zero looks at: awake ones with an idle
    /// timeout, and sleeping ones with a wake schedule. Its cost follows
    /// how many are awake, not the size of the fleet.
    pub fn idle_candidates(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        self.select_instances(
            "phase = 'ready' AND ((idle_timeout_secs IS NOT NULL AND status IN ('running', 'unhealthy')) \
             OR (status = 'sleeping' AND wake_schedule IS NOT NULL))",
        )
    }

    /// The instances that are not stopped or asleep (the health loop's).
    pub fn awake_instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        self.select_instances("phase = 'ready' AND status NOT IN ('stopped', 'sleeping')")
    }

    /// The instances `filter` (an SQL condition of ours, never input)
    /// selects, by name.
    fn select_instances(&self, filter: &str) -> Result<Vec<InstanceRecord>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE {filter} ORDER BY name"
        ))?;
        let rows = stmt.query_map([], instance_from_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    /// Ports held by instances, whatever their state: a stopped instance
    /// keeps its port.
    pub fn used_ports(&self) -> Result<Vec<u16>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT port FROM instances")?;
        let ports = stmt
            .query_map([], |r| r.get::<_, u16>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ports)
    }

    /// Which instance holds `port`, if any.
    pub fn port_owner(&self, port: u16) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT name FROM instances WHERE port = ?1", [port], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Replace an instance's configuration, recording every changed
    /// configuration field in `config_history` in the same transaction.
    pub fn update_config(&self, rec: &InstanceRecord, actor: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let old = tx
            .query_row(
                &format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE name = ?1"),
                [rec.name.as_str()],
                instance_from_row,
            )
            .optional()?
            .transpose()?;
        let now = Utc::now();
        tx.execute(
            "UPDATE instances SET port = ?2, version = ?3, binary_path = ?4, domain = ?5, \
             desired = ?6, superuser_email = ?7, phase = ?8, systemd_config_hash = ?9, \
             caddy_config_hash = ?10, updated_at = ?11, max_body_bytes = ?12, memory_max = ?13, \
             cpu_quota = ?14, release = ?15, release_binary = ?16, idle_timeout_secs = ?17, \
             wake_schedule = ?18 WHERE name = ?1",
            params![
                rec.name.as_str(),
                rec.port,
                rec.version.to_string(),
                path_text(&rec.binary_path),
                rec.domain.as_ref().map(Domain::as_str),
                rec.desired.as_str(),
                rec.superuser_email,
                rec.phase.as_str(),
                rec.systemd_config_hash,
                rec.caddy_config_hash,
                ts(now),
                rec.max_body_bytes,
                rec.limits.memory_max.as_ref().map(MemoryMax::as_str),
                rec.limits.cpu_quota.as_ref().map(CpuQuota::as_str),
                rec.release.as_ref().map(ReleaseName::as_str),
                rec.release_binary,
                rec.idle_timeout.map(|t| t.as_secs() as i64),
                rec.wake_schedule.as_ref().map(CronExpr::as_str),
            ],
        )
        .map_err(|e| map_unique(e, rec))?;
        if let Some(old) = old {
            for ((field, before), (_, after)) in
                config_fields(&old).into_iter().zip(config_fields(rec))
            {
                if before != after {
                    tx.execute(
                        "INSERT INTO config_history (instance, at, actor, field, old_value, new_value) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![rec.name.as_str(), ts(now), actor, field, before, after],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Record what the runtime observed. Not configuration: no history.
    pub fn set_runtime(
        &self,
        name: &str,
        status: Status,
        pid: Option<u32>,
        restarts: u32,
        last_error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE instances SET status = ?2, pid = ?3, restarts = ?4, last_error = ?5, \
             updated_at = ?6 WHERE name = ?1",
            params![
                name,
                status.as_str(),
                pid,
                restarts,
                last_error,
                ts(Utc::now())
            ],
        )?;
        Ok(())
    }

    /// Store the time of the last health check of many instances at once.
    pub fn set_health_checks(
        &self,
        checks: &[(InstanceName, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        if checks.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt =
                tx.prepare("UPDATE instances SET last_health_check = ?2 WHERE name = ?1")?;
            for (name, at) in checks {
                stmt.execute(params![name.as_str(), ts(*at)])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn delete_instance(&self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM instances WHERE name = ?1", [name])?;
        Ok(n > 0)
    }

    /// Append one line to the audit log and return it with its id.
    pub fn append_audit(&self, entry: &NewAudit<'_>) -> Result<AuditEntry, StoreError> {
        let conn = self.conn();
        let at = Utc::now();
        conn.execute(
            "INSERT INTO audit_log (at, actor, action, instance, result, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                ts(at),
                entry.actor,
                entry.action.as_str(),
                entry.instance,
                entry.result.as_str(),
                entry.detail
            ],
        )?;
        Ok(AuditEntry {
            id: conn.last_insert_rowid(),
            at,
            actor: entry.actor.to_string(),
            action: entry.action,
            instance: entry.instance.map(str::to_string),
            result: entry.result,
            detail: entry.detail.to_string(),
        })
    }

    /// Record a dashboard session (see [`crate::dashboard::auth`]).
    pub fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO dashboard_sessions (id_hash, csrf, actor, token_fp, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                session.id_hash,
                session.csrf,
                session.actor,
                session.token_fp,
                ts(session.created_at),
                ts(session.expires_at)
            ],
        )?;
        Ok(())
    }

    /// The session with this id hash, if it exists and has not expired at
    /// `now`. Expired sessions are deleted on the way.
    pub fn get_session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM dashboard_sessions WHERE expires_at <= ?1",
            params![ts(now)],
        )?;
        let row = conn
            .query_row(
                "SELECT id_hash, csrf, actor, token_fp, created_at, expires_at FROM dashboard_sessions \
                 WHERE id_hash = ?1",
                params![id_hash],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(id_hash, csrf, actor, token_fp, created, expires)| {
            Ok(SessionRecord {
                id_hash,
                csrf,
                actor,
                token_fp,
                created_at: parse_ts(
                    "a dashboard session",
                    "dashboard_sessions.created_at",
                    created,
                )?,
                expires_at: parse_ts(
                    "a dashboard session",
                    "dashboard_sessions.expires_at",
                    expires,
                )?,
            })
        })
        .transpose()
    }

    /// Sign a session out. Whether it existed is returned.
    pub fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM dashboard_sessions WHERE id_hash = ?1",
            params![id_hash],
        )?;
        Ok(n > 0)
    }

    /// Sign every dashboard session out (the admin token changed).
    pub fn delete_all_sessions(&self) -> Result<usize, StoreError> {
        Ok(self.conn().execute("DELETE FROM dashboard_sessions", [])?)
    }

    /// The newest `limit` audit lines (optionally of one instance, optionally
    /// older than `before_id`), newest first.
    pub fn list_audit(
        &self,
        instance: Option<&str>,
        limit: u32,
        before_id: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, at, actor, action, instance, result, detail FROM audit_log \
             WHERE (?1 IS NULL OR instance = ?1) AND (?2 IS NULL OR id < ?2) \
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![instance, before_id, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, at, actor, action, instance, result, detail) = row?;
            let line = format!("audit line {id}");
            let corrupt = |field: &'static str, value: &str| StoreError::Corrupt {
                row: line.clone(),
                field,
                value: value.to_string(),
            };
            out.push(AuditEntry {
                id,
                at: parse_ts(&line, "audit_log.at", at)?,
                actor,
                action: AuditAction::parse(&action)
                    .ok_or_else(|| corrupt("audit_log.action", &action))?,
                instance,
                result: AuditOutcome::parse(&result)
                    .ok_or_else(|| corrupt("audit_log.result", &result))?,
                detail,
            });
        }
        Ok(out)
    }

    /// Route a custom domain to an instance (recorded in the history).
    pub fn add_domain(&self, instance: &str, domain: &str, actor: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let owner: Option<String> = tx
            .query_row(
                "SELECT instance FROM instance_domains WHERE domain = ?1",
                [domain],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(owner) = owner {
            return Err(StoreError::DomainTaken {
                domain: domain.to_string(),
                owner,
            });
        }
        let now = ts(Utc::now());
        tx.execute(
            "INSERT INTO instance_domains (domain, instance, added_at) VALUES (?1, ?2, ?3)",
            params![domain, instance, now],
        )?;
        tx.execute(
            "INSERT INTO config_history (instance, at, actor, field, old_value, new_value) \
             VALUES (?1, ?2, ?3, 'custom_domain', NULL, ?4)",
            params![instance, now, actor, domain],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Stop routing a custom domain; false if the instance did not have it.
    pub fn remove_domain(
        &self,
        instance: &str,
        domain: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM instance_domains WHERE domain = ?1 AND instance = ?2",
            params![domain, instance],
        )?;
        if n > 0 {
            tx.execute(
                "INSERT INTO config_history (instance, at, actor, field, old_value, new_value) \
                 VALUES (?1, ?2, ?3, 'custom_domain', ?4, NULL)",
                params![instance, ts(Utc::now()), actor, domain],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// The custom domains of one instance, in the order they were added.
    pub fn domains(&self, instance: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT domain FROM instance_domains WHERE instance = ?1 ORDER BY added_at, domain",
        )?;
        let rows = stmt
            .query_map([instance], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every instance's custom domains in one query (for lists of the
    /// whole fleet), in the order `domains` gives them.
    pub fn all_domains(
        &self,
    ) -> Result<std::collections::HashMap<String, Vec<String>>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT instance, domain FROM instance_domains ORDER BY instance, added_at, domain",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        for row in rows {
            let (instance, domain) = row?;
            out.entry(instance).or_default().push(domain);
        }
        Ok(out)
    }

    /// Which instance a custom domain is routed to.
    pub fn domain_owner(&self, domain: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT instance FROM instance_domains WHERE domain = ?1",
                [domain],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Record the hash of the rendered systemd unit of an instance.
    pub fn set_systemd_hash(&self, name: &str, hash: Option<&str>) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE instances SET systemd_config_hash = ?2 WHERE name = ?1",
            params![name, hash],
        )?;
        Ok(())
    }

    /// Record the hash of the rendered route of an instance.
    pub fn set_router_hash(&self, name: &str, hash: Option<&str>) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE instances SET caddy_config_hash = ?2 WHERE name = ?1",
            params![name, hash],
        )?;
        Ok(())
    }

    /// The configuration history of one instance, oldest first.
    pub fn config_history(&self, instance: &str) -> Result<Vec<ConfigChange>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, instance, at, actor, field, old_value, new_value FROM config_history \
             WHERE instance = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([instance], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, instance, at, actor, field, old_value, new_value) = row?;
            out.push(ConfigChange {
                id,
                instance,
                at: parse_ts(&format!("history line {id}"), "config_history.at", at)?,
                actor,
                field,
                old_value,
                new_value,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(name: &str, port: u16) -> InstanceRecord {
        let now = Utc::now();
        InstanceRecord {
            name: InstanceName::parse(name).unwrap(),
            port,
            version: Version::new(0, 40, 6),
            binary_path: "/bin/pocketbase".into(),
            dir: format!("/srv/{name}").into(),
            domain: None,
            desired: DesiredState::Running,
            status: Status::Starting,
            phase: Phase::Ready,
            pid: None,
            restarts: 0,
            superuser_email: None,
            compat_user: None,
            systemd_config_hash: None,
            caddy_config_hash: None,
            created_by: "test".to_string(),
            created_at: now,
            updated_at: now,
            last_health_check: None,
            last_error: None,
            max_body_bytes: None,
            limits: ResourceLimits::default(),
            release: None,
            release_binary: false,
            idle_timeout: None,
            wake_schedule: None,
        }
    }

    #[test]
    fn insert_get_list_delete() {
        let store = Store::open_in_memory().unwrap();
        store.insert_instance(&record("b", 8092)).unwrap();
        store.insert_instance(&record("a", 8091)).unwrap();
        let names: Vec<_> = store
            .list_instances()
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(store.get_instance("a").unwrap().unwrap().port, 8091);
        assert_eq!(store.port_owner(8092).unwrap().as_deref(), Some("b"));
        assert!(store.delete_instance("a").unwrap());
        assert!(store.get_instance("a").unwrap().is_none());
        assert!(!store.delete_instance("a").unwrap());
    }

    #[test]
    fn instance_counts_count_ready_and_running() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.instance_counts().unwrap(), (0, 0));
        store.insert_instance(&record("a", 8091)).unwrap();
        store.insert_instance(&record("b", 8092)).unwrap();
        let mut creating = record("c", 8093);
        creating.phase = Phase::Creating;
        store.insert_instance(&creating).unwrap();
        store
            .set_runtime("a", Status::Running, Some(1), 0, None)
            .unwrap();
        assert_eq!(store.instance_counts().unwrap(), (2, 1));
    }

    #[test]
    fn unique_name_and_port_map_to_user_errors() {
        let store = Store::open_in_memory().unwrap();
        store.insert_instance(&record("a", 8091)).unwrap();
        assert!(matches!(
            store.insert_instance(&record("a", 8095)),
            Err(StoreError::NameTaken(n)) if n == "a"
        ));
        assert!(matches!(
            store.insert_instance(&record("c", 8091)),
            Err(StoreError::PortTaken(8091))
        ));
    }

    #[test]
    fn config_changes_keep_history() {
        let store = Store::open_in_memory().unwrap();
        let mut rec = record("a", 8091);
        store.insert_instance(&rec).unwrap();
        rec.version = Version::new(0, 41, 0);
        rec.domain = Some(Domain::parse("a.example.com").unwrap());
        store.update_config(&rec, "alice").unwrap();
        let history = store.config_history("a").unwrap();
        let lines: Vec<_> = history
            .iter()
            .map(|c| {
                format!(
                    "{} {} {:?} -> {:?}",
                    c.actor, c.field, c.old_value, c.new_value
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                "alice version Some(\"0.40.6\") -> Some(\"0.41.0\")",
                "alice domain None -> Some(\"a.example.com\")"
            ]
        );
    }

    #[test]
    fn audit_log_is_append_only() {
        let store = Store::open_in_memory().unwrap();
        for i in 0..3 {
            store
                .append_audit(&NewAudit {
                    actor: "cli",
                    action: AuditAction::Create,
                    instance: Some(if i == 1 { "b" } else { "a" }),
                    result: if i != 2 {
                        AuditOutcome::Ok
                    } else {
                        AuditOutcome::Error
                    },
                    detail: "x",
                })
                .unwrap();
        }
        let all = store.list_audit(None, 10, None).unwrap();
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 2, 1]);
        assert_eq!(all[0].result, "error");
        assert_eq!(store.list_audit(Some("a"), 10, None).unwrap().len(), 2);
        assert_eq!(store.list_audit(None, 10, Some(3)).unwrap().len(), 2);
        let conn = store.conn();
        let err = conn
            .execute("UPDATE audit_log SET detail = 'rewritten'", [])
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let err = conn.execute("DELETE FROM audit_log", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }

    #[test]
    fn domains_are_unique_and_follow_their_instance() {
        let store = Store::open_in_memory().unwrap();
        store.insert_instance(&record("a", 8091)).unwrap();
        store.insert_instance(&record("b", 8092)).unwrap();
        store.add_domain("a", "a.example.com", "t").unwrap();
        store.add_domain("a", "www.a.example.com", "t").unwrap();
        assert!(matches!(
            store.add_domain("b", "a.example.com", "t"),
            Err(StoreError::DomainTaken { owner, .. }) if owner == "a"
        ));
        assert_eq!(
            store.domains("a").unwrap(),
            ["a.example.com", "www.a.example.com"]
        );
        assert_eq!(
            store.domain_owner("a.example.com").unwrap().as_deref(),
            Some("a")
        );
        assert!(store.remove_domain("a", "a.example.com", "t").unwrap());
        assert!(!store.remove_domain("a", "a.example.com", "t").unwrap());
        store.delete_instance("a").unwrap();
        assert_eq!(store.domain_owner("www.a.example.com").unwrap(), None);
        let fields: Vec<_> = store
            .config_history("a")
            .unwrap()
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, ["custom_domain", "custom_domain", "custom_domain"]);
    }

    #[test]
    fn a_row_that_does_not_parse_is_an_error_naming_it() {
        let store = Store::open_in_memory().unwrap();
        store.insert_instance(&record("a", 8091)).unwrap();
        store
            .conn()
            .execute(
                "UPDATE instances SET version = 'not a version' WHERE name = 'a'",
                [],
            )
            .unwrap();
        let err = store.get_instance("a").unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { row, field: "instances.version", .. } if row == "a"),
            "{err}"
        );
        assert!(store.list_instances().is_err());
        store
            .conn()
            .execute(
                "UPDATE instances SET version = '0.40.6', name = '../x' WHERE name = 'a'",
                [],
            )
            .unwrap();
        let err = store.list_instances().unwrap_err().to_string();
        assert!(err.contains("instances.name"), "{err}");
    }

    #[test]
    fn runtime_and_health_updates() {
        let store = Store::open_in_memory().unwrap();
        store.insert_instance(&record("a", 8091)).unwrap();
        store
            .set_runtime("a", Status::Running, Some(42), 3, None)
            .unwrap();
        let at = Utc::now();
        store
            .set_health_checks(&[(InstanceName::parse("a").unwrap(), at)])
            .unwrap();
        let rec = store.get_instance("a").unwrap().unwrap();
        assert_eq!(
            (rec.status, rec.pid, rec.restarts),
            (Status::Running, Some(42), 3)
        );
        assert_eq!(
            rec.last_health_check.map(|t| t.timestamp_millis()),
            Some(at.timestamp_millis())
        );
    }
}
