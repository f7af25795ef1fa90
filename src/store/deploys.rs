//! Deploys from git: where each deployed instance comes from (its
//! repository, branch and sub-directory) and the history of its deploys.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::{parse_ts, ts, Store, StoreError};
use crate::model::{
    BranchName, CommitId, DeployId, DeployKind, DeployStatus, InstanceName, ReleaseName, RepoUrl,
    Subdir,
};

/// Where an instance is deployed from.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploySource {
    pub instance: InstanceName,
    pub repo: RepoUrl,
    pub branch: BranchName,
    pub subdir: Option<Subdir>,
    pub created_at: DateTime<Utc>,
}

/// One deploy (or rollback) as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployRecord {
    pub instance: InstanceName,
    pub id: DeployId,
    pub kind: DeployKind,
    pub repo: RepoUrl,
    pub branch: BranchName,
    pub subdir: Option<Subdir>,
    /// Known once fetched (a rollback knows it from the start).
    pub commit: Option<CommitId>,
    /// The release directory it built or switched to.
    pub release: Option<ReleaseName>,
    pub status: DeployStatus,
    /// Why it failed, in words.
    pub reason: Option<String>,
    pub actor: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl DeployRecord {
    /// A deploy about to be recorded: `queued`, started now, its id given
    /// by the store.
    pub fn queued(
        instance: InstanceName,
        kind: DeployKind,
        repo: RepoUrl,
        branch: BranchName,
        subdir: Option<Subdir>,
        actor: &str,
    ) -> Self {
        Self {
            instance,
            id: DeployId(0),
            kind,
            repo,
            branch,
            subdir,
            commit: None,
            release: None,
            status: DeployStatus::Queued,
            reason: None,
            actor: actor.to_string(),
            started_at: Utc::now(),
            finished_at: None,
        }
    }
}

const DEPLOY_COLUMNS: &str =
    "instance, id, kind, repo, branch, subdir, commit_id, release, status, \
     reason, actor, started_at, finished_at";

