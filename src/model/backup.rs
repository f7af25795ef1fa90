//! Backups as values: their ids (which end up in file names and URLs),
//! where they go, and why they were made.

use std::fmt;
use std::path::PathBuf;

use super::names::shown;

/// What is wrong with a backup id or destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    #[error("invalid backup id {0}: use 1 to 100 of a-z, 0-9, '_' and '-', starting with a letter or digit (see `pockestrator backup list NAME`)")]
    BadId(String),
    #[error("invalid backup destination {shown}: {why}")]
    BadDestination { shown: String, why: &'static str },
}

/// A backup's id: also its file name without `.zip`, so it obeys
/// PocketBase's own rule for backup names (`^[a-z0-9_-]+\.zip$`) and a
/// pockestrator archive can be uploaded to PocketBase as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackupId(String);

impl BackupId {
    pub const MAX_LEN: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, BackupError> {
        let raw = raw.strip_suffix(".zip").unwrap_or(raw);
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(BackupError::BadId(shown(raw)))
        }
    }

    /// A new id from a UTC time (`%Y%m%d-%H%M%S`) and a random suffix, so
    /// that ids sort by time and two backups in one second differ.
    pub fn new(stamp: &str, suffix: u16) -> Result<Self, BackupError> {
        Self::parse(&format!("{stamp}-{suffix:04x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The archive's file name.
    pub fn file_name(&self) -> String {
        format!("{}.zip", self.0)
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a backup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A directory on this host (the default is `backups/<instance>/` in
    /// the data dir); archives are `<dir>/<id>.zip`.
    Local(PathBuf),
}

impl Destination {
    /// `--to`: an absolute directory path or a `file://` URL of one.
    pub fn parse(raw: &str) -> Result<Self, BackupError> {
        let bad = |why| BackupError::BadDestination {
            shown: shown(raw),
            why,
        };
        if raw.contains('\0') || raw.contains('\n') || raw.len() > 4096 {
            return Err(bad("it holds a NUL or a newline, or is too long"));
        }
        let path = if let Some(rest) = raw.strip_prefix("file://") {
            rest
        } else if raw.contains("://") {
            return Err(bad(
                "only local directories (an absolute path or file:///path) are supported as backup destinations so far",
            ));
        } else {
            raw
        };
        if !path.starts_with('/') {
            return Err(bad("give an absolute directory path"));
        }
        if path.split('/').any(|c| c == "..") {
            return Err(bad("'..' is not allowed in a backup destination"));
        }
        Ok(Destination::Local(PathBuf::from(path)))
    }

    /// How it is written in the store and shown to users.
    pub fn to_text(&self) -> String {
        match self {
            Destination::Local(dir) => format!("file://{}", dir.display()),
        }
    }
}

/// Why a backup was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupTrigger {
    /// Asked for (CLI, API, dashboard).
    Manual,
    /// Made by the instance's backup schedule (and pruned by its retention).
    Schedule,
    /// Taken of the current data right before a restore replaced it.
    PreRestore,
    /// Made by PocketBase itself (its `pb_data/backups/`), found there.
    PocketBase,
}

impl BackupTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupTrigger::Manual => "manual",
            BackupTrigger::Schedule => "schedule",
            BackupTrigger::PreRestore => "pre-restore",
            BackupTrigger::PocketBase => "pocketbase",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "manual" => Some(BackupTrigger::Manual),
            "schedule" => Some(BackupTrigger::Schedule),
            "pre-restore" => Some(BackupTrigger::PreRestore),
            "pocketbase" => Some(BackupTrigger::PocketBase),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in [
            "20261201-101500-3f2a",
            "pb_backup_20261201101500",
            "a",
            "x.zip",
        ] {
            assert!(BackupId::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(BackupId::parse("x.zip").unwrap().file_name(), "x.zip");
        let long = "a".repeat(10_000);
        for bad in [
            "",
            "../etc",
            "a/b",
            "A",
            "-a",
            "_a",
            "a\0b",
            "a b",
            "a.b",
            ".zip",
            long.as_str(),
        ] {
            let e = BackupId::parse(bad).unwrap_err().to_string();
            assert!(e.len() < 400, "message stays bounded: {e}");
            assert!(!e.contains('\0'));
        }
        assert_eq!(
            BackupId::new("20261201-101500", 0x3f2a).unwrap().as_str(),
            "20261201-101500-3f2a"
        );
    }

    #[test]
    fn destinations() {
        assert_eq!(
            Destination::parse("/srv/backups").unwrap(),
            Destination::Local("/srv/backups".into())
        );
        assert_eq!(
            Destination::parse("file:///srv/b").unwrap().to_text(),
            "file:///srv/b"
        );
        for bad in [
            "relative/dir",
            "/srv/../etc",
            "s3://bucket/x",
            "nats://h:4222/b",
            "/a\0b",
            "ext::sh -c x",
            "",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn triggers_round_trip() {
        for t in [
            BackupTrigger::Manual,
            BackupTrigger::Schedule,
            BackupTrigger::PreRestore,
            BackupTrigger::PocketBase,
        ] {
            assert_eq!(BackupTrigger::parse(t.as_str()), Some(t));
        }
    }
}
