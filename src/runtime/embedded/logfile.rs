//! An instance's log file: opened for the child in append mode, annotated by
//! the supervisor, and rotated by size.
//!
//! Rotation is copy-then-truncate: the child keeps its file descriptor, and
//! because the file was opened with `O_APPEND` its next write lands at the
//! new end of the truncated file rather than at its old offset. The price is
//! that lines written between the copy and the truncation are lost, which
//! is the usual trade of copytruncate and fine for these logs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Open the log file for appending, creating it if needed.
pub fn open_for_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// How a line of the supervisor's own (see [`note`]) begins.
pub const NOTE_PREFIX: &str = "--- pockestrator ";

/// Append a line of the supervisor's own to the log, so the log tells when
/// a process was started, restarted, adopted or stopped.
pub fn note(path: &Path, message: &str) {
    let line = format!(
        "{NOTE_PREFIX}{}: {message} ---\n",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
    );
    let written = open_for_append(path).and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(log = %path.display(), error = %e, "cannot write to instance log");
    }
}

/// The name of the `n`-th rotated file: `pocketbase.log.1`, `.2`, …
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Rotate `path` if it has grown beyond `max_bytes`, keeping `keep` older
/// files (`.1` newest). Returns whether it rotated.
pub fn rotate_if_needed(path: &Path, max_bytes: u64, keep: usize) -> io::Result<bool> {
    let len = match fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max_bytes {
        return Ok(false);
    }
    if keep > 0 {
        remove_if_exists(&rotated_path(path, keep))?;
        for n in (1..keep).rev() {
            let from = rotated_path(path, n);
            match fs::rename(&from, rotated_path(path, n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::copy(path, rotated_path(path, 1))?;
    }
    // Truncate through a descriptor of our own; the child's O_APPEND
    // descriptor follows the new end.
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|_| "<missing>".to_string())
    }

    #[test]
    fn rotates_by_size_and_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("pocketbase.log");
        // A writer that keeps its append-mode descriptor across rotations,
        // as the child process does.
        let mut writer = open_for_append(&log).unwrap();

        writer.write_all(b"small\n").unwrap();
        assert!(!rotate_if_needed(&log, 10, 2).unwrap());

        for round in 1..=4 {
            writer
                .write_all(format!("round {round} is long enough\n").as_bytes())
                .unwrap();
            assert!(rotate_if_needed(&log, 10, 2).unwrap());
            assert_eq!(fs::metadata(&log).unwrap().len(), 0);
        }
        writer.write_all(b"after\n").unwrap();

        // The writer's next line starts at offset 0: no hole of zero bytes.
        assert_eq!(contents(&log), "after\n");
        assert_eq!(contents(&rotated_path(&log, 1)), "round 4 is long enough\n");
        assert_eq!(contents(&rotated_path(&log, 2)), "round 3 is long enough\n");
        assert_eq!(contents(&rotated_path(&log, 3)), "<missing>");
    }

    #[test]
    fn keep_zero_only_truncates_and_missing_files_are_fine() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        assert!(!rotate_if_needed(&log, 1, 0).unwrap());
        fs::write(&log, "0123456789").unwrap();
        assert!(rotate_if_needed(&log, 1, 0).unwrap());
        assert_eq!(contents(&log), "");
        assert_eq!(contents(&rotated_path(&log, 1)), "<missing>");
    }

    #[test]
    fn notes_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        note(&log, "started pid 1");
        note(&log, "stopped pid 1");
        let text = contents(&log);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("--- pockestrator "));
        assert!(lines[0].ends_with(": started pid 1 ---"));
        assert!(lines[1].ends_with(": stopped pid 1 ---"));
    }
}
