//! Backup archives: one zip per backup, in the layout PocketBase's own
//! backups use, so that an archive can be uploaded to PocketBase's
//! `/api/backups/upload` and restored there, and a PocketBase-made backup
//! can be restored by pockestrator.
//!
//! At the root: what `pb_data` holds (`data.db` and `auxiliary.db`, copied
//! consistently beforehand, and `storage/`). Under `.pockestrator/`: the
//! instance's `pb_hooks/`, `pb_migrations/` and `pb_public/`
//! (`hooks/`, `migrations/`, `public/`), its record (`instance.json`:
//! version, limits, domains) and, last, `manifest.json` with the size and
//! sha256 of every other member. PocketBase restoring such an archive puts
//! `.pockestrator/` inside its `pb_data`, where it is ignored.
//!
//! Everything here is blocking file work: callers run it in
//! `spawn_blocking`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The directory of pockestrator's own members inside an archive.
pub const META_DIR: &str = ".pockestrator";
const MANIFEST: &str = ".pockestrator/manifest.json";
const INSTANCE: &str = ".pockestrator/instance.json";

/// Members at most this large each, and archives of at most this many
/// members: an archive claiming more is refused before anything is
/// extracted.
const MAX_MEMBER_BYTES: u64 = 64 << 30;
const MAX_MEMBERS: usize = 1_000_000;

/// What can be wrong with an archive or while writing one.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path} is not a readable backup archive: {why}")]
    Unreadable { path: PathBuf, why: String },
    #[error(
        "{path} does not match its manifest: {why}; the archive is damaged, nothing was changed"
    )]
    Mismatch { path: PathBuf, why: String },
    #[error("{path} holds an unsafe member {member}: {why}")]
    UnsafeMember {
        path: PathBuf,
        member: String,
        why: &'static str,
    },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let context = context.into();
    move |source| ArchiveError::Io { context, source }
}

/// One member as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The instance's configuration as it was at the backup, so that a restore
/// brings back the same version and settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSnapshot {
    pub name: String,
    pub version: String,
    pub domain: Option<String>,
    #[serde(default)]
    pub custom_domains: Vec<String>,
    pub max_body_bytes: Option<u64>,
    pub memory_max: Option<String>,
    pub cpu_quota: Option<String>,
    pub superuser_email: Option<String>,
}

/// `.pockestrator/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub instance: InstanceSnapshot,
    pub members: Vec<Member>,
}

/// The parts of an instance an archive is made from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Consistent copies of the databases, by their name in `pb_data`.
    pub databases: Vec<(String, PathBuf)>,
    /// `pb_data/storage`, taken as it is (PocketBase never rewrites a
    /// stored file in place).
    pub storage: PathBuf,
    pub hooks: PathBuf,
    pub migrations: PathBuf,
    pub public: PathBuf,
}

/// What was written: the archive's size and sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    pub sha256: String,
}

