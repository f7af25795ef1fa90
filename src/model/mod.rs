//! The pure domain: instance names, domains, ports, versions, states and the
//! policies that decide what to do (restart back-off, health verdicts).
//!
//! **Architecture Invariant:** nothing in `model` does I/O or touches tokio.
//! Decisions live here as plain functions over plain data so that they can
//! be unit-tested exhaustively; adapters elsewhere carry them out.

pub mod audit;
pub mod backoff;
pub mod backup;
pub mod cluster;
pub mod collections;
pub mod deploy;
pub mod fleet;
pub mod git;
pub mod human;
pub mod idle;
pub mod limits;
pub mod migration;
pub mod names;
pub mod ports;
pub mod routing;
pub mod schedule;
pub mod status;
pub mod tunnel;
pub mod version;

pub use audit::{AuditAction, AuditOutcome};
pub use backup::{BackupError, BackupId, BackupTrigger, Destination};
pub use deploy::{DeployError, DeployId, DeployKind, DeployStatus, ReleaseName, RepoConfig};
pub use git::{BranchName, CommitId, GitError, RepoUrl, Subdir, Transport};
pub use idle::{IdleError, IdleTimeout};
pub use limits::{CpuQuota, LimitError, MemoryMax, ResourceLimits};
pub use names::{Domain, InstanceName, NameError, UserId};
pub use schedule::{CronExpr, Retention, ScheduleError};
pub use status::{DesiredState, Status};
