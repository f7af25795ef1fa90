//! Deploys from git against real parts: real git (bare repositories over
//! `file://` and a real smart-HTTP server running `git http-backend`), real
//! PocketBase running the deployed hooks and migrations, real npm and Go
//! builds, and the daemon's own CLI and HTTP API (ours and seed 003's).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::daemon::Daemon;
use crate::support::git_server::{GitRepo, GitServer};
use crate::support::wait_until;

/// A hook answering `/hello` with `{"v": V}`, a migration making a public
/// `notes` collection, and a page.
fn app_v(repo: &GitRepo, v: u32) {
    repo.write(
        "pb_hooks/main.pb.js",
        &format!(
            "routerAdd(\"GET\", \"/hello\", (e) => {{ return e.json(200, {{ \"v\": {v} }}) }})\n"
        ),
    );
    repo.write(
        "pb_migrations/1700000000_notes.js",
        r#"migrate((app) => {
  const c = new Collection({ type: "base", name: "notes", listRule: "", fields: [{ name: "title", type: "text" }] });
  app.save(c);
}, (app) => {
  app.delete(app.findCollectionByNameOrId("notes"));
});
"#,
    );
    repo.write("pb_public/index.html", &format!("<p>release {v}</p>\n"));
}

struct Fixture {
    _dir: tempfile::TempDir,
    repos: PathBuf,
    repo: GitRepo,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repos = dir.path().join("repos");
        std::fs::create_dir_all(&repos).unwrap();
        let repo = GitRepo::init(&dir.path().join("work"));
        Fixture {
            _dir: dir,
            repos,
            repo,
        }
    }

    fn publish(&self) -> String {
        let bare = self.repo.publish(&self.repos, "app");
        format!("file://{}", bare.display())
    }

    fn allow(&self) -> [String; 2] {
        ["--git-allow-dir".into(), self.repos.display().to_string()]
    }
}

async fn start(extra: &[String]) -> Daemon {
    let args: Vec<&str> = extra.iter().map(String::as_str).collect();
    Daemon::start_with(&args, &[]).await
}

/// Make an instance on a quiet port before its first deploy: a port the
/// daemon chose itself could be taken by another test's daemon while a
/// switch has it free for a moment.
async fn fresh(d: &Daemon, name: &str) {
    let (code, v) = d
        .post(
            "/api/v1/instances",
            json!({"name": name, "port": crate::support::quiet_port()}),
        )
        .await;
    assert_eq!(code, 201, "{v}");
}

async fn port_of(d: &Daemon, name: &str) -> u64 {
    let (code, v) = d.get(&format!("/api/v1/instances/{name}")).await;
    assert_eq!(code, 200, "{v}");
    v["port"].as_u64().unwrap()
}

/// `GET path` on the instance's own port: its status and body. A client
/// of its own: a pooled connection to a process a switch stopped would
/// fail before the request is sent again.
async fn try_get(port: u64, path: &str) -> Result<(u16, String), reqwest::Error> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()?;
    let r = http
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await?;
    Ok((r.status().as_u16(), r.text().await?))
}

async fn get(port: u64, path: &str) -> (u16, String) {
    try_get(port, path).await.unwrap()
}

/// What the deployed hook answers, if it answers 200.
async fn hello(port: u64) -> Option<Value> {
    match try_get(port, "/hello").await {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        other => {
            eprintln!("GET /hello on {port}: {other:?}");
            None
        }
    }
}

fn deploy_ok(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "pockestrator {args:?} failed:\n{stderr}\n--- daemon log ---\n{}",
        d.log()
    );
    stderr
}

async fn wait_deploy_end(d: &Daemon, name: &str, id: u64) -> Value {
    wait_until(Duration::from_secs(180), "the deploy to end", || async {
        let (code, v) = d
            .get(&format!("/api/v1/instances/{name}/deploys/{id}"))
            .await;
        (code == 200 && matches!(v["status"].as_str(), Some("succeeded" | "failed"))).then_some(v)
    })
    .await
}

