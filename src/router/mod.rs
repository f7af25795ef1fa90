//! How requests reach instances: the router seam and its implementations.
//!
//! [`Router`] is the small trait every way of routing implements and
//! [`AnyRouter`] the closed enum of the real ones, chosen with
//! `serve --router`:
//! - `embedded`: the daemon's own reverse proxy (the default; nothing to
//!   install, `http://NAME.localhost:8080` on a laptop);
//! - `caddy`: Caddy driven through its admin API, one route per instance;
//! - `caddyfile`: managed blocks in a Caddyfile, validated, then reloaded;
//! - `none`: no routing (instances answer on 127.0.0.1:PORT only).
//!
//! A router knows nothing of the store or of desired state: the manager
//! computes every instance's [`Route`] (pure, from the instance record) and
//! tells the router to put, remove or reconcile them.

pub mod caddy;
pub mod caddyfile;
pub mod embedded;

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::model::InstanceName;

/// Seed 000's `request_body max_size 10MB` (Caddy's MB is 10^6 bytes).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10_000_000;
/// Seed 000's `read_timeout 360s`.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(360);

/// Everything a router needs to send one instance its traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub name: InstanceName,
    /// The instance listens on 127.0.0.1:port.
    pub port: u16,
    /// Hostnames (lowercase, validated) that reach this instance:
    /// `NAME.BASE_DOMAIN` first, then the instance's custom domains.
    pub hosts: Vec<String>,
    /// Requests with a larger body are refused with 413.
    pub max_body_bytes: u64,
    /// How long to wait for the upstream's response headers/body.
    #[serde(with = "humantime_serde_secs")]
    pub read_timeout: Duration,
    /// False while the instance is stopped or starting: the embedded proxy
    /// answers 503 with `Retry-After` instead of trying the upstream.
    pub available: bool,
    /// True while the instance is being switched to a new release: the
    /// embedded proxy keeps new requests waiting until the route is
    /// available again (or the hold limit passes, then 503). Checked before
    /// `available`. Routers that cannot hold requests (Caddy) ignore it.
    pub held: bool,
    /// True while the instance sleeps (scale to zero): a request for it
    /// asks the daemon to wake it, then waits as for a held route. The
    /// Caddy routers send an asleep instance's requests to the daemon's
    /// wake proxy, which does the same.
    pub asleep: bool,
}

mod humantime_serde_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", d.as_secs()))
    }
}

/// A route that is not as it should be (for `doctor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The instance concerned, or `None` for a stale route of ours whose
    /// instance no longer exists.
    pub instance: Option<String>,
    pub kind: DriftKind,
    /// What differs, in words.
    pub detail: String,
}

/// How something of ours differs from what it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriftKind {
    /// A route the instance should have is not there.
    Missing,
    /// A route is there but not as it should be.
    Changed,
    /// A route of ours whose instance no longer exists.
    Stale,
    /// The systemd unit file of an instance is missing.
    UnitMissing,
    /// The systemd unit file of an instance was edited by hand.
    UnitChanged,
}

impl DriftKind {
    /// Its spelling in `doctor` and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Missing => "missing",
            DriftKind::Changed => "changed",
            DriftKind::Stale => "stale",
            DriftKind::UnitMissing => "unit missing",
            DriftKind::UnitChanged => "unit changed",
        }
    }
}

impl std::fmt::Display for DriftKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for DriftKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for DriftKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a reconcile changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
}

/// What went wrong while routing.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("cannot reach caddy's admin API at {endpoint}: {reason}; is caddy running? check --caddy-admin")]
    Unreachable { endpoint: String, reason: String },
    #[error("caddy refused the change ({status}): {body}")]
    Refused { status: u16, body: String },
    #[error("the new Caddyfile does not validate, the previous one was kept: {output}")]
    Invalid { output: String },
    #[error("caddy reload failed, the previous Caddyfile was restored: {output}")]
    ReloadFailed { output: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// The seam every router implements.
pub trait Router: Send + Sync {
    /// Add or replace the route of one instance, atomically.
    fn put(&self, route: &Route) -> impl Future<Output = Result<(), RouterError>> + Send;
    /// Remove the route of one instance (no error if there is none).
    fn remove(&self, name: &InstanceName) -> impl Future<Output = Result<(), RouterError>> + Send;
    /// Make the routes of ours exactly `routes`: add the missing, replace
    /// the changed, remove the stale. Routes that are not ours are never
    /// touched.
    fn reconcile(
        &self,
        routes: &[Route],
    ) -> impl Future<Output = Result<ReconcileReport, RouterError>> + Send;
    /// Compare what is in place with `routes` without changing anything.
    fn check(
        &self,
        routes: &[Route],
    ) -> impl Future<Output = Result<Vec<Drift>, RouterError>> + Send;
    /// A hash (hex sha256) of what this router renders for `route`; stored
    /// per instance (seed 000's `caddy_config_hash`) to detect drift.
    fn render_hash(&self, route: &Route) -> String;
}

/// The router chosen with `serve --router`.
pub enum AnyRouter {
    Embedded(embedded::ProxyRouter),
    Caddy(caddy::CaddyAdminRouter),
    Caddyfile(caddyfile::CaddyfileRouter),
    /// No routing: instances answer on 127.0.0.1:PORT only.
    None,
}

impl AnyRouter {
    /// `embedded`, `caddy`, `caddyfile` or `none`.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyRouter::Embedded(_) => "embedded",
            AnyRouter::Caddy(_) => "caddy",
            AnyRouter::Caddyfile(_) => "caddyfile",
            AnyRouter::None => "none",
        }
    }

    /// Whether this router answers for stopped instances itself (so their
    /// availability is part of the route).
    pub fn tracks_availability(&self) -> bool {
        matches!(self, AnyRouter::Embedded(_))
    }
}

impl Router for AnyRouter {
    async fn put(&self, route: &Route) -> Result<(), RouterError> {
        match self {
            AnyRouter::Embedded(r) => r.put(route).await,
            AnyRouter::Caddy(r) => r.put(route).await,
            AnyRouter::Caddyfile(r) => r.put(route).await,
            AnyRouter::None => Ok(()),
        }
    }

    async fn remove(&self, name: &InstanceName) -> Result<(), RouterError> {
        match self {
            AnyRouter::Embedded(r) => r.remove(name).await,
            AnyRouter::Caddy(r) => r.remove(name).await,
            AnyRouter::Caddyfile(r) => r.remove(name).await,
            AnyRouter::None => Ok(()),
        }
    }

    async fn reconcile(&self, routes: &[Route]) -> Result<ReconcileReport, RouterError> {
        match self {
            AnyRouter::Embedded(r) => r.reconcile(routes).await,
            AnyRouter::Caddy(r) => r.reconcile(routes).await,
            AnyRouter::Caddyfile(r) => r.reconcile(routes).await,
            AnyRouter::None => Ok(ReconcileReport::default()),
        }
    }

    async fn check(&self, routes: &[Route]) -> Result<Vec<Drift>, RouterError> {
        match self {
            AnyRouter::Embedded(r) => r.check(routes).await,
            AnyRouter::Caddy(r) => r.check(routes).await,
            AnyRouter::Caddyfile(r) => r.check(routes).await,
            AnyRouter::None => Ok(Vec::new()),
        }
    }

    fn render_hash(&self, route: &Route) -> String {
        match self {
            AnyRouter::Embedded(r) => r.render_hash(route),
            AnyRouter::Caddy(r) => r.render_hash(route),
            AnyRouter::Caddyfile(r) => r.render_hash(route),
            AnyRouter::None => String::new(),
        }
    }
}
