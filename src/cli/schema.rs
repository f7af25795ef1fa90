//! `pockestrator schema pull`, `pockestrator openapi` and `pockestrator
//! types`: schema as code, read from an instance's own data.db by the
//! daemon (no credentials needed or kept), printed to stdout.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Subcommand;

use super::commands::print_json;
use super::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Print an instance's collections as a schema file (JSON).
    ///
    /// The daemon reads them from the instance's own pb_data/data.db,
    /// opened read-only (whether the instance runs, is stopped or asleep;
    /// no superuser token is needed, none is kept). The output is
    /// PocketBase's own export/import shape, the array that `PUT
    /// /api/collections/import` takes: every collection (system ones
    /// included) in creation order, pretty-printed with sorted keys so that
    /// it diffs well, without `created`/`updated` and without any secret
    /// (auth-token secrets and OAuth2 providers are left out: the instance
    /// keeps its own). Needs PocketBase 0.23 or newer. Example:
    ///
    ///   pockestrator schema pull blog > schema.json
    ///
    ///   git diff schema.json
    Pull {
        /// The instance.
        name: String,
    },
    /// Push a schema file to instances as a PocketBase migration.
    ///
    /// The file is PocketBase's collections export (what `schema pull`
    /// writes). It becomes one migration, `pb_migrations/
    /// <time>_pockestrator_schema_<digest>.js`, that imports its
    /// non-system collections by id (token secrets left out: each
    /// instance keeps its own), the same for every instance. The instances
    /// are migrated one at a time, the first as the canary: stopped,
    /// backed up (trigger pre-schema), started with the migration (which
    /// PocketBase runs before it serves) and health-checked. A migration
    /// that fails is taken out again and the instance rolled back to its
    /// backup, with its data; then the rest are left untouched. Pushing
    /// the same schema again changes nothing. Examples:
    ///
    ///   pockestrator schema pull blog > schema.json
    ///   pockestrator schema push schema.json --to shop blog2
    ///   pockestrator schema push schema.json --tag prod
    ///   pockestrator schema push schema.json --all --delete-missing
    Push(super::fleet::SchemaPushArgs),
}

pub async fn run(g: &GlobalArgs, cmd: SchemaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SchemaCommand::Pull { name } => {
            let schema = g.client()?.schema(&name).await?;
            print_json(&schema)?;
            Ok(ExitCode::SUCCESS)
        }
        SchemaCommand::Push(args) => super::fleet::schema_push(g, args).await,
    }
}

pub async fn openapi(g: &GlobalArgs, name: &str) -> anyhow::Result<ExitCode> {
    let doc = g.client()?.instance_openapi(name).await?;
    print_json(&doc)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn types(g: &GlobalArgs, name: &str, lang: &str) -> anyhow::Result<ExitCode> {
    let text = g.client()?.types(name, lang).await?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
