//! Many hosts, one fleet: three real daemons joined through a real
//! three-node nats-server cluster on loopback (`serve --cluster`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::daemon::Daemon;
use crate::support::services::NatsCluster;
use crate::support::{quiet_port, skip, wait_until};

async fn host(nats: &NatsCluster, name: &str, extra: &[&str]) -> Daemon {
    let urls = nats.urls();
    let mut args = vec![
        "--cluster",
        urls.as_str(),
        "--host-name",
        name,
        "--heartbeat",
        "300ms",
        "--host-lost-after",
        "5s",
    ];
    args.extend_from_slice(extra);
    Daemon::start_with(&args, &[]).await
}

/// Wait until `d` sees `n` hosts up.
pub(crate) async fn hosts_up(d: &Daemon, n: usize) -> Value {
    wait_until(
        Duration::from_secs(30),
        &format!("{n} hosts up"),
        || async {
            let (code, v) = d.get("/api/v1/hosts").await;
            let up = v["hosts"]
                .as_array()
                .map_or(0, |h| h.iter().filter(|h| h["health"] == "up").count());
            (code == 200 && up == n).then_some(v)
        },
    )
    .await
}

async fn create_on(d: &Daemon, name: &str, body: Value) -> (u16, Value) {
    let mut body = body;
    body["name"] = json!(name);
    body["port"] = json!(quiet_port());
    d.post("/api/v1/instances", body).await
}

