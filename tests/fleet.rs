//! Fleet as code against a real daemon and real PocketBase: `plan` shows
//! what `apply` does, a second apply changes and restarts nothing, the
//! export of what runs plans nothing, a saved plan is refused once the
//! fleet changed, `--prune` deletes only what the fleet created, a bad
//! file names its line and field and applies nothing, and an apply cut
//! short by a daemon crash is finished by the next.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::daemon::{Daemon, BIN};
use crate::support::{quiet_port, wait_until, PB_NEW, PB_OLD};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn actions(v: &Value) -> Vec<(String, String)> {
    let list = v["changes"].as_array().or(v["results"].as_array()).unwrap();
    list.iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn instance(list: &Value, name: &str) -> Option<Value> {
    list.as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_is_idempotent_export_plans_nothing_and_prune_spares_hand_made() {
    let d = Daemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    d.cli_json(&["create", "handmade", "--version", PB_NEW]);
    let (blog_port, shop_port) = (quiet_port(), quiet_port());
    let file = write(
        dir.path(),
        "prod.toml",
        &format!(
            r#"
[instances.blog]
version = "{PB_OLD}"
port = {blog_port}
domains = ["blog.example.test", "www.blog.example.test"]
max_body_bytes = 2000000
idle_timeout = "off"
tags = ["eu", "web"]

[instances.blog.backup]
cron = "0 3 * * *"
keep_last = 3

[instances.shop]
version = "{PB_NEW}"
port = {shop_port}
"#
        ),
    );

    let plan = d.cli_json(&["plan", "-f", &file]);
    assert_eq!(plan["fleet"], "prod", "the fleet is named after the file");
    assert_eq!(
        actions(&plan),
        [
            ("blog".into(), "create".into()),
            ("shop".into(), "create".into())
        ]
    );
    assert_eq!(plan["unmanaged"], serde_json::json!(["handmade"]));

    let done = d.cli_json(&["apply", "-f", &file]);
    assert_eq!(done["failed"], 0, "{done}");
    let blog = d.wait_status("blog", "running").await;
    let shop = d.wait_status("shop", "running").await;
    assert_eq!(blog["version"], PB_OLD);
    assert_eq!(blog["port"], blog_port);
    assert_eq!(blog["domain"], "blog.example.test", "{blog}");
    assert_eq!(
        blog["domains"],
        serde_json::json!(["www.blog.example.test"]),
        "{blog}"
    );
    assert_eq!(blog["max_body_bytes"], 2_000_000);
    let schedule = d.cli_json(&["backup", "schedule", "blog"]);
    assert_eq!(schedule["schedule"]["keep_last"], 3, "{schedule}");
    assert_eq!(shop["port"], shop_port);

    // A second apply changes nothing and restarts nothing.
    let audit_before = d.audit("blog").await.len();
    let again = d.cli_json(&["apply", "-f", &file]);
    let results: Vec<&str> = again["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["unchanged", "unchanged"], "{again}");
    let blog_after = d.wait_status("blog", "running").await;
    assert_eq!(blog_after["pid"], blog["pid"], "blog was restarted");
    assert_eq!(d.wait_status("shop", "running").await["pid"], shop["pid"]);
    assert_eq!(
        d.audit("blog").await.len(),
        audit_before,
        "the no-op wrote to the audit log"
    );

    // The export of what runs plans nothing, hand-made instance included.
    let exported = d.cli(&["export", "--fleet", "prod"]);
    assert!(exported.status.success());
    let export_file = write(
        dir.path(),
        "exported.toml",
        &String::from_utf8(exported.stdout).unwrap(),
    );
    let replan = d.cli_json(&["plan", "-f", &export_file, "--prune"]);
    assert!(
        actions(&replan).iter().all(|(_, a)| a == "nothing"),
        "{replan}"
    );
    assert_eq!(actions(&replan).len(), 3);

    // A saved plan made before a change by hand is refused; nothing applied.
    let smaller = write(
        dir.path(),
        "prod.toml",
        &format!(
            r#"
[instances.blog]
version = "{PB_OLD}"
port = {blog_port}
domains = ["blog.example.test"]
max_body_bytes = 3000000
idle_timeout = "off"
tags = ["eu", "web"]

[instances.blog.backup]
cron = "0 3 * * *"
keep_last = 3
"#
        ),
    );
    let saved = dir.path().join("prod.plan");
    let plan = d.cli_json(&[
        "plan",
        "-f",
        &smaller,
        "--prune",
        "--out",
        saved.to_str().unwrap(),
    ]);
    assert_eq!(
        actions(&plan),
        [
            ("blog".into(), "update".into()),
            ("shop".into(), "delete".into())
        ]
    );
    d.cli_json(&["update", "blog", "--max-body", "4000000"]);
    let refused = d.cli(&["apply", "--plan", saved.to_str().unwrap()]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("older state"), "{err}");
    let list = d.cli_json(&["list"]);
    assert!(
        instance(&list, "shop").is_some(),
        "a stale plan deleted shop"
    );
    assert_eq!(
        instance(&list, "blog").unwrap()["max_body_bytes"],
        4_000_000
    );

    // Planned again, the plan applies: blog updated, shop (the fleet's)
    // deleted and archived, handmade (nobody's) left.
    let plan = d.cli_json(&[
        "plan",
        "-f",
        &smaller,
        "--prune",
        "--out",
        saved.to_str().unwrap(),
    ]);
    let update = &plan["changes"][0];
    assert_eq!(update["restarts"], false, "{plan}");
    let done = d.cli_json(&["apply", "--plan", saved.to_str().unwrap()]);
    assert_eq!(done["failed"], 0, "{done}");
    let list = d.cli_json(&["list"]);
    assert!(instance(&list, "shop").is_none());
    assert!(instance(&list, "handmade").is_some());
    let blog = instance(&list, "blog").unwrap();
    assert_eq!(blog["max_body_bytes"], 3_000_000);
    assert_eq!(blog["domain"], "blog.example.test");
    assert_eq!(blog["domains"], serde_json::json!([]), "{blog}");
    let archive = d.data_dir().join("archive");
    let archived = std::fs::read_dir(&archive)
        .map(|r| {
            r.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("shop"))
        })
        .unwrap_or(false);
    assert!(archived, "shop was deleted without an archive");

    // The fleet's tags pick where a schema goes.
    let schema = serde_json::json!([{"id": "pbc_notes000001", "name": "notes", "type": "base",
        "fields": [{"id": "text_body0001", "name": "body", "type": "text"}]}]);
    let (code, pushed) = d
        .post(
            "/api/v1/schema/push",
            serde_json::json!({"schema": schema, "tag": "web"}),
        )
        .await;
    assert_eq!(code, 200, "{pushed}");
    let names: Vec<&str> = pushed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blog"], "{pushed}");
    assert_eq!(pushed["results"][0]["result"], "applied", "{pushed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_fleet_file_names_its_line_and_field_and_applies_nothing() {
    let d = Daemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = quiet_port();
    let cases = [
        (
            format!("[instances.good]\nport = {}\n\n[instances.typo]\nprot = 9000\n", quiet_port()),
            "line 5",
            "unknown field `prot`",
        ),
        (
            format!("[instances.good]\nport = {}\n\n[instances.\"../etc\"]\n", quiet_port()),
            "line 4",
            "instances:",
        ),
        (
            format!("[instances.a]\nport = {port}\n\n[instances.b]\nport = {port}\n"),
            "line 5",
            "instances.b.port: port",
        ),
        (
            "[instances.a.deploy]\nrepo = \"https://git.example.test/a.git\"\nbranch = \"main; rm -rf /\"\n".to_string(),
            "line 3",
            "instances.a.deploy.branch",
        ),
    ];
    for (text, line, field) in cases {
        let file = write(dir.path(), "bad.toml", &text);
        for verb in ["plan", "apply"] {
            let out = d.cli(&[verb, "-f", &file]);
            assert!(!out.status.success(), "{verb} accepted {text:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(line) && err.contains(field),
                "{verb} {text:?}: {err}"
            );
            assert!(err.contains("bad.toml"), "the file is not named: {err}");
        }
    }
    let list = d.cli_json(&["list"]);
    assert_eq!(list, serde_json::json!([]), "a bad file applied something");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apply_cut_short_by_a_daemon_crash_is_finished_by_the_next() {
    let mut d = Daemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    let names = ["one", "two", "three", "four"];
    let mut text = String::from("fleet = \"lab\"\n");
    for n in names {
        text.push_str(&format!(
            "\n[instances.{n}]\nversion = \"{PB_NEW}\"\nport = {}\n",
            quiet_port()
        ));
    }
    let file = write(dir.path(), "lab.toml", &text);
    let mut apply = Command::new(BIN)
        .arg("--data-dir")
        .arg(d.data_dir())
        .args(["apply", "-f", &file])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill the daemon once the first instance is up and before the last.
    wait_until(
        Duration::from_secs(60),
        "the first instance of the apply",
        || async {
            let (_, v) = d.get("/api/v1/instances").await;
            v["instances"]
                .as_array()
                .is_some_and(|l| !l.is_empty())
                .then_some(())
        },
    )
    .await;
    d.kill9();
    let _ = apply.wait();
    d.restart().await;
    let between = d.cli_json(&["plan", "-f", &file]);
    let left: Vec<String> = actions(&between)
        .into_iter()
        .filter(|(_, a)| a == "create")
        .map(|(n, _)| n)
        .collect();
    assert!(
        left.len() < names.len(),
        "nothing was created before the crash: {between}"
    );

    let out = d.cli(&["apply", "-f", &file, "--json"]);
    let done: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        out.status.success(),
        "{done}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in names {
        d.wait_status(n, "running").await;
    }
    let after = d.cli_json(&["plan", "-f", &file, "--prune"]);
    assert!(
        actions(&after).iter().all(|(_, a)| a == "nothing"),
        "{after}"
    );
    let list = d.cli_json(&["list"]);
    assert_eq!(list.as_array().unwrap().len(), names.len(), "{list}");
    // Every one is the fleet's: a prune of an empty file would delete all.
    let empty = write(dir.path(), "lab.toml", "fleet = \"lab\"\n");
    let prune = d.cli_json(&["plan", "-f", &empty, "--prune"]);
    let deletes = actions(&prune)
        .iter()
        .filter(|(_, a)| a == "delete")
        .count();
    assert_eq!(deletes, names.len(), "{prune}");
}

/// `cloudflared` cannot be fetched here (its packages download from
/// GitHub), so its configuration is read by a real YAML parser (Python's)
/// and checked against the ingress rules cloudflared wants: every
/// hostname of the fleet to the proxy, the catch-all 404 last.
#[tokio::test(flavor = "multi_thread")]
async fn the_tunnel_config_routes_every_hostname_to_the_proxy() {
    let d = Daemon::start().await;
    let port = quiet_port().to_string();
    d.cli_json(&[
        "create",
        "blog",
        "--version",
        PB_NEW,
        "--port",
        &port,
        "--domain",
        "blog.example.test",
    ]);
    let out = d.cli(&[
        "tunnel",
        "config",
        "--tunnel",
        "fleet",
        "--credentials-file",
        "/etc/cloudflared/fleet.json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut python = match Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(p) => p,
        Err(e) => return crate::support::skip("tunnel_config", &format!("no python3: {e}")),
    };
    {
        use std::io::Write;
        python.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    }
    let parsed = python.wait_with_output().unwrap();
    if !parsed.status.success() {
        return crate::support::skip("tunnel_config", "python3 has no yaml module");
    }
    let config: Value = serde_json::from_slice(&parsed.stdout).unwrap();
    assert_eq!(config["tunnel"], "fleet");
    assert_eq!(config["credentials-file"], "/etc/cloudflared/fleet.json");
    let rules = config["ingress"].as_array().unwrap();
    assert_eq!(
        rules.last().unwrap(),
        &serde_json::json!({"service": "http_status:404"})
    );
    let proxy = format!("http://{}", d.proxy.expect("the embedded proxy"));
    let hosts: Vec<&str> = rules[..rules.len() - 1]
        .iter()
        .map(|r| {
            assert_eq!(r["service"], proxy.as_str(), "{r}");
            assert_eq!(r["originRequest"]["httpHostHeader"], r["hostname"]);
            r["hostname"].as_str().unwrap()
        })
        .collect();
    // Every address the instance answers at by name, and only those.
    let status = d.cli_json(&["status", "blog"]);
    let mut want: Vec<String> = status["urls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| url::Url::parse(u.as_str().unwrap()).ok())
        .filter_map(|u| u.host_str().map(str::to_string))
        .filter(|h| h.parse::<std::net::IpAddr>().is_err())
        .collect();
    want.sort();
    want.dedup();
    assert!(!want.is_empty(), "{status}");
    assert_eq!(hosts, want, "{status}");
    let bad = d.cli(&["tunnel", "config", "--tunnel", "x\nservice: evil"]);
    assert!(!bad.status.success());
}

/// Replication and a deploy from git declared in the file: the apply turns
/// replication on and starts the deploy, a second apply leaves both, and
/// the export declares them again.
#[tokio::test(flavor = "multi_thread")]
async fn apply_replicates_and_deploys_what_the_file_declares() {
    let Some(litestream) = crate::support::services::litestream_bin() else {
        return crate::support::skip(
            "apply_replicates_and_deploys_what_the_file_declares",
            "Litestream is not fetched: run scripts/fetch-test-deps",
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    let repo = crate::support::git_server::GitRepo::init(&dir.path().join("work"));
    repo.write("pb_public/index.html", "<p>declared in the fleet</p>\n");
    repo.commit("a page");
    let bare = repo.publish(&repos, "site");
    let d = Daemon::start_with(
        &[
            "--litestream",
            litestream.to_str().unwrap(),
            "--git-allow-dir",
            repos.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let replica = dir.path().join("replica/site");
    let port = quiet_port();
    let file = write(
        dir.path(),
        "lab.toml",
        &format!(
            r#"
[instances.site]
version = "{PB_NEW}"
port = {port}
replicate = "file://{}"

[instances.site.deploy]
repo = "file://{}"
branch = "main"
"#,
            replica.display(),
            bare.display()
        ),
    );
    let done = d.cli_json(&["apply", "-f", &file]);
    assert_eq!(done["failed"], 0, "{done}");
    let deploy = done["results"][0]["deploy"]
        .as_u64()
        .expect("a deploy started");
    let end = wait_until(Duration::from_secs(180), "the deploy to end", || async {
        let (code, v) = d
            .get(&format!("/api/v1/instances/site/deploys/{deploy}"))
            .await;
        (code == 200 && matches!(v["status"].as_str(), Some("succeeded" | "failed"))).then_some(v)
    })
    .await;
    assert_eq!(end["status"], "succeeded", "{end}");
    let page = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/index.html"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("declared in the fleet"), "{page}");
    let status = d.cli_json(&["status", "site"]);
    let location = status["replica"]["location"].as_str().unwrap_or_default();
    assert!(
        location.contains(replica.to_str().unwrap()),
        "not replicated where the file says: {status}"
    );

    let again = d.cli_json(&["apply", "-f", &file]);
    assert_eq!(again["results"][0]["result"], "unchanged", "{again}");
    let (_, deploys) = d.get("/api/v1/instances/site/deploys").await;
    assert_eq!(deploys["deploys"].as_array().unwrap().len(), 1, "{deploys}");

    let exported = d.cli(&["export", "--fleet", "lab"]);
    let text = String::from_utf8(exported.stdout).unwrap();
    assert!(
        text.contains("replicate = ") && text.contains("[instances.site.deploy]"),
        "{text}"
    );
    let export_file = write(dir.path(), "exported.toml", &text);
    let replan = d.cli_json(&["plan", "-f", &export_file]);
    assert!(
        actions(&replan).iter().all(|(_, a)| a == "nothing"),
        "{replan}"
    );
}
