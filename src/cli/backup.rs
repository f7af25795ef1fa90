//! `pockestrator backup …`: create, list, restore and delete an
//! instance's backups.

use std::process::ExitCode;

use clap::Subcommand;

use super::commands::print_json;
use super::{table, GlobalArgs};
use crate::api::dto::{CreateBackup, RestoreBackup};

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back an instance up, whether it runs, is stopped or asleep.
    ///
    /// data.db and auxiliary.db are copied with SQLite's online backup API
    /// (writers are not blocked), then zipped with storage/, the instance's
    /// pb_hooks, pb_migrations, pb_public and its record, and a manifest
    /// with the sha256 of every member. The zip is also a valid PocketBase
    /// backup: it can be uploaded to PocketBase's own /api/backups/upload.
    Create {
        name: String,
        /// A directory for the archive: an absolute path or file:///path
        /// (default: backups/NAME/ in the daemon's data dir).
        #[arg(long, value_name = "DEST")]
        to: Option<String>,
    },
    /// List an instance's backups, newest first, with PocketBase's own.
    #[command(alias = "ls")]
    List { name: String },
    /// Restore an instance from a backup, or clone it into a new instance.
    ///
    /// The archive is verified before anything is touched; the instance is
    /// stopped, its files swapped, both databases checked, the backup's
    /// PocketBase version put back, and the instance started and
    /// health-checked. Any failure puts the previous files back. With --as,
    /// a new instance is made from the backup instead (its auth tokens are
    /// not those of the original) and the original is left alone.
    Restore {
        name: String,
        /// The backup's id (see `backup list NAME`).
        id: String,
        /// Restore into a new instance of this name.
        #[arg(long = "as", value_name = "NEW_NAME")]
        as_name: Option<String>,
    },
    /// Delete a backup's archive and record.
    #[command(alias = "rm")]
    Delete { name: String, id: String },
}

pub async fn run(g: &GlobalArgs, cmd: BackupCommand) -> anyhow::Result<ExitCode> {
    let client = g.client()?;
    match cmd {
        BackupCommand::Create { name, to } => {
            let b = client.create_backup(&name, &CreateBackup { to }).await?;
            if g.json {
                print_json(&b)?;
            } else {
                println!(
                    "backed up {name} as {} ({} bytes, sha256 {})\n  {}",
                    b.id, b.size, b.sha256, b.location
                );
            }
        }
        BackupCommand::List { name } => {
            let list = client.backups(&name).await?;
            if g.json {
                print_json(&list.backups)?;
            } else {
                print!("{}", table::backups(&list.backups));
            }
        }
        BackupCommand::Restore { name, id, as_name } => {
            let target = as_name.clone().unwrap_or_else(|| name.clone());
            let rec = client
                .restore_backup(&name, &id, &RestoreBackup { as_name })
                .await?;
            if g.json {
                print_json(&rec)?;
            } else if target == name {
                println!(
                    "restored {name} from backup {id}: {} at version {}",
                    rec.status, rec.version
                );
            } else {
                println!(
                    "made {target} from backup {id} of {name}: {} at version {} on port {}",
                    rec.status, rec.version, rec.port
                );
            }
        }
        BackupCommand::Delete { name, id } => {
            let d = client.delete_backup(&name, &id).await?;
            if g.json {
                print_json(&d)?;
            } else {
                println!("deleted backup {} of {}", d.id, d.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
