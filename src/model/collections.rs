//! An instance's collections as schema-as-code sees them: the schema file
//! (`pockestrator schema pull`), parsed strictly into typed [`Collection`]s
//! with the options the generators need, each keeping its raw JSON object.
//!
//! The file is a JSON array of collection objects in PocketBase's own
//! export/import shape (what `GET /api/collections` answers per item and
//! `PUT /api/collections/import` takes), without `created`/`updated` and
//! without any auth-token `secret`. A blank `secret` is refused: PocketBase
//! refuses to import it ("cannot be blank"); leaving the key out keeps the
//! instance's own.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::names::shown;

/// What kind of collection: PocketBase's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionKind {
    Base,
    Auth,
    View,
}

impl CollectionKind {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "base" => Some(Self::Base),
            "auth" => Some(Self::Auth),
            "view" => Some(Self::View),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Auth => "auth",
            Self::View => "view",
        }
    }
}

/// A collection's API rules: `None` is superusers only, `Some("")` anyone,
/// any other text a filter the request (and its auth record) must pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub list: Option<String>,
    pub view: Option<String>,
    pub create: Option<String>,
    pub update: Option<String>,
    pub delete: Option<String>,
}

/// Who may call an operation, from its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// No rule (`null`): superusers only.
    Superusers,
    /// An empty rule: anyone, no auth needed.
    Public,
    /// A filter: requests that pass it (usually with an auth record).
    Filter(&'a str),
}

impl<'a> Access<'a> {
    pub fn of(rule: &'a Option<String>) -> Self {
        match rule.as_deref() {
            None => Self::Superusers,
            Some(r) if r.trim().is_empty() => Self::Public,
            Some(r) => Self::Filter(r),
        }
    }
}

/// What an auth collection offers for signing in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthOptions {
    pub auth_rule: Option<String>,
    pub manage_rule: Option<String>,
    pub password_auth: bool,
    pub identity_fields: Vec<String>,
    pub oauth2: bool,
    pub otp: bool,
    pub mfa: bool,
}

/// One collection of a schema file.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    pub id: String,
    pub name: String,
    pub kind: CollectionKind,
    pub system: bool,
    pub fields: Vec<Field>,
    pub rules: Rules,
    /// Auth collections only.
    pub auth: Option<AuthOptions>,
    /// View collections only.
    pub view_query: Option<String>,
    /// The object as it is in the file, which `schema push` sends on.
    pub raw: Value,
}

impl Collection {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// One field of a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub id: String,
    pub name: String,
    pub kind: FieldKind,
    pub system: bool,
    pub hidden: bool,
    pub presentable: bool,
    pub required: bool,
}

/// A field's type with the options code generation needs.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    Text {
        min: u64,
        max: u64,
        pattern: String,
        primary_key: bool,
        autogenerate: bool,
    },
    Number {
        only_int: bool,
        min: Option<f64>,
        max: Option<f64>,
    },
    Bool,
    Email,
    Url,
    Editor,
    Date,
    Autodate {
        on_create: bool,
        on_update: bool,
    },
    Select {
        values: Vec<String>,
        max_select: u64,
    },
    File {
        max_select: u64,
        mime_types: Vec<String>,
        protected: bool,
    },
    Relation {
        collection_id: String,
        max_select: u64,
        min_select: u64,
    },
    Json,
    GeoPoint,
    Password,
}

impl FieldKind {
    /// PocketBase's `type` of the field.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Text { .. } => "text",
            Self::Number { .. } => "number",
            Self::Bool => "bool",
            Self::Email => "email",
            Self::Url => "url",
            Self::Editor => "editor",
            Self::Date => "date",
            Self::Autodate { .. } => "autodate",
            Self::Select { .. } => "select",
            Self::File { .. } => "file",
            Self::Relation { .. } => "relation",
            Self::Json => "json",
            Self::GeoPoint => "geoPoint",
            Self::Password => "password",
        }
    }

    /// Whether the field holds more than one value (an array).
    pub fn is_multiple(&self) -> bool {
        match self {
            Self::Select { max_select, .. }
            | Self::File { max_select, .. }
            | Self::Relation { max_select, .. } => *max_select > 1,
            _ => false,
        }
    }
}

