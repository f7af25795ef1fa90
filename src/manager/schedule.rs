//! Backup schedules: set, show and remove an instance's, and the loop that
//! runs them — whatever the instance's state (a stopped or sleeping
//! instance is backed up without being started), once for runs missed
//! while the daemon was down, then pruning scheduled backups by the
//! schedule's retention.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Actor, Manager, Result};
use crate::model::{AuditAction, BackupTrigger, CronExpr, Destination, Retention};
use crate::store::ScheduleRecord;

/// A schedule as asked for.
#[derive(Debug, Clone)]
pub struct ScheduleRequest {
    pub cron: String,
    pub retention: Retention,
    /// A destination directory; `None`: the default.
    pub to: Option<String>,
}

/// The longest the loop sleeps without looking again (clock changes).
const MAX_SLEEP: Duration = Duration::from_secs(60);

impl Manager {
    /// An instance's backup schedule, if it has one.
    pub fn backup_schedule(&self, name: &str) -> Result<Option<ScheduleRecord>> {
        self.get(name)?;
        Ok(self.store.schedules(Some(name))?.into_iter().next())
    }

    /// Set an instance's backup schedule, or remove it with `None`.
    pub async fn set_backup_schedule(
        &self,
        name: &str,
        req: Option<ScheduleRequest>,
        actor: &Actor,
    ) -> Result<Option<ScheduleRecord>> {
        let result = async {
            let lock = self.lock_for(name);
            let _guard = lock.lock().await;
            let rec = self.get(name)?;
            let Some(req) = req else {
                self.store.delete_schedule(&rec.name)?;
                return Ok(None);
            };
            let cron = CronExpr::parse(&req.cron)?;
            let retention = req.retention.check()?;
            if let Some(to) = &req.to {
                Destination::parse(to)?;
            }
            let schedule = ScheduleRecord {
                instance: rec.name.clone(),
                cron,
                retention,
                destination: req.to,
                last_run: Utc::now(),
            };
            self.store.set_schedule(&schedule)?;
            Ok(Some(schedule))
        }
        .await;
        self.schedules_changed.notify_one();
        self.audited(actor, AuditAction::Update, name, result, |s| match s {
            Some(s) => format!(
                "backup schedule {:?}, keep last {}, daily {}, weekly {}, monthly {}",
                s.cron.as_str(),
                s.retention.keep_last,
                s.retention.keep_daily,
                s.retention.keep_weekly,
                s.retention.keep_monthly
            ),
            None => "backup schedule removed".to_string(),
        })
    }

    /// Give a new instance the fleet's default schedule (`serve
    /// --backup-schedule`), if there is one.
    pub(super) fn apply_default_schedule(&self, name: &crate::model::InstanceName) {
        let Some(cron) = &self.cfg.backup_schedule else {
            return;
        };
        let Ok(cron) = CronExpr::parse(cron) else {
            return;
        };
        let schedule = ScheduleRecord {
            instance: name.clone(),
            cron,
            retention: Retention::default(),
            destination: None,
            last_run: Utc::now(),
        };
        if let Err(e) = self.store.set_schedule(&schedule) {
            tracing::warn!(instance = %name, error = %e, "cannot set the default backup schedule");
        }
        self.schedules_changed.notify_one();
    }

    /// Run due backup schedules until `stop` is set.
    pub async fn backup_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let now = Utc::now();
            let schedules = match self.store.schedules(None) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "backups: cannot read the schedules");
                    Vec::new()
                }
            };
            let mut wake = now + chrono::Duration::from_std(MAX_SLEEP).unwrap_or_default();
            let mut due = Vec::new();
            for s in schedules {
                match s.cron.next_after(s.last_run) {
                    Some(at) if at <= now => due.push(s),
                    Some(at) => wake = wake.min(at),
                    None => {}
                }
            }
            if !due.is_empty() {
                futures::future::join_all(due.into_iter().map(|s| self.run_schedule(s))).await;
                continue;
            }
            let sleep = (wake - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = crate::shutdown::stopped(&mut stop) => return,
                _ = self.schedules_changed.notified() => {}
                _ = tokio::time::sleep(sleep.min(MAX_SLEEP)) => {}
            }
        }
    }

    /// One scheduled backup, then its retention.
    async fn run_schedule(&self, s: ScheduleRecord) {
        let actor = Actor("schedule".to_string());
        let name = s.instance.to_string();
        // Mark the run first: a backup that fails is not retried in a loop.
        if let Err(e) = self.store.set_schedule_run(&name, Utc::now()) {
            tracing::error!(instance = %name, error = %e, "backups: cannot record a scheduled run");
            return;
        }
        let made = self
            .backup_create_as(
                &name,
                s.destination.as_deref(),
                BackupTrigger::Schedule,
                &actor,
            )
            .await;
        if made.is_err() {
            return;
        }
        let Ok(backups) = self.store.list_backups(&name) else {
            return;
        };
        let scheduled: Vec<_> = backups
            .iter()
            .filter(|b| b.trigger == BackupTrigger::Schedule)
            .map(|b| (b.id.clone(), b.created_at))
            .collect();
        for id in s.retention.to_prune(&scheduled) {
            if let Err(e) = self.backup_delete(&name, id.as_str(), &actor).await {
                tracing::warn!(instance = %name, backup = %id, error = %e, "backups: cannot prune");
            }
        }
    }
}
