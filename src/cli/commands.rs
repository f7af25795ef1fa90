//! The client commands: each one calls the API through [`crate::client`]
//! and prints a table, or JSON with `--json`.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use serde::Serialize;

use super::{table, GlobalArgs};
use crate::api::dto::*;
use crate::client::{Client, Lifecycle};

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The instance name: a lowercase DNS label (a-z, 0-9, '-'; 1 to 63 characters).
    pub name: String,
    /// A PocketBase version such as 0.28.4, or `latest` (the default).
    #[arg(long, conflicts_with = "binary")]
    pub version: Option<String>,
    /// Run this PocketBase binary instead of a release (its version is read
    /// from `--version`; it is copied into the data dir).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<std::path::PathBuf>,
    /// The port on 127.0.0.1 (default: 8091, else one above the highest in use).
    #[arg(long)]
    pub port: Option<u32>,
    /// A domain the instance is served at, e.g. moots.example.com.
    #[arg(long)]
    pub domain: Option<String>,
    /// Create a superuser with this e-mail; its password is generated and
    /// shown once, unless --password-stdin.
    #[arg(long, value_name = "EMAIL")]
    pub superuser_email: Option<String>,
    /// Read the superuser's password from standard input.
    #[arg(long, requires = "superuser_email")]
    pub password_stdin: bool,
    /// Refuse request bodies larger than this through the router, e.g.
    /// 50MB, 512KB, 1GiB (default: 10MB, as seed 000's Caddy block).
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub max_body: Option<u64>,
    /// With the systemd runtime: the unit's MemoryMax=, e.g. 512M.
    #[arg(long, value_name = "SIZE")]
    pub memory_max: Option<String>,
    /// With the systemd runtime: the unit's CPUQuota=, e.g. 50%.
    #[arg(long, value_name = "PERCENT")]
    pub cpu_quota: Option<String>,
    /// Stop it and mark it `sleeping` after this long without a request
    /// through the router (e.g. 15m, 90s, 2h); the next request wakes it in
    /// tens of milliseconds, held by the router meanwhile. Open realtime
    /// streams and WebSockets keep it awake. Default: off.
    #[arg(long, value_name = "DURATION", value_parser = parse_idle_arg)]
    pub idle_timeout: Option<IdleSecs>,
    /// While it sleeps, wake it shortly before each time of this cron
    /// expression (UTC, e.g. "0 3 * * *") so its own cron jobs run; it
    /// sleeps again when idle.
    #[arg(long, value_name = "CRON")]
    pub wake_schedule: Option<String>,
    /// In a cluster: the host to create it on (see `pockestrator hosts`).
    /// Default: the host that is up with the most free memory per
    /// instance, among those matching --region and --tag.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// In a cluster: only a host of this region (`serve --region`).
    #[arg(long, value_name = "REGION", conflicts_with = "host")]
    pub region: Option<String>,
    /// In a cluster: only a host with this tag (`serve --tags`); repeat
    /// for several.
    #[arg(long = "tag", value_name = "TAG", conflicts_with = "host")]
    pub tags: Vec<String>,
}

/// An idle timeout as sent: whole seconds, 0 for off.
#[derive(Debug, Clone, Copy)]
pub struct IdleSecs(pub u64);

fn parse_idle_arg(raw: &str) -> Result<IdleSecs, String> {
    crate::model::IdleTimeout::parse(raw)
        .map(|t| IdleSecs(t.map_or(0, |t| t.as_secs())))
        .map_err(|e| e.to_string())
}

