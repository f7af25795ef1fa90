//! The official PocketBase JS SDK (npm `pocketbase`, pinned in
//! `tests/data/sdk/package-lock.json`) through our routers, by host name:
//! `tests/data/sdk/roundtrip.mjs` does superuser auth, a new collection,
//! record CRUD, a 5 MB file upload and its download and a realtime
//! subscription, against `http://NAME.localhost:PORT` of the embedded proxy
//! and of a real Caddy driven through its admin API. Node and the SDK come
//! from `scripts/fetch-test-deps`; without them the tests are skipped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::routing::{via, Caddy};
use crate::support::daemon::Daemon;
use crate::support::{deps_dir, free_port, skip, wait_until, PB_NEW};

/// The file the round trip uploads: 5 MiB.
const FILE_BYTES: u64 = 5 * 1024 * 1024;
/// The whole round trip, Node's start included (the script bounds itself
/// at 90 s; this is the backstop).
const RUN_LIMIT: Duration = Duration::from_secs(120);
const EMAIL: &str = "sdk@example.com";

/// Where `scripts/fetch-test-deps` installs the SDK.
fn sdk_modules() -> PathBuf {
    deps_dir().join("../node/node_modules")
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sdk/roundtrip.mjs")
}

/// Why the round trip cannot run here, if it cannot.
fn missing() -> Option<String> {
    let node = std::process::Command::new("node").arg("--version").output();
    match node {
        Ok(out) if out.status.success() => {}
        _ => return Some("node is not installed (scripts/fetch-test-deps installs it)".into()),
    }
    if !sdk_modules().join("pocketbase/package.json").exists() {
        return Some(format!(
            "the PocketBase JS SDK is missing in {} (run scripts/fetch-test-deps)",
            sdk_modules().display()
        ));
    }
    None
}

/// Run the SDK's round trip against `base`; its JSON line.
async fn roundtrip(base: &str, password: &str) -> Value {
    let run = tokio::process::Command::new("node")
        .arg(script())
        .args([base, EMAIL, password])
        .env("POCKESTRATOR_SDK_MODULES", sdk_modules())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("the SDK round trip against {base} took over {RUN_LIMIT:?}"))
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let result: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "no JSON from the round trip ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success() && result["ok"] == true,
        "the SDK round trip against {base} failed: {result}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    result
}

/// What every round trip must show, and the uploaded file as PocketBase
/// itself stores it (read past the router).
async fn check(d: &Daemon, result: &Value, pb_port: &str) {
    for step in [
        "superuser_auth",
        "create_collection",
        "realtime_subscribe",
        "record_create",
        "realtime_create_event",
        "record_read",
        "record_update",
        "record_list",
        "record_delete",
        "file_upload",
        "file_download",
        "realtime_unsubscribe",
    ] {
        assert_eq!(result["steps"][step], true, "step {step}: {result}");
    }
    assert_eq!(result["sdk_version"], "0.28.1", "{result}");
    let record = result["record_id"].as_str().expect("record id");
    assert_eq!(result["realtime"]["action"], "create", "{result}");
    assert_eq!(result["realtime"]["record_id"], record, "{result}");
    assert_eq!(result["realtime"]["collection"], result["collection"]);
    assert_eq!(result["upload"]["bytes"], FILE_BYTES, "{result}");
    assert_eq!(result["download"]["bytes"], FILE_BYTES, "{result}");
    assert_eq!(result["download"]["sha256"], result["upload"]["sha256"]);

    let url = format!(
        "http://127.0.0.1:{pb_port}/api/files/{}/{}/{}",
        result["collection"].as_str().unwrap(),
        result["file_record_id"].as_str().unwrap(),
        result["file_name"].as_str().unwrap()
    );
    let stored = d
        .http
        .get(&url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200, "{url}");
    let stored = stored.bytes().await.unwrap();
    assert_eq!(stored.len() as u64, FILE_BYTES);
    assert_eq!(
        result["upload"]["sha256"],
        hex::encode(Sha256::digest(&stored)),
        "the file PocketBase stored differs from the one the SDK sent"
    );
}

/// Create `name` with a superuser; its direct port and the password.
fn create(d: &Daemon, name: &str) -> (String, String) {
    let port = free_port().to_string();
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
    let password = created["superuser"]["password"]
        .as_str()
        .expect("a generated superuser password")
        .to_string();
    (port, password)
}

#[tokio::test(flavor = "multi_thread")]
async fn js_sdk_through_the_embedded_proxy() {
    if let Some(why) = missing() {
        skip("sdk::js_sdk_through_the_embedded_proxy", &why);
        return;
    }
    let d = Daemon::start().await;
    let proxy = d.proxy.expect("the embedded proxy is the default router");
    let (port, password) = create(&d, "sdkapp");
    let base = format!("http://sdkapp.localhost:{}", proxy.port());
    let result = roundtrip(&base, &password).await;
    check(&d, &result, &port).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn js_sdk_through_caddy() {
    if let Some(why) = missing() {
        skip("sdk::js_sdk_through_caddy", &why);
        return;
    }
    let caddy = Caddy::start();
    caddy.wait_admin().await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let d = Daemon::start_with(
        &[
            "--router",
            "caddy",
            "--caddy-admin",
            &format!("http://{}", caddy.admin),
            "--caddy-listen",
            &listen.to_string(),
            "--caddy-tls",
            "off",
        ],
        &[],
    )
    .await;
    let (port, password) = create(&d, "sdkcaddy");
    wait_until(
        Duration::from_secs(10),
        "the route through caddy",
        || async {
            (via(&d.http, listen, "sdkcaddy.localhost", "/api/health").await == 200).then_some(())
        },
    )
    .await;
    let base = format!("http://sdkcaddy.localhost:{}", listen.port());
    let result = roundtrip(&base, &password).await;
    check(&d, &result, &port).await;
}
