//! What can go wrong while resolving, downloading, verifying and caching
//! PocketBase binaries, with messages that say what to do next.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use semver::Version;

/// One source's reason for not providing a version, kept so that a final
/// error can list every source that was tried.
#[derive(Debug, Clone)]
pub struct SourceFailure {
    /// The source as configured (`github`, `pypi`, a mirror URL or path).
    pub source: String,
    pub error: ReleaseError,
}

/// Errors of the `release` module. Cheap to clone, so that a download that
/// several callers wait for can hand each of them the same outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReleaseError {
    #[error("unsupported CPU architecture {arch}: PocketBase is published for linux amd64 (x86_64) and arm64 (aarch64) only")]
    UnsupportedArch { arch: String },

    #[error("{}", unknown_version_message(version, nearest))]
    UnknownVersion {
        version: Version,
        nearest: Vec<Version>,
    },

    #[error("release source {shown} is not valid: {why}")]
    InvalidSource { shown: String, why: String },

    #[error(
        "no release source is configured: add github, pypi or a mirror, or install a local binary"
    )]
    NoSources,

    #[error("none of the release sources can list versions ({sources}): ask for an exact version, or add github, pypi or a mirror directory")]
    NoListingSource { sources: String },

    #[error("the release sources list no stable PocketBase release: ask for an exact version")]
    NoStableRelease,

    #[error("{source_name} has no PocketBase {version} for linux {arch}")]
    NotOnSource {
        source_name: String,
        version: Version,
        arch: String,
    },

    #[error("cannot reach {source_name} ({url}): {reason}; check the network or proxy, or configure another release source")]
    Unreachable {
        source_name: String,
        url: String,
        reason: String,
    },

    #[error("{source_name} answered HTTP {status} for {url}{hint}")]
    HttpStatus {
        source_name: String,
        url: String,
        status: u16,
        hint: String,
    },

    #[error("request to {source_name} ({url}) failed: {reason}")]
    Http {
        source_name: String,
        url: String,
        reason: String,
    },

    #[error("{source_name} sent an answer that cannot be read ({url}): {reason}")]
    BadResponse {
        source_name: String,
        url: String,
        reason: String,
    },

    #[error("{source_name} publishes no checksum for {file}: refusing to install an unverified binary; publish a checksums.txt (sha256) beside it")]
    MissingChecksum { source_name: String, file: String },

    #[error("checksum mismatch for {file} from {source_name}: expected sha256 {expected}, got {actual}; the download is corrupt or was tampered with, and nothing was installed")]
    ChecksumMismatch {
        source_name: String,
        file: String,
        expected: String,
        actual: String,
    },

    #[error("archive {file} from {source_name} is not usable: {reason}")]
    BadArchive {
        source_name: String,
        file: String,
        reason: String,
    },

    #[error("{}", all_failed_message(version, failures))]
    AllSourcesFailed {
        /// `None` when listing versions failed rather than fetching one.
        version: Option<Version>,
        failures: Vec<SourceFailure>,
    },

    #[error("{} is not a usable PocketBase binary: {reason}", path.display())]
    BadLocalBinary { path: PathBuf, reason: String },

    #[error("cannot {action} {}: {cause}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: Arc<std::io::Error>,
    },

    #[error("internal error in the release cache: {0}")]
    Internal(String),
}

impl ReleaseError {
    /// True when the caller asked for something that cannot exist (an
    /// unknown version, an unusable local binary, a malformed source): an
    /// HTTP 4xx. False for network, disk and upstream trouble: a 5xx.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            ReleaseError::UnknownVersion { .. }
                | ReleaseError::BadLocalBinary { .. }
                | ReleaseError::InvalidSource { .. }
        )
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        cause: std::io::Error,
    ) -> Self {
        ReleaseError::Io {
            action,
            path: path.into(),
            cause: Arc::new(cause),
        }
    }
}

fn joined(versions: &[Version]) -> String {
    versions
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_version_message(version: &Version, nearest: &[Version]) -> String {
    if nearest.is_empty() {
        format!("unknown PocketBase version {version}: no release source has it; check the number, or use \"latest\"")
    } else {
        format!(
            "unknown PocketBase version {version}; nearest: {}",
            joined(nearest)
        )
    }
}

fn all_failed_message(version: &Option<Version>, failures: &[SourceFailure]) -> String {
    let mut out = match version {
        Some(version) => format!("could not get PocketBase {version} from any release source"),
        None => "could not list PocketBase versions from any release source".to_string(),
    };
    for (i, failure) in failures.iter().enumerate() {
        out.push_str(if i == 0 { ": " } else { " | " });
        out.push_str(&format!("[{}] {}", failure.source, failure.error));
    }
    out
}

impl fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.source, self.error)
    }
}

/// The error and its causes on one line: reqwest's own message is only the
/// outermost layer ("error sending request"), the useful part (DNS failure,
/// connection refused, certificate problem) is further down the chain.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn messages() {
        let unknown = ReleaseError::UnknownVersion {
            version: v("0.28.9"),
            nearest: vec![v("0.28.4"), v("0.28.3"), v("0.29.0")],
        };
        expect!["unknown PocketBase version 0.28.9; nearest: 0.28.4, 0.28.3, 0.29.0"]
            .assert_eq(&unknown.to_string());
        assert!(unknown.is_user_error());
        let none = ReleaseError::UnknownVersion {
            version: v("9.9.9"),
            nearest: vec![],
        };
        expect![[r#"unknown PocketBase version 9.9.9: no release source has it; check the number, or use "latest""#]]
            .assert_eq(&none.to_string());
        let all = ReleaseError::AllSourcesFailed {
            version: Some(v("0.28.4")),
            failures: vec![
                SourceFailure {
                    source: "github".into(),
                    error: ReleaseError::Unreachable {
                        source_name: "github".into(),
                        url: "https://api.github.com/x".into(),
                        reason: "dns error".into(),
                    },
                },
                SourceFailure {
                    source: "pypi".into(),
                    error: ReleaseError::NotOnSource {
                        source_name: "pypi".into(),
                        version: v("0.28.4"),
                        arch: "amd64".into(),
                    },
                },
            ],
        };
        expect!["could not get PocketBase 0.28.4 from any release source: [github] cannot reach github (https://api.github.com/x): dns error; check the network or proxy, or configure another release source | [pypi] pypi has no PocketBase 0.28.4 for linux amd64"]
            .assert_eq(&all.to_string());
        assert!(!all.is_user_error());
    }
}
