//! An instance's log: its file, the last lines of it, and following what
//! is appended. Following waits on inotify (a watch on the log's directory,
//! which also sees rotation), never on a timer; only when the kernel has no
//! inotify instance left does it fall back to looking once a second, and
//! says so in the daemon's log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{Manager, ManagerError, Result};

/// How much of a log file one read hands on at most.
const CHUNK: u64 = 64 * 1024;

/// A log followed from now on: its last lines, and every byte appended
/// after them (starting over at the top of a rotated file).
pub struct LogFollow {
    pub tail: Vec<String>,
    pub appended: BoxStream<'static, Bytes>,
}

impl Manager {
    /// The log file of an instance.
    pub fn log_file(&self, name: &str) -> Result<PathBuf> {
        let rec = self.get(name)?;
        Ok(self.spec(&rec).log_file())
    }

    /// The last `n` lines of an instance's log (reaching into the rotated
    /// file when the current one is short), read off the async threads.
    pub async fn log_tail(&self, name: &str, n: usize) -> Result<Vec<String>> {
        let path = self.log_file(name)?;
        Ok(read_tail(path, n).await?.0)
    }

    /// The last `n` lines of an instance's log and what is written to it
    /// from then on. The stream ends when it is dropped.
    pub async fn follow_log(&self, name: &str, n: usize) -> Result<LogFollow> {
        let path = self.log_file(name)?;
        let (tail, offset) = read_tail(path.clone(), n).await?;
        Ok(LogFollow {
            tail,
            appended: follow_file(path, offset).boxed(),
        })
    }
}

impl Manager {
    /// The last `n` lines of a deploy's log.
    pub async fn deploy_log_tail(&self, name: &str, id: &str, n: usize) -> Result<Vec<String>> {
        let path = self.deploy_log_path(name, id)?;
        Ok(read_tail(path, n).await?.0)
    }

    /// The last `n` lines of a deploy's log and what is written to it
    /// until the deploy has ended (then the stream ends).
    pub async fn follow_deploy_log(
        self: &Arc<Self>,
        name: &str,
        id: &str,
        n: usize,
    ) -> Result<LogFollow> {
        let d = self.deploy_record(name, id)?;
        let path = self.deploy_log_path(name, id)?;
        let (tail, offset) = read_tail(path.clone(), n).await?;
        let this = Arc::clone(self);
        let (name, id) = (name.to_string(), d.id);
        let ended = async move {
            loop {
                match this.store.deploy(&name, id) {
                    Ok(Some(d)) if !d.status.is_final() => {}
                    _ => break,
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // What the deploy wrote last is read before the stream ends.
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        Ok(LogFollow {
            tail,
            appended: follow_file(path, offset).take_until(ended).boxed(),
        })
    }
}

/// The tail of a log and the file's length when it was read.
async fn read_tail(path: PathBuf, n: usize) -> Result<(Vec<String>, u64)> {
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<String>, u64)> {
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let mut lines = tail_lines_upto(&path, n, Some(len)).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
        })?;
        if lines.len() < n {
            let rotated = PathBuf::from(format!("{}.1", path.display()));
            if let Ok(mut older) = tail_lines(&rotated, n - lines.len()) {
                older.append(&mut lines);
                lines = older;
            }
        }
        Ok((lines, len))
    })
    .await
    .map_err(|e| ManagerError::Internal(format!("log read task failed: {e}")))?;
    read.map_err(|source| ManagerError::Io {
        context: "cannot read the log".to_string(),
        source,
    })
}

/// Bytes appended to `path` after `offset`, as they are written. A file
/// that shrank or was replaced (rotation) is read again from its start.
pub fn follow_file(path: PathBuf, offset: u64) -> impl futures::Stream<Item = Bytes> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(pump(path, offset, tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn pump(path: PathBuf, mut offset: u64, tx: tokio::sync::mpsc::Sender<Bytes>) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let watcher = watch_dir(&path, wake.clone());
    if let Err(e) = &watcher {
        tracing::warn!(file = %path.display(), error = %e,
            "cannot watch the log with inotify: following it by looking once a second");
    }
    let watching = watcher.is_ok();
    let mut inode = None;
    loop {
        loop {
            let read = tokio::task::spawn_blocking({
                let path = path.clone();
                move || read_from(&path, offset, inode)
            })
            .await;
            let Ok(Ok((bytes, start, now_inode))) = read else {
                break;
            };
            inode = now_inode;
            if bytes.is_empty() {
                offset = start;
                break;
            }
            offset = start + bytes.len() as u64;
            if tx.send(Bytes::from(bytes)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = wake.notified(), if watching => {}
            _ = tokio::time::sleep(Duration::from_secs(1)), if !watching => {}
        }
    }
}

/// An inotify watch on the file's directory that wakes `wake` on any
/// change there (writes, and the rename and create of a rotation).
fn watch_dir(
    path: &Path,
    wake: Arc<tokio::sync::Notify>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            wake.notify_one();
        }
    })?;
    watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Up to [`CHUNK`] bytes of `path` from `offset` on, with the offset they
