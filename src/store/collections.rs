//! An instance's collections read from its own `pb_data/data.db`,
//! read-only (a running PocketBase keeps it in WAL mode: a read-only
//! connection reads the last committed snapshot and blocks no writer),
//! in PocketBase's export shape: `_collections`' columns with `fields`,
//! `indexes` and `options` parsed and the options flattened into the
//! object, `created`/`updated` and every secret left out, as PocketBase's
//! own "Export collections" does (the token secrets, which
//! `GET /api/collections` omits too, and `oauth2.providers`, which hold
//! the OAuth2 client secrets). No credentials are needed or kept.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde_json::{Map, Value};

use crate::model::collections::TOKEN_OPTIONS;

/// Why an instance's collections could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CollectionsError {
    #[error("{} does not exist: the instance has not been started yet", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{} is a PocketBase before 0.23 (its `_collections` has a `schema` column, not `fields`): schema pull, openapi and types need PocketBase 0.23 or newer; `pockestrator upgrade NAME --version …` first", path.display())]
    TooOld { path: PathBuf },
    #[error("{} has no `_collections` table: is it a PocketBase data.db?", path.display())]
    NotPocketBase { path: PathBuf },
    #[error("collection {id} in {}: its `{column}` is not valid JSON ({reason})", path.display())]
    BadJson {
        path: PathBuf,
        id: String,
        column: &'static str,
        reason: String,
    },
}

/// The collections of the PocketBase whose data directory is `data_dir`,
/// in creation order, as JSON objects in PocketBase's export shape.
pub fn read_collections(data_dir: &Path) -> Result<Vec<Value>, CollectionsError> {
    let path = data_dir.join("data.db");
    if !path.is_file() {
        return Err(CollectionsError::Missing { path });
    }
    let unreadable = |source| CollectionsError::Unreadable {
        path: path.clone(),
        source,
    };
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(unreadable)?;
    // A writer holding the lock briefly (a checkpoint) is waited for.
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(unreadable)?;
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('_collections')")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(unreadable)?;
    if columns.is_empty() {
        return Err(CollectionsError::NotPocketBase { path });
    }
    if !columns.iter().any(|c| c == "fields") {
        return Err(CollectionsError::TooOld { path });
    }
    let mut stmt = conn
        .prepare(
            "SELECT id, name, type, system, fields, indexes, listRule, viewRule, createRule, \
             updateRule, deleteRule, options FROM _collections ORDER BY created, rowid",
        )
        .map_err(unreadable)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Row {
                id: r.get(0)?,
                name: r.get(1)?,
                kind: r.get(2)?,
                system: r.get::<_, Option<bool>>(3)?.unwrap_or(false),
                fields: r.get::<_, Option<String>>(4)?,
                indexes: r.get::<_, Option<String>>(5)?,
                rules: [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?],
                options: r.get::<_, Option<String>>(11)?,
            })
        })
        .map_err(unreadable)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(export_shape(&path, row.map_err(unreadable)?)?);
    }
    Ok(out)
}

/// One `_collections` row as stored.
struct Row {
    id: String,
    name: String,
    kind: String,
    system: bool,
    fields: Option<String>,
    indexes: Option<String>,
    rules: [Option<String>; 5],
    options: Option<String>,
}

const RULES: [&str; 5] = [
    "listRule",
    "viewRule",
    "createRule",
    "updateRule",
    "deleteRule",
];

fn export_shape(path: &Path, row: Row) -> Result<Value, CollectionsError> {
    let parse = |column: &'static str, text: Option<&str>, empty: Value| match text {
        None => Ok(empty),
        Some(t) if t.trim().is_empty() => Ok(empty),
        Some(t) => serde_json::from_str::<Value>(t).map_err(|e| CollectionsError::BadJson {
            path: path.to_path_buf(),
            id: row.id.clone(),
            column,
            reason: e.to_string(),
        }),
    };
    let mut obj = Map::new();
    let options = parse("options", row.options.as_deref(), Value::Object(Map::new()))?;
    if let Value::Object(options) = options {
        // Only the options of the collection's own type, as PocketBase
        // answers them.
        if row.kind == "auth" || row.kind == "view" {
            obj.extend(options);
        }
    }
    obj.insert("id".into(), Value::String(row.id.clone()));
    obj.insert("name".into(), Value::String(row.name.clone()));
    obj.insert("type".into(), Value::String(row.kind.clone()));
    obj.insert("system".into(), Value::Bool(row.system));
    obj.insert(
        "fields".into(),
        parse("fields", row.fields.as_deref(), Value::Array(Vec::new()))?,
    );
    obj.insert(
        "indexes".into(),
        parse("indexes", row.indexes.as_deref(), Value::Array(Vec::new()))?,
    );
    for (key, rule) in RULES.iter().zip(row.rules) {
        obj.insert(
            (*key).into(),
            rule.map(Value::String).unwrap_or(Value::Null),
        );
    }
    blank_secrets(&mut obj);
    Ok(Value::Object(obj))
}

