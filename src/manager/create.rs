//! Creating an instance: validation, port choice, the row in phase
//! `creating`, bring-up, and the roll-back that leaves nothing behind.

use crate::model::AuditAction;
use std::path::PathBuf;

use chrono::Utc;

use super::files::remove_dir_if_exists;
use super::install::BinaryChoice;
use super::{Actor, Manager, ManagerError, Result};
use crate::model::names::shown;
use crate::model::ports::{self, PortError};
use crate::model::{
    CpuQuota, CronExpr, DesiredState, Domain, InstanceName, MemoryMax, ResourceLimits, Status,
    UserId,
};
use crate::pocketbase;
use crate::release::Installed;
use crate::runtime::Runtime;
use crate::store::{InstanceRecord, Phase, StoreError};

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
    /// How long it may be idle before it sleeps, in seconds (0: never);
    /// `None`: never for a named instance, `serve --user-idle-timeout` for
    /// a seed 001 user's.
    pub idle_timeout_secs: Option<u64>,
    /// A cron expression: when a sleeping instance wakes for its own jobs.
    pub wake_schedule: Option<String>,
    /// The fleet whose apply creates it (a prune deletes only its own).
    pub fleet: Option<String>,
    /// Its tags (`schema push --tag`), checked already.
    pub tags: Vec<String>,
}

impl CreateRequest {
    /// An instance of this name and binary, everything else chosen by the
    /// daemon (port) or left out.
    pub fn named(name: &str, binary: BinaryChoice) -> Self {
        Self {
            name: name.to_string(),
            binary,
            port: None,
            domain: None,
            superuser_email: None,
            superuser_password: None,
            max_body_bytes: None,
            memory_max: None,
            cpu_quota: None,
            idle_timeout_secs: None,
            wake_schedule: None,
            fleet: None,
            tags: Vec::new(),
        }
    }
}

/// A create that takes over an instance from elsewhere (a failover): its
/// name, claimed already, and the `pb_data` it starts from.
pub(super) struct Adopt {
    pub claim: super::cluster::NameClaim,
    pub data: PathBuf,
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

impl Manager {
    /// Choose a port: the requested one after checking it, or the next by
    /// seed 000's rule. Called under the allocation lock.
    pub(super) fn choose_port(&self, requested: Option<u32>) -> Result<u16> {
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
        let result = self.create_inner(req, actor, None, None).await;
        let label = if InstanceName::parse(&name_for_audit).is_ok() {
            name_for_audit
        } else {
            shown(&name_for_audit)
        };
        self.audited(actor, AuditAction::Create, &label, result, |c| {
            format!("version {} on port {}", c.instance.version, c.instance.port)
        })
    }

