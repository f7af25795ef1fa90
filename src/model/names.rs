//! Validated names: instance names, domains and seed 001's user ids.
//!
//! Names end up in file paths, systemd unit names and proxy config, so they
//! are checked strictly here, once, and only the validated newtypes travel
//! further. An instance name is a lowercase DNS label: `[a-z0-9-]`, 1–63
//! characters, no leading or trailing `-`.

use std::fmt;

/// Why a name, domain or user id was refused. The message says what is
/// allowed so that it can be shown to a user as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty: use 1 to 63 characters of a-z, 0-9 and '-'")]
    Empty,
    #[error("name is {len} characters long: the limit is 63")]
    TooLong { len: usize },
    #[error("name {shown} contains {bad}: use only lowercase a-z, digits 0-9 and '-'")]
    BadChar { shown: String, bad: String },
    #[error("name {shown} starts or ends with '-': it must start and end with a letter or digit")]
    EdgeHyphen { shown: String },
    #[error("name {0:?} is reserved: pick another")]
    Reserved(String),
    #[error("domain is empty")]
    DomainEmpty,
    #[error("domain is {len} characters long: the limit is 253")]
    DomainTooLong { len: usize },
    #[error("domain {shown} is not a valid hostname: {why}")]
    DomainInvalid { shown: String, why: String },
    #[error("user id {shown} is not valid: use 1 to 128 characters of A-Z, a-z, 0-9, '_' and '-'")]
    UserIdInvalid { shown: String },
}

/// Quote a user-supplied string for an error message without letting it
/// inject newlines or control characters into logs and terminals, and
/// without echoing megabytes back.
pub fn shown(raw: &str) -> String {
    const LIMIT: usize = 64;
    let mut out: String = raw.chars().take(LIMIT).collect::<String>();
    if raw.chars().count() > LIMIT {
        out.push('…');
    }
    format!("{out:?}")
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\n' => "a newline".to_string(),
        '/' => "'/'".to_string(),
        '.' => "'.'".to_string(),
        c if c.is_ascii_uppercase() => format!("uppercase {c:?}"),
        c if c.is_control() => format!("control character {:?}", c),
        c if !c.is_ascii() => format!("non-ASCII {c:?}"),
        c => format!("{c:?}"),
    }
}

/// Check a DNS label (the rules for instance names and for each part of a
/// domain, except that domains allow uppercase, which we fold).
fn check_label(raw: &str) -> Result<(), NameError> {
    if raw.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(NameError::BadChar {
            shown: shown(raw),
            bad: describe_char(bad),
        });
    }
    if raw.len() > 63 {
        return Err(NameError::TooLong { len: raw.len() });
    }
    if raw.starts_with('-') || raw.ends_with('-') {
        return Err(NameError::EdgeHyphen { shown: shown(raw) });
    }
    Ok(())
}

/// An instance name: a lowercase DNS label, unique across the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct InstanceName(String);

/// Names an instance cannot have: they name things of pockestrator's own
/// (Caddy's catch-all route is `pockestrator-catch-all`).
const RESERVED_NAMES: &[&str] = &["catch-all"];

