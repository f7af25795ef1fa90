//! Deploying from git: validate, make the instance if it is new, record
//! the deploy, then in a task of its own fetch the branch (shallow, into
//! the instance's cache), check the commit out into a build workspace,
//! build there (npm, Go) while the old release keeps serving, assemble the
//! release directory, and hand it to the switch (`manager::switch`).
//!
//! Deploys of one instance run one at a time (a second one waits,
//! `queued`); nothing of a failed deploy is left but its log and its
//! history line, and the previous release serves throughout.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;

use super::install::BinaryChoice;
use super::{Actor, CreateRequest, Manager, ManagerError, Result};
use crate::build::{BuildError, Workspace};
use crate::model::deploy::{plan_build, BuildPlan, NPM_OUTPUT_DIRS, REPO_CONFIG_FILE};
use crate::model::version::VersionRequest;
use crate::model::{
    BranchName, CommitId, DeployId, DeployKind, DeployStatus, InstanceName, ReleaseName,
    RepoConfig, RepoUrl, Subdir,
};
use crate::store::{DeployRecord, DeploySource};

/// What a deploy is asked for. `repo` may be left out for an instance
/// deployed before (its recorded source is used); `branch` defaults to
/// the recorded one, then `main`.
#[derive(Debug, Clone, Default)]
pub struct DeployRequest {
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub subdir: Option<String>,
    /// Credentials to keep for the repository (see `deploy_secrets`).
    pub token: Option<String>,
    pub ssh_key: Option<String>,
}

/// What a release directory says about itself (`release.json` in it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct ReleaseInfo {
    pub commit: String,
    pub repo: String,
    pub branch: String,
    /// The PocketBase it runs on: the stock binary's path and version, or
    /// (`release_binary`) the binary the release built.
    pub binary: PathBuf,
    #[serde(with = "crate::model::version::as_string")]
    pub version: crate::model::version::Version,
    pub release_binary: bool,
    pub built_at: chrono::DateTime<Utc>,
}

impl ReleaseInfo {
    pub const FILE: &'static str = "release.json";

    pub fn read(dir: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(dir.join(Self::FILE)).ok()?).ok()
    }
}

/// One line of a deploy's log, with the time.
pub(super) fn log_line(log: &Path, text: &str) {
    use std::io::Write as _;
    if let Ok(mut f) = crate::build::open_log(log) {
        let _ = writeln!(f, "[{}] {text}", Utc::now().format("%H:%M:%S%.3f"));
    }
}

impl Manager {
    /// Start a deploy of `name` (made first if it does not exist): checks
    /// every input, records the deploy as `queued` and returns it; the
    /// pipeline runs in a task of its own.
    pub async fn deploy(
        self: &Arc<Self>,
        name: &str,
        req: DeployRequest,
        actor: &Actor,
    ) -> Result<DeployRecord> {
        let instance = InstanceName::parse(name)?;
        let known = self.store.deploy_sources(Some(name))?.pop();
        let repo = match (&req.repo, &known) {
            (Some(raw), _) => RepoUrl::parse(raw).map_err(git_input)?,
            (None, Some(k)) => k.repo.clone(),
            (None, None) => {
                // Not the request's fault but the instance's state.
                return Err(ManagerError::Conflict(format!(
                    "{name} has never been deployed: say which repository (--repo URL)"
                )));
            }
        };
        let branch = match (&req.branch, &known) {
            (Some(raw), _) => BranchName::parse(raw).map_err(git_input)?,
            (None, Some(k)) if req.repo.is_none() || Some(&k.repo) == Some(&repo) => {
                k.branch.clone()
            }
            _ => BranchName::parse("main").map_err(git_input)?,
        };
        let subdir = match (&req.subdir, &known) {
            (Some(raw), _) if raw.is_empty() => None,
            (Some(raw), _) => Some(Subdir::parse(raw).map_err(git_input)?),
            (None, Some(k)) => k.subdir.clone(),
            (None, None) => None,
        };
        // A local repository must come from an allowed directory: refused
        // now, before anything is made.
        self.git().check_allowed(&repo).map_err(git_error)?;

        if self.store.get_instance(name)?.is_none() {
            self.create(
                CreateRequest::named(name, BinaryChoice::Release(VersionRequest::Latest)),
                actor,
            )
            .await?;
        }
        let rec = self.get(name)?;
        if req.token.is_some() || req.ssh_key.is_some() {
            self.set_deploy_credentials(name, req.token.as_deref(), req.ssh_key.as_deref(), actor)
                .await?;
        }
        self.store.set_deploy_source(&DeploySource {
            instance: instance.clone(),
            repo: repo.clone(),
            branch: branch.clone(),
            subdir: subdir.clone(),
            created_at: known.map_or_else(Utc::now, |k| k.created_at),
        })?;
        let d = DeployRecord::queued(instance, DeployKind::Deploy, repo, branch, subdir, &actor.0);
        let first_line = format!(
            "of {name}: {} branch {}{} (by {})",
            d.repo,
            d.branch,
            d.subdir
                .as_ref()
                .map(|s| format!(", directory {}", s.as_str()))
                .unwrap_or_default(),
            actor.0
        );
        self.queue_deploy(d, &rec.dir, &first_line, actor)
    }

