//! What the instance page's buttons ask for, as a closed set: parsed from
//! the action path segment, with the words the page shows while and after
//! each one runs.

/// What the instance page's buttons ask for (`POST /ui/instances/{name}/{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceAction {
    Start,
    Stop,
    Restart,
    Upgrade,
    Delete,
    Backup,
}

impl InstanceAction {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "start" => InstanceAction::Start,
            "stop" => InstanceAction::Stop,
            "restart" => InstanceAction::Restart,
            "upgrade" => InstanceAction::Upgrade,
            "delete" => InstanceAction::Delete,
            "backup" => InstanceAction::Backup,
            _ => return None,
        })
    }

    /// What the page shows while it runs.
    pub fn working(self) -> &'static str {
        match self {
            InstanceAction::Start => "Starting…",
            InstanceAction::Stop => "Stopping…",
            InstanceAction::Restart => "Restarting…",
            InstanceAction::Upgrade => "Upgrading…",
            InstanceAction::Delete => "Deleting (archiving the data first)…",
            InstanceAction::Backup => "Backing up…",
        }
    }

    /// The past tense of start, stop and restart, for the result line.
    pub fn done(self) -> &'static str {
        match self {
            InstanceAction::Start => "started",
            InstanceAction::Stop => "stopped",
            InstanceAction::Restart => "restarted",
            InstanceAction::Upgrade => "upgraded",
            InstanceAction::Delete => "deleted",
            InstanceAction::Backup => "backed up",
        }
    }
}
