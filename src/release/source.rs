//! Release sources behind one closed enum: each can say which versions it
//! has (if it can list at all) and where the archive of one version is
//! (an [`Artifact`]), with the sha256 that archive must have. Downloading,
//! verifying and installing is the same for all of them and lives in
//! `install`.

use semver::Version;

use super::artifact::Artifact;
use super::error::ReleaseError;
use super::github::Github;
use super::http::Http;
use super::mirror::{MirrorDir, MirrorUrl};
use super::pypi::Pypi;
use super::spec::{Arch, SourceSpec};

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
