//! The manager: every mutation of the fleet goes through here, whichever
//! door it came in by (CLI over the API, REST, seed 001's API, later the
//! dashboard).
//!
//! It ties the parts together: validation and decisions from [`crate::model`],
//! state in [`crate::store`], binaries from [`crate::release`], processes
//! through the [`crate::runtime`] seam, announcements on the [`EventBus`].
//!
//! Locking rule: one async lock per instance serialises operations on that
//! instance (start/stop/upgrade/delete never interleave on one instance),
//! while different instances proceed concurrently. Port allocation takes a
//! separate short lock around "choose a port + insert the row", so parallel
//! creates get distinct ports. No lock is held across another instance's
//! lock, so there is no lock ordering to get wrong.

mod backup;
mod cluster;
mod create;
mod delete;
mod deploy;
mod deploy_secrets;
mod error;
mod failover;
mod files;
mod fleet;
mod follower;
mod health;
pub mod import;
mod install;
mod lifecycle;
mod logs;
mod marker;
mod metrics;
mod moves;
mod pool;
mod recovery;
mod replicate;
mod restore;
mod rollback;
mod routing;
mod schedule;
mod schema;
mod schema_push;
mod sessions;
mod sleep;
mod snapshot;
mod superuser;
mod switch;
mod tunnel;
mod units;
mod update;
mod upgrade;
mod users;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use create::{CreateFields, CreateRequest, Created, FieldErrors};
pub use deploy::DeployRequest;
pub use deploy_secrets::WebhookOutcome;
pub use error::ManagerError;
pub(crate) use error::Result;
pub use fleet::{Applied, FleetApplied, FleetPlan};
pub use install::BinaryChoice;
pub use logs::{tail_lines, LogFollow};
pub use moves::DrainReport;
pub use replicate::ReplicationView;
pub use schedule::ScheduleRequest;
pub use schema_push::{PushOutcome, PushReport, PushResult, PushTargets};
pub use sleep::WakeReason;
pub use update::UpdateRequest;

use crate::config::{Config, Layout};
use crate::events::{Event, EventBus};

use crate::model::names::shown;
use crate::model::{AuditAction, AuditOutcome, InstanceName, Status};
use crate::release::Releases;
use crate::router::{AnyRouter, Route};
use crate::runtime::{AnyRuntime, LaunchSpec};
use crate::store::{InstanceRecord, NewAudit, Phase, Store};

/// Who asked for an operation, as written into the audit log.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

impl Actor {
    pub fn daemon() -> Self {
        Actor("daemon".to_string())
    }
}

/// The fleet manager. Shared as `Arc<Manager>`.
pub struct Manager {
    cfg: Config,
    layout: Layout,
    store: Arc<Store>,
    releases: Releases,
    runtime: Arc<AnyRuntime>,
    events: EventBus,
    http: reqwest::Client,
    instance_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    allocation: tokio::sync::Mutex<()>,
    /// One fleet apply at a time.
    fleet_lock: tokio::sync::Mutex<()>,
    health_failures: Mutex<HashMap<InstanceName, u32>>,
    /// The last probes of each instance, newest last.
    health_log:
        Mutex<HashMap<InstanceName, std::collections::VecDeque<crate::health::HealthSample>>>,
    router: Arc<AnyRouter>,
    /// The route last put for each instance, so unchanged routes are not
    /// sent again.
    last_routes: Mutex<HashMap<String, Route>>,
    /// Held for the whole of one route sync (read the record, put the
    /// route), so that the last sync to run always put the latest state.
    route_sync: tokio::sync::Mutex<()>,
    /// Wakes the backup loop when a schedule changed.
    schedules_changed: tokio::sync::Notify,
    /// Names whose route may have changed, for the route loop.
    route_tx: tokio::sync::mpsc::UnboundedSender<String>,
    route_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
    /// Where health probes are recorded, and what a scrape renders.
    metrics: crate::metrics::Metrics,
    /// The supervised Litestream processes of replicated instances.
    replicator: crate::replication::Replicator,
    /// How deploys build (user, workspace root, limits, Go).
    builder: crate::build::Builder,
    /// One deploy at a time per instance, in the order asked for: the end of
    /// each instance's line, which the next deploy waits on (`queued`).
    deploy_lines: Mutex<HashMap<String, tokio::sync::oneshot::Receiver<()>>>,
    /// Instances being switched to another release: the embedded proxy
    /// holds their new requests until they answer again.
    held: Mutex<std::collections::HashSet<String>>,
    /// With the Caddy routers: the wake proxy asleep instances' routes
    /// point at.
    wake_proxy: std::sync::OnceLock<sleep::WakeProxy>,
    /// With the Caddy routers: when the idle loop last saw connections to
    /// each awake instance.
    busy_seen: Mutex<HashMap<InstanceName, std::time::Instant>>,
    /// When each sleeping instance with a wake schedule is woken next.
    next_wakes: Mutex<HashMap<InstanceName, Option<chrono::DateTime<chrono::Utc>>>>,
    /// Pre-initialised data directories for new instances.
    pool: pool::Pool,
    /// The cluster this host is part of (`serve --cluster`), if any.
    membership: std::sync::OnceLock<cluster::Membership>,
}

