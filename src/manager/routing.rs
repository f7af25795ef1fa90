//! The manager's side of routing: each instance's [`Route`] computed from
//! its record, kept in place in the router as instances change, custom
//! domains, drift checks and repair, and the PocketBase setting that makes
//! it trust the router's `X-Forwarded-For`.
//!
//! Routes are kept in place by one loop (`route_loop`) fed with the names of
//! instances that may have changed; it always reads the current record, so
//! the order in which changes are announced does not matter. Operations that
//! promise a route when they return (create, domain changes) also sync
//! directly.

use crate::model::AuditAction;
use std::sync::Arc;

use super::{Actor, Manager, ManagerError, Result};
use crate::model::names::shown;
use crate::model::routing;
use crate::model::{DesiredState, Domain, InstanceName, Status};
use crate::router::{Drift, ReconcileReport, Route, Router};
use crate::store::{InstanceRecord, Phase};

impl Manager {
    /// The route of one instance, from its record (pure but for reading its
    /// custom domains).
    pub fn route_for(&self, rec: &InstanceRecord) -> Result<Route> {
        self.route_as(
            rec,
            self.router.tracks_availability(),
            self.wake_proxy_port(),
        )
    }

    /// The route the wake proxy holds for an instance (the Caddy routers):
    /// the embedded proxy's, to the instance itself.
    fn wake_route_for(&self, rec: &InstanceRecord) -> Result<Route> {
        self.route_as(rec, true, None)
    }

    /// A route for a router that answers for unavailable instances itself
    /// (`tracks`) or not, where asleep instances' requests go to the wake
    /// proxy on `wake_port` if there is one.
    fn route_as(
        &self,
        rec: &InstanceRecord,
        tracks: bool,
        wake_port: Option<u16>,
    ) -> Result<Route> {
        let custom = self.store.domains(&rec.name)?;
        let routing_cfg = &self.cfg.routing;
        // An instance being stopped is out of service from the moment it
        // is asked to stop, not only once its process has gone.
        let available = !tracks
            || (matches!(rec.status, Status::Running | Status::Unhealthy)
                && rec.desired == DesiredState::Running);
        let held_now = self.is_held(&rec.name);
        let held = tracks && held_now;
        // Asleep: a request wakes it. Through Caddy, by way of the wake
        // proxy, which holds requests while the instance wakes (or is
        // switched to a new release) and then forwards them.
        let sleeping =
            rec.status == Status::Sleeping && rec.desired == DesiredState::Running && !held_now;
        let (asleep, port) = match wake_port {
            _ if tracks => (sleeping, rec.port),
            Some(wake_port) if sleeping || held_now => (false, wake_port),
            _ => (false, rec.port),
        };
        Ok(Route {
            name: rec.name.clone(),
            port,
            hosts: routing::hosts(
                &rec.name,
                rec.domain.as_deref(),
                &routing_cfg.base_domain,
                &custom,
            ),
            max_body_bytes: rec.max_body_bytes.unwrap_or(routing_cfg.max_body_bytes),
            read_timeout: crate::router::DEFAULT_READ_TIMEOUT,
            available,
            held,
            asleep,
        })
    }

