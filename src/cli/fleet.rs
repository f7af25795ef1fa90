//! `pockestrator plan|apply|export`: fleet as code. The file is read here
//! and sent as text; the daemon checks it, plans and applies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::commands::print_json;
use super::GlobalArgs;
use crate::api::dto::{ApplyFleet, ChangeDto, PlanDto, PlanFleet};

/// `pockestrator plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The fleet file (TOML; `-` reads standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Also plan to delete the instances this fleet created that the file
    /// no longer lists (never one made by hand or by another fleet).
    #[arg(long)]
    pub prune: bool,
    /// Save the plan here, for `apply --plan FILE` (refused there once the
    /// fleet has changed since).
    #[arg(long, value_name = "PLAN")]
    pub out: Option<PathBuf>,
}

/// `pockestrator apply`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["file", "plan"])))]
pub struct ApplyArgs {
    /// The fleet file (TOML; `-` reads standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Delete the instances this fleet created that the file no longer
    /// lists (archived, as `delete` does; never one made by hand).
    #[arg(long, conflicts_with = "plan")]
    pub prune: bool,
    /// Apply a plan saved by `plan --out`: exactly its file, and only if
    /// the fleet is still in the state it was planned against.
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<PathBuf>,
}

/// `pockestrator export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The fleet's name in the file (`fleet = "…"`; default `fleet`).
    #[arg(long, value_name = "NAME")]
    pub fleet: Option<String>,
    /// Write the file here instead of standard output.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
}

fn read_file(path: &Path) -> anyhow::Result<(String, String)> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the fleet file from standard input")?;
        return Ok((text, "fleet.toml".to_string()));
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the fleet file {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "fleet.toml".to_string());
    Ok((text, name))
}

fn sign(action: &str) -> &'static str {
    match action {
        "create" => "+",
        "update" => "~",
        "delete" => "-",
        _ => "=",
    }
}

fn change_line(c: &ChangeDto) -> String {
    let fields: Vec<String> = c
        .fields
        .iter()
        .map(|f| match (&f.from, &f.to) {
            (None, Some(to)) if c.action == "create" => format!("{} {to}", f.field),
            (from, to) => format!(
                "{} {} → {}",
                f.field,
                from.as_deref().unwrap_or("(none)"),
                to.as_deref().unwrap_or("(none)")
            ),
        })
        .collect();
    let mut line = format!("{} {} {}", sign(&c.action), c.action, c.name);
    if !fields.is_empty() {
        line.push_str(": ");
        line.push_str(&fields.join("; "));
    }
    if c.restarts {
        line.push_str(" (restarts it)");
    }
    line
}

/// The plan as people read it.
pub fn render_plan(p: &PlanDto) -> String {
    let mut out = format!(
        "fleet {} (state {})\n",
        p.fleet,
        &p.state[..12.min(p.state.len())]
    );
    let count = |a: &str| p.changes.iter().filter(|c| c.action == a).count();
    for c in p.changes.iter().filter(|c| c.action != "nothing") {
        out.push_str(&format!("  {}\n", change_line(c)));
    }
    if !p.unmanaged.is_empty() {
        out.push_str(&format!(
            "  left alone (not created by fleet {}): {}\n",
            p.fleet,
            p.unmanaged.join(", ")
        ));
    }
    out.push_str(&format!(
        "Plan: {} to create, {} to update, {} to delete, {} unchanged.\n",
        count("create"),
        count("update"),
        count("delete"),
        count("nothing")
    ));
    out
}

