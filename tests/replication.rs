//! Continuous replication with the real Litestream against real PocketBase
//! instances: replicate to a directory (and to a real S3 server), restore
//! from the replica into a clone, to a point in time, after every process
//! of the instance was killed (counting what was lost), reset around
//! restores (ours and PocketBase's own), refused when the input is wrong,
//! and resumed after a daemon restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backup::{auth, http, note, send, shop, titles};
use crate::support::daemon::Daemon;
use crate::support::services::{litestream_bin, Nats, S3};
use crate::support::{skip, wait_until};

async fn daemon(test: &str, env: &[(&str, &str)]) -> Option<(Daemon, PathBuf)> {
    let Some(bin) = litestream_bin() else {
        skip(
            test,
            "Litestream is not fetched: run scripts/fetch-test-deps",
        );
        return None;
    };
    let d = Daemon::start_with(&["--litestream", bin.to_str().unwrap()], env).await;
    Some((d, bin))
}

/// What a replica holds now: the `notes` titles of the database restored
/// from `location` into a fresh file, sorted; `None` while it has nothing
/// to restore.
pub(crate) fn replica_titles(
    bin: &Path,
    location: &str,
    env: &[(String, String)],
) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data.db");
    let done = std::process::Command::new(bin)
        .args(["restore", "-o"])
        .env_remove("AWS_CA_BUNDLE")
        .arg(&out)
        .arg(location)
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    if !done.status.success() {
        return None;
    }
    let conn = rusqlite::Connection::open(&out).unwrap();
    let mut stmt = conn
        .prepare("SELECT title FROM notes ORDER BY title")
        .ok()?;
    let titles = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    Some(titles)
}

async fn wait_replica(bin: &Path, location: &str, env: &[(String, String)], want: &[&str]) {
    wait_until(
        Duration::from_secs(30),
        &format!("the replica at {location} to hold {want:?}"),
        || async {
            let got = replica_titles(bin, location, env)?;
            (got == want).then_some(())
        },
    )
    .await;
}

/// Restore `shop`'s replica into a clone `copy` until the clone holds
/// notes "a" and "b" (the replica may lag by a second).
async fn clone_with_both_notes(d: &Daemon, what: &str) {
    wait_until(Duration::from_secs(30), what, || async {
        let clone = d.cli(&[
            "backup",
            "restore",
            "shop",
            "--from-replica",
            "--as",
            "copy",
            "--json",
        ]);
        if !clone.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&clone.stdout).ok()?;
        if titles(v["port"].as_u64()?).await == ["a", "b"] {
            return Some(());
        }
        d.cli_json(&["delete", "copy", "--purge"]);
        None
    })
    .await;
}

pub(crate) fn replica(d: &Daemon, name: &str) -> Value {
    d.cli_json(&["status", name])["replica"].clone()
}

/// The pid of the Litestream replicating `name`, once it runs (on a busy
/// host it may be between a start and its first pidfile).
pub(crate) async fn litestream_pid(d: &Daemon, name: &str) -> i32 {
    wait_until(Duration::from_secs(30), "Litestream to run", || async {
        replica(d, name)["pid"].as_u64().map(|p| p as i32)
    })
    .await
}

pub(crate) fn location(d: &Daemon, name: &str) -> String {
    replica(d, name)["location"].as_str().unwrap().to_string()
}

