//! Seed 001's per-user instances: `init_pb`, and looking users up.

use super::create::CreateRequest;
use super::install::BinaryChoice;
use super::{Actor, Manager, Result};
use crate::model::version::VersionRequest;
use crate::model::AuditAction;
use crate::model::{Status, UserId};
use crate::runtime::{Phase as RunPhase, Runtime};
use crate::store::{InstanceRecord, Phase};

impl Manager {
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
                let req = CreateRequest::named(name.as_str(), binary);
                let result = self
                    .create_inner(
                        req,
                        actor,
                        Some((user, dir, self.cfg.compat.base_port)),
                        None,
                    )
                    .await;
                let created =
                    self.audited(actor, AuditAction::Create, name.as_str(), result, |c| {
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
    pub(super) fn default_user_version(&self) -> Result<VersionRequest> {
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
}
