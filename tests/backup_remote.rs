//! Backups to remote destinations, against real stores: moto's S3 server
//! and nats-server with JetStream. Backed up, listed, restored in place
//! and as a clone, deleted with their objects; credentials from a private
//! file or the environment, never from a URL and never shown; a store that
//! does not answer, or a full disk, fails the backup quickly and cleanly
//! while the instance runs on.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::backup::{backup_id, file_of, note, shop, shop_on, titles};
use crate::support::daemon::{Daemon, BIN};
use crate::support::services::{Nats, S3};
use crate::support::skip;

/// Everything the daemon has said or written where a user could read it.
async fn everything_shown(d: &Daemon, name: &str) -> String {
    let (_, events) = d.get(&format!("/api/v1/events?instance={name}")).await;
    let listed = d.cli(&["backup", "list", name, "--json"]);
    format!(
        "{}\n{events}\n{}\n{}",
        d.log(),
        String::from_utf8_lossy(&listed.stdout),
        String::from_utf8_lossy(&listed.stderr)
    )
}

/// Run the CLI, expecting it to fail; its stderr.
fn fails(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(
        !out.status.success(),
        "pockestrator {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The staging area of remote backups holds nothing.
fn staging_is_empty(d: &Daemon) {
    let staging = d.data_dir().join("backups/.staging");
    let left: Vec<_> = std::fs::read_dir(&staging)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging files left behind: {left:?}");
}

fn ids(listed: &Value) -> Vec<String> {
    listed
        .as_array()
        .expect("a list")
        .iter()
        .map(backup_id)
        .collect()
}

/// A port for an instance that is to be cloned, out of the range other
/// tests take ports from: a clone gets the port above its original's, so
/// that one must be free too.
fn port_with_a_free_neighbour() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 17_000 + (std::process::id() % 500) as u16 * 2;
    loop {
        let offset = NEXT.fetch_add(2, Ordering::Relaxed);
        assert!(offset < 2_000, "no port pair left");
        let port = start + offset;
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 1) {
            return port;
        }
    }
}

