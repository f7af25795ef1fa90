//! CPU, memory and uptime of the running instances, read from `/proc` by
//! [`crate::procstat`] every [`INTERVAL`] and handed to the open dashboard
//! streams through a watch channel. Nothing is read while no stream is
//! open: an unwatched daemon does no work for the dashboard.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::manager::Manager;
use crate::procstat::{ProcStats, Sampler};

/// How often the statistics are sampled while someone looks.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Statistics by instance name.
pub type StatsMap = Arc<HashMap<String, ProcStats>>;

/// The latest statistics, and who wants them.
#[derive(Clone)]
pub struct StatsHub {
    tx: Arc<watch::Sender<StatsMap>>,
}

impl Default for StatsHub {
    fn default() -> Self {
        Self::new()
    }
}

impl StatsHub {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(StatsMap::default());
        Self { tx: Arc::new(tx) }
    }

    /// Follow the statistics (a stream does, for as long as it is open).
    pub fn subscribe(&self) -> watch::Receiver<StatsMap> {
        self.tx.subscribe()
    }

    /// The latest sample (empty before the first).
    pub fn current(&self) -> StatsMap {
        self.tx.borrow().clone()
    }

    /// Sample until `stop` is set; skip rounds while nobody subscribes.
    pub async fn run(self, manager: Arc<Manager>, mut stop: watch::Receiver<bool>) {
        let mut sampler = Sampler::new();
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = crate::shutdown::stopped(&mut stop) => return,
                _ = tick.tick() => {}
            }
            if self.tx.receiver_count() == 0 {
                sampler = Sampler::new();
                continue;
            }
            let pids: Vec<(String, u32)> = match manager.list() {
                Ok(records) => records
                    .into_iter()
                    .filter_map(|r| r.pid.map(|pid| (r.name.to_string(), pid)))
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "dashboard statistics: cannot list instances");
                    continue;
                }
            };
            let joined = tokio::task::spawn_blocking(move || {
                let only: Vec<u32> = pids.iter().map(|(_, pid)| *pid).collect();
                let by_pid = sampler.sample(&only);
                let map: HashMap<String, ProcStats> = pids
                    .into_iter()
                    .filter_map(|(name, pid)| by_pid.get(&pid).map(|s| (name, *s)))
                    .collect();
                (sampler, map)
            })
            .await;
            match joined {
                Ok((back, map)) => {
                    sampler = back;
                    self.tx.send_replace(Arc::new(map));
                }
                Err(e) => {
                    tracing::error!(error = %e, "dashboard statistics: sampling failed");
                    sampler = Sampler::new();
                }
            }
        }
    }
}