fn parse_size_arg(raw: &str) -> Result<u64, String> {
    crate::model::routing::parse_size(raw)
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    pub name: String,
    /// Move the instance to this port (a running instance is restarted on it).
    #[arg(long)]
    pub port: Option<u32>,
    /// Serve it at NAME.DOMAIN instead of NAME.BASE_DOMAIN.
    #[arg(long, conflicts_with = "no_domain")]
    pub domain: Option<String>,
    /// Go back to the daemon's --base-domain.
    #[arg(long)]
    pub no_domain: bool,
    /// Refuse request bodies larger than this through the router (e.g. 50MB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg, conflicts_with = "default_max_body")]
    pub max_body: Option<u64>,
    /// Go back to the router's default body limit.
    #[arg(long)]
    pub default_max_body: bool,
    /// With the systemd runtime: the unit's MemoryMax= (e.g. 512M), or
    /// `none` to remove it; a running instance is restarted to apply it.
    #[arg(long, value_name = "SIZE")]
    pub memory_max: Option<String>,
    /// With the systemd runtime: the unit's CPUQuota= (e.g. 50%), or `none`.
    #[arg(long, value_name = "PERCENT")]
    pub cpu_quota: Option<String>,
    /// Sleep after this long without a request (e.g. 15m), or `off`.
    #[arg(long, value_name = "DURATION", value_parser = parse_idle_arg)]
    pub idle_timeout: Option<IdleSecs>,
    /// Wake it for its cron jobs at this cron expression (UTC), or `none`.
    #[arg(long, value_name = "CRON")]
    pub wake_schedule: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    pub name: String,
    /// Delete the data instead of archiving it. Asks to type the name, or
    /// needs --yes when not run from a terminal.
    #[arg(long)]
    pub purge: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    pub name: String,
    /// The version to switch to, e.g. 0.40.6, or `latest`.
    #[arg(long, required_unless_present = "binary", conflicts_with = "binary")]
    pub version: Option<String>,
    /// Switch to this PocketBase binary instead of a release.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub name: String,
    /// How many of the last lines.
    #[arg(short = 'n', long = "lines", default_value_t = 100)]
    pub lines: usize,
    /// Keep following the log as it grows (Ctrl-C to stop).
    #[arg(short = 'f', long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events of this instance.
    pub name: Option<String>,
    /// How many, newest first.
    #[arg(short = 'n', long = "limit", default_value_t = 50)]
    pub limit: u32,
}

#[derive(Debug, clap::Subcommand)]
pub enum DomainCommand {
    /// Route a custom domain (a full hostname) to an instance.
    Add { name: String, domain: String },
    /// Stop routing a custom domain to an instance.
    Remove { name: String, domain: String },
    /// List an instance's custom domains.
    List { name: String },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Show what would be imported, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the units are (repeatable; default /etc/systemd/system,
    /// /lib/systemd/system and /usr/lib/systemd/system).
    #[arg(long = "unit-dir", value_name = "DIR")]
    pub unit_dirs: Vec<std::path::PathBuf>,
    /// The Caddyfile whose site blocks give the instances' domains
    /// (default: the daemon's --caddyfile).
    #[arg(long, value_name = "PATH")]
    pub caddyfile: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Put routes that differ back the way they should be.
    #[arg(long)]
    pub repair: bool,
}

#[derive(Debug, Args)]
pub struct SuperuserArgs {
    pub name: String,
    /// The superuser's e-mail: created if missing, its password reset if not.
    #[arg(long)]
    pub email: String,
    /// Read the password from standard input (default: generate one and show it once).
    #[arg(long)]
    pub password_stdin: bool,
}

pub(super) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// Read a password from standard input: the first line, without its newline.
fn read_password() -> anyhow::Result<String> {
    let mut raw = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut raw)
        .context("cannot read the password from standard input")?;
    let password = raw.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        anyhow::bail!("--password-stdin: standard input was empty; pipe the password in, e.g. `echo \"$PW\" | pockestrator …`");
    }
    Ok(password)
}

fn absolute_binary(path: &std::path::Path) -> anyhow::Result<String> {
    let abs =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    if !abs.is_file() {
        anyhow::bail!("--binary {}: no such file", abs.display());
    }
    Ok(abs.display().to_string())
}

/// Install a release through the daemon, with a progress bar on a terminal.
/// Returns the exact version installed.
async fn install_with_progress(
    client: &Client,
    version: &str,
    quiet: bool,
) -> anyhow::Result<String> {
    let body = InstallVersion {
        version: Some(version.to_string()),
        binary: None,
    };
    let mut events = client.install_version(&body).await?;
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    };
    while let Some(event) = events.next().await {
        match event? {
            InstallProgress::Progress {
                downloaded,
                total,
                source,
            } => {
                if let Some(t) = total {
                    bar.set_length(t);
                }
                bar.set_message(format!("downloading PocketBase {version} from {source}"));
                bar.set_position(downloaded);
            }
            InstallProgress::Installed(i) => {
                bar.finish_and_clear();
                return Ok(i.version);
            }
            InstallProgress::Error(e) => {
                bar.finish_and_clear();
                anyhow::bail!("{}", e.message);
            }
        }
    }
    bar.finish_and_clear();
    anyhow::bail!("the daemon ended the install without an answer")
}