/// `len` bytes that do not compress (xorshift64).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// A credentials file holding moto's keys, only its owner may read.
fn credentials_file(dir: &Path, mode: u32) -> std::path::PathBuf {
    let path = dir.join("credentials");
    std::fs::write(
        &path,
        format!(
            "# test keys\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_REGION={}\n",
            S3::ACCESS_KEY,
            S3::SECRET_KEY,
            S3::REGION
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_remote_s3_round_trip() {
    let Some(s3) = S3::start().await else {
        skip(
            "backup_remote_s3_round_trip",
            "moto_server is missing: run scripts/fetch-test-deps",
        );
        return;
    };
    s3.create_bucket("pk-backups").await;
    let secrets = tempfile::tempdir().unwrap();
    let creds = credentials_file(secrets.path(), 0o600);
    // Every instance's backups go to the bucket by default, each under its name.
    let fleet = format!("s3://pk-backups/fleet?endpoint={}", s3.endpoint());
    let d = Daemon::start_with(
        &[
            "--credentials",
            creds.to_str().unwrap(),
            "--backup-to",
            &fleet,
        ],
        &[],
    )
    .await;
    let s = shop_on(&d, "shop", port_with_a_free_neighbour()).await;
    let first = note(s.port, "a-first", b"first file").await;
    // Random bytes do not compress: the archive is more than one 8 MiB part.
    let big = noise(9_000_000);
    let large = note(s.port, "a-large", &big).await;

    let b = d.cli_json(&["backup", "create", "shop"]);
    let id = backup_id(&b);
    let to = format!("s3://pk-backups/fleet/shop?endpoint={}", s3.endpoint());
    assert_eq!(b["destination"], to.as_str());
    assert!(b["size"].as_u64().unwrap() > 8 * 1024 * 1024, "{b}");
    let key = format!("fleet/shop/{id}.zip");
    assert_eq!(s3.keys("pk-backups", "fleet/").await, vec![key.clone()]);
    assert!(
        b["location"]
            .as_str()
            .unwrap()
            .starts_with(&format!("s3://pk-backups/{key}")),
        "{b}"
    );
    assert!(ids(&d.cli_json(&["backup", "list", "shop"])).contains(&id));
    staging_is_empty(&d);

    note(s.port, "b-later", b"later").await;
    let restored = d.cli_json(&["backup", "restore", "shop", &id]);
    assert_eq!(restored["status"], "running", "{restored}");
    assert_eq!(titles(s.port).await, ["a-first", "a-large"]);
    assert_eq!(file_of(s.port, &first).await, b"first file");
    assert!(
        file_of(s.port, &large).await == big,
        "the large file differs"
    );

    let clone = d.cli_json(&["backup", "restore", "shop", &id, "--as", "shop-copy"]);
    let clone_port = clone["port"].as_u64().unwrap();
    assert_eq!(titles(clone_port).await, ["a-first", "a-large"]);
    assert_eq!(file_of(clone_port, &first).await, b"first file");
    staging_is_empty(&d);

    // A bucket that is not there: a clear error, no secret in it.
    let missing = format!("s3://pk-nowhere?endpoint={}", s3.endpoint());
    let e = fails(&d, &["backup", "create", "shop", "--to", &missing]);
    assert!(e.contains("s3://pk-nowhere"), "{e}");
    assert!(!e.contains(S3::SECRET_KEY), "{e}");

    let out = d.cli(&["backup", "delete", "shop", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s3.keys("pk-backups", "fleet/").await.is_empty());
    assert!(!ids(&d.cli_json(&["backup", "list", "shop"])).contains(&id));

    let audit = d.audit("shop").await;
    assert!(audit.contains(&("backup".into(), "ok".into())), "{audit:?}");
    assert!(
        audit.contains(&("backup".into(), "error".into())),
        "{audit:?}"
    );
    let shown = everything_shown(&d, "shop").await;
    assert!(!shown.contains(S3::SECRET_KEY), "the secret key was shown");
    // Nor do instances get the daemon's keys in their environment.
    let pid = d.cli_json(&["status", "shop"])["pid"].as_i64().unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&environ).contains(S3::SECRET_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_remote_nats_round_trip() {
    let Some(nats) = Nats::start().await else {
        skip(
            "backup_remote_nats_round_trip",
            "nats-server is missing: run scripts/fetch-test-deps",
        );
        return;
    };
    let d = Daemon::start().await;
    let s = shop_on(&d, "shop", port_with_a_free_neighbour()).await;
    let first = note(s.port, "a-first", b"first file").await;

    let servers = nats.url().trim_start_matches("nats://").to_string();
    let to = format!("nats://{servers}/pk_backups/fleet");
    let b = d.cli_json(&["backup", "create", "shop", "--to", &to]);
    let id = backup_id(&b);
    let object = format!("fleet/{id}.zip");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let bucket = js
        .get_object_store("pk_backups")
        .await
        .expect("the bucket was made");
    let info = bucket.info(&object).await.expect("the object is there");
    assert_eq!(info.size as u64, b["size"].as_u64().unwrap());
    staging_is_empty(&d);

    note(s.port, "b-later", b"later").await;
    let restored = d.cli_json(&["backup", "restore", "shop", &id]);
    assert_eq!(restored["status"], "running", "{restored}");
    assert_eq!(titles(s.port).await, ["a-first"]);

    let clone = d.cli_json(&["backup", "restore", "shop", &id, "--as", "shop-copy"]);
    let clone_port = clone["port"].as_u64().unwrap();
    assert_eq!(titles(clone_port).await, ["a-first"]);
    assert_eq!(file_of(clone_port, &first).await, b"first file");

    let out = d.cli(&["backup", "delete", "shop", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Ok(info) = bucket.info(&object).await {
        assert!(info.deleted, "the object is still there: {info:?}");
    }
    staging_is_empty(&d);

    // A schedule to the same store: its runs land there, and retention
    // deletes the pruned ones' objects.
    let to_sched = format!("nats://{servers}/pk_backups/sched");
    d.cli_json(&[
        "backup",
        "schedule",
        "shop",
        "--cron",
        "*/2 * * * * *",
        "--to",
        &to_sched,
        "--keep-last",
        "1",
        "--keep-daily",
        "0",
        "--keep-weekly",
        "0",
        "--keep-monthly",
        "0",
    ]);
    crate::support::wait_until(
        Duration::from_secs(30),
        "three scheduled backups",
        || async {
            let runs = d
                .audit("shop")
                .await
                .iter()
                .filter(|(a, r)| a == "backup" && r == "ok")
                .count();
            (runs >= 4).then_some(())
        },
    )
    .await;
    d.cli_json(&["backup", "schedule", "shop", "--off"]);
    let kept = crate::support::wait_until(Duration::from_secs(15), "retention to hold", || async {
        let kept: Vec<String> = d
            .cli_json(&["backup", "list", "shop"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["trigger"] == "schedule")
            .map(backup_id)
            .collect();
        (kept.len() == 1).then_some(kept)
    })
    .await;
    let objects =
        crate::support::wait_until(Duration::from_secs(15), "one object left", || async {
            use futures::StreamExt;
            let mut names = Vec::new();
            let mut list = bucket.list().await.ok()?;
            while let Some(info) = list.next().await {
                let info = info.ok()?;
                if info.name.starts_with("sched/") && !info.deleted {
                    names.push(info.name);
                }
            }
            (names.len() == 1).then_some(names)
        })
        .await;
    assert_eq!(objects, [format!("sched/{}.zip", kept[0])]);
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_remote_unreachable_destinations_fail_fast_and_clean() {
    let (Some(mut nats), Some(s3)) = (Nats::start().await, S3::start().await) else {
        skip(
            "backup_remote_unreachable_destinations_fail_fast_and_clean",
            "nats-server or moto_server is missing: run scripts/fetch-test-deps",
        );
        return;
    };
    s3.create_bucket("pk-backups").await;
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let d = Daemon::start_with(&[], &env).await;
    let s = shop(&d, "shop").await;
    note(s.port, "kept", b"x").await;

    let check = |e: &str, destination: &str, started: Instant| {
        assert!(
            e.contains(destination),
            "the error names the destination: {e}"
        );
        assert!(!e.contains(S3::SECRET_KEY), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "took {:?}: {e}",
            started.elapsed()
        );
    };

    // NATS stopped.
    let servers = nats.url().trim_start_matches("nats://").to_string();
    let to = format!("nats://{servers}/pk_backups");
    nats.stop();
    let started = Instant::now();
    let e = fails(&d, &["backup", "create", "shop", "--to", &to]);
    check(&e, &to, started);

    // An S3 endpoint where nothing listens.
    let closed = crate::support::quiet_port();
    let nowhere = format!("s3://pk-backups?endpoint=http://127.0.0.1:{closed}");
    let started = Instant::now();
    let e = fails(&d, &["backup", "create", "shop", "--to", &nowhere]);
    check(&e, &nowhere, started);
    assert!(e.contains("does not answer"), "{e}");

    // moto killed after a backup went there: the backup is listed, its
    // restore fails cleanly.
    let to_s3 = format!("s3://pk-backups?endpoint={}", s3.endpoint());
    let b = d.cli_json(&["backup", "create", "shop", "--to", &to_s3]);
    drop(s3);
    let started = Instant::now();
    let e = fails(&d, &["backup", "create", "shop", "--to", &to_s3]);
    check(&e, "s3://pk-backups", started);
    let e = fails(&d, &["backup", "restore", "shop", &backup_id(&b)]);
    check(&e, "s3://pk-backups", started);

    // The instance ran on throughout, every failure is audited and nothing
    // was left in the staging area.
    assert_eq!(d.cli_json(&["status", "shop"])["status"], "running");
    assert_eq!(titles(s.port).await, ["kept"]);
    let audit = d.audit("shop").await;
    let failed = audit
        .iter()
        .filter(|(a, r)| a == "backup" && r == "error")
        .count();
    assert!(failed >= 3, "{audit:?}");
    staging_is_empty(&d);
    assert!(!everything_shown(&d, "shop").await.contains(S3::SECRET_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_remote_credentials_never_from_urls_or_loose_files() {
    let d = Daemon::start().await;
    shop(&d, "shop").await;
    for url in [
        format!("s3://AKIA:{}@pk-backups/x", S3::SECRET_KEY),
        format!("nats://user:{}@127.0.0.1:4222/b", S3::SECRET_KEY),
        format!("s3://pk-backups?secret_access_key={}", S3::SECRET_KEY),
    ] {
        let e = fails(&d, &["backup", "create", "shop", "--to", &url]);
        assert!(e.contains("credentials never go"), "{e}");
        assert!(!e.contains(S3::SECRET_KEY), "{e}");
    }
    // No keys given to the daemon: said so, before anything is written.
    let e = fails(
        &d,
        &[
            "backup",
            "create",
            "shop",
            "--to",
            "s3://pk-backups?endpoint=http://127.0.0.1:9",
        ],
    );
    assert!(e.contains("AWS_SECRET_ACCESS_KEY"), "{e}");
    assert!(!everything_shown(&d, "shop").await.contains(S3::SECRET_KEY));

    // A credentials file others can read: the daemon does not start.
    let secrets = tempfile::tempdir().unwrap();
    let loose = credentials_file(secrets.path(), 0o644);
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(data.path())
        .args(["serve", "--listen", "none", "--credentials"])
        .arg(&loose)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve started: {stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains(S3::SECRET_KEY), "{stderr}");
    assert!(!data.path().join("pockestrator.sock").exists());
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_remote_full_disk_leaves_nothing_behind() {
    const NAME: &str = "backup_remote_full_disk_leaves_nothing_behind";
    if !nix::unistd::geteuid().is_root() {
        skip(NAME, "mounting a tiny tmpfs takes root");
        return;
    }
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("full");
    std::fs::create_dir(&dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&dir)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            skip(
                NAME,
                &format!(
                    "mount -t tmpfs failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            );
            return;
        }
        Err(e) => {
            skip(NAME, &format!("cannot run mount: {e}"));
            return;
        }
    }
    let _unmount = Tmpfs(dir.clone());
    let d = Daemon::start().await;
    let s = shop(&d, "shop").await;
    // Random bytes do not compress: the archive cannot fit in 64 KiB.
    let big = noise(200_000);
    note(s.port, "big", &big).await;

    let e = fails(
        &d,
        &["backup", "create", "shop", "--to", dir.to_str().unwrap()],
    );
    assert!(e.contains("disk is full"), "{e}");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "partial files left: {left:?}");
    assert_eq!(d.cli_json(&["status", "shop"])["status"], "running");
    assert_eq!(titles(s.port).await, ["big"]);
    let audit = d.audit("shop").await;
    assert!(
        audit.contains(&("backup".into(), "error".into())),
        "{audit:?}"
    );
}
