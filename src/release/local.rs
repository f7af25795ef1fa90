//! A user's own PocketBase binary (`--binary PATH`): checked, copied into
//! the cache (so the user may delete or replace theirs), and asked for its
//! version with `--version`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use semver::Version;
use sha2::{Digest, Sha256};

use super::error::ReleaseError;
use crate::fsutil::{AtomicFile, Staged};
use crate::model::names::shown;

/// `pocketbase --version` answers at once; a program that does not is not
/// PocketBase (or is waiting for input it will never get).
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Larger than any PocketBase build; guards against copying a disk image.
const SIZE_LIMIT: u64 = 1 << 30;

fn bad(path: &Path, reason: impl Into<String>) -> ReleaseError {
    ReleaseError::BadLocalBinary {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Refuse what cannot be a runnable binary before copying anything.
pub(crate) fn check_file(path: &Path) -> Result<(), ReleaseError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(path, "it does not exist; check the path"))
        }
        Err(e) => return Err(bad(path, format!("cannot read it ({e})"))),
    };
    if !meta.is_file() {
        return Err(bad(
            path,
            "it is not a regular file; pass the pocketbase executable itself",
        ));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(bad(path, "it is not executable; run chmod +x on it first"));
    }
    if meta.len() > SIZE_LIMIT {
        return Err(bad(
            path,
            format!(
                "it is {} bytes, far larger than any PocketBase build",
                meta.len()
            ),
        ));
    }
    Ok(())
}

/// Copy `source` into an executable, synced temp file under `tmp_dir`,
/// returning it closed (so that it can be executed) with its sha256.
/// Blocking: run it on a blocking thread.
pub(crate) fn copy_in(source: &Path, tmp_dir: &Path) -> Result<(Staged, String), ReleaseError> {
    let mut input = File::open(source).map_err(|e| bad(source, format!("cannot open it ({e})")))?;
    let mut out = AtomicFile::in_dir(tmp_dir, "local-")
        .map_err(|e| ReleaseError::io("create a temporary file in", tmp_dir, e))?;
    let out_path = out.path().to_path_buf();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| bad(source, format!("cannot read it ({e})")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| ReleaseError::io("write", &out_path, e))?;
    }
    let out = out
        .set_mode(0o755)
        .and_then(|()| out.finish())
        .map_err(|e| ReleaseError::io("write", &out_path, e))?;
    Ok((out, hex::encode(hasher.finalize())))
}

/// Run `binary --version` and read the version from its answer.
/// `shown_as` is the path named in errors (the user's, not our copy).
pub(crate) async fn probe_version(binary: &Path, shown_as: &Path) -> Result<Version, ReleaseError> {
    let mut attempt = 0;
    let output = loop {
        let run = tokio::process::Command::new(binary)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(VERSION_TIMEOUT, run).await {
            Err(_) => {
                return Err(bad(
                    shown_as,
                    format!(
                        "`--version` did not answer within {}s; is it a PocketBase binary?",
                        VERSION_TIMEOUT.as_secs()
                    ),
                ))
            }
            // ETXTBSY: a process forked elsewhere in this program may still
            // hold the write handle of the fresh copy for a moment.
            Ok(Err(e)) if e.raw_os_error() == Some(26) && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(e)) => {
                let hint = if e.raw_os_error() == Some(8) {
                    " (exec format error: not a Linux program for this CPU)"
                } else {
                    ""
                };
                return Err(bad(shown_as, format!("cannot run it: {e}{hint}")));
            }
            Ok(Ok(output)) => break output,
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(bad(
            shown_as,
            format!(
                "`--version` failed ({}) and printed {}; is it a PocketBase binary?",
                output.status,
                shown(stderr.trim())
            ),
        ));
    }
    parse_version_output(&stdout).map_err(|reason| bad(shown_as, reason))
}

/// PocketBase prints `<argv0 basename> version 0.28.4`: the version is the
/// last word, right after the word `version`.
pub(crate) fn parse_version_output(stdout: &str) -> Result<Version, String> {
    let refuse = || {
        format!(
            "`--version` printed {}, not \"pocketbase version X.Y.Z\"; is it a PocketBase binary?",
            shown(stdout.trim())
        )
    };
    let line = stdout.trim();
    if line.lines().count() != 1 {
        return Err(refuse());
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [.., "version", last] => {
            Version::parse(last.strip_prefix('v').unwrap_or(last)).map_err(|_| refuse())
        }
        _ => Err(refuse()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(out: &str, expect: Expect) {
        let got = match parse_version_output(out) {
            Ok(v) => format!("ok {v}"),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn reads_pocketbase_version_lines() {
        check("pocketbase version 0.28.4\n", expect!["ok 0.28.4"]);
        check("pocketbase-0.40.6 version 0.40.6\n", expect!["ok 0.40.6"]);
        check(
            "my pb build version v0.23.0-rc.2",
            expect!["ok 0.23.0-rc.2"],
        );
        check(
            "",
            expect![[
                r#"err `--version` printed "", not "pocketbase version X.Y.Z"; is it a PocketBase binary?"#
            ]],
        );
        check(
            "hello world\n",
            expect![[
                r#"err `--version` printed "hello world", not "pocketbase version X.Y.Z"; is it a PocketBase binary?"#
            ]],
        );
        check(
            "pocketbase version 0.28\n",
            expect![[
                r#"err `--version` printed "pocketbase version 0.28", not "pocketbase version X.Y.Z"; is it a PocketBase binary?"#
            ]],
        );
        check(
            "line one\npocketbase version 0.28.4\n",
            expect![[
                r#"err `--version` printed "line one\npocketbase version 0.28.4", not "pocketbase version X.Y.Z"; is it a PocketBase binary?"#
            ]],
        );
    }
}