/// Write the archive to `target` atomically (nothing at `target` until it
/// is complete and fsynced; a failure leaves no partial file).
pub fn write(
    target: &Path,
    id: &str,
    instance: &InstanceSnapshot,
    sources: &Sources,
    now: DateTime<Utc>,
) -> Result<Written, ArchiveError> {
    let mut files: Vec<(String, PathBuf)> = sources.databases.clone();
    collect(&sources.storage, "storage", &mut files)?;
    collect(&sources.hooks, &format!("{META_DIR}/hooks"), &mut files)?;
    collect(
        &sources.migrations,
        &format!("{META_DIR}/migrations"),
        &mut files,
    )?;
    collect(&sources.public, &format!("{META_DIR}/public"), &mut files)?;
    let record = serde_json::to_vec_pretty(instance).map_err(|e| ArchiveError::Io {
        context: "cannot encode the instance record".into(),
        source: io::Error::other(e),
    })?;
    crate::fsutil::atomic_write_with(target, |file| {
        let mut zip = zip::ZipWriter::new(PacedSync::new(file));
        // PocketBase's own backups use the fastest deflate level too: the
        // databases compress well even so, and a backup should not take
        // the CPU from the instance it copies.
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1))
            .large_file(true)
            .unix_permissions(0o644);
        let mut members = Vec::with_capacity(files.len() + 1);
        let mut buf = vec![0u8; 256 * 1024];
        for (name, path) in &files {
            zip.start_file(name.as_str(), options).map_err(zip_io)?;
            let mut src = File::open(path)?;
            let mut hash = Sha256::new();
            let mut size = 0u64;
            loop {
                let n = src.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hash.update(&buf[..n]);
                zip.write_all(&buf[..n])?;
                size += n as u64;
            }
            members.push(Member {
                path: name.clone(),
                size,
                sha256: hex::encode(hash.finalize()),
            });
        }
        zip.start_file(INSTANCE, options).map_err(zip_io)?;
        zip.write_all(&record)?;
        members.push(Member {
            path: INSTANCE.into(),
            size: record.len() as u64,
            sha256: hex::encode(Sha256::digest(&record)),
        });
        let manifest = Manifest {
            format: 1,
            id: id.to_string(),
            created_at: now,
            instance: instance.clone(),
            members,
        };
        let text = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
        zip.start_file(MANIFEST, options).map_err(zip_io)?;
        zip.write_all(&text)?;
        zip.finish().map_err(zip_io)?;
        Ok(())
    })
    .map_err(io_err(format!("cannot write {}", target.display())))?;
    let (size, sha256) = hash_file(target)?;
    Ok(Written { size, sha256 })
}

/// A file written in bounded bursts: every [`PacedSync::EVERY`] bytes its
/// data is flushed to disk, so a large archive never leaves gigabytes of
/// dirty pages for one final fsync that every other writer on the disk
/// (the instance's own commits) would queue behind.
struct PacedSync<'a> {
    file: &'a mut File,
    unsynced: u64,
}

impl<'a> PacedSync<'a> {
    const EVERY: u64 = 8 << 20;

    fn new(file: &'a mut File) -> Self {
        Self { file, unsynced: 0 }
    }
}

impl Write for PacedSync<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= Self::EVERY {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl io::Seek for PacedSync<'_> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

fn zip_io(e: zip::result::ZipError) -> io::Error {
    match e {
        zip::result::ZipError::Io(e) => e,
        other => io::Error::other(other),
    }
}

/// The regular files under `dir` (recursively, symlinks skipped), named
/// `prefix/relative/path`.
fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<(), ArchiveError> {
    if !dir.is_dir() {
        return Ok(());
    }
    let entries =
        std::fs::read_dir(dir).map_err(io_err(format!("cannot read {}", dir.display())))?;
    let mut entries: Vec<_> = entries
        .collect::<Result<_, _>>()
        .map_err(io_err(format!("cannot read {}", dir.display())))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let kind = entry
            .file_type()
            .map_err(io_err(format!("cannot read {}", dir.display())))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let path = entry.path();
        let member = format!("{prefix}/{name}");
        if kind.is_dir() {
            collect(&path, &member, out)?;
        } else if kind.is_file() {
            out.push((member, path));
        }
    }
    Ok(())
}

/// The size and sha256 of a file.
pub fn hash_file(path: &Path) -> Result<(u64, String), ArchiveError> {
    let mut f = File::open(path).map_err(io_err(format!("cannot read {}", path.display())))?;
    let mut hash = Sha256::new();
    let size =
        io::copy(&mut f, &mut hash).map_err(io_err(format!("cannot read {}", path.display())))?;
    Ok((size, hex::encode(hash.finalize())))
}

/// What a verified archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `None` for an archive PocketBase made itself (no manifest).
    pub manifest: Option<Manifest>,
}

