//! Caddy driven through its admin API (`serve --router caddy`): one route
//! per instance in a server of ours, changed one object at a time.
//!
//! Layout in Caddy's config (ids in [`render`]):
//! - `apps.http.servers.<server_name>`: our server, its listeners, our
//!   routes (`@id` `pockestrator-NAME`, seed 000's site block) and the
//!   catch-all 404 route, always last;
//! - `apps.tls.automation.policies`: our TLS policies first (internal CA,
//!   on-demand certificates for custom domains);
//! - `apps.tls.automation.on_demand`: the permission endpoint Caddy asks
//!   before it obtains an on-demand certificate (the daemon serves it; see
//!   [`ask_allows`]).
//!
//! Every change is one admin request, i.e. one atomic config swap inside
//! Caddy; where a whole list is replaced the request carries `If-Match`
//! with the Etag read just before, and a conflict is retried on fresh
//! state. The root config is never replaced, so the admin block stays as
//! it is and the admin endpoint never moves. Objects without one of our
//! ids are never changed, and keep their place in every list.
//!
//! [`CaddyAdminRouter::watch`] notices when Caddy comes back (after a
//! restart, or a reload that dropped our server) and puts everything back.

mod admin;
pub mod render;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::http::{Method, StatusCode};
use serde_json::Value;

use self::admin::AdminClient;
pub use self::admin::AdminEndpoint;
pub use self::render::ask_allows;
use self::render::{json_equal, object_id, policy_owner};
use super::{Drift, DriftKind, ReconcileReport, Route, Router, RouterError};
use crate::model::InstanceName;

/// How often [`CaddyAdminRouter::watch`] looks at Caddy.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How often a change is retried when Caddy's config changed under it.
const MAX_ATTEMPTS: usize = 8;
/// Where Caddy keeps its TLS automation policies.
const POLICIES_PATH: &str = "/config/apps/tls/automation/policies";
/// Where Caddy keeps the on-demand TLS permission.
const ON_DEMAND_PATH: &str = "/config/apps/tls/automation/on_demand";

/// How our hosts get certificates (`--caddy-tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaddyTls {
    /// Automatic HTTPS: ACME for real domains, the local CA for
    /// `localhost` names; custom domains on demand when there is an ask
    /// endpoint.
    Auto,
    /// Every host gets a certificate from Caddy's local CA.
    Internal,
    /// Plain HTTP only; automatic HTTPS disabled for our server.
    Off,
}

impl std::str::FromStr for CaddyTls {
    type Err = RouterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(CaddyTls::Auto),
            "internal" => Ok(CaddyTls::Internal),
            "off" => Ok(CaddyTls::Off),
            other => Err(RouterError::Other(format!(
                "unknown caddy TLS mode {}: use auto, internal or off",
                crate::model::names::shown(other)
            ))),
        }
    }
}

impl std::fmt::Display for CaddyTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CaddyTls::Auto => "auto",
            CaddyTls::Internal => "internal",
            CaddyTls::Off => "off",
        })
    }
}

/// Everything the Caddy admin router needs to know (from `serve` flags).
#[derive(Debug, Clone)]
pub struct CaddyAdminConfig {
    /// `http://127.0.0.1:2019` or `unix//run/caddy.sock`.
    pub admin: String,
    /// Listener addresses of our server (`:80`, `:443`).
    pub listen: Vec<String>,
    pub tls: CaddyTls,
    /// The key of our server under `apps.http.servers`.
    pub server_name: String,
    /// The daemon's ask endpoint for on-demand TLS, e.g.
    /// `http://127.0.0.1:9000/api/v1/tls/ask`.
    pub ask_url: Option<String>,
}

/// Caddy through its admin API.
#[derive(Clone)]
pub struct CaddyAdminRouter {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: CaddyAdminConfig,
    client: AdminClient,
    /// Our own changes never interleave: each reads Caddy's config and then
    /// writes, and Etags catch anyone else.
    lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for CaddyAdminRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaddyAdminRouter")
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

/// A value at a path of keys, `None` if missing or null.
fn at<'a>(root: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    let mut v = root;
    for k in keys {
        v = v.get(*k)?;
    }
    (!v.is_null()).then_some(v)
}

