//! PocketBase versions: parsing what a user asks for (`latest`, `0.28.4`,
//! `v0.28.4`), picking the newest stable release, suggesting the nearest
//! existing versions when one does not exist, and the version-dependent
//! facts other modules need (which admin command a release has).
//!
//! Pure: no I/O, no tokio. The lists of versions come from `release`.

use std::cmp::{Ordering, Reverse};
use std::fmt;

pub use semver::Version;

use crate::model::names::shown;

/// What a user asked for: the newest stable release, or one exact version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionRequest {
    Latest,
    Exact(Version),
}

/// Why a version request was refused. The message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("version is empty: use \"latest\" or a release number like 0.28.4")]
    Empty,
    #[error("version {shown} is not a release number: {why}")]
    Invalid { shown: String, why: String },
}

const USAGE: &str = "use \"latest\" or a release number like 0.28.4 (a leading v is fine)";

impl VersionRequest {
    /// Accepts `latest` (any case), `X.Y.Z` and `vX.Y.Z`, with an optional
    /// pre-release suffix (`0.23.0-rc.1`). Everything else is refused:
    /// partial versions would silently pick a release the user did not name.
    pub fn parse(raw: &str) -> Result<VersionRequest, VersionError> {
        if raw.is_empty() {
            return Err(VersionError::Empty);
        }
        let invalid = |why: String| VersionError::Invalid {
            shown: shown(raw),
            why,
        };
        if raw.eq_ignore_ascii_case("latest") {
            return Ok(VersionRequest::Latest);
        }
        // Real versions are short; do not hand megabytes to the parser.
        if raw.len() > 64 {
            return Err(invalid(format!(
                "it is {} characters long; {USAGE}",
                raw.len()
            )));
        }
        let bare = raw
            .strip_prefix('v')
            .or_else(|| raw.strip_prefix('V'))
            .unwrap_or(raw);
        if let Some(c) = bare
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+')))
        {
            let what = match c {
                ' ' => "a space".to_string(),
                '\n' => "a newline".to_string(),
                c if c.is_control() => format!("control character {c:?}"),
                c => format!("{c:?}"),
            };
            return Err(invalid(format!("it contains {what}; {USAGE}")));
        }
        let numeric_parts = bare.split('.').collect::<Vec<_>>();
        if numeric_parts.len() < 3
            && numeric_parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(invalid(format!(
                "a partial version does not name one release; write all three numbers, like {bare}{}",
                ".0".repeat(3 - numeric_parts.len())
            )));
        }
        match Version::parse(bare) {
            Ok(v) if v.build.is_empty() => Ok(VersionRequest::Exact(v)),
            Ok(_) => Err(invalid(format!(
                "build metadata (+…) is not part of PocketBase versions; {USAGE}"
            ))),
            Err(_) => Err(invalid(USAGE.to_string())),
        }
    }
}

impl fmt::Display for VersionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionRequest::Latest => f.write_str("latest"),
            VersionRequest::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl std::str::FromStr for VersionRequest {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for VersionRequest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for VersionRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The newest version without a pre-release part, by semver. PocketBase
/// keeps publishing v0.22.x backports after newer lines, so the order of
/// any published list says nothing.
pub fn newest_stable(versions: &[Version]) -> Option<Version> {
    versions.iter().filter(|v| v.pre.is_empty()).max().cloned()
}

/// Up to `n` existing versions closest to `wanted`, for "unknown version"
/// messages: first those of the same major.minor line, then the others;
/// within each group by how many releases lie between them and `wanted`,
/// the newer first on a tie. Pre-releases are only suggested for a
/// pre-release request. `wanted` itself is never suggested.
pub fn nearest(available: &[Version], wanted: &Version, n: usize) -> Vec<Version> {
    let mut candidates: Vec<&Version> = available
        .iter()
        .filter(|v| *v != wanted && (v.pre.is_empty() || !wanted.pre.is_empty()))
        .collect();
    candidates.sort();
    candidates.dedup();
    // Rank distance: how far a version sits from where `wanted` would be
    // inserted into the sorted list.
    let insert_at = candidates.partition_point(|v| *v < wanted);
    let mut ranked: Vec<(bool, usize, Reverse<&Version>)> = candidates
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let distance = if i < insert_at {
                insert_at - i
            } else {
                i + 1 - insert_at
            };
            let other_line = (v.major, v.minor) != (wanted.major, wanted.minor);
            (other_line, distance, Reverse(*v))
        })
        .collect();
    ranked.sort_by(|a, b| match a.0.cmp(&b.0) {
        Ordering::Equal => (a.1, &a.2).cmp(&(b.1, &b.2)),
        other => other,
    });
    ranked
        .into_iter()
        .take(n)
        .map(|(_, _, Reverse(v))| v.clone())
        .collect()
}

/// PocketBase 0.23 renamed admins to superusers: from then on the CLI has
/// `superuser create|upsert|…`; before it, `admin create`. Release
/// candidates of 0.23 already had the new command, hence major.minor only.
pub fn has_superuser_command(v: &Version) -> bool {
    (v.major, v.minor) >= (0, 23)
}

/// `#[serde(with = "crate::model::version::as_string")]` for a
/// [`Version`] field: written as `"0.28.4"`.
pub mod as_string {
    use semver::Version;