/// Check an archive before anything is touched: it is a zip, every member
/// has a safe relative name (no `..`, no absolute path, no symlink), it
/// holds a `data.db`, and, when it has a manifest, every member is listed
/// there with the same size and sha256, and nothing is missing.
pub fn verify(path: &Path) -> Result<Verified, ArchiveError> {
    let unreadable = |why: String| ArchiveError::Unreadable {
        path: path.to_path_buf(),
        why,
    };
    let file = File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| unreadable(e.to_string()))?;
    if zip.len() > MAX_MEMBERS {
        return Err(unreadable(format!("it claims {} members", zip.len())));
    }
    let manifest: Option<Manifest> = match zip.by_name(MANIFEST) {
        Ok(mut m) => {
            let mut text = Vec::new();
            m.by_ref()
                .take(64 << 20)
                .read_to_end(&mut text)
                .map_err(|e| unreadable(format!("its manifest cannot be read: {e}")))?;
            Some(
                serde_json::from_slice(&text)
                    .map_err(|e| unreadable(format!("its manifest is not valid: {e}")))?,
            )
        }
        Err(zip::result::ZipError::FileNotFound) => None,
        Err(e) => return Err(unreadable(e.to_string())),
    };
    let mut expected: BTreeMap<String, (u64, String)> = manifest
        .as_ref()
        .map(|m| {
            m.members
                .iter()
                .map(|x| (x.path.clone(), (x.size, x.sha256.clone())))
                .collect()
        })
        .unwrap_or_default();
    let mut has_data = false;
    let mut buf = vec![0u8; 256 * 1024];
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| unreadable(e.to_string()))?;
        let name = entry.name().to_string();
        check_member_name(path, &name, entry.is_symlink())?;
        if entry.is_dir() || name == MANIFEST {
            continue;
        }
        if entry.size() > MAX_MEMBER_BYTES {
            return Err(ArchiveError::UnsafeMember {
                path: path.to_path_buf(),
                member: crate::model::names::shown(&name),
                why: "it claims to be larger than 64 GiB",
            });
        }
        has_data |= name == "data.db";
        let mut hash = Sha256::new();
        let mut size = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| unreadable(format!("member {name} cannot be read: {e}")))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            size += n as u64;
            if size > MAX_MEMBER_BYTES {
                return Err(unreadable(format!(
                    "member {name} is larger than it claims"
                )));
            }
        }
        if manifest.is_some() {
            let Some((want_size, want_hash)) = expected.remove(&name) else {
                return Err(ArchiveError::Mismatch {
                    path: path.to_path_buf(),
                    why: format!(
                        "{} is not in the manifest",
                        crate::model::names::shown(&name)
                    ),
                });
            };
            let got = hex::encode(hash.finalize());
            if size != want_size || got != want_hash {
                return Err(ArchiveError::Mismatch {
                    path: path.to_path_buf(),
                    why: format!("{name} has {size} bytes with sha256 {got}, the manifest says {want_size} bytes with {want_hash}"),
                });
            }
        }
    }
    if let Some(missing) = expected.keys().next() {
        return Err(ArchiveError::Mismatch {
            path: path.to_path_buf(),
            why: format!("{missing} is missing"),
        });
    }
    if !has_data {
        return Err(unreadable(
            "it holds no data.db at its top: it is not a PocketBase backup".into(),
        ));
    }
    Ok(Verified { manifest })
}

/// A member name that is safe to extract: relative, no `..`, no NUL or
/// backslash, not a symlink.
fn check_member_name(path: &Path, name: &str, symlink: bool) -> Result<(), ArchiveError> {
    let unsafe_member = |why| ArchiveError::UnsafeMember {
        path: path.to_path_buf(),
        member: crate::model::names::shown(name),
        why,
    };
    if symlink {
        return Err(unsafe_member("symbolic links are not restored"));
    }
    if name.is_empty() || name.len() > 4096 || name.contains('\0') || name.contains('\\') {
        return Err(unsafe_member(
            "its name is empty, too long, or holds a NUL or a backslash",
        ));
    }
    let p = Path::new(name);
    for c in p.components() {
        match c {
            Component::Normal(_) => {}
            Component::CurDir => {}
            _ => return Err(unsafe_member("its name leaves the archive's directory")),
        }
    }
    Ok(())
}

