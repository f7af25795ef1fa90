//! `schema push` against real PocketBase of two versions: one schema file
//! becomes one migration that PocketBase itself runs, the collections and
//! fields get the same ids on every instance, the same schema pushed again
//! restarts nothing, and a migration that fails on the canary rolls that
//! instance back with its data and leaves the others untouched.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::daemon::Daemon;
use crate::support::{quiet_port, PB_NEW, PB_OLD};

fn posts(extra_field: bool) -> Value {
    let mut fields = vec![
        json!({"id": "text_title01", "name": "title", "type": "text", "required": true}),
        json!({"id": "select_stat01", "name": "status", "type": "select",
               "values": ["draft", "published"], "maxSelect": 1}),
    ];
    if extra_field {
        fields.push(json!({"id": "number_views1", "name": "views", "type": "number"}));
    }
    json!({
        "id": "pbc_posts0000001", "name": "posts", "type": "base", "system": false,
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": null, "deleteRule": null,
        "fields": fields, "indexes": [],
    })
}

fn field_ids(instance_dir: &Path, collection: &str) -> (String, Vec<String>) {
    let db = rusqlite::Connection::open_with_flags(
        instance_dir.join("pb_data/data.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let (id, fields): (String, String) = db
        .query_row(
            "SELECT id, fields FROM _collections WHERE name = ?1",
            [collection],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let fields: Vec<Value> = serde_json::from_str(&fields).unwrap();
    let mut ids: Vec<String> = fields
        .iter()
        .filter(|f| f["system"] != true)
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    (id, ids)
}

async fn push(d: &Daemon, schema: Value, to: &[&str]) -> Value {
    let (code, v) = d
        .post("/api/v1/schema/push", json!({"schema": schema, "to": to}))
        .await;
    assert_eq!(code, 200, "{v}");
    v
}

fn results(v: &Value) -> Vec<(String, String)> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_reaches_two_versions_with_the_same_ids_and_a_failed_one_rolls_back() {
    let d = Daemon::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut ports = Vec::new();
    for (name, version) in [("old", PB_OLD), ("new", PB_NEW)] {
        let port = quiet_port().to_string();
        let made = d.cli_json(&["create", name, "--version", version, "--port", &port]);
        ports.push(made["port"].as_u64().unwrap());
    }

    // Pushed from a file through the CLI, the system collections in it
    // are left out and the rest migrated, the canary first.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schema.json");
    let superusers = json!({"id": "pbc_3142635823", "name": "_superusers", "type": "auth",
                            "system": true, "fields": []});
    std::fs::write(
        &file,
        serde_json::to_string(&json!([superusers, posts(false)])).unwrap(),
    )
    .unwrap();
    let report = d.cli_json(&[
        "schema",
        "push",
        file.to_str().unwrap(),
        "--to",
        "old",
        "new",
    ]);
    assert_eq!(
        results(&report),
        [
            ("old".into(), "applied".into()),
            ("new".into(), "applied".into())
        ],
        "{report}"
    );
    assert_eq!(report["collections"], 1);
    let migration = report["migration"].as_str().unwrap().to_string();
    for name in ["old", "new"] {
        let dir = d.data_dir().join("instances").join(name);
        assert!(dir.join("pb_migrations").join(&migration).is_file());
        let (id, fields) = field_ids(&dir, "posts");
        assert_eq!(id, "pbc_posts0000001", "{name}");
        assert_eq!(fields, ["select_stat01", "text_title01"], "{name}");
    }
    // PocketBase serves the collection, with its rules.
    for port in &ports {
        let r = http
            .post(format!(
                "http://127.0.0.1:{port}/api/collections/posts/records"
            ))
            .json(&json!({"title": "kept", "status": "draft"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let rec: Value = r.json().await.unwrap();
        assert_eq!(rec["collectionId"], "pbc_posts0000001");
    }

    // The same schema again: nothing restarted.
    let pid = d.wait_status("new", "running").await["pid"].clone();
    let again = push(&d, json!([posts(false)]), &["old", "new"]).await;
    assert_eq!(
        results(&again),
        [
            ("old".into(), "unchanged".into()),
            ("new".into(), "unchanged".into())
        ]
    );
    assert_eq!(d.wait_status("new", "running").await["pid"], pid);

    // A migration PocketBase refuses (a view over a missing table): the
    // canary is rolled back with its record, the other one never touched.
    let bad_view = json!({"id": "pbc_badview0001", "name": "broken", "type": "view",
                          "viewQuery": "SELECT id FROM missing_table", "fields": []});
    let failed = push(&d, json!([posts(true), bad_view]), &["old", "new"]).await;
    assert_eq!(
        results(&failed),
        [
            ("old".into(), "rolled-back".into()),
            ("new".into(), "skipped".into())
        ],
        "{failed}"
    );
    assert_eq!(failed["failed"], 2);
    let detail = failed["results"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("missing_table"),
        "the reason is not said: {detail}"
    );
    assert!(failed["results"][0]["snapshot"].is_string());
    d.wait_status("old", "running").await;
    assert_eq!(
        d.wait_status("new", "running").await["pid"],
        pid,
        "new was touched"
    );
    let old_dir = d.data_dir().join("instances/old");
    let (_, fields) = field_ids(&old_dir, "posts");
    assert_eq!(
        fields,
        ["select_stat01", "text_title01"],
        "the failed field stayed"
    );
    let left: Vec<String> = std::fs::read_dir(old_dir.join("pb_migrations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [migration], "the failed migration was left behind");
    let list: Value = http
        .get(format!(
            "http://127.0.0.1:{}/api/collections/posts/records",
            ports[0]
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["totalItems"], 1, "the record was lost: {list}");
    let audit = d.audit("old").await;
    assert!(
        audit
            .iter()
            .any(|(a, r)| a == "schema-push" && r == "error"),
        "{audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_that_does_not_check_is_refused_before_any_instance_is_touched() {
    let d = Daemon::start().await;
    let port = quiet_port().to_string();
    d.cli_json(&["create", "one", "--version", PB_NEW, "--port", &port]);
    let pid = d.wait_status("one", "running").await["pid"].clone();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("{\"collections\": [\n", "line 2"),
        ("{\"collections\": []}", "not a JSON array"),
        (
            "[{\"name\": \"posts\", \"type\": \"base\", \"fields\": []}]",
            "has no `id`",
        ),
        ("[]", "no collections to push"),
    ];
    for (text, want) in cases {
        let file = dir.path().join("bad.json");
        std::fs::write(&file, text).unwrap();
        let out = d.cli(&["schema", "push", file.to_str().unwrap(), "--all"]);
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{text}: {err}");
    }
    let (code, v) = d
        .post(
            "/api/v1/schema/push",
            json!({"schema": [posts(false)], "to": ["one"], "all": true}),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    let (code, _) = d
        .post(
            "/api/v1/schema/push",
            json!({"schema": [posts(false)], "to": ["nope"]}),
        )
        .await;
    assert_eq!(code, 404);
    let (code, _) = d
        .post(
            "/api/v1/schema/push",
            json!({"schema": [posts(false)], "tag": "none-has-it"}),
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(d.wait_status("one", "running").await["pid"], pid);
    let migrations = d.data_dir().join("instances/one/pb_migrations");
    let any = std::fs::read_dir(&migrations)
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(any, 0, "a refused push wrote a migration");
}
