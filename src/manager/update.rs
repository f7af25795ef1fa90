//! Changing an instance's configuration: domain, port, body limit,
//! resource limits; and reading its configuration history.

use super::{Actor, Manager, ManagerError, Result};
use crate::model::ports;
use crate::model::AuditAction;
use crate::model::{CpuQuota, CronExpr, DesiredState, Domain, MemoryMax, Status};
use crate::runtime::{AnyRuntime, Runtime};
use crate::store::InstanceRecord;

/// A partial update of an instance's configuration.
#[derive(Debug, Clone, Default)]
pub struct UpdateRequest {
    /// `Some(None)` removes the domain.
    pub domain: Option<Option<String>>,
    pub port: Option<u32>,
    /// `Some(None)` goes back to the router's default.
    pub max_body_bytes: Option<Option<u64>>,
    /// `Some(None)` removes the limit.
    pub memory_max: Option<Option<String>>,
    /// `Some(None)` removes the limit.
    pub cpu_quota: Option<Option<String>>,
    /// In seconds; 0: never sleeps.
    pub idle_timeout_secs: Option<u64>,
    /// `Some(None)` removes the schedule.
    pub wake_schedule: Option<Option<String>>,
}

impl Manager {
    /// Change the domain or port of an instance. A port change restarts a
    /// running instance on the new port.
    pub async fn update(
        &self,
        name: &str,
        req: UpdateRequest,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        let result = self.update_inner(name, req, actor).await;
        self.audited(actor, AuditAction::Update, name, result, |r| {
            format!(
                "port {}, domain {}",
                r.port,
                r.domain.as_deref().unwrap_or("-")
            )
        })
    }

    pub(super) async fn update_inner(
        &self,
        name: &str,
        req: UpdateRequest,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        let lock = self.lock_for(name);
        let _guard = lock.lock().await;
        let mut rec = self.get(name)?;
        if let Some(domain) = &req.domain {
            rec.domain = domain.as_deref().map(Domain::parse).transpose()?;
        }
        if let Some(limit) = req.max_body_bytes {
            if let Some(bytes) = limit {
                crate::model::routing::check_body_limit(bytes).map_err(ManagerError::Invalid)?;
            }
            rec.max_body_bytes = limit;
        }
        let mut limits_changed = false;
        if let Some(memory) = &req.memory_max {
            let memory = memory.as_deref().map(MemoryMax::parse).transpose()?;
            limits_changed |= rec.limits.memory_max != memory;
            rec.limits.memory_max = memory;
        }
        if let Some(quota) = &req.cpu_quota {
            let quota = quota.as_deref().map(CpuQuota::parse).transpose()?;
            limits_changed |= rec.limits.cpu_quota != quota;
            rec.limits.cpu_quota = quota;
        }
        if let Some(secs) = req.idle_timeout_secs {
            rec.idle_timeout = super::create::idle_from_secs(secs)?;
        }
        if let Some(schedule) = &req.wake_schedule {
            rec.wake_schedule = schedule.as_deref().map(CronExpr::parse).transpose()?;
        }
        // systemd applies new limits at the unit's next start.
        let limits_need_restart = limits_changed && matches!(*self.runtime, AnyRuntime::Systemd(_));
        let mut port_changed = false;
        if let Some(raw) = req.port {
            let port = ports::check_range(raw)?;
            if port != rec.port {
                let _allocation = self.allocation.lock().await;
                let port = self.choose_port(Some(u32::from(port)))?;
                rec.port = port;
                self.store.update_config(&rec, &actor.0)?;
                port_changed = true;
            }
        }
        if !port_changed {
            self.store.update_config(&rec, &actor.0)?;
        }
        if (port_changed || limits_need_restart) && rec.desired == DesiredState::Running {
            self.runtime.stop(&rec.name).await?;
            let spec = self.spec(&rec);
            self.runtime.start(spec.clone()).await?;
            let pid = self.wait_healthy(&spec).await?;
            self.set_state(name, Status::Running, Some(pid), rec.restarts, None);
        }
        self.record_unit_hash(name);
        // Domain, port and body limit all shape the route.
        self.sync_route_now(name).await;
        self.get(name)
    }

    pub fn history(&self, name: &str) -> Result<Vec<crate::store::ConfigChange>> {
        self.get(name)?;
        Ok(self.store.config_history(name)?)
    }
}
