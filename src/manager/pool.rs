//! The pool of pre-initialised data directories: a new instance (a create,
//! a seed 001 user's first `init_pb`) takes one made beforehand by the
//! same PocketBase binary, so its first start opens an existing database
//! instead of running every system migration (tens of milliseconds
//! instead of hundreds).
//!
//! Each directory is made by a PocketBase run of its own (`pocketbase
//! migrate up --dir …`), never by copying another: PocketBase keeps each
//! auth collection's token-signing secrets in `data.db`, so copies would
//! accept each other's tokens, superusers' included. Directories live in
//! `pool/<binary key>/<id>/pb_data` inside the data dir (so taking one is a
//! rename), are made in `pool/<binary key>/.making-<id>/` and renamed into
//! place whole; leftovers of a daemon that died meanwhile are removed at
//! the next refill. Refills run in the background, one at a time, at the
//! lowest CPU priority.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest as _;

/// A pool directory's PocketBase run may take this long.
const MAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The pool: where it lives, how big it is per binary, and the lock that
/// keeps refills one at a time. Cheap to clone.
#[derive(Clone)]
pub(super) struct Pool {
    root: PathBuf,
    size: usize,
    refilling: Arc<tokio::sync::Mutex<()>>,
}

impl Pool {
    pub(super) fn new(root: PathBuf, size: usize) -> Self {
        Self {
            root,
            size,
            refilling: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The pool directory of one binary.
    fn dir(&self, binary: &Path) -> PathBuf {
        let key = hex::encode(&sha2::Sha256::digest(binary.as_os_str().as_encoded_bytes())[..6]);
        self.root.join(key)
    }

    /// Move a pre-initialised `pb_data` made by `binary` to `target` (which
    /// must not exist), if the pool has one; then refill the pool in the
    /// background. Returns whether one was taken.
    pub(super) fn take(&self, binary: &Path, target: &Path) -> bool {
        if self.size == 0 {
            return false;
        }
        let taken = ready_dirs(&self.dir(binary)).into_iter().any(|ready| {
            let moved = std::fs::rename(ready.join("pb_data"), target).is_ok();
            let _ = std::fs::remove_dir_all(&ready);
            moved
        });
        self.refill(binary.to_path_buf());
        taken
    }

    /// Bring the pool of `binary` up to its size, in a task of its own (one
    /// refill at a time for the whole daemon).
    pub(super) fn refill(&self, binary: PathBuf) {
        if self.size == 0 {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let _one_at_a_time = this.refilling.lock().await;
            let dir = this.dir(&binary);
            if let Err(e) = std::fs::create_dir_all(&dir) {
                tracing::warn!(error = %e, dir = %dir.display(), "pool: cannot make its directory");
                return;
            }
            remove_unfinished(&dir);
            while ready_dirs(&dir).len() < this.size {
                if let Err(e) = make_one(&binary, &dir).await {
                    tracing::warn!(binary = %binary.display(), error = %e, "pool: cannot prepare a data directory; new instances run their first migrations at create");
                    return;
                }
            }
        });
    }
}

impl super::Manager {
    /// Fill the pool of pre-initialised data directories, at daemon start,
    /// for the binary the newest instance was made with.
    pub fn warm_pool(&self) {
        let newest = self
            .store
            .list_instances()
            .ok()
            .and_then(|all| all.into_iter().max_by_key(|r| r.created_at));
        if let Some(rec) = newest {
            self.pool.refill(rec.binary_path);
        }
    }
}

/// The finished directories of one binary's pool.
fn ready_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.join("pb_data/data.db").is_file())
        .collect()
}

/// Remove what a refill interrupted by the daemon's end left.
fn remove_unfinished(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".making-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Make one directory: `migrate up` into a staging directory at the lowest
/// CPU priority, then rename it into place.
async fn make_one(binary: &Path, dir: &Path) -> std::io::Result<()> {
    let id = format!("{:016x}", rand::random::<u64>());
    let staging = dir.join(format!(".making-{id}"));
    let data = staging.join("pb_data");
    std::fs::create_dir_all(&data)?;
    let mut command = tokio::process::Command::new(binary);
    command
        .arg("migrate")
        .arg("up")
        .arg(format!("--dir={}", data.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: setpriority is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 19);
            Ok(())
        });
    }
    let run = tokio::time::timeout(MAKE_TIMEOUT, command.output()).await;
    let failed = |why: String| {
        let _ = std::fs::remove_dir_all(&staging);
        Err(std::io::Error::other(why))
    };
    match run {
        Err(_) => return failed(format!("no result within {MAKE_TIMEOUT:?}")),
        Ok(Err(e)) => return failed(e.to_string()),
        Ok(Ok(out)) if !out.status.success() || !data.join("data.db").is_file() => {
            let said = String::from_utf8_lossy(&out.stderr);
            return failed(format!(
                "`migrate up` ended with {}: {}",
                out.status,
                said.trim()
            ));
        }
        Ok(Ok(_)) => {}
    }
    std::fs::rename(&staging, dir.join(&id))
}