/// start at: 0 when the file is shorter than `offset` or is another file
/// than the one read before (its inode changed). A missing file reads as
/// empty.
fn read_from(
    path: &Path,
    offset: u64,
    inode: Option<u64>,
) -> std::io::Result<(Vec<u8>, u64, Option<u64>)> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0, None)),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let replaced = inode.is_some_and(|i| i != meta.ino());
    let start = if replaced || meta.len() < offset {
        0
    } else {
        offset
    };
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.by_ref().take(CHUNK).read_to_end(&mut buf)?;
    Ok((buf, start, Some(meta.ino())))
}

/// The last `n` lines of a text file, reading only its end.
pub fn tail_lines(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    tail_lines_upto(path, n, None)
}

/// [`tail_lines`] of the file's first `upto` bytes (all when `None`): a
/// follower that goes on from `upto` then sees no line twice.
fn tail_lines_upto(path: &Path, n: usize, upto: Option<u64>) -> std::io::Result<Vec<String>> {
    use std::io::{Read, Seek, SeekFrom};
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let len = upto.map_or(len, |u| u.min(len));
    let mut chunk = 8192u64;
    loop {
        let start = len.saturating_sub(chunk);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        (&mut file).take(len - start).read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let mut lines: Vec<&str> = text.lines().collect();
        if start > 0 && lines.len() > n {
            let keep = lines.split_off(lines.len() - n);
            return Ok(keep.into_iter().map(str::to_string).collect());
        }
        if start == 0 {
            let skip = lines.len().saturating_sub(n);
            return Ok(lines.into_iter().skip(skip).map(str::to_string).collect());
        }
        chunk *= 4;
    }
}

/// The last `n` lines of a log that tell why a start failed: PocketBase's
/// own, when there are any among `lines`; the supervisor's notes (its
/// restarts of a crash loop) crowd them out of a plain tail otherwise.
pub fn telling_lines(lines: Vec<String>, n: usize) -> Vec<String> {
    let note = crate::runtime::embedded::logfile::NOTE_PREFIX;
    let own: Vec<String> = lines
        .iter()
        .filter(|l| !l.starts_with(note))
        .cloned()
        .collect();
    let pick = if own.is_empty() { lines } else { own };
    let skip = pick.len().saturating_sub(n);
    pick.into_iter().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_start_tells_pocketbase_s_own_lines_before_the_supervisor_s() {
        let note = |m: &str| format!("--- pockestrator 2026-12-02T10:00:00.000Z: {m} ---");
        let lines: Vec<String> = vec![
            "Error: failed to apply migration: no such table: missing_table".into(),
            note("restarted: pid 2 (restart 1)"),
            note("pid 2 exited unexpectedly (exit code 0)"),
            note("restarted: pid 3 (restart 2)"),
            note("crashed 5 times within 60s: not restarting until the next start"),
        ];
        assert_eq!(
            telling_lines(lines.clone(), 5),
            ["Error: failed to apply migration: no such table: missing_table"]
        );
        // Only the supervisor's: its last lines.
        let notes: Vec<String> = lines[1..].to_vec();
        assert_eq!(telling_lines(notes.clone(), 2), notes[2..]);
        assert!(telling_lines(Vec::new(), 5).is_empty());
    }

    #[test]
    fn a_tail_up_to_an_offset_leaves_what_follows_to_the_follower() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(tail_lines_upto(&path, 10, Some(4)).unwrap(), ["a", "b"]);
        assert_eq!(
            tail_lines_upto(&path, 10, Some(100)).unwrap(),
            ["a", "b", "c"]
        );
        assert_eq!(tail_lines(&path, 2).unwrap(), ["b", "c"]);
    }

    #[test]
    pub(super) fn tail_reads_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            tail_lines(&path, 3).unwrap(),
            ["line 9997", "line 9998", "line 9999"]
        );
        assert_eq!(tail_lines(&path, 0).unwrap(), Vec::<String>::new());
        std::fs::write(&path, "a\nb\n").unwrap();
        assert_eq!(tail_lines(&path, 5).unwrap(), ["a", "b"]);
    }

    #[tokio::test]
    async fn follow_sees_appends_and_rotation_without_a_timer() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pocketbase.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut s = follow_file(path.clone(), 4).boxed();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"one\n").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some(&b"one\n"[..]));
        // Rotation: the file is renamed and a new one started.
        std::fs::rename(&path, dir.path().join("pocketbase.log.1")).unwrap();
        std::fs::write(&path, "two\n").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some(&b"two\n"[..]));
    }

    #[test]
    fn reads_start_over_on_a_shorter_or_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "abcdef").unwrap();
        let (bytes, start, inode) = read_from(&path, 2, None).unwrap();
        assert_eq!((bytes.as_slice(), start), (&b"cdef"[..], 2));
        let (bytes, start, _) = read_from(&path, 100, inode).unwrap();
        assert_eq!((bytes.as_slice(), start), (&b"abcdef"[..], 0));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read_from(&path, 3, inode).unwrap().0, Vec::<u8>::new());
        std::fs::write(dir.path().join("other"), "x").unwrap();
        std::fs::write(&path, "0123456789").unwrap();
        let (bytes, start, _) = read_from(&path, 3, Some(u64::MAX)).unwrap();
        assert_eq!((bytes.as_slice(), start), (&b"0123456789"[..], 0));
    }
}