/// The command fails, saying `needle`; and shows nothing of `secret`.
fn refused(d: &Daemon, args: &[&str], needle: &str, secret: Option<&str>) {
    let out = d.cli(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(err.contains(needle), "{args:?}: {err}");
    if let Some(secret) = secret {
        assert!(!err.contains(secret), "{args:?} shows the secret: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replication_restores_clones_and_points_in_time_and_refuses_bad_input() {
    let test = "replication_restores_clones_and_points_in_time_and_refuses_bad_input";
    let Some((d, bin)) = daemon(test, &[]).await else {
        return;
    };
    let s = shop(&d, "shop").await;
    let replicas = tempfile::tempdir().unwrap();
    let target = format!("file://{}/shop", replicas.path().display());
    let on = d.cli_json(&["replicate", "shop", "--to", &target]);
    assert_eq!(on["replica"]["target"], target.as_str(), "{on}");
    note(s.port, "a", b"1").await;
    note(s.port, "b", b"2").await;
    let loc = location(&d, "shop");
    assert!(loc.starts_with(&target), "{loc}");
    wait_replica(&bin, &loc, &[], &["a", "b"]).await;
    assert_eq!(replica(&d, "shop")["state"], "running");
    // Litestream's state is outside pb_data.
    let pb_data = d.data_dir().join("instances/shop/pb_data");
    for entry in std::fs::read_dir(&pb_data).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.contains("litestream"), "{name} in pb_data");
    }

    let between = chrono::Utc::now();
    wait_until(Duration::from_secs(5), "a second to pass", || async {
        (chrono::Utc::now() - between > chrono::TimeDelta::milliseconds(1100)).then_some(())
    })
    .await;
    note(s.port, "c", b"3").await;
    wait_replica(&bin, &loc, &[], &["a", "b", "c"]).await;

    let clone = d.cli_json(&[
        "backup",
        "restore",
        "shop",
        "--from-replica",
        "--as",
        "copy",
    ]);
    assert_eq!(clone["status"], "running", "{clone}");
    assert!(
        clone.get("replica").is_none(),
        "a clone is not replicated: {clone}"
    );
    let copy_port = clone["port"].as_u64().unwrap();
    assert_eq!(titles(copy_port).await, ["a", "b", "c"]);
    // The clone's auth secrets are its own: the original's token is refused.
    let r = http()
        .get(format!("http://127.0.0.1:{copy_port}/api/collections"))
        .header("Authorization", &s.token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());

    let stamp = between.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let earlier = d.cli_json(&[
        "backup",
        "restore",
        "shop",
        "--from-replica",
        "--as",
        "earlier",
        "--timestamp",
        &stamp,
    ]);
    assert_eq!(titles(earlier["port"].as_u64().unwrap()).await, ["a", "b"]);

    // Bad input: clear errors, nothing changed.
    let before = replica(&d, "shop");
    refused(
        &d,
        &["replicate", "copy", "--to", &target],
        "one writer per replica path",
        None,
    );
    refused(
        &d,
        &["replicate", "copy", "--to", &format!("{target}/inside")],
        "one writer per replica path",
        None,
    );
    refused(
        &d,
        &["replicate", "shop", "--to", "file:///srv/../etc"],
        "'..'",
        None,
    );
    refused(
        &d,
        &[
            "replicate",
            "shop",
            "--to",
            "s3://AKIAKEY:hunter2secret@bucket/p",
        ],
        "credentials",
        Some("hunter2secret"),
    );
    refused(
        &d,
        &["replicate", "nosuch", "--to", &target],
        "no instance named",
        None,
    );
    refused(
        &d,
        &[
            "backup",
            "restore",
            "shop",
            "--from-replica",
            "--timestamp",
            "yesterday",
        ],
        "RFC 3339",
        None,
    );
    refused(
        &d,
        &[
            "backup",
            "restore",
            "shop",
            "--from-replica",
            "--timestamp",
            "2001-01-01T00:00:00Z",
        ],
        "before the replica's current generation",
        None,
    );
    refused(
        &d,
        &["backup", "restore", "copy", "--from-replica"],
        "is not replicated",
        None,
    );
    assert_eq!(replica(&d, "shop"), before);
    assert!(replica(&d, "copy").is_null());
    assert_eq!(titles(s.port).await, ["a", "b", "c"]);
    let audit = d.audit("shop").await;
    assert!(
        audit.contains(&("replicate".to_string(), "ok".to_string())),
        "{audit:?}"
    );
    assert!(
        audit.contains(&("replicate".to_string(), "error".to_string())),
        "{audit:?}"
    );
    let log = d.log();
    assert!(!log.contains("hunter2secret"));

    // Off: Litestream stops, the replica stays.
    let pid = litestream_pid(&d, "shop").await;
    let off = d.cli_json(&["replicate", "shop", "--off"]);
    assert!(off.get("replica").is_none(), "{off}");
    assert!(!crate::support::daemon::alive(pid));
    assert_eq!(replica_titles(&bin, &loc, &[]).unwrap(), ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn restores_in_place_start_a_new_generation_ours_and_pocketbases() {
    let test = "restores_in_place_start_a_new_generation_ours_and_pocketbases";
    let Some((d, bin)) = daemon(test, &[]).await else {
        return;
    };
    let s = shop(&d, "shop").await;
    let replicas = tempfile::tempdir().unwrap();
    let target = format!("file://{}/shop", replicas.path().display());
    d.cli_json(&["replicate", "shop", "--to", &target]);
    note(s.port, "a", b"1").await;
    let backup = d.cli_json(&["backup", "create", "shop"]);
    note(s.port, "b", b"2").await;
    let first = location(&d, "shop");
    wait_replica(&bin, &first, &[], &["a", "b"]).await;

    // Our restore: replication stops around the swap, then a new generation.
    let id = backup["id"].as_str().unwrap();
    let restored = d.cli_json(&["backup", "restore", "shop", id]);
    assert_eq!(restored["status"], "running", "{restored}");
    assert_eq!(titles(s.port).await, ["a"]);
    let second = location(&d, "shop");
    assert_ne!(first, second);
    wait_replica(&bin, &second, &[], &["a"]).await;
    note(s.port, "d", b"4").await;
    wait_replica(&bin, &second, &[], &["a", "d"]).await;
    // The old generation is left as it was.
    assert_eq!(replica_titles(&bin, &first, &[]).unwrap(), ["a", "b"]);

    // From the replica, in place: the latest state comes back.
    note(s.port, "e", b"5").await;
    wait_replica(&bin, &second, &[], &["a", "d", "e"]).await;
    let restored = d.cli_json(&["backup", "restore", "shop", "--from-replica"]);
    assert_eq!(restored["status"], "running", "{restored}");
    assert_eq!(titles(s.port).await, ["a", "d", "e"]);
    let third = location(&d, "shop");
    assert_ne!(second, third);
    wait_replica(&bin, &third, &[], &["a", "d", "e"]).await;

    // PocketBase's own restore swaps data.db underneath: noticed, and a
    // new generation holds the restored state.
    let token = auth(s.port, &s.password).await.unwrap();
    let r = send(
        http()
            .post(format!("http://127.0.0.1:{}/api/backups", s.port))
            .header("Authorization", &token)
            .json(&json!({"name": "pb_made.zip"})),
    )
    .await;
    assert!(r.status().is_success(), "PocketBase backup: {}", r.status());
    note(s.port, "f", b"6").await;
    wait_replica(&bin, &third, &[], &["a", "d", "e", "f"]).await;
    let r = send(
        http()
            .post(format!(
                "http://127.0.0.1:{}/api/backups/pb_made.zip/restore",
                s.port
            ))
            .header("Authorization", &token),
    )
    .await;
    assert!(
        r.status().is_success(),
        "PocketBase restore: {}",
        r.status()
    );
    let fourth = wait_until(Duration::from_secs(30), "a new generation", || async {
        let now = location(&d, "shop");
        (now != third).then_some(now)
    })
    .await;
    wait_until(
        Duration::from_secs(30),
        "PocketBase back, restored",
        || async {
            let r = http()
                .get(format!(
                    "http://127.0.0.1:{}/api/collections/notes/records?sort=title",
                    s.port
                ))
                .send()
                .await
                .ok()?;
            let v: Value = r.json().await.ok()?;
            let t: Vec<_> = v["items"]
                .as_array()?
                .iter()
                .map(|i| i["title"].clone())
                .collect();
            (t == [json!("a"), json!("d"), json!("e")]).then_some(())
        },
    )
    .await;
    wait_replica(&bin, &fourth, &[], &["a", "d", "e"]).await;
    let audit = d.audit("shop").await;
    assert!(
        audit.contains(&("replica-reset".to_string(), "ok".to_string())),
        "{audit:?}"
    );
}

/// Create a record with a plain JSON body; `false` when it was not
/// acknowledged.
async fn write(client: &reqwest::Client, port: u64, title: &str) -> bool {
    client
        .post(format!(
            "http://127.0.0.1:{port}/api/collections/notes/records"
        ))
        .json(&json!({ "title": title }))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_killed_loses_about_a_second_and_replication_resumes_after_a_daemon_restart() {
    let test = "a_host_killed_loses_about_a_second_and_replication_resumes_after_a_daemon_restart";
    let Some((mut d, bin)) = daemon(test, &[]).await else {
        return;
    };
    let s = shop(&d, "shop").await;
    let replicas = tempfile::tempdir().unwrap();
    let target = format!("file://{}/shop", replicas.path().display());
    d.cli_json(&["replicate", "shop", "--to", &target]);
    let loc = location(&d, "shop");
    let litestream = litestream_pid(&d, "shop").await;

    // Write steadily (every 50 ms) for three seconds, then kill -9 every
    // process: the daemon, PocketBase and Litestream.
    let client = http();
    let mut acked = 0u32;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        if write(&client, s.port, &format!("w{:06}", acked + 1)).await {
            acked += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rate = f64::from(acked) / started.elapsed().as_secs_f64();
    d.kill9();
    for pid in d.instance_pids().into_iter().chain([litestream]) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    // Restore on a fresh directory, as a new host would.
    let got = replica_titles(&bin, &loc, &[]).expect("a replica to restore");
    let expected: Vec<String> = (1..=got.len() as u32).map(|i| format!("w{i:06}")).collect();
    assert_eq!(
        got, expected,
        "the replica holds a prefix of what was written"
    );
    let missing = acked - got.len() as u32;
    eprintln!(
        "RPO: {missing} of {acked} acknowledged writes missing ({:.2} s of writes at {rate:.1}/s)",
        f64::from(missing) / rate
    );
    assert!(
        f64::from(missing) <= rate * 3.0,
        "{missing} of {acked} writes missing at {rate:.1}/s"
    );

    // The daemon comes back: PocketBase and Litestream run again, and new
    // writes reach the same generation.
    d.restart().await;
    d.wait_status("shop", "running").await;
    wait_until(Duration::from_secs(30), "replication to resume", || async {
        (replica(&d, "shop")["state"] == "running").then_some(())
    })
    .await;
    assert_eq!(location(&d, "shop"), loc);
    let port = s.port;
    wait_until(
        Duration::from_secs(20),
        "a write after the restart",
        || async { write(&client, port, "w999999").await.then_some(()) },
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "the write in the replica",
        || async {
            let t = replica_titles(&bin, &loc, &[])?;
            t.last().is_some_and(|l| l == "w999999").then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replicates_to_s3_and_restores_a_clone_from_it() {
    let test = "replicates_to_s3_and_restores_a_clone_from_it";
    let Some(s3) = S3::start().await else {
        skip(
            test,
            "moto's S3 server is not fetched: run scripts/fetch-test-deps",
        );
        return;
    };
    s3.create_bucket("replicas").await;
    let env = s3.env();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let Some((d, bin)) = daemon(test, &env_refs).await else {
        return;
    };
    let s = shop(&d, "shop").await;
    let target = format!("s3://replicas/pb/shop?endpoint={}", s3.endpoint());
    d.cli_json(&["replicate", "shop", "--to", &target]);
    note(s.port, "a", b"1").await;
    note(s.port, "b", b"2").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s3
        .keys("replicas", "pb/shop/")
        .await
        .iter()
        .any(|k| k.ends_with(".ltx"))
    {
        let log = d.data_dir().join("replication/litestream.log");
        assert!(
            Instant::now() < deadline,
            "no LTX files in the bucket ({:?}); litestream's log:\n{}",
            s3.keys("replicas", "").await,
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The generated config names no credential.
    let config = std::fs::read_to_string(d.data_dir().join("replication/litestream.yml")).unwrap();
    assert!(!config.contains(&env[1].1), "{config}");
    clone_with_both_notes(&d, "both notes in the replica").await;
    let _ = bin;
}

#[tokio::test(flavor = "multi_thread")]
async fn replicates_to_a_nats_object_store_and_restores_a_clone_from_it() {
    let test = "replicates_to_a_nats_object_store_and_restores_a_clone_from_it";
    let Some(nats) = Nats::start().await else {
        skip(
            test,
            "nats-server is not fetched: run scripts/fetch-test-deps",
        );
        return;
    };
    // Litestream wants the bucket to exist.
    let client = async_nats::connect(nats.url())
        .await
        .expect("connect to nats-server");
    async_nats::jetstream::new(client)
        .create_object_store(async_nats::jetstream::object_store::Config {
            bucket: "replicas".to_string(),
            ..Default::default()
        })
        .await
        .expect("create the bucket");
    let Some((d, _bin)) = daemon(test, &[]).await else {
        return;
    };
    let s = shop(&d, "shop").await;
    let target = format!("{}/replicas", nats.url());
    let on = d.cli_json(&["replicate", "shop", "--to", &target]);
    assert_eq!(on["replica"]["target"], target.as_str(), "{on}");
    note(s.port, "a", b"1").await;
    note(s.port, "b", b"2").await;
    clone_with_both_notes(&d, "both notes in the NATS replica").await;
    // The original runs on, replicated.
    assert_eq!(replica(&d, "shop")["state"], "running");
    assert_eq!(titles(s.port).await, ["a", "b"]);
}
