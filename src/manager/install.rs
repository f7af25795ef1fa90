//! Getting the binary an instance runs: a release through the release
//! sources (with its download progress on the event bus) or the
//! operator's own file.

use crate::model::AuditAction;
use std::path::PathBuf;
use std::time::Duration;

use semver::Version;

use super::{Actor, Manager, Result};
use crate::events::Event;
use crate::model::version::VersionRequest;
use crate::release::{Installed, ReleaseError};

/// Which binary an instance should run.
#[derive(Debug, Clone)]
pub enum BinaryChoice {
    /// A release, resolved and downloaded through the release sources.
    Release(VersionRequest),
    /// The operator's own binary; its version is read from `--version`.
    Local(PathBuf),
}

impl Manager {
    /// Resolve and install the binary an instance should run.
    pub(super) async fn install(&self, choice: &BinaryChoice) -> Result<Installed> {
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
    pub(super) async fn ensure_publishing(
        &self,
        version: &Version,
    ) -> Result<Installed, ReleaseError> {
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
                AuditAction::Install,
                None,
                Ok(format!("{} from {}", i.version, i.source)),
            ),
            Err(e) => self.audit(
                actor,
                AuditAction::Install,
                None,
                Err(format!("{what}: {e}")),
            ),
        }
        result
    }
}
