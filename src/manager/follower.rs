//! Following the runtime's events: crashes, restarts after a crash, and
//! crash loops, recorded in the store and the audit log.

use crate::model::AuditAction;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Actor, Manager};
use crate::model::{InstanceName, Status};
use crate::pocketbase;
use crate::runtime::{Runtime, RuntimeEvent};
use crate::store::{InstanceRecord, Phase};

impl Manager {
    /// Follow the runtime's events: record crashes, restarts and crash
    /// loops, and watch restarted instances until they are healthy again.
    pub async fn follow_runtime(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut rx = self.runtime.subscribe();
        loop {
            let event = tokio::select! {
                _ = shutdown.changed() => return,
                ev = rx.recv() => ev,
            };
            let event = match event {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "runtime events lagged");
                    continue;
                }
                Err(_) => return,
            };
            self.on_runtime_event(event);
        }
    }

    pub(super) fn on_runtime_event(self: &Arc<Self>, event: RuntimeEvent) {
        // While an instance is being created, its create operation watches
        // it and reports the outcome; crashes there are part of that story.
        let creating = matches!(
            self.store.get_instance(event.name().as_str()),
            Ok(Some(InstanceRecord {
                phase: Phase::Creating,
                ..
            }))
        );
        if creating {
            return;
        }
        match event {
            RuntimeEvent::Exited {
                name,
                pid,
                code,
                signal,
                expected: false,
            } => {
                let restarts = self.runtime.observe(&name).map(|o| o.restarts).unwrap_or(0);
                let why = match (code, signal) {
                    (_, Some(sig)) => format!("killed by signal {sig}"),
                    (Some(c), None) => format!("exited with status {c}"),
                    _ => "exited".to_string(),
                };
                self.set_state(name.as_str(), Status::Starting, None, restarts, Some(&why));
                self.audit(
                    &Actor::daemon(),
                    AuditAction::Crash,
                    Some(name.as_str()),
                    Err(format!("pid {pid} {why}")),
                );
            }
            RuntimeEvent::Spawned { name, pid } => {
                let restarts = self.runtime.observe(&name).map(|o| o.restarts).unwrap_or(0);
                if restarts > 0 {
                    // A restart after a crash: report `running` as soon as
                    // the new process answers.
                    let this = self.clone();
                    tokio::spawn(async move { this.watch_restart(name, pid, restarts).await });
                }
            }
            RuntimeEvent::CrashLoop { name, crashes } => {
                let msg = format!("crashed {crashes} times in a row: stopped restarting it; see `pockestrator logs {name}`, then `pockestrator start {name}`");
                let restarts = self.runtime.observe(&name).map(|o| o.restarts).unwrap_or(0);
                self.set_state(name.as_str(), Status::Failed, None, restarts, Some(&msg));
                self.audit(
                    &Actor::daemon(),
                    AuditAction::CrashLoop,
                    Some(name.as_str()),
                    Err(msg),
                );
            }
            RuntimeEvent::Exited { .. }
            | RuntimeEvent::RestartScheduled { .. }
            | RuntimeEvent::Adopted { .. } => {}
        }
    }

    pub(super) async fn watch_restart(&self, name: InstanceName, pid: u32, restarts: u32) {
        let Ok(Some(rec)) = self.store.get_instance(name.as_str()) else {
            return;
        };
        self.set_state(
            name.as_str(),
            Status::Starting,
            Some(pid),
            restarts,
            rec.last_error.as_deref(),
        );
        let deadline = Instant::now() + self.cfg.start_timeout;
        while Instant::now() < deadline {
            let current = self.runtime.observe(&name);
            if current.as_ref().and_then(|o| o.pid) != Some(pid) {
                return; // superseded by another restart or a stop
            }
            if pocketbase::is_healthy(&self.http, rec.port, Duration::from_secs(1)).await {
                self.set_state(name.as_str(), Status::Running, Some(pid), restarts, None);
                self.audit(
                    &Actor::daemon(),
                    AuditAction::Restart,
                    Some(name.as_str()),
                    Ok(format!("running again as pid {pid}")),
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
