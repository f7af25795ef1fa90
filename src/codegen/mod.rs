//! Code generated from an instance's collections, pure (no I/O): the
//! OpenAPI document of its PocketBase record API ([`openapi`]) and
//! TypeScript types in pocketbase-typegen's style ([`typescript`]). The
//! manager reads the collections (`store::read_collections`) and hands
//! them here parsed (`model::collections`).

pub mod openapi;
pub mod typescript;

/// The languages `types` is generated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    TypeScript,
}

impl Lang {
    /// `ts` (or `typescript`); anything else names what there is.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "ts" | "typescript" => Ok(Self::TypeScript),
            other => Err(format!(
                "no types for language {}: the one there is is `ts` (TypeScript)",
                crate::model::names::shown(other)
            )),
        }
    }
}

/// The instance the code is generated for.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub name: &'a str,
    /// Its PocketBase version.
    pub version: &'a str,
    /// Every address it answers at, the router's first.
    pub urls: &'a [String],
}

/// A collection name as a PascalCase identifier, as pocketbase-typegen
/// writes it: `_authOrigins` → `Authorigins`, `blog_posts` → `BlogPosts`.
pub fn pascal_case(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(['_', '-', ' ']).filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(&chars.as_str().to_lowercase());
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'C');
    }
    out
}