impl Store {
    /// Record (or replace) where an instance is deployed from.
    pub fn set_deploy_source(&self, s: &DeploySource) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO deploy_sources (instance, repo, branch, subdir, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (instance) DO UPDATE SET \
             repo = ?2, branch = ?3, subdir = ?4",
            params![
                s.instance.as_str(),
                s.repo.as_str(),
                s.branch.as_str(),
                s.subdir.as_ref().map(Subdir::as_str),
                ts(s.created_at)
            ],
        )?;
        Ok(())
    }

    /// Every deployed instance's source, or one instance's.
    pub fn deploy_sources(&self, instance: Option<&str>) -> Result<Vec<DeploySource>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT instance, repo, branch, subdir, created_at FROM deploy_sources \
             WHERE (?1 IS NULL OR instance = ?1) ORDER BY instance",
        )?;
        let rows = stmt.query_map([instance], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (instance, repo, branch, subdir, created_at) = row?;
            let label = format!("deploy source of {instance}");
            let corrupt = |field: &'static str, value: &str| StoreError::Corrupt {
                row: label.clone(),
                field,
                value: value.to_string(),
            };
            out.push(DeploySource {
                instance: InstanceName::parse(&instance)
                    .map_err(|_| corrupt("deploy_sources.instance", &instance))?,
                repo: RepoUrl::parse(&repo).map_err(|_| corrupt("deploy_sources.repo", &repo))?,
                branch: BranchName::parse(&branch)
                    .map_err(|_| corrupt("deploy_sources.branch", &branch))?,
                subdir: subdir
                    .as_deref()
                    .map(|d| Subdir::parse(d).map_err(|_| corrupt("deploy_sources.subdir", d)))
                    .transpose()?,
                created_at: parse_ts(&label, "deploy_sources.created_at", created_at)?,
            });
        }
        Ok(out)
    }

    /// Start a deploy: the next id of the instance, in one statement.
    pub fn insert_deploy(&self, d: &DeployRecord) -> Result<DeployId, StoreError> {
        let conn = self.conn();
        let id: u32 = conn.query_row(
            &format!(
                "INSERT INTO deploys ({DEPLOY_COLUMNS}) VALUES (?1, \
                 (SELECT COALESCE(MAX(id), 0) + 1 FROM deploys WHERE instance = ?1), \
                 ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id"
            ),
            params![
                d.instance.as_str(),
                d.kind.as_str(),
                d.repo.as_str(),
                d.branch.as_str(),
                d.subdir.as_ref().map(Subdir::as_str),
                d.commit.as_ref().map(CommitId::as_str),
                d.release.as_ref().map(ReleaseName::as_str),
                d.status.as_str(),
                d.reason,
                d.actor,
                ts(d.started_at),
                d.finished_at.map(ts),
            ],
            |r| r.get(0),
        )?;
        Ok(DeployId(id))
    }

    /// Write a deploy's progress (commit, release, status, reason, end).
    pub fn update_deploy(&self, d: &DeployRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE deploys SET commit_id = ?3, release = ?4, status = ?5, reason = ?6, \
             finished_at = ?7 WHERE instance = ?1 AND id = ?2",
            params![
                d.instance.as_str(),
                d.id.0,
                d.commit.as_ref().map(CommitId::as_str),
                d.release.as_ref().map(ReleaseName::as_str),
                d.status.as_str(),
                d.reason,
                d.finished_at.map(ts),
            ],
        )?;
        Ok(())
    }

    /// One instance's deploys, newest first.
    pub fn deploys(&self, instance: &str) -> Result<Vec<DeployRecord>, StoreError> {
        self.query_deploys(
            &format!("SELECT {DEPLOY_COLUMNS} FROM deploys WHERE instance = ?1 ORDER BY id DESC"),
            params![instance],
        )
    }

    pub fn deploy(&self, instance: &str, id: DeployId) -> Result<Option<DeployRecord>, StoreError> {
        Ok(self
            .query_deploys(
                &format!("SELECT {DEPLOY_COLUMNS} FROM deploys WHERE instance = ?1 AND id = ?2"),
                params![instance, id.0],
            )?
            .pop())
    }

    /// Deploys of any instance that have not ended (for daemon start).
    pub fn unfinished_deploys(&self) -> Result<Vec<DeployRecord>, StoreError> {
        self.query_deploys(
            &format!(
                "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE status NOT IN ('succeeded', 'failed') \
                 ORDER BY instance, id"
            ),
            params![],
        )
    }

    /// The newest deploy of an instance, if any.
    pub fn last_deploy(&self, instance: &str) -> Result<Option<DeployRecord>, StoreError> {
        Ok(self
            .query_deploys(
                &format!(
                    "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE instance = ?1 ORDER BY id DESC LIMIT 1"
                ),
                params![instance],
            )?
            .pop())
    }

    /// Whether an instance has a deploy source (is an app).
    pub fn is_deployed(&self, instance: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM deploy_sources WHERE instance = ?1",
                [instance],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn query_deploys(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<DeployRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql)?;
        type Raw = (
            String,
            u32,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
            Option<String>,
            String,
            String,
            Option<String>,
        );
        let rows = stmt.query_map(params, |r| -> rusqlite::Result<Raw> {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                instance,
                id,
                kind,
                repo,
                branch,
                subdir,
                commit,
                release,
                status,
                reason,
                actor,
                started_at,
                finished_at,
            ) = row?;
            let label = format!("deploy {id} of {instance}");
            let corrupt = |field: &'static str, value: &str| StoreError::Corrupt {
                row: label.clone(),
                field,
                value: value.to_string(),
            };
            out.push(DeployRecord {
                instance: InstanceName::parse(&instance)
                    .map_err(|_| corrupt("deploys.instance", &instance))?,
                id: DeployId(id),
                kind: DeployKind::parse(&kind).ok_or_else(|| corrupt("deploys.kind", &kind))?,
                repo: RepoUrl::parse(&repo).map_err(|_| corrupt("deploys.repo", &repo))?,
                branch: BranchName::parse(&branch)
                    .map_err(|_| corrupt("deploys.branch", &branch))?,
                subdir: subdir
                    .as_deref()
                    .map(|d| Subdir::parse(d).map_err(|_| corrupt("deploys.subdir", d)))
                    .transpose()?,
                commit: commit
                    .as_deref()
                    .map(|c| CommitId::parse(c).map_err(|_| corrupt("deploys.commit_id", c)))
                    .transpose()?,
                release: release
                    .as_deref()
                    .map(|r| ReleaseName::parse(r).map_err(|_| corrupt("deploys.release", r)))
                    .transpose()?,
                status: DeployStatus::parse(&status)
                    .ok_or_else(|| corrupt("deploys.status", &status))?,
                reason,
                actor,
                started_at: parse_ts(&label, "deploys.started_at", started_at)?,
                finished_at: finished_at
                    .map(|t| parse_ts(&label, "deploys.finished_at", t))
                    .transpose()?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::record;

    fn deploy(instance: &str) -> DeployRecord {
        DeployRecord {
            instance: InstanceName::parse(instance).unwrap(),
            id: DeployId(0),
            kind: DeployKind::Deploy,
            repo: RepoUrl::parse("https://git.example.com/app.git").unwrap(),
            branch: BranchName::parse("main").unwrap(),
            subdir: Some(Subdir::parse("site").unwrap()),
            commit: None,
            release: None,
            status: DeployStatus::Building,
            reason: None,
            actor: "cli".into(),
            started_at: Utc::now(),
            finished_at: None,
        }
    }

    #[test]
    fn deploys_count_up_per_instance_and_round_trip() {
        let store = Store::open_in_memory().unwrap();
        store.insert_instance(&record("blog", 8091)).unwrap();
        store.insert_instance(&record("shop", 8092)).unwrap();
        let a = store.insert_deploy(&deploy("blog")).unwrap();
        let b = store.insert_deploy(&deploy("blog")).unwrap();
        let c = store.insert_deploy(&deploy("shop")).unwrap();
        assert_eq!((a, b, c), (DeployId(1), DeployId(2), DeployId(1)));

        let mut d = store.deploy("blog", b).unwrap().unwrap();
        assert_eq!(d.status, DeployStatus::Building);
        assert_eq!(store.unfinished_deploys().unwrap().len(), 3);
        let commit = CommitId::parse("3f2a9c1d0b7e3f2a9c1d0b7e3f2a9c1d0b7e3f2a").unwrap();
        d.release = Some(ReleaseName::new(d.id, &commit));
        d.commit = Some(commit);
        d.status = DeployStatus::Failed;
        d.reason = Some("npm run build exited with 1".into());
        d.finished_at = Some(Utc::now());
        store.update_deploy(&d).unwrap();
        let back = store.last_deploy("blog").unwrap().unwrap();
        assert_eq!(back.id, DeployId(2));
        assert_eq!(back.release, d.release);
        assert_eq!(back.reason, d.reason);
        assert_eq!(store.unfinished_deploys().unwrap().len(), 2);
        assert_eq!(
            store
                .deploys("blog")
                .unwrap()
                .iter()
                .map(|d| d.id.0)
                .collect::<Vec<_>>(),
            vec![2, 1]
        );
    }

    #[test]
    fn sources_are_replaced_and_go_with_the_instance() {
        let store = Store::open_in_memory().unwrap();
        store.insert_instance(&record("blog", 8091)).unwrap();
        let mut s = DeploySource {
            instance: InstanceName::parse("blog").unwrap(),
            repo: RepoUrl::parse("https://git.example.com/app.git").unwrap(),
            branch: BranchName::parse("main").unwrap(),
            subdir: None,
            created_at: Utc::now(),
        };
        store.set_deploy_source(&s).unwrap();
        s.branch = BranchName::parse("release/2").unwrap();
        store.set_deploy_source(&s).unwrap();
        let all = store.deploy_sources(None).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].branch.as_str(), "release/2");
        assert!(store.is_deployed("blog").unwrap());
        store.insert_deploy(&deploy("blog")).unwrap();
        store.delete_instance("blog").unwrap();
        assert!(store.deploy_sources(None).unwrap().is_empty());
        assert!(store.deploys("blog").unwrap().is_empty());
    }
}
