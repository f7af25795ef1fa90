//! Fleet as code: `plan` compares a fleet file with what runs, `apply`
//! carries the plan out one instance at a time through the same operations
//! the CLI uses (create, update, upgrade, domains, schedule, replication,
//! deploy, delete), and `export` writes what runs as a file that plans
//! nothing.
//!
//! An apply is idempotent: it touches only the fields that differ, so a
//! second apply changes and restarts nothing. It is also resumable: each
//! operation it makes is crash-safe on its own, and a create records its
//! fleet in the same `creating` row that a crash rolls back, so after a
//! daemon crash the next apply finds what is left and does it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::create::CreateRequest;
use super::deploy::DeployRequest;
use super::install::BinaryChoice;
use super::schedule::ScheduleRequest;
use super::update::UpdateRequest;
use super::{Actor, Manager, ManagerError, Result};
use crate::model::cluster::Tag;
use crate::model::fleet::{
    self, BackupSpec, Change, ChangeKind, Current, DeploySpec, FleetFile, FleetName, InstanceSpec,
};
use crate::model::version::VersionRequest;
use crate::model::{AuditAction, CronExpr, Destination, Domain, InstanceName, Subdir};
use crate::store::Phase;

/// What an apply would do, and the state it was planned against.
#[derive(Debug, Clone)]
pub struct FleetPlan {
    pub fleet: FleetName,
    /// `fleet::state_digest` of the state planned against.
    pub state: String,
    pub prune: bool,
    pub changes: Vec<Change>,
    /// Instances the file does not list that a prune leaves alone (made
    /// by hand or by another fleet).
    pub unmanaged: Vec<InstanceName>,
}

/// One change as carried out.
#[derive(Debug, Clone)]
pub struct Applied {
    pub change: Change,
    /// Why it failed; the instance is left as the failed step left it
    /// (each step is undone by its own operation when it fails).
    pub error: Option<String>,
    /// The deploy it started, when its repository changed.
    pub deploy: Option<u32>,
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct FleetApplied {
    pub fleet: FleetName,
    pub applied: Vec<Applied>,
    /// The state digest afterwards.
    pub state: String,
}

impl Manager {
    /// Every instance's declared settings and owner (seed 001's user
    /// instances are not declared in fleet files and left out).
    fn fleet_state(&self) -> Result<BTreeMap<InstanceName, Current>> {
        let labels = self.store.labels()?;
        let mut extra_domains = self.store.all_domains()?;
        let mut schedules: BTreeMap<String, _> = self
            .store
            .schedules(None)?
            .into_iter()
            .map(|s| (s.instance.to_string(), s))
            .collect();
        let mut replicas: BTreeMap<String, _> = self
            .store
            .replications(None)?
            .into_iter()
            .map(|r| (r.instance.to_string(), r))
            .collect();
        let mut sources: BTreeMap<String, _> = self
            .store
            .deploy_sources(None)?
            .into_iter()
            .map(|d| (d.instance.to_string(), d))
            .collect();
        let mut out = BTreeMap::new();
        for rec in self.store.list_instances()? {
            if rec.phase != Phase::Ready || rec.compat_user.is_some() {
                continue;
            }
            let key = rec.name.to_string();
            let label = labels.get(&key).cloned().unwrap_or_default();
            let mut domains: Vec<Domain> = rec.domain.iter().cloned().collect();
            for d in extra_domains.remove(&key).unwrap_or_default() {
                if let Ok(d) = Domain::parse(&d) {
                    domains.push(d);
                }
            }
            let spec = InstanceSpec {
                version: Some(rec.version.clone()),
                port: Some(rec.port),
                domains: fleet::normal_domains(domains),
                max_body_bytes: rec.max_body_bytes,
                memory_max: rec.limits.memory_max.clone(),
                cpu_quota: rec.limits.cpu_quota.clone(),
                idle_timeout: rec.idle_timeout,
                wake_schedule: rec.wake_schedule.clone(),
                tags: fleet::normal_tags(
                    label
                        .tags
                        .iter()
                        .filter_map(|t| Tag::parse(t).ok())
                        .collect(),
                ),
                replicate: replicas.remove(&key).map(|r| r.target.to_text()),
                backup: schedules.remove(&key).map(|s| BackupSpec {
                    cron: s.cron,
                    retention: s.retention,
                    to: s
                        .destination
                        .map(|d| Destination::parse(&d).map_or(d, |p| p.to_text())),
                }),
                deploy: sources.remove(&key).map(|d| DeploySpec {
                    repo: d.repo,
                    branch: d.branch,
                    subdir: d.subdir.filter(|s| !s.as_str().is_empty()),
                }),
            };
            let fleet = label.fleet.and_then(|f| FleetName::parse(&f).ok());
            out.insert(rec.name.clone(), Current { spec, fleet });
        }
        Ok(out)
    }

    fn parse_fleet_file(text: &str, file_name: &str) -> Result<FleetFile> {
        let default = fleet::fleet_from_file_name(file_name);
        fleet::parse_fleet(text, &default).map_err(|error| ManagerError::Fleet {
            file: crate::model::names::shown(file_name),
            error,
        })
    }

