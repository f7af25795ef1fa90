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

pub mod import;
mod routing;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use semver::Version;

use crate::config::{Config, Layout};
use crate::events::{Event, EventBus};
use crate::health::{self, Verdict};
use crate::model::names::shown;
use crate::model::ports::{self, PortError};
use crate::model::version::{VersionError, VersionRequest};
use crate::model::{DesiredState, Domain, InstanceName, NameError, Status, UserId};
use crate::pocketbase::{self, PocketBaseError};
use crate::release::{Installed, ReleaseError, Releases};
use crate::router::{AnyRouter, Route};
use crate::runtime::{
    AnyRuntime, LaunchSpec, Phase as RunPhase, Runtime, RuntimeError, RuntimeEvent,
};
use crate::store::{InstanceRecord, NewAudit, Phase, Store, StoreError};

/// Everything that can go wrong in an operation, with the HTTP status and
/// machine-readable code the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error(transparent)]
    PocketBase(#[from] PocketBaseError),
    #[error("{0}")]
    Invalid(String),
    #[error("no instance named {0}: see `pockestrator list`")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Router(#[from] crate::router::RouterError),
    #[error("{name} did not become healthy: {reason}{}", log_hint(log_tail))]
    StartFailed {
        name: String,
        reason: String,
        log_tail: Vec<String>,
    },
    #[error("upgrade of {name} to {to} failed ({reason}); rolled back to {from} with its data as before the upgrade")]
    UpgradeRolledBack {
        name: String,
        from: String,
        to: String,
        reason: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn log_hint(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last log lines:\n  {}", tail.join("\n  "))
    }
}

impl ManagerError {
    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            ManagerError::Name(_)
            | ManagerError::Version(_)
            | ManagerError::PocketBase(PocketBaseError::BadEmail(_))
            | ManagerError::PocketBase(PocketBaseError::ShortPassword)
            | ManagerError::PocketBase(PocketBaseError::LongPassword)
            | ManagerError::Invalid(_) => 400,
            ManagerError::Port(PortError::OutOfRange(_)) => 400,
            ManagerError::Port(PortError::Exhausted { .. }) => 503,
            ManagerError::Port(_) => 409,
            ManagerError::NotFound(_) => 404,
            ManagerError::Conflict(_) => 409,
            ManagerError::Store(StoreError::NameTaken(_))
            | ManagerError::Store(StoreError::PortTaken(_))
            | ManagerError::Store(StoreError::UserTaken(_))
            | ManagerError::Store(StoreError::DomainTaken { .. }) => 409,
            ManagerError::Router(_) => 502,
            ManagerError::Release(e) if e.is_user_error() => 400,
            ManagerError::Release(_) => 502,
            _ => 500,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ManagerError::Name(_) => "invalid_name",
            ManagerError::Port(PortError::OutOfRange(_)) => "invalid_port",
            ManagerError::Port(PortError::Exhausted { .. }) => "no_free_port",
            ManagerError::Port(_) => "port_taken",
            ManagerError::Version(_) => "invalid_version",
            ManagerError::PocketBase(PocketBaseError::BadEmail(_)) => "invalid_email",
            ManagerError::PocketBase(PocketBaseError::ShortPassword)
            | ManagerError::PocketBase(PocketBaseError::LongPassword) => "invalid_password",
            ManagerError::PocketBase(_) => "pocketbase_error",
            ManagerError::Invalid(_) => "invalid_request",
            ManagerError::NotFound(_) => "not_found",
            ManagerError::Conflict(_) => "conflict",
            ManagerError::Store(StoreError::NameTaken(_)) => "name_taken",
            ManagerError::Store(StoreError::PortTaken(_)) => "port_taken",
            ManagerError::Store(StoreError::UserTaken(_)) => "conflict",
            ManagerError::Store(StoreError::DomainTaken { .. }) => "domain_taken",
            ManagerError::Router(_) => "router_error",
            ManagerError::Store(_) => "store_error",
            ManagerError::Release(e) if e.is_user_error() => "unknown_version",
            ManagerError::Release(_) => "release_unavailable",
            ManagerError::Runtime(_) => "runtime_error",
            ManagerError::StartFailed { .. } => "start_failed",
            ManagerError::UpgradeRolledBack { .. } => "upgrade_rolled_back",
            ManagerError::Io { .. } => "io_error",
        }
    }
}

type Result<T, E = ManagerError> = std::result::Result<T, E>;

/// Who asked for an operation, as written into the audit log.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

impl Actor {
    pub fn daemon() -> Self {
        Actor("daemon".to_string())
    }
}

/// Which binary an instance should run.
#[derive(Debug, Clone)]
pub enum BinaryChoice {
    /// A release, resolved and downloaded through the release sources.
    Release(VersionRequest),
    /// The operator's own binary; its version is read from `--version`.
    Local(PathBuf),
}

/// A create request, as validated input.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub name: String,
    pub binary: BinaryChoice,
    pub port: Option<u32>,
    pub domain: Option<String>,
    pub superuser_email: Option<String>,
    /// `None` with an e-mail: a password is generated and returned once.
    pub superuser_password: Option<String>,
    /// The request body limit of its route; `None`: the router's default.
    pub max_body_bytes: Option<u64>,
    /// systemd's `MemoryMax=` (applied by the systemd runtime).
    pub memory_max: Option<String>,
    /// systemd's `CPUQuota=` (applied by the systemd runtime).
    pub cpu_quota: Option<String>,
}

/// The result of a create: the instance, and the superuser's credentials
/// when one was made (the password is shown once, never stored).
#[derive(Debug, Clone)]
pub struct Created {
    pub instance: InstanceRecord,
    pub superuser: Option<(String, String)>,
}

/// A create form's fields as typed (see [`Manager::check_create_fields`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateFields<'a> {
    pub name: &'a str,
    pub port: &'a str,
    pub domain: &'a str,
    pub email: &'a str,
}

/// The message for each invalid field; `None`: the field is fine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors {
    pub name: Option<String>,
    pub port: Option<String>,
    pub domain: Option<String>,
    pub email: Option<String>,
}

impl FieldErrors {
    /// Whether every field is fine.
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.port.is_none() && self.domain.is_none() && self.email.is_none()
    }
}

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
    health_failures: Mutex<HashMap<String, u32>>,
    /// The last probes of each instance, newest last.
    health_log: Mutex<HashMap<String, std::collections::VecDeque<health::HealthSample>>>,
    router: Arc<AnyRouter>,
    /// The route last put for each instance, so unchanged routes are not
    /// sent again.
    last_routes: Mutex<HashMap<String, Route>>,
    /// Held for the whole of one route sync (read the record, put the
    /// route), so that the last sync to run always put the latest state.
    route_sync: tokio::sync::Mutex<()>,
    /// Names whose route may have changed, for the route loop.
    route_tx: tokio::sync::mpsc::UnboundedSender<String>,
    route_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
}