    pub(super) async fn create_inner(
        &self,
        req: CreateRequest,
        actor: &Actor,
        compat: Option<(&UserId, PathBuf, u16)>,
        adopt: Option<Adopt>,
    ) -> Result<Created> {
        let name = InstanceName::parse(&req.name)?;
        let domain = req.domain.as_deref().map(Domain::parse).transpose()?;
        if let Some(port) = req.port {
            ports::check_range(port)?;
        }
        if let Some(limit) = req.max_body_bytes {
            crate::model::routing::check_body_limit(limit).map_err(ManagerError::Invalid)?;
        }
        let limits = ResourceLimits {
            memory_max: req
                .memory_max
                .as_deref()
                .map(MemoryMax::parse)
                .transpose()?,
            cpu_quota: req.cpu_quota.as_deref().map(CpuQuota::parse).transpose()?,
        };
        let idle_timeout = match req.idle_timeout_secs {
            Some(secs) => idle_from_secs(secs)?,
            None if compat.is_some() => self.cfg.compat.idle_timeout,
            None => None,
        };
        let wake_schedule = req
            .wake_schedule
            .as_deref()
            .map(CronExpr::parse)
            .transpose()?;
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
        // In a cluster the name is the whole fleet's: taken there first,
        // let go of again if this create fails (unless the caller holds it
        // already: a failover).
        let (claim, seed) = match adopt {
            Some(a) => (a.claim, Some(a.data)),
            None => (self.claim_name(name.as_str()).await?, None),
        };
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
                name: name.clone(),
                port,
                version: installed.version.clone(),
                binary_path: installed.binary.clone(),
                dir: dir.clone(),
                domain,
                desired: DesiredState::Running,
                status: Status::Starting,
                phase: Phase::Creating,
                pid: None,
                restarts: 0,
                superuser_email: superuser.as_ref().map(|(e, _)| e.clone()),
                compat_user: compat.as_ref().map(|(u, _, _)| (*u).clone()),
                systemd_config_hash: None,
                caddy_config_hash: None,
                created_by: actor.0.clone(),
                created_at: now,
                updated_at: now,
                last_health_check: None,
                last_error: None,
                max_body_bytes: req.max_body_bytes,
                limits,
                release: None,
                release_binary: false,
                idle_timeout,
                wake_schedule,
            };
            self.store.insert_instance(&rec)?;
            // Still `creating`: a crash before the labels are written rolls
            // the whole create back, so no instance of a fleet is left
            // looking hand-made.
            if req.fleet.is_some() || !req.tags.is_empty() {
                self.store
                    .set_fleet_owner(&rec.name, req.fleet.as_deref())?;
                self.store.set_tags(&rec.name, &req.tags)?;
            }
            rec
        };
        let lock = self.lock_for(&rec.name);
        let _guard = lock.lock().await;
        if let Some(data) = seed {
            // Its data, there before the first start.
            let target = self.spec(&rec).data_dir();
            let moved =
                std::fs::create_dir_all(&rec.dir).and_then(|()| std::fs::rename(&data, &target));
            if let Err(source) = moved {
                self.roll_back_create(&rec).await;
                return Err(ManagerError::Io {
                    context: format!("cannot move {} to {}", data.display(), target.display()),
                    source,
                });
            }
        }
        let mut rec = rec;
        let chose_port = compat.is_none() && req.port.is_none();
        let mut tried = vec![rec.port];
        let brought_up = loop {
            let attempt = self
                .bring_up_new(&rec, &installed, superuser.as_ref())
                .await;
            // A port found free can be taken by another program before
            // PocketBase binds it. One we chose ourselves is chosen again.
            let taken = matches!(&attempt, Err(ManagerError::StartFailed { log_tail, .. })
                if log_tail.iter().any(|l| l.contains("address already in use")));
            if !(taken && chose_port && tried.len() < 4) {
                break attempt;
            }
            if let Err(e) = self.runtime.stop(&rec.name).await {
                break Err(e.into());
            }
            let next = {
                let _allocation = self.allocation.lock().await;
                let mut used = self.store.used_ports()?;
                used.extend(&tried);
                match ports::next_port(&used, port_is_free) {
                    Ok(port) => {
                        tracing::warn!(instance = %rec.name, taken = rec.port, port, "the chosen port was taken before PocketBase bound it: trying another");
                        rec.port = port;
                        self.store.update_config(&rec, &actor.0).map(|_| port)
                    }
                    Err(e) => break Err(e.into()),
                }
            };
            match next {
                Ok(port) => tried.push(port),
                Err(e) => break Err(e.into()),
            }
        };
        match brought_up {
            Ok(pid) => {
                let mut ready = rec.clone();
                ready.phase = Phase::Ready;
                self.store.update_config(&ready, &actor.0)?;
                self.set_state(&rec.name, Status::Running, Some(pid), 0, None);
                self.record_unit_hash(&rec.name);
                self.apply_default_schedule(&rec.name);
                if let Some((email, password)) = &superuser {
                    self.trust_router(&rec, &installed.version, email, password)
                        .await;
                }
                self.sync_route_now(&rec.name).await;
                let instance = self.get(&rec.name)?;
                claim.keep();
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

    pub(super) async fn bring_up_new(
        &self,
        rec: &InstanceRecord,
        installed: &Installed,
        superuser: Option<&(String, String)>,
    ) -> Result<u32> {
        let spec = self.spec(rec);
        // A data directory made beforehand by this binary, if the pool has
        // one: the first start opens it instead of migrating a new one.
        if !spec.data_dir().exists() && std::fs::create_dir_all(&spec.instance_dir).is_ok() {
            let pooled = self.pool.take(&installed.binary, &spec.data_dir());
            tracing::debug!(instance = %rec.name, pooled, "data directory");
        }
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

    pub(super) async fn roll_back_create(&self, rec: &InstanceRecord) {
        if let Err(e) = self.runtime.stop(&rec.name).await {
            tracing::warn!(error = %e, instance = %rec.name, "rollback: cannot stop the process");
        }
        // A PocketBase the runtime does not know of (started just before the
        // daemon died, its pidfile not written yet) would go on writing in
        // the directory removed below, and make it again: it is killed
        // first. Its data is the create's, which is being undone.
        let data_arg = format!("--dir={}", self.spec(rec).data_dir().display());
        let orphans = tokio::task::spawn_blocking(move || {
            let found = crate::procstat::processes_with_arg(&data_arg);
            for pid in &found {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            // Gone (or a zombie, which writes nothing) within a moment.
            for _ in 0..100 {
                let alive = found.iter().any(|pid| {
                    crate::procstat::read_stat_line(*pid).is_some_and(|s| s.state != 'Z')
                });
                if !alive {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            found
        })
        .await
        .unwrap_or_default();
        if !orphans.is_empty() {
            tracing::warn!(instance = %rec.name, pids = ?orphans, "rollback: killed a PocketBase no pidfile named");
        }
        if let Err(e) = self.runtime.uninstall(&rec.name).await {
            tracing::warn!(error = %e, instance = %rec.name, "rollback: cannot remove what the runtime kept");
        }
        let dir = rec.dir.clone();
        let removed = tokio::task::spawn_blocking(move || remove_dir_if_exists(&dir))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = removed {
            tracing::warn!(error = %e, dir = %rec.dir.display(), "rollback: cannot remove the instance directory");
        }
        if let Err(e) = self.store.delete_instance(&rec.name) {
            tracing::error!(error = %e, instance = %rec.name, "rollback: cannot delete the row");
        }
        self.forget(&rec.name);
    }
}

/// Whether 127.0.0.1:port can be bound right now.
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// An idle timeout as the API and the CLI send it: whole seconds, 0 for
/// never.
pub(super) fn idle_from_secs(secs: u64) -> Result<Option<crate::model::IdleTimeout>> {
    if secs == 0 {
        return Ok(None);
    }
    crate::model::IdleTimeout::from_secs(secs)
        .map(Some)
        .ok_or_else(|| {
            crate::model::IdleError::OutOfRange {
                shown: format!("{secs}s"),
            }
            .into()
        })
}