/// The field types PocketBase ≥ 0.23 knows.
pub const FIELD_TYPES: &[&str] = &[
    "text", "number", "bool", "email", "url", "editor", "date", "autodate", "select", "file",
    "relation", "json", "geoPoint", "password",
];

/// The option groups of an auth collection holding a token secret.
pub const TOKEN_OPTIONS: [&str; 5] = [
    "authToken",
    "passwordResetToken",
    "emailChangeToken",
    "verificationToken",
    "fileToken",
];

/// Why a schema file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("the schema file is not valid JSON: {reason} at line {line}, column {column}")]
    Json {
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("the schema file must be a JSON array of collections (as `pockestrator schema pull` writes it), not {found}")]
    NotAnArray { found: &'static str },
    #[error("the schema file holds no collection: pull one with `pockestrator schema pull NAME`")]
    Empty,
    #[error("collection {at}: {problem}")]
    Collection { at: String, problem: String },
    /// Two collections, or two fields of one, share an id or a name: each
    /// is well-formed, together they clash (`schema push` answers 409).
    #[error("collection {at}: {problem}")]
    Clash { at: String, problem: String },
    #[error("collection {collection}, field {field}: {problem}")]
    Field {
        collection: String,
        field: String,
        problem: String,
    },
}

/// Parse and check a schema file: valid JSON, an array of collections, each
/// with a non-empty id, a valid name and a known type, ids and names unique,
/// every field with an id, a name and a known type, field names unique in
/// their collection.
pub fn parse_schema(text: &str) -> Result<Vec<Collection>, SchemaError> {
    let value: Value = serde_json::from_str(text).map_err(|e| SchemaError::Json {
        line: e.line(),
        column: e.column(),
        reason: json_reason(&e),
    })?;
    match value {
        Value::Array(items) => parse_collections(items),
        other => Err(SchemaError::NotAnArray {
            found: kind_of(&other),
        }),
    }
}

/// Check collection objects already read as JSON (a schema file's items,
/// or what `store::read_collections` read from an instance) as
/// [`parse_schema`] does.
pub fn parse_collections(items: Vec<Value>) -> Result<Vec<Collection>, SchemaError> {
    if items.is_empty() {
        return Err(SchemaError::Empty);
    }
    let mut ids = HashSet::new();
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let c = parse_collection(index, item)?;
        if !ids.insert(c.id.clone()) {
            return Err(SchemaError::Clash {
                at: shown(&c.name),
                problem: format!("its id {} is also another collection's", shown(&c.id)),
            });
        }
        if !names.insert(c.name.to_lowercase()) {
            return Err(SchemaError::Clash {
                at: shown(&c.name),
                problem: "its name is also another collection's (names are compared ignoring case)"
                    .to_string(),
            });
        }
        out.push(c);
    }
    Ok(out)
}

