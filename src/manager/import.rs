//! `pockestrator import`: instances made by seed 000's script come under
//! management without being stopped. Their systemd units are found by
//! [`crate::runtime::systemd::import::scan`]; each importable one is
//! recorded as an instance (its directory, port, version, domain) and its
//! running unit adopted by the systemd runtime, which must therefore name
//! units the way the script did (`--unit-name '{name}-pocketbase.service'`).

use crate::model::AuditAction;
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::{Actor, Manager, ManagerError, Result};
use crate::model::{DesiredState, Domain, ResourceLimits, Status};
use crate::runtime::systemd::import::{read_version, scan, ImportCandidate};
use crate::runtime::{AnyRuntime, Runtime};
use crate::store::{InstanceRecord, Phase};

/// What import found and did with one unit.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    pub unit: String,
    pub name: Option<String>,
    pub port: Option<u16>,
    pub version: Option<String>,
    pub domain: Option<String>,
    pub dir: Option<String>,
    pub action: ImportAction,
    /// Why it was skipped, or what is worth knowing.
    pub reasons: Vec<String>,
}

/// What import did with one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportAction {
    Imported,
    /// A dry run found nothing in the way.
    WouldImport,
    Skipped,
}

impl ImportAction {
    /// Its spelling in the API and the CLI's table.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportAction::Imported => "imported",
            ImportAction::WouldImport => "would import",
            ImportAction::Skipped => "skipped",
        }
    }
}

/// Where import looks by default: where the seed's script writes units, and
/// where units usually live.
pub fn default_unit_dirs() -> Vec<PathBuf> {
    [
        "/etc/systemd/system",
        "/lib/systemd/system",
        "/usr/lib/systemd/system",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

impl Manager {
    /// Find script-made instances and, unless `dry_run`, record and adopt
    /// them. Nothing is stopped, moved or rewritten.
    pub async fn import(
        &self,
        unit_dirs: &[PathBuf],
        caddyfile: Option<&Path>,
        dry_run: bool,
        actor: &Actor,
    ) -> Result<Vec<ImportOutcome>> {
        let AnyRuntime::Systemd(systemd) = self.runtime.as_ref() else {
            return Err(ManagerError::Conflict(
                "import takes over systemd units: run the daemon with --runtime systemd --unit-name '{name}-pocketbase.service'".to_string(),
            ));
        };
        let mut out = Vec::new();
        for candidate in scan(unit_dirs, caddyfile) {
            let mut outcome = ImportOutcome {
                unit: candidate.unit_name.clone(),
                name: candidate.name.as_ref().map(|n| n.to_string()),
                port: candidate.port,
                version: None,
                domain: candidate.domain.as_ref().map(|d| d.to_string()),
                dir: candidate
                    .data_dir
                    .as_ref()
                    .and_then(|d| d.parent())
                    .map(|d| d.display().to_string()),
                action: ImportAction::Skipped,
                reasons: candidate
                    .problems
                    .iter()
                    .chain(&candidate.notes)
                    .cloned()
                    .collect(),
            };
            if !candidate.is_importable() {
                out.push(outcome);
                continue;
            }
            match self.import_one(systemd, &candidate, dry_run, actor).await {
                Ok(version) => {
                    outcome.version = Some(version);
                    outcome.action = if dry_run {
                        ImportAction::WouldImport
                    } else {
                        ImportAction::Imported
                    };
                }
                Err(e) => outcome.reasons.insert(0, e.to_string()),
            }
            out.push(outcome);
        }
        Ok(out)
    }

    async fn import_one(
        &self,
        systemd: &crate::runtime::systemd::SystemdRuntime<crate::runtime::systemd::RealSystemctl>,
        c: &ImportCandidate,
        dry_run: bool,
        actor: &Actor,
    ) -> Result<String> {
        let (Some(name), Some(binary), Some(port), Some(data_dir)) = (
            c.name.as_ref(),
            c.binary.as_ref(),
            c.port,
            c.data_dir.as_ref(),
        ) else {
            return Err(ManagerError::Invalid("incomplete unit".to_string()));
        };
        if systemd.unit_name(name) != c.unit_name {
            return Err(ManagerError::Invalid(format!(
                "the daemon names this instance's unit {}, not {}: start it with --unit-name matching the script's units ('{{name}}-pocketbase.service')",
                systemd.unit_name(name),
                c.unit_name
            )));
        }
        if self.store.get_instance(name.as_str())?.is_some() {
            return Err(ManagerError::Conflict(format!("{name} is already managed")));
        }
        if let Some(owner) = self.store.port_owner(port)? {
            return Err(ManagerError::Conflict(format!(
                "port {port} is already used by instance {owner}"
            )));
        }
        let raw = read_version(binary)
            .await
            .map_err(|source| ManagerError::Io {
                context: format!("cannot read the version of {}", binary.display()),
                source,
            })?;
        let version = semver::Version::parse(raw.trim_start_matches('v')).map_err(|_| {
            ManagerError::Invalid(format!("{} reports version {raw:?}", binary.display()))
        })?;
        if dry_run {
            return Ok(version.to_string());
        }
        let dir = data_dir.parent().ok_or_else(|| {
            ManagerError::Invalid(format!("{} has no parent directory", data_dir.display()))
        })?;
        // A Caddy site `NAME.DOMAIN` becomes the instance's base domain; any
        // other host a custom domain.
        let (base, custom) = match &c.domain {
            Some(d) => match d.as_str().strip_prefix(&format!("{name}.")) {
                Some(base) => (Some(base.to_string()), None),
                None => (None, Some(d.to_string())),
            },
            None => (None, None),
        };
        let now = Utc::now();
        let rec = InstanceRecord {
            name: name.clone(),
            port,
            version: version.clone(),
            binary_path: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            domain: base.as_deref().map(Domain::parse).transpose()?,
            desired: DesiredState::Running,
            status: Status::Starting,
            phase: Phase::Ready,
            pid: None,
            restarts: 0,
            superuser_email: None,
            compat_user: None,
            systemd_config_hash: None,
            caddy_config_hash: None,
            created_by: actor.0.clone(),
            created_at: now,
            updated_at: now,
            last_health_check: None,
            last_error: None,
            max_body_bytes: None,
            limits: ResourceLimits::default(),
            release: None,
            release_binary: false,
            idle_timeout: None,
            wake_schedule: None,
        };
        self.store.insert_instance(&rec)?;
        if let Some(domain) = custom {
            self.store.add_domain(name.as_str(), &domain, &actor.0)?;
        }
        let spec = self.spec(&rec);
        let adopted = self.runtime.adopt(spec).await?;
        let status = if adopted.is_some() {
            Status::Running
        } else {
            Status::Stopped
        };
        if adopted.is_none() {
            let mut stopped = rec.clone();
            stopped.desired = DesiredState::Stopped;
            self.store.update_config(&stopped, &actor.0)?;
        }
        self.set_state(name.as_str(), status, adopted, 0, None);
        self.audit(
            actor,
            AuditAction::Import,
            Some(name.as_str()),
            Ok(format!(
                "{} ({}, port {port}, PocketBase {version}){}",
                c.unit_name,
                dir.display(),
                if adopted.is_some() {
                    ""
                } else {
                    "; it was not running"
                }
            )),
        );
        Ok(version.to_string())
    }
}