impl InstanceName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        check_label(raw)?;
        if RESERVED_NAMES.contains(&raw) {
            return Err(NameError::Reserved(raw.to_string()));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated name reads as the text it is (`&name` where a `&str` is
/// wanted, map lookups by `&str`); it cannot be changed in place.
macro_rules! reads_as_str {
    ($ty:ty) => {
        impl std::ops::Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

reads_as_str!(InstanceName);
reads_as_str!(Domain);
reads_as_str!(UserId);

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for InstanceName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for InstanceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A hostname an instance answers at: dot-separated DNS labels, at least two
/// of them, lowercase (input is folded to lowercase), at most 253 characters,
/// the last label not all digits. A single trailing dot is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Domain(String);

impl Domain {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let trimmed = raw.strip_suffix('.').unwrap_or(raw);
        if trimmed.is_empty() {
            return Err(NameError::DomainEmpty);
        }
        if trimmed.len() > 253 {
            return Err(NameError::DomainTooLong { len: trimmed.len() });
        }
        let invalid = |why: String| NameError::DomainInvalid {
            shown: shown(raw),
            why,
        };
        // Refuse non-ASCII outright rather than guess an IDNA mapping: the
        // user can pass the punycode form (xn--…), which is what ends up in
        // certificates and proxy config anyway.
        if let Some(c) = trimmed.chars().find(|c| !c.is_ascii()) {
            return Err(invalid(format!(
                "it contains {}; write internationalized names in their xn-- form",
                describe_char(c)
            )));
        }
        let lower = trimmed.to_ascii_lowercase();
        let labels: Vec<&str> = lower.split('.').collect();
        if labels.len() < 2 {
            return Err(invalid(
                "it needs at least two labels, like example.com".to_string(),
            ));
        }
        for label in &labels {
            match check_label(label) {
                Ok(()) => {}
                Err(NameError::Empty) => {
                    return Err(invalid("it has an empty label ('..')".to_string()))
                }
                Err(NameError::BadChar { bad, .. }) => {
                    return Err(invalid(format!(
                        "it contains {bad}; use a-z, 0-9, '-' and dots"
                    )))
                }
                Err(NameError::TooLong { len }) => {
                    return Err(invalid(format!(
                        "a label is {len} characters long; the limit is 63"
                    )))
                }
                Err(_) => return Err(invalid("a label starts or ends with '-'".to_string())),
            }
        }
        if labels
            .last()
            .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(invalid(
                "its last label is all digits (an IP address is not a domain)".to_string(),
            ));
        }
        Ok(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Domain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A user id of seed 001's per-user API (`/api/users/{id}/…`). It becomes
/// part of a directory name, so it is limited to `[A-Za-z0-9_-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(NameError::UserIdInvalid { shown: shown(raw) })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The instance name that holds this user's PocketBase: `u-` followed by
    /// the id folded to a DNS label and a short stable hash, so that ids that
    /// differ only in case or in `_` versus `-` never collide.
    pub fn instance_name(&self) -> InstanceName {
        let folded: String = self
            .0
            .chars()
            .map(|c| match c {
                'A'..='Z' => c.to_ascii_lowercase(),
                '_' => '-',
                c => c,
            })
            .collect();
        let mut stem: String = folded.trim_matches('-').chars().take(48).collect();
        while stem.ends_with('-') {
            stem.pop();
        }
        let hash = format!(
            "{:08x}",
            crate::model::ports::stable_hash(self.0.as_bytes()) as u32
        );
        let raw = if stem.is_empty() {
            format!("u-{hash}")
        } else {
            format!("u-{stem}-{hash}")
        };
        // The construction above only produces label characters and stays
        // under 63 characters (2 + 48 + 1 + 8), so this cannot fail.
        InstanceName(raw)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check_name(raw: &str, expect: Expect) {
        let got = match InstanceName::parse(raw) {
            Ok(n) => format!("ok {n}"),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn instance_names() {
        check_name("moots", expect!["ok moots"]);
        check_name("a", expect!["ok a"]);
        check_name("web-1", expect!["ok web-1"]);
        check_name("0abc", expect!["ok 0abc"]);
        check_name(
            "",
            expect!["err name is empty: use 1 to 63 characters of a-z, 0-9 and '-'"],
        );
        check_name(
            "-moots",
            expect![[
                r#"err name "-moots" starts or ends with '-': it must start and end with a letter or digit"#
            ]],
        );
        check_name(
            "moots-",
            expect![[
                r#"err name "moots-" starts or ends with '-': it must start and end with a letter or digit"#
            ]],
        );
        check_name(
            "Moots",
            expect![[
                r#"err name "Moots" contains uppercase 'M': use only lowercase a-z, digits 0-9 and '-'"#
            ]],
        );
        check_name(
            "../etc",
            expect![[
                r#"err name "../etc" contains '.': use only lowercase a-z, digits 0-9 and '-'"#
            ]],
        );
        check_name(
            "a/b",
            expect![[r#"err name "a/b" contains '/': use only lowercase a-z, digits 0-9 and '-'"#]],
        );
        check_name(
            "two words",
            expect![[
                r#"err name "two words" contains a space: use only lowercase a-z, digits 0-9 and '-'"#
            ]],
        );
        check_name(
            "evil\nExecStart=/bin/sh",
            expect![[
                r#"err name "evil\nExecStart=/bin/sh" contains a newline: use only lowercase a-z, digits 0-9 and '-'"#
            ]],
        );
        check_name(
            "café",
            expect![[
                r#"err name "café" contains non-ASCII 'é': use only lowercase a-z, digits 0-9 and '-'"#
            ]],
        );
        check_name(
            "a_b",
            expect![[r#"err name "a_b" contains '_': use only lowercase a-z, digits 0-9 and '-'"#]],
        );
        check_name(
            "nul\0",
            expect![[
                r#"err name "nul\0" contains control character '\0': use only lowercase a-z, digits 0-9 and '-'"#
            ]],
        );
        check_name(
            &"a".repeat(63),
            expect!["ok aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"],
        );
        check_name(
            &"a".repeat(64),
            expect!["err name is 64 characters long: the limit is 63"],
        );
    }

    #[test]
    fn huge_names_are_refused_without_echoing_them() {
        let huge = "x".repeat(1 << 20);
        let err = InstanceName::parse(&huge).unwrap_err().to_string();
        assert_eq!(err, "name is 1048576 characters long: the limit is 63");
        let huge_bad = "X".repeat(1 << 20);
        let err = InstanceName::parse(&huge_bad).unwrap_err().to_string();
        assert!(
            err.len() < 200,
            "error message echoes the input: {} bytes",
            err.len()
        );
    }

    fn check_domain(raw: &str, expect: Expect) {
        let got = match Domain::parse(raw) {
            Ok(d) => format!("ok {d}"),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn domains() {
        check_domain("tigawanna.vip", expect!["ok tigawanna.vip"]);
        check_domain("Moots.Tigawanna.VIP.", expect!["ok moots.tigawanna.vip"]);
        check_domain("xn--caf-dma.example", expect!["ok xn--caf-dma.example"]);
        check_domain(
            "localhost",
            expect![[
                r#"err domain "localhost" is not a valid hostname: it needs at least two labels, like example.com"#
            ]],
        );
        check_domain(
            "a..b",
            expect![[r#"err domain "a..b" is not a valid hostname: it has an empty label ('..')"#]],
        );
        check_domain(
            "-a.com",
            expect![[
                r#"err domain "-a.com" is not a valid hostname: a label starts or ends with '-'"#
            ]],
        );
        check_domain(
            "a b.com",
            expect![[
                r#"err domain "a b.com" is not a valid hostname: it contains a space; use a-z, 0-9, '-' and dots"#
            ]],
        );
        check_domain(
            "x.com\n}",
            expect![[
                r#"err domain "x.com\n}" is not a valid hostname: it contains a newline; use a-z, 0-9, '-' and dots"#
            ]],
        );
        check_domain(
            "café.com",
            expect![[
                r#"err domain "café.com" is not a valid hostname: it contains non-ASCII 'é'; write internationalized names in their xn-- form"#
            ]],
        );
        check_domain(
            "10.0.0.1",
            expect![[
                r#"err domain "10.0.0.1" is not a valid hostname: its last label is all digits (an IP address is not a domain)"#
            ]],
        );
        check_domain(
            "*.example.com",
            expect![[
                r#"err domain "*.example.com" is not a valid hostname: it contains '*'; use a-z, 0-9, '-' and dots"#
            ]],
        );
        check_domain("", expect!["err domain is empty"]);
        check_domain(&format!("{}.com", "a".repeat(64)), expect!["err domain \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…\" is not a valid hostname: a label is 64 characters long; the limit is 63"]);
        check_domain(
            &"a.".repeat(200),
            expect!["err domain is 399 characters long: the limit is 253"],
        );
    }

    #[test]
    fn user_ids_map_to_distinct_valid_instance_names() {
        for raw in ["user_123", "User_123", "user-123", "test_user", "___", "a"] {
            let id = UserId::parse(raw).unwrap();
            let name = id.instance_name();
            InstanceName::parse(name.as_str()).unwrap();
        }
        let a = UserId::parse("user_123").unwrap().instance_name();
        let b = UserId::parse("user-123").unwrap().instance_name();
        assert_ne!(a, b);
        expect!["u-user-123-"].assert_eq(&a.as_str()[..11]);
        for bad in ["", "../x", "a b", "é", "x\n", &"a".repeat(129)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