/// Where the parts of an extracted archive are.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// The new `pb_data`.
    pub data: PathBuf,
    /// The new `pb_hooks`, `pb_migrations`, `pb_public`, when the archive
    /// has them (pockestrator archives do, PocketBase's do not).
    pub hooks: Option<PathBuf>,
    pub migrations: Option<PathBuf>,
    pub public: Option<PathBuf>,
}

/// Extract a verified archive into `staging` (which must not exist):
/// `staging/pb_data`, and `staging/pb_hooks` etc. from `.pockestrator/`.
pub fn extract(path: &Path, staging: &Path) -> Result<Extracted, ArchiveError> {
    let unreadable = |why: String| ArchiveError::Unreadable {
        path: path.to_path_buf(),
        why,
    };
    std::fs::create_dir(staging).map_err(io_err(format!("cannot create {}", staging.display())))?;
    let data = staging.join("pb_data");
    std::fs::create_dir(&data).map_err(io_err(format!("cannot create {}", data.display())))?;
    let file = File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| unreadable(e.to_string()))?;
    let (mut hooks, mut migrations, mut public) = (false, false, false);
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| unreadable(e.to_string()))?;
        let name = entry.name().to_string();
        check_member_name(path, &name, entry.is_symlink())?;
        let relative = Path::new(&name);
        let target = match relative.strip_prefix(META_DIR) {
            Ok(rest) => {
                let mut parts = rest.components();
                let dir = match parts.next() {
                    Some(Component::Normal(d)) if d == "hooks" => {
                        hooks = true;
                        "pb_hooks"
                    }
                    Some(Component::Normal(d)) if d == "migrations" => {
                        migrations = true;
                        "pb_migrations"
                    }
                    Some(Component::Normal(d)) if d == "public" => {
                        public = true;
                        "pb_public"
                    }
                    // manifest.json, instance.json: read from the archive.
                    _ => continue,
                };
                staging.join(dir).join(parts.as_path())
            }
            Err(_) => data.join(relative),
        };
        if entry.is_dir() {
            std::fs::create_dir_all(&target)
                .map_err(io_err(format!("cannot create {}", target.display())))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("cannot create {}", parent.display())))?;
        }
        let mut out =
            File::create(&target).map_err(io_err(format!("cannot write {}", target.display())))?;
        io::copy(&mut entry.by_ref().take(MAX_MEMBER_BYTES), &mut out)
            .and_then(|_| out.sync_all())
            .map_err(io_err(format!("cannot write {}", target.display())))?;
    }
    let dir_if = |present: bool, name: &str| present.then(|| staging.join(name));
    // An instance always has these directories; an empty one in the
    // backup is an empty one after the restore.
    for (present, name) in [
        (hooks, "pb_hooks"),
        (migrations, "pb_migrations"),
        (public, "pb_public"),
    ] {
        if present {
            let _ = std::fs::create_dir_all(staging.join(name));
        }
    }
    Ok(Extracted {
        data,
        hooks: dir_if(hooks, "pb_hooks"),
        migrations: dir_if(migrations, "pb_migrations"),
        public: dir_if(public, "pb_public"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> (Sources, InstanceSnapshot) {
        let db = dir.join("copy-data.db");
        std::fs::write(&db, b"SQLite format 3\0 pretend").unwrap();
        let storage = dir.join("storage");
        std::fs::create_dir_all(storage.join("coll/rec")).unwrap();
        std::fs::write(storage.join("coll/rec/a.txt"), b"file").unwrap();
        let hooks = dir.join("hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        std::fs::write(hooks.join("main.pb.js"), b"routerAdd()").unwrap();
        (
            Sources {
                databases: vec![("data.db".into(), db)],
                storage,
                hooks,
                migrations: dir.join("none"),
                public: dir.join("none"),
            },
            InstanceSnapshot {
                name: "shop".into(),
                version: "0.40.6".into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn written_archives_verify_and_extract() {
        let dir = tempfile::tempdir().unwrap();
        let (sources, snap) = sample(dir.path());
        let target = dir.path().join("out/b1.zip");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let written = write(&target, "b1", &snap, &sources, Utc::now()).unwrap();
        assert_eq!(
            hash_file(&target).unwrap(),
            (written.size, written.sha256.clone())
        );
        let v = verify(&target).unwrap();
        let m = v.manifest.unwrap();
        let names: Vec<_> = m.members.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "data.db",
                "storage/coll/rec/a.txt",
                ".pockestrator/hooks/main.pb.js",
                ".pockestrator/instance.json"
            ]
        );
        assert_eq!(m.instance, snap);
        let staged = dir.path().join("staged");
        let x = extract(&target, &staged).unwrap();
        assert_eq!(
            std::fs::read(x.data.join("storage/coll/rec/a.txt")).unwrap(),
            b"file"
        );
        assert_eq!(
            std::fs::read(x.hooks.unwrap().join("main.pb.js")).unwrap(),
            b"routerAdd()"
        );
        assert!(x.migrations.is_none());
        assert!(!x.data.join(".pockestrator").exists());
    }

    #[test]
    fn damaged_foreign_and_hostile_archives_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (sources, snap) = sample(dir.path());
        let good = dir.path().join("good.zip");
        write(&good, "g", &snap, &sources, Utc::now()).unwrap();
        let bytes = std::fs::read(&good).unwrap();

        // Truncated.
        let cut = dir.path().join("cut.zip");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(verify(&cut), Err(ArchiveError::Unreadable { .. })));

        // Not a zip at all.
        let junk = dir.path().join("junk.zip");
        std::fs::write(&junk, b"hello").unwrap();
        assert!(matches!(
            verify(&junk),
            Err(ArchiveError::Unreadable { .. })
        ));

        // A member changed after the manifest was written (stored, so the
        // bytes can be flipped in place without breaking the zip's CRC
        // check first: rebuild with one member altered).
        let evil = dir.path().join("evil.zip");
        {
            let mut zip = zip::ZipWriter::new(File::create(&evil).unwrap());
            let opts = zip::write::SimpleFileOptions::default();
            let mut src = zip::ZipArchive::new(File::open(&good).unwrap()).unwrap();
            for i in 0..src.len() {
                let mut e = src.by_index(i).unwrap();
                let name = e.name().to_string();
                let mut content = Vec::new();
                e.read_to_end(&mut content).unwrap();
                if name == "storage/coll/rec/a.txt" {
                    content = b"FILE".to_vec();
                }
                zip.start_file(name, opts).unwrap();
                zip.write_all(&content).unwrap();
            }
            zip.finish().unwrap();
        }
        let e = verify(&evil).unwrap_err();
        assert!(matches!(e, ArchiveError::Mismatch { .. }), "{e}");

        // Path traversal and absolute names.
        for bad in ["../etc/passwd", "/etc/passwd", "storage/../../x", "a\\b"] {
            let p = dir.path().join("trav.zip");
            let mut zip = zip::ZipWriter::new(File::create(&p).unwrap());
            let opts = zip::write::SimpleFileOptions::default();
            zip.start_file("data.db", opts).unwrap();
            zip.write_all(b"x").unwrap();
            zip.start_file(bad, opts).unwrap();
            zip.write_all(b"x").unwrap();
            zip.finish().unwrap();
            let e = verify(&p).unwrap_err();
            assert!(matches!(e, ArchiveError::UnsafeMember { .. }), "{bad}: {e}");
        }

        // A zip without data.db is not a PocketBase backup.
        let empty = dir.path().join("empty.zip");
        {
            let mut zip = zip::ZipWriter::new(File::create(&empty).unwrap());
            zip.start_file("readme.txt", zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(b"hi").unwrap();
            zip.finish().unwrap();
        }
        assert!(verify(&empty)
            .unwrap_err()
            .to_string()
            .contains("no data.db"));
    }
}