fn names_and_hosts(list: &Value) -> Vec<(String, String)> {
    list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["host"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hosts_are_one_fleet_from_any_of_them() {
    let Some(mut nats) = NatsCluster::start().await else {
        skip(
            "cluster::three_hosts_are_one_fleet_from_any_of_them",
            "nats-server is missing: run scripts/fetch-test-deps",
        );
        return;
    };
    let a = host(&nats, "a", &["--region", "eu", "--tags", "ssd"]).await;
    let b = host(&nats, "b", &["--region", "eu"]).await;
    let c = host(&nats, "c", &["--region", "us", "--tags", "ssd,big"]).await;

    // Every host sees all three, itself marked.
    let seen = hosts_up(&c, 3).await;
    let names: Vec<_> = seen["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].clone())
        .collect();
    assert_eq!(names, [json!("a"), json!("b"), json!("c")]);
    let me: Vec<_> = seen["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["this"] == true)
        .collect();
    assert_eq!(me.len(), 1);
    assert_eq!(me[0]["name"], "c");
    assert_eq!(me[0]["region"], "us");
    assert_eq!(me[0]["tags"], json!(["ssd", "big"]));
    assert!(me[0]["mem_total_bytes"].as_u64().unwrap() > 0);
    let table = String::from_utf8(a.cli(&["hosts"]).stdout).unwrap();
    assert!(
        table.contains("a (this)") && table.contains(" up "),
        "{table}"
    );

    // A create sent to host a for host b is made on b, and says so.
    let (code, made) = create_on(&a, "beta", json!({"host": "b"})).await;
    assert_eq!(code, 201, "{made}\n{}", a.log());
    assert_eq!(made["host"], "b", "{made}");
    assert!(b.data_dir().join("instances/beta").is_dir());
    assert!(!a.data_dir().join("instances/beta").exists());
    let (code, made) = create_on(
        &a,
        "alpha",
        json!({"superuser_email": "admin@example.com", "superuser_password": "alpha-secret-1"}),
    )
    .await;
    assert_eq!(code, 201, "{made}");
    // Placement by region and tags.
    let (code, made) = create_on(&b, "yankee", json!({"region": "us"})).await;
    assert_eq!(code, 201, "{made}");
    assert_eq!(made["host"], "c");
    let (code, made) = create_on(&b, "ssd-eu", json!({"region": "eu", "tags": ["ssd"]})).await;
    assert_eq!(code, 201, "{made}");
    assert_eq!(made["host"], "a");
    let (code, err) = create_on(&a, "nowhere", json!({"tags": ["gpu"]})).await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{err}"
    );
    assert!(
        err["error"]["message"].as_str().unwrap().contains("gpu"),
        "{err}"
    );
    let (code, err) = create_on(&a, "lost", json!({"host": "zz"})).await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (404, Some("unknown_host")),
        "{err}"
    );
    let (code, err) = create_on(&a, "bad", json!({"host": "B.x"})).await;
    assert_eq!(code, 400, "{err}");

    // A name is the cluster's: taken on b, refused on c, naming b.
    let (code, err) = create_on(&c, "beta", json!({"host": "c"})).await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (409, Some("name_taken")),
        "{err}"
    );
    assert!(
        err["error"]["message"].as_str().unwrap().contains("host b"),
        "{err}"
    );

    // The whole fleet from any host, each instance with its host.
    for d in [&a, &b, &c] {
        let (code, list) = d.get("/api/v1/instances").await;
        assert_eq!(code, 200);
        let mut got = names_and_hosts(&list);
        got.sort();
        assert_eq!(
            got,
            [
                ("alpha".to_string(), list_host(&list, "alpha")),
                ("beta".into(), "b".into()),
                ("ssd-eu".into(), "a".into()),
                ("yankee".into(), "c".into()),
            ],
            "{list}"
        );
    }
    let table = String::from_utf8(c.cli(&["list"]).stdout).unwrap();
    assert!(
        table.starts_with("NAME") && table.contains("HOST"),
        "{table}"
    );

    // Any host's proxy reaches any host's instance: alpha's superuser signs
    // in through the proxy of every host, alpha's own and the others.
    for d in [&a, &b, &c] {
        wait_until(
            Duration::from_secs(15),
            "a sign-in through every proxy",
            || async {
                let resp = proxied(
                    d,
                    "alpha.localhost",
                    "/api/collections/_superusers/auth-with-password",
                )
                .json(&json!({"identity": "admin@example.com", "password": "alpha-secret-1"}))
                .send()
                .await
                .ok()?;
                (resp.status() == 200).then_some(())
            },
        )
        .await;
    }
    // A name no host holds is 404 on every proxy; a request another host
    // already sent on is not sent on again.
    let resp = proxied(&a, "nobody.localhost", "/api/health")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let (_, alpha) = a.get("/api/v1/instances/alpha").await;
    let all = [&a, &b, &c];
    let elsewhere = all
        .into_iter()
        .find(|d| alpha["host"] != d_name(d, all))
        .unwrap();
    let resp = proxied(elsewhere, "alpha.localhost", "/api/health")
        .header("x-pockestrator-via", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // A log followed through another host: its tail, then what is
    // written there as it comes (a restart's start line).
    let resp = elsewhere
        .http
        .get(elsewhere.url("/api/v1/instances/alpha/logs?lines=20&follow=true"))
        .bearer_auth(&elsewhere.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-pockestrator-host"],
        alpha["host"].as_str().unwrap()
    );
    let mut followed = Box::pin(resp.bytes_stream());
    let mut seen = String::new();
    assert!(started_lines(&mut followed, &mut seen, 1).await, "{seen}");
    let before = seen.matches("Server started").count();
    let (code, restarted) = elsewhere
        .post("/api/v1/instances/alpha/restart", json!({}))
        .await;
    assert_eq!(code, 200, "{restarted}");
    assert!(
        started_lines(&mut followed, &mut seen, before + 1).await,
        "followed through another host: {seen}"
    );
    drop(followed);

    // A custom domain of a's instance, added through b, is reached through
    // every host's proxy once a publishes it with its desired state.
    let (code, added) = b
        .post(
            "/api/v1/instances/ssd-eu/domains",
            json!({"domain": "shop.example.test"}),
        )
        .await;
    assert_eq!(code, 200, "{added}");
    for d in [&a, &b, &c] {
        wait_until(
            Duration::from_secs(15),
            "a custom domain through every proxy",
            || async {
                let resp = d
                    .http
                    .get(format!("http://{}/api/health", d.proxy.unwrap()))
                    .header(reqwest::header::HOST, "shop.example.test")
                    .send()
                    .await
                    .ok()?;
                (resp.status() == 200).then_some(())
            },
        )
        .await;
    }
    let status = c.cli_json(&["status", "beta"]);
    assert_eq!(status["host"], "b");

    // An operation from c on b's instance runs on b, audited there with
    // who asked and through which host.
    let out = c.cli(&["stop", "beta"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, on_b) = b.get("/api/v1/instances/beta").await;
    assert_eq!(on_b["status"], "stopped", "{on_b}");
    let (_, events) = b.get("/api/v1/events?instance=beta").await;
    let stop = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "stop")
        .expect("a stop in b's audit log")
        .clone();
    assert!(
        stop["actor"].as_str().unwrap().ends_with("via host c"),
        "{stop}"
    );
    let (code, started) = a.post("/api/v1/instances/beta/start", json!({})).await;
    assert_eq!(code, 200, "{started}");
    assert_eq!(started["status"], "running");

    // A delete lets go of the name: another host can take it.
    let (code, gone) = a
        .api(
            reqwest::Method::DELETE,
            "/api/v1/instances/beta?purge=true",
            None,
        )
        .await;
    assert_eq!(code, 200, "{gone}");
    assert!(!b.data_dir().join("instances/beta").exists());
    let (code, made) = create_on(&c, "beta", json!({"host": "c"})).await;
    assert_eq!(code, 201, "{made}");

    // Seed 001's API from any host: a user's instance made through a is
    // a's; its status and its stop asked of c are answered by a; every
    // host lists it and counts it.
    let (code, init) = a
        .post("/api/users/ada_1/init_pb", json!({"force_restart": false}))
        .await;
    assert_eq!(code, 200, "{init}\n{}", a.log());
    assert_eq!(init["success"], true, "{init}");
    let (code, status) = c.get("/api/users/ada_1/pb_status").await;
    assert_eq!(code, 200, "{status}\n{}", c.log());
    assert_eq!(status["user_id"], "ada_1");
    assert_eq!(status["instance"]["port"], init["instance"]["port"]);
    assert_eq!(status["instance"]["db_path"], init["instance"]["db_path"]);
    for d in [&a, &b, &c] {
        let (code, all) = d.get("/api/pb_instances").await;
        assert_eq!(code, 200, "{all}");
        assert_eq!(all["count"], 1, "{all}");
        assert_eq!(all["instances"]["ada_1"]["port"], init["instance"]["port"]);
        let (code, health) = d.get("/health/pb").await;
        assert_eq!(code, 200, "{health}");
        assert_eq!(health["total_instances"], 1, "{health}");
        assert_eq!(health["running_instances"], 1, "{health}");
    }
    let (code, again) = b
        .post("/api/users/ada_1/init_pb", json!({"force_restart": false}))
        .await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(
        again["instance"]["port"], init["instance"]["port"],
        "made once"
    );
    let (code, stopped) = c.post("/api/users/ada_1/stop_pb", json!({})).await;
    assert_eq!(
        (code, &stopped["success"]),
        (200, &json!(true)),
        "{stopped}"
    );
    let (_, on_a) = a.get("/api/pb_instances").await;
    assert_eq!(on_a["instances"]["ada_1"]["status"], "Stopped", "{on_a}");
    let (code, none) = c.get("/api/users/nobody/pb_status").await;
    assert_eq!(code, 404, "{none}");
    assert_eq!(none["success"], false, "seed 001's error shape: {none}");
    for d in [&b, &c] {
        let dirs = std::fs::read_dir(d.data_dir().join("instances")).unwrap();
        assert!(
            dirs.flatten()
                .all(|e| !e.file_name().to_string_lossy().starts_with("u-ada-1")),
            "the user's instance is a's only"
        );
    }

    // Seed 003's API from any host: an app deployed through b is b's; c
    // and a see it, and a second deploy of it through c is refused by b.
    let git_root = tempfile::tempdir().unwrap();
    let server = crate::support::git_server::GitServer::start(git_root.path()).await;
    let work = tempfile::tempdir().unwrap();
    let repo = crate::support::git_server::GitRepo::init(work.path());
    repo.write("pb_public/index.html", "<p>shop</p>\n");
    repo.commit("v1");
    repo.publish(git_root.path(), "shop");
    let deploy = json!({"repository": server.url("shop"), "subdomain": "shop"});
    let (code, app) = b.post("/api/deploy", deploy.clone()).await;
    assert_eq!(code, 202, "{app}\n{}", b.log());
    let app = wait_until(Duration::from_secs(120), "shop to run", || async {
        let (code, app) = c.get("/api/apps/shop").await;
        (code == 200 && app["status"] != "deploying").then_some(app)
    })
    .await;
    assert_eq!(app["status"], "running", "{app}\n{}", b.log());
    assert!(b.data_dir().join("instances/shop").is_dir());
    let (code, apps) = a.get("/api/apps").await;
    assert_eq!(code, 200, "{apps}");
    assert_eq!(
        apps["apps"]["shop"]["repository"],
        server.url("shop"),
        "{apps}"
    );
    let (code, refused) = c.post("/api/deploy", deploy).await;
    assert_eq!(
        (code, refused.as_str()),
        (409, Some("App already exists\n")),
        "sent on to b, which has it"
    );
    let (code, gone) = a.api(reqwest::Method::DELETE, "/api/apps/shop", None).await;
    assert_eq!(code, 200, "{gone}");
    let (code, _) = c.get("/api/apps/shop").await;
    assert_eq!(code, 404);

    // The dashboard of any host shows every host's instances, each with
    // its host, and its buttons act on an instance another host runs
    // through that host, audited there.
    let (_, cookie) = crate::dashboard::sign_in(&a, &[]).await;
    let page = a
        .http
        .get(a.url("/ui/"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<th>Host</th>"), "{page}");
    for (name, on) in [("yankee", "c"), ("ssd-eu", "a"), ("after-none", "")] {
        let row = page.find(&format!("id=\"row-{name}\""));
        if on.is_empty() {
            assert!(row.is_none(), "{name} is nowhere");
            continue;
        }
        let row = &page[row.unwrap_or_else(|| panic!("a row for {name}: {page}"))..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(
            row.contains(&format!("<td data-label=\"Host\">{on}</td>")),
            "{row}"
        );
    }
    let csrf = crate::dashboard::csrf_of(&a, &cookie).await;
    let remote_page = a
        .http
        .get(a.url("/ui/instances/yankee"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(remote_page.status(), 200);
    let remote_page = remote_page.text().await.unwrap();
    assert!(
        remote_page.contains("<dd id=\"instance-host\">c</dd>"),
        "{remote_page}"
    );
    let (code, said) = crate::dashboard::datastar_post(
        &a,
        "/ui/instances/yankee/stop",
        Some(&cookie),
        Some(&csrf),
        json!({}),
    )
    .await;
    assert_eq!(code, 200, "{said}");
    assert!(said.contains("yankee stopped on host c."), "{said}");
    let (_, on_c) = c.get("/api/v1/instances/yankee").await;
    assert_eq!(on_c["status"], "stopped", "{on_c}");
    let (_, events) = c.get("/api/v1/events?instance=yankee").await;
    let stop = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "stop")
        .expect("the dashboard's stop in c's audit log")
        .clone();
    let by = stop["actor"].as_str().unwrap();
    assert!(
        by.starts_with("dashboard@") && by.ends_with("via host a"),
        "{stop}"
    );

    // One NATS node gone: after the streams elect new leaders (a request
    // meanwhile gets 503 `cluster_unavailable`, never a wrong answer) the
    // cluster keeps working.
    let killed_at = chrono::Utc::now();
    nats.kill(0);
    // Every host beats again (through another node) before the next step.
    wait_until(
        Duration::from_secs(60),
        "every host to beat after the kill",
        || async {
            let (_, v) = a.get("/api/v1/hosts").await;
            let hosts = v["hosts"].as_array()?;
            let fresh = hosts.iter().filter(|h| {
                h["health"] == "up"
                    && h["seen_at"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .is_some_and(|t| t > killed_at)
            });
            (fresh.count() == 3).then_some(())
        },
    )
    .await;
    let made = wait_until(
        Duration::from_secs(60),
        "a create after a NATS node died",
        || async {
            let (code, made) = create_on(&a, "after", json!({"host": "b"})).await;
            match code {
                201 => Some(made),
                503 => {
                    assert_eq!(made["error"]["code"], "cluster_unavailable", "{made}");
                    None
                }
                _ => panic!("{code}: {made}\n{}", a.log()),
            }
        },
    )
    .await;
    assert_eq!(made["host"], "b");
    let list = wait_until(Duration::from_secs(30), "a whole list from c", || async {
        let (code, list) = c.get("/api/v1/instances").await;
        (code == 200 && list["unreachable_hosts"].is_null()).then_some(list)
    })
    .await;
    assert!(
        names_and_hosts(&list).contains(&("after".into(), "b".into())),
        "{list}"
    );
}

/// Read a followed log into `seen` until it holds `want` start lines of
/// PocketBase; false if it ends, or 30 s pass, first.
async fn started_lines(
    followed: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    seen: &mut String,
    want: usize,
) -> bool {
    use futures::StreamExt;
    let read = async {
        while seen.matches("Server started").count() < want {
            match followed.next().await {
                Some(Ok(chunk)) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return false,
            }
        }
        true
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .unwrap_or(false)
}

/// A request through `d`'s embedded proxy for `host`.
fn proxied(d: &Daemon, host: &str, path: &str) -> reqwest::RequestBuilder {
    let proxy = d.proxy.expect("an embedded proxy");
    d.http
        .post(format!("http://{proxy}{path}"))
        .header(reqwest::header::HOST, host)
}

/// The host name `d` was started with, by its place in `all` (a, b, c).
fn d_name(d: &Daemon, all: [&Daemon; 3]) -> &'static str {
    let i = all.iter().position(|x| std::ptr::eq(*x, d)).unwrap();
    ["a", "b", "c"][i]
}

fn list_host(list: &Value, name: &str) -> String {
    names_and_hosts(list)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, h)| h)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hosts_creating_one_name_at_once_make_it_once() {
    let Some(nats) = NatsCluster::start().await else {
        skip(
            "cluster::two_hosts_creating_one_name_at_once_make_it_once",
            "nats-server is missing: run scripts/fetch-test-deps",
        );
        return;
    };
    let mut a = host(&nats, "a", &[]).await;
    let mut b = host(&nats, "b", &[]).await;
    hosts_up(&a, 2).await;
    for round in 0..3 {
        let name = format!("race{round}");
        let (on_a, on_b) = tokio::join!(
            create_on(&a, &name, json!({"host": "a"})),
            create_on(&b, &name, json!({"host": "b"}))
        );
        let codes = [on_a.0, on_b.0];
        assert_eq!(
            codes.iter().filter(|c| **c == 201).count(),
            1,
            "{on_a:?} {on_b:?}"
        );
        assert!(codes.contains(&409), "{on_a:?} {on_b:?}");
        let made_here = [
            a.data_dir().join("instances").join(&name).is_dir(),
            b.data_dir().join("instances").join(&name).is_dir(),
        ];
        assert_eq!(made_here.iter().filter(|m| **m).count(), 1, "{made_here:?}");
    }

    // A name a held in an earlier run without an instance for it (a create
    // cut short by a crash) is let go of when a starts again, so b can
    // take it; a's instances keep theirs.
    let client = async_nats::connect(nats.urls().split(',').next().unwrap())
        .await
        .unwrap();
    let claims = async_nats::jetstream::new(client)
        .get_key_value("pockestrator-instances")
        .await
        .unwrap();
    claims
        .put(
            "ghost",
            json!({"host": "a", "since": "2020-01-01T00:00:00Z"})
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    let (code, err) = create_on(&b, "ghost", json!({"host": "b"})).await;
    assert_eq!(code, 409, "{err}");
    a.restart().await;
    let made = wait_until(Duration::from_secs(30), "a to let go of ghost", || async {
        let (code, made) = create_on(&b, "ghost", json!({"host": "b"})).await;
        (code == 201).then_some(made)
    })
    .await;
    assert_eq!(made["host"], "b");
    let kept: Vec<String> = ["race0", "race1", "race2"]
        .iter()
        .filter(|n| a.data_dir().join("instances").join(n).is_dir())
        .map(|n| n.to_string())
        .collect();
    for name in &kept {
        let claim = claims
            .get(name.as_str())
            .await
            .unwrap()
            .expect("still claimed");
        assert!(String::from_utf8_lossy(&claim).contains("\"host\":\"a\""));
    }

    // b's daemon dies: a says so, in its hosts and its lists, instead of
    // leaving b's instances out silently.
    b.kill9();
    wait_until(Duration::from_secs(30), "b to be lost", || async {
        let (_, v) = a.get("/api/v1/hosts").await;
        v["hosts"]
            .as_array()?
            .iter()
            .any(|h| h["name"] == "b" && h["health"] == "lost")
            .then_some(())
    })
    .await;
    let (code, list) = a.get("/api/v1/instances").await;
    assert_eq!(code, 200);
    let missing = &list["unreachable_hosts"];
    assert_eq!(missing[0]["host"], "b", "{list}");
    assert!(
        missing[0]["error"].as_str().unwrap().starts_with("lost"),
        "{list}"
    );
    let out = a.cli(&["list"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning: host b is not in this list"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_settings_are_checked_and_one_host_needs_no_nats() {
    let d = Daemon::start().await;
    let (code, err) = d.get("/api/v1/hosts").await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (409, Some("not_clustered")),
        "{err}"
    );
    let out = d.cli(&["hosts"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cluster"));
    let (code, err) = create_on(&d, "x", json!({"host": "a"})).await;
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (409, Some("not_clustered")),
        "{err}"
    );
    let (_, list) = d.get("/api/v1/instances").await;
    assert!(list.get("unreachable_hosts").is_none(), "{list}");

    let dir = tempfile::tempdir().unwrap();
    let serve = |args: &[&str]| {
        let out = std::process::Command::new(crate::support::daemon::BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("serve")
            .args(["--listen", "none", "--proxy-listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let said = serve(&["--region", "eu"]);
    assert!(
        said.contains("--region is a setting of a cluster"),
        "{said}"
    );
    for (bad, expect) in [
        (
            vec!["--cluster", "http://127.0.0.1:4222", "--host-name", "a"],
            "write nats://",
        ),
        (
            vec![
                "--cluster",
                "nats://u:pw@127.0.0.1:4222",
                "--host-name",
                "a",
            ],
            "--nats-creds",
        ),
        (
            vec!["--cluster", "nats://127.0.0.1:4222", "--host-name", "A.b"],
            "--host-name",
        ),
        (
            vec![
                "--cluster",
                "nats://127.0.0.1:4222",
                "--host-name",
                "a",
                "--lease-ttl",
                "5s",
            ],
            "--lease-ttl must be at least four heartbeats",
        ),
        (
            vec!["--cluster", "nats://127.0.0.1:4222", "--host-name", "a;rm"],
            "--host-name",
        ),
        (
            vec![
                "--cluster",
                "nats://127.0.0.1:4222",
                "--host-name",
                "a",
                "--tags",
                "ok,Not",
            ],
            "--tags",
        ),
        (
            vec![
                "--cluster",
                "nats://127.0.0.1:4222",
                "--host-name",
                "a",
                "--cluster-prefix",
                "a.b",
            ],
            "--cluster-prefix",
        ),
        (
            vec![
                "--cluster",
                "nats://127.0.0.1:4222",
                "--host-name",
                "a",
                "--nats-creds",
                "/nonexistent.creds",
            ],
            "no such file",
        ),
    ] {
        let said = serve(&bad);
        assert!(said.contains(expect), "{bad:?}: {said}");
        assert!(!said.contains("pw"), "{said}");
    }
    // Nothing listens there: the start fails fast, saying why.
    let closed = quiet_port();
    let said = serve(&[
        "--cluster",
        &format!("nats://127.0.0.1:{closed}"),
        "--host-name",
        "a",
    ]);
    assert!(said.contains("cannot join the cluster"), "{said}");
}
