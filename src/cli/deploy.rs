//! `pockestrator deploy`, `deploys`, `rollback` and `webhook`: deploys
//! from git, their history, switching back, and push-to-deploy.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use futures::StreamExt as _;

use super::commands::print_json;
use super::{table, GlobalArgs};
use crate::api::dto::{DeployDto, StartDeploy, StartRollback};
use crate::client::{Client, ClientError};

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The instance (made if it does not exist; its name is its subdomain).
    pub name: String,
    /// The repository: https://…, ssh://…, git@host:path, or file:///…
    /// under a `serve --git-allow-dir`. Needed the first time; later
    /// deploys use the recorded one.
    #[arg(long, value_name = "URL")]
    pub repo: Option<String>,
    /// The branch to deploy (default: the recorded one, then main).
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// The app's directory inside the repository.
    #[arg(long, value_name = "DIR")]
    pub subdir: Option<String>,
    /// A file holding an HTTPS token for a private repository (kept by the
    /// daemon in a 0600 file; never put it on the command line itself).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// A file holding an SSH deploy key (private key) for the repository.
    #[arg(long, value_name = "FILE")]
    pub ssh_key_file: Option<std::path::PathBuf>,
    /// Return once the deploy is started instead of following its log.
    #[arg(long)]
    pub detach: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    pub name: String,
    /// The commit to go back to (at least 4 hex digits; see `deploys
    /// NAME`); default: the release before the current one.
    #[arg(long, value_name = "COMMIT")]
    pub to: Option<String>,
    /// Return once the rollback is started instead of following it.
    #[arg(long)]
    pub detach: bool,
}

#[derive(Debug, Args)]
pub struct WebhookArgs {
    pub name: String,
    /// Turn the webhook off (its secret no longer works).
    #[arg(long)]
    pub off: bool,
}

fn read_secret(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub async fn deploy(g: &GlobalArgs, args: DeployArgs) -> anyhow::Result<ExitCode> {
    let client = g.client()?;
    let exists = match client.instance(&args.name).await {
        Ok(_) => true,
        Err(ClientError::Api { status: 404, .. }) => false,
        Err(e) => return Err(e.into()),
    };
    if !exists && args.repo.is_none() {
        anyhow::bail!(
            "{} does not exist: say which repository to deploy with --repo URL",
            args.name
        );
    }
    let d = client
        .start_deploy(
            &args.name,
            &StartDeploy {
                repo: args.repo,
                branch: args.branch,
                subdir: args.subdir,
                create: !exists,
                token: args.token_file.as_deref().map(read_secret).transpose()?,
                ssh_key: args.ssh_key_file.as_deref().map(read_secret).transpose()?,
            },
        )
        .await?;
    follow(g, &client, &args.name, d, args.detach).await
}

pub async fn rollback(g: &GlobalArgs, args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let client = g.client()?;
    let d = client
        .rollback(&args.name, &StartRollback { to: args.to })
        .await?;
    follow(g, &client, &args.name, d, args.detach).await
}

/// Print a deploy's log as it is written, then its result; non-zero exit
/// when it failed.
async fn follow(
    g: &GlobalArgs,
    client: &Client,
    name: &str,
    d: DeployDto,
    detach: bool,
) -> anyhow::Result<ExitCode> {
    if detach {
        if g.json {
            print_json(&d)?;
        } else {
            println!(
                "{} {} of {name} started; follow it with `pockestrator deploys {name}`",
                d.kind, d.id
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !g.json {
        let mut stream = client.follow_deploy_log(name, d.id).await?;
        let mut err = std::io::stderr();
        loop {
            tokio::select! {
                chunk = stream.next() => match chunk {
                    Some(chunk) => {
                        err.write_all(&chunk?)?;
                        err.flush()?;
                    }
                    None => break,
                },
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("(the {} goes on in the daemon; `pockestrator deploys {name}` shows how it ends)", d.kind);
                    return Ok(ExitCode::from(130));
                }
            }
        }
    }
    // The log ends with the deploy; the record says how.
    let mut done = client.deploy(name, d.id).await?;
    while !matches!(done.status.as_str(), "succeeded" | "failed") {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        done = client.deploy(name, d.id).await?;
    }
    if g.json {
        print_json(&done)?;
    } else if done.status == "succeeded" {
        println!(
            "{} {} of {name}: {} ({}) serves",
            done.kind,
            done.id,
            done.release.clone().unwrap_or_default(),
            done.commit
                .as_deref()
                .map(|c| &c[..c.len().min(12)])
                .unwrap_or("")
        );
    } else {
        eprintln!(
            "error: {} {} of {name} failed: {}",
            done.kind,
            done.id,
            done.reason.clone().unwrap_or_default()
        );
    }
    Ok(if done.status == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn deploys(g: &GlobalArgs, name: &str) -> anyhow::Result<ExitCode> {
    let list = g.client()?.deploys(name).await?;
    if g.json {
        print_json(&list)?;
    } else {
        print!("{}", table::deploys(&list));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn webhook(g: &GlobalArgs, args: WebhookArgs) -> anyhow::Result<ExitCode> {
    let client = g.client()?;
    if args.off {
        client.delete_webhook(&args.name).await?;
        if !g.json {
            println!("the webhook of {} is off", args.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let hook = client.set_webhook(&args.name).await?;
    if g.json {
        print_json(&hook)?;
    } else {
        println!(
            "POST {} on the daemon's TCP listener (content type application/json)",
            hook.path
        );
        println!("secret: {}", hook.secret);
        println!("(shown once; a push to the deployed branch deploys it)");
    }
    Ok(ExitCode::SUCCESS)
}
