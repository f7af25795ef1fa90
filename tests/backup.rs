//! Backups against real PocketBase instances: consistent while running,
//! taken while stopped without starting, restored in place and into a
//! clone, compatible with PocketBase's own backups both ways, refused when
//! damaged or hostile, and whole after a daemon dies mid-restore.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::daemon::Daemon;
use crate::support::{quiet_port, wait_until, PB_NEW};

pub(crate) const EMAIL: &str = "admin@example.com";

/// A running instance with a superuser, a public `notes` collection with
/// a file field, and what it takes to talk to it.
pub(crate) struct Shop {
    pub(crate) port: u64,
    pub(crate) password: String,
    pub(crate) token: String,
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Send a request to an instance, again while its port refuses
/// connections: PocketBase executes itself anew when a file in `pb_hooks/`
/// changes, and its port is closed for that moment (longer on a busy
/// machine). A GET that the old process closed unanswered is sent again
/// too (it changed nothing).
pub(crate) async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let idempotent = request
        .try_clone()
        .and_then(|r| r.build().ok())
        .is_some_and(|r| r.method() == reqwest::Method::GET);
    loop {
        let attempt = request
            .try_clone()
            .expect("a request with a body in memory");
        match attempt.send().await {
            Err(e)
                if (e.is_connect() || (idempotent && e.is_request() && !e.is_timeout()))
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return other.unwrap(),
        }
    }
}

pub(crate) async fn shop(d: &Daemon, name: &str) -> Shop {
    shop_on(d, name, quiet_port()).await
}

/// [`shop`] on a given port.
pub(crate) async fn shop_on(d: &Daemon, name: &str, port: u16) -> Shop {
    let port = port.to_string();
    let created = d.cli_json(&[
        "create",
        name,
        "--version",
        PB_NEW,
        "--port",
        &port,
        "--superuser-email",
        EMAIL,
    ]);
    let port = created["port"].as_u64().expect("port");
    let password = created["superuser"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    let token = auth(port, &password).await.expect("superuser auth");
    let r = http()
        .post(format!("http://127.0.0.1:{port}/api/collections"))
        .header("Authorization", &token)
        .json(&json!({
            "name": "notes",
            "type": "base",
            "listRule": "", "viewRule": "", "createRule": "", "deleteRule": "",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "doc", "type": "file", "maxSelect": 1, "maxSize": 10_000_000},
            ],
        }))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "create collection: {}",
        r.text().await.unwrap()
    );
    Shop {
        port,
        password,
        token,
    }
}

pub(crate) async fn auth(port: u64, password: &str) -> Option<String> {
    let r = http()
        .post(format!(
            "http://127.0.0.1:{port}/api/collections/_superusers/auth-with-password"
        ))
        .json(&json!({"identity": EMAIL, "password": password}))
        .send()
        .await
        .ok()?;
    let v: Value = r.json().await.ok()?;
    v["token"].as_str().map(str::to_string)
}

/// One part of a multipart body: the field, its file name and content type
/// if it is a file, and its content.
type Part<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a [u8]);