/// Take every secret out of a collection object: the token secrets and the
/// OAuth2 providers (their client secrets), as PocketBase's own export does.
pub fn blank_secrets(obj: &mut Map<String, Value>) {
    for key in TOKEN_OPTIONS {
        if let Some(Value::Object(token)) = obj.get_mut(key) {
            token.remove("secret");
        }
    }
    if let Some(Value::Object(oauth2)) = obj.get_mut("oauth2") {
        oauth2.remove("providers");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pocketbase_db(dir: &Path) {
        let conn = Connection::open(dir.join("data.db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE _collections (id TEXT PRIMARY KEY, system BOOLEAN DEFAULT FALSE NOT NULL,
               type TEXT NOT NULL, name TEXT UNIQUE NOT NULL, fields JSON DEFAULT '[]' NOT NULL,
               indexes JSON DEFAULT '[]' NOT NULL, listRule TEXT, viewRule TEXT, createRule TEXT,
               updateRule TEXT, deleteRule TEXT, options JSON DEFAULT '{}' NOT NULL,
               created TEXT NOT NULL, updated TEXT NOT NULL);
             INSERT INTO _collections VALUES ('u1', 0, 'auth', 'users',
               '[{\"id\":\"f1\",\"name\":\"email\",\"type\":\"email\"}]', '[]', '', NULL, '', NULL, NULL,
               '{\"authRule\":\"\",\"authToken\":{\"duration\":10,\"secret\":\"s3cr3t\"},\"fileToken\":{\"secret\":\"x\",\"duration\":1},\"oauth2\":{\"enabled\":false,\"providers\":[{\"name\":\"google\",\"clientSecret\":\"cs\"}]}}',
               '2024-01-01 00:00:00.002Z', '2024-01-01 00:00:00.002Z');
             INSERT INTO _collections VALUES ('p1', 0, 'base', 'posts', '[]', '[\"CREATE INDEX i ON posts (id)\"]',
               NULL, NULL, NULL, NULL, NULL, '{}', '2024-01-01 00:00:00.001Z', '2024-01-01 00:00:00.001Z');",
        )
        .unwrap();
    }

    #[test]
    fn collections_come_in_creation_order_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        pocketbase_db(dir.path());
        let got = read_collections(dir.path()).unwrap();
        let text = serde_json::to_string_pretty(&got).unwrap();
        assert!(
            !text.contains("s3cr3t") && !text.contains("\"cs\""),
            "{text}"
        );
        expect_test::expect![[r#"
            [
              {
                "createRule": null,
                "deleteRule": null,
                "fields": [],
                "id": "p1",
                "indexes": [
                  "CREATE INDEX i ON posts (id)"
                ],
                "listRule": null,
                "name": "posts",
                "system": false,
                "type": "base",
                "updateRule": null,
                "viewRule": null
              },
              {
                "authRule": "",
                "authToken": {
                  "duration": 10
                },
                "createRule": "",
                "deleteRule": null,
                "fields": [
                  {
                    "id": "f1",
                    "name": "email",
                    "type": "email"
                  }
                ],
                "fileToken": {
                  "duration": 1
                },
                "id": "u1",
                "indexes": [],
                "listRule": "",
                "name": "users",
                "oauth2": {
                  "enabled": false
                },
                "system": false,
                "type": "auth",
                "updateRule": null,
                "viewRule": null
              }
            ]"#]]
        .assert_eq(&text);
    }

    #[test]
    fn an_old_or_foreign_database_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_collections(dir.path()).unwrap_err().to_string();
        assert!(err.contains("has not been started yet"), "{err}");
        let conn = Connection::open(dir.path().join("data.db")).unwrap();
        conn.execute_batch("CREATE TABLE other (a)").unwrap();
        let err = read_collections(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no `_collections` table"), "{err}");
        conn.execute_batch("CREATE TABLE _collections (id, name, type, schema, options)")
            .unwrap();
        let err = read_collections(dir.path()).unwrap_err().to_string();
        assert!(err.contains("before 0.23"), "{err}");
    }
}
