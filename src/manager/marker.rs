//! The marker files of operations a daemon stop may interrupt (a restore,
//! an upgrade, a deploy's switch): written into the instance directory
//! before the first change, read by the next daemon's recovery, removed
//! when the operation has ended one way or the other.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub(super) trait Marker: Serialize + DeserializeOwned + Sized {
    /// Its file name in the instance directory.
    const FILE: &'static str;
    /// The operation, for the daemon's log.
    const WHAT: &'static str;

    fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::fsutil::atomic_write(&dir.join(Self::FILE), &text)
    }

    /// The marker, if there is one; an unreadable one is left in place
    /// (and said in the log) for a person to look at.
    fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read(dir.join(Self::FILE)).ok()?;
        match serde_json::from_slice(&text) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "unreadable {} marker: left in place", Self::WHAT);
                None
            }
        }
    }

    fn clear(dir: &Path) {
        if let Err(e) = std::fs::remove_file(dir.join(Self::FILE)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::error!(dir = %dir.display(), error = %e, "cannot remove the {} marker", Self::WHAT);
            }
        }
    }
}
