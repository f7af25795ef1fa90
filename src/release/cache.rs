//! The on-disk cache of PocketBase binaries and how things get into it.
//!
//! Layout under the cache directory:
//!
//! ```text
//! {version}/linux_{arch}/pocketbase     downloaded releases
//! {version}/linux_{arch}/meta.json      {version, sha256, source, archive…}
//! local/{sha256[..16]}/pocketbase       binaries a user supplied
//! local/{sha256[..16]}/meta.json
//! .tmp/                                 downloads and extractions in progress
//! ```
//!
//! **Invariant:** a `pocketbase` file at its final path is complete and
//! verified. Everything is written under `.tmp/` (same filesystem), synced,
//! and renamed into place; `meta.json` is renamed in before the binary, so
//! a binary never lacks its metadata.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use semver::Version;

use super::error::ReleaseError;
use super::spec::Arch;
use super::Installed;
use crate::fsutil::{self, AtomicFile, Staged};

const BINARY: &str = "pocketbase";
const META: &str = "meta.json";
const TMP: &str = ".tmp";
const LOCAL: &str = "local";
/// Temp files older than this are leftovers of a crashed process.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// What `meta.json` holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Meta {
    #[serde(with = "crate::model::version::as_string")]
    pub version: Version,
    /// sha256 of the binary itself.
    pub sha256: String,
    pub source: String,
    /// The archive the binary came from and its verified sha256 (absent
    /// for local binaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_sha256: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Cache {
    root: PathBuf,
    arch: Arch,
}

impl Cache {
    /// Create the cache directory if needed and clear stale temp files.
    pub fn open(root: &Path, arch: Arch) -> Result<Self, ReleaseError> {
        let root = std::path::absolute(root)
            .map_err(|e| ReleaseError::io("resolve the cache directory", root, e))?;
        let cache = Self { root, arch };
        let tmp = cache.tmp_dir();
        fs::create_dir_all(&tmp).map_err(|e| ReleaseError::io("create", &tmp, e))?;
        cache.clean_stale_temps();
        Ok(cache)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP)
    }

    pub fn release_dir(&self, version: &Version) -> PathBuf {
        self.root
            .join(version.to_string())
            .join(format!("linux_{}", self.arch))
    }

    pub fn local_dir(&self, sha256: &str) -> PathBuf {
        self.root.join(LOCAL).join(&sha256[..16.min(sha256.len())])
    }

    /// A downloaded release, if it is fully installed.
    pub fn lookup(&self, version: &Version) -> Option<Installed> {
        self.read_dir_entry(&self.release_dir(version))
            .filter(|installed| installed.version == *version)
    }

    /// What an install directory holds, if it is complete and its
    /// metadata readable. Anything else counts as not installed and is
    /// replaced by the next install.
    pub fn read_dir_entry(&self, dir: &Path) -> Option<Installed> {
        let binary = dir.join(BINARY);
        if !binary.is_file() {
            return None;
        }
        let meta_path = dir.join(META);
        let meta: Meta = match fs::read(&meta_path).map(|raw| serde_json::from_slice(&raw)) {
            Ok(Ok(meta)) => meta,
            Ok(Err(e)) => {
                tracing::warn!(path = %meta_path.display(), error = %e, "ignoring unreadable release metadata");
                return None;
            }
            Err(_) => return None,
        };
        Some(Installed {
            version: meta.version,
            binary,
            sha256: meta.sha256,
            source: meta.source,
        })
    }

    /// Every downloaded release for this architecture, newest first.
    pub fn list(&self) -> Result<Vec<Installed>, ReleaseError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ReleaseError::io("list the cache directory", &self.root, e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| ReleaseError::io("list the cache directory", &self.root, e))?;
            let Some(version) = entry
                .file_name()
                .to_str()
                .and_then(|n| Version::parse(n).ok())
            else {
                continue;
            };
            if let Some(installed) = self.lookup(&version) {
                found.push(installed);
            }
        }
        found.sort_by(|a, b| b.version.cmp(&a.version));
        Ok(found)
    }

    /// Move a verified, executable binary (a temp file under `.tmp/`) and
    /// its metadata into `dir`, atomically.
    pub fn commit(
        &self,
        dir: &Path,
        binary: Staged,
        meta: &Meta,
    ) -> Result<Installed, ReleaseError> {
        fs::create_dir_all(dir).map_err(|e| ReleaseError::io("create", dir, e))?;
        let tmp = self.tmp_dir();
        let mut meta_file = AtomicFile::in_dir(&tmp, "meta-")
            .map_err(|e| ReleaseError::io("create a temporary file in", &tmp, e))?;
        let json = serde_json::to_vec_pretty(meta)
            .map_err(|e| ReleaseError::Internal(format!("cannot encode release metadata: {e}")))?;
        let meta_temp = meta_file.path().to_path_buf();
        let meta_file = meta_file
            .write_all(&json)
            .and_then(|()| meta_file.finish())
            .map_err(|e| ReleaseError::io("write", meta_temp, e))?;
        let meta_path = dir.join(META);
        meta_file
            .persist(&meta_path)
            .map_err(|e| ReleaseError::io("write", &meta_path, e))?;
        let binary_path = dir.join(BINARY);
        binary
            .persist(&binary_path)
            .map_err(|e| ReleaseError::io("install", &binary_path, e))?;
        // Make the renames themselves durable.
        if let Err(e) = fsutil::sync_dir(dir) {
            tracing::debug!(dir = %dir.display(), error = %e, "cannot sync the install directory");
        }
        Ok(Installed {
            version: meta.version.clone(),
            binary: binary_path,
            sha256: meta.sha256.clone(),
            source: meta.source.clone(),
        })
    }

    fn clean_stale_temps(&self) {
        let tmp = self.tmp_dir();
        let Ok(entries) = fs::read_dir(&tmp) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age > STALE_AFTER);
            if stale {
                let path = entry.path();
                let removed = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                match removed {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed a leftover temporary file")
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover temporary file")
                    }
                }
            }
        }
    }
}
