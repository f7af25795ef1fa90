//! Scale to zero: an instance with an idle timeout that gets no request
//! through the router for that long is stopped and marked `sleeping`; the
//! next request wakes it while the router holds that request (and those
//! that come meanwhile), and its wake schedule wakes it for its own cron
//! jobs.
//!
//! The embedded proxy counts each instance's requests and open streams
//! itself. Caddy cannot tell us, so with the Caddy routers the idle loop
//! counts the established connections to each awake instance's port from
//! other processes than the daemon (Caddy keeps idle upstream connections
//! open for up to two minutes, which an instance's quiet time then
//! includes), and an asleep instance's Caddy route points at the daemon's
//! wake proxy, an embedded proxy of its own that wakes and holds.
//!
//! One idle loop for the fleet (`idle_loop`) and one wake loop that turns
//! the proxy's wake requests into wakes (`wake_loop`); both only ever look
//! at the instances that can sleep or wake, so their cost follows the
//! awake part of the fleet.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::{Actor, Manager, ManagerError, Result};
use crate::model::idle::{self, Activity};
use crate::model::{AuditAction, DesiredState, InstanceName, Status};
use crate::router::embedded::ProxyRouter;
use crate::router::AnyRouter;
use crate::runtime::Runtime;
use crate::store::InstanceRecord;

/// How often the idle loop looks.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// The daemon's wake proxy, with the Caddy routers: where asleep
/// instances' Caddy routes point.
pub(super) struct WakeProxy {
    pub(super) proxy: ProxyRouter,
    pub(super) port: u16,
}

/// What woke an instance, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeReason {
    Request,
    Schedule,
}

impl WakeReason {
    fn as_str(self) -> &'static str {
        match self {
            WakeReason::Request => "a request",
            WakeReason::Schedule => "its wake schedule",
        }
    }
}

impl Manager {
    /// Use `proxy`, listening on 127.0.0.1:`port`, as the wake proxy of the
    /// Caddy routers. Called once, before routes are first put.
    pub fn use_wake_proxy(&self, proxy: ProxyRouter, port: u16) {
        let _ = self.wake_proxy.set(WakeProxy { proxy, port });
    }

    pub(super) fn wake_proxy_port(&self) -> Option<u16> {
        self.wake_proxy.get().map(|w| w.port)
    }

    /// What the router saw of an instance's traffic. `clients`: the
    /// connections to awake instances' ports counted this round (Caddy).
    fn traffic(&self, rec: &InstanceRecord, clients: &HashMap<u16, usize>) -> Option<Activity> {
        match &*self.router {
            AnyRouter::Embedded(proxy) => proxy.activity(rec.name.as_str()),
            AnyRouter::Caddy(_) | AnyRouter::Caddyfile(_) => {
                let open = clients.get(&rec.port).copied().unwrap_or(0);
                let now = Instant::now();
                let mut seen = self.busy_seen.lock().unwrap_or_else(|p| p.into_inner());
                if open > 0 {
                    seen.insert(rec.name.clone(), now);
                }
                let by_caddy = seen.get(&rec.name).map(|at| Activity {
                    quiet_for: now.duration_since(*at),
                    open,
                });
                let by_wake_proxy = self
                    .wake_proxy
                    .get()
                    .and_then(|w| w.proxy.activity(rec.name.as_str()));
                match (by_caddy, by_wake_proxy) {
                    (Some(a), Some(b)) => Some(Activity {
                        quiet_for: a.quiet_for.min(b.quiet_for),
                        open: a.open + b.open,
                    }),
                    (a, b) => a.or(b),
                }
            }
            AnyRouter::None => None,
        }
    }