pub async fn plan(g: &GlobalArgs, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let (file, file_name) = read_file(&args.file)?;
    let plan = g
        .client()?
        .fleet_plan(&PlanFleet {
            file,
            file_name: Some(file_name),
            prune: args.prune,
        })
        .await?;
    if let Some(out) = &args.out {
        let text = serde_json::to_string_pretty(&plan)?;
        std::fs::write(out, text + "\n")
            .with_context(|| format!("cannot write the plan to {}", out.display()))?;
    }
    if g.json {
        print_json(&plan)?;
    } else {
        print!("{}", render_plan(&plan));
        if let Some(out) = &args.out {
            println!(
                "Saved to {}: `pockestrator apply --plan {}` applies exactly this.",
                out.display(),
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn apply(g: &GlobalArgs, args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let body = match (&args.plan, &args.file) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the plan {}", path.display()))?;
            let plan: PlanDto = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a plan saved by `pockestrator plan --out`",
                    path.display()
                )
            })?;
            ApplyFleet {
                file: plan.file,
                file_name: plan.file_name,
                prune: plan.prune,
                state: Some(plan.state),
            }
        }
        (None, Some(path)) => {
            let (file, file_name) = read_file(path)?;
            ApplyFleet {
                file,
                file_name: Some(file_name),
                prune: args.prune,
                state: None,
            }
        }
        (None, None) => unreachable!("clap requires --file or --plan"),
    };
    if !g.json {
        eprintln!("applying: each change is made in turn (creates may download a release)…");
    }
    let done = g.client()?.fleet_apply(&body).await?;
    if g.json {
        print_json(&done)?;
    } else {
        for r in done.results.iter().filter(|r| r.result != "unchanged") {
            let mut line = format!("{} … {}", change_line(&r.change), r.result);
            if let Some(e) = &r.error {
                line.push_str(&format!(": {e}"));
            }
            if let Some(d) = r.deploy {
                line.push_str(&format!(
                    " (deploy {d} started: `pockestrator deploys {}`)",
                    r.change.name
                ));
            }
            println!("{line}");
        }
        let count = |a: &str| {
            done.results
                .iter()
                .filter(|r| r.change.action == a && r.error.is_none())
                .count()
        };
        println!(
            "Applied fleet {}: {} created, {} updated, {} deleted, {} unchanged, {} failed.",
            done.fleet,
            count("create"),
            count("update"),
            count("delete"),
            count("nothing"),
            done.failed
        );
    }
    Ok(if done.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn export(g: &GlobalArgs, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let exported = g.client()?.fleet_export(args.fleet.as_deref()).await?;
    match &args.out {
        Some(out) => {
            std::fs::write(out, &exported.file)
                .with_context(|| format!("cannot write {}", out.display()))?;
            if !g.json {
                eprintln!("wrote fleet {} to {}", exported.fleet, out.display());
            }
        }
        None if g.json => print_json(&exported)?,
        None => print!("{}", exported.file),
    }
    Ok(ExitCode::SUCCESS)
}

/// `pockestrator schema push`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("targets").required(true).args(["to", "all", "tag"])))]
pub struct SchemaPushArgs {
    /// The schema file (JSON; `-` reads standard input).
    pub file: PathBuf,
    /// These instances, in this order (the first is the canary).
    #[arg(long, value_name = "NAME", num_args = 1..)]
    pub to: Vec<String>,
    /// Every instance.
    #[arg(long)]
    pub all: bool,
    /// Every instance with this tag (tags come from the fleet file).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Also delete the collections and fields the file does not have, with
    /// their data (PocketBase's deleteMissing). Off by default.
    #[arg(long)]
    pub delete_missing: bool,
}

pub async fn schema_push(g: &GlobalArgs, args: SchemaPushArgs) -> anyhow::Result<ExitCode> {
    let (text, name) = read_file(&args.file)?;
    let mut schema: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{name}: not JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        )
    })?;
    // A pulled file has PocketBase's own system collections: never pushed.
    if let Some(list) = schema.as_array_mut() {
        list.retain(|c| c.get("system").and_then(serde_json::Value::as_bool) != Some(true));
        if list.is_empty() {
            anyhow::bail!("{name}: no collections to push (system collections are never pushed)");
        }
    }
    if !g.json {
        eprintln!("pushing {name}: one instance at a time, a backup before each…");
    }
    let report = g
        .client()?
        .schema_push(&crate::api::dto::PushSchema {
            schema,
            to: args.to,
            all: args.all,
            tag: args.tag,
            delete_missing: args.delete_missing,
        })
        .await?;
    if g.json {
        print_json(&report)?;
    } else {
        println!(
            "migration {} ({} collections)",
            report.migration, report.collections
        );
        for r in &report.results {
            let mut line = format!("  {:<24} {:<12} {}", r.name, r.result, r.detail);
            if let Some(s) = &r.snapshot {
                line.push_str(&format!(" (backup {s})"));
            }
            println!("{line}");
        }
        if report.failed > 0 {
            println!(
                "{} of {} not migrated.",
                report.failed,
                report.results.len()
            );
        }
    }
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `pockestrator tunnel …`.
#[derive(Debug, clap::Subcommand)]
pub enum TunnelCommand {
    /// Write a cloudflared configuration for this host's instances.
    ///
    /// One ingress rule per hostname an instance answers at (its routes'
    /// names and custom domains), each to the proxy in front of the
    /// instances with the hostname kept as the Host header, then the
    /// catch-all 404 that cloudflared wants last. Make the tunnel and its
    /// DNS records with cloudflared itself. Examples:
    ///
    ///   pockestrator tunnel config --tunnel fleet --credentials-file /etc/cloudflared/fleet.json -o /etc/cloudflared/config.yml
    ///   cloudflared tunnel --config /etc/cloudflared/config.yml run
    Config {
        /// The tunnel's name or UUID (`cloudflared tunnel create NAME`).
        #[arg(long, value_name = "NAME")]
        tunnel: String,
        /// The tunnel's credentials file (absolute path).
        #[arg(long, value_name = "PATH")]
        credentials_file: Option<String>,
        /// Where cloudflared sends requests: the proxy in front of the
        /// instances (default: the embedded proxy's `serve --proxy-listen`;
        /// for Caddy, its address).
        #[arg(long, value_name = "URL")]
        service: Option<String>,
        /// Write it here instead of standard output.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

pub async fn tunnel(g: &GlobalArgs, cmd: TunnelCommand) -> anyhow::Result<ExitCode> {
    let TunnelCommand::Config {
        tunnel,
        credentials_file,
        service,
        out,
    } = cmd;
    let made = g
        .client()?
        .tunnel_config(&tunnel, credentials_file.as_deref(), service.as_deref())
        .await?;
    match &out {
        Some(path) => {
            std::fs::write(path, &made.file)
                .with_context(|| format!("cannot write {}", path.display()))?;
            if !g.json {
                eprintln!(
                    "wrote {} ({} hostnames)",
                    path.display(),
                    made.hostnames.len()
                );
            }
        }
        None if g.json => print_json(&made)?,
        None => print!("{}", made.file),
    }
    Ok(ExitCode::SUCCESS)
}