    pub fn serialize<S: serde::Serializer>(v: &Version, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
        let raw = <String as serde::Deserialize>::deserialize(d)?;
        Version::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(raw: &str, expect: Expect) {
        let got = match VersionRequest::parse(raw) {
            Ok(r) => format!("ok {r}"),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&got);
    }

    fn versions(list: &str) -> Vec<Version> {
        list.split_whitespace()
            .map(|v| Version::parse(v).unwrap())
            .collect()
    }

    fn joined(list: &[Version]) -> String {
        list.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn requests() {
        check("latest", expect!["ok latest"]);
        check("LATEST", expect!["ok latest"]);
        check("0.28.4", expect!["ok 0.28.4"]);
        check("v0.28.4", expect!["ok 0.28.4"]);
        check("0.23.0-rc.1", expect!["ok 0.23.0-rc.1"]);
        check(
            "",
            expect![[r#"err version is empty: use "latest" or a release number like 0.28.4"#]],
        );
        check(
            "0.28",
            expect![[
                r#"err version "0.28" is not a release number: a partial version does not name one release; write all three numbers, like 0.28.0"#
            ]],
        );
        check(
            "v1",
            expect![[
                r#"err version "v1" is not a release number: a partial version does not name one release; write all three numbers, like 1.0.0"#
            ]],
        );
        check(
            "0.28.4.1",
            expect![[
                r#"err version "0.28.4.1" is not a release number: use "latest" or a release number like 0.28.4 (a leading v is fine)"#
            ]],
        );
        check(
            "newest",
            expect![[
                r#"err version "newest" is not a release number: use "latest" or a release number like 0.28.4 (a leading v is fine)"#
            ]],
        );
        check(
            "0.28.4+build",
            expect![[
                r#"err version "0.28.4+build" is not a release number: build metadata (+…) is not part of PocketBase versions; use "latest" or a release number like 0.28.4 (a leading v is fine)"#
            ]],
        );
        check(
            "../0.28.4",
            expect![[
                r#"err version "../0.28.4" is not a release number: it contains '/'; use "latest" or a release number like 0.28.4 (a leading v is fine)"#
            ]],
        );
        check(
            "0.28.4\nrm -rf /",
            expect![[
                r#"err version "0.28.4\nrm -rf /" is not a release number: it contains a newline; use "latest" or a release number like 0.28.4 (a leading v is fine)"#
            ]],
        );
        check(
            " 0.28.4",
            expect![[
                r#"err version " 0.28.4" is not a release number: it contains a space; use "latest" or a release number like 0.28.4 (a leading v is fine)"#
            ]],
        );
        check(
            "01.2.3",
            expect![[
                r#"err version "01.2.3" is not a release number: use "latest" or a release number like 0.28.4 (a leading v is fine)"#
            ]],
        );
    }

    #[test]
    fn huge_requests_are_refused_without_echoing_them() {
        let huge = "9".repeat(1 << 20);
        let err = VersionRequest::parse(&huge).unwrap_err().to_string();
        assert!(
            err.len() < 300,
            "error message echoes the input: {} bytes",
            err.len()
        );
        expect![[r#"version "9999999999999999999999999999999999999999999999999999999999999999…" is not a release number: it is 1048576 characters long; use "latest" or a release number like 0.28.4 (a leading v is fine)"#]].assert_eq(&err);
    }

    #[test]
    fn serde_round_trip() {
        let r: VersionRequest = serde_json::from_str("\"v0.28.4\"").unwrap();
        expect![[r#""0.28.4""#]].assert_eq(&serde_json::to_string(&r).unwrap());
        let err = serde_json::from_str::<VersionRequest>("\"x\"").unwrap_err();
        expect![[r#"version "x" is not a release number: use "latest" or a release number like 0.28.4 (a leading v is fine)"#]].assert_eq(&err.to_string());
    }

    #[test]
    fn newest_stable_is_by_semver_not_list_order() {
        let list = versions("0.40.6 0.22.30 0.41.0-rc.1 0.28.4 0.9.2");
        expect!["Some(Version { major: 0, minor: 40, patch: 6 })"]
            .assert_eq(&format!("{:?}", newest_stable(&list)));
        assert_eq!(newest_stable(&versions("0.23.0-rc.1")), None);
        assert_eq!(newest_stable(&[]), None);
    }

    fn check_nearest(available: &str, wanted: &str, expect: Expect) {
        let got = nearest(&versions(available), &Version::parse(wanted).unwrap(), 3);
        expect.assert_eq(&joined(&got));
    }

    #[test]
    fn nearest_versions() {
        let published = "0.27.5 0.28.3 0.28.4 0.29.0 0.29.1 0.22.30 0.40.6 0.41.0-rc.1";
        check_nearest(published, "0.28.9", expect!["0.28.4, 0.28.3, 0.29.0"]);
        check_nearest(published, "0.28.0", expect!["0.28.3, 0.28.4, 0.27.5"]);
        check_nearest(published, "0.29.5", expect!["0.29.1, 0.29.0, 0.40.6"]);
        check_nearest(published, "0.35.0", expect!["0.40.6, 0.29.1, 0.29.0"]);
        check_nearest(published, "1.0.0", expect!["0.40.6, 0.29.1, 0.29.0"]);
        check_nearest(
            published,
            "0.41.0-rc.2",
            expect!["0.41.0-rc.1, 0.40.6, 0.29.1"],
        );
        check_nearest(published, "0.28.4", expect!["0.28.3, 0.29.0, 0.29.1"]);
        check_nearest("0.28.4 0.28.4", "0.28.5", expect!["0.28.4"]);
        check_nearest("", "0.28.5", expect![""]);
    }

    #[test]
    fn superuser_command_arrived_in_0_23() {
        let got: Vec<String> = versions("0.22.30 0.23.0-rc.1 0.23.0 0.28.4 1.0.0")
            .iter()
            .map(|v| format!("{v}={}", has_superuser_command(v)))
            .collect();
        expect!["0.22.30=false 0.23.0-rc.1=true 0.23.0=true 0.28.4=true 1.0.0=true"]
            .assert_eq(&got.join(" "));
    }
}