    /// The routes of every ready instance.
    pub fn all_routes(&self) -> Vec<Route> {
        match self.list() {
            Ok(records) => records
                .iter()
                .filter_map(|r| self.route_for(r).ok())
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot list instances for routing");
                Vec::new()
            }
        }
    }

    /// Every address an instance answers at.
    pub fn urls(&self, rec: &InstanceRecord, custom: &[String]) -> Vec<String> {
        let routing_cfg = &self.cfg.routing;
        let hosts = routing::hosts(
            &rec.name,
            rec.domain.as_deref(),
            &routing_cfg.base_domain,
            custom,
        );
        routing::urls(&hosts, routing_cfg.public_endpoint().as_ref(), rec.port)
    }

    /// Announce that an instance's route may have changed.
    pub(super) fn route_changed(&self, name: &str) {
        if matches!(*self.router, crate::router::AnyRouter::None) {
            return;
        }
        let _ = self.route_tx.send(name.to_string());
    }

    /// Put (or remove) one instance's route now; errors are logged and
    /// audited, not returned: the instance itself is fine, and the route
    /// loop and the reconcile on Caddy's return try again.
    pub(super) async fn sync_route_now(&self, name: &str) {
        if let Err(e) = self.sync_route(name).await {
            tracing::warn!(instance = name, error = %e, "route not in place");
            self.audit(
                &Actor::daemon(),
                AuditAction::Route,
                Some(name),
                Err(e.to_string()),
            );
        }
    }

    pub(super) async fn sync_route(&self, name: &str) -> Result<()> {
        if matches!(*self.router, crate::router::AnyRouter::None) {
            return Ok(());
        }
        let _one_at_a_time = self.route_sync.lock().await;
        let rec = self
            .store
            .get_instance(name)?
            .filter(|r| r.phase == Phase::Ready);
        let Some(rec) = rec else {
            let had = self
                .last_routes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(name);
            if let Ok(instance) = InstanceName::parse(name) {
                if let Some(wake) = self.wake_proxy.get() {
                    wake.proxy.remove(&instance).await?;
                }
                if had.is_some() {
                    self.router.remove(&instance).await?;
                }
            }
            return Ok(());
        };
        if let Some(wake) = self.wake_proxy.get() {
            // First the wake proxy, so that a Caddy route pointing there
            // finds the instance's route in it.
            wake.proxy.put(&self.wake_route_for(&rec)?).await?;
        }
        let route = self.route_for(&rec)?;
        let unchanged = self
            .last_routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .is_some_and(|last| *last == route);
        if unchanged {
            return Ok(());
        }
        if let Err(e) = self.router.put(&route).await {
            self.last_routes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(name);
            return Err(e.into());
        }
        let hash = self.router.render_hash(&route);
        self.store.set_router_hash(name, Some(&hash))?;
        self.last_routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), route);
        Ok(())
    }

    /// Keep routes in place as instances change, until `stop` is set.
    pub async fn route_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let rx = self
            .route_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut rx) = rx else { return };
        loop {
            let first = tokio::select! {
                _ = crate::shutdown::stopped(&mut stop) => return,
                name = rx.recv() => match name {
                    Some(n) => n,
                    None => return,
                },
            };
            // Coalesce a burst of changes into one pass per instance.
            let mut names = vec![first];
            while let Ok(more) = rx.try_recv() {
                if !names.contains(&more) {
                    names.push(more);
                }
            }
            for name in names {
                if let Err(e) = self.sync_route(&name).await {
                    tracing::warn!(instance = %name, error = %e, "route not in place");
                }
            }
        }
    }

    /// Make the router hold exactly the routes of the ready instances.
    pub async fn reconcile_routes(&self) -> Result<ReconcileReport> {
        let records = self.list()?;
        if let Some(wake) = self.wake_proxy.get() {
            let wake_routes: Vec<Route> = records
                .iter()
                .filter_map(|r| self.wake_route_for(r).ok())
                .collect();
            wake.proxy.reconcile(&wake_routes).await?;
        }
        let routes: Vec<Route> = records
            .iter()
            .filter_map(|r| self.route_for(r).ok())
            .collect();
        let report = self.router.reconcile(&routes).await?;
        let mut last = self.last_routes.lock().unwrap_or_else(|p| p.into_inner());
        last.clear();
        for route in routes {
            let hash = self.router.render_hash(&route);
            if let Err(e) = self.store.set_router_hash(route.name.as_str(), Some(&hash)) {
                tracing::warn!(error = %e, "cannot record a route hash");
            }
            last.insert(route.name.to_string(), route);
        }
        Ok(report)
    }

    /// What differs between the router and what it should hold.
    pub async fn check_routes(&self) -> Result<Vec<Drift>> {
        Ok(self.router.check(&self.all_routes()).await?)
    }

    /// `doctor --repair`: put the routes back, audited.
    pub async fn repair_routes(&self, actor: &Actor) -> Result<ReconcileReport> {
        let result = self.reconcile_routes().await;
        match &result {
            Ok(r) => self.audit(
                actor,
                AuditAction::Repair,
                None,
                Ok(format!(
                    "routes: {} added, {} updated, {} removed",
                    r.added.len(),
                    r.updated.len(),
                    r.removed.len()
                )),
            ),
            Err(e) => self.audit(actor, AuditAction::Repair, None, Err(e.to_string())),
        }
        result
    }

    /// The checks of the host `doctor` shows.
    pub async fn host_checks(&self) -> Vec<crate::doctor::Check> {
        let records = self.list().unwrap_or_default();
        let highest = records.iter().map(|r| r.port).max();
        let readings =
            crate::doctor::read_host(&self.cfg, records.len(), highest, &self.http).await;
        crate::doctor::evaluate(&readings)
    }

    /// Whether one instance's route is in place, with what differs.
    pub async fn route_status(&self, rec: &InstanceRecord) -> Result<(bool, Vec<Drift>)> {
        let route = self.route_for(rec)?;
        let drifts = self.router.check(std::slice::from_ref(&route)).await?;
        let mine: Vec<Drift> = drifts
            .into_iter()
            .filter(|d| d.instance.as_deref() == Some(rec.name.as_str()))
            .collect();
        Ok((mine.is_empty(), mine))
    }

    /// Whether some instance answers at `host` (on-demand TLS `ask`).
    pub fn routes_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.all_routes().iter().any(|r| r.hosts.contains(&host))
    }

    /// The custom domains of an instance already looked up.
    pub fn custom_domains(&self, rec: &InstanceRecord) -> Result<Vec<String>> {
        Ok(self.store.domains(&rec.name)?)
    }

    /// Every instance's custom domains, by name, in one query.
    pub fn all_custom_domains(&self) -> Result<std::collections::HashMap<String, Vec<String>>> {
        Ok(self.store.all_domains()?)
    }

    /// Which router is in front of the instances (`embedded`, `caddy`, …).
    pub fn router_kind(&self) -> &'static str {
        self.router.kind()
    }

    pub fn domains(&self, name: &str) -> Result<Vec<String>> {
        self.get(name)?;
        Ok(self.store.domains(name)?)
    }

    /// Route a custom domain to an instance.
    pub async fn add_domain(&self, name: &str, raw: &str, actor: &Actor) -> Result<Vec<String>> {
        let result = async {
            let domain = Domain::parse(raw)?;
            let lock = self.lock_for(name);
            let _guard = lock.lock().await;
            self.get(name)?;
            if let Some(owner) = self
                .all_routes()
                .iter()
                .find(|r| r.hosts.iter().any(|h| h == domain.as_str()))
                .map(|r| r.name.to_string())
            {
                return Err(ManagerError::Conflict(format!(
                    "{domain} already reaches instance {owner}: remove it there first"
                )));
            }
            self.store.add_domain(name, domain.as_str(), &actor.0)?;
            self.sync_route_now(name).await;
            Ok(self.store.domains(name)?)
        }
        .await;
        self.audited(actor, AuditAction::DomainAdd, name, result, |_| {
            format!("{} added", shown(raw))
        })
    }

    /// Stop routing a custom domain to an instance.
    pub async fn remove_domain(&self, name: &str, raw: &str, actor: &Actor) -> Result<Vec<String>> {
        let result = async {
            let domain = Domain::parse(raw)?;
            let lock = self.lock_for(name);
            let _guard = lock.lock().await;
            self.get(name)?;
            if !self.store.remove_domain(name, domain.as_str(), &actor.0)? {
                return Err(ManagerError::NotFound(format!(
                    "{domain} on {name} (its domains: `pockestrator domain list {name}`)"
                )));
            }
            self.sync_route_now(name).await;
            Ok(self.store.domains(name)?)
        }
        .await;
        self.audited(actor, AuditAction::DomainRemove, name, result, |_| {
            format!("{} removed", shown(raw))
        })
    }

    /// Make an instance trust the router's `X-Forwarded-For`, so its logs
    /// and rate limits see the real client IP: with a superuser's
    /// credentials, set PocketBase's `trustedProxy` to the rightmost
    /// address, which every router appends itself. Done when pockestrator
    /// creates or resets a superuser (it never keeps credentials, and
    /// PocketBase refuses to lose its only superuser, so no temporary account
    /// is used). PocketBase before 0.23 has no such setting.
    pub(super) async fn trust_router(
        &self,
        rec: &InstanceRecord,
        version: &semver::Version,
        email: &str,
        password: &str,
    ) {
        if matches!(*self.router, crate::router::AnyRouter::None)
            || !crate::model::version::has_superuser_command(version)
        {
            return;
        }
        let outcome = crate::pocketbase::patch_settings(
            &self.http,
            rec.port,
            email,
            password,
            serde_json::json!({"trustedProxy": {"headers": ["X-Forwarded-For"], "useLeftmostIP": false}}),
        )
        .await;
        if let Err(e) = &outcome {
            tracing::warn!(instance = %rec.name, error = %e, "cannot set trustedProxy");
        }
        self.audit(
            &Actor::daemon(),
            AuditAction::TrustedProxy,
            Some(&rec.name),
            outcome.map(|_| "X-Forwarded-For trusted (rightmost address)".to_string()),
        );
    }
}