    /// Record a deploy (or rollback) as `queued`, begin its log with
    /// "KIND ID " and `first_line`, and run it in a task of its own.
    pub(super) fn queue_deploy(
        self: &Arc<Self>,
        mut d: DeployRecord,
        instance_dir: &Path,
        first_line: &str,
        actor: &Actor,
    ) -> Result<DeployRecord> {
        d.id = self.store.insert_deploy(&d)?;
        log_line(
            &self.layout.deploy_log(instance_dir, d.id),
            &format!("{} {} {first_line}", d.kind.as_str(), d.id),
        );
        self.spawn_deploy(d.clone(), actor.clone());
        Ok(d)
    }

    /// Run a recorded deploy (or rollback) in a task of its own, one at a
    /// time per instance and in the order they were asked for: the place in
    /// line is taken here, before the task first runs.
    pub(super) fn spawn_deploy(self: &Arc<Self>, d: DeployRecord, actor: Actor) {
        let this = Arc::clone(self);
        let (after, _my_turn) = self.take_deploy_turn(d.instance.as_str());
        tokio::spawn(async move {
            // Ends (with Ok or with the sender dropped) when the deploy
            // before this one is over; `_my_turn` is dropped when this one
            // is, panics included.
            let _my_turn = _my_turn;
            if let Some(after) = after {
                let _ = after.await;
            }
            let name = d.instance.to_string();
            let Ok(rec) = this.get(&name) else {
                this.finish_deploy(d, Err("the instance was deleted".into()), &actor);
                return;
            };
            let log = this.layout.deploy_log(&rec.dir, d.id);
            let mut d = d;
            let result = match d.kind {
                DeployKind::Deploy => this.run_deploy(&mut d, &log).await,
                DeployKind::Rollback => this.run_rollback(&mut d, &log).await,
            };
            match &result {
                Ok(detail) => log_line(&log, &format!("succeeded: {detail}")),
                Err(why) => log_line(&log, &format!("failed: {why}")),
            }
            this.finish_deploy(d, result, &actor);
        });
    }

    fn finish_deploy(&self, mut d: DeployRecord, result: Result<String, String>, actor: &Actor) {
        d.status = if result.is_ok() {
            DeployStatus::Succeeded
        } else {
            DeployStatus::Failed
        };
        d.reason = result.as_ref().err().cloned();
        d.finished_at = Some(Utc::now());
        if let Err(e) = self.store.update_deploy(&d) {
            tracing::error!(instance = %d.instance, deploy = %d.id, error = %e, "cannot record the end of a deploy");
        }
        let action = match d.kind {
            DeployKind::Deploy => crate::model::AuditAction::Deploy,
            DeployKind::Rollback => crate::model::AuditAction::Rollback,
        };
        let commit = d.commit.as_ref().map(|c| c.short().to_string());
        let outcome = match result {
            Ok(detail) => Ok(format!("deploy {}: {detail}", d.id)),
            Err(why) => Err(format!(
                "deploy {}{}: {why}",
                d.id,
                commit.map(|c| format!(" of {c}")).unwrap_or_default()
            )),
        };
        self.audit(actor, action, Some(d.instance.as_str()), outcome);
    }

    fn set_deploy_status(&self, d: &mut DeployRecord, status: DeployStatus) {
        d.status = status;
        if let Err(e) = self.store.update_deploy(d) {
            tracing::error!(instance = %d.instance, deploy = %d.id, error = %e, "cannot record a deploy's progress");
        }
    }

