//! Instance states, as observed and as desired.

use serde::{Deserialize, Serialize};

/// What an instance is doing now.
///
/// - `starting`: the process was spawned and has not yet answered `/api/health`;
/// - `running`: alive and healthy;
/// - `unhealthy`: alive but failing health checks;
/// - `failed`: crashed too often in a row (crash loop) or could not start;
/// - `stopped`: not running, on purpose;
/// - `sleeping`: stopped because it was idle for its idle timeout; it
///   should run, and the first request through the router wakes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Starting,
    Running,
    Unhealthy,
    Failed,
    Stopped,
    Sleeping,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Starting,
        Status::Running,
        Status::Unhealthy,
        Status::Failed,
        Status::Stopped,
        Status::Sleeping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Unhealthy => "unhealthy",
            Status::Failed => "failed",
            Status::Stopped => "stopped",
            Status::Sleeping => "sleeping",
        }
    }

    pub fn parse(raw: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Seed 001 spells its four states capitalised and has no `unhealthy`:
    /// an instance that is alive but failing checks is reported `Failed`
    /// there, as the seed does for "failed health checks"; and no
    /// `sleeping`: a sleeping instance is `Stopped` to it (its `init_pb`
    /// wakes it).
    pub fn seed001_label(self) -> &'static str {
        match self {
            Status::Starting => "Starting",
            Status::Running => "Running",
            Status::Unhealthy | Status::Failed => "Failed",
            Status::Stopped | Status::Sleeping => "Stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the operator asked for. The supervisor and the reconciler on daemon
/// start work towards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    Running,
    Stopped,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Stopped => "stopped",
        }
    }

    pub fn parse(raw: &str) -> Option<DesiredState> {
        match raw {
            "running" => Some(DesiredState::Running),
            "stopped" => Some(DesiredState::Stopped),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_seed_labels() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        let labels: Vec<_> = Status::ALL.iter().map(|s| s.seed001_label()).collect();
        assert_eq!(
            labels,
            ["Starting", "Running", "Failed", "Failed", "Stopped", "Stopped"]
        );
    }
}