impl Manager {
    pub fn new(
        cfg: Config,
        store: Arc<Store>,
        releases: Releases,
        runtime: Arc<AnyRuntime>,
        router: Arc<AnyRouter>,
        events: EventBus,
    ) -> Result<Arc<Self>> {
        let (route_tx, route_rx) = tokio::sync::mpsc::unbounded_channel();
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| ManagerError::Invalid(format!("cannot build the http client: {e}")))?;
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
            health_failures: Mutex::new(HashMap::new()),
            health_log: Mutex::new(HashMap::new()),
            router,
            last_routes: Mutex::new(HashMap::new()),
            route_sync: tokio::sync::Mutex::new(()),
            route_tx,
            route_rx: Mutex::new(Some(route_rx)),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn store(&self) -> &Store {
        &self.store
    }
    pub fn releases(&self) -> &Releases {
        &self.releases
    }
    pub fn events(&self) -> &EventBus {
        &self.events
    }
    pub fn runtime(&self) -> &AnyRuntime {
        &self.runtime
    }
    pub fn router(&self) -> &AnyRouter {
        &self.router
    }

    fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .instance_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        locks.entry(name.to_string()).or_default().clone()
    }

    /// Append to the audit log and announce it. An audit write that fails
    /// is logged, not fatal: the operation itself already happened.
    pub fn audit(
        &self,
        actor: &Actor,
        action: &str,
        instance: Option<&str>,
        outcome: Result<String, String>,
    ) {
        let (ok, detail) = match &outcome {
            Ok(d) => (true, d.as_str()),
            Err(e) => (false, e.as_str()),
        };
        match self.store.append_audit(&NewAudit {
            actor: &actor.0,
            action,
            instance,
            ok,
            detail,
        }) {
            Ok(entry) => self.events.publish(Event::Audit { entry }),
            Err(e) => tracing::error!(error = %e, action, "cannot write the audit log"),
        }
    }

    fn audited<T>(
        &self,
        actor: &Actor,
        action: &str,
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

    /// How to launch an instance. With the systemd runtime this also sets
    /// the instance's own unit options (its resource limits), so that every
    /// start, restart and drift check renders the same unit.
    fn spec(&self, rec: &InstanceRecord) -> Result<LaunchSpec> {
        let spec = LaunchSpec {
            name: InstanceName::parse(&rec.name)?,
            binary: PathBuf::from(&rec.binary_path),
            instance_dir: PathBuf::from(&rec.dir),
            port: rec.port,
        };
        if let AnyRuntime::Systemd(systemd) = self.runtime.as_ref() {
            let mut options = systemd.config().options.clone();
            options.memory_max = rec.memory_max.clone();
            options.cpu_quota = rec.cpu_quota.clone();
            systemd.set_options(&spec.name, options);
        }
        Ok(spec)
    }

    /// Resolve and install the binary an instance should run.
    async fn install(&self, choice: &BinaryChoice) -> Result<Installed> {
        match choice {
            BinaryChoice::Local(path) => Ok(self.releases.install_local(path).await?),
            BinaryChoice::Release(req) => {
                let version = self.releases.resolve(req).await?;
                Ok(self.ensure_publishing(&version).await?)
            }
        }
    }

    /// [`Releases::ensure`], publishing the download's progress on the
    /// event bus while it runs (the dashboard shows it during a create or
    /// an upgrade). Nothing is published for a version already cached.
    async fn ensure_publishing(&self, version: &Version) -> Result<Installed, ReleaseError> {
        let ensure = self.releases.ensure(version);
        tokio::pin!(ensure);
        // The first poll answers from the cache, or starts the download (or
        // joins one in flight); from then on its progress channel exists.
        if let std::task::Poll::Ready(result) = futures::poll!(&mut ensure) {
            return result;
        }
        let mut progress = self.releases.progress(version);
        if let Some(rx) = progress.as_mut() {
            let now = rx.borrow_and_update().clone();
            self.events.publish(Event::Download { progress: now });
        }
        let mut finished = false;
        loop {
            if progress.is_none() && !finished {
                progress = self.releases.progress(version);
            }
            tokio::select! {
                result = &mut ensure => return result,
                changed = async {
                    match progress.as_mut() {
                        Some(rx) => rx.changed().await.is_ok(),
                        None => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            false
                        }
                    }
                }, if !finished => {
                    match (changed, progress.as_mut()) {
                        (true, Some(rx)) => {
                            let now = rx.borrow_and_update().clone();
                            self.events.publish(Event::Download { progress: now });
                        }
                        // The download ended: only its result is left to wait for.
                        (false, Some(_)) => finished = true,
                        _ => {}
                    }
                }
            }
        }
    }

    /// Install a release or a local binary into the cache, audited.
    pub async fn install_audited(&self, choice: &BinaryChoice, actor: &Actor) -> Result<Installed> {
        let what = match choice {
            BinaryChoice::Release(req) => req.to_string(),
            BinaryChoice::Local(path) => path.display().to_string(),
        };
        let result = self.install(choice).await;
        match &result {
            Ok(i) => self.audit(
                actor,
                "install",
                None,
                Ok(format!("{} from {}", i.version, i.source)),
            ),
            Err(e) => self.audit(actor, "install", None, Err(format!("{what}: {e}"))),
        }
        result
    }

    /// Choose a port: the requested one after checking it, or the next by
    /// seed 000's rule. Called under the allocation lock.
    fn choose_port(&self, requested: Option<u32>) -> Result<u16> {
        let used = self.store.used_ports()?;
        match requested {
            Some(raw) => {
                let port = ports::check_range(raw)?;
                if let Some(owner) = self.store.port_owner(port)? {
                    return Err(PortError::UsedByInstance { port, owner }.into());
                }
                if !port_is_free(port) {
                    return Err(PortError::NotFree(port).into());
                }
                Ok(port)
            }
            None => Ok(ports::next_port(&used, port_is_free)?),
        }
    }

    /// Check a create form's fields as typed, each on its own, with the
    /// same rules and messages a create gives (the dashboard's inline
    /// validation). Empty optional fields are valid.
    pub fn check_create_fields(&self, fields: &CreateFields<'_>) -> FieldErrors {
        let name = match InstanceName::parse(fields.name) {
            Err(e) => Some(ManagerError::from(e).to_string()),
            Ok(n) => match self.store.get_instance(n.as_str()) {
                Ok(Some(_)) => Some(StoreError::NameTaken(n.to_string()).to_string()),
                Ok(None) => None,
                Err(e) => Some(ManagerError::from(e).to_string()),
            },
        };
        let port = match fields.port.trim() {
            "" => None,
            raw => match raw.parse::<u32>() {
                Err(_) => Some(format!(
                    "port {} is not a number: give one from {} to 65535, or leave it empty to get one",
                    shown(raw),
                    ports::MIN_PORT
                )),
                Ok(p) => self.choose_port(Some(p)).err().map(|e| e.to_string()),
            },
        };
        let domain = match fields.domain.trim() {
            "" => None,
            raw => match Domain::parse(raw) {
                Err(e) => Some(ManagerError::from(e).to_string()),
                Ok(d) => match self.store.domain_owner(d.as_str()) {
                    Ok(Some(owner)) => Some(
                        StoreError::DomainTaken {
                            domain: d.to_string(),
                            owner,
                        }
                        .to_string(),
                    ),
                    Ok(None) => None,
                    Err(e) => Some(ManagerError::from(e).to_string()),
                },
            },
        };
        let email = match fields.email.trim() {
            "" => None,
            raw => pocketbase::check_email(raw)
                .err()
                .map(|e| ManagerError::from(e).to_string()),
        };
        FieldErrors {
            name,
            port,
            domain,
            email,
        }
    }

    /// Create an instance and bring it up. On any failure nothing is left
    /// behind: no row, no directory, no process, no port held.
    pub async fn create(&self, req: CreateRequest, actor: &Actor) -> Result<Created> {
        let name_for_audit = req.name.clone();
        let result = self.create_inner(req, actor, None).await;
        let label = if InstanceName::parse(&name_for_audit).is_ok() {
            name_for_audit
        } else {
            shown(&name_for_audit)
        };
        self.audited(actor, "create", &label, result, |c| {
            format!("version {} on port {}", c.instance.version, c.instance.port)
        })
    }

    async fn create_inner(
        &self,
        req: CreateRequest,
        actor: &Actor,
        compat: Option<(&UserId, PathBuf, u16)>,
    ) -> Result<Created> {
        let name = InstanceName::parse(&req.name)?;
        let domain = req.domain.as_deref().map(Domain::parse).transpose()?;
        if let Some(port) = req.port {
            ports::check_range(port)?;
        }
        if let Some(limit) = req.max_body_bytes {
            crate::model::routing::check_body_limit(limit).map_err(ManagerError::Invalid)?;
        }
        check_resource_limits(req.memory_max.as_deref(), req.cpu_quota.as_deref())?;
        let superuser = match (&req.superuser_email, &req.superuser_password) {
            (Some(email), password) => {
                pocketbase::check_email(email)?;
                let password = match password {
                    Some(p) => {
                        pocketbase::check_password(p)?;
                        p.clone()
                    }
                    None => pocketbase::generate_password(),
                };
                Some((email.clone(), password))
            }
            (None, Some(_)) => {
                return Err(ManagerError::Invalid(
                    "a superuser password was given without --superuser-email".to_string(),
                ))
            }
            (None, None) => None,
        };
        if self.store.get_instance(name.as_str())?.is_some() {
            return Err(StoreError::NameTaken(name.to_string()).into());
        }
        // Download before anything is reserved: a download error leaves
        // nothing behind.
        let installed = self.install(&req.binary).await?;

        let dir = match &compat {
            Some((_, dir, _)) => dir.clone(),
            None => self.layout.instance(name.as_str()),
        };
        if dir.exists() {
            return Err(ManagerError::Conflict(format!(
                "{} already exists but belongs to no instance: move it away or delete it, then create again",
                dir.display()
            )));
        }
        let now = Utc::now();
        let rec = {
            let _allocation = self.allocation.lock().await;
            let port = match &compat {
                Some((user, _, base)) => {
                    let used = self.store.used_ports()?;
                    ports::user_port(*base, user.as_str(), &used, port_is_free)?
                }
                None => self.choose_port(req.port)?,
            };
            let rec = InstanceRecord {
                name: name.to_string(),
                port,
                version: installed.version.to_string(),
                binary_path: installed.binary.display().to_string(),
                dir: dir.display().to_string(),
                domain: domain.map(|d| d.to_string()),
                desired: DesiredState::Running,
                status: Status::Starting,
                phase: Phase::Creating,
                pid: None,
                restarts: 0,
                superuser_email: superuser.as_ref().map(|(e, _)| e.clone()),
                compat_user: compat.as_ref().map(|(u, _, _)| u.to_string()),
                systemd_config_hash: None,
                caddy_config_hash: None,
                created_by: actor.0.clone(),
                created_at: now,
                updated_at: now,
                last_health_check: None,
                last_error: None,
                max_body_bytes: req.max_body_bytes,
                memory_max: req.memory_max.clone(),
                cpu_quota: req.cpu_quota.clone(),
            };
            self.store.insert_instance(&rec)?;
            rec
        };
        let lock = self.lock_for(&rec.name);
        let _guard = lock.lock().await;
        match self
            .bring_up_new(&rec, &installed, superuser.as_ref())
            .await
        {
            Ok(pid) => {
                let mut ready = rec.clone();
                ready.phase = Phase::Ready;
                self.store.update_config(&ready, &actor.0)?;
                self.set_state(&rec.name, Status::Running, Some(pid), 0, None);
                self.record_unit_hash(&rec.name);
                if let Some((email, password)) = &superuser {
                    self.trust_router(&rec, &installed.version, email, password)
                        .await;
                }
                self.sync_route_now(&rec.name).await;
                let instance = self.get(&rec.name)?;
                Ok(Created {
                    instance,
                    superuser,
                })
            }
            Err(e) => {
                self.roll_back_create(&rec).await;
                Err(e)
            }
        }
    }

    async fn bring_up_new(
        &self,
        rec: &InstanceRecord,
        installed: &Installed,
        superuser: Option<&(String, String)>,
    ) -> Result<u32> {
        let spec = self.spec(rec)?;
        spec.create_layout().map_err(|source| ManagerError::Io {
            context: format!("cannot create {}", spec.instance_dir.display()),
            source,
        })?;
        self.give_to_unit_user(&spec.instance_dir).await?;
        self.runtime.start(spec.clone()).await?;
        let pid = self.wait_healthy(&spec).await?;
        if let Some((email, password)) = superuser {
            pocketbase::upsert_superuser(
                &installed.binary,
                &installed.version,
                &spec.data_dir(),
                email,
                password,
            )
            .await?;
        }
        Ok(pid)
    }

    /// With the systemd runtime and a named unit user, the instance's files
    /// must belong to that user (the unit runs as it); a no-op otherwise.
    async fn give_to_unit_user(&self, dir: &Path) -> Result<()> {
        let crate::runtime::systemd::UnitUser::Named(user) = &self.cfg.systemd.user else {
            return Ok(());
        };
        if !matches!(*self.runtime, AnyRuntime::Systemd(_)) {
            return Ok(());
        }
        let found = nix::unistd::User::from_name(user).ok().flatten();
        let Some(found) = found else {
            return Err(ManagerError::Invalid(format!(
                "the unit user {user} does not exist: create it (useradd --system {user}) or pass --unit-user"
            )));
        };
        let (uid, gid, dir) = (found.uid, found.gid, dir.to_path_buf());
        tokio::task::spawn_blocking(move || chown_tree(&dir, uid, gid))
            .await
            .map_err(|e| ManagerError::Invalid(format!("chown task failed: {e}")))?
            .map_err(|source| ManagerError::Io {
                context: format!("cannot give the instance's files to {user}"),
                source,
            })
    }

    /// With the systemd runtime, store the hash of the unit just written
    /// (seed 000's `systemd_config_hash`).
    fn record_unit_hash(&self, name: &str) {
        let AnyRuntime::Systemd(systemd) = self.runtime.as_ref() else {
            return;
        };
        let Ok(rec) = self.get(name) else { return };
        let Ok(spec) = self.spec(&rec) else { return };
        if let Ok(text) = systemd.render(&spec) {
            let hash = crate::runtime::systemd::unit_hash(&text);
            if let Err(e) = self.store.set_systemd_hash(name, Some(&hash)) {
                tracing::warn!(instance = name, error = %e, "cannot record the unit hash");
            }
        }
    }

    /// With the systemd runtime: the instance's unit name, and how the unit
    /// on disk differs from what it should be (`None` when it matches).
    /// `None` with the embedded supervisor.
    pub fn unit_status(&self, rec: &InstanceRecord) -> Option<(String, Option<String>)> {
        let AnyRuntime::Systemd(systemd) = self.runtime.as_ref() else {
            return None;
        };
        let spec = self.spec(rec).ok()?;
        Some((systemd.unit_name(&spec.name), systemd.drift(&spec)))
    }

    /// With the systemd runtime: units that differ from what they should be.
    pub fn check_units(&self) -> Vec<crate::router::Drift> {
        self.list()
            .unwrap_or_default()
            .iter()
            .filter_map(|rec| {
                let detail = self.unit_status(rec)?.1?;
                let missing = detail.ends_with("is missing");
                Some(crate::router::Drift {
                    instance: Some(rec.name.clone()),
                    kind: if missing {
                        "unit missing"
                    } else {
                        "unit changed"
                    }
                    .to_string(),
                    detail,
                })
            })
            .collect()
    }

    /// `doctor --repair` for units: write them back and `daemon-reload`.
    /// The names of the units put back.
    pub async fn repair_units(&self, actor: &Actor) -> Result<Vec<String>> {
        let AnyRuntime::Systemd(systemd) = self.runtime.as_ref() else {
            return Ok(Vec::new());
        };
        let mut repaired = Vec::new();
        for drift in self.check_units() {
            let Some(name) = drift.instance else { continue };
            let rec = self.get(&name)?;
            let spec = self.spec(&rec)?;
            let hash = systemd.rewrite(&spec).await?;
            self.store.set_systemd_hash(&name, Some(&hash))?;
            self.audit(
                actor,
                "repair",
                Some(&name),
                Ok(format!("unit put back ({})", drift.detail)),
            );
            repaired.push(name);
        }
        Ok(repaired)
    }

    async fn roll_back_create(&self, rec: &InstanceRecord) {
        if let Ok(name) = InstanceName::parse(&rec.name) {
            if let Err(e) = self.runtime.stop(&name).await {
                tracing::warn!(error = %e, instance = %rec.name, "rollback: cannot stop the process");
            }
            if let Err(e) = self.runtime.uninstall(&name).await {
                tracing::warn!(error = %e, instance = %rec.name, "rollback: cannot remove what the runtime kept");
            }
        }
        if let Err(e) = remove_dir_if_exists(Path::new(&rec.dir)) {
            tracing::warn!(error = %e, dir = %rec.dir, "rollback: cannot remove the instance directory");
        }
        if let Err(e) = self.store.delete_instance(&rec.name) {
            tracing::error!(error = %e, instance = %rec.name, "rollback: cannot delete the row");
        }
    }

    /// Wait until the instance answers `/api/health`, or fail when its
    /// process gives up (crash loop) or the start timeout passes.
    async fn wait_healthy(&self, spec: &LaunchSpec) -> Result<u32> {
        let deadline = Instant::now() + self.cfg.start_timeout;
        let mut delay = Duration::from_millis(5);
        loop {
            let observed = self.runtime.observe(&spec.name);
            match observed.as_ref().map(|o| o.phase) {
                Some(RunPhase::CrashLoop) => {
                    return Err(self.start_failed(spec, "it keeps exiting right after start"));
                }
                Some(RunPhase::Stopped) | None => {
                    return Err(self.start_failed(spec, "its process is not running"));
                }
                _ => {}
            }
            if let Some(pid) = observed.and_then(|o| o.pid) {
                if pocketbase::is_healthy(&self.http, spec.port, Duration::from_secs(2)).await {
                    return Ok(pid);
                }
            }
            if Instant::now() > deadline {
                return Err(self.start_failed(
                    spec,
                    &format!(
                        "no answer on /api/health within {:?}",
                        self.cfg.start_timeout
                    ),
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    fn start_failed(&self, spec: &LaunchSpec, reason: &str) -> ManagerError {
        ManagerError::StartFailed {
            name: spec.name.to_string(),
            reason: reason.to_string(),
            log_tail: tail_lines(&spec.log_file(), 5).unwrap_or_default(),
        }
    }

    pub async fn start(&self, name: &str, actor: &Actor) -> Result<InstanceRecord> {
        let result = self.start_inner(name, actor).await;
        self.audited(actor, "start", name, result, |r| {
            format!("pid {}", r.pid.unwrap_or(0))
        })
    }

    async fn start_inner(&self, name: &str, actor: &Actor) -> Result<InstanceRecord> {
        let lock = self.lock_for(name);
        let _guard = lock.lock().await;
        let mut rec = self.get(name)?;
        let spec = self.spec(&rec)?;
        if rec.desired != DesiredState::Running {
            rec.desired = DesiredState::Running;
            self.store.update_config(&rec, &actor.0)?;
        }
        let running = matches!(
            self.runtime.observe(&spec.name).map(|o| o.phase),
            Some(RunPhase::Running | RunPhase::BackingOff)
        );
        if !running {
            self.set_state(name, Status::Starting, None, rec.restarts, None);
            self.runtime.start(spec.clone()).await?;
        }
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
        self.audited(actor, "stop", name, result, |_| "stopped".to_string())
    }

    async fn stop_inner(&self, name: &str, actor: &Actor) -> Result<InstanceRecord> {
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
        self.runtime.stop(&InstanceName::parse(name)?).await?;
        self.set_state(name, Status::Stopped, None, rec.restarts, None);
        self.get(name)
    }

    pub async fn restart(&self, name: &str, actor: &Actor) -> Result<InstanceRecord> {
        let result = async {
            {
                let lock = self.lock_for(name);
                let _guard = lock.lock().await;
                let rec = self.get(name)?;
                self.runtime.stop(&InstanceName::parse(name)?).await?;
                self.set_state(name, Status::Stopped, None, rec.restarts, None);
            }
            self.start_inner(name, actor).await
        }
        .await;
        self.audited(actor, "restart", name, result, |r| {
            format!("pid {}", r.pid.unwrap_or(0))
        })
    }

    /// Stop, archive (unless `purge`), and remove an instance.
    pub async fn delete(&self, name: &str, purge: bool, actor: &Actor) -> Result<Option<PathBuf>> {
        let result = self.delete_inner(name, purge).await;
        self.audited(actor, "delete", name, result, |archive| match archive {
            Some(path) => format!("data archived to {}", path.display()),
            None => "purged without archive".to_string(),
        })
    }

    async fn delete_inner(&self, name: &str, purge: bool) -> Result<Option<PathBuf>> {
        let lock = self.lock_for(name);
        let _guard = lock.lock().await;
        let rec = self.get(name)?;
        let instance = InstanceName::parse(name)?;
        let was_running = rec.desired == DesiredState::Running;
        self.runtime.stop(&instance).await?;
        let dir = PathBuf::from(&rec.dir);
        let archive = if purge {
            None
        } else {
            let archive_dir = self.layout.archive();
            let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
            let target = archive_dir.join(format!("{name}-{stamp}.tar.gz"));
            let made = tokio::task::spawn_blocking({
                let dir = dir.clone();
                let target = target.clone();
                let name = name.to_string();
                move || archive_dir_to(&dir, &name, &target)
            })
            .await
            .map_err(|e| ManagerError::Invalid(format!("archive task failed: {e}")))
            .and_then(|r| {
                r.map_err(|source| ManagerError::Io {
                    context: format!("cannot archive {} to {}", dir.display(), target.display()),
                    source,
                })
            });
            if let Err(e) = made {
                // Nothing is deleted when the archive cannot be written.
                if was_running {
                    if let Ok(spec) = self.spec(&rec) {
                        let _ = self.runtime.start(spec).await;
                    }
                }
                return Err(e);
            }
            Some(target)
        };
        remove_dir_if_exists(&dir).map_err(|source| ManagerError::Io {
            context: format!("cannot remove {}", dir.display()),
            source,
        })?;
        self.runtime.uninstall(&instance).await?;
        self.store.delete_instance(name)?;
        self.health_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.sync_route_now(name).await;
        self.events.publish(Event::InstanceRemoved {
            name: name.to_string(),
        });
        Ok(archive)
    }

    /// Change the domain or port of an instance. A port change restarts a
    /// running instance on the new port.
    pub async fn update(
        &self,
        name: &str,
        req: UpdateRequest,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        let result = self.update_inner(name, req, actor).await;
        self.audited(actor, "update", name, result, |r| {
            format!(
                "port {}, domain {}",
                r.port,
                r.domain.as_deref().unwrap_or("-")
            )
        })
    }

    async fn update_inner(
        &self,
        name: &str,
        req: UpdateRequest,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        let lock = self.lock_for(name);
        let _guard = lock.lock().await;
        let mut rec = self.get(name)?;
        if let Some(domain) = &req.domain {
            rec.domain = domain
                .as_deref()
                .map(Domain::parse)
                .transpose()?
                .map(|d| d.to_string());
        }
        if let Some(limit) = req.max_body_bytes {
            if let Some(bytes) = limit {
                crate::model::routing::check_body_limit(bytes).map_err(ManagerError::Invalid)?;
            }
            rec.max_body_bytes = limit;
        }
        let mut limits_changed = false;
        if let Some(memory) = &req.memory_max {
            check_resource_limits(memory.as_deref(), None)?;
            limits_changed |= rec.memory_max != *memory;
            rec.memory_max = memory.clone();
        }
        if let Some(quota) = &req.cpu_quota {
            check_resource_limits(None, quota.as_deref())?;
            limits_changed |= rec.cpu_quota != *quota;
            rec.cpu_quota = quota.clone();
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
            let instance = InstanceName::parse(name)?;
            self.runtime.stop(&instance).await?;
            let spec = self.spec(&rec)?;
            self.runtime.start(spec.clone()).await?;
            let pid = self.wait_healthy(&spec).await?;
            self.set_state(name, Status::Running, Some(pid), rec.restarts, None);
        }
        self.record_unit_hash(name);
        // Domain, port and body limit all shape the route.
        self.sync_route_now(name).await;
        self.get(name)
    }

    /// Create or reset an instance's superuser. Returns the password (the
    /// given one, or a generated one to show once).
    pub async fn set_superuser(
        &self,
        name: &str,
        email: &str,
        password: Option<String>,
        actor: &Actor,
    ) -> Result<String> {
        let result = async {
            pocketbase::check_email(email)?;
            let password = match password {
                Some(p) => {
                    pocketbase::check_password(&p)?;
                    p
                }
                None => pocketbase::generate_password(),
            };
            let lock = self.lock_for(name);
            let _guard = lock.lock().await;
            let mut rec = self.get(name)?;
            let version = parse_stored_version(&rec.version)?;
            let spec = self.spec(&rec)?;
            pocketbase::upsert_superuser(
                &spec.binary,
                &version,
                &spec.data_dir(),
                email,
                &password,
            )
            .await?;
            rec.superuser_email = Some(email.to_string());
            self.store.update_config(&rec, &actor.0)?;
            if rec.status == Status::Running {
                self.trust_router(&rec, &version, email, &password).await;
            }
            Ok(password)
        }
        .await;
        self.audited(actor, "superuser", name, result, |_| {
            format!("superuser {email} saved")
        })
    }

    /// Switch an instance to another PocketBase: snapshot `pb_data`, stop,
    /// switch the binary, start, wait for health; if it does not become
    /// healthy, restore the snapshot and the old binary and say so.
    pub async fn upgrade(
        &self,
        name: &str,
        to: BinaryChoice,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        let result = self.upgrade_inner(name, to, actor).await;
        self.audited(actor, "upgrade", name, result, |r| {
            format!("now at {}", r.version)
        })
    }

    async fn upgrade_inner(
        &self,
        name: &str,
        to: BinaryChoice,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        // Download first, outside the lock: the instance keeps running while
        // the new release arrives, and a download error changes nothing.
        self.get(name)?;
        let installed = self.install(&to).await?;
        let lock = self.lock_for(name);
        let _guard = lock.lock().await;
        let old = self.get(name)?;
        if old.binary_path == installed.binary.display().to_string() {
            return Err(ManagerError::Conflict(format!(
                "{name} already runs {} ({})",
                old.version,
                installed.binary.display()
            )));
        }
        let instance = InstanceName::parse(name)?;
        let was_running = old.desired == DesiredState::Running;
        self.runtime.stop(&instance).await?;
        self.set_state(name, Status::Stopped, None, old.restarts, None);
        let data_dir = self.spec(&old)?.data_dir();
        let snapshot = PathBuf::from(&old.dir).join("snapshots").join(format!(
            "pre-upgrade-{}-{}",
            old.version,
            Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        ));
        let copied = tokio::task::spawn_blocking({
            let (from, to) = (data_dir.clone(), snapshot.clone());
            move || copy_dir(&from, &to)
        })
        .await
        .map_err(|e| ManagerError::Invalid(format!("snapshot task failed: {e}")))
        .and_then(|r| {
            r.map_err(|source| ManagerError::Io {
                context: format!(
                    "cannot snapshot {} to {}",
                    data_dir.display(),
                    snapshot.display()
                ),
                source,
            })
        });
        if let Err(e) = copied {
            if was_running {
                let _ = self.runtime.start(self.spec(&old)?).await;
            }
            return Err(e);
        }
        let mut new = old.clone();
        new.version = installed.version.to_string();
        new.binary_path = installed.binary.display().to_string();
        new.desired = DesiredState::Running;
        // Should the daemon die from here on, its next start finds this
        // marker and finishes the upgrade or rolls it back (`recover`).
        let marker = UpgradeMarker {
            from_version: old.version.clone(),
            from_binary: old.binary_path.clone(),
            to_version: new.version.clone(),
            snapshot: snapshot.clone(),
            was_running,
        };
        marker
            .write(Path::new(&old.dir))
            .map_err(|source| ManagerError::Io {
                context: format!("cannot record the upgrade of {name}"),
                source,
            })?;
        self.store.update_config(&new, &actor.0)?;
        let spec = self.spec(&new)?;
        self.set_state(name, Status::Starting, None, old.restarts, None);
        let outcome = match self.runtime.start(spec.clone()).await {
            Ok(_) => self.wait_healthy(&spec).await,
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(pid) => {
                UpgradeMarker::clear(Path::new(&old.dir));
                self.record_unit_hash(name);
                prune_snapshots(&PathBuf::from(&old.dir).join("snapshots"), 3);
                if was_running {
                    self.set_state(name, Status::Running, Some(pid), old.restarts, None);
                } else {
                    // The new version was started only to prove it works: a
                    // stopped instance stays stopped after its upgrade.
                    self.runtime.stop(&instance).await?;
                    new.desired = DesiredState::Stopped;
                    self.store.update_config(&new, &actor.0)?;
                    self.set_state(name, Status::Stopped, None, old.restarts, None);
                }
                self.get(name)
            }
            Err(e) => {
                let reason = match &e {
                    ManagerError::StartFailed { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                tracing::warn!(instance = name, %reason, "upgrade failed, rolling back");
                let _ = self.runtime.stop(&instance).await;
                let restored = tokio::task::spawn_blocking({
                    let (snap, data) = (snapshot.clone(), data_dir.clone());
                    move || restore_dir(&snap, &data)
                })
                .await;
                if !matches!(restored, Ok(Ok(()))) {
                    let msg = format!(
                        "upgrade of {name} failed ({reason}) and its data could not be restored automatically: the snapshot is at {}",
                        snapshot.display()
                    );
                    self.set_state(name, Status::Failed, None, old.restarts, Some(&msg));
                    return Err(ManagerError::Invalid(msg));
                }
                let mut back = old.clone();
                back.desired = if was_running {
                    DesiredState::Running
                } else {
                    DesiredState::Stopped
                };
                self.store.update_config(&back, &actor.0)?;
                UpgradeMarker::clear(Path::new(&old.dir));
                self.give_to_unit_user(Path::new(&old.dir)).await?;
                if was_running {
                    let old_spec = self.spec(&back)?;
                    self.runtime.start(old_spec.clone()).await?;
                    let pid = self.wait_healthy(&old_spec).await?;
                    self.set_state(name, Status::Running, Some(pid), old.restarts, None);
                } else {
                    self.set_state(name, Status::Stopped, None, old.restarts, None);
                }
                Err(ManagerError::UpgradeRolledBack {
                    name: name.to_string(),
                    from: old.version.clone(),
                    to: new.version.clone(),
                    reason,
                })
            }
        }
    }

    /// The configuration history of an instance, oldest first.
    /// The last health probes of an instance, oldest first.
    pub fn health_history(&self, name: &str) -> Vec<health::HealthSample> {
        self.health_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn history(&self, name: &str) -> Result<Vec<crate::store::ConfigChange>> {
        self.get(name)?;
        Ok(self.store.config_history(name)?)
    }

    /// The log file of an instance.
    pub fn log_file(&self, name: &str) -> Result<PathBuf> {
        let rec = self.get(name)?;
        Ok(self.spec(&rec)?.log_file())
    }

    /// The last `n` lines of an instance's log (reaching into the rotated
    /// file when the current one is short).
    pub fn log_tail(&self, name: &str, n: usize) -> Result<Vec<String>> {
        let path = self.log_file(name)?;
        let mut lines = tail_lines(&path, n).map_err(|source| ManagerError::Io {
            context: format!("cannot read {}", path.display()),
            source,
        })?;
        if lines.len() < n {
            let rotated = PathBuf::from(format!("{}.1", path.display()));
            if let Ok(mut older) = tail_lines(&rotated, n - lines.len()) {
                older.append(&mut lines);
                lines = older;
            }
        }
        Ok(lines)
    }

    // --- seed 001's per-user API --------------------------------------------

    /// Seed 001's `init_pb`: make sure the user's instance exists and runs;
    /// with `force_restart`, restart it.
    pub async fn init_user(
        &self,
        user: &UserId,
        force_restart: bool,
        actor: &Actor,
    ) -> Result<(InstanceRecord, String)> {
        let name = user.instance_name();
        match self.store.get_instance_by_user(user.as_str())? {
            Some(rec) => {
                let running = rec.status == Status::Running
                    && matches!(
                        self.runtime.observe(&name).map(|o| o.phase),
                        Some(RunPhase::Running)
                    );
                if force_restart {
                    let rec = self.restart(&rec.name, actor).await?;
                    let msg = format!("PocketBase instance restarted on port {}", rec.port);
                    Ok((rec, msg))
                } else if running {
                    let msg = format!("PocketBase instance already running on port {}", rec.port);
                    Ok((rec, msg))
                } else {
                    let rec = self.start(&rec.name, actor).await?;
                    let msg = format!("PocketBase instance initialized on port {}", rec.port);
                    Ok((rec, msg))
                }
            }
            None => {
                let binary = match &self.cfg.compat.binary_path {
                    Some(path) => BinaryChoice::Local(path.clone()),
                    None => BinaryChoice::Release(self.default_user_version()?),
                };
                let dir = self
                    .cfg
                    .compat
                    .user_dbs_path
                    .join(format!("pb_user_{}", user.as_str()));
                let req = CreateRequest {
                    name: name.to_string(),
                    binary,
                    port: None,
                    domain: None,
                    superuser_email: None,
                    superuser_password: None,
                    max_body_bytes: None,
                    memory_max: None,
                    cpu_quota: None,
                };
                let result = self
                    .create_inner(req, actor, Some((user, dir, self.cfg.compat.base_port)))
                    .await;
                let created = self.audited(actor, "create", name.as_str(), result, |c| {
                    format!("for user {} on port {}", user.as_str(), c.instance.port)
                })?;
                let msg = format!(
                    "PocketBase instance initialized on port {}",
                    created.instance.port
                );
                Ok((created.instance, msg))
            }
        }
    }

    /// The release user instances run when `PB_BINARY_PATH` is not set:
    /// the newest installed one, so that a host without network keeps
    /// working, else `latest` from the sources.
    fn default_user_version(&self) -> Result<VersionRequest> {
        let newest = self
            .releases
            .installed()?
            .into_iter()
            .map(|i| i.version)
            .filter(|v| v.pre.is_empty())
            .max();
        Ok(match newest {
            Some(v) => VersionRequest::Exact(v),
            None => VersionRequest::Latest,
        })
    }

    pub fn get_user(&self, user: &UserId) -> Result<Option<InstanceRecord>> {
        Ok(self
            .store
            .get_instance_by_user(user.as_str())?
            .filter(|r| r.phase == Phase::Ready))
    }

    pub fn list_users(&self) -> Result<Vec<InstanceRecord>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| r.compat_user.is_some())
            .collect())
    }

    // --- background work ------------------------------------------------------

    /// Bring the runtime in line with the store after a daemon start:
    /// half-made creates are rolled back; instances that should run are
    /// adopted when their process is still alive (no restart) and started
    /// otherwise; instances that should be stopped are stopped.
    pub async fn recover(&self) -> Result<()> {
        let actor = Actor::daemon();
        let records = self.store.list_instances()?;
        let mut tasks = Vec::new();
        for rec in records {
            tasks.push(async move {
                let name = rec.name.clone();
                if let Err(e) = self.recover_one(rec, &Actor::daemon()).await {
                    tracing::error!(instance = %name, error = %e, "cannot recover instance");
                    self.audit(&Actor::daemon(), "recover", Some(&name), Err(e.to_string()));
                }
            });
        }
        futures::future::join_all(tasks).await;
        let _ = actor;
        Ok(())
    }

    async fn recover_one(&self, rec: InstanceRecord, actor: &Actor) -> Result<()> {
        let lock = self.lock_for(&rec.name);
        let _guard = lock.lock().await;
        let spec = self.spec(&rec)?;
        if rec.phase == Phase::Creating {
            if let Ok(Some(_)) = self.runtime.adopt(spec.clone()).await {
                let _ = self.runtime.stop(&spec.name).await;
            }
            self.roll_back_create(&rec).await;
            self.audit(
                actor,
                "create",
                Some(&rec.name),
                Err("rolled back: the daemon stopped in the middle of the create".to_string()),
            );
            return Ok(());
        }
        let rec = match UpgradeMarker::read(Path::new(&rec.dir)) {
            Some(marker) => self.finish_interrupted_upgrade(rec, marker, actor).await?,
            None => rec,
        };
        let spec = self.spec(&rec)?;
        let adopted = self.runtime.adopt(spec.clone()).await?;
        match (rec.desired, adopted) {
            (DesiredState::Running, Some(pid)) => {
                tracing::info!(instance = %rec.name, pid, "adopted running instance");
                self.set_state(&rec.name, Status::Running, Some(pid), rec.restarts, None);
                self.audit(actor, "adopt", Some(&rec.name), Ok(format!("pid {pid}")));
            }
            (DesiredState::Running, None) => {
                self.set_state(&rec.name, Status::Starting, None, rec.restarts, None);
                self.runtime.start(spec.clone()).await?;
                match self.wait_healthy(&spec).await {
                    Ok(pid) => {
                        self.set_state(&rec.name, Status::Running, Some(pid), rec.restarts, None);
                        self.audit(
                            actor,
                            "start",
                            Some(&rec.name),
                            Ok(format!("pid {pid} (was not running at daemon start)")),
                        );
                    }
                    Err(e) => {
                        self.set_state(
                            &rec.name,
                            Status::Failed,
                            None,
                            rec.restarts,
                            Some(&e.to_string()),
                        );
                        return Err(e);
                    }
                }
            }
            (DesiredState::Stopped, Some(_)) => {
                self.runtime.stop(&spec.name).await?;
                self.set_state(&rec.name, Status::Stopped, None, rec.restarts, None);
            }
            (DesiredState::Stopped, None) => {
                if rec.status != Status::Stopped {
                    self.set_state(&rec.name, Status::Stopped, None, rec.restarts, None);
                }
            }
        }
        Ok(())
    }

    /// The daemon stopped in the middle of an upgrade. If the new version
    /// runs and answers, the upgrade is done; otherwise the data is put back
    /// from the snapshot and the old version is recorded again. Returns the
    /// record to recover with.
    async fn finish_interrupted_upgrade(
        &self,
        mut rec: InstanceRecord,
        marker: UpgradeMarker,
        actor: &Actor,
    ) -> Result<InstanceRecord> {
        let spec = self.spec(&rec)?;
        if let Some(_pid) = self.runtime.adopt(spec.clone()).await? {
            if rec.version == marker.to_version
                && pocketbase::is_healthy(&self.http, rec.port, Duration::from_secs(3)).await
            {
                UpgradeMarker::clear(Path::new(&rec.dir));
                self.audit(
                    actor,
                    "upgrade",
                    Some(&rec.name),
                    Ok(format!(
                        "now at {} (finished after a daemon restart)",
                        rec.version
                    )),
                );
                return Ok(rec);
            }
            self.runtime.stop(&spec.name).await?;
        }
        let data_dir = spec.data_dir();
        let snapshot = marker.snapshot.clone();
        tokio::task::spawn_blocking(move || restore_dir(&snapshot, &data_dir))
            .await
            .map_err(|e| ManagerError::Invalid(format!("restore task failed: {e}")))?
            .map_err(|source| ManagerError::Io {
                context: format!(
                    "the upgrade of {} was interrupted and its snapshot {} cannot be restored",
                    rec.name,
                    marker.snapshot.display()
                ),
                source,
            })?;
        self.give_to_unit_user(Path::new(&rec.dir)).await?;
        rec.version = marker.from_version.clone();
        rec.binary_path = marker.from_binary.clone();
        rec.desired = if marker.was_running {
            DesiredState::Running
        } else {
            DesiredState::Stopped
        };
        self.store.update_config(&rec, &actor.0)?;
        UpgradeMarker::clear(Path::new(&rec.dir));
        self.audit(
            actor,
            "upgrade",
            Some(&rec.name),
            Err(format!(
                "the upgrade to {} was interrupted by a daemon stop: rolled back to {} with its data as before",
                marker.to_version, marker.from_version
            )),
        );
        Ok(rec)
    }

    /// Follow the runtime's events: record crashes, restarts and crash
    /// loops, and watch restarted instances until they are healthy again.
    pub async fn follow_runtime(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut rx = self.runtime.subscribe();
        loop {
            let event = tokio::select! {
                _ = shutdown.changed() => return,
                ev = rx.recv() => ev,
            };
            let event = match event {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "runtime events lagged");
                    continue;
                }
                Err(_) => return,
            };
            self.on_runtime_event(event);
        }
    }

    fn on_runtime_event(self: &Arc<Self>, event: RuntimeEvent) {
        // While an instance is being created, its create operation watches
        // it and reports the outcome; crashes there are part of that story.
        let creating = matches!(
            self.store.get_instance(event.name().as_str()),
            Ok(Some(InstanceRecord {
                phase: Phase::Creating,
                ..
            }))
        );
        if creating {
            return;
        }
        match event {
            RuntimeEvent::Exited {
                name,
                pid,
                code,
                signal,
                expected: false,
            } => {
                let restarts = self.runtime.observe(&name).map(|o| o.restarts).unwrap_or(0);
                let why = match (code, signal) {
                    (_, Some(sig)) => format!("killed by signal {sig}"),
                    (Some(c), None) => format!("exited with status {c}"),
                    _ => "exited".to_string(),
                };
                self.set_state(name.as_str(), Status::Starting, None, restarts, Some(&why));
                self.audit(
                    &Actor::daemon(),
                    "crash",
                    Some(name.as_str()),
                    Err(format!("pid {pid} {why}")),
                );
            }
            RuntimeEvent::Spawned { name, pid } => {
                let restarts = self.runtime.observe(&name).map(|o| o.restarts).unwrap_or(0);
                if restarts > 0 {
                    // A restart after a crash: report `running` as soon as
                    // the new process answers.
                    let this = self.clone();
                    tokio::spawn(async move { this.watch_restart(name, pid, restarts).await });
                }
            }
            RuntimeEvent::CrashLoop { name, crashes } => {
                let msg = format!("crashed {crashes} times in a row: stopped restarting it; see `pockestrator logs {name}`, then `pockestrator start {name}`");
                let restarts = self.runtime.observe(&name).map(|o| o.restarts).unwrap_or(0);
                self.set_state(name.as_str(), Status::Failed, None, restarts, Some(&msg));
                self.audit(
                    &Actor::daemon(),
                    "crash-loop",
                    Some(name.as_str()),
                    Err(msg),
                );
            }
            RuntimeEvent::Exited { .. }
            | RuntimeEvent::RestartScheduled { .. }
            | RuntimeEvent::Adopted { .. } => {}
        }
    }

    async fn watch_restart(&self, name: InstanceName, pid: u32, restarts: u32) {
        let Ok(Some(rec)) = self.store.get_instance(name.as_str()) else {
            return;
        };
        self.set_state(
            name.as_str(),
            Status::Starting,
            Some(pid),
            restarts,
            rec.last_error.as_deref(),
        );
        let deadline = Instant::now() + self.cfg.start_timeout;
        while Instant::now() < deadline {
            let current = self.runtime.observe(&name);
            if current.as_ref().and_then(|o| o.pid) != Some(pid) {
                return; // superseded by another restart or a stop
            }
            if pocketbase::is_healthy(&self.http, rec.port, Duration::from_secs(1)).await {
                self.set_state(name.as_str(), Status::Running, Some(pid), restarts, None);
                self.audit(
                    &Actor::daemon(),
                    "restart",
                    Some(name.as_str()),
                    Ok(format!("running again as pid {pid}")),
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// One round of health checks over every instance that should run.
    /// Returns how many were probed.
    pub async fn health_round(&self) -> usize {
        let records = match self.list() {
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
                let name = InstanceName::parse(&r.name).ok()?;
                let observed = self.runtime.observe(&name)?;
                (observed.phase == RunPhase::Running).then_some((r, name, observed))
            })
            .collect();
        let probes = candidates.iter().map(|(rec, _, _)| async {
            let started = std::time::Instant::now();
            let healthy =
                pocketbase::is_healthy(&self.http, rec.port, Duration::from_secs(3)).await;
            (healthy, started.elapsed())
        });
        let results = futures::future::join_all(probes).await;
        let now = Utc::now();
        let mut checked = Vec::with_capacity(candidates.len());
        let mut restarts = Vec::new();
        for ((rec, name, observed), (healthy, took)) in candidates.iter().zip(results) {
            checked.push((rec.name.clone(), now));
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
                Verdict::Restart => restarts.push((rec, name, observed.restarts, failures)),
            }
        }
        // Restarts wait for health: run them side by side, not one after
        // the other, so one hung instance does not hold up the rest.
        futures::future::join_all(restarts.into_iter().map(|(rec, name, restarts, failures)| {
            self.health_restart(rec, name, restarts, failures)
        }))
        .await;
        if let Err(e) = self.store.set_health_checks(&checked) {
            tracing::error!(error = %e, "health: cannot record check times");
        }
        checked.len()
    }

    /// Restart an instance that failed its health checks too often, and
    /// report it running again once it answers.
    async fn health_restart(
        &self,
        rec: &InstanceRecord,
        name: &InstanceName,
        restarts: u32,
        failures: u32,
    ) {
        let msg = format!("{failures} failed health checks in a row: restarting");
        self.audit(
            &Actor::daemon(),
            "health-restart",
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
        let pid = match self.runtime.restart(name).await {
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
        let outcome = match self.spec(rec) {
            Ok(spec) => self.wait_healthy(&spec).await.map(|_| ()),
            Err(e) => Err(e),
        };
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
}

/// An upgrade in progress, recorded in the instance directory while the
/// binary is switched, so that a daemon that dies in the middle can finish
/// or undo it on its next start.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct UpgradeMarker {
    from_version: String,
    from_binary: String,
    to_version: String,
    snapshot: PathBuf,
    was_running: bool,
}

impl UpgradeMarker {
    const FILE: &'static str = "upgrade-in-progress.json";

    fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::fs::write(tmp.path(), text)?;
        tmp.as_file().sync_all()?;
        tmp.persist(dir.join(Self::FILE)).map_err(|e| e.error)?;
        Ok(())
    }

    fn read(dir: &Path) -> Option<UpgradeMarker> {
        let text = std::fs::read(dir.join(Self::FILE)).ok()?;
        match serde_json::from_slice(&text) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "unreadable upgrade marker: left in place");
                None
            }
        }
    }

    fn clear(dir: &Path) {
        if let Err(e) = std::fs::remove_file(dir.join(Self::FILE)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::error!(dir = %dir.display(), error = %e, "cannot remove the upgrade marker");
            }
        }
    }
}

fn shown_name(name: &str) -> String {
    if InstanceName::parse(name).is_ok() {
        name.to_string()
    } else {
        shown(name)
    }
}

fn parse_stored_version(raw: &str) -> Result<Version> {
    Version::parse(raw)
        .map_err(|_| ManagerError::Invalid(format!("stored version {raw:?} is not a version")))
}

/// Whether 127.0.0.1:port can be bound right now.
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn remove_dir_if_exists(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The last `n` lines of a text file, reading only its end.
pub fn tail_lines(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    use std::io::{Read, Seek, SeekFrom};
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut chunk = 8192u64;
    loop {
        let start = len.saturating_sub(chunk);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let mut lines: Vec<&str> = text.lines().collect();
        if start > 0 && lines.len() > n {
            let keep = lines.split_off(lines.len() - n);
            return Ok(keep.into_iter().map(str::to_string).collect());
        }
        if start == 0 {
            let skip = lines.len().saturating_sub(n);
            return Ok(lines.into_iter().skip(skip).map(str::to_string).collect());
        }
        chunk *= 4;
    }
}

/// Write `dir` as `name/…` into a gzip-compressed tar at `target`,
/// atomically (temp file + rename).
fn archive_dir_to(dir: &Path, name: &str, target: &Path) -> std::io::Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::NamedTempFile::new_in(parent)?;
    {
        let gz = flate2::write::GzEncoder::new(tmp.as_file(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.follow_symlinks(false);
        if dir.exists() {
            tar.append_dir_all(name, dir)?;
        }
        tar.into_inner()?.finish()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(target).map_err(|e| e.error)?;
    Ok(())
}

/// Check `MemoryMax=` and `CPUQuota=` values before they are stored.
fn check_resource_limits(memory_max: Option<&str>, cpu_quota: Option<&str>) -> Result<()> {
    if let Some(m) = memory_max {
        crate::runtime::systemd::unit::check_memory_max(m)
            .map_err(|e| ManagerError::Invalid(e.to_string()))?;
    }
    if let Some(q) = cpu_quota {
        crate::runtime::systemd::unit::check_cpu_quota(q)
            .map_err(|e| ManagerError::Invalid(e.to_string()))?;
    }
    Ok(())
}

/// Change the owner of a directory tree (symlinks themselves, not their
/// targets).
fn chown_tree(dir: &Path, uid: nix::unistd::Uid, gid: nix::unistd::Gid) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid.as_raw()), Some(gid.as_raw()))?;
    if dir.is_dir() && !dir.is_symlink() {
        for entry in std::fs::read_dir(dir)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Copy a directory tree (regular files, directories, symlinks).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Put a snapshot back in place of `data`: the failed version's data is
/// moved aside first, so nothing is lost even if the copy fails halfway.
fn restore_dir(snapshot: &Path, data: &Path) -> std::io::Result<()> {
    let aside = data.with_extension(format!(
        "failed-{}",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    if data.exists() {
        std::fs::rename(data, &aside)?;
    }
    copy_dir(snapshot, data)?;
    remove_dir_if_exists(&aside)
}

/// Keep the newest `keep` snapshots.
fn prune_snapshots(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    let excess = names.len().saturating_sub(keep);
    for old in names.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_reads_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            tail_lines(&path, 3).unwrap(),
            ["line 9997", "line 9998", "line 9999"]
        );
        assert_eq!(tail_lines(&path, 0).unwrap(), Vec::<String>::new());
        std::fs::write(&path, "a\nb\n").unwrap();
        assert_eq!(tail_lines(&path, 5).unwrap(), ["a", "b"]);
    }

    #[test]
    fn archive_and_snapshot_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("inst");
        std::fs::create_dir_all(src.join("pb_data/storage")).unwrap();
        std::fs::write(src.join("pb_data/data.db"), b"db").unwrap();
        std::fs::write(src.join("pb_data/storage/f"), b"file").unwrap();
        let target = dir.path().join("archive/inst.tar.gz");
        archive_dir_to(&src, "inst", &target).unwrap();
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(&target).unwrap());
        let mut names: Vec<String> = tar::Archive::new(gz)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert!(
            names.contains(&"inst/pb_data/data.db".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"inst/pb_data/storage/f".to_string()),
            "{names:?}"
        );

        let snap = dir.path().join("snap");
        copy_dir(&src.join("pb_data"), &snap).unwrap();
        std::fs::write(src.join("pb_data/data.db"), b"migrated").unwrap();
        restore_dir(&snap, &src.join("pb_data")).unwrap();
        assert_eq!(std::fs::read(src.join("pb_data/data.db")).unwrap(), b"db");
        assert_eq!(
            std::fs::read(src.join("pb_data/storage/f")).unwrap(),
            b"file"
        );
    }
}