/// serde_json's message without its own " at line N column M".
fn json_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A valid collection or field name: PocketBase's `^\w+$`, at most 255.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_collection(index: usize, item: Value) -> Result<Collection, SchemaError> {
    let at_index = format!("#{}", index + 1);
    let Value::Object(obj) = &item else {
        return Err(SchemaError::Collection {
            at: at_index,
            problem: format!("must be a JSON object, not {}", kind_of(&item)),
        });
    };
    let name = match obj.get("name") {
        Some(Value::String(n)) if valid_name(n) => n.clone(),
        Some(Value::String(n)) => {
            return Err(SchemaError::Collection {
                at: format!("{at_index} ({})", shown(n)),
                problem: "its name must be 1 to 255 letters, digits or underscores".to_string(),
            })
        }
        Some(other) => {
            return Err(SchemaError::Collection {
                at: at_index,
                problem: format!("`name` must be a string, not {}", kind_of(other)),
            })
        }
        None => {
            return Err(SchemaError::Collection {
                at: at_index,
                problem: "has no `name`".to_string(),
            })
        }
    };
    let at = shown(&name);
    let bad = |problem: String| SchemaError::Collection {
        at: at.clone(),
        problem,
    };
    let id = match obj.get("id") {
        Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
        Some(Value::String(_)) | None => {
            return Err(bad(
                "has no `id`: keep PocketBase's ids (push matches collections by id)".to_string(),
            ))
        }
        Some(other) => {
            return Err(bad(format!(
                "`id` must be a string, not {}",
                kind_of(other)
            )))
        }
    };
    let kind = match obj.get("type") {
        Some(Value::String(t)) => CollectionKind::parse(t).ok_or_else(|| {
            bad(format!(
                "unknown type {}: it is one of \"base\", \"auth\" and \"view\"",
                shown(t)
            ))
        })?,
        Some(other) => {
            return Err(bad(format!(
                "`type` must be a string, not {}",
                kind_of(other)
            )))
        }
        None => return Err(bad("has no `type`".to_string())),
    };
    let system = bool_of(obj, "system").map_err(&bad)?;
    let rules = Rules {
        list: rule_of(obj, "listRule").map_err(&bad)?,
        view: rule_of(obj, "viewRule").map_err(&bad)?,
        create: rule_of(obj, "createRule").map_err(&bad)?,
        update: rule_of(obj, "updateRule").map_err(&bad)?,
        delete: rule_of(obj, "deleteRule").map_err(&bad)?,
    };
    if let Some(indexes) = obj.get("indexes") {
        let ok = match indexes {
            Value::Array(a) => a.iter().all(Value::is_string),
            Value::Null => true,
            _ => false,
        };
        if !ok {
            return Err(bad("`indexes` must be an array of strings".to_string()));
        }
    }
    let raw_fields = match obj.get("fields") {
        Some(Value::Array(f)) => f.as_slice(),
        Some(Value::Null) | None => &[],
        Some(other) => {
            return Err(bad(format!(
                "`fields` must be an array, not {}",
                kind_of(other)
            )))
        }
    };
    let mut fields = Vec::with_capacity(raw_fields.len());
    let mut field_names = HashSet::new();
    for (i, raw) in raw_fields.iter().enumerate() {
        let field = parse_field(&name, i, raw)?;
        if !field_names.insert(field.name.to_lowercase()) {
            return Err(SchemaError::Clash {
                at: format!("{at}, field {}", shown(&field.name)),
                problem: "is there twice (names are compared ignoring case)".to_string(),
            });
        }
        fields.push(field);
    }
    let auth = if kind == CollectionKind::Auth {
        for key in TOKEN_OPTIONS {
            if let Some(Value::String(s)) = obj.get(key).and_then(|o| o.get("secret")) {
                if s.is_empty() {
                    return Err(bad(format!(
                        "`{key}.secret` is blank: leave `secret` out (PocketBase keeps the instance's own; it refuses a blank one)"
                    )));
                }
            }
        }
        let enabled = |key: &str| {
            obj.get(key)
                .and_then(|o| o.get("enabled"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        Some(AuthOptions {
            auth_rule: rule_of(obj, "authRule").map_err(&bad)?,
            manage_rule: rule_of(obj, "manageRule").map_err(&bad)?,
            password_auth: enabled("passwordAuth"),
            identity_fields: obj
                .get("passwordAuth")
                .and_then(|p| p.get("identityFields"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            oauth2: enabled("oauth2"),
            otp: enabled("otp"),
            mfa: enabled("mfa"),
        })
    } else {
        None
    };
    let view_query = if kind == CollectionKind::View {
        match obj.get("viewQuery") {
            Some(Value::String(q)) if !q.trim().is_empty() => Some(q.clone()),
            _ => return Err(bad("a view needs its `viewQuery`".to_string())),
        }
    } else {
        None
    };
    Ok(Collection {
        id,
        name,
        kind,
        system,
        fields,
        rules,
        auth,
        view_query,
        raw: item,
    })
}

fn bool_of(obj: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!(
            "`{key}` must be true or false, not {}",
            kind_of(other)
        )),
    }
}

fn rule_of(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "`{key}` must be a string or null, not {}",
            kind_of(other)
        )),
    }
}

