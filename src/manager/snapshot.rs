//! Copies of a data directory: taking one and putting one back (what
//! upgrade markers written before upgrades took backups point to).

use std::path::Path;

use chrono::Utc;

use super::files::remove_dir_if_exists;

/// Copy a directory tree (regular files, directories, symlinks).
pub(super) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Put a snapshot back in place of `data`: the failed version's data is
/// moved aside first, so nothing is lost even if the copy fails halfway.
pub(super) fn restore_dir(snapshot: &Path, data: &Path) -> std::io::Result<()> {
    let aside = data.with_extension(format!(
        "failed-{}",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    if data.exists() {
        std::fs::rename(data, &aside)?;
    }
    copy_dir(snapshot, data)?;
    remove_dir_if_exists(&aside)
}

#[cfg(test)]
mod tests {
    use super::super::delete::archive_dir_to;
    use super::*;

    #[test]
    fn archive_and_snapshot_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("inst");
        std::fs::create_dir_all(src.join("pb_data/storage")).unwrap();
        std::fs::write(src.join("pb_data/data.db"), b"db").unwrap();
        std::fs::write(src.join("pb_data/storage/f"), b"file").unwrap();
        let target = dir.path().join("archive/inst.tar.gz");
        archive_dir_to(&src, "inst", &target).unwrap();
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(&target).unwrap());
        let mut names: Vec<String> = tar::Archive::new(gz)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert!(
            names.contains(&"inst/pb_data/data.db".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"inst/pb_data/storage/f".to_string()),
            "{names:?}"
        );

        let snap = dir.path().join("snap");
        copy_dir(&src.join("pb_data"), &snap).unwrap();
        std::fs::write(src.join("pb_data/data.db"), b"migrated").unwrap();
        restore_dir(&snap, &src.join("pb_data")).unwrap();
        assert_eq!(std::fs::read(src.join("pb_data/data.db")).unwrap(), b"db");
        assert_eq!(
            std::fs::read(src.join("pb_data/storage/f")).unwrap(),
            b"file"
        );
    }
}