/// One change to Caddy's config, decided from a snapshot of it.
#[derive(Debug, Clone, PartialEq)]
struct Change {
    method: Method,
    path: String,
    body: Option<Value>,
    /// Send `If-Match` with the snapshot's Etag (list replacements).
    guarded: bool,
    what: &'static str,
}

impl CaddyAdminRouter {
    pub fn new(cfg: CaddyAdminConfig) -> Result<Self, RouterError> {
        let endpoint = AdminEndpoint::parse(&cfg.admin)?;
        if cfg.server_name.is_empty()
            || !cfg
                .server_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(RouterError::Other(format!(
                "caddy server name {} is not usable: use letters, digits, '-' and '_'",
                crate::model::names::shown(&cfg.server_name)
            )));
        }
        if cfg.listen.is_empty() {
            return Err(RouterError::Other(
                "caddy needs at least one listener address (--caddy-listen)".into(),
            ));
        }
        if let Some(bad) = cfg
            .listen
            .iter()
            .find(|a| a.is_empty() || a.contains(char::is_whitespace))
        {
            return Err(RouterError::Other(format!(
                "caddy listener address {} is not usable",
                crate::model::names::shown(bad)
            )));
        }
        if let Some(ask) = &cfg.ask_url {
            let ok =
                url::Url::parse(ask).is_ok_and(|u| u.scheme() == "http" || u.scheme() == "https");
            if !ok {
                return Err(RouterError::Other(format!(
                    "the on-demand TLS ask URL {} is not an http(s) URL",
                    crate::model::names::shown(ask)
                )));
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                client: AdminClient::new(endpoint),
                cfg,
                lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    fn cfg(&self) -> &CaddyAdminConfig {
        &self.inner.cfg
    }

    fn client(&self) -> &AdminClient {
        &self.inner.client
    }

    fn server_path(&self) -> String {
        format!("/config/apps/http/servers/{}", self.cfg().server_name)
    }

    fn routes_path(&self) -> String {
        format!("{}/routes", self.server_path())
    }

    /// What is rendered for one instance's route (pure).
    pub fn route_json(&self, route: &Route) -> Value {
        render::route_json(route)
    }

    /// The TLS automation policies rendered for one instance (pure).
    pub fn tls_policies_json(&self, route: &Route) -> Vec<Value> {
        render::tls_policies(route, self.cfg().tls, self.cfg().ask_url.as_deref())
    }

    /// Ensure our server exists (with a catch-all route last and, for tls
    /// Auto/Internal with ask_url, the on-demand TLS permission), keeping
    /// every other part of Caddy's config and its admin block. Idempotent.
    pub async fn ensure_server(&self) -> Result<(), RouterError> {
        let _guard = self.inner.lock.lock().await;
        self.ensure_server_locked().await
    }

    /// Watch Caddy: whenever it comes back after being unreachable (or its
    /// config lost our server, e.g. after a restart without `--resume`),
    /// call `ensure_server` + `reconcile(routes())`. Also done on the first
    /// contact. Returns when `stop` resolves.
    pub async fn watch(
        &self,
        routes: impl Fn() -> Vec<Route> + Send + Sync + 'static,
        stop: impl Future<Output = ()> + Send,
    ) {
        tokio::pin!(stop);
        // `in_sync` is false until a reconcile succeeded, and again
        // whenever Caddy could not be reached. A problem is logged when it
        // is new, not every second while it lasts.
        let mut in_sync = false;
        let mut last_problem: Option<String> = None;
        loop {
            let round = async {
                let problem = match self.catch_all_present().await {
                    Err(e) => {
                        in_sync = false;
                        Some(format!("caddy is unreachable ({e}); its routes will be put back when it returns"))
                    }
                    Ok(true) if in_sync => None,
                    Ok(present) => {
                        if in_sync && !present {
                            tracing::warn!("caddy lost the routes of pockestrator (restarted or reloaded); putting them back");
                        }
                        match self.reconcile(&routes()).await {
                            Ok(report) => {
                                tracing::info!(
                                    added = report.added.len(),
                                    updated = report.updated.len(),
                                    removed = report.removed.len(),
                                    "caddy routes reconciled"
                                );
                                in_sync = true;
                                None
                            }
                            Err(e) => {
                                in_sync = false;
                                Some(format!("cannot reconcile caddy's routes ({e}); retrying"))
                            }
                        }
                    }
                };
                match &problem {
                    Some(p) if last_problem.as_ref() != Some(p) => tracing::warn!("{p}"),
                    Some(p) => tracing::debug!("{p}"),
                    None => {}
                }
                last_problem = problem;
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = round => {}
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
        }
    }

    /// Whether our catch-all route is in Caddy's config (and so our server).
    async fn catch_all_present(&self) -> Result<bool, RouterError> {
        let resp = self
            .client()
            .request(
                Method::GET,
                &format!("/id/{}", render::CATCH_ALL_ID),
                None,
                None,
            )
            .await?;
        Ok(resp.status.is_success())
    }

    /// Caddy's whole config and its Etag.
    async fn snapshot(&self) -> Result<(Value, Option<String>), RouterError> {
        self.client().get("/config/").await
    }

    /// Apply one change. `Ok(false)` when Caddy's config changed under it
    /// (412 on `If-Match`, 409 on a PUT of a key that appeared): the
    /// caller decides again on fresh state.
    async fn apply(&self, change: &Change, etag: Option<&str>) -> Result<bool, RouterError> {
        let if_match = if change.guarded { etag } else { None };
        let resp = self
            .client()
            .request(
                change.method.clone(),
                &change.path,
                change.body.as_ref(),
                if_match,
            )
            .await?;
        if resp.status == StatusCode::PRECONDITION_FAILED || resp.status == StatusCode::CONFLICT {
            tracing::debug!(what = change.what, status = %resp.status, "caddy's config changed meanwhile; retrying");
            return Ok(false);
        }
        if resp.status == StatusCode::BAD_REQUEST && change.what == "on-demand TLS permission" {
            // Caddy 2.7 knows only `ask`, not the permission module.
            if let Some(ask) = &self.cfg().ask_url {
                let legacy = Change {
                    body: Some(render::on_demand_json_legacy(ask)),
                    ..change.clone()
                };
                let again = self
                    .client()
                    .request(
                        legacy.method.clone(),
                        &legacy.path,
                        legacy.body.as_ref(),
                        None,
                    )
                    .await?;
                if again.status.is_success() {
                    return Ok(true);
                }
            }
        }
        resp.ok()?;
        tracing::debug!(what = change.what, path = %change.path, method = %change.method, "caddy config changed");
        Ok(true)
    }

    /// The first change our server needs, if any.
    fn server_fix(&self, root: &Value) -> Option<Change> {
        let cfg = self.cfg();
        let server_path = self.server_path();
        let http_port = at(root, &["apps", "http", "http_port"])
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(80);
        let server = match at(root, &["apps", "http", "servers", &cfg.server_name]) {
            None => {
                return Some(Change {
                    method: Method::PUT,
                    path: server_path,
                    body: Some(render::server_json(&cfg.listen, cfg.tls, http_port)),
                    guarded: false,
                    what: "server",
                })
            }
            Some(s) => s,
        };
        // PUT creates a key, PATCH replaces one: Caddy refuses the other way round.
        let set = |key: &str, value: Value, what: &'static str| Change {
            method: if server.get(key).is_some() {
                Method::PATCH
            } else {
                Method::PUT
            },
            path: format!("{server_path}/{key}"),
            body: Some(value),
            guarded: false,
            what,
        };
        let want_listen = Value::from(render::server_listen(&cfg.listen, cfg.tls, http_port));
        if !server
            .get("listen")
            .is_some_and(|l| json_equal(l, &want_listen))
        {
            return Some(set("listen", want_listen, "listeners"));
        }
        match (
            render::automatic_https_json(cfg.tls),
            server.get("automatic_https"),
        ) {
            (Some(want), have) if !have.is_some_and(|h| json_equal(h, &want)) => {
                return Some(set("automatic_https", want, "automatic HTTPS"));
            }
            // Only what we set for `tls off` is taken back; other settings
            // there were made by hand.
            (None, Some(have)) if json_equal(have, &serde_json::json!({"disable": true})) => {
                return Some(Change {
                    method: Method::DELETE,
                    path: format!("{server_path}/automatic_https"),
                    body: None,
                    guarded: false,
                    what: "automatic HTTPS",
                });
            }
            _ => {}
        }
        let catch_all = render::catch_all_json();
        match server.get("routes").and_then(Value::as_array) {
            None => return Some(set("routes", Value::from(vec![catch_all]), "routes")),
            Some(routes) => {
                let last_ok = routes.last().is_some_and(|r| json_equal(r, &catch_all));
                let once = routes
                    .iter()
                    .filter(|r| object_id(r) == Some(render::CATCH_ALL_ID))
                    .count()
                    == 1;
                if !(last_ok && once) {
                    let mut fixed: Vec<Value> = routes
                        .iter()
                        .filter(|r| object_id(r) != Some(render::CATCH_ALL_ID))
                        .cloned()
                        .collect();
                    fixed.push(catch_all);
                    return Some(Change {
                        method: Method::PATCH,
                        path: self.routes_path(),
                        body: Some(Value::from(fixed)),
                        guarded: true,
                        what: "catch-all route",
                    });
                }
            }
        }
        if cfg.tls != CaddyTls::Off {
            if let Some(ask) = &cfg.ask_url {
                let want = render::on_demand_json(ask);
                match at(root, &["apps", "tls", "automation", "on_demand"]) {
                    None => {
                        return Some(Change {
                            method: Method::PUT,
                            path: ON_DEMAND_PATH.into(),
                            body: Some(want),
                            guarded: false,
                            what: "on-demand TLS permission",
                        })
                    }
                    Some(have) if object_id(have) == Some(render::ON_DEMAND_ID) => {
                        let legacy = render::on_demand_json_legacy(ask);
                        if !json_equal(have, &want) && !json_equal(have, &legacy) {
                            return Some(Change {
                                method: Method::PATCH,
                                path: ON_DEMAND_PATH.into(),
                                body: Some(want),
                                guarded: false,
                                what: "on-demand TLS permission",
                            });
                        }
                    }
                    Some(have) => {
                        tracing::warn!(
                            on_demand = %render::canonical(have),
                            "caddy already has an on-demand TLS setting that is not pockestrator's; leaving it, so custom domains get certificates only if it allows them"
                        );
                    }
                }
            }
        }
        None
    }

    async fn ensure_server_locked(&self) -> Result<(), RouterError> {
        for _ in 0..MAX_ATTEMPTS {
            let (root, etag) = self.snapshot().await?;
            let Some(change) = self.server_fix(&root) else {
                return Ok(());
            };
            tracing::info!(what = change.what, server = %self.cfg().server_name, "setting up caddy server");
            self.apply(&change, etag.as_deref()).await?;
        }
        Err(RouterError::Other(format!(
            "caddy's config kept changing while setting up server {}; try again",
            self.cfg().server_name
        )))
    }

    /// Make our TLS policies (those for which `is_ours` holds) exactly
    /// `desired`, first in Caddy's list.
    async fn sync_policies(
        &self,
        is_ours: impl Fn(&str) -> bool,
        desired: &[Value],
    ) -> Result<(), RouterError> {
        for _ in 0..MAX_ATTEMPTS {
            let (root, etag) = self.snapshot().await?;
            let existing =
                at(&root, &["apps", "tls", "automation", "policies"]).and_then(Value::as_array);
            let change = match existing {
                None if desired.is_empty() => return Ok(()),
                None => Change {
                    method: Method::PUT,
                    path: POLICIES_PATH.into(),
                    body: Some(Value::from(desired.to_vec())),
                    guarded: false,
                    what: "TLS automation policies",
                },
                Some(list) => {
                    let new = render::plan_policies(list, &is_ours, desired);
                    if render::lists_equal(&new, list) {
                        return Ok(());
                    }
                    Change {
                        method: Method::PATCH,
                        path: POLICIES_PATH.into(),
                        body: Some(Value::from(new)),
                        guarded: true,
                        what: "TLS automation policies",
                    }
                }
            };
            if self.apply(&change, etag.as_deref()).await? {
                return Ok(());
            }
        }
        Err(RouterError::Other(
            "caddy's config kept changing while updating TLS automation policies; try again".into(),
        ))
    }

    async fn put_locked(&self, route: &Route) -> Result<(), RouterError> {
        render::check_route(route)?;
        let name = route.name.as_str().to_string();
        let policies = self.tls_policies_json(route);
        self.sync_policies(|id| policy_owner(id) == Some(name.as_str()), &policies)
            .await?;
        let want = render::route_json(route);
        let id_path = format!("/id/{}", render::route_id(&name));
        for _ in 0..MAX_ATTEMPTS {
            let resp = self
                .client()
                .request(Method::GET, &id_path, None, None)
                .await?;
            if resp.status.is_success() {
                if json_equal(&resp.json()?, &want) {
                    return Ok(());
                }
                self.client()
                    .request(Method::PATCH, &id_path, Some(&want), None)
                    .await?
                    .ok()?;
                tracing::info!(instance = %name, "caddy route updated");
                return Ok(());
            }
            if resp.status != StatusCode::NOT_FOUND {
                return Err(resp.refused());
            }
            // New: insert it just before the catch-all.
            let (root, etag) = self.snapshot().await?;
            let routes = at(
                &root,
                &["apps", "http", "servers", &self.cfg().server_name, "routes"],
            )
            .and_then(Value::as_array);
            let catch_all_last =
                routes.is_some_and(|r| r.last().and_then(object_id) == Some(render::CATCH_ALL_ID));
            let Some(routes) = routes.filter(|_| catch_all_last) else {
                self.ensure_server_locked().await?;
                continue;
            };
            let change = Change {
                method: Method::PUT,
                path: format!("{}/{}", self.routes_path(), routes.len() - 1),
                body: Some(want.clone()),
                guarded: true,
                what: "route",
            };
            if self.apply(&change, etag.as_deref()).await? {
                tracing::info!(instance = %name, "caddy route added");
                return Ok(());
            }
        }
        Err(RouterError::Other(format!(
            "caddy's config kept changing while adding the route of {name}; try again"
        )))
    }

    async fn remove_locked(&self, name: &InstanceName) -> Result<(), RouterError> {
        let id_path = format!("/id/{}", render::route_id(name.as_str()));
        let resp = self
            .client()
            .request(Method::DELETE, &id_path, None, None)
            .await?;
        if resp.status.is_success() {
            tracing::info!(instance = %name, "caddy route removed");
        } else if resp.status != StatusCode::NOT_FOUND {
            return Err(resp.refused());
        }
        self.sync_policies(|id| policy_owner(id) == Some(name.as_str()), &[])
            .await
    }

    async fn reconcile_locked(&self, routes: &[Route]) -> Result<ReconcileReport, RouterError> {
        for r in routes {
            render::check_route(r)?;
        }
        self.ensure_server_locked().await?;
        let desired_policies: Vec<Value> = routes
            .iter()
            .flat_map(|r| self.tls_policies_json(r))
            .collect();
        self.sync_policies(|id| policy_owner(id).is_some(), &desired_policies)
            .await?;
        let desired: Vec<(String, Value)> = routes
            .iter()
            .map(|r| (r.name.as_str().to_string(), render::route_json(r)))
            .collect();
        for _ in 0..MAX_ATTEMPTS {
            let (root, etag) = self.snapshot().await?;
            let Some(existing) = at(
                &root,
                &["apps", "http", "servers", &self.cfg().server_name, "routes"],
            )
            .and_then(Value::as_array) else {
                self.ensure_server_locked().await?;
                continue;
            };
            let plan = render::plan_routes(existing, &desired);
            let report = ReconcileReport {
                added: plan.added,
                updated: plan.updated,
                removed: plan.removed,
            };
            if !plan.changed {
                return Ok(report);
            }
            let change = Change {
                method: Method::PATCH,
                path: self.routes_path(),
                body: Some(Value::from(plan.routes)),
                guarded: true,
                what: "routes",
            };
            if self.apply(&change, etag.as_deref()).await? {
                return Ok(report);
            }
        }
        Err(RouterError::Other(
            "caddy's config kept changing while reconciling routes; try again".into(),
        ))
    }
}

impl Router for CaddyAdminRouter {
    async fn put(&self, route: &Route) -> Result<(), RouterError> {
        let _guard = self.inner.lock.lock().await;
        self.put_locked(route).await
    }

    async fn remove(&self, name: &InstanceName) -> Result<(), RouterError> {
        let _guard = self.inner.lock.lock().await;
        self.remove_locked(name).await
    }

    async fn reconcile(&self, routes: &[Route]) -> Result<ReconcileReport, RouterError> {
        let _guard = self.inner.lock.lock().await;
        self.reconcile_locked(routes).await
    }

    async fn check(&self, routes: &[Route]) -> Result<Vec<Drift>, RouterError> {
        let (root, _) = self.snapshot().await?;
        let cfg = self.cfg();
        let in_place = at(
            &root,
            &["apps", "http", "servers", &cfg.server_name, "routes"],
        )
        .and_then(Value::as_array)
        .map(Vec::as_slice);
        let policies = at(&root, &["apps", "tls", "automation", "policies"])
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let desired: Vec<(String, Value, Vec<Value>)> = routes
            .iter()
            .map(|r| {
                (
                    r.name.as_str().to_string(),
                    render::route_json(r),
                    self.tls_policies_json(r),
                )
            })
            .collect();
        let mut drifts = render::drifts(in_place, policies, &desired);
        if cfg.tls != CaddyTls::Off
            && cfg.ask_url.is_some()
            && at(&root, &["apps", "tls", "automation", "on_demand"]).is_none()
        {
            drifts.push(Drift {
                instance: None,
                kind: DriftKind::Missing,
                detail: "no on-demand TLS permission: custom domains get no certificate".into(),
            });
        }
        Ok(drifts)
    }

    fn render_hash(&self, route: &Route) -> String {
        render::render_hash(&render::route_json(route), &self.tls_policies_json(route))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn router(tls: CaddyTls, ask: Option<&str>) -> CaddyAdminRouter {
        CaddyAdminRouter::new(CaddyAdminConfig {
            admin: "http://127.0.0.1:2019".into(),
            listen: vec![":80".into(), ":443".into()],
            tls,
            server_name: "pockestrator".into(),
            ask_url: ask.map(str::to_string),
        })
        .unwrap()
    }

    fn fixes(r: &CaddyAdminRouter, root: &Value) -> String {
        match r.server_fix(root) {
            None => "nothing".into(),
            Some(c) => format!(
                "{} {} {} guarded={}",
                c.method,
                c.path,
                c.body.map(|b| render::canonical(&b)).unwrap_or_default(),
                c.guarded
            ),
        }
    }

    #[test]
    fn new_refuses_unusable_settings() {
        let base = CaddyAdminConfig {
            admin: "http://127.0.0.1:2019".into(),
            listen: vec![":80".into()],
            tls: CaddyTls::Auto,
            server_name: "pockestrator".into(),
            ask_url: None,
        };
        assert!(CaddyAdminRouter::new(base.clone()).is_ok());
        for bad in [
            CaddyAdminConfig {
                admin: "ftp://x".into(),
                ..base.clone()
            },
            CaddyAdminConfig {
                listen: vec![],
                ..base.clone()
            },
            CaddyAdminConfig {
                server_name: "a/b".into(),
                ..base.clone()
            },
            CaddyAdminConfig {
                server_name: "".into(),
                ..base.clone()
            },
            CaddyAdminConfig {
                ask_url: Some("not a url".into()),
                ..base.clone()
            },
        ] {
            assert!(CaddyAdminRouter::new(bad.clone()).is_err(), "{bad:?}");
        }
        assert_eq!("internal".parse::<CaddyTls>().unwrap(), CaddyTls::Internal);
        assert!("on".parse::<CaddyTls>().is_err());
        assert_eq!(CaddyTls::Off.to_string(), "off");
    }

    #[test]
    fn server_setup_steps_keep_everything_else() {
        let r = router(CaddyTls::Auto, Some("http://127.0.0.1:9000/ask"));
        let empty = json!({"admin": {"listen": "127.0.0.1:2999"}});
        expect_test::expect![[r#"PUT /config/apps/http/servers/pockestrator {"listen":[":443"],"routes":[{"@id":"pockestrator-catch-all","handle":[{"body":"no instance at this address","handler":"static_response","status_code":404}],"terminal":true}]} guarded=false"#]]
            .assert_eq(&fixes(&r, &empty));
        assert_eq!(fixes(&r, &Value::Null), fixes(&r, &empty));

        let catch_all = render::catch_all_json();
        let theirs = json!({"@id": "theirs", "handle": []});
        let out_of_order = json!({"apps": {"http": {"servers": {"pockestrator": {
            "listen": [":443"], "routes": [catch_all, theirs]
        }}}}});
        expect_test::expect![[r#"PATCH /config/apps/http/servers/pockestrator/routes [{"@id":"theirs","handle":[]},{"@id":"pockestrator-catch-all","handle":[{"body":"no instance at this address","handler":"static_response","status_code":404}],"terminal":true}] guarded=true"#]]
            .assert_eq(&fixes(&r, &out_of_order));

        let complete = json!({"apps": {"http": {"servers": {"pockestrator": {
            "listen": [":443"], "routes": [theirs, catch_all]
        }}}}});
        expect_test::expect![[r#"PUT /config/apps/tls/automation/on_demand {"@id":"pockestrator.on-demand","permission":{"endpoint":"http://127.0.0.1:9000/ask","module":"http"}} guarded=false"#]]
            .assert_eq(&fixes(&r, &complete));
        let mut done = complete.clone();
        done["apps"]["tls"] = json!({"automation": {"on_demand": render::on_demand_json("http://127.0.0.1:9000/ask")}});
        assert_eq!(fixes(&r, &done), "nothing");
        let mut foreign = complete.clone();
        foreign["apps"]["tls"] = json!({"automation": {"on_demand": {"permission": {"module": "http", "endpoint": "http://elsewhere/"}}}});
        assert_eq!(fixes(&r, &foreign), "nothing");

        // Switching to `off` disables automatic HTTPS and listens on :80 too;
        // switching back takes only our setting away.
        let off = router(CaddyTls::Off, None);
        expect_test::expect![[
            r#"PATCH /config/apps/http/servers/pockestrator/listen [":80",":443"] guarded=false"#
        ]]
        .assert_eq(&fixes(&off, &complete));
        let off_listen = json!({"apps": {"http": {"servers": {"pockestrator": {
            "listen": [":80", ":443"], "routes": [catch_all]
        }}}}});
        expect_test::expect![[r#"PUT /config/apps/http/servers/pockestrator/automatic_https {"disable":true} guarded=false"#]]
            .assert_eq(&fixes(&off, &off_listen));
        let auto_again = json!({"apps": {"http": {"servers": {"pockestrator": {
            "listen": [":443"], "routes": [catch_all], "automatic_https": {"disable": true}
        }}}}});
        expect_test::expect![
            "DELETE /config/apps/http/servers/pockestrator/automatic_https  guarded=false"
        ]
        .assert_eq(&fixes(&router(CaddyTls::Auto, None), &auto_again));
        let hand_tuned = json!({"apps": {"http": {"servers": {"pockestrator": {
            "listen": [":443"], "routes": [catch_all], "automatic_https": {"disable_redirects": true}
        }}}}});
        assert_eq!(fixes(&router(CaddyTls::Auto, None), &hand_tuned), "nothing");

        // A custom HTTP port moves what "the HTTP listener" means.
        let http_port = json!({"apps": {"http": {"http_port": 8080, "servers": {"pockestrator": {
            "listen": [":80", ":443"], "routes": [catch_all]
        }}}}});
        assert_eq!(fixes(&router(CaddyTls::Auto, None), &http_port), "nothing");
    }

    #[test]
    fn render_hash_follows_tls_mode() {
        let route = Route {
            name: InstanceName::parse("a").unwrap(),
            port: 8091,
            hosts: vec!["a.example.com".into(), "a.example.org".into()],
            max_body_bytes: crate::router::DEFAULT_MAX_BODY_BYTES,
            read_timeout: crate::router::DEFAULT_READ_TIMEOUT,
            available: true,
            held: false,
            asleep: false,
        };
        let off = router(CaddyTls::Off, None).render_hash(&route);
        assert_eq!(
            off,
            router(CaddyTls::Off, Some("http://x/ask")).render_hash(&route)
        );
        assert_ne!(
            off,
            router(CaddyTls::Auto, Some("http://x/ask")).render_hash(&route)
        );
    }
}
