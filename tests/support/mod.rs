//! Helpers shared by the integration tests: where the real binaries are,
//! waiting with a deadline instead of sleeping.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The pinned PocketBase versions the suite runs (see scripts/fetch-test-deps).
pub const PB_OLD: &str = "0.28.4";
pub const PB_NEW: &str = "0.40.6";
/// The last release line with admins instead of superusers.
pub const PB_LEGACY: &str = "0.22.27";

/// Where `scripts/fetch-test-deps` puts the real programs.
pub fn deps_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("POCKESTRATOR_TEST_DEPS") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/deps")
}

/// The real PocketBase binary of a pinned version.
pub fn pocketbase_bin(version: &str) -> PathBuf {
    let path = deps_dir().join(format!("pocketbase-{version}"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-test-deps first (scripts/test does)",
        path.display()
    );
    path
}

/// Poll `check` until it returns `Some`, or panic with `what` after `limit`.
pub async fn wait_until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free TCP port on 127.0.0.1 at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A free port below the kernel's ephemeral range (32768 on), for an
/// instance that is stopped and started again during a test: a port from
/// [`free_port`] can be taken meanwhile as the local port of any outgoing
/// connection on the machine. Never the same port twice in one test run.
/// Always in 20000–25999, eight apart: [`QUIET_PORTS_END`] on is left to the seed-001
/// API's own port numbering in the OpenAPI fuzz test.
pub const QUIET_PORTS_END: u16 = 26_000;

pub fn quiet_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Eight apart: a daemon that chooses a port itself takes the one above
    // its highest (a clone of an instance on a quiet port, say), and that
    // one must not be the next test's quiet port.
    let first_slot = std::process::id() % 50;
    loop {
        let slot = first_slot + u32::from(NEXT.fetch_add(1, Ordering::Relaxed));
        assert!(slot * 8 < 6_000, "no quiet port left");
        let port = 20_000 + (slot * 8) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub mod daemon;
pub mod git_server;
pub mod relay;
pub mod services;
pub mod systemd_host;

/// The release mirror `scripts/fetch-test-deps` builds from the pinned
/// binaries (GitHub's asset layout), so daemon tests install offline.
pub fn mirror_dir() -> PathBuf {
    let path = deps_dir().join("../mirror");
    assert!(
        path.join(format!("v{PB_NEW}/checksums.txt")).exists(),
        "{} is missing: run scripts/fetch-test-deps first (scripts/test does)",
        path.display()
    );
    path.canonicalize().expect("canonical mirror path")
}

/// A shell-script "PocketBase" for failure paths: answers `--version` like
/// PocketBase does and runs `body` for everything else.
pub fn fake_binary(dir: &std::path::Path, version: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("fake-pocketbase-{version}"));
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then echo \"pocketbase version {version}\"; exit 0; fi\n{body}\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The file where tests that cannot run here record why, one line each
/// (`scripts/test` prints them and counts them as skipped, not passed).
pub fn skip_file() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.txt")
}

/// Record that `test` cannot run on this machine and why, and say so on
/// stderr. The caller returns right after: the test is counted as skipped
/// by `scripts/test`, never as passed.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write;
    let line = format!("{test}: {}", reason.replace('\n', " "));
    eprintln!("SKIPPED {line}");
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skip_file())
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = appended {
        panic!(
            "cannot record the skip of {test} in {}: {e}",
            skip_file().display()
        );
    }
}
