//! What can go wrong in a manager operation. The mapping onto HTTP
//! statuses and machine-readable codes lives in [`crate::api::error`].

use crate::model::ports::PortError;
use crate::model::version::VersionError;
use crate::model::{BackupError, LimitError, NameError, ScheduleError};
use crate::pocketbase::PocketBaseError;
use crate::release::ReleaseError;
use crate::runtime::RuntimeError;
use crate::store::StoreError;

/// Everything that can go wrong in an operation.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Idle(#[from] crate::model::IdleError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterFailure),
    #[error(transparent)]
    Destination(#[from] crate::destination::DestinationError),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    PocketBase(#[from] PocketBaseError),
    /// An instance's collections that could not be read from its data.db.
    #[error(transparent)]
    Collections(#[from] crate::store::CollectionsError),
    /// A schema (a file, or an instance's collections) that does not parse.
    #[error(transparent)]
    Schema(#[from] crate::model::collections::SchemaError),
    #[error("{0}")]
    Invalid(String),
    /// A fleet file that does not check (its line and field named).
    #[error("{file}: {error}")]
    Fleet {
        file: String,
        error: crate::model::fleet::FleetError,
    },
    /// A saved plan made against a state that has changed since.
    #[error("{0}")]
    StalePlan(String),
    #[error("no instance named {0}: see `pockestrator list`")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A request whose own authentication (a webhook's signature) failed.
    #[error("{0}")]
    Unauthorized(String),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Router(#[from] crate::router::RouterError),
    #[error("{name} did not become healthy: {reason}{}", log_hint(log_tail))]
    StartFailed {
        name: String,
        reason: String,
        log_tail: Vec<String>,
    },
    #[error("upgrade of {name} to {to} failed ({reason}); rolled back to {from} with its data as before the upgrade")]
    UpgradeRolledBack {
        name: String,
        from: String,
        to: String,
        reason: String,
    },
    /// A failure of pockestrator itself (a task that panicked, stored
    /// state that does not parse): the API answers 500 and logs the cause.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn log_hint(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last log lines:\n  {}", tail.join("\n  "))
    }
}

pub(crate) type Result<T, E = ManagerError> = std::result::Result<T, E>;
