//! Mirrors with GitHub's asset layout, for hosts that cannot reach GitHub:
//! `{base}/v{V}/pocketbase_{V}_linux_{arch}.zip` beside `{base}/v{V}/checksums.txt`.
//! A directory can be listed (its `v*` subdirectories); a plain web server
//! cannot, so a URL mirror only serves exact versions. A mirror without
//! checksums is refused: nothing unverified gets installed.

use std::path::{Path, PathBuf};

use semver::Version;

use super::artifact::{release_zip_name, Artifact, Location, Member};
use super::checksums;
use super::error::ReleaseError;
use super::http::{status_error, Http};
use super::spec::Arch;

pub(crate) struct MirrorDir {
    pub label: String,
    root: PathBuf,
}

impl MirrorDir {
    pub fn new(label: String, root: &Path) -> Self {
        Self {
            label,
            root: root.to_path_buf(),
        }
    }

    pub async fn list(&self) -> Result<Vec<Version>, ReleaseError> {
        let mut entries = tokio::fs::read_dir(&self.root)
            .await
            .map_err(|e| ReleaseError::io("list the mirror directory", &self.root, e))?;
        let mut versions = Vec::new();
        loop {
            let entry = entries
                .next_entry()
                .await
                .map_err(|e| ReleaseError::io("list the mirror directory", &self.root, e))?;
            let Some(entry) = entry else { break };
            let name = entry.file_name();
            let Some(version) = name
                .to_str()
                .and_then(|n| n.strip_prefix('v'))
                .and_then(|n| Version::parse(n).ok())
            else {
                continue;
            };
            if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                versions.push(version);
            }
        }
        Ok(versions)
    }

    pub async fn locate(
        &self,
        version: &Version,
        arch: Arch,
    ) -> Result<Option<Artifact>, ReleaseError> {
        // A missing root is a configuration mistake, not a missing version.
        if let Err(e) = tokio::fs::metadata(&self.root).await {
            return Err(ReleaseError::io("read the mirror directory", &self.root, e));
        }
        let dir = self.root.join(format!("v{version}"));
        let zip_name = release_zip_name(version, arch);
        let zip = dir.join(&zip_name);
        if !tokio::fs::try_exists(&zip).await.unwrap_or(false) {
            return Ok(None);
        }
        let sums_path = dir.join("checksums.txt");
        let sums = match tokio::fs::read_to_string(&sums_path).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ReleaseError::MissingChecksum {
                    source_name: self.label.clone(),
                    file: zip_name,
                })
            }
            Err(e) => return Err(ReleaseError::io("read", sums_path, e)),
        };
        let sha256 =
            checksums::find(&sums, &zip_name).ok_or_else(|| ReleaseError::MissingChecksum {
                source_name: self.label.clone(),
                file: zip_name.clone(),
            })?;
        Ok(Some(Artifact {
            location: Location::File(zip),
            file_name: zip_name,
            sha256,
            member: Member::ReleaseZip,
        }))
    }
}

pub(crate) struct MirrorUrl {
    pub label: String,
    base: String,
}

impl MirrorUrl {
    pub fn new(label: String, base: &str) -> Self {
        Self {
            label,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    pub async fn locate(
        &self,
        http: &Http,
        version: &Version,
        arch: Arch,
    ) -> Result<Option<Artifact>, ReleaseError> {
        let zip_name = release_zip_name(version, arch);
        let zip_url = format!("{}/v{version}/{zip_name}", self.base);
        let sums_url = format!("{}/v{version}/checksums.txt", self.base);
        let missing_checksum = || ReleaseError::MissingChecksum {
            source_name: self.label.clone(),
            file: zip_name.clone(),
        };
        let fetched = http.get(&self.label, &sums_url, &[]).await?;
        let sha256 = if fetched.status.is_success() {
            checksums::find(&fetched.text(), &zip_name)
        } else if fetched.status.as_u16() == 404 {
            None
        } else {
            return Err(status_error(&self.label, &sums_url, fetched.status, ""));
        };
        match sha256 {
            Some(sha256) => Ok(Some(Artifact {
                location: Location::Url(zip_url),
                file_name: zip_name,
                sha256,
                member: Member::ReleaseZip,
            })),
            // No checksum: either the mirror lacks this version (fine, try
            // the next source) or it serves the zip unverified (refused).
            None if http.exists(&self.label, &zip_url).await? => Err(missing_checksum()),
            None => Ok(None),
        }
    }
}
