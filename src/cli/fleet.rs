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