    /// The pipeline of one deploy, up to the switch. `Ok`: what now runs.
    async fn run_deploy(&self, d: &mut DeployRecord, log: &Path) -> Result<String, String> {
        let name = d.instance.to_string();
        self.set_deploy_status(d, DeployStatus::Building);
        let rec = self.get(&name).map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + self.builder().limits.timeout;

        log_line(log, &format!("fetching {} from {}", d.branch, d.repo));
        let cache = self.layout.git_cache(&name);
        let git = self.git_for(&name);
        let commit = git
            .fetch(&cache, &d.repo, &d.branch)
            .await
            .map_err(|e| e.to_string())?;
        let release = ReleaseName::new(d.id, &commit);
        d.commit = Some(commit.clone());
        d.release = Some(release.clone());
        self.set_deploy_status(d, DeployStatus::Building);
        log_line(log, &format!("commit {commit}"));

        let builder = self.builder();
        let ws = builder
            .workspace(&format!("{name}-{}", d.id))
            .map_err(|e| e.to_string())?;
        let src = ws.dir.join("src");
        git.checkout(&cache, &commit, &src)
            .await
            .map_err(|e| e.to_string())?;
        let app = match &d.subdir {
            Some(sub) => src.join(sub.as_str()),
            None => src.clone(),
        };
        if !app.is_dir() {
            return Err(format!(
                "the repository has no directory {} at {}",
                d.subdir.as_ref().map_or(".", |s| s.as_str()),
                commit.short()
            ));
        }
        let cfg = match std::fs::read_to_string(app.join(REPO_CONFIG_FILE)) {
            Ok(text) => RepoConfig::parse(&text).map_err(|e| e.to_string())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RepoConfig::default(),
            Err(e) => return Err(format!("cannot read {REPO_CONFIG_FILE}: {e}")),
        };
        let plan = plan_build(&cfg, |p| app.join(p).exists());
        builder.give(&ws.dir).map_err(|e| e.to_string())?;
        let binary_out = self
            .build_app(&ws, &app, &plan, log, deadline)
            .await
            .map_err(|e| e.to_string())?;

        // The PocketBase the release runs on.
        let (binary, version, release_binary) = match &binary_out {
            Some(built) => (
                built.clone(),
                cfg.version().unwrap_or(rec.version.clone()),
                true,
            ),
            None => match cfg.version() {
                Some(v) if v != rec.version || rec.release_binary => {
                    log_line(
                        log,
                        &format!("PocketBase {v} (pinned in {REPO_CONFIG_FILE})"),
                    );
                    let installed = self
                        .install(&BinaryChoice::Release(VersionRequest::Exact(v)))
                        .await
                        .map_err(|e| e.to_string())?;
                    (installed.binary, installed.version, false)
                }
                _ if rec.release_binary => {
                    let installed = self
                        .install(&BinaryChoice::Release(VersionRequest::Latest))
                        .await
                        .map_err(|e| e.to_string())?;
                    (installed.binary, installed.version, false)
                }
                _ => (rec.binary_path.clone(), rec.version.clone(), false),
            },
        };

        let dir = self.layout.release_dir(&rec.dir, &release);
        let info = ReleaseInfo {
            commit: commit.to_string(),
            repo: d.repo.to_string(),
            branch: d.branch.to_string(),
            binary: if release_binary {
                dir.join("app")
            } else {
                binary.clone()
            },
            version,
            release_binary,
            built_at: Utc::now(),
        };
        log_line(log, &format!("assembling release {release}"));
        {
            let (app, plan, dir, info, built) = (
                app.clone(),
                plan.clone(),
                dir.clone(),
                info.clone(),
                binary_out.clone(),
            );
            tokio::task::spawn_blocking(move || {
                assemble_release(&app, &plan, built.as_deref(), &dir, &info)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot assemble the release: {e}"))?;
        }
        drop(ws);
        self.give_to_unit_user(&dir)
            .await
            .map_err(|e| e.to_string())?;
        self.set_deploy_status(d, DeployStatus::Switching);
        self.switch_release(&name, &release, &info, true, log)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!("{} ({}) serves", release, commit.short()))
    }

    /// npm and Go, as the plan says. Returns the Go binary, if one was built.
    async fn build_app(
        &self,
        ws: &Workspace,
        app: &Path,
        plan: &BuildPlan,
        log: &Path,
        deadline: tokio::time::Instant,
    ) -> Result<Option<PathBuf>, BuildError> {
        let builder = self.builder();
        if let Some(npm) = &plan.npm {
            let dir = app.join(&npm.dir);
            for argv in &npm.commands {
                log_line(log, &format!("$ {}", argv.join(" ")));
                builder.run(ws, &dir, argv, &[], log, deadline).await?;
            }
        }
        if let Some(go_dir) = &plan.go {
            let out = ws.dir.join("out");
            std::fs::create_dir_all(&out).map_err(|source| BuildError::Io {
                context: "cannot create the build's output directory".into(),
                source,
            })?;
            builder.give(&out)?;
            let binary = out.join("app");
            let argv = vec![
                "go".to_string(),
                "build".to_string(),
                "-trimpath".to_string(),
                "-o".to_string(),
                binary.to_string_lossy().into_owned(),
                ".".to_string(),
            ];
            log_line(
                log,
                &format!("$ CGO_ENABLED=0 {} (in {go_dir})", argv.join(" ")),
            );
            builder
                .run(ws, &app.join(go_dir), &argv, &[], log, deadline)
                .await?;
            if !binary.is_file() {
                return Err(BuildError::Setup("go build made no binary".into()));
            }
            return Ok(Some(binary));
        }
        Ok(None)
    }

    /// The git adapter with the instance's credentials.
    pub(super) fn git_for(&self, name: &str) -> crate::git::Git {
        let mut git = self.git();
        let secrets = self.layout.deploy_secrets(name);
        git.token_file = Some(secrets.join("token")).filter(|p| p.is_file());
        git.ssh_key_file = Some(secrets.join("ssh-key")).filter(|p| p.is_file());
        git
    }

    pub(super) fn git(&self) -> crate::git::Git {
        crate::git::Git {
            allowed_dirs: self.cfg.deploy.git_allow_dirs.clone(),
            fetch_timeout: self.cfg.deploy.fetch_timeout,
            ..crate::git::Git::default()
        }
    }

    pub(super) fn builder(&self) -> crate::build::Builder {
        self.builder.clone()
    }

    /// A place at the end of an instance's line of deploys: what to wait
    /// for (the end of the deploy before, if any) and what to drop when
    /// this deploy ends.
    fn take_deploy_turn(
        &self,
        name: &str,
    ) -> (
        Option<tokio::sync::oneshot::Receiver<()>>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (done, next_waits_on) = tokio::sync::oneshot::channel();
        let mut line = self.deploy_lines.lock().unwrap_or_else(|p| p.into_inner());
        (line.insert(name.to_string(), next_waits_on), done)
    }

    /// An instance's deploys, newest first.
    pub fn deploys(&self, name: &str) -> Result<Vec<DeployRecord>> {
        self.get(name)?;
        Ok(self.store.deploys(name)?)
    }

    pub fn deploy_record(&self, name: &str, id: &str) -> Result<DeployRecord> {
        self.get(name)?;
        let id = DeployId::parse(id).map_err(|e| ManagerError::Invalid(e.to_string()))?;
        self.store
            .deploy(name, id)?
            .ok_or_else(|| ManagerError::NotFound(format!("deploy {id} of {name}")))
    }

    /// The newest deploy of an instance, by id and status (one query).
    pub fn last_deploy(&self, name: &str) -> Option<(DeployId, DeployStatus)> {
        let d = self.store.last_deploy(name).ok()??;
        Some((d.id, d.status))
    }

    /// Where an instance is deployed from, if it is.
    pub fn deploy_source(&self, name: &str) -> Result<Option<DeploySource>> {
        Ok(self.store.deploy_sources(Some(name))?.pop())
    }

    /// Every deployed instance with its source and newest deploy.
    pub fn apps(
        &self,
    ) -> Result<
        Vec<(
            crate::store::InstanceRecord,
            DeploySource,
            Option<DeployRecord>,
        )>,
    > {
        let mut out = Vec::new();
        for source in self.store.deploy_sources(None)? {
            let Ok(rec) = self.get(source.instance.as_str()) else {
                continue;
            };
            let last = self.store.last_deploy(source.instance.as_str())?;
            out.push((rec, source, last));
        }
        Ok(out)
    }

    /// A deploy's log file.
    pub fn deploy_log_path(&self, name: &str, id: &str) -> Result<PathBuf> {
        let d = self.deploy_record(name, id)?;
        let rec = self.get(name)?;
        Ok(self.layout.deploy_log(&rec.dir, d.id))
    }

    /// At daemon start: deploys that were queued or building when the
    /// daemon stopped are over (their workspaces and half-made releases
    /// go); a switch in progress is finished or undone by the instance's
    /// recovery (`DeployMarker`).
    pub(super) fn end_interrupted_deploys(&self) {
        let Ok(unfinished) = self.store.unfinished_deploys() else {
            return;
        };
        for mut d in unfinished {
            if d.status == DeployStatus::Switching {
                self.settle_unmarked_switch(&d);
                continue;
            }
            if let (Some(release), Ok(rec)) = (&d.release, self.get(d.instance.as_str())) {
                let dir = self.layout.release_dir(&rec.dir, release);
                if rec.release.as_ref() != Some(release) {
                    let _ = std::fs::remove_dir_all(partial_dir(&dir));
                    let _ = std::fs::remove_dir_all(&dir);
                }
                log_line(
                    &self.layout.deploy_log(&rec.dir, d.id),
                    "failed: the daemon stopped before the deploy ended; nothing was switched",
                );
            }
            d.status = DeployStatus::Failed;
            d.reason =
                Some("the daemon stopped before the deploy ended; nothing was switched".into());
            d.finished_at = Some(Utc::now());
            let _ = self.store.update_deploy(&d);
            self.audit(
                &Actor::daemon(),
                crate::model::AuditAction::Deploy,
                Some(d.instance.as_str()),
                Err(format!(
                    "deploy {}: {}",
                    d.id,
                    d.reason.clone().unwrap_or_default()
                )),
            );
        }
        self.builder.remove_stale_workspaces();
    }
}

fn git_input(e: crate::model::GitError) -> ManagerError {
    ManagerError::Invalid(e.to_string())
}

fn git_error(e: crate::git::GitError) -> ManagerError {
    ManagerError::Invalid(e.to_string())
}

/// Where a release is put together before it takes its name.
pub(super) fn partial_dir(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dir.with_file_name(name)
}

/// Put a release together from the built checkout: `pb_hooks`,
/// `pb_migrations`, `pb_public` (the repository's, then the npm build's
/// output over it), the Go binary as `app`, and `release.json`; in a
/// `.partial` directory first, renamed into place when whole.
fn assemble_release(
    app: &Path,
    plan: &BuildPlan,
    built: Option<&Path>,
    dir: &Path,
    info: &ReleaseInfo,
) -> std::io::Result<()> {
    use crate::build::copy_tree;
    let partial = partial_dir(dir);
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    let result = (|| {
        for part in ["pb_hooks", "pb_migrations", "pb_public"] {
            let from = app.join(part);
            if from.is_dir() {
                copy_tree(&from, &partial.join(part))?;
            } else {
                std::fs::create_dir_all(partial.join(part))?;
            }
        }
        if let Some(npm) = &plan.npm {
            let base = app.join(&npm.dir);
            let output = match &npm.output {
                Some(out) => Some(base.join(out)),
                None => NPM_OUTPUT_DIRS
                    .iter()
                    .map(|d| base.join(d))
                    .find(|p| p.is_dir()),
            };
            match output {
                Some(out) if out.is_dir() => copy_tree(&out, &partial.join("pb_public"))?,
                Some(out) => {
                    return Err(std::io::Error::other(format!(
                        "the build made no {} (build.output in {REPO_CONFIG_FILE})",
                        out.file_name().unwrap_or_default().to_string_lossy()
                    )))
                }
                None => {
                    return Err(std::io::Error::other(format!(
                        "the build made none of {}: say where its output is with build.output in {REPO_CONFIG_FILE}",
                        NPM_OUTPUT_DIRS.join(", ")
                    )))
                }
            }
        }
        if let Some(bin) = built {
            copy_tree(bin, &partial.join("app"))?;
        }
        let text = serde_json::to_vec_pretty(info).map_err(std::io::Error::other)?;
        crate::fsutil::atomic_write(&partial.join(ReleaseInfo::FILE), &text)?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&partial, dir)?;
        crate::fsutil::sync_dir(dir.parent().unwrap_or(dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    result
}

/// The commit ids of an instance's releases on disk, by release.
pub(super) fn releases_on_disk(releases: &Path) -> Vec<ReleaseName> {
    let Ok(entries) = std::fs::read_dir(releases) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| ReleaseName::parse(e.file_name().to_str()?).ok())
        .collect()
}

/// A commit given by prefix, for `rollback --to`.
pub(super) fn commit_matches(commit: &CommitId, prefix: &str) -> bool {
    prefix.len() >= 4 && commit.as_str().starts_with(&prefix.to_ascii_lowercase())
}