/// A `multipart/form-data` body, written by hand: the content type and the
/// bytes.
fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "pockestrator-test-boundary";
    let mut body = Vec::new();
    for (field, file, content) in parts {
        let disposition = match file {
            Some((name, kind)) => {
                format!("form-data; name=\"{field}\"; filename=\"{name}\"\r\nContent-Type: {kind}")
            }
            None => format!("form-data; name=\"{field}\""),
        };
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Create a note with an attached file.
pub(crate) async fn note(port: u64, title: &str, file: &[u8]) -> Value {
    let (content_type, body) = multipart(&[
        ("title", None, title.as_bytes()),
        ("doc", Some(("doc.txt", "text/plain")), file),
    ]);
    let r = send(
        http()
            .post(format!(
                "http://127.0.0.1:{port}/api/collections/notes/records"
            ))
            .header("Content-Type", content_type)
            .body(body),
    )
    .await;
    assert!(
        r.status().is_success(),
        "create note: {}",
        r.text().await.unwrap()
    );
    r.json().await.unwrap()
}

pub(crate) async fn titles(port: u64) -> Vec<String> {
    let v: Value = send(http().get(format!(
        "http://127.0.0.1:{port}/api/collections/notes/records?sort=title&perPage=100"
    )))
    .await
    .json()
    .await
    .unwrap();
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {v}"))
        .iter()
        .map(|r| r["title"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) async fn file_of(port: u64, rec: &Value) -> Vec<u8> {
    let url = format!(
        "http://127.0.0.1:{port}/api/files/notes/{}/{}",
        rec["id"].as_str().unwrap(),
        rec["doc"].as_str().unwrap()
    );
    let r = send(http().get(url)).await;
    assert!(r.status().is_success(), "file download: {}", r.status());
    r.bytes().await.unwrap().to_vec()
}

pub(crate) fn backup_id(v: &Value) -> String {
    v["id"].as_str().expect("backup id").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_restore_in_place_and_as_a_clone() {
    let d = Daemon::start().await;
    let s = shop(&d, "shop").await;
    let first = note(s.port, "a-first", b"first file").await;
    note(s.port, "b-second", b"second file").await;
    let hooks = d.data_dir().join("instances/shop/pb_hooks/hello.pb.js");
    std::fs::write(&hooks, "// a hook of the shop\n").unwrap();

    let b = d.cli_json(&["backup", "create", "shop"]);
    let id = backup_id(&b);
    assert_eq!(b["instance"], "shop");
    assert_eq!(b["version"], PB_NEW);
    assert_eq!(b["trigger"], "manual");
    assert!(b["size"].as_u64().unwrap() > 1000, "{b}");
    assert_eq!(b["sha256"].as_str().unwrap().len(), 64);
    let location = b["location"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&location).exists());
    let listed = d.cli_json(&["backup", "list", "shop"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id.as_str()),
        "{listed}"
    );

    // Changes after the backup: one more note, one file replaced, the hook gone.
    note(s.port, "c-third", b"third file").await;
    std::fs::remove_file(&hooks).unwrap();
    assert_eq!(titles(s.port).await, ["a-first", "b-second", "c-third"]);

    let restored = d.cli_json(&["backup", "restore", "shop", &id]);
    assert_eq!(restored["status"], "running", "{restored}");
    assert_eq!(titles(s.port).await, ["a-first", "b-second"]);
    assert_eq!(file_of(s.port, &first).await, b"first file");
    assert!(hooks.exists(), "the hooks come back with the backup");
    // The superuser still signs in, and the old token still works (same data).
    assert!(auth(s.port, &s.password).await.is_some());

    // A clone: a new instance with the backup's data, the original untouched.
    let clone = d.cli_json(&["backup", "restore", "shop", &id, "--as", "shop-copy"]);
    let clone_port = clone["port"].as_u64().unwrap();
    assert_ne!(clone_port, s.port);
    assert_eq!(clone["status"], "running");
    assert_eq!(titles(clone_port).await, ["a-first", "b-second"]);
    assert_eq!(file_of(clone_port, &first).await, b"first file");
    // Same password, but the original's tokens are not accepted by the clone.
    assert!(auth(clone_port, &s.password).await.is_some());
    let with_old_token = http()
        .get(format!(
            "http://127.0.0.1:{clone_port}/api/collections/_superusers/records"
        ))
        .header("Authorization", &s.token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert!(
        matches!(with_old_token, 401 | 403),
        "the clone accepted the original's token: {with_old_token}"
    );
    let on_original = http()
        .get(format!(
            "http://127.0.0.1:{}/api/collections/_superusers/records",
            s.port
        ))
        .header("Authorization", &s.token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(on_original, 200);

    let audit = d.audit("shop").await;
    assert!(
        audit.contains(&("backup".to_string(), "ok".to_string())),
        "{audit:?}"
    );
    assert!(
        audit.contains(&("restore".to_string(), "ok".to_string())),
        "{audit:?}"
    );

    // Delete: the archive and the record go.
    let out = d.cli(&["backup", "delete", "shop", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!std::path::Path::new(&location).exists());
    let listed = d.cli_json(&["backup", "list", "shop"]);
    assert!(!listed
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == id.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_instance_is_backed_up_without_starting_it() {
    let d = Daemon::start().await;
    let s = shop(&d, "quiet").await;
    note(s.port, "kept", b"x").await;
    d.cli_json(&["stop", "quiet"]);
    let b = d.cli_json(&["backup", "create", "quiet"]);
    let status = d.cli_json(&["status", "quiet"]);
    assert_eq!(status["status"], "stopped", "{status}");
    assert!(status["pid"].is_null(), "{status}");
    // Restoring a stopped instance leaves it stopped, with the data in place.
    let restored = d.cli_json(&["backup", "restore", "quiet", &backup_id(&b)]);
    assert_eq!(restored["status"], "stopped", "{restored}");
    d.cli_json(&["start", "quiet"]);
    assert_eq!(titles(s.port).await, ["kept"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn compatible_with_pocketbase_backups_both_ways() {
    let d = Daemon::start().await;
    let s = shop(&d, "compat").await;
    note(s.port, "before", b"x").await;

    // PocketBase's own backup is listed and restored by pockestrator.
    let r = http()
        .post(format!("http://127.0.0.1:{}/api/backups", s.port))
        .header("Authorization", &s.token)
        .json(&json!({"name": "pb_made.zip"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "POST /api/backups: {}", r.status());
    let listed = d.cli_json(&["backup", "list", "compat"]);
    let pb_made = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == "pb_made")
        .unwrap_or_else(|| panic!("PocketBase's backup is not listed: {listed}"))
        .clone();
    assert_eq!(pb_made["trigger"], "pocketbase");
    note(s.port, "after", b"y").await;
    let restored = d.cli_json(&["backup", "restore", "compat", "pb_made"]);
    assert_eq!(restored["status"], "running");
    assert_eq!(titles(s.port).await, ["before"]);

    // Our archive uploaded to PocketBase and restored by PocketBase itself.
    let ours = d.cli_json(&["backup", "create", "compat"]);
    let archive = std::fs::read(ours["location"].as_str().unwrap()).unwrap();
    note(s.port, "later", b"z").await;
    let token = auth(s.port, &s.password).await.unwrap();
    let file_name = format!("{}.zip", backup_id(&ours));
    let (content_type, body) = multipart(&[(
        "file",
        Some((file_name.as_str(), "application/zip")),
        &archive,
    )]);
    let r = http()
        .post(format!("http://127.0.0.1:{}/api/backups/upload", s.port))
        .header("Authorization", &token)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "upload: {} {}",
        r.status(),
        r.text().await.unwrap()
    );
    let r = http()
        .post(format!(
            "http://127.0.0.1:{}/api/backups/{file_name}/restore",
            s.port
        ))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "PocketBase restore: {}",
        r.status()
    );
    // PocketBase re-executes itself with the restored pb_data.
    wait_until(
        Duration::from_secs(30),
        "PocketBase to come back restored",
        || async {
            let t = http()
                .get(format!(
                    "http://127.0.0.1:{}/api/collections/notes/records?sort=title",
                    s.port
                ))
                .send()
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()?;
            let titles: Vec<_> = t["items"]
                .as_array()?
                .iter()
                .map(|r| r["title"].clone())
                .collect();
            (titles == [json!("before")]).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_and_hostile_input_is_refused_and_changes_nothing() {
    let d = Daemon::start().await;
    let s = shop(&d, "safe").await;
    note(s.port, "one", b"x").await;
    let b = d.cli_json(&["backup", "create", "safe"]);
    let id = backup_id(&b);

    let long = "a".repeat(10_000);
    for bad in ["..%2F..%2Fetc", "a%00b", long.as_str(), "UPPER", "-x"] {
        let (code, v) = d
            .post(
                &format!("/api/v1/instances/safe/backups/{bad}/restore"),
                json!({}),
            )
            .await;
        assert_eq!(code, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "invalid_backup", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().len() < 400);
    }
    let (code, v) = d
        .post(
            "/api/v1/instances/safe/backups/nosuchbackup/restore",
            json!({}),
        )
        .await;
    assert_eq!(code, 404, "{v}");
    for to in [
        "s3://bucket/x",
        "relative/dir",
        "/srv/../etc",
        "ext::sh -c id",
    ] {
        let (code, v) = d
            .post("/api/v1/instances/safe/backups", json!({ "to": to }))
            .await;
        assert_eq!(code, 400, "{to}: {v}");
    }
    let (code, v) = d
        .post(
            "/api/v1/instances/safe/backups",
            json!({ "to": "/x", "bogus": 1 }),
        )
        .await;
    assert_eq!(code, 400, "{v}");

    // A damaged archive: verified before anything is touched.
    note(s.port, "two", b"y").await;
    let location = b["location"].as_str().unwrap();
    let bytes = std::fs::read(location).unwrap();
    std::fs::write(location, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let (code, v) = d
        .post(
            &format!("/api/v1/instances/safe/backups/{id}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_archive", "{v}");
    let status = d.cli_json(&["status", "safe"]);
    assert_eq!(status["status"], "running");
    assert_eq!(titles(s.port).await, ["one", "two"]);
    // A clone from a damaged archive leaves no instance behind.
    let (code, _) = d
        .post(
            &format!("/api/v1/instances/safe/backups/{id}/restore"),
            json!({ "as": "safe-copy" }),
        )
        .await;
    assert_eq!(code, 400);
    let (code, _) = d.get("/api/v1/instances/safe-copy").await;
    assert_eq!(code, 404);
    let audit = d.audit("safe").await;
    assert!(
        audit.contains(&("restore".to_string(), "error".to_string())),
        "{audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_mid_restore_puts_the_old_state_back() {
    let mut d = Daemon::start().await;
    let s = shop(&d, "crashy").await;
    note(s.port, "old", b"x").await;
    let from_binary = d.cli_json(&["status", "crashy"])["binary"]
        .as_str()
        .expect("binary")
        .to_string();
    d.cli_json(&["stop", "crashy"]);
    d.kill9();
    // The state a restore leaves between moving the old pb_data aside and
    // moving the restored one in, with its marker: exactly what a daemon
    // killed at that moment leaves behind.
    let dir = d.data_dir().join("instances/crashy");
    let aside = dir.join(".before-restore-test");
    std::fs::create_dir_all(&aside).unwrap();
    std::fs::rename(dir.join("pb_data"), aside.join("pb_data")).unwrap();
    std::fs::create_dir_all(dir.join("pb_data")).unwrap();
    std::fs::write(dir.join("pb_data/half-restored"), b"").unwrap();
    std::fs::write(
        dir.join("restore-in-progress.json"),
        serde_json::to_vec(&json!({
            "backup": "test",
            "aside": aside,
            "from_version": PB_NEW,
            "from_binary": from_binary,
        }))
        .unwrap(),
    )
    .unwrap();
    d.restart().await;
    d.cli_json(&["start", "crashy"]);
    assert_eq!(titles(s.port).await, ["old"]);
    assert!(!dir.join("restore-in-progress.json").exists());
    assert!(!dir.join("pb_data/half-restored").exists());
    assert!(!aside.exists());
    let audit = d.audit("crashy").await;
    assert!(
        audit.contains(&("restore".to_string(), "error".to_string())),
        "{audit:?}"
    );
}

fn scheduled(d: &Daemon, name: &str) -> Vec<String> {
    d.cli_json(&["backup", "list", name])
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["trigger"] == "schedule")
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_run_while_stopped_and_keep_what_the_retention_says() {
    let d = Daemon::start().await;
    let s = shop(&d, "sched").await;
    note(s.port, "n", b"x").await;
    d.cli_json(&["stop", "sched"]);
    let manual = backup_id(&d.cli_json(&["backup", "create", "sched"]));
    let set = d.cli_json(&[
        "backup",
        "schedule",
        "sched",
        "--cron",
        "*/2 * * * * *",
        "--keep-last",
        "2",
        "--keep-daily",
        "0",
        "--keep-weekly",
        "0",
        "--keep-monthly",
        "0",
    ]);
    assert_eq!(set["schedule"]["cron"], "*/2 * * * * *", "{set}");
    // Several runs, then retention holds the scheduled ones at two.
    wait_until(
        Duration::from_secs(30),
        "three scheduled backups",
        || async {
            let runs = d
                .audit("sched")
                .await
                .iter()
                .filter(|(a, r)| a == "backup" && r == "ok")
                .count();
            (runs >= 4).then_some(())
        },
    )
    .await;
    let kept = wait_until(Duration::from_secs(10), "retention to hold", || async {
        let ids = scheduled(&d, "sched");
        (ids.len() == 2).then_some(ids)
    })
    .await;
    assert_eq!(kept.len(), 2);
    let all = d.cli_json(&["backup", "list", "sched"]);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == manual.as_str()),
        "a backup made by hand is never pruned: {all}"
    );
    let status = d.cli_json(&["status", "sched"]);
    assert_eq!(
        status["status"], "stopped",
        "scheduled backups do not start it"
    );
    let off = d.cli_json(&["backup", "schedule", "sched", "--off"]);
    assert!(off["schedule"].is_null());
    let (code, v) = d
        .api(
            reqwest::Method::PUT,
            "/api/v1/instances/sched/backup-schedule",
            Some(json!({"cron": "every day"})),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_schedule");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_missed_while_the_daemon_was_down_runs_once_at_start() {
    let mut d = Daemon::start_with(&["--backup-schedule", "0 3 * * *"], &[]).await;
    shop(&d, "late").await;
    let s = d.cli_json(&["backup", "schedule", "late"]);
    assert_eq!(
        s["schedule"]["cron"], "0 3 * * *",
        "the fleet's default: {s}"
    );
    assert!(scheduled(&d, "late").is_empty());
    d.kill9();
    // Two days without the daemon: two 03:00 runs missed.
    let db = rusqlite::Connection::open(d.data_dir().join("state.db")).unwrap();
    let two_days_ago = (chrono::Utc::now() - chrono::Duration::days(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    db.execute(
        "UPDATE backup_schedules SET last_run = ?1 WHERE instance = 'late'",
        [two_days_ago],
    )
    .unwrap();
    drop(db);
    d.restart().await;
    wait_until(Duration::from_secs(20), "the missed run", || async {
        (!scheduled(&d, "late").is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        scheduled(&d, "late").len(),
        1,
        "missed runs run once, not twice"
    );
}
