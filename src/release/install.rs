//! Getting one located archive onto disk: download (or copy from a mirror
//! directory) into a temp file while hashing, compare with the expected
//! sha256, extract the PocketBase binary into another temp file with mode
//! 0755, and hand that to the cache to rename into place.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::artifact::{Artifact, Location, Member};
use super::error::ReleaseError;
use super::http::Http;
use crate::fsutil::{AtomicFile, Staged};

/// The binary is ~30 MB; anything far larger is not a PocketBase release
/// (or is a decompression bomb).
const BINARY_LIMIT: u64 = 1 << 30;

/// Fetch the archive into a temp file under `tmp_dir` and verify it.
/// `progress` gets (bytes so far, total if known).
pub(crate) async fn fetch_verified(
    http: &Http,
    source_name: &str,
    artifact: &Artifact,
    tmp_dir: &Path,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<tempfile::NamedTempFile, ReleaseError> {
    let archive = tempfile::Builder::new()
        .prefix("download-")
        .tempfile_in(tmp_dir)
        .map_err(|e| ReleaseError::io("create a temporary file in", tmp_dir, e))?;
    let path = archive.path().to_path_buf();
    let std_file = archive
        .as_file()
        .try_clone()
        .map_err(|e| ReleaseError::io("open", &path, e))?;
    let mut file = tokio::fs::File::from_std(std_file);
    let (_, actual) = match &artifact.location {
        Location::Url(url) => {
            http.download(source_name, url, &mut file, &path, progress)
                .await?
        }
        Location::File(source) => copy_hashing(source, &mut file, &path, &mut progress).await?,
    };
    file.sync_all()
        .await
        .map_err(|e| ReleaseError::io("write", &path, e))?;
    if actual != artifact.sha256 {
        return Err(ReleaseError::ChecksumMismatch {
            source_name: source_name.to_string(),
            file: artifact.file_name.clone(),
            expected: artifact.sha256.clone(),
            actual,
        });
    }
    Ok(archive)
}

async fn copy_hashing(
    source: &Path,
    out: &mut tokio::fs::File,
    out_path: &Path,
    progress: &mut impl FnMut(u64, Option<u64>),
) -> Result<(u64, String), ReleaseError> {
    let mut input = tokio::fs::File::open(source)
        .await
        .map_err(|e| ReleaseError::io("open", source, e))?;
    let total = input.metadata().await.ok().map(|m| m.len());
    progress(0, total);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut copied = 0u64;
    loop {
        let n = input
            .read(&mut buf)
            .await
            .map_err(|e| ReleaseError::io("read", source, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .await
            .map_err(|e| ReleaseError::io("write", out_path, e))?;
        copied += n as u64;
        progress(copied, total);
    }
    out.flush()
        .await
        .map_err(|e| ReleaseError::io("write", out_path, e))?;
    Ok((copied, hex::encode(hasher.finalize())))
}

/// Extract the binary from a verified archive into an executable, synced
/// temp file under `tmp_dir`. Blocking: run it on a blocking thread.
pub(crate) fn extract_binary(
    archive: &Path,
    member: Member,
    tmp_dir: &Path,
    source_name: &str,
    file_name: &str,
) -> Result<(Staged, String), ReleaseError> {
    let bad = |reason: String| ReleaseError::BadArchive {
        source_name: source_name.to_string(),
        file: file_name.to_string(),
        reason,
    };
    let file = File::open(archive).map_err(|e| ReleaseError::io("open", archive, e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| bad(format!("not a zip archive ({e})")))?;
    let index = (0..zip.len())
        .find(|&i| {
            zip.name_for_index(i)
                .is_some_and(|name| member.matches(name))
        })
        .ok_or_else(|| bad(format!("it has no {} inside", member.describe())))?;
    let mut entry = zip
        .by_index(index)
        .map_err(|e| bad(format!("cannot read {} inside ({e})", member.describe())))?;
    if entry.size() > BINARY_LIMIT {
        return Err(bad(format!(
            "{} inside is {} bytes, far too large",
            member.describe(),
            entry.size()
        )));
    }
    let mut out = AtomicFile::in_dir(tmp_dir, "binary-")
        .map_err(|e| ReleaseError::io("create a temporary file in", tmp_dir, e))?;
    let out_path = out.path().to_path_buf();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    loop {
        // Reading to the end also checks the member's CRC-32.
        let n = entry
            .read(&mut buf)
            .map_err(|e| bad(format!("cannot extract {} ({e})", member.describe())))?;
        if n == 0 {
            break;
        }
        written += n as u64;
        if written > BINARY_LIMIT {
            return Err(bad(format!(
                "{} inside is far too large",
                member.describe()
            )));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| ReleaseError::io("write", &out_path, e))?;
    }
    if written == 0 {
        return Err(bad(format!("{} inside is empty", member.describe())));
    }
    let out = out
        .set_mode(0o755)
        .and_then(|()| out.finish())
        .map_err(|e| ReleaseError::io("write", &out_path, e))?;
    Ok((out, hex::encode(hasher.finalize())))
}
