//! Atomic file writes: the new content goes to a temporary file in the same
//! directory, the file is synced to disk, renamed over its target, and the
//! directory is synced so that the rename itself survives a crash. A reader
//! sees the old file or the new one, never half of either; a write that
//! fails leaves the target as it was and no temporary file behind.
//!
//! [`atomic_write`], [`atomic_write_mode`] and [`atomic_write_with`] (which
//! hands the open file to a closure, to stream into it) do it in one call.
//! [`AtomicFile`] is the same in steps, for writers that must look at the
//! new file before it takes the target's place (the Caddyfile is validated
//! first) or that stage it before they know where it goes (a release binary
//! is run for its version before it moves into the cache):
//! [`AtomicFile::finish`] syncs and closes it into a [`Staged`] file, and
//! [`Staged::commit`] renames it into place.
//!
//! New files are private (0600) unless a mode is given; a mode is set
//! exactly, whatever the umask.

use std::fs::File;
use std::io::{self, Write};
use std::ops::Deref;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::{NamedTempFile, TempPath};

/// Replace `path` with `bytes`, atomically; a new file is private (0600).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write_with(path, |file| file.write_all(bytes))
}

/// Replace `path` with `bytes`, atomically, with exactly `mode` (e.g. 0o644).
pub fn atomic_write_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = AtomicFile::beside(path)?;
    file.write_all(bytes)?;
    file.set_mode(mode)?;
    file.commit(path)
}

/// Replace `path` with whatever `write` writes into the open temporary file
/// (0600), atomically. When `write` fails, the target is left as it was and
/// the temporary file is removed.
pub fn atomic_write_with<T>(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<T>,
) -> io::Result<T> {
    let mut file = AtomicFile::beside(path)?;
    let value = write(file.as_file_mut())?;
    file.commit(path)?;
    Ok(value)
}

/// Sync a directory, so that renames and new entries in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory a path's entry lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A file being written to take another's place: a temporary file that is
/// removed when dropped unless it was committed.
#[derive(Debug)]
pub struct AtomicFile {
    temp: NamedTempFile,
}

impl AtomicFile {
    /// An empty, private file to replace `target`: a hidden temporary file
    /// (`.NAME.XXXXXX.tmp`) in `target`'s directory, which must exist, so
    /// that the rename is atomic.
    pub fn beside(target: &Path) -> io::Result<AtomicFile> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(parent_dir(target))?;
        Ok(AtomicFile { temp })
    }

    /// An empty, private file staged in `dir` under a name starting with
    /// `prefix`. `dir` must be on the filesystem of the place the file is
    /// committed to, so that the rename is atomic.
    pub fn in_dir(dir: &Path, prefix: &str) -> io::Result<AtomicFile> {
        let temp = tempfile::Builder::new().prefix(prefix).tempfile_in(dir)?;
        Ok(AtomicFile { temp })
    }

    /// Where the temporary file is.
    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    pub fn as_file(&self) -> &File {
        self.temp.as_file()
    }

    pub fn as_file_mut(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// Give the file exactly `mode` (the umask does not apply).
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        self.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
    }

    /// Sync the content to disk and close the file (so that it can be
    /// executed); it stays where it is until committed.
    pub fn finish(self) -> io::Result<Staged> {
        self.temp.as_file().sync_all()?;
        Ok(Staged {
            path: self.temp.into_temp_path(),
        })
    }

    /// Sync the file, rename it over `target` and sync `target`'s directory.
    pub fn commit(self, target: &Path) -> io::Result<()> {
        self.finish()?.commit(target)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

/// A written, synced and closed temporary file, removed when dropped unless
/// it was moved into place.
#[derive(Debug)]
pub struct Staged {
    path: TempPath,
}

impl Staged {
    /// Where the temporary file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rename the file over `target`, without syncing the directory (for a
    /// caller that moves several files and syncs once, or only tries to).
    pub fn persist(self, target: &Path) -> io::Result<()> {
        self.path.persist(target).map_err(|e| e.error)
    }

    /// Rename the file over `target` and sync `target`'s directory.
    pub fn commit(self, target: &Path) -> io::Result<()> {
        self.persist(target)?;
        sync_dir(parent_dir(target))
    }
}

impl Deref for Staged {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.path()
    }
}

impl AsRef<Path> for Staged {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn writes_and_replaces_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        atomic_write(&path, b"one").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        atomic_write(&path, b"two, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two, longer");
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(names_in(dir.path()), ["state.json"]);
    }

    #[test]
    fn modes_are_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unit.service");
        atomic_write_mode(&path, b"[Unit]\n", 0o644).unwrap();
        assert_eq!(mode_of(&path), 0o644);
        atomic_write_mode(&path, b"[Unit]\n", 0o755).unwrap();
        assert_eq!(mode_of(&path), 0o755);
        atomic_write_mode(&path, b"secret\n", 0o600).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"secret\n");
        assert_eq!(names_in(dir.path()), ["unit.service"]);
    }

    #[test]
    fn a_closure_streams_into_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.tar.gz");
        let written = atomic_write_with(&path, |file| {
            let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            gz.write_all(b"inside")?;
            gz.finish()?;
            Ok(6)
        })
        .unwrap();
        assert_eq!(written, 6);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(File::open(&path).unwrap()),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, "inside");
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn a_failing_closure_leaves_the_target_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("marker.json");
        atomic_write(&path, b"before").unwrap();
        let err = atomic_write_with(&path, |file| {
            file.write_all(b"half of it")?;
            Err::<(), _>(io::Error::other("the archive failed"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "the archive failed");
        assert_eq!(std::fs::read(&path).unwrap(), b"before");
        assert_eq!(names_in(dir.path()), ["marker.json"]);

        // Nothing at all when there was no file before.
        let fresh = dir.path().join("fresh");
        atomic_write_with(&fresh, |_| Err::<(), _>(io::Error::other("no"))).unwrap_err();
        assert!(!fresh.exists());
        assert_eq!(names_in(dir.path()), ["marker.json"]);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/file");
        assert_eq!(
            atomic_write(&path, b"x").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn staged_files_move_in_or_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join(".tmp");
        let target_dir = dir.path().join("0.28.4");
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::create_dir_all(&target_dir).unwrap();

        let mut file = AtomicFile::in_dir(&scratch, "binary-").unwrap();
        assert!(file
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("binary-"));
        file.write_all(b"#!/bin/sh\n").unwrap();
        file.set_mode(0o755).unwrap();
        let staged = file.finish().unwrap();
        assert_eq!(std::fs::read(&*staged).unwrap(), b"#!/bin/sh\n");
        let target = target_dir.join("pocketbase");
        staged.commit(&target).unwrap();
        assert_eq!(mode_of(&target), 0o755);
        assert!(names_in(&scratch).is_empty());

        // Dropped before it was committed: gone.
        let file = AtomicFile::in_dir(&scratch, "binary-").unwrap();
        let staged = file.finish().unwrap();
        let path = staged.path().to_path_buf();
        assert!(path.exists());
        drop(staged);
        assert!(!path.exists());
    }

    #[test]
    fn temporary_files_beside_are_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let file = AtomicFile::beside(&dir.path().join("moots.service")).unwrap();
        let name = file
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with(".moots.service."), "{name}");
        assert!(name.ends_with(".tmp"), "{name}");
        assert_eq!(file.path().parent(), Some(dir.path()));
    }
}
