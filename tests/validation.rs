//! Bad input gets a clear error and loses nothing: hostile names, domains,
//! ports and versions through the CLI and the API.

use serde_json::{json, Value};

use crate::support::daemon::Daemon;
use crate::support::{free_port, PB_NEW};

/// Everything under the data dir's instances/ and archive/.
fn instance_dirs(d: &Daemon) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["instances", "archive"] {
        if let Ok(entries) = std::fs::read_dir(d.data_dir().join(sub)) {
            out.extend(
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_names_are_refused_and_nothing_is_created() {
    let d = Daemon::start().await;
    let huge = "a".repeat(100_000);
    let hostile = [
        "",
        "../etc",
        "..",
        "a/b",
        "evil\nExecStart=/bin/sh",
        "two words",
        "café",
        "UPPER",
        "-lead",
        "trail-",
        "semi;colon",
        "a\u{0}b",
        "{{name}}",
        "*",
        huge.as_str(),
    ];
    for name in hostile {
        let (code, v) = d
            .post(
                "/api/v1/instances",
                json!({"name": name, "version": PB_NEW}),
            )
            .await;
        assert_eq!(code, 400, "{name:?}: {v}");
        assert_eq!(v["error"]["code"], "invalid_name", "{name:?}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.len() < 300,
            "error echoes the input: {} bytes",
            message.len()
        );
        assert!(!message.contains('\n'), "raw newline in {message:?}");
    }
    // Through the CLI: a clear message on stderr, a non-zero exit.
    let out = d.cli(&["create", "../etc", "--version", PB_NEW]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("use only lowercase a-z, digits 0-9 and '-'"),
        "{stderr}"
    );
    // Names given to other verbs cannot reach the file system either.
    for verb in ["start", "stop", "status", "delete", "logs"] {
        let out = d.cli(&[verb, "../../etc"]);
        assert!(!out.status.success(), "{verb}");
    }
    let (code, _) = d.get("/api/v1/instances/..%2F..%2Fetc").await;
    assert_eq!(code, 404);
    let (_, list) = d.get("/api/v1/instances").await;
    assert_eq!(list["instances"], json!([]));
    assert!(instance_dirs(&d).is_empty(), "{:?}", instance_dirs(&d));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_domains_ports_versions_and_emails() {
    let d = Daemon::start().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"name": "d1", "version": PB_NEW, "domain": "bad domain.com"}),
            "invalid_name",
        ),
        (
            json!({"name": "d1", "version": PB_NEW, "domain": "x.com\n}\nevil {"}),
            "invalid_name",
        ),
        (
            json!({"name": "d1", "version": PB_NEW, "domain": "localhost"}),
            "invalid_name",
        ),
        (
            json!({"name": "d1", "version": PB_NEW, "port": 80}),
            "invalid_port",
        ),
        (
            json!({"name": "d1", "version": PB_NEW, "port": 70000}),
            "invalid_port",
        ),
        (
            json!({"name": "d1", "version": PB_NEW, "port": 0}),
            "invalid_port",
        ),
        (
            json!({"name": "d1", "version": "0.99.99"}),
            "unknown_version",
        ),
        (
            json!({"name": "d1", "version": "v1; rm -rf /"}),
            "invalid_version",
        ),
        (
            json!({"name": "d1", "version": "../../bin/sh"}),
            "invalid_version",
        ),
        (
            json!({"name": "d1", "version": PB_NEW, "superuser_email": "not-an-email"}),
            "invalid_email",
        ),
        (
            json!({"name": "d1", "version": PB_NEW, "superuser_email": "a@b.co", "superuser_password": "short"}),
            "invalid_password",
        ),
        (
            json!({"name": "d1", "version": PB_NEW, "binary": "relative/pocketbase"}),
            "invalid_request",
        ),
        (
            json!({"name": "d1", "version": PB_NEW, "binary": "/bin/sh"}),
            "invalid_request",
        ),
    ];
    for (body, code) in cases {
        let (status, v) = d.post("/api/v1/instances", body.clone()).await;
        assert!((400..500).contains(&status), "{body}: {status} {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
    }
    let (code, v) = d
        .post(
            "/api/v1/instances",
            json!({"name": "d1", "version": "0.99.99"}),
        )
        .await;
    assert_eq!(code, 400);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("0.40.6"),
        "nearest versions not named: {message}"
    );

    // A port another program holds, and a port another instance holds.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held = holder.local_addr().unwrap().port();
    let (code, v) = d
        .post(
            "/api/v1/instances",
            json!({"name": "d2", "version": PB_NEW, "port": held}),
        )
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("port_taken")),
        "{v}"
    );
    let port = free_port();
    let (code, _) = d
        .post(
            "/api/v1/instances",
            json!({"name": "d3", "version": PB_NEW, "port": port}),
        )
        .await;
    assert_eq!(code, 201);
    let (code, v) = d
        .post(
            "/api/v1/instances",
            json!({"name": "d4", "version": PB_NEW, "port": port}),
        )
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("port_taken")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("d3"),
        "{v}"
    );
    // A duplicate name.
    let (code, v) = d
        .post(
            "/api/v1/instances",
            json!({"name": "d3", "version": PB_NEW}),
        )
        .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("name_taken")),
        "{v}"
    );

    let (_, list) = d.get("/api/v1/instances").await;
    let names: Vec<&str> = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["d3"]);
    assert_eq!(instance_dirs(&d), ["d3"]);
}
