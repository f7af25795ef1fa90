//! The scrape behind `GET /metrics`: the instance records and `/proc` read
//! into a [`Snapshot`], rendered with what was recorded since the daemon
//! started (health probes, proxied requests) by [`crate::metrics::render`].

use std::collections::BTreeSet;

use super::{Manager, ManagerError, Result};
use crate::metrics::{self, InstanceSample, Snapshot};
use crate::model::Status;
use crate::store::Phase;

impl Manager {
    /// The metrics text for one scrape. Reading it changes nothing but the
    /// recorded series of instances that no longer exist, which are
    /// dropped.
    pub async fn metrics_text(&self) -> Result<String> {
        // Series are kept for every row, a create still under way included
        // (its route may count requests already); only ready instances are
        // shown, as `list` shows them.
        let records = self.store.list_instances()?;
        let live: BTreeSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
        self.metrics.forget_except(&live);
        let instances: Vec<(String, Status, u32, Option<u32>)> = records
            .iter()
            .filter(|r| r.phase == Phase::Ready)
            .map(|r| (r.name.as_str().to_string(), r.status, r.restarts, r.pid))
            .collect();
        // Tasks are the runtime's to count, from inside it; the rest is
        // `/proc`, one small read per process, off the async workers.
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let metrics = self.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let mut daemon = metrics::read_daemon();
            daemon.tasks = Some(tasks as u64);
            let snapshot = Snapshot {
                instances: instances
                    .into_iter()
                    .map(|(name, status, restarts, pid)| InstanceSample {
                        name,
                        status,
                        restarts,
                        // A stopped or failed instance has no process; a pid
                        // left in its record may name someone else's.
                        process: pid
                            .filter(|_| has_process(status))
                            .and_then(metrics::read_process),
                    })
                    .collect(),
                daemon,
            };
            metrics::render(&metrics, &snapshot)
        })
        .await
        .map_err(|e| ManagerError::Internal(format!("the metrics task failed: {e}")))?
        .map_err(|e| ManagerError::Internal(e.to_string()))
    }
}

fn has_process(status: Status) -> bool {
    matches!(
        status,
        Status::Starting | Status::Running | Status::Unhealthy
    )
}