    /// What an apply of this file would change now.
    pub fn fleet_plan(&self, text: &str, file_name: &str, prune: bool) -> Result<FleetPlan> {
        let file = Self::parse_fleet_file(text, file_name)?;
        let current = self.fleet_state()?;
        Ok(plan_of(&file, &current, prune))
    }

    /// Carry out the plan of this file. With `expect_state` (a saved
    /// plan's), refuse when the state has changed since that plan was made.
    pub async fn fleet_apply(
        self: &Arc<Self>,
        text: &str,
        file_name: &str,
        prune: bool,
        expect_state: Option<&str>,
        actor: &Actor,
    ) -> Result<FleetApplied> {
        let file = Self::parse_fleet_file(text, file_name)?;
        // One apply at a time: two would plan against the same state.
        let _one = self.fleet_lock.lock().await;
        let current = self.fleet_state()?;
        let plan = plan_of(&file, &current, prune);
        if let Some(expected) = expect_state {
            if expected != plan.state {
                return Err(ManagerError::StalePlan(format!(
                    "the plan was made against an older state of the fleet (state {}, now {}): \
                     something changed since; run `pockestrator plan` again",
                    short(expected),
                    short(&plan.state)
                )));
            }
        }
        let mut applied = Vec::new();
        for change in plan.changes {
            if change.kind == ChangeKind::Nothing {
                applied.push(Applied {
                    change,
                    error: None,
                    deploy: None,
                });
                continue;
            }
            let want = file.instances.get(&change.name);
            let have = current.get(&change.name);
            let outcome = match change.kind {
                ChangeKind::Create => {
                    self.fleet_create(&file.fleet, &change.name, want.expect("planned"), actor)
                        .await
                }
                ChangeKind::Update => {
                    self.fleet_update(
                        &change.name,
                        want.expect("planned"),
                        &have.expect("planned").spec,
                        actor,
                    )
                    .await
                }
                ChangeKind::Delete => self
                    .delete(change.name.as_str(), false, actor)
                    .await
                    .map(|_| None),
                ChangeKind::Nothing => unreachable!("skipped above"),
            };
            let (error, deploy) = match outcome {
                Ok(deploy) => (None, deploy),
                Err(e) => (Some(e.to_string()), None),
            };
            self.audit(
                actor,
                AuditAction::Apply,
                Some(change.name.as_str()),
                match &error {
                    None => Ok(format!("{} by fleet {}", change.kind.as_str(), file.fleet)),
                    Some(e) => Err(format!("{}: {e}", change.kind.as_str())),
                },
            );
            applied.push(Applied {
                change,
                error,
                deploy,
            });
        }
        let state = fleet::state_digest(&self.fleet_state()?);
        Ok(FleetApplied {
            fleet: file.fleet,
            applied,
            state,
        })
    }

    /// The fleet as it runs, as a fleet file named `fleet`.
    pub fn fleet_export(&self, fleet_name: &str) -> Result<String> {
        let fleet = FleetName::parse(fleet_name).map_err(ManagerError::Invalid)?;
        Ok(fleet::export(&fleet, &self.fleet_state()?))
    }

    async fn fleet_create(
        self: &Arc<Self>,
        fleet: &FleetName,
        name: &InstanceName,
        want: &InstanceSpec,
        actor: &Actor,
    ) -> Result<Option<u32>> {
        let version = match &want.version {
            Some(v) => VersionRequest::Exact(v.clone()),
            None => VersionRequest::Latest,
        };
        let mut req = CreateRequest::named(name.as_str(), BinaryChoice::Release(version));
        req.port = want.port.map(u32::from);
        req.domain = want.domains.first().map(|d| d.to_string());
        req.max_body_bytes = want.max_body_bytes;
        req.memory_max = want.memory_max.as_ref().map(|m| m.as_str().to_string());
        req.cpu_quota = want.cpu_quota.as_ref().map(|q| q.as_str().to_string());
        req.idle_timeout_secs = Some(want.idle_timeout.map_or(0, |t| t.as_secs()));
        req.wake_schedule = want.wake_schedule.as_ref().map(|c| c.as_str().to_string());
        req.fleet = Some(fleet.to_string());
        req.tags = want.tags.iter().map(|t| t.to_string()).collect();
        self.create(req, actor).await?;
        // The rest as an update from a bare instance, so a create that
        // fails half-way is finished by the next apply's update.
        let bare = InstanceSpec {
            version: want.version.clone(),
            port: want.port,
            domains: want.domains.first().cloned().into_iter().collect(),
            max_body_bytes: want.max_body_bytes,
            memory_max: want.memory_max.clone(),
            cpu_quota: want.cpu_quota.clone(),
            idle_timeout: want.idle_timeout,
            wake_schedule: want.wake_schedule.clone(),
            tags: want.tags.clone(),
            ..InstanceSpec::default()
        };
        self.fleet_update(name, want, &bare, actor).await
    }