impl Manager {
    pub fn new(
        cfg: Config,
        store: Arc<Store>,
        releases: Releases,
        runtime: Arc<AnyRuntime>,
        router: Arc<AnyRouter>,
        events: EventBus,
        metrics: crate::metrics::Metrics,
    ) -> Result<Arc<Self>> {
        let (route_tx, route_rx) = tokio::sync::mpsc::unbounded_channel();
        let replicator = crate::replication::Replicator::new(
            cfg.layout().replication_dir(),
            cfg.credentials.clone(),
        );
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| ManagerError::Invalid(format!("cannot build the http client: {e}")))?;
        let builder = build_settings(&cfg)?;
        let pool = pool::Pool::new(cfg.layout().pool(), cfg.pool_size);
        Ok(Arc::new(Self {
            layout: cfg.layout(),
            cfg,
            store,
            releases,
            runtime,
            events,
            http,
            instance_locks: Mutex::new(HashMap::new()),
            allocation: tokio::sync::Mutex::new(()),
            fleet_lock: tokio::sync::Mutex::new(()),
            health_failures: Mutex::new(HashMap::new()),
            health_log: Mutex::new(HashMap::new()),
            router,
            last_routes: Mutex::new(HashMap::new()),
            route_sync: tokio::sync::Mutex::new(()),
            schedules_changed: tokio::sync::Notify::new(),
            route_tx,
            route_rx: Mutex::new(Some(route_rx)),
            metrics,
            replicator,
            builder,
            deploy_lines: Mutex::new(HashMap::new()),
            held: Mutex::new(std::collections::HashSet::new()),
            wake_proxy: std::sync::OnceLock::new(),
            busy_seen: Mutex::new(HashMap::new()),
            next_wakes: Mutex::new(HashMap::new()),
            pool,
            membership: std::sync::OnceLock::new(),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn releases(&self) -> &Releases {
        &self.releases
    }
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .instance_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        locks.entry(name.to_string()).or_default().clone()
    }

    /// Drop what the manager kept in memory about an instance that is gone:
    /// its lock entry, health history and failure count.
    fn forget(&self, name: &InstanceName) {
        self.instance_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name.as_str());
        self.health_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.health_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.busy_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.next_wakes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Append to the audit log and announce it. An audit write that fails
    /// is logged, not fatal: the operation itself already happened.
    pub fn audit(
        &self,
        actor: &Actor,
        action: AuditAction,
        instance: Option<&str>,
        outcome: Result<String, String>,
    ) {
        let (result, detail) = match &outcome {
            Ok(d) => (AuditOutcome::Ok, d.as_str()),
            Err(e) => (AuditOutcome::Error, e.as_str()),
        };
        match self.store.append_audit(&NewAudit {
            actor: &actor.0,
            action,
            instance,
            result,
            detail,
        }) {
            Ok(entry) => self.events.publish(Event::Audit { entry }),
            Err(e) => {
                tracing::error!(error = %e, action = action.as_str(), "cannot write the audit log")
            }
        }
    }

    fn audited<T>(
        &self,
        actor: &Actor,
        action: AuditAction,
        name: &str,
        result: Result<T>,
        detail: impl FnOnce(&T) -> String,
    ) -> Result<T> {
        match &result {
            Ok(v) => self.audit(actor, action, Some(name), Ok(detail(v))),
            Err(e) => self.audit(actor, action, Some(name), Err(e.to_string())),
        }
        result
    }

    fn set_state(
        &self,
        name: &str,
        status: Status,
        pid: Option<u32>,
        restarts: u32,
        last_error: Option<&str>,
    ) {
        if let Err(e) = self
            .store
            .set_runtime(name, status, pid, restarts, last_error)
        {
            tracing::error!(error = %e, instance = name, "cannot record the instance state");
        }
        self.events.publish(Event::InstanceState {
            name: name.to_string(),
            status,
            pid,
            restarts,
        });
        self.route_changed(name);
    }

    pub fn get(&self, name: &str) -> Result<InstanceRecord> {
        self.store
            .get_instance(name)?
            .filter(|r| r.phase == Phase::Ready)
            .ok_or_else(|| ManagerError::NotFound(shown_name(name)))
    }

    pub fn list(&self) -> Result<Vec<InstanceRecord>> {
        Ok(self
            .store
            .list_instances()?
            .into_iter()
            .filter(|r| r.phase == Phase::Ready)
            .collect())
    }

    /// How to launch an instance: a pure function of its record.
    fn spec(&self, rec: &InstanceRecord) -> LaunchSpec {
        LaunchSpec {
            name: rec.name.clone(),
            binary: rec.binary_path.clone(),
            instance_dir: rec.dir.clone(),
            port: rec.port,
            limits: rec.limits.clone(),
            release: rec
                .release
                .as_ref()
                .map(|r| self.layout.release_dir(&rec.dir, r)),
            release_binary: rec.release_binary,
        }
    }
}

/// Who builds, where: as root, the build user (`nobody` unless told) in a
/// root outside the private data dir; otherwise the daemon's own user in
/// the data dir's `builds/`.
fn build_settings(cfg: &Config) -> Result<crate::build::Builder> {
    let layout = cfg.layout();
    let root_daemon = nix::unistd::geteuid().is_root();
    let user = if root_daemon {
        let name = cfg.deploy.build_user.as_deref().unwrap_or("nobody");
        Some(
            crate::build::BuildUser::lookup(name)
                .map_err(|e| ManagerError::Invalid(e.to_string()))?,
        )
    } else {
        if let Some(name) = &cfg.deploy.build_user {
            return Err(ManagerError::Invalid(format!(
                "--build-user {name}: builds run as the daemon's own user when it does not run as root"
            )));
        }
        None
    };
    let root = match &cfg.deploy.build_dir {
        Some(dir) => dir.clone(),
        None if user.is_some() => {
            use sha2::Digest as _;
            let scope =
                hex::encode(&sha2::Sha256::digest(layout.root.as_os_str().as_encoded_bytes())[..4]);
            std::path::PathBuf::from("/var/tmp/pockestrator-builds").join(scope)
        }
        None => layout.builds(),
    };
    let go = cfg.deploy.go.clone().or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("go"))
            .find(|p| p.is_file())
    });
    Ok(crate::build::Builder {
        user,
        root,
        limits: cfg.deploy.limits,
        go,
    })
}

fn shown_name(name: &str) -> String {
    if InstanceName::parse(name).is_ok() {
        name.to_string()
    } else {
        shown(name)
    }
}