#[tokio::test]
async fn a_repository_is_deployed_redeployed_rolled_back_and_a_failing_release_changes_nothing() {
    let f = Fixture::new();
    app_v(&f.repo, 1);
    let first = f.repo.commit("v1");
    let url = f.publish();
    let d = start(&f.allow()).await;

    fresh(&d, "blog").await;
    let log = deploy_ok(&d, &["deploy", "blog", "--repo", &url]);
    assert!(log.contains("fetching main"), "{log}");
    assert!(log.contains(&format!("commit {first}")), "{log}");
    assert!(log.contains("healthy"), "{log}");
    let port = port_of(&d, "blog").await;
    assert_eq!(hello(port).await, Some(json!({"v": 1})));
    // The migration ran: the collection exists, publicly listable.
    assert_eq!(get(port, "/api/collections/notes/records").await.0, 200);
    let (_, page) = get(port, "/").await;
    assert!(page.contains("release 1"), "{page}");
    // A redeploy of a changed hook: the recorded repository is used.
    app_v(&f.repo, 2);
    let second = f.repo.commit("v2");
    f.publish();
    deploy_ok(&d, &["deploy", "blog"]);
    assert_eq!(hello(port).await, Some(json!({"v": 2})));
    assert_eq!(port_of(&d, "blog").await, port, "the port stays");

    let list = d.cli_json(&["deploys", "blog"]);
    let deploys = list["deploys"].as_array().unwrap();
    assert_eq!(deploys.len(), 2, "{list}");
    assert_eq!(deploys[0]["commit"], second);
    assert_eq!(deploys[0]["status"], "succeeded");
    assert_eq!(deploys[0]["current"], true);
    assert_eq!(deploys[1]["commit"], first);
    assert_eq!(deploys[1]["current"], false);
    assert!(deploys[0]["duration_ms"].as_u64().unwrap() > 0);
    let table = String::from_utf8_lossy(&d.cli(&["deploys", "blog"]).stdout).into_owned();
    assert!(
        table.contains("succeeded") && table.contains(&second[..12]),
        "{table}"
    );

    // Back to release 1.
    deploy_ok(&d, &["rollback", "blog"]);
    assert_eq!(hello(port).await, Some(json!({"v": 1})));
    let list = d.cli_json(&["deploys", "blog"]);
    assert_eq!(list["deploys"][0]["kind"], "rollback");
    assert_eq!(list["deploys"][0]["commit"], first);
    assert_eq!(list["deploys"][0]["current"], true);
    // And forward again by commit.
    deploy_ok(&d, &["rollback", "blog", "--to", &second[..8]]);
    assert_eq!(hello(port).await, Some(json!({"v": 2})));

    // A release whose migration fails: the deploy fails, release 2 serves
    // on, with its data.
    f.repo.write(
        "pb_migrations/1800000000_boom.js",
        "migrate((app) => { throw new Error(\"this migration fails\") })\n",
    );
    app_v(&f.repo, 3);
    f.repo.commit("v3 with a failing migration");
    f.publish();
    let out = d.cli(&["deploy", "blog"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did not become healthy"), "{stderr}");
    assert!(stderr.contains("previous release serves again"), "{stderr}");
    assert_eq!(hello(port).await, Some(json!({"v": 2})));
    assert_eq!(get(port, "/api/collections/notes/records").await.0, 200);
    let list = d.cli_json(&["deploys", "blog"]);
    assert_eq!(list["deploys"][0]["status"], "failed");
    assert!(list["deploys"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("did not become healthy"));
    assert_eq!(list["deploys"][1]["current"], true);
    // The failed release is not kept.
    let releases = d.data_dir().join("instances/blog/releases");
    let kept: Vec<String> = std::fs::read_dir(&releases)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");

    let audit = d.audit("blog").await;
    assert!(audit.contains(&("deploy".into(), "ok".into())), "{audit:?}");
    assert!(
        audit.contains(&("deploy".into(), "error".into())),
        "{audit:?}"
    );
    assert!(
        audit.contains(&("rollback".into(), "ok".into())),
        "{audit:?}"
    );
    // Each switch took a pre-deploy backup (the newest few are kept).
    let backups = d.cli_json(&["backup", "list", "blog"]);
    assert!(backups
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["trigger"] == "pre-deploy"));
    // A backup holds the code the instance runs: its release's hooks.
    let made = d.cli_json(&["backup", "create", "blog"]);
    let members = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; print(chr(10).join(zipfile.ZipFile(sys.argv[1]).namelist()))",
        ])
        .arg(made["location"].as_str().unwrap())
        .output()
        .unwrap();
    let members = String::from_utf8_lossy(&members.stdout);
    assert!(
        members.contains(".pockestrator/hooks/main.pb.js"),
        "{members}"
    );
}

