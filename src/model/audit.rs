//! The audit log's vocabulary: what was done and how it ended, as closed
//! enums; their spelling on disk and on the wire is [`AuditAction::as_str`].

use std::fmt;

macro_rules! actions {
    ($($variant:ident => $text:literal, $doc:literal;)*) => {
        /// Everything the audit log records.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditAction {
            $(#[doc = $doc] $variant,)*
        }

        impl AuditAction {
            /// Every action, in declaration order.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)*];

            /// Its spelling in the store and in the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $text,)*
                }
            }

            pub fn parse(raw: &str) -> Option<Self> {
                match raw {
                    $($text => Some(AuditAction::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

actions! {
    Create => "create", "An instance was created (or its create rolled back).";
    Start => "start", "An instance was started.";
    Stop => "stop", "An instance was stopped.";
    Restart => "restart", "An instance was restarted, by request or after a crash.";
    Delete => "delete", "An instance was deleted (archived or purged).";
    Update => "update", "An instance's configuration changed.";
    Upgrade => "upgrade", "An instance was switched to another PocketBase.";
    Superuser => "superuser", "An instance's superuser was created or reset.";
    Install => "install", "A PocketBase release or binary was installed.";
    Route => "route", "An instance's route was put or could not be.";
    Repair => "repair", "`doctor --repair` put a route or a unit back.";
    DomainAdd => "domain-add", "A custom domain was added.";
    DomainRemove => "domain-remove", "A custom domain was removed.";
    TrustedProxy => "trusted-proxy", "PocketBase's trusted-proxy setting was written.";
    Recover => "recover", "An instance could not be recovered at daemon start.";
    Adopt => "adopt", "A running instance was adopted at daemon start.";
    Crash => "crash", "An instance's process exited unexpectedly.";
    CrashLoop => "crash-loop", "An instance kept crashing and was given up on.";
    HealthRestart => "health-restart", "An instance failed its health checks and was restarted.";
    Import => "import", "An instance made by seed 000's script was taken over.";
    SignIn => "sign-in", "A dashboard sign-in, or a refused one.";
    SignOut => "sign-out", "A dashboard sign-out.";
    Backup => "backup", "A backup of an instance was made.";
    BackupDelete => "backup-delete", "A backup was deleted.";
    Restore => "restore", "An instance was restored from a backup (or a clone made from one).";
    Replicate => "replicate", "Continuous replication of an instance was turned on (or its target changed).";
    ReplicateOff => "replicate-off", "Continuous replication of an instance was turned off.";
    ReplicaReset => "replica-reset", "Replication started a new generation: the instance's data.db was replaced (a restore).";
    Deploy => "deploy", "A deploy from git ended: the new release serves, or the previous one still does.";
    Rollback => "rollback", "An instance was switched back to a release built before.";
    DeploySettings => "deploy-settings", "An instance's deploy webhook secret or repository credentials changed.";
    Sleep => "sleep", "An idle instance was stopped and marked sleeping.";
    Wake => "wake", "A sleeping instance was woken: by a request, its wake schedule, or a start.";
    Fence => "fence", "A host of a cluster stopped an instance whose lease it could not renew (or started it again once it could).";
    Failover => "failover", "An instance whose host's lease ran out was brought back on this host from its replica.";
    Move => "move", "An instance was moved to another host of the cluster (nothing acknowledged lost).";
    Drain => "drain", "A host of the cluster moved its instances elsewhere (`host drain`).";
    Apply => "apply", "A fleet file was applied (`pockestrator apply`): what it created, changed and deleted.";
    SchemaPush => "schema-push", "A schema was pushed to an instance as a migration (or the instance rolled back when it failed).";
    StandDown => "stand-down", "A host found another running its instance after a failover, and archived its own copy.";
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an audited operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    Ok,
    Error,
}

impl AuditOutcome {
    /// Its spelling in the store and in the API (`result`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Error => "error",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "ok" => Some(AuditOutcome::Ok),
            "error" => Some(AuditOutcome::Error),
            _ => None,
        }
    }

    pub fn is_ok(self) -> bool {
        self == AuditOutcome::Ok
    }
}

impl fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for AuditAction {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<&str> for AuditOutcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips() {
        for &action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
        }
        let mut seen: Vec<_> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(
            seen.len(),
            AuditAction::ALL.len(),
            "two actions share a spelling"
        );
        assert_eq!(AuditAction::parse("Create"), None);
        assert_eq!(AuditAction::parse(""), None);
    }

    #[test]
    fn outcomes_round_trip() {
        for o in [AuditOutcome::Ok, AuditOutcome::Error] {
            assert_eq!(AuditOutcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(AuditOutcome::parse("failed"), None);
    }
}
