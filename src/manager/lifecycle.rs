//! Start, stop and restart, and waiting for an instance to answer.

use crate::model::AuditAction;
use std::time::{Duration, Instant};

use super::logs::tail_lines;
use super::{Actor, Manager, ManagerError, Result};
use crate::model::{DesiredState, Status};
use crate::pocketbase;
use crate::runtime::{LaunchSpec, Phase as RunPhase, Runtime};
use crate::store::InstanceRecord;

impl Manager {
    /// Wait until the instance answers `/api/health`, or fail when its
    /// process gives up (crash loop) or the start timeout passes.
    pub(super) async fn wait_healthy(&self, spec: &LaunchSpec) -> Result<u32> {
        let started = Instant::now();
        let deadline = started + self.cfg.start_timeout;
        let mut delay = Duration::from_millis(2);
        loop {
            let observed = self.runtime.observe(&spec.name);
            match observed.as_ref().map(|o| o.phase) {
                Some(RunPhase::CrashLoop) => {
                    return Err(self
                        .start_failed(spec, "it keeps exiting right after start")
                        .await);
                }
                Some(RunPhase::Stopped) | None => {
                    return Err(self.start_failed(spec, "its process is not running").await);
                }
                _ => {}
            }
            if let Some(pid) = observed.and_then(|o| o.pid) {
                // The answer must come from this process: a port another
                // program took before PocketBase bound it answers too, while
                // PocketBase itself exits ("address already in use").
                if pocketbase::is_healthy(&self.http, spec.port, Duration::from_secs(2)).await
                    && crate::procstat::listens_on(pid, spec.port) != Some(false)
                {
                    tracing::debug!(
                        instance = %spec.name,
                        took_us = started.elapsed().as_micros() as u64,
                        "start: healthy"
                    );
                    return Ok(pid);
                }
            }
            if Instant::now() > deadline {
                let reason = format!(
                    "no answer on /api/health within {:?}",
                    self.cfg.start_timeout
                );
                return Err(self.start_failed(spec, &reason).await);
            }
            tokio::time::sleep(delay).await;
            // PocketBase on an existing data directory answers within tens
            // of milliseconds (a wake): look every 2 ms for the first half
            // second, then back off.
            if started.elapsed() > Duration::from_millis(500) {
                delay = (delay * 2).min(Duration::from_millis(100));
            }
        }
    }

    /// A start that failed, with the last lines of the instance's log.
    async fn start_failed(&self, spec: &LaunchSpec, reason: &str) -> ManagerError {
        let log = spec.log_file();
        let log_tail = tokio::task::spawn_blocking(move || tail_lines(&log, 60))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|lines| super::logs::telling_lines(lines, 5))
            .unwrap_or_default();
        ManagerError::StartFailed {
            name: spec.name.to_string(),
            reason: reason.to_string(),
            log_tail,
        }
    }

    pub async fn start(&self, name: &str, actor: &Actor) -> Result<InstanceRecord> {
        let result = self.start_inner(name, actor).await;
        self.audited(actor, AuditAction::Start, name, result, |r| {
            format!("pid {}", r.pid.unwrap_or(0))
        })
    }

    pub(super) async fn start_inner(&self, name: &str, actor: &Actor) -> Result<InstanceRecord> {
        self.refuse_if_fenced(name)?;
        let lock = self.lock_for(name);
        let _guard = lock.lock().await;
        let rec = self.get(name)?;
        self.start_locked(rec, actor).await
    }

    /// Start an instance whose lock the caller holds, and wait for it to
    /// answer.
    pub(super) async fn start_locked(
        &self,
        mut rec: InstanceRecord,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        let name = rec.name.clone();
        let name = name.as_str();
        let spec = self.spec(&rec);
        if rec.desired != DesiredState::Running {
            rec.desired = DesiredState::Running;
            self.store.update_config(&rec, &actor.0)?;
        }
        let running = matches!(
            self.runtime.observe(&spec.name).map(|o| o.phase),
            Some(RunPhase::Running | RunPhase::BackingOff)
        );
        let began = Instant::now();
        if !running {
            self.set_state(name, Status::Starting, None, rec.restarts, None);
            self.runtime.start(spec.clone()).await?;
        }
        tracing::debug!(
            instance = name,
            took_us = began.elapsed().as_micros() as u64,
            "start: spawned"
        );
        match self.wait_healthy(&spec).await {
            Ok(pid) => {
                self.set_state(name, Status::Running, Some(pid), rec.restarts, None);
                self.get(name)
            }
            Err(e) => {
                self.set_state(
                    name,
                    Status::Failed,
                    None,
                    rec.restarts,
                    Some(&e.to_string()),
                );
                Err(e)
            }
        }
    }

    pub async fn stop(&self, name: &str, actor: &Actor) -> Result<InstanceRecord> {
        let result = self.stop_inner(name, actor).await;
        self.audited(actor, AuditAction::Stop, name, result, |_| {
            "stopped".to_string()
        })
    }

    pub(super) async fn stop_inner(&self, name: &str, actor: &Actor) -> Result<InstanceRecord> {
        let lock = self.lock_for(name);
        let _guard = lock.lock().await;
        let mut rec = self.get(name)?;
        if rec.desired != DesiredState::Stopped {
            rec.desired = DesiredState::Stopped;
            self.store.update_config(&rec, &actor.0)?;
        }
        // Take the route out of service before the process goes: requests
        // meanwhile get 503 and Retry-After from the proxy, not 502.
        if let Err(e) = self.sync_route(name).await {
            tracing::warn!(instance = name, error = %e, "route not updated before the stop");
        }
        self.runtime.stop(&rec.name).await?;
        self.set_state(name, Status::Stopped, None, rec.restarts, None);
        self.get(name)
    }

    pub async fn restart(&self, name: &str, actor: &Actor) -> Result<InstanceRecord> {
        // One lock from the stop to the health-checked start: a stop asked
        // for meanwhile waits for the restart and is not undone by it.
        let result = async {
            let lock = self.lock_for(name);
            let _guard = lock.lock().await;
            let rec = self.get(name)?;
            self.runtime.stop(&rec.name).await?;
            self.set_state(name, Status::Stopped, None, rec.restarts, None);
            let rec = self.get(name)?;
            self.start_locked(rec, actor).await
        }
        .await;
        self.audited(actor, AuditAction::Restart, name, result, |r| {
            format!("pid {}", r.pid.unwrap_or(0))
        })
    }
}