#[tokio::test]
async fn bad_repository_urls_branches_and_directories_are_refused_and_nothing_is_made() {
    let f = Fixture::new();
    app_v(&f.repo, 1);
    f.repo.commit("v1");
    let url = f.publish();
    let d = start(&f.allow()).await;
    let outside = tempfile::tempdir().unwrap();
    let other = GitRepo::init(&outside.path().join("w"));
    other.write("pb_hooks/x.pb.js", "");
    other.commit("x");
    let bare = other.publish(outside.path(), "other");
    let outside_url = format!("file://{}", bare.display());
    for (args, why) in [
        (
            vec!["--repo", "ext::sh -c touch% /tmp/pwned"],
            "control character or a space",
        ),
        (vec!["--repo", "ext::sh"], "remote helper"),
        (vec!["--repo", "--upload-pack=touch /tmp/pwned"], ""),
        (vec!["--repo", "-oProxyCommand=touch /tmp/pwned"], ""),
        (
            vec!["--repo", "https://user:secret@git.example.com/x.git"],
            "credentials",
        ),
        (vec!["--repo", &outside_url], "not in a directory"),
        (vec!["--repo", &url, "--branch", "-x"], ""),
        (vec!["--repo", &url, "--branch", "main..x"], ""),
        (vec!["--repo", &url, "--branch", "x;rm -rf /"], ""),
        (vec!["--repo", &url, "--subdir", "../etc"], ""),
        (vec!["--repo", &url, "--subdir", "/etc"], ""),
    ] {
        let mut all = vec!["deploy", "victim"];
        all.extend(args.iter().copied());
        let out = d.cli(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{all:?} was accepted");
        assert!(stderr.contains("error"), "{all:?}: {stderr}");
        assert!(stderr.contains(why), "{all:?}: {stderr}");
        assert!(!stderr.contains("secret"), "a credential echoed: {stderr}");
    }
    let (code, _) = d.get("/api/v1/instances/victim").await;
    assert_eq!(code, 404, "a refused deploy made the instance");
    assert!(!Path::new("/tmp/pwned").exists());
    // Through the API too, on an existing instance: 400, nothing recorded.
    let (code, _) = d.post("/api/v1/instances", json!({"name": "web"})).await;
    assert_eq!(code, 201);
    for body in [
        json!({"repo": "ext::sh"}),
        json!({"repo": url, "branch": "--orphan"}),
        json!({"repo": url, "subdir": "a/../../b"}),
        json!({"repo": outside_url}),
        json!({"repo": url, "colour": "blue"}),
    ] {
        let (code, v) = d.post("/api/v1/instances/web/deploys", body.clone()).await;
        assert_eq!(code, 400, "{body}: {v}");
    }
    let (_, list) = d.get("/api/v1/instances/web/deploys").await;
    assert_eq!(list["deploys"], json!([]), "{list}");
    // A deploy of a branch that does not exist fails with the reason.
    let (code, v) = d
        .post(
            "/api/v1/instances/web/deploys",
            json!({"repo": url, "branch": "nope"}),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let end = wait_deploy_end(&d, "web", v["id"].as_u64().unwrap()).await;
    assert_eq!(end["status"], "failed");
    assert!(end["reason"].as_str().unwrap().contains("nope"), "{end}");
    let (_, inst) = d.get("/api/v1/instances/web").await;
    assert_eq!(inst["status"], "running", "the instance served on: {inst}");
}

#[tokio::test]
async fn seed_003s_api_deploys_from_a_git_server_verbatim() {
    let root = tempfile::tempdir().unwrap();
    let server = GitServer::start(root.path()).await;
    let work = tempfile::tempdir().unwrap();
    let repo = GitRepo::init(work.path());
    app_v(&repo, 1);
    repo.commit("v1");
    repo.publish(root.path(), "app");
    let d = Daemon::start().await;
    let url = server.url("app");
    // An existing instance that is not an app yet: the deploy goes into it.
    fresh(&d, "myapp").await;
    let api = |method: reqwest::Method, path: &str| {
        d.http.request(method, d.url(path)).bearer_auth(&d.token)
    };

    let r = api(reqwest::Method::POST, "/api/deploy")
        .json(&json!({"repository": url, "subdomain": "myapp", "branch": "main"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let app: Value = r.json().await.unwrap();
    assert_eq!(app["name"], "myapp");
    assert_eq!(app["subdomain"], "myapp");
    assert_eq!(app["repository"], url);
    assert_eq!(app["status"], "deploying");
    assert!(app["port"].as_u64().unwrap() > 0);
    for field in ["created_at", "last_deploy"] {
        chrono::DateTime::parse_from_rfc3339(app[field].as_str().unwrap()).unwrap();
    }
    let running = wait_until(Duration::from_secs(120), "myapp to run", || async {
        let v: Value = api(reqwest::Method::GET, "/api/apps/myapp")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["status"] != "deploying").then_some(v)
    })
    .await;
    assert_eq!(running["status"], "running", "{running}\n{}", d.log());
    let port = running["port"].as_u64().unwrap();
    assert_eq!(hello(port).await, Some(json!({"v": 1})));
    // Through the embedded proxy at its subdomain.
    let proxy = d.proxy.expect("the embedded proxy");
    let via = d
        .http
        .get(format!("http://{proxy}/hello"))
        .header("host", "myapp.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(via.status(), 200);
    assert!(server
        .requests()
        .iter()
        .any(|r| r.path.contains("git-upload-pack")));

    let all: Value = api(reqwest::Method::GET, "/api/apps")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["apps"]["myapp"]["status"], "running", "{all}");
    assert_eq!(all["apps"].as_object().unwrap().len(), 1);

    // Its errors, as seed 003 gives them.
    for (body, code, text) in [
        ("{not json".to_string(), 400, "Invalid JSON\n"),
        (
            json!({"repository": url}).to_string(),
            400,
            "Invalid JSON\n",
        ),
        (
            json!({"repository": url, "subdomain": "Bad_Name"}).to_string(),
            400,
            "Invalid subdomain\n",
        ),
        (
            json!({"repository": url, "subdomain": "myapp"}).to_string(),
            409,
            "App already exists\n",
        ),
    ] {
        let r = api(reqwest::Method::POST, "/api/deploy")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), code, "{body}");
        assert_eq!(r.text().await.unwrap(), text, "{body}");
    }
    let r = api(reqwest::Method::GET, "/api/apps/nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), "App not found\n");

    let r = api(reqwest::Method::GET, "/api/apps/myapp/logs?lines=3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.lines().count() <= 3, "{text}");
    let r = api(reqwest::Method::POST, "/api/apps/myapp/restart")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hello(port).await, Some(json!({"v": 1})));

    // The app is an ordinary instance: the CLI sees it and its deploy.
    let status = d.cli_json(&["status", "myapp"]);
    assert_eq!(status["name"], "myapp");
    let deploys = d.cli_json(&["deploys", "myapp"]);
    assert_eq!(deploys["deploys"][0]["status"], "succeeded");

    // /health needs no token; the rest does.
    let r = d.http.get(d.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "healthy"})
    );
    let r = d.http.get(d.url("/api/apps")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let r = api(reqwest::Method::DELETE, "/api/apps/myapp")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "removed"})
    );
    let (code, _) = d.get("/api/v1/instances/myapp").await;
    assert_eq!(code, 404);
    assert!(
        !d.data_dir().join("git-cache/myapp.git").exists(),
        "the fetch cache was left"
    );
    let r = api(reqwest::Method::DELETE, "/api/apps/myapp")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_push_webhook_deploys_only_when_signed_and_only_its_branch() {
    let f = Fixture::new();
    app_v(&f.repo, 1);
    f.repo.commit("v1");
    let url = f.publish();
    let d = start(&f.allow()).await;
    fresh(&d, "hooked").await;
    deploy_ok(&d, &["deploy", "hooked", "--repo", &url]);
    let port = port_of(&d, "hooked").await;
    let hook = d.cli_json(&["webhook", "hooked"]);
    let secret = hook["secret"].as_str().unwrap().to_string();
    assert_eq!(hook["path"], "/webhooks/hooked");
    let send = |body: Value, sig: Option<String>, event: &'static str| {
        let body = body.to_string();
        let mut req = d
            .http
            .post(d.url("/webhooks/hooked"))
            .header("content-type", "application/json")
            .header("x-github-event", event);
        if let Some(sig) = sig {
            req = req.header("x-hub-signature-256", sig);
        }
        req.body(body).send()
    };
    let sign = |body: &Value| {
        pockestrator::model::deploy::sign(secret.as_bytes(), body.to_string().as_bytes())
    };

    app_v(&f.repo, 2);
    f.repo.commit("v2");
    f.publish();
    let push = json!({"ref": "refs/heads/main", "after": "x"});
    // Missing, wrong and forged signatures: 401, no deploy.
    for sig in [
        None,
        Some("sha256=00".to_string()),
        Some(pockestrator::model::deploy::sign(
            b"guess",
            push.to_string().as_bytes(),
        )),
    ] {
        let r = send(push.clone(), sig, "push").await.unwrap();
        assert_eq!(r.status(), 401);
    }
    // A ping and a push to another branch change nothing.
    let ping = json!({"zen": "hi"});
    let r = send(ping.clone(), Some(sign(&ping)), "ping").await.unwrap();
    assert_eq!(r.status(), 200);
    let other = json!({"ref": "refs/heads/feature"});
    let r = send(other.clone(), Some(sign(&other)), "push")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        d.cli_json(&["deploys", "hooked"])["deploys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The signed push deploys.
    let r = send(push.clone(), Some(sign(&push)), "push").await.unwrap();
    assert_eq!(r.status(), 202);
    let started: Value = r.json().await.unwrap();
    let end = wait_deploy_end(&d, "hooked", started["id"].as_u64().unwrap()).await;
    assert_eq!(end["status"], "succeeded", "{end}");
    assert!(end["actor"].as_str().unwrap().starts_with("webhook@"));
    assert_eq!(hello(port).await, Some(json!({"v": 2})));
    let audit = d.audit("hooked").await;
    assert!(
        audit
            .iter()
            .filter(|(a, r)| a == "deploy" && r == "error")
            .count()
            >= 3,
        "{audit:?}"
    );
    // Turned off, the old secret no longer works.
    let out = d.cli(&["webhook", "hooked", "--off"]);
    assert!(out.status.success());
    let r = send(push.clone(), Some(sign(&push)), "push").await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn builds_that_fail_hang_or_overlap_leave_the_previous_release_serving() {
    let f = Fixture::new();
    app_v(&f.repo, 1);
    f.repo.commit("v1");
    let url = f.publish();
    let mut extra = f.allow().to_vec();
    extra.extend(["--build-timeout".to_string(), "30s".to_string()]);
    let d = start(&extra).await;
    fresh(&d, "site").await;
    deploy_ok(&d, &["deploy", "site", "--repo", &url]);
    let port = port_of(&d, "site").await;

    // npm with a build that fails, then one that hangs.
    let package = |script: &str| {
        json!({"name": "site", "version": "1.0.0", "private": true, "scripts": {"build": script}})
            .to_string()
    };
    let lock = json!({"name": "site", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
                      "packages": {"": {"name": "site", "version": "1.0.0"}}})
    .to_string();
    f.repo.write("package-lock.json", &lock);
    app_v(&f.repo, 2);
    f.repo
        .write("package.json", &package("node -e \"process.exit(7)\""));
    f.repo.commit("a build that fails");
    f.publish();
    let out = d.cli(&["deploy", "site"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("$ npm ci") && stderr.contains("$ npm run build"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`npm run build` exited with status 7"),
        "{stderr}"
    );
    assert_eq!(hello(port).await, Some(json!({"v": 1})));

    f.repo.write(
        "package.json",
        &package("node -e \"setTimeout(() => {}, 600000)\""),
    );
    f.repo.commit("a build that hangs");
    f.publish();
    let out = d.cli(&["deploy", "site"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("time limit of 30s"), "{stderr}");
    assert_eq!(hello(port).await, Some(json!({"v": 1})));

    // A build that works: its output becomes pb_public.
    f.repo.write(
        "build.js",
        "require('fs').mkdirSync('dist', {recursive: true}); require('fs').writeFileSync('dist/index.html', '<p>built by npm</p>');\n",
    );
    f.repo.write("package.json", &package("node build.js"));
    f.repo.commit("a build that works");
    f.publish();
    // Two deploys at once: the second waits for the first, never interleaves.
    let (c1, a) = d.post("/api/v1/instances/site/deploys", json!({})).await;
    let (c2, b) = d.post("/api/v1/instances/site/deploys", json!({})).await;
    assert_eq!((c1, c2), (202, 202), "{a} {b}");
    let a = wait_deploy_end(&d, "site", a["id"].as_u64().unwrap()).await;
    let b = wait_deploy_end(&d, "site", b["id"].as_u64().unwrap()).await;
    assert_eq!(a["status"], "succeeded", "{a}");
    assert_eq!(b["status"], "succeeded", "{b}");
    let a_end = chrono::DateTime::parse_from_rfc3339(a["finished_at"].as_str().unwrap()).unwrap();
    let b_log: Value = d
        .get(&format!("/api/v1/instances/site/deploys/{}/log", b["id"]))
        .await
        .1;
    let b_lines: Vec<&str> = b_log["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        b_lines.iter().any(|l| l.contains("fetching")),
        "{b_lines:?}"
    );
    // The second fetched only after the first had ended.
    let fetch_line = b_lines.iter().find(|l| l.contains("fetching")).unwrap();
    let hms = &fetch_line[1..13];
    let a_hms = a_end.format("%H:%M:%S%.3f").to_string();
    assert!(hms >= a_hms.as_str(), "{hms} < {a_hms}");
    assert_eq!(hello(port).await, Some(json!({"v": 2})));
    let (_, page) = get(port, "/").await;
    assert!(page.contains("built by npm"), "{page}");
}

#[tokio::test]
async fn a_go_backend_is_built_and_runs_instead_of_the_stock_release() {
    let Some(go) = crate::support::services::go_bin() else {
        crate::support::skip(
            "deploy::a_go_backend_is_built_and_runs_instead_of_the_stock_release",
            "the Go toolchain was not fetched (scripts/fetch-test-deps)",
        );
        return;
    };
    let f = Fixture::new();
    f.repo
        .write("backend/go.mod", "module example.com/app\n\ngo 1.21\n");
    f.repo.write(
        "backend/main.go",
        r#"package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
)

func main() {
	dir := os.Getenv("DB_DIR")
	if err := os.WriteFile(filepath.Join(dir, "custom.txt"), []byte("written by the custom binary"), 0o644); err != nil {
		panic(err)
	}
	http.HandleFunc("/api/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"message":"API is healthy.","code":200,"data":{}}`)
	})
	http.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"v":"go","args":%d}`, len(os.Args))
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
		panic(err)
	}
}
"#,
    );
    f.repo.commit("a Go backend");
    let url = f.publish();
    let mut extra = f.allow().to_vec();
    extra.extend(["--go".to_string(), go.display().to_string()]);
    let d = Daemon::start_with(
        &extra.iter().map(String::as_str).collect::<Vec<_>>(),
        &[("GOPROXY", "off"), ("GOFLAGS", "-mod=mod")],
    )
    .await;
    fresh(&d, "gogo").await;
    let log = deploy_ok(&d, &["deploy", "gogo", "--repo", &url]);
    assert!(log.contains("go build"), "{log}");
    let port = port_of(&d, "gogo").await;
    let v = hello(port).await.expect("the custom binary answers");
    assert_eq!(v["v"], "go");
    let data = d.data_dir().join("instances/gogo/pb_data/custom.txt");
    assert_eq!(
        std::fs::read_to_string(data).unwrap(),
        "written by the custom binary"
    );
    let (_, inst) = d.get("/api/v1/instances/gogo").await;
    assert!(
        inst["binary"]
            .as_str()
            .unwrap_or_default()
            .contains("/releases/"),
        "{inst}"
    );
    // Its PocketBase is what its go.mod says: no stock upgrade over it.
    let out = d.cli(&["upgrade", "gogo", "--version", crate::support::PB_OLD]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("built from its repository"));
    assert_eq!(hello(port).await.unwrap()["v"], "go");
}

#[tokio::test]
async fn a_daemon_killed_during_a_build_ends_the_deploy_and_the_old_release_serves() {
    let f = Fixture::new();
    app_v(&f.repo, 1);
    f.repo.commit("v1");
    let url = f.publish();
    let mut d = start(&f.allow()).await;
    fresh(&d, "crashy").await;
    deploy_ok(&d, &["deploy", "crashy", "--repo", &url]);
    let port = port_of(&d, "crashy").await;
    let package = json!({"name": "c", "version": "1.0.0", "scripts": {"build": "node -e \"setTimeout(() => {}, 600000)\""}}).to_string();
    f.repo.write("package.json", &package);
    app_v(&f.repo, 2);
    f.repo.commit("a long build");
    f.publish();
    let (code, started) = d.post("/api/v1/instances/crashy/deploys", json!({})).await;
    assert_eq!(code, 202);
    let id = started["id"].as_u64().unwrap();
    wait_until(Duration::from_secs(60), "the build to run", || async {
        let (_, v) = d
            .get(&format!("/api/v1/instances/crashy/deploys/{id}/log"))
            .await;
        v["lines"]
            .as_array()
            .is_some_and(|l| {
                l.iter()
                    .any(|l| l.as_str().unwrap_or("").contains("$ npm run build"))
            })
            .then_some(())
    })
    .await;
    d.kill9();
    assert_eq!(
        hello(port).await,
        Some(json!({"v": 1})),
        "the instance outlives the daemon"
    );
    d.restart().await;
    let end = wait_deploy_end(&d, "crashy", id).await;
    assert_eq!(end["status"], "failed");
    assert!(
        end["reason"].as_str().unwrap().contains("daemon stopped"),
        "{end}"
    );
    assert_eq!(hello(port).await, Some(json!({"v": 1})));
    let releases: Vec<_> = std::fs::read_dir(d.data_dir().join("instances/crashy/releases"))
        .unwrap()
        .collect();
    assert_eq!(releases.len(), 1, "a half-made release was left");
}

// Multi-threaded: the git server runs on the test's runtime while the
// CLI blocks one thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_repository_is_fetched_with_its_token_which_is_never_shown() {
    const TOKEN: &str = "ghp_s3cr3tT0kenValue42";
    let root = tempfile::tempdir().unwrap();
    let server = GitServer::start_with_basic_auth(root.path(), "x-access-token", TOKEN).await;
    let work = tempfile::tempdir().unwrap();
    let repo = GitRepo::init(work.path());
    app_v(&repo, 1);
    repo.commit("v1");
    repo.publish(root.path(), "private");
    let d = Daemon::start().await;
    let url = server.url("private");
    fresh(&d, "secretapp").await;

    // Without the token: a clear failure, no prompt, nothing switched.
    let out = d.cli(&["deploy", "secretapp", "--repo", &url]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fetch failed"), "{stderr}");

    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let log = deploy_ok(
        &d,
        &[
            "deploy",
            "secretapp",
            "--repo",
            &url,
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let port = port_of(&d, "secretapp").await;
    assert_eq!(hello(port).await, Some(json!({"v": 1})));
    assert!(
        server.requests().iter().any(|r| r.authorization),
        "the token was not sent"
    );

    // Kept in a 0600 file outside the state database, and nowhere else.
    use std::os::unix::fs::PermissionsExt as _;
    let kept = d.data_dir().join("deploy-secrets/secretapp/token");
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!log.contains(TOKEN));
    assert!(!d.log().contains(TOKEN), "the token is in the daemon's log");
    let state = std::fs::read(d.data_dir().join("state.db")).unwrap();
    assert!(
        !String::from_utf8_lossy(&state).contains(TOKEN),
        "the token is in the state database"
    );
    let (_, events) = d.get("/api/v1/events?instance=secretapp").await;
    assert!(!events.to_string().contains(TOKEN));
    let (_, list) = d.get("/api/v1/instances/secretapp/deploys").await;
    assert!(!list.to_string().contains(TOKEN));
    for entry in std::fs::read_dir(d.data_dir().join("instances/secretapp/logs")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(TOKEN), "the token is in a log file");
    }
}

#[tokio::test]
async fn requests_through_the_proxy_during_redeploys_do_not_fail() {
    let f = Fixture::new();
    app_v(&f.repo, 1);
    f.repo.commit("v1");
    let url = f.publish();
    let d = start(&f.allow()).await;
    fresh(&d, "steady").await;
    deploy_ok(&d, &["deploy", "steady", "--repo", &url]);
    let proxy = d.proxy.expect("the embedded proxy");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..3 {
        let stop = stop.clone();
        loops.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            let (mut ok, mut failed, mut seen) =
                (0u32, Vec::new(), std::collections::BTreeSet::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match http
                    .get(format!("http://{proxy}/hello"))
                    .header("host", "steady.localhost")
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        ok += 1;
                        if let Ok(v) = r.json::<Value>().await {
                            seen.insert(v["v"].as_u64().unwrap_or(0));
                        }
                    }
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed, seen)
        }));
    }
    for v in 2..=3 {
        app_v(&f.repo, v);
        f.repo.commit(&format!("v{v}"));
        f.publish();
        deploy_ok(&d, &["deploy", "steady"]);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    let mut versions = std::collections::BTreeSet::new();
    for l in loops {
        let (ok, failed, seen) = l.await.unwrap();
        assert!(
            failed.is_empty(),
            "requests failed during the switches: {failed:?}"
        );
        total += ok;
        versions.extend(seen);
    }
    assert!(total > 0);
    assert_eq!(versions.iter().max(), Some(&3), "{versions:?}");
}

#[tokio::test]
async fn a_build_that_fills_the_disk_fails_and_changes_nothing() {
    const NAME: &str = "deploy::a_build_that_fills_the_disk_fails_and_changes_nothing";
    if !nix::unistd::geteuid().is_root() {
        crate::support::skip(NAME, "mounting a tiny tmpfs takes root");
        return;
    }
    let outer = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    // The build user passes through it to its workspace.
    std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let builds = outer.path().join("builds");
    std::fs::create_dir(&builds).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&builds)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        other => {
            crate::support::skip(NAME, &format!("mount -t tmpfs failed: {other:?}"));
            return;
        }
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(builds.clone());
    let f = Fixture::new();
    app_v(&f.repo, 1);
    f.repo.commit("v1");
    let url = f.publish();
    let mut extra = f.allow().to_vec();
    extra.extend(["--build-dir".to_string(), builds.display().to_string()]);
    let d = start(&extra).await;
    fresh(&d, "full").await;
    deploy_ok(&d, &["deploy", "full", "--repo", &url]);
    let port = port_of(&d, "full").await;
    f.repo.write(
        "package.json",
        &json!({"name": "full", "version": "1.0.0", "scripts": {"build": "node -e \"require('fs').writeFileSync('big', Buffer.alloc(8 << 20))\""}}).to_string(),
    );
    app_v(&f.repo, 2);
    f.repo.commit("a build that fills the disk");
    f.publish();
    let out = d.cli(&["deploy", "full"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the disk is full"), "{stderr}");
    assert_eq!(hello(port).await, Some(json!({"v": 1})));
    // The workspace went with the failure.
    assert_eq!(std::fs::read_dir(&builds).unwrap().count(), 0);
}

#[tokio::test]
async fn a_switch_interrupted_by_a_daemon_crash_is_finished_or_undone_at_the_next_start() {
    let f = Fixture::new();
    app_v(&f.repo, 1);
    f.repo.commit("v1");
    let url = f.publish();
    let mut d = start(&f.allow()).await;
    fresh(&d, "torn").await;
    deploy_ok(&d, &["deploy", "torn", "--repo", &url]);
    app_v(&f.repo, 2);
    f.repo.commit("v2");
    f.publish();
    deploy_ok(&d, &["deploy", "torn"]);
    let port = port_of(&d, "torn").await;
    let list = d.cli_json(&["deploys", "torn"]);
    let (new, old) = (
        list["deploys"][0]["release"].as_str().unwrap().to_string(),
        list["deploys"][1]["release"].as_str().unwrap().to_string(),
    );
    let backups = d.cli_json(&["backup", "list", "torn"]);
    let snapshot = backups
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["trigger"] == "pre-deploy")
        .unwrap()["location"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, inst) = d.get("/api/v1/instances/torn").await;
    let marker = |was_running: bool| {
        json!({
            "from": old, "from_binary": inst["binary"], "from_version": inst["version"],
            "from_release_binary": false, "to": new, "snapshot": snapshot, "was_running": was_running,
        })
        .to_string()
    };
    let marker_path = d.data_dir().join("instances/torn/deploy-in-progress.json");

    // The daemon died after the new release started: it answers, so the
    // switch is done.
    d.kill9();
    std::fs::write(&marker_path, marker(true)).unwrap();
    d.restart().await;
    assert_eq!(hello(port).await, Some(json!({"v": 2})));
    assert!(!marker_path.exists());
    let audit = d.audit("torn").await;
    assert!(audit.contains(&("deploy".into(), "ok".into())), "{audit:?}");

    // The daemon and the new release died: the previous release and the
    // backup come back.
    d.kill9();
    for pid in d.instance_pids() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    std::fs::write(&marker_path, marker(true)).unwrap();
    d.restart().await;
    d.wait_status("torn", "running").await;
    assert_eq!(hello(port).await, Some(json!({"v": 1})), "{}", d.log());
    assert!(!marker_path.exists());
    let (_, inst) = d.get("/api/v1/instances/torn").await;
    assert_eq!(inst["status"], "running");
}

#[tokio::test]
async fn pockestrator_toml_pins_the_pocketbase_version_and_the_build() {
    let f = Fixture::new();
    app_v(&f.repo, 1);
    f.repo.write(
        "pockestrator.toml",
        &format!(
            "pocketbase = \"{}\"\n[build]\ncommands = [[\"sh\", \"-c\", \"mkdir -p site && echo pinned > site/index.html\"]]\noutput = \"site\"\n",
            crate::support::PB_OLD
        ),
    );
    f.repo.commit("pinned");
    let url = f.publish();
    let d = start(&f.allow()).await;
    fresh(&d, "pinned").await;
    let log = deploy_ok(&d, &["deploy", "pinned", "--repo", &url]);
    assert!(
        log.contains(&format!("PocketBase {} (pinned", crate::support::PB_OLD)),
        "{log}"
    );
    assert!(log.contains("$ sh -c"), "{log}");
    let (_, inst) = d.get("/api/v1/instances/pinned").await;
    assert_eq!(inst["version"], crate::support::PB_OLD);
    let port = port_of(&d, "pinned").await;
    assert_eq!(hello(port).await, Some(json!({"v": 1})));
    let (_, page) = get(port, "/").await;
    assert!(page.contains("pinned"), "{page}");

    // A pockestrator.toml that does not parse fails the deploy, saying why.
    f.repo.write("pockestrator.toml", "pocketbase = 12\n");
    f.repo.commit("broken config");
    f.publish();
    let out = d.cli(&["deploy", "pinned"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pockestrator.toml"), "{stderr}");
    assert_eq!(hello(port).await, Some(json!({"v": 1})));
}