    /// Put idle instances to sleep and wake scheduled ones, every second,
    /// until `stop` is set.
    pub async fn idle_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        if matches!(*self.router, AnyRouter::None) {
            // Without a router nothing sees requests, nothing can wake.
            return;
        }
        let mut tick = tokio::time::interval(IDLE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = crate::shutdown::stopped(&mut stop) => return,
                _ = tick.tick() => {}
            }
            self.idle_round();
        }
    }

    /// One look at the instances that can sleep or wake now.
    pub(super) fn idle_round(self: &Arc<Self>) {
        let candidates = match self.store.idle_candidates() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "idle: cannot read the instances");
                return;
            }
        };
        let clients = match &*self.router {
            AnyRouter::Caddy(_) | AnyRouter::Caddyfile(_) => {
                let ports: HashSet<u16> = candidates
                    .iter()
                    .filter(|r| r.status != Status::Sleeping)
                    .map(|r| r.port)
                    .collect();
                crate::procstat::clients_of(&ports)
            }
            _ => HashMap::new(),
        };
        let now = Utc::now();
        let mut scheduled = self.next_wakes.lock().unwrap_or_else(|p| p.into_inner());
        let sleeping: HashSet<&InstanceName> = candidates
            .iter()
            .filter(|r| r.status == Status::Sleeping)
            .map(|r| &r.name)
            .collect();
        scheduled.retain(|name, _| sleeping.contains(name));
        for rec in &candidates {
            if rec.desired != DesiredState::Running {
                continue;
            }
            if rec.status == Status::Sleeping {
                let Some(cron) = &rec.wake_schedule else {
                    continue;
                };
                let Some(due) = *scheduled
                    .entry(rec.name.clone())
                    .or_insert_with(|| idle::next_wake(cron, now))
                else {
                    continue;
                };
                if due <= now {
                    scheduled.remove(&rec.name);
                    let this = Arc::clone(self);
                    let name = rec.name.clone();
                    tokio::spawn(async move {
                        let _ = this.wake(&name, WakeReason::Schedule).await;
                    });
                }
                continue;
            }
            let Some(timeout) = rec.idle_timeout else {
                continue;
            };
            let Some(observed) = self.runtime.observe(&rec.name) else {
                continue;
            };
            let awake_for = now
                .signed_duration_since(observed.since)
                .to_std()
                .unwrap_or_default();
            if idle::should_sleep(timeout, self.traffic(rec, &clients), awake_for) {
                let this = Arc::clone(self);
                let name = rec.name.clone();
                let seen: HashMap<u16, usize> = clients
                    .get(&rec.port)
                    .map(|n| (rec.port, *n))
                    .into_iter()
                    .collect();
                tokio::spawn(async move { this.sleep_idle(&name, &seen).await });
            }
        }
    }

    /// Put one idle instance to sleep, unless something changed: another
    /// operation holds it, a request came, it is being switched.
    async fn sleep_idle(&self, name: &InstanceName, clients: &HashMap<u16, usize>) {
        let lock = self.lock_for(name);
        let Ok(_guard) = lock.try_lock() else {
            return; // busy: the next round looks again
        };
        let Ok(rec) = self.get(name) else { return };
        let Some(timeout) = rec.idle_timeout else {
            return;
        };
        if !matches!(rec.status, Status::Running | Status::Unhealthy)
            || rec.desired != DesiredState::Running
            || self.is_held(name)
        {
            return;
        }
        let Some(observed) = self.runtime.observe(&rec.name) else {
            return;
        };
        let awake_for = Utc::now()
            .signed_duration_since(observed.since)
            .to_std()
            .unwrap_or_default();
        // The embedded proxy's count is exact now; Caddy's connections
        // were counted this round.
        if !idle::should_sleep(timeout, self.traffic(&rec, clients), awake_for) {
            return;
        }
        let outcome = self
            .put_to_sleep(&rec)
            .await
            .map(|()| format!("no request for {timeout}"))
            .map_err(|e| e.to_string());
        self.audit(&Actor::daemon(), AuditAction::Sleep, Some(name), outcome);
    }

    /// `pockestrator sleep NAME`: put a running instance to sleep now.
    pub async fn sleep(&self, name: &str, actor: &Actor) -> Result<InstanceRecord> {
        let result = async {
            let lock = self.lock_for(name);
            let _guard = lock.lock().await;
            let rec = self.get(name)?;
            if rec.desired != DesiredState::Running
                || !matches!(rec.status, Status::Running | Status::Unhealthy)
            {
                return Err(ManagerError::Conflict(format!(
                    "{name} is {}: only a running instance can be put to sleep; `pockestrator start {name}` first",
                    rec.status
                )));
            }
            self.put_to_sleep(&rec).await?;
            self.get(name)
        }
        .await;
        self.audited(actor, AuditAction::Sleep, name, result, |_| {
            "on request".to_string()
        })
    }

    /// Asleep first, then stopped: a request meanwhile asks for a wake,
    /// which waits for the instance lock (the caller's), and is held until
    /// it is answered.
    async fn put_to_sleep(&self, rec: &InstanceRecord) -> Result<()> {
        let name = rec.name.as_str();
        self.set_state(name, Status::Sleeping, None, rec.restarts, None);
        self.sync_route_now(name).await;
        let stopped = self.runtime.stop(&rec.name).await;
        // What the daemon kept of it while awake goes: a sleeping instance
        // costs its row and its route, so memory follows the awake part.
        self.busy_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.name);
        self.health_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.name);
        self.health_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.name);
        if let Err(e) = stopped {
            let still = self.runtime.observe(&rec.name).and_then(|o| o.pid);
            let status = if still.is_some() {
                Status::Running
            } else {
                Status::Failed
            };
            self.set_state(name, status, still, rec.restarts, Some(&e.to_string()));
            return Err(e.into());
        }
        Ok(())
    }

    /// Wake a sleeping instance (nothing to do for one that is not): its
    /// route is held from now until it answers, then forwards what waited.
    /// A wake that fails leaves it `failed` and the waiting requests get
    /// 503; nothing retries by itself.
    pub async fn wake(&self, name: &str, why: WakeReason) -> Result<InstanceRecord> {
        let lock = self.lock_for(name);
        let guard = lock.lock().await;
        let rec = self.get(name)?;
        if rec.status != Status::Sleeping || rec.desired != DesiredState::Running {
            drop(guard);
            // A request that asked meanwhile waits for a table swap.
            self.sync_route_now(name).await;
            return Ok(rec);
        }
        let began = Instant::now();
        self.hold(name, true).await;
        let result = self.start_locked(rec, &Actor::daemon()).await;
        tracing::debug!(
            instance = name,
            took_ms = began.elapsed().as_millis() as u64,
            "wake: started"
        );
        self.hold(name, false).await;
        tracing::debug!(
            instance = name,
            took_ms = began.elapsed().as_millis() as u64,
            "wake: route released"
        );
        drop(guard);
        let took = began.elapsed().as_millis();
        self.audited(&Actor::daemon(), AuditAction::Wake, name, result, |r| {
            format!(
                "by {} in {took} ms, pid {}",
                why.as_str(),
                r.pid.unwrap_or(0)
            )
        })
    }

    /// Turn the router's wake requests into wakes, until `stop` is set.
    pub async fn wake_loop(
        self: Arc<Self>,
        mut requests: tokio::sync::mpsc::UnboundedReceiver<InstanceName>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let name = tokio::select! {
                _ = crate::shutdown::stopped(&mut stop) => return,
                name = requests.recv() => match name {
                    Some(name) => name,
                    None => return,
                },
            };
            let this = Arc::clone(&self);
            tokio::spawn(async move {
                if let Err(e) = this.wake(&name, WakeReason::Request).await {
                    tracing::warn!(instance = %name, error = %e, "wake failed");
                }
            });
        }
    }
}
