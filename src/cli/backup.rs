//! `pockestrator backup …`: create, list, restore and delete an
//! instance's backups.

use std::process::ExitCode;

use clap::Subcommand;

use super::commands::print_json;
use super::{table, GlobalArgs};
use crate::api::dto::{CreateBackup, RestoreBackup, RestoreReplica, SetReplication, SetSchedule};

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
        /// Where the archive goes: a directory (`/abs/dir` or
        /// `file:///abs/dir`), an S3-compatible store
        /// (`s3://BUCKET[/PREFIX][?endpoint=http(s)://HOST:PORT&region=R]`,
        /// endpoint for one that is not AWS, such as MinIO) or a NATS
        /// JetStream object store (`nats://HOST:PORT[,HOST:PORT…]/BUCKET[/PREFIX]`,
        /// the bucket is made if missing). Credentials never go in the URL:
        /// the daemon reads them from its environment or its `serve
        /// --credentials` file. Default: `serve --backup-to`'s NAME/, else
        /// backups/NAME/ in the daemon's data dir.
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
    ///
    /// With --from-replica instead of a backup id, data.db comes from the
    /// instance's Litestream replica (see `pockestrator replicate`): its
    /// latest state, or as it was at --timestamp. The restored database is
    /// integrity-checked before anything is stopped; uploaded files and
    /// auxiliary.db stay the instance's own. Replication then starts a new
    /// generation. Examples:
    ///
    ///   pockestrator backup restore shop --from-replica
    ///   pockestrator backup restore shop --from-replica --as shop-copy --timestamp 2026-12-01T13:00:00Z
    Restore {
        name: String,
        /// The backup's id (see `backup list NAME`).
        #[arg(
            required_unless_present = "from_replica",
            conflicts_with = "from_replica"
        )]
        id: Option<String>,
        /// Restore into a new instance of this name.
        #[arg(long = "as", value_name = "NEW_NAME")]
        as_name: Option<String>,
        /// Restore data.db from the instance's replica instead of a backup.
        #[arg(long)]
        from_replica: bool,
        /// With --from-replica: the state at this time (RFC 3339, e.g.
        /// 2026-12-01T13:00:00Z), not before the replica's current
        /// generation began (`info NAME` shows it).
        #[arg(long, value_name = "TIME", requires = "from_replica")]
        timestamp: Option<String>,
    },
    /// Delete a backup's archive and record.
    #[command(alias = "rm")]
    Delete { name: String, id: String },
    /// Show, set or remove an instance's backup schedule.
    ///
    /// Scheduled backups run whatever the instance's state (a stopped
    /// instance is not started); a run missed while the daemon was down
    /// runs once when it comes back. After each run, scheduled backups
    /// beyond the retention are deleted: the newest --keep-last, plus the
    /// newest of each of the last --keep-daily days, --keep-weekly weeks and
    /// --keep-monthly months. Backups made by hand are never pruned.
    Schedule(ScheduleArgs),
}

#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    name: String,
    /// When to back up: a cron expression in UTC, five fields (e.g.
    /// "0 3 * * *": 03:00 every day) or six with seconds first.
    #[arg(long, value_name = "EXPR", conflicts_with = "off")]
    cron: Option<String>,
    #[arg(long, value_name = "N", default_value_t = 7)]
    keep_last: u32,
    #[arg(long, value_name = "N", default_value_t = 7)]
    keep_daily: u32,
    #[arg(long, value_name = "N", default_value_t = 4)]
    keep_weekly: u32,
    #[arg(long, value_name = "N", default_value_t = 12)]
    keep_monthly: u32,
    /// Where the scheduled backups go: a directory, `s3://…` or `nats://…`
    /// as for `backup create --to` (default: `serve --backup-to`'s NAME/,
    /// else backups/NAME/).
    #[arg(long, value_name = "DEST")]
    to: Option<String>,
    /// Remove the schedule (its backups stay).
    #[arg(long)]
    off: bool,
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
        BackupCommand::Restore {
            name,
            id,
            as_name,
            from_replica: _,
            timestamp,
        } => {
            let target = as_name.clone().unwrap_or_else(|| name.clone());
            let (rec, id) = match id {
                Some(id) => (
                    client
                        .restore_backup(&name, &id, &RestoreBackup { as_name })
                        .await?,
                    format!("backup {id}"),
                ),
                None => (
                    client
                        .restore_replica(&name, &RestoreReplica { as_name, timestamp })
                        .await?,
                    "its replica".to_string(),
                ),
            };
            if g.json {
                print_json(&rec)?;
            } else if target == name {
                println!(
                    "restored {name} from {id}: {} at version {}",
                    rec.status, rec.version
                );
            } else {
                println!(
                    "made {target} from {id} of {name}: {} at version {} on port {}",
                    rec.status, rec.version, rec.port
                );
            }
        }
        BackupCommand::Schedule(a) => {
            let state = if a.off {
                client.remove_backup_schedule(&a.name).await?
            } else if let Some(cron) = a.cron {
                let body = SetSchedule {
                    cron,
                    keep_last: Some(a.keep_last),
                    keep_daily: Some(a.keep_daily),
                    keep_weekly: Some(a.keep_weekly),
                    keep_monthly: Some(a.keep_monthly),
                    to: a.to,
                };
                client.set_backup_schedule(&a.name, &body).await?
            } else {
                client.backup_schedule(&a.name).await?
            };
            if g.json {
                print_json(&state)?;
            } else {
                match &state.schedule {
                    None => println!("{} has no backup schedule", state.name),
                    Some(s) => println!(
                        "{}: backups at {:?} (UTC), next {}; keeps the last {}, {} daily, {} weekly, {} monthly; to {}",
                        state.name,
                        s.cron,
                        s.next_run
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_else(|| "never".to_string()),
                        s.keep_last,
                        s.keep_daily,
                        s.keep_weekly,
                        s.keep_monthly,
                        s.to.as_deref().unwrap_or("the default directory"),
                    ),
                }
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

/// `pockestrator replicate NAME --to URL | --off`.
#[derive(Debug, clap::Args)]
pub struct ReplicateArgs {
    name: String,
    /// Where to replicate data.db: file:///DIR, s3://BUCKET/PREFIX (add
    /// ?endpoint=URL&region=R for S3-compatible stores) or
    /// nats://HOST:PORT/BUCKET (a JetStream object store bucket that
    /// exists, one per instance). One instance per path. Credentials come
    /// from the daemon's environment (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION), never from the URL.
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "off",
        conflicts_with = "off"
    )]
    to: Option<String>,
    /// Stop replicating (the replica stays where it is).
    #[arg(long)]
    off: bool,
}

pub async fn replicate(g: &GlobalArgs, a: ReplicateArgs) -> anyhow::Result<ExitCode> {
    let client = g.client()?;
    let rec = match a.to {
        Some(to) if !a.off => {
            client
                .set_replication(&a.name, &SetReplication { to })
                .await?
        }
        _ => client.remove_replication(&a.name).await?,
    };
    if g.json {
        print_json(&rec)?;
    } else {
        match &rec.replica {
            Some(r) => println!(
                "replicating {} to {} ({}; generation {} at {})",
                rec.name, r.target, r.state, r.generation, r.location
            ),
            None => println!("{} is no longer replicated; its replica stays", rec.name),
        }
    }
    Ok(ExitCode::SUCCESS)
}
