//! Health rounds: probe every instance that should run, apply the
//! verdicts of [`crate::health`] (state changes, restarts), keep the probe
//! history; and the loop that runs a round every `health_interval`.

use crate::model::AuditAction;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Actor, Manager};
use crate::health::{self, Verdict};
use crate::model::{DesiredState, Status};
use crate::pocketbase;
use crate::runtime::{Phase as RunPhase, Runtime};
use crate::store::InstanceRecord;

impl Manager {
    /// The last health probes of an instance, oldest first.
    pub fn health_history(&self, name: &str) -> Vec<health::HealthSample> {
        self.health_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// One round of health checks over every instance that should run.
    /// Returns how many were probed.
    pub async fn health_round(&self) -> usize {
        // Stopped and sleeping instances are not read at all: a round costs
        // what the awake part of the fleet does.
        let records = match self.store.awake_instances() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "health: cannot list instances");
                return 0;
            }
        };
        let candidates: Vec<_> = records
            .into_iter()
            .filter(|r| r.desired == DesiredState::Running)
            .filter_map(|r| {
                let observed = self.runtime.observe(&r.name)?;
                (observed.phase == RunPhase::Running).then_some((r, observed))
            })
            .collect();
        let probes = candidates.iter().map(|(rec, _)| async {
            let started = std::time::Instant::now();
            let healthy =
                pocketbase::is_healthy(&self.http, rec.port, Duration::from_secs(3)).await;
            (healthy, started.elapsed())
        });
        let results = futures::future::join_all(probes).await;
        let now = Utc::now();
        let mut checked = Vec::with_capacity(candidates.len());
        let mut restarts = Vec::new();
        for ((rec, observed), (healthy, took)) in candidates.iter().zip(results) {
            checked.push((rec.name.clone(), now));
            self.metrics.observe_health_check(&rec.name, took);
            {
                let mut log = self.health_log.lock().unwrap_or_else(|p| p.into_inner());
                health::remember(
                    log.entry(rec.name.clone()).or_default(),
                    health::HealthSample {
                        at: now,
                        healthy,
                        latency_ms: took.as_millis().min(u32::MAX as u128) as u32,
                    },
                );
            }
            let failures = {
                let mut map = self
                    .health_failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let entry = map.entry(rec.name.clone()).or_insert(0);
                *entry = if healthy { 0 } else { *entry + 1 };
                *entry
            };
            let in_grace = Utc::now()
                .signed_duration_since(observed.since)
                .to_std()
                .unwrap_or_default()
                < self.cfg.start_timeout;
            match health::verdict(
                healthy,
                failures,
                rec.status,
                in_grace,
                self.cfg.health_failures_before_restart,
            ) {
                Verdict::Running => {
                    if rec.status != Status::Running || rec.pid != observed.pid {
                        self.set_state(
                            &rec.name,
                            Status::Running,
                            observed.pid,
                            observed.restarts,
                            None,
                        );
                    }
                }
                Verdict::Wait => {}
                Verdict::Unhealthy => {
                    if rec.status != Status::Unhealthy {
                        self.set_state(
                            &rec.name,
                            Status::Unhealthy,
                            observed.pid,
                            observed.restarts,
                            Some("failing health checks"),
                        );
                    }
                }
                Verdict::Restart => restarts.push((rec, observed.restarts, failures)),
            }
        }
        // Restarts wait for health: run them side by side, not one after
        // the other, so one hung instance does not hold up the rest.
        futures::future::join_all(
            restarts
                .into_iter()
                .map(|(rec, restarts, failures)| self.health_restart(rec, restarts, failures)),
        )
        .await;
        if let Err(e) = self.store.set_health_checks(&checked) {
            tracing::error!(error = %e, "health: cannot record check times");
        }
        checked.len()
    }

    /// Restart an instance that failed its health checks too often, and
    /// report it running again once it answers.
    pub(super) async fn health_restart(&self, rec: &InstanceRecord, restarts: u32, failures: u32) {
        let msg = format!("{failures} failed health checks in a row: restarting");
        self.audit(
            &Actor::daemon(),
            AuditAction::HealthRestart,
            Some(&rec.name),
            Err(msg.clone()),
        );
        self.health_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rec.name.clone(), 0);
        let lock = self.lock_for(&rec.name);
        let _guard = lock.lock().await;
        self.set_state(&rec.name, Status::Starting, None, restarts, Some(&msg));
        let pid = match self.runtime.restart(&rec.name).await {
            Ok(pid) => pid,
            Err(e) => {
                tracing::error!(instance = %rec.name, error = %e, "health: restart failed");
                self.set_state(
                    &rec.name,
                    Status::Failed,
                    None,
                    restarts,
                    Some(&e.to_string()),
                );
                return;
            }
        };
        let outcome = self.wait_healthy(&self.spec(rec)).await.map(|_| ());
        match outcome {
            Ok(()) => self.set_state(&rec.name, Status::Running, Some(pid), restarts, None),
            Err(e) => self.set_state(
                &rec.name,
                Status::Unhealthy,
                Some(pid),
                restarts,
                Some(&e.to_string()),
            ),
        }
    }

    /// Run a health round every `health_interval` until `stop` is set.
    pub async fn health_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.cfg.health_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = crate::shutdown::stopped(&mut stop) => return,
                _ = tick.tick() => {
                    self.health_round().await;
                }
            }
        }
    }
}