    /// Bring `name` from `have` to `want`, field group by field group, each
    /// only when it differs. Returns the deploy it started, if any.
    async fn fleet_update(
        self: &Arc<Self>,
        name: &InstanceName,
        want: &InstanceSpec,
        have: &InstanceSpec,
        actor: &Actor,
    ) -> Result<Option<u32>> {
        let n = name.as_str();
        if let Some(v) = &want.version {
            if have.version.as_ref() != Some(v) {
                self.upgrade(
                    n,
                    BinaryChoice::Release(VersionRequest::Exact(v.clone())),
                    actor,
                )
                .await?;
            }
        }
        let mut update = UpdateRequest::default();
        let mut any = false;
        if want.domains.first() != have.domains.first() {
            update.domain = Some(want.domains.first().map(|d| d.to_string()));
            any = true;
        }
        if let Some(p) = want.port {
            if have.port != Some(p) {
                update.port = Some(u32::from(p));
                any = true;
            }
        }
        if want.max_body_bytes != have.max_body_bytes {
            update.max_body_bytes = Some(want.max_body_bytes);
            any = true;
        }
        if want.memory_max != have.memory_max {
            update.memory_max = Some(want.memory_max.as_ref().map(|m| m.as_str().to_string()));
            any = true;
        }
        if want.cpu_quota != have.cpu_quota {
            update.cpu_quota = Some(want.cpu_quota.as_ref().map(|q| q.as_str().to_string()));
            any = true;
        }
        if want.idle_timeout != have.idle_timeout {
            update.idle_timeout_secs = Some(want.idle_timeout.map_or(0, |t| t.as_secs()));
            any = true;
        }
        if want.wake_schedule.as_ref().map(CronExpr::as_str)
            != have.wake_schedule.as_ref().map(CronExpr::as_str)
        {
            update.wake_schedule =
                Some(want.wake_schedule.as_ref().map(|c| c.as_str().to_string()));
            any = true;
        }
        if any {
            self.update(n, update, actor).await?;
        }
        let want_extra: Vec<&Domain> = want.domains.iter().skip(1).collect();
        let have_extra: Vec<&Domain> = have.domains.iter().skip(1).collect();
        for gone in have_extra.iter().filter(|d| !want_extra.contains(d)) {
            self.remove_domain(n, gone.as_str(), actor).await?;
        }
        for new in want_extra.iter().filter(|d| !have_extra.contains(d)) {
            self.add_domain(n, new.as_str(), actor).await?;
        }
        if want.tags != have.tags {
            self.set_tags(n, &want.tags, actor).await?;
        }
        if want.replicate != have.replicate {
            if have.replicate.is_some() {
                self.replicate_off(n, actor).await?;
            }
            if let Some(to) = &want.replicate {
                self.replicate(n, to, actor).await?;
            }
        }
        if want.backup != have.backup {
            let req = want.backup.as_ref().map(|b| ScheduleRequest {
                cron: b.cron.as_str().to_string(),
                retention: b.retention,
                to: b.to.clone(),
            });
            self.set_backup_schedule(n, req, actor).await?;
        }
        let mut started = None;
        if want.deploy != have.deploy {
            if let Some(d) = &want.deploy {
                let req = DeployRequest {
                    repo: Some(d.repo.to_string()),
                    branch: Some(d.branch.to_string()),
                    subdir: Some(d.subdir.as_ref().map_or("", Subdir::as_str).to_string()),
                    token: None,
                    ssh_key: None,
                };
                started = Some(self.deploy(n, req, actor).await?.id.0);
            }
            // A deploy left out of the file stops nothing: the release
            // that runs keeps running (there is no "undeploy").
        }
        Ok(started)
    }

    /// Replace an instance's tags (`schema push --tag` picks by them).
    pub async fn set_tags(&self, name: &str, tags: &[Tag], actor: &Actor) -> Result<Vec<Tag>> {
        let result = async {
            let lock = self.lock_for(name);
            let _guard = lock.lock().await;
            self.get(name)?;
            let tags = fleet::normal_tags(tags.to_vec());
            let texts: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
            self.store.set_tags(name, &texts)?;
            Ok(tags)
        }
        .await;
        self.audited(actor, AuditAction::Update, name, result, |tags| {
            let texts: Vec<&str> = tags.iter().map(Tag::as_str).collect();
            format!("tags [{}]", texts.join(", "))
        })
    }
}

fn plan_of(file: &FleetFile, current: &BTreeMap<InstanceName, Current>, prune: bool) -> FleetPlan {
    let changes = fleet::plan(file, current, prune);
    let unmanaged = current
        .iter()
        .filter(|(name, have)| {
            !file.instances.contains_key(*name) && have.fleet.as_ref() != Some(&file.fleet)
        })
        .map(|(name, _)| name.clone())
        .collect();
    FleetPlan {
        fleet: file.fleet.clone(),
        state: fleet::state_digest(current),
        prune,
        changes,
        unmanaged,
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}
