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

/// The largest schema file read, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 16 << 20;

/// The option objects of auth collections that hold a token secret.
const TOKEN_OPTIONS: &[&str] = &[
    "authToken",
    "passwordResetToken",
    "emailChangeToken",
    "verificationToken",
    "fileToken",
];

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

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn text<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

/// Check a schema file and return the collections a push imports: the
/// non-system ones, token secrets taken out. Every error names the
/// collection (by position and name) and the field.
pub fn collections_to_push(schema: &Value) -> Result<Vec<Value>, SchemaFileError> {
    let err = |m: String| Err(SchemaFileError::Invalid(m));
    let clash = |m: String| Err(SchemaFileError::Clash(m));
    let Some(list) = schema.as_array() else {
        return err(
            "not a JSON array of collections (`pockestrator schema pull NAME` writes one)".into(),
        );
    };
    let mut ids = std::collections::HashSet::new();
    let mut names = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let Some(obj) = c.as_object() else {
            return err(format!("collection {} is not an object", i + 1));
        };
        let name = text(obj, "name").unwrap_or("");
        let at = format!(
            "collection {} ({})",
            i + 1,
            crate::model::names::shown(name)
        );
        if !valid_name(name) {
            return err(format!("{at}: `name` must be letters, digits and _"));
        }
        let id = text(obj, "id").unwrap_or("");
        if !valid_id(id) {
            return err(format!(
                "{at}: `id` must be set (letters, digits, _ and -): ids are what keep a collection the same across instances"
            ));
        }
        if !ids.insert(id.to_string()) {
            return clash(format!("{at}: id {id} is used twice"));
        }
        if !names.insert(name.to_ascii_lowercase()) {
            return clash(format!("{at}: the name is used twice"));
        }
        match text(obj, "type") {
            Some("base" | "auth" | "view") => {}
            _ => return err(format!("{at}: `type` must be base, auth or view")),
        }
        let Some(fields) = obj.get("fields").and_then(Value::as_array) else {
            return err(format!("{at}: `fields` must be an array"));
        };
        let mut field_names = std::collections::HashSet::new();
        for (j, f) in fields.iter().enumerate() {
            let Some(fo) = f.as_object() else {
                return err(format!("{at}: field {} is not an object", j + 1));
            };
            let fname = text(fo, "name").unwrap_or("");
            let fat = format!(
                "{at}, field {} ({})",
                j + 1,
                crate::model::names::shown(fname)
            );
            if !valid_name(fname) {
                return err(format!("{fat}: `name` must be letters, digits and _"));
            }
            if !valid_id(text(fo, "id").unwrap_or("")) {
                return err(format!("{fat}: `id` must be set"));
            }
            if !text(fo, "type").is_some_and(valid_name) {
                return err(format!(
                    "{fat}: `type` must be a field type (text, number, …)"
                ));
            }
            if !field_names.insert(fname.to_ascii_lowercase()) {
                return clash(format!("{fat}: the name is used twice"));
            }
        }
        if obj.get("system").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let mut obj = obj.clone();
        for key in TOKEN_OPTIONS {
            if let Some(token) = obj.get_mut(*key).and_then(Value::as_object_mut) {
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
                "collection 1 (\"posts\"): `id`",
            ),
            (
                json!([{"id": "a", "name": "../x", "type": "base", "fields": []}]),
                "`name`",
            ),
            (
                json!([{"id": "a", "name": "posts", "type": "table", "fields": []}]),
                "`type`",
            ),
            (
                json!([{"id": "a", "name": "posts", "type": "base", "fields": [{"id": "f", "name": "t"}]}]),
                "field 1 (\"t\"): `type`",
            ),
            (
                json!([{"id": "a", "name": "p", "type": "base", "fields": []}, {"id": "a", "name": "q", "type": "base", "fields": []}]),
                "id a is used twice",
            ),
            (
                json!([{"id": "a", "name": "p", "type": "base", "fields": [{"id": "f", "name": "t", "type": "text"}, {"id": "g", "name": "T", "type": "text"}]}]),
                "used twice",
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
