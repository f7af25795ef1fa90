//! The backup destination seam: where a finished archive is kept and
//! fetched back from. [`AnyDestination`] is the closed set of real
//! stores — a local directory ([`local`]), an S3-compatible store ([`s3`])
//! and a NATS JetStream object store ([`nats`]) — each opened from a
//! parsed [`Destination`] and the daemon's [`Credentials`].
//!
//! Every operation streams a file: `put` uploads a local archive (S3 in
//! multipart parts), `fetch` downloads one into a local file, `delete`
//! removes one. A failed `put` leaves no object behind where the store
//! lets us take it back (an aborted multipart upload; JetStream never
//! shows an object whose metadata was not written). Errors name the
//! destination by its URL, which holds no credentials, and pass through
//! [`Credentials::scrub`]; connections give up after a few seconds.

pub mod local;
pub mod nats;
pub mod s3;

use std::path::Path;
use std::time::Duration;

use crate::credentials::Credentials;
use crate::model::Destination;

/// How long connecting to a remote store may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What kind of failure, for the caller's status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The store did not answer (refused, timed out, name not resolved).
    Unreachable,
    /// What the daemon was given cannot work (no credentials for it).
    Setup,
    /// The store has no such object.
    NotFound,
    /// The disk of a local destination (or of the staging area) is full.
    DiskFull,
    /// Anything else the store answered (denied, no such bucket, …).
    Failed,
}

/// A failed destination operation. The text holds no secret.
#[derive(Debug, thiserror::Error)]
#[error("{what} {destination}: {reason}")]
pub struct DestinationError {
    /// What was being done, e.g. "cannot upload the backup to".
    pub what: &'static str,
    /// The destination's URL (no credentials are ever in it).
    pub destination: String,
    pub reason: String,
    pub kind: FailureKind,
}

impl DestinationError {
    pub(crate) fn new(
        what: &'static str,
        destination: &Destination,
        kind: FailureKind,
        reason: String,
    ) -> Self {
        DestinationError {
            what,
            destination: destination.to_text(),
            reason,
            kind,
        }
    }
}

/// An open destination.
pub enum AnyDestination {
    Local(local::LocalDir),
    S3(s3::S3Store),
    Nats(Box<nats::NatsStore>),
}

impl AnyDestination {
    /// Ready a destination: for S3 the client (no request yet), for NATS a
    /// connection and the bucket (made if it is missing).
    pub async fn open(
        destination: &Destination,
        credentials: &Credentials,
    ) -> Result<Self, DestinationError> {
        Ok(match destination {
            Destination::Local(dir) => AnyDestination::Local(local::LocalDir::new(dir)),
            Destination::S3(loc) => {
                AnyDestination::S3(s3::S3Store::open(destination, loc, credentials)?)
            }
            Destination::Nats(loc) => AnyDestination::Nats(Box::new(
                nats::NatsStore::open(destination, loc, credentials).await?,
            )),
        })
    }

    /// Store the local file `file` as `name` (`<id>.zip`) under the
    /// destination's prefix; the partial object goes if it fails.
    pub async fn put(&self, file: &Path, name: &str) -> Result<(), DestinationError> {
        match self {
            AnyDestination::Local(d) => d.put(file, name).await,
            AnyDestination::S3(s) => s.put(file, name).await,
            AnyDestination::Nats(n) => n.put(file, name).await,
        }
    }

    /// Download `name` into the local file `to` (created, or truncated).
    pub async fn fetch(&self, name: &str, to: &Path) -> Result<(), DestinationError> {
        match self {
            AnyDestination::Local(d) => d.fetch(name, to).await,
            AnyDestination::S3(s) => s.fetch(name, to).await,
            AnyDestination::Nats(n) => n.fetch(name, to).await,
        }
    }

    /// Remove `name`; one that is gone already counts as removed.
    pub async fn delete(&self, name: &str) -> Result<(), DestinationError> {
        match self {
            AnyDestination::Local(d) => d.delete(name).await,
            AnyDestination::S3(s) => s.delete(name).await,
            AnyDestination::Nats(n) => n.delete(name).await,
        }
    }
}

/// Whether an I/O error is a full disk.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::ENOSPC) || e.raw_os_error() == Some(nix::libc::EDQUOT)
}

/// A local file error, said plainly (a full disk first of all).
pub(crate) fn local_failure(
    what: &'static str,
    destination: &Destination,
    path: &Path,
    e: std::io::Error,
) -> DestinationError {
    if is_disk_full(&e) {
        DestinationError::new(
            what,
            destination,
            FailureKind::DiskFull,
            format!(
                "the disk is full (no space left on device) at {}: free some space or choose another destination",
                path.display()
            ),
        )
    } else {
        DestinationError::new(
            what,
            destination,
            FailureKind::Failed,
            format!("{}: {e}", path.display()),
        )
    }
}