fn u64_of(obj: &Map<String, Value>, key: &str) -> u64 {
    obj.get(key)
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64)))
        .unwrap_or(0)
}

fn strings_of(obj: &Map<String, Value>, key: &str) -> Vec<String> {
    obj.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn parse_field(collection: &str, index: usize, raw: &Value) -> Result<Field, SchemaError> {
    let coll = shown(collection);
    let at_index = format!("#{}", index + 1);
    let Value::Object(obj) = raw else {
        return Err(SchemaError::Field {
            collection: coll,
            field: at_index,
            problem: format!("must be a JSON object, not {}", kind_of(raw)),
        });
    };
    let name = match obj.get("name") {
        Some(Value::String(n)) if valid_name(n) => n.clone(),
        Some(Value::String(n)) => {
            return Err(SchemaError::Field {
                collection: coll,
                field: format!("{at_index} ({})", shown(n)),
                problem: "its name must be 1 to 255 letters, digits or underscores".to_string(),
            })
        }
        _ => {
            return Err(SchemaError::Field {
                collection: coll,
                field: at_index,
                problem: "has no `name`".to_string(),
            })
        }
    };
    let bad = |problem: String| SchemaError::Field {
        collection: coll.clone(),
        field: shown(&name),
        problem,
    };
    let id = match obj.get("id") {
        Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
        _ => {
            return Err(bad(
                "has no `id`: keep PocketBase's ids (a renamed field keeps its id)".to_string(),
            ))
        }
    };
    let type_name = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        _ => return Err(bad("has no `type`".to_string())),
    };
    let kind = match type_name {
        "text" => FieldKind::Text {
            min: u64_of(obj, "min"),
            max: u64_of(obj, "max"),
            pattern: obj
                .get("pattern")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            primary_key: obj
                .get("primaryKey")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            autogenerate: obj
                .get("autogeneratePattern")
                .and_then(Value::as_str)
                .is_some_and(|p| !p.is_empty()),
        },
        "number" => FieldKind::Number {
            only_int: obj.get("onlyInt").and_then(Value::as_bool).unwrap_or(false),
            min: obj.get("min").and_then(Value::as_f64),
            max: obj.get("max").and_then(Value::as_f64),
        },
        "bool" => FieldKind::Bool,
        "email" => FieldKind::Email,
        "url" => FieldKind::Url,
        "editor" => FieldKind::Editor,
        "date" => FieldKind::Date,
        "autodate" => FieldKind::Autodate {
            on_create: obj
                .get("onCreate")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            on_update: obj
                .get("onUpdate")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        },
        "select" => {
            let values = strings_of(obj, "values");
            if values.is_empty() {
                return Err(bad("a select needs its `values`".to_string()));
            }
            FieldKind::Select {
                values,
                max_select: u64_of(obj, "maxSelect").max(1),
            }
        }
        "file" => FieldKind::File {
            max_select: u64_of(obj, "maxSelect").max(1),
            mime_types: strings_of(obj, "mimeTypes"),
            protected: obj
                .get("protected")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        },
        "relation" => {
            let collection_id = obj
                .get("collectionId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if collection_id.is_empty() {
                return Err(bad("a relation needs its `collectionId`".to_string()));
            }
            FieldKind::Relation {
                collection_id,
                max_select: u64_of(obj, "maxSelect").max(1),
                min_select: u64_of(obj, "minSelect"),
            }
        }
        "json" => FieldKind::Json,
        "geoPoint" => FieldKind::GeoPoint,
        "password" => FieldKind::Password,
        other => {
            return Err(bad(format!(
                "unknown type {}: it is one of {}",
                shown(other),
                FIELD_TYPES.join(", ")
            )))
        }
    };
    let flag = |key: &str| bool_of(obj, key).map_err(&bad);
    Ok(Field {
        system: flag("system")?,
        hidden: flag("hidden")?,
        presentable: flag("presentable")?,
        required: flag("required")?,
        id,
        name,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check_err(text: &str, expected: Expect) {
        let err = parse_schema(text).expect_err("the file should be refused");
        expected.assert_eq(&err.to_string());
    }

    const GOOD: &str = r#"[
  {
    "id": "pbc_posts", "name": "posts", "type": "base", "system": false,
    "listRule": "", "viewRule": "", "createRule": "@request.auth.id != ''",
    "updateRule": null, "deleteRule": null, "indexes": [],
    "fields": [
      {"id": "text3208210256", "name": "id", "type": "text", "system": true, "hidden": false,
       "presentable": false, "required": true, "primaryKey": true, "min": 15, "max": 15,
       "pattern": "^[a-z0-9]+$", "autogeneratePattern": "[a-z0-9]{15}"},
      {"id": "s1", "name": "status", "type": "select", "values": ["draft", "live"], "maxSelect": 1},
      {"id": "r1", "name": "tags", "type": "relation", "collectionId": "pbc_tags", "maxSelect": 5},
      {"id": "n1", "name": "score", "type": "number", "onlyInt": true, "required": true}
    ]
  },
  {
    "id": "_pb_users_auth_", "name": "users", "type": "auth", "system": false,
    "listRule": "id = @request.auth.id", "viewRule": null, "createRule": "",
    "updateRule": null, "deleteRule": null, "authRule": "", "manageRule": null,
    "passwordAuth": {"enabled": true, "identityFields": ["email"]},
    "otp": {"enabled": true}, "authToken": {"duration": 604800},
    "fields": []
  },
  {"id": "v1", "name": "live_posts", "type": "view", "viewQuery": "select id from posts", "fields": []}
]"#;

    #[test]
    fn a_good_file_parses_into_typed_collections() {
        let cs = parse_schema(GOOD).unwrap();
        assert_eq!(cs.len(), 3);
        let posts = &cs[0];
        assert_eq!(posts.kind, CollectionKind::Base);
        assert_eq!(Access::of(&posts.rules.list), Access::Public);
        assert_eq!(
            Access::of(&posts.rules.create),
            Access::Filter("@request.auth.id != ''")
        );
        assert_eq!(Access::of(&posts.rules.delete), Access::Superusers);
        assert_eq!(
            posts.field("status").unwrap().kind,
            FieldKind::Select {
                values: vec!["draft".into(), "live".into()],
                max_select: 1
            }
        );
        assert!(posts.field("tags").unwrap().kind.is_multiple());
        assert!(posts.field("score").unwrap().required);
        assert_eq!(posts.raw["fields"][1]["name"], "status");
        let users = cs[1].auth.as_ref().unwrap();
        assert!(users.password_auth && users.otp && !users.oauth2);
        assert_eq!(users.identity_fields, ["email"]);
        assert_eq!(cs[2].view_query.as_deref(), Some("select id from posts"));
    }

    #[test]
    fn json_errors_name_the_line_and_column() {
        check_err(
            "[\n  {\"id\": \"a\",\n   \"name\": \"posts\" \"type\": \"base\"}\n]",
            expect![[
                r#"the schema file is not valid JSON: expected `,` or `}` at line 3, column 20"#
            ]],
        );
        check_err(
            "",
            expect![[
                r#"the schema file is not valid JSON: EOF while parsing a value at line 1, column 0"#
            ]],
        );
    }

    #[test]
    fn the_top_must_be_a_non_empty_array_of_objects() {
        check_err(
            r#"{"collections": []}"#,
            expect![[
                r#"the schema file must be a JSON array of collections (as `pockestrator schema pull` writes it), not an object"#
            ]],
        );
        check_err(
            "[]",
            expect![[
                r#"the schema file holds no collection: pull one with `pockestrator schema pull NAME`"#
            ]],
        );
        check_err(
            r#"["posts"]"#,
            expect![[r#"collection #1: must be a JSON object, not a string"#]],
        );
    }

    #[test]
    fn collections_need_an_id_a_valid_name_and_a_known_type() {
        check_err(
            r#"[{"id": "a", "type": "base"}]"#,
            expect![[r#"collection #1: has no `name`"#]],
        );
        check_err(
            r#"[{"id": "a", "name": "my posts", "type": "base"}]"#,
            expect![[
                r#"collection #1 ("my posts"): its name must be 1 to 255 letters, digits or underscores"#
            ]],
        );
        check_err(
            r#"[{"id": "", "name": "posts", "type": "base"}]"#,
            expect![[
                r#"collection "posts": has no `id`: keep PocketBase's ids (push matches collections by id)"#
            ]],
        );
        check_err(
            r#"[{"id": "a", "name": "posts", "type": "table"}]"#,
            expect![[
                r#"collection "posts": unknown type "table": it is one of "base", "auth" and "view""#
            ]],
        );
        check_err(
            r#"[{"id": "a", "name": "posts", "type": "base", "listRule": 1}]"#,
            expect![[r#"collection "posts": `listRule` must be a string or null, not a number"#]],
        );
        check_err(
            r#"[{"id": "a", "name": "v", "type": "view"}]"#,
            expect![[r#"collection "v": a view needs its `viewQuery`"#]],
        );
    }

    #[test]
    fn ids_and_names_are_unique() {
        check_err(
            r#"[{"id": "a", "name": "posts", "type": "base"}, {"id": "a", "name": "tags", "type": "base"}]"#,
            expect![[r#"collection "tags": its id "a" is also another collection's"#]],
        );
        check_err(
            r#"[{"id": "a", "name": "posts", "type": "base"}, {"id": "b", "name": "Posts", "type": "base"}]"#,
            expect![[
                r#"collection "Posts": its name is also another collection's (names are compared ignoring case)"#
            ]],
        );
    }

    #[test]
    fn fields_need_an_id_a_name_a_known_type_and_unique_names() {
        check_err(
            r#"[{"id": "a", "name": "posts", "type": "base", "fields": [{"id": "f", "type": "text"}]}]"#,
            expect![[r#"collection "posts", field #1: has no `name`"#]],
        );
        check_err(
            r#"[{"id": "a", "name": "posts", "type": "base", "fields": [{"name": "title", "type": "text"}]}]"#,
            expect![[
                r#"collection "posts", field "title": has no `id`: keep PocketBase's ids (a renamed field keeps its id)"#
            ]],
        );
        check_err(
            r#"[{"id": "a", "name": "posts", "type": "base", "fields": [{"id": "f", "name": "title", "type": "string"}]}]"#,
            expect![[
                r#"collection "posts", field "title": unknown type "string": it is one of text, number, bool, email, url, editor, date, autodate, select, file, relation, json, geoPoint, password"#
            ]],
        );
        check_err(
            r#"[{"id": "a", "name": "posts", "type": "base", "fields": [{"id": "f", "name": "title", "type": "text"}, {"id": "g", "name": "Title", "type": "text"}]}]"#,
            expect![[
                r#"collection "posts", field "Title": is there twice (names are compared ignoring case)"#
            ]],
        );
        check_err(
            r#"[{"id": "a", "name": "posts", "type": "base", "fields": [{"id": "f", "name": "s", "type": "select", "values": []}]}]"#,
            expect![[r#"collection "posts", field "s": a select needs its `values`"#]],
        );
        check_err(
            r#"[{"id": "a", "name": "posts", "type": "base", "fields": [{"id": "f", "name": "r", "type": "relation", "required": "yes", "collectionId": "b"}]}]"#,
            expect![[
                r#"collection "posts", field "r": `required` must be true or false, not a string"#
            ]],
        );
    }

    #[test]
    fn a_blank_secret_is_refused() {
        check_err(
            r#"[{"id": "a", "name": "users", "type": "auth", "authToken": {"duration": 1, "secret": ""}}]"#,
            expect![[
                r#"collection "users": `authToken.secret` is blank: leave `secret` out (PocketBase keeps the instance's own; it refuses a blank one)"#
            ]],
        );
    }
}