pub fn token(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let layout = crate::config::Layout::new(&g.data_dir());
    let path = layout.token();
    let token = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "no token in {} yet: it is created when the daemon first starts (`pockestrator serve`)",
            layout.root.display()
        ),
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "cannot read {}: permission denied (the token is readable only by the daemon's user)",
            path.display()
        ),
        _ => anyhow::anyhow!("cannot read {}: {e}", path.display()),
    })?;
    if g.json {
        print_json(&serde_json::json!({ "token": token.trim() }))?;
    } else {
        println!("{}", token.trim());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn create(g: &GlobalArgs, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let client = g.client()?;
    let password = if args.password_stdin {
        Some(read_password()?)
    } else {
        None
    };
    // In a cluster the instance may go to another host, which downloads
    // its release itself.
    let clustered = client.hosts().await.is_ok();
    let (version, binary) = match &args.binary {
        Some(path) => (None, Some(absolute_binary(path)?)),
        None if clustered => {
            crate::model::InstanceName::parse(&args.name)?;
            (args.version.clone(), None)
        }
        None => {
            // Install first so the download shows a progress bar; a bad name
            // is caught before the download by checking it here too.
            crate::model::InstanceName::parse(&args.name)?;
            let wanted = args.version.clone().unwrap_or_else(|| "latest".to_string());
            let quiet = g.json || !std::io::stderr().is_terminal();
            (
                Some(install_with_progress(&client, &wanted, quiet).await?),
                None,
            )
        }
    };
    let body = CreateInstance {
        name: args.name,
        version,
        binary,
        port: args.port,
        domain: args.domain,
        superuser_email: args.superuser_email,
        superuser_password: password,
        max_body_bytes: args.max_body,
        memory_max: args.memory_max,
        cpu_quota: args.cpu_quota,
        idle_timeout_secs: args.idle_timeout.map(|t| t.0),
        wake_schedule: args.wake_schedule,
        host: args.host,
        region: args.region,
        tags: args.tags,
    };
    let created = client.create_instance(&body).await?;
    if g.json {
        print_json(&created)?;
    } else {
        print!(
            "{}",
            table::created(&created, body.superuser_password.is_none())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let list = g.client()?.list_instances().await?;
    // In a cluster: the hosts whose instances are missing, said, not hidden.
    for missing in &list.unreachable_hosts {
        eprintln!(
            "warning: host {} is not in this list: {}",
            missing.host, missing.error
        );
        let (replicated, not): (Vec<_>, Vec<_>) =
            missing.instances.iter().partition(|i| i.replicated);
        let names = |v: &[&crate::api::dto::HeldInstance]| {
            v.iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !replicated.is_empty() {
            eprintln!(
                "  replicated, so another host brings them back when their leases run out: {}",
                names(&replicated)
            );
        }
        if !not.is_empty() {
            eprintln!(
                "  not replicated, so lost with the host until it comes back (or restore them from a backup): {}",
                names(&not)
            );
        }
    }
    if g.json {
        print_json(&list.instances)?;
    } else {
        print!("{}", table::instances(&list.instances, now()));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn hosts(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let list = g.client()?.hosts().await?;
    if g.json {
        print_json(&list.hosts)?;
    } else {
        print!("{}", table::hosts(&list.hosts, now()));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Subcommand)]
pub enum HostCommand {
    /// Move every replicated instance of host NAME to other hosts (each
    /// where placement puts it), one at a time, and take no new instances
    /// there until `undrain`. Instances that cannot move (not replicated,
    /// no host fits) are listed and stay.
    Drain { name: String },
    /// Let a drained host take new instances again.
    Undrain { name: String },
}

pub async fn host(g: &GlobalArgs, cmd: HostCommand) -> anyhow::Result<ExitCode> {
    let client = g.client()?;
    match cmd {
        HostCommand::Drain { name } => {
            eprintln!("draining host {name}: moving its instances one at a time…");
            let report = client.drain_host(&name).await?;
            if g.json {
                print_json(&report)?;
            } else {
                for m in &report.moved {
                    println!("moved {} to host {}", m.name, m.to);
                }
                for l in &report.left {
                    println!("left {} on host {name}: {}", l.name, l.reason);
                }
                println!(
                    "host {name} drained: {} moved, {} left; it takes no new instances until `pockestrator host undrain {name}`",
                    report.moved.len(),
                    report.left.len()
                );
            }
            Ok(if report.left.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        HostCommand::Undrain { name } => {
            let list = client.undrain_host(&name).await?;
            if g.json {
                print_json(&list.hosts)?;
            } else {
                println!("host {name} takes new instances again");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn move_instance(g: &GlobalArgs, name: &str, to: &str) -> anyhow::Result<ExitCode> {
    eprintln!(
        "moving {name} to host {to}: stopping it, waiting for its replica, restoring it there…"
    );
    let moved = g.client()?.move_instance(name, to).await?;
    if g.json {
        print_json(&moved)?;
    } else {
        println!(
            "moved {} from host {} to host {}",
            moved.name, moved.from, moved.to
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(g: &GlobalArgs, name: &str) -> anyhow::Result<ExitCode> {
    let i = g.client()?.instance(name).await?;
    if g.json {
        print_json(&i)?;
    } else {
        print!("{}", table::instance(&i, now()));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn update(g: &GlobalArgs, args: UpdateArgs) -> anyhow::Result<ExitCode> {
    let body = UpdateInstance {
        domain: if args.no_domain {
            Some(None)
        } else {
            args.domain.map(Some)
        },
        port: args.port,
        max_body_bytes: if args.default_max_body {
            Some(None)
        } else {
            args.max_body.map(Some)
        },
        memory_max: args.memory_max.map(|m| (m != "none").then_some(m)),
        cpu_quota: args.cpu_quota.map(|q| (q != "none").then_some(q)),
        idle_timeout_secs: args.idle_timeout.map(|t| t.0),
        wake_schedule: args.wake_schedule.map(|c| (c != "none").then_some(c)),
    };
    if body.domain.is_none()
        && body.port.is_none()
        && body.max_body_bytes.is_none()
        && body.memory_max.is_none()
        && body.cpu_quota.is_none()
        && body.idle_timeout_secs.is_none()
        && body.wake_schedule.is_none()
    {
        anyhow::bail!("nothing to change: give --port, --domain, --no-domain, --max-body, --default-max-body, --memory-max, --cpu-quota, --idle-timeout or --wake-schedule");
    }
    let i = g.client()?.update_instance(&args.name, &body).await?;
    if g.json {
        print_json(&i)?;
    } else {
        print!("{}", table::instance(&i, now()));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn lifecycle(g: &GlobalArgs, name: &str, action: Lifecycle) -> anyhow::Result<ExitCode> {
    let i = g.client()?.lifecycle(name, action).await?;
    if g.json {
        print_json(&i)?;
    } else {
        match i.pid {
            Some(pid) => println!("{}: {} (pid {pid}) on {}", i.name, i.status, i.url),
            None => println!("{}: {}", i.name, i.status),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(g: &GlobalArgs, args: DeleteArgs) -> anyhow::Result<ExitCode> {
    if args.purge && !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "--purge deletes {}'s data for good: add --yes to confirm",
                args.name
            );
        }
        eprint!(
            "--purge deletes {}'s data for good. Type its name to confirm: ",
            args.name
        );
        let mut typed = String::new();
        std::io::stdin().read_line(&mut typed)?;
        if typed.trim() != args.name {
            anyhow::bail!("not confirmed: nothing was deleted");
        }
    }
    let deleted = g.client()?.delete_instance(&args.name, args.purge).await?;
    if g.json {
        print_json(&deleted)?;
    } else {
        match &deleted.archive {
            Some(a) => println!("deleted {}; its data is archived in {a}", deleted.name),
            None => println!("deleted {} and its data", deleted.name),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn upgrade(g: &GlobalArgs, args: UpgradeArgs) -> anyhow::Result<ExitCode> {
    let client = g.client()?;
    let body = match (&args.version, &args.binary) {
        (_, Some(path)) => UpgradeInstance {
            version: None,
            binary: Some(absolute_binary(path)?),
        },
        (Some(v), None) => {
            let quiet = g.json || !std::io::stderr().is_terminal();
            let exact = install_with_progress(&client, v, quiet).await?;
            UpgradeInstance {
                version: Some(exact),
                binary: None,
            }
        }
        (None, None) => anyhow::bail!("give --version or --binary"),
    };
    let i = client.upgrade(&args.name, &body).await?;
    if g.json {
        print_json(&i)?;
    } else {
        println!("{} now runs PocketBase {}: {}", i.name, i.version, i.status);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn logs(g: &GlobalArgs, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let client = g.client()?;
    if !args.follow {
        let logs = client.logs(&args.name, args.lines).await?;
        if g.json {
            print_json(&logs)?;
        } else {
            let mut out = std::io::stdout().lock();
            for line in &logs.lines {
                writeln!(out, "{line}")?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut stream = client.follow_logs(&args.name, args.lines).await?;
    let mut out = std::io::stdout();
    loop {
        tokio::select! {
            chunk = stream.next() => match chunk {
                Some(chunk) => {
                    out.write_all(&chunk?)?;
                    out.flush()?;
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn versions(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let v = g.client()?.versions().await?;
    if g.json {
        print_json(&v)?;
    } else {
        print!("{}", table::versions(&v));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn events(g: &GlobalArgs, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let list = g
        .client()?
        .events(args.name.as_deref(), Some(args.limit), None)
        .await?;
    if g.json {
        print_json(&list.events)?;
    } else {
        print!("{}", table::events(&list.events));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn history(g: &GlobalArgs, name: &str) -> anyhow::Result<ExitCode> {
    let h = g.client()?.history(name).await?;
    if g.json {
        print_json(&h.changes)?;
    } else {
        print!("{}", table::history(&h.changes));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn superuser(g: &GlobalArgs, args: SuperuserArgs) -> anyhow::Result<ExitCode> {
    let password = if args.password_stdin {
        Some(read_password()?)
    } else {
        None
    };
    let given = password.is_some();
    let body = SetSuperuser {
        email: args.email,
        password,
    };
    let su = g.client()?.set_superuser(&args.name, &body).await?;
    if g.json {
        print_json(&su)?;
    } else {
        println!("superuser {} of {} saved", su.email, args.name);
        if !given {
            println!("password: {}   (shown once: store it now)", su.password);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn domain(g: &GlobalArgs, cmd: DomainCommand) -> anyhow::Result<ExitCode> {
    let client = g.client()?;
    let list = match &cmd {
        DomainCommand::Add { name, domain } => {
            let body = AddDomain {
                domain: domain.clone(),
            };
            client.add_domain(name, &body).await?
        }
        DomainCommand::Remove { name, domain } => client.remove_domain(name, domain).await?,
        DomainCommand::List { name } => client.domains(name).await?,
    };
    if g.json {
        print_json(&list)?;
    } else if list.domains.is_empty() {
        println!("{} has no custom domains", list.name);
    } else {
        for d in &list.domains {
            println!("{d}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn doctor(g: &GlobalArgs, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let client = g.client()?;
    let report = if args.repair {
        client.repair().await?
    } else {
        client.doctor().await?
    };
    if g.json {
        print_json(&report)?;
    } else {
        print!("{}", table::doctor(&report));
    }
    // Failed checks or routes out of place: a non-zero exit for scripts.
    let failed = report.checks.iter().any(|c| c.level == "failed");
    Ok(if report.drifts.is_empty() && !failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn import(g: &GlobalArgs, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let absolute = |p: &std::path::Path| -> anyhow::Result<String> {
        Ok(std::path::absolute(p)?.display().to_string())
    };
    let body = ImportRequest {
        dry_run: args.dry_run,
        unit_dirs: if args.unit_dirs.is_empty() {
            None
        } else {
            Some(
                args.unit_dirs
                    .iter()
                    .map(|d| absolute(d))
                    .collect::<anyhow::Result<_>>()?,
            )
        },
        caddyfile: args.caddyfile.as_deref().map(absolute).transpose()?,
    };
    let report = g.client()?.import(&body).await?;
    if g.json {
        print_json(&report)?;
    } else {
        print!("{}", table::import(&report));
    }
    Ok(ExitCode::SUCCESS)
}
