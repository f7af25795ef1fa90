//! Schema migrations, applied in order on open. Each entry moves the schema
//! from version `i` to `i + 1`; entries are never edited once released,
//! only appended, so that old databases keep loading.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: instances (seed 000's `services` fields and more), audit log,
    // configuration history.
    r#"
    CREATE TABLE instances (
        name                TEXT PRIMARY KEY NOT NULL,
        port                INTEGER NOT NULL UNIQUE,
        version             TEXT NOT NULL,
        binary_path         TEXT NOT NULL,
        dir                 TEXT NOT NULL,
        domain              TEXT,
        desired             TEXT NOT NULL,
        status              TEXT NOT NULL,
        phase               TEXT NOT NULL,
        pid                 INTEGER,
        restarts            INTEGER NOT NULL DEFAULT 0,
        superuser_email     TEXT,
        compat_user         TEXT UNIQUE,
        systemd_config_hash TEXT,
        caddy_config_hash   TEXT,
        created_by          TEXT NOT NULL,
        created_at          TEXT NOT NULL,
        updated_at          TEXT NOT NULL,
        last_health_check   TEXT,
        last_error          TEXT
    );

    CREATE TABLE audit_log (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        at       TEXT NOT NULL,
        actor    TEXT NOT NULL,
        action   TEXT NOT NULL,
        instance TEXT,
        result   TEXT NOT NULL,
        detail   TEXT NOT NULL
    );
    CREATE INDEX audit_log_instance ON audit_log (instance, id);
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

    CREATE TABLE config_history (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        instance  TEXT NOT NULL,
        at        TEXT NOT NULL,
        actor     TEXT NOT NULL,
        field     TEXT NOT NULL,
        old_value TEXT,
        new_value TEXT
    );
    CREATE INDEX config_history_instance ON config_history (instance, id);
    "#,
    // 2: custom domains, several per instance, each routed to one instance.
    r#"
    CREATE TABLE instance_domains (
        domain   TEXT PRIMARY KEY NOT NULL,
        instance TEXT NOT NULL REFERENCES instances (name) ON DELETE CASCADE,
        added_at TEXT NOT NULL
    );
    CREATE INDEX instance_domains_instance ON instance_domains (instance);
    "#,
    // 3: a per-instance request body limit (NULL: the router's default).
    r#"
    ALTER TABLE instances ADD COLUMN max_body_bytes INTEGER;
    "#,
    // 4: per-instance resource limits (applied by the systemd runtime).
    r#"
    ALTER TABLE instances ADD COLUMN memory_max TEXT;
    ALTER TABLE instances ADD COLUMN cpu_quota TEXT;
    "#,
    // 5: dashboard sign-in sessions. Only a hash of the session id is kept:
    // a copy of the database does not sign anyone in. `token_fp` ties a
    // session to the admin token it was opened with: a new token ends it.
    r#"
    CREATE TABLE dashboard_sessions (
        id_hash TEXT PRIMARY KEY,
        csrf TEXT NOT NULL,
        actor TEXT NOT NULL,
        token_fp TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    "#,
    // 6: backups of instances: where each archive is and what it holds.
    // Not tied to the instance row: a backup outlives its instance.
    r#"
    CREATE TABLE backups (
        instance    TEXT NOT NULL,
        id          TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        size        INTEGER NOT NULL,
        sha256      TEXT NOT NULL,
        destination TEXT NOT NULL,
        location    TEXT NOT NULL,
        version     TEXT NOT NULL,
        trigger     TEXT NOT NULL,
        PRIMARY KEY (instance, id)
    );
    -- Each instance's backup schedule; `last_run` is when it last ran (or
    -- when it was set), so runs missed while the daemon was down run once.
    CREATE TABLE backup_schedules (
        instance     TEXT PRIMARY KEY NOT NULL REFERENCES instances (name) ON DELETE CASCADE,
        cron         TEXT NOT NULL,
        keep_last    INTEGER NOT NULL,
        keep_daily   INTEGER NOT NULL,
        keep_weekly  INTEGER NOT NULL,
        keep_monthly INTEGER NOT NULL,
        destination  TEXT,
        last_run     TEXT NOT NULL
    );
    "#,
    // 7: continuous replication: each replicated instance's target (as
    // the user named it) and the generation Litestream writes now.
    r#"
    CREATE TABLE replications (
        instance   TEXT PRIMARY KEY NOT NULL REFERENCES instances (name) ON DELETE CASCADE,
        target     TEXT NOT NULL,
        generation TEXT NOT NULL,
        since      TEXT NOT NULL
    );
    "#,
    // 8: deploys from git. An instance's release (NULL: not deployed) and
    // whether its binary came from that release; where it is deployed
    // from; and the history of its deploys.
    r#"
    ALTER TABLE instances ADD COLUMN release TEXT;
    ALTER TABLE instances ADD COLUMN release_binary INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE deploy_sources (
        instance   TEXT PRIMARY KEY NOT NULL REFERENCES instances (name) ON DELETE CASCADE,
        repo       TEXT NOT NULL,
        branch     TEXT NOT NULL,
        subdir     TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE deploys (
        instance    TEXT NOT NULL REFERENCES instances (name) ON DELETE CASCADE,
        id          INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        repo        TEXT NOT NULL,
        branch      TEXT NOT NULL,
        subdir      TEXT,
        commit_id   TEXT,
        release     TEXT,
        status      TEXT NOT NULL,
        reason      TEXT,
        actor       TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        PRIMARY KEY (instance, id)
    );
    "#,
    // 9: scale to zero. How long an instance may be idle before it sleeps
    // (NULL: never) and the cron schedule that wakes it for its own jobs.
    r#"
    ALTER TABLE instances ADD COLUMN idle_timeout_secs INTEGER;
    ALTER TABLE instances ADD COLUMN wake_schedule TEXT;
    CREATE INDEX instances_status ON instances (status);
    "#,
    // 10: fleet as code. The fleet whose apply created an instance (NULL:
    // made by hand; a prune deletes only its own) and the instance's tags
    // (a JSON array; `schema push --tag` picks by them).
    r#"
    ALTER TABLE instances ADD COLUMN fleet TEXT;
    ALTER TABLE instances ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
    "#,
];

/// The schema version this build writes.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > CURRENT {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known: CURRENT,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "migrated the state database");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database as the first release wrote it (schema 1, checked in)
    /// keeps loading: migrated forward, nothing lost.
    #[test]
    fn schema_1_database_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/state-v1.db");
        std::fs::copy(fixture, &path).unwrap();
        let store = crate::store::Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), CURRENT);
        let rec = store.get_instance("moots").unwrap().unwrap();
        assert_eq!(
            (rec.port, rec.version.to_string().as_str()),
            (8094, "0.28.4")
        );
        assert_eq!(rec.domain.as_deref(), Some("tigawanna.vip"));
        assert_eq!(rec.max_body_bytes, None);
        assert_eq!(store.domains("moots").unwrap(), Vec::<String>::new());
        assert_eq!(store.list_audit(Some("moots"), 10, None).unwrap().len(), 1);
        store.add_domain("moots", "moots.app", "test").unwrap();
    }

    #[test]
    fn migrates_from_empty_and_refuses_newer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = crate::store::Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), CURRENT);
        drop(store);
        // Reopening is a no-op.
        crate::store::Store::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", CURRENT + 1)
            .unwrap();
        drop(conn);
        let err = crate::store::Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("newer pockestrator"), "{err}");
    }
}
