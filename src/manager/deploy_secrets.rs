//! An instance's deploy secrets: the webhook secret that authenticates
//! push events, and the token or SSH deploy key its repository needs.
//! Each is a file of mode 0600 in `deploy-secrets/NAME/` (0700) of the
//! data dir, never in the state database, never logged, never echoed, and
//! never on a command line (git gets the token through its environment).
//! The webhook itself: `POST /webhooks/NAME` with GitHub's or Gitea's
//! `X-Hub-Signature-256`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::deploy::DeployRequest;
use super::{Actor, Manager, ManagerError, Result};
use crate::model::deploy::{pushed_branch, signature_ok};
use crate::model::AuditAction;
use crate::store::DeployRecord;

const WEBHOOK_SECRET: &str = "webhook-secret";

/// What a webhook call led to.
#[derive(Debug)]
pub enum WebhookOutcome {
    /// A push to the deployed branch: this deploy started.
    Deploying(Box<DeployRecord>),
    /// A ping, or a push to another branch: nothing to do (the reason).
    Ignored(String),
}

fn write_secret(dir: &Path, file: &str, value: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    crate::fsutil::atomic_write_mode(&dir.join(file), value, 0o600)
}

fn remove(path: PathBuf) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Manager {
    /// Make (or rotate) an instance's webhook secret; returned once.
    pub async fn set_webhook(&self, name: &str, actor: &Actor) -> Result<String> {
        let result = (|| {
            self.get(name)?;
            let secret = hex::encode(rand::random::<[u8; 32]>());
            write_secret(
                &self.layout.deploy_secrets(name),
                WEBHOOK_SECRET,
                secret.as_bytes(),
            )
            .map_err(|source| ManagerError::Io {
                context: format!("cannot keep the webhook secret of {name}"),
                source,
            })?;
            Ok(secret)
        })();
        self.audited(actor, AuditAction::DeploySettings, name, result, |_| {
            "webhook secret set".to_string()
        })
    }

    /// Turn an instance's webhook off.
    pub async fn delete_webhook(&self, name: &str, actor: &Actor) -> Result<()> {
        let result = (|| {
            self.get(name)?;
            remove(self.layout.deploy_secrets(name).join(WEBHOOK_SECRET)).map_err(|source| {
                ManagerError::Io {
                    context: format!("cannot remove the webhook secret of {name}"),
                    source,
                }
            })
        })();
        self.audited(actor, AuditAction::DeploySettings, name, result, |_| {
            "webhook turned off".to_string()
        })
    }

    /// Keep (or with an empty value remove) an instance's repository
    /// token and SSH deploy key.
    pub async fn set_deploy_credentials(
        &self,
        name: &str,
        token: Option<&str>,
        ssh_key: Option<&str>,
        actor: &Actor,
    ) -> Result<()> {
        let result = (|| {
            self.get(name)?;
            if token.is_none() && ssh_key.is_none() {
                return Err(ManagerError::Invalid(
                    "give a token or an ssh_key (an empty one removes it)".into(),
                ));
            }
            let dir = self.layout.deploy_secrets(name);
            let io = |source| ManagerError::Io {
                context: format!("cannot keep the deploy credentials of {name}"),
                source,
            };
            if let Some(token) = token {
                let token = token.trim();
                if token.chars().any(|c| c.is_control() || c == ' ') {
                    return Err(ManagerError::Invalid(
                        "a token is one word of printable characters".into(),
                    ));
                }
                if token.is_empty() {
                    remove(dir.join("token")).map_err(io)?;
                } else {
                    write_secret(&dir, "token", token.as_bytes()).map_err(io)?;
                }
            }
            if let Some(key) = ssh_key {
                if key.trim().is_empty() {
                    remove(dir.join("ssh-key")).map_err(io)?;
                } else {
                    if !key.trim_start().starts_with("-----BEGIN ") {
                        return Err(ManagerError::Invalid(
                            "ssh_key is a private key in OpenSSH or PEM form (-----BEGIN …)".into(),
                        ));
                    }
                    let mut text = key.trim().to_string();
                    text.push('\n');
                    write_secret(&dir, "ssh-key", text.as_bytes()).map_err(io)?;
                }
            }
            Ok(())
        })();
        self.audited(actor, AuditAction::DeploySettings, name, result, |_| {
            format!(
                "deploy credentials changed ({})",
                [token.map(|_| "token"), ssh_key.map(|_| "ssh key")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// A push event for `name`: checked against its webhook secret; a push
    /// to the deployed branch starts a deploy of it.
    pub async fn webhook(
        self: &Arc<Self>,
        name: &str,
        event: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        actor: &Actor,
    ) -> Result<WebhookOutcome> {
        let refused = || ManagerError::Unauthorized("the webhook signature does not match".into());
        let secret = std::fs::read(self.layout.deploy_secrets(name).join(WEBHOOK_SECRET))
            .map_err(|_| refused())?;
        if !signature_ok(&secret, body, signature) {
            self.audit(
                actor,
                AuditAction::Deploy,
                Some(name),
                Err("webhook refused: bad or missing X-Hub-Signature-256".into()),
            );
            return Err(refused());
        }
        if event == Some("ping") {
            return Ok(WebhookOutcome::Ignored("pong".into()));
        }
        let source = self.deploy_source(name)?.ok_or_else(|| {
            ManagerError::Conflict(format!("{name} is not deployed from a repository yet"))
        })?;
        let payload: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ManagerError::Invalid(format!("the push event is not JSON: {e}")))?;
        let git_ref = payload.get("ref").and_then(|r| r.as_str()).unwrap_or("");
        match pushed_branch(git_ref) {
            Some(branch) if branch == source.branch.as_str() => {}
            _ => {
                return Ok(WebhookOutcome::Ignored(format!(
                    "a push to {}, not to {}",
                    crate::model::names::shown(git_ref),
                    source.branch
                )))
            }
        }
        let d = self.deploy(name, DeployRequest::default(), actor).await?;
        Ok(WebhookOutcome::Deploying(Box::new(d)))
    }
}
