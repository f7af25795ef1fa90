//! A directory on this host as a destination: archives are
//! `<dir>/<id>.zip`, written atomically (a failure leaves no partial file).

use std::path::{Path, PathBuf};

use super::{local_failure, DestinationError};
use crate::model::Destination;

pub struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    pub fn new(dir: &Path) -> Self {
        LocalDir {
            dir: dir.to_path_buf(),
        }
    }

    /// Where `name` is (or goes).
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn destination(&self) -> Destination {
        Destination::Local(self.dir.clone())
    }

    pub async fn put(&self, file: &Path, name: &str) -> Result<(), DestinationError> {
        let (from, to, dir) = (file.to_path_buf(), self.path_of(name), self.dir.clone());
        let destination = self.destination();
        blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| local_failure("cannot write the backup to", &destination, &dir, e))?;
            crate::fsutil::atomic_write_with(&to, |out| {
                let mut input = std::fs::File::open(&from)?;
                std::io::copy(&mut input, out).map(drop)
            })
            .map_err(|e| local_failure("cannot write the backup to", &destination, &to, e))
        })
        .await
    }

    pub async fn fetch(&self, name: &str, to: &Path) -> Result<(), DestinationError> {
        let (from, to) = (self.path_of(name), to.to_path_buf());
        let destination = self.destination();
        blocking(move || {
            std::fs::copy(&from, &to)
                .map(drop)
                .map_err(|e| local_failure("cannot read the backup from", &destination, &from, e))
        })
        .await
    }

    pub async fn delete(&self, name: &str) -> Result<(), DestinationError> {
        let path = self.path_of(name);
        let destination = self.destination();
        blocking(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(local_failure(
                "cannot remove the backup from",
                &destination,
                &path,
                e,
            )),
            _ => Ok(()),
        })
        .await
    }
}

async fn blocking(
    f: impl FnOnce() -> Result<(), DestinationError> + Send + 'static,
) -> Result<(), DestinationError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(DestinationError {
            what: "a file task failed for",
            destination: String::from("a local directory"),
            reason: e.to_string(),
            kind: super::FailureKind::Failed,
        })
    })
}
