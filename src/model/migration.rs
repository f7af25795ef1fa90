//! Schema as code, the push half: a schema file (PocketBase's collections
//! export: a JSON array of collection objects) turned into a PocketBase
//! JS migration that imports those collections, the same file for every
//! instance, so that collection and field ids stay identical across the
//! fleet (PocketBase matches an import by id first).
//!
//! What goes in the migration: the non-system collections, without their
//! token secrets (PocketBase keeps an existing collection's secrets and
//! makes new ones for a new collection, so a push never signs anyone out
//! and never copies one instance's secrets to another).

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::collections;

/// The largest schema file read, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 16 << 20;

/// Why a schema file cannot be pushed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaFileError {
    /// It is not a schema: not an array, a collection or field without an
    /// id, name or type.
    #[error("{0}")]
    Invalid(String),
    /// Two collections, or two fields of one, share an id or a name.
    #[error("{0}")]
    Clash(String),
}

/// Check a schema file (as [`collections::parse_collections`] does) and
/// return the collections a push imports: the non-system ones, token
/// secrets taken out.
pub fn collections_to_push(schema: &Value) -> Result<Vec<Value>, SchemaFileError> {
    let Some(list) = schema.as_array() else {
        return Err(SchemaFileError::Invalid(
            "not a JSON array of collections (`pockestrator schema pull NAME` writes one)".into(),
        ));
    };
    collections::parse_collections(list.clone()).map_err(|e| match e {
        collections::SchemaError::Clash { .. } => SchemaFileError::Clash(e.to_string()),
        other => SchemaFileError::Invalid(other.to_string()),
    })?;
    let mut out = Vec::new();
    for c in list.iter().filter_map(Value::as_object) {
        if c.get("system").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let mut obj = c.clone();
        for key in collections::TOKEN_OPTIONS {
            if let Some(token) = obj.get_mut(key).and_then(Value::as_object_mut) {
                token.remove("secret");
            }
        }
        out.push(Value::Object(obj));
    }
    Ok(out)
}

/// The digest of what a push imports (its collections and whether it
/// deletes the missing ones): the same schema pushed again is the same
/// migration, found already there, and not applied twice.
pub fn push_digest(collections: &[Value], delete_missing: bool) -> String {
    let mut hash = Sha256::new();
    hash.update(serde_json::to_vec(collections).expect("JSON serializes"));
    hash.update([u8::from(delete_missing)]);
    hex::encode(hash.finalize())
}

/// The migration's file name: PocketBase applies migrations in name order
/// and records each by name.
pub fn migration_file_name(unix_secs: i64, digest: &str) -> String {
    format!("{unix_secs}_pockestrator_schema_{}.js", &digest[..12])
}

/// Whether `file_name` is the migration of this digest.
pub fn is_migration_of(file_name: &str, digest: &str) -> bool {
    file_name.ends_with(&format!("_pockestrator_schema_{}.js", &digest[..12]))
}

/// The migration's JavaScript: PocketBase runs it on start, in one
/// transaction; a failure stops the start, and the push rolls back.
pub fn migration_js(collections: &[Value], delete_missing: bool, digest: &str) -> String {
    let json = serde_json::to_string_pretty(collections)
        .expect("JSON serializes")
        // Valid in JSON strings but line breaks to older JS parsers.
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    format!(
        "/// <reference path=\"../pb_data/types.d.ts\" />\n\
         // Written by `pockestrator schema push` (schema {digest}).\n\
         // It imports these collections by id; deleteMissing: {delete_missing}.\n\
         // Its down step is empty: a failed push is rolled back from the\n\
         // backup taken before it (trigger pre-schema).\n\
         migrate((app) => {{\n  \
           const collections = {json};\n  \
           app.importCollections(collections, {delete_missing});\n\
         }}, (app) => {{}});\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn auth() -> Value {
        json!({"id": "pbc_members", "name": "members", "type": "auth", "system": false,
               "fields": [{"id": "text1", "name": "nick", "type": "text"}],
               "authToken": {"duration": 604800, "secret": "s3cr3t"}})
    }

    #[test]
    fn system_collections_and_secrets_stay_out() {
        let schema = json!([
            {"id": "pbc_3142635823", "name": "_superusers", "type": "auth", "system": true, "fields": []},
            auth(),
        ]);
        let out = collections_to_push(&schema).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["authToken"], json!({"duration": 604800}));
        let js = migration_js(&out, false, &push_digest(&out, false));
        assert!(
            js.contains("app.importCollections(collections, false);"),
            "{js}"
        );
        assert!(!js.contains("s3cr3t"));
    }

    #[test]
    fn a_bad_schema_says_which_collection_and_field() {
        let cases = [
            (json!({"collections": []}), "not a JSON array"),
            (
                json!([{"name": "posts", "type": "base", "fields": []}]),
                "has no `id`",
            ),
            (
                json!([{"id": "a", "name": "../x", "type": "base", "fields": []}]),
                "name must be",
            ),
            (
                json!([{"id": "a", "name": "posts", "type": "table", "fields": []}]),
                "unknown type",
            ),
            (
                json!([{"id": "a", "name": "posts", "type": "base", "fields": [{"id": "f", "name": "t"}]}]),
                "field \"t\": has no `type`",
            ),
            (
                json!([{"id": "a", "name": "p", "type": "base", "fields": []}, {"id": "a", "name": "q", "type": "base", "fields": []}]),
                "its id \"a\" is also another collection",
            ),
            (
                json!([{"id": "a", "name": "p", "type": "base", "fields": [{"id": "f", "name": "t", "type": "text"}, {"id": "g", "name": "T", "type": "text"}]}]),
                "is there twice",
            ),
        ];
        for (schema, want) in cases {
            let e = collections_to_push(&schema).unwrap_err().to_string();
            assert!(e.contains(want), "{schema}: {e}");
        }
    }

    #[test]
    fn the_same_schema_is_the_same_migration() {
        let a = collections_to_push(&json!([auth()])).unwrap();
        let d = push_digest(&a, false);
        assert_eq!(d, push_digest(&a, false));
        assert_ne!(d, push_digest(&a, true));
        let file = migration_file_name(1_700_000_000, &d);
        assert!(is_migration_of(&file, &d));
        assert!(file.starts_with("1700000000_pockestrator_schema_"));
    }
}