/// Names made unique by a numeric suffix, in order: two collections whose
/// PascalCase forms collide (`user_posts`, `userPosts`) still get one each.
pub fn unique_names(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names
        .into_iter()
        .map(|n| {
            let mut candidate = n.clone();
            let mut i = 2;
            while !seen.insert(candidate.clone()) {
                candidate = format!("{n}{i}");
                i += 1;
            }
            candidate
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod fixture {
    //! A small schema with every field type, for the generators' snapshots.

    use crate::model::collections::{parse_schema, Collection};

    pub const SCHEMA: &str = r#"[
  {"id": "pbc_3142635823", "name": "_superusers", "type": "auth", "system": true,
   "listRule": null, "viewRule": null, "createRule": null, "updateRule": null, "deleteRule": null,
   "authRule": "", "manageRule": null, "passwordAuth": {"enabled": true, "identityFields": ["email"]},
   "oauth2": {"enabled": false}, "otp": {"enabled": false}, "mfa": {"enabled": false},
   "fields": [
     {"id": "text3208210256", "name": "id", "type": "text", "system": true, "required": true,
      "primaryKey": true, "min": 15, "max": 15, "pattern": "^[a-z0-9]+$", "autogeneratePattern": "[a-z0-9]{15}"},
     {"id": "password901924565", "name": "password", "type": "password", "system": true, "hidden": true, "required": true},
     {"id": "text2504183744", "name": "tokenKey", "type": "text", "system": true, "hidden": true, "required": true,
      "autogeneratePattern": "[a-zA-Z0-9]{50}"},
     {"id": "email3885137012", "name": "email", "type": "email", "system": true, "required": true},
     {"id": "bool1547992806", "name": "emailVisibility", "type": "bool", "system": true},
     {"id": "bool256245529", "name": "verified", "type": "bool", "system": true},
     {"id": "autodate2990389176", "name": "created", "type": "autodate", "system": true, "onCreate": true, "onUpdate": false},
     {"id": "autodate3332085495", "name": "updated", "type": "autodate", "system": true, "onCreate": true, "onUpdate": true}
   ]},
  {"id": "_pb_users_auth_", "name": "users", "type": "auth", "system": false,
   "listRule": "id = @request.auth.id", "viewRule": "id = @request.auth.id", "createRule": "",
   "updateRule": "id = @request.auth.id", "deleteRule": null,
   "authRule": "", "manageRule": null, "passwordAuth": {"enabled": true, "identityFields": ["email"]},
   "oauth2": {"enabled": false}, "otp": {"enabled": true}, "mfa": {"enabled": false},
   "fields": [
     {"id": "text3208210256", "name": "id", "type": "text", "system": true, "required": true,
      "primaryKey": true, "min": 15, "max": 15, "pattern": "^[a-z0-9]+$", "autogeneratePattern": "[a-z0-9]{15}"},
     {"id": "password901924565", "name": "password", "type": "password", "system": true, "hidden": true, "required": true},
     {"id": "text2504183744", "name": "tokenKey", "type": "text", "system": true, "hidden": true, "required": true,
      "autogeneratePattern": "[a-zA-Z0-9]{50}"},
     {"id": "email3885137012", "name": "email", "type": "email", "system": true, "required": true},
     {"id": "bool1547992806", "name": "emailVisibility", "type": "bool", "system": true},
     {"id": "bool256245529", "name": "verified", "type": "bool", "system": true},
     {"id": "text1579384326", "name": "name", "type": "text", "max": 255},
     {"id": "file376926767", "name": "avatar", "type": "file", "maxSelect": 1, "mimeTypes": ["image/png"]}
   ]},
  {"id": "pbc_posts", "name": "posts", "type": "base", "system": false,
   "listRule": "", "viewRule": "", "createRule": "@request.auth.id != ''", "updateRule": null, "deleteRule": null,
   "fields": [
     {"id": "text3208210256", "name": "id", "type": "text", "system": true, "required": true,
      "primaryKey": true, "min": 15, "max": 15, "pattern": "^[a-z0-9]+$", "autogeneratePattern": "[a-z0-9]{15}"},
     {"id": "t1", "name": "title", "type": "text", "required": true, "presentable": true},
     {"id": "n1", "name": "views", "type": "number", "onlyInt": true},
     {"id": "n2", "name": "rating", "type": "number"},
     {"id": "b1", "name": "featured", "type": "bool"},
     {"id": "e1", "name": "contact", "type": "email"},
     {"id": "u1", "name": "homepage", "type": "url"},
     {"id": "ed1", "name": "body", "type": "editor"},
     {"id": "d1", "name": "published", "type": "date"},
     {"id": "s1", "name": "status", "type": "select", "values": ["draft", "published"], "maxSelect": 1, "required": true},
     {"id": "s2", "name": "labels", "type": "select", "values": ["news", "tech"], "maxSelect": 2},
     {"id": "r1", "name": "author", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
     {"id": "r2", "name": "related", "type": "relation", "collectionId": "pbc_posts", "maxSelect": 10},
     {"id": "f1", "name": "cover", "type": "file", "maxSelect": 1},
     {"id": "f2", "name": "attachments", "type": "file", "maxSelect": 5},
     {"id": "j1", "name": "metadata", "type": "json"},
     {"id": "g1", "name": "location", "type": "geoPoint"},
     {"id": "autodate2990389176", "name": "created", "type": "autodate", "system": false, "onCreate": true, "onUpdate": false},
     {"id": "autodate3332085495", "name": "updated", "type": "autodate", "system": false, "onCreate": true, "onUpdate": true}
   ]},
  {"id": "pbc_live", "name": "live_posts", "type": "view", "system": false,
   "listRule": "", "viewRule": "", "createRule": null, "updateRule": null, "deleteRule": null,
   "viewQuery": "select id, title from posts",
   "fields": [
     {"id": "text3208210256", "name": "id", "type": "text", "system": true, "required": true, "primaryKey": true},
     {"id": "t1", "name": "title", "type": "text", "required": true}
   ]}
]"#;

    pub fn collections() -> Vec<Collection> {
        parse_schema(SCHEMA).expect("the fixture parses")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pascal_case_as_typegen_writes_it() {
        assert_eq!(pascal_case("_authOrigins"), "Authorigins");
        assert_eq!(pascal_case("blog_posts"), "BlogPosts");
        assert_eq!(pascal_case("users"), "Users");
        assert_eq!(pascal_case("2fa"), "C2fa");
        assert_eq!(
            unique_names([
                "Users".to_string(),
                "Users".to_string(),
                "Posts".to_string()
            ]),
            ["Users", "Users2", "Posts"]
        );
    }
}
