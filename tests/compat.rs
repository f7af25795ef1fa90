//! Seed 001's per-user API, exactly as a program written against it uses it.

use serde_json::{json, Value};

use crate::support::daemon::Daemon;
use crate::support::{free_port, pocketbase_bin, PB_NEW};

#[tokio::test(flavor = "multi_thread")]
async fn seed_001_round_trip() {
    // The seed's own environment variables.
    let base = free_port().saturating_sub(2000).max(20_000);
    let dbs = tempfile::tempdir().unwrap();
    let binary = pocketbase_bin(PB_NEW);
    let d = Daemon::start_with(
        &[],
        &[
            ("PB_BINARY_PATH", binary.to_str().unwrap()),
            ("PB_BASE_PORT", &base.to_string()),
            ("PB_USER_DBS_PATH", dbs.path().to_str().unwrap()),
        ],
    )
    .await;

    // Unknown user: 404 in the seed's error shape.
    let (code, v) = d.get("/api/users/user_123/pb_status").await;
    assert_eq!(code, 404);
    assert_eq!(v["success"], false);
    assert_eq!(v["instance"], Value::Null);
    assert!(v["message"].is_string());
    let (code, v) = d.post("/api/users/user_123/stop_pb", json!({})).await;
    assert_eq!((code, v["success"].clone()), (404, json!(false)));

    let (code, v) = d
        .post(
            "/api/users/user_123/init_pb",
            json!({"force_restart": false}),
        )
        .await;
    assert_eq!(code, 200, "{v}\n{}", d.log());
    assert_eq!(v["success"], true);
    let inst = &v["instance"];
    let port = inst["port"].as_u64().unwrap();
    assert!(
        (base as u64..base as u64 + 1000 + 50).contains(&port),
        "port {port} not near base {base}"
    );
    assert_eq!(
        v["message"],
        format!("PocketBase instance initialized on port {port}")
    );
    assert_eq!(inst["user_id"], "user_123");
    assert_eq!(inst["status"], "Running");
    assert_eq!(inst["url"], format!("http://localhost:{port}"));
    let db_path = inst["db_path"].as_str().unwrap();
    assert!(
        db_path.starts_with(dbs.path().to_str().unwrap()),
        "{db_path}"
    );
    assert!(std::path::Path::new(db_path).exists(), "{db_path}");
    for field in ["created_at", "last_health_check"] {
        assert!(inst.get(field).is_some(), "{field}");
    }
    let health = reqwest::get(format!("http://127.0.0.1:{port}/api/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // Again without force: the same instance, still running.
    let (_, again) = d.post("/api/users/user_123/init_pb", json!({})).await;
    assert_eq!(again["instance"]["port"], port);
    assert_eq!(again["success"], true);

    let (code, status) = d.get("/api/users/user_123/pb_status").await;
    assert_eq!(code, 200);
    assert_eq!(status["user_id"], "user_123");
    assert_eq!(status["instance"]["status"], "Running");

    let (code, all) = d.get("/api/pb_instances").await;
    assert_eq!(code, 200);
    assert_eq!(all["count"], 1);
    assert_eq!(all["instances"]["user_123"]["port"], port);
    assert_eq!(all["instances"]["user_123"]["status"], "Running");

    let (code, h) = d.get("/health/pb").await;
    assert_eq!(code, 200);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["total_instances"], 1);
    assert_eq!(h["running_instances"], 1);
    assert!(h["timestamp"].is_string());

    // force_restart gives a new process on the same port.
    let pid_before = d.get("/api/v1/instances").await.1["instances"][0]["pid"].clone();
    let (code, v) = d
        .post(
            "/api/users/user_123/init_pb",
            json!({"force_restart": true}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["instance"]["port"], port);
    let pid_after = d.get("/api/v1/instances").await.1["instances"][0]["pid"].clone();
    assert_ne!(pid_before, pid_after);

    let (code, v) = d.post("/api/users/user_123/stop_pb", json!({})).await;
    assert_eq!(code, 200);
    assert_eq!(
        v,
        json!({"success": true, "message": "PocketBase instance stopped successfully"})
    );
    let (_, status) = d.get("/api/users/user_123/pb_status").await;
    assert_eq!(status["instance"]["status"], "Stopped");
    let (_, h) = d.get("/health/pb").await;
    assert_eq!(h["running_instances"], 0);

    // init_pb starts it again; an empty body is accepted as the seed allows.
    let resp = d
        .http
        .post(d.url("/api/users/user_123/init_pb"))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["instance"]["status"], "Running");

    // Hostile user ids never reach the file system.
    let (code, v) = d.post("/api/users/..%2F..%2Fetc/init_pb", json!({})).await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["success"], false);
    // Same auth as the rest of the API.
    let resp = d.http.get(d.url("/api/pb_instances")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["success"], false);

    // The user's instance is an ordinary managed instance too.
    let list = d.cli_json(&["list"]);
    assert!(
        list[0]["name"].as_str().unwrap().starts_with("u-user-123-"),
        "{list}"
    );
}
