//! Failover in a cluster: three real daemons on a real three-node
//! nats-server cluster, real PocketBase and real Litestream replicating to
//! a directory all hosts share (standing in for the S3 bucket hosts on
//! different machines would share). A host killed with its instances: its
//! replicated instance comes back on another host with its data, its
//! unreplicated one is reported lost and never recreated empty, and the
//! host archives its own copy when it comes back. A host cut off from NATS
//! (a TCP relay cut): it stops its replicated instance before its lease
//! runs out, another host takes over, and once healed the host stands down.

use std::time::Duration;

use serde_json::{json, Value};

use crate::backup::{auth, http, note, titles};
use crate::cluster::hosts_up;
use crate::replication::{litestream_pid, location, replica_titles};
use crate::support::daemon::Daemon;
use crate::support::relay::Relay;
use crate::support::services::{litestream_bin, NatsCluster};
use crate::support::{quiet_port, skip, wait_until, PB_NEW};

const EMAIL: &str = "admin@example.com";
const PASSWORD: &str = "failover-secret-1";

async fn host(cluster: &str, name: &str, litestream: &str) -> Daemon {
    let args = [
        "--cluster",
        cluster,
        "--host-name",
        name,
        "--heartbeat",
        "300ms",
        "--host-lost-after",
        "3s",
        "--lease-ttl",
        "3s",
        "--litestream",
        litestream,
    ];
    Daemon::start_with(&args, &[]).await
}

/// A three-node NATS cluster and Litestream, or `None` (the test said it
/// is skipped).
async fn parts(test: &str) -> Option<(NatsCluster, std::path::PathBuf)> {
    match (NatsCluster::start().await, litestream_bin()) {
        (Some(nats), Some(bin)) => Some((nats, bin)),
        _ => {
            skip(
                test,
                "nats-server or Litestream is missing: run scripts/fetch-test-deps",
            );
            None
        }
    }
}

/// Hosts a, b and c on the whole NATS cluster, once all three are up.
async fn three_hosts(nats: &NatsCluster, litestream: &str) -> [Daemon; 3] {
    let urls = nats.urls();
    let all = [
        host(&urls, "a", litestream).await,
        host(&urls, "b", litestream).await,
        host(&urls, "c", litestream).await,
    ];
    hosts_up(&all[2], 3).await;
    all
}

/// Create `name` on host `on` (through `d`), with a `notes` collection;
/// its port.
async fn shop_on_host(d: &Daemon, name: &str, on: &str) -> u64 {
    let (code, made) = d
        .post(
            "/api/v1/instances",
            json!({
                "name": name, "host": on, "version": PB_NEW, "port": quiet_port(),
                "superuser_email": EMAIL, "superuser_password": PASSWORD,
            }),
        )
        .await;
    assert_eq!(code, 201, "{made}\n{}", d.log());
    let port = made["port"].as_u64().unwrap();
    let token = auth(port, PASSWORD).await.expect("superuser auth");
    let r = http()
        .post(format!("http://127.0.0.1:{port}/api/collections"))
        .header("Authorization", &token)
        .json(&json!({
            "name": "notes", "type": "base",
            "listRule": "", "viewRule": "", "createRule": "", "deleteRule": "",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "doc", "type": "file", "maxSelect": 1, "maxSize": 10_000_000},
            ],
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    port
}

/// Where `name` runs, as `d`'s list of the whole fleet says: its host,
/// status and port.
async fn placed(d: &Daemon, name: &str) -> Option<(String, String, u64)> {
    let (code, list) = d.get("/api/v1/instances").await;
    if code != 200 {
        return None;
    }
    list["instances"].as_array()?.iter().find_map(|i| {
        (i["name"] == name).then(|| {
            (
                i["host"].as_str().unwrap_or("-").to_string(),
                i["status"].as_str().unwrap_or("-").to_string(),
                i["port"].as_u64().unwrap_or(0),
            )
        })
    })
}

/// Wait until `name` runs on a host other than `not`, as `d` sees it.
async fn running_elsewhere(d: &Daemon, name: &str, not: &str, within: Duration) -> (String, u64) {
    wait_until(
        within,
        &format!("{name} running on a host other than {not}"),
        || async {
            let (host, status, port) = placed(d, name).await?;
            (host != not && status == "running").then_some((host, port))
        },
    )
    .await
}

/// Wait until the replica holds every title of `want`.
async fn replicated(bin: &std::path::Path, loc: &str, want: &[&str]) {
    wait_until(
        Duration::from_secs(30),
        "the notes in the replica",
        || async {
            let got = replica_titles(bin, loc, &[])?;
            want.iter()
                .all(|w| got.iter().any(|g| g == w))
                .then_some(())
        },
    )
    .await;
}

fn kill_all(d: &mut Daemon, extra: &[i32]) {
    let pids = d.instance_pids();
    d.kill9();
    for pid in pids.into_iter().chain(extra.iter().copied()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn by_name<'a>(all: &'a [Daemon; 3], name: &str) -> &'a Daemon {
    &all[["a", "b", "c"].iter().position(|n| *n == name).unwrap()]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_killed_with_its_instances_loses_none_that_is_replicated() {
    let test = "failover::a_host_killed_with_its_instances_loses_none_that_is_replicated";
    let Some((nats, bin)) = parts(test).await else {
        return;
    };
    let ls = bin.to_str().unwrap();
    let mut all = three_hosts(&nats, ls).await;
    let replicas = tempfile::tempdir().unwrap();

    // On a: a replicated shop with two notes in its replica, and a plain
    // instance without a replica.
    let port = shop_on_host(&all[1], "shop", "a").await;
    let target = format!("file://{}/shop", replicas.path().display());
    all[0].cli_json(&["replicate", "shop", "--to", &target]);
    let loc = location(&all[0], "shop");
    let litestream = litestream_pid(&all[0], "shop").await;
    note(port, "before-1", b"one").await;
    note(port, "before-2", b"two").await;
    replicated(&bin, &loc, &["before-1", "before-2"]).await;
    let (code, plain) = all[0]
        .post(
            "/api/v1/instances",
            json!({"name": "plain", "host": "a", "port": quiet_port()}),
        )
        .await;
    assert_eq!(code, 201, "{plain}");
    // a has published shop's replica before it can be taken over.
    wait_until(
        Duration::from_secs(15),
        "shop's replica in the cluster",
        || async {
            let (_, list) = all[2].get("/api/v1/instances").await;
            let shop = list["instances"]
                .as_array()?
                .iter()
                .find(|i| i["name"] == "shop")?
                .clone();
            (shop["host"] == "a").then_some(())
        },
    )
    .await;

    // Host a dies with every process on it.
    kill_all(&mut all[0], &[litestream]);
    let (new_host, new_port) =
        running_elsewhere(&all[2], "shop", "a", Duration::from_secs(60)).await;
    let other = by_name(&all, &new_host);
    // With its data, on its new host and through any proxy.
    let got = titles(new_port).await;
    assert!(
        got.contains(&"before-1".to_string()) && got.contains(&"before-2".to_string()),
        "{got:?}\n{}",
        other.log()
    );
    assert!(
        auth(new_port, PASSWORD).await.is_some(),
        "the superuser came along"
    );
    for d in [&all[1], &all[2]] {
        let proxy = d.proxy.expect("an embedded proxy");
        wait_until(
            Duration::from_secs(15),
            "shop through every proxy",
            || async {
                let r = d
                    .http
                    .get(format!("http://{proxy}/api/collections/notes/records"))
                    .header(reqwest::header::HOST, "shop.localhost")
                    .send()
                    .await
                    .ok()?;
                let v: Value = r.json().await.ok()?;
                (v["totalItems"] == 2).then_some(())
            },
        )
        .await;
    }
    let audit = other.audit("shop").await;
    assert!(
        audit.iter().any(|(a, r)| a == "failover" && r == "ok"),
        "{audit:?}"
    );
    // It replicates again, from its new host.
    note(new_port, "after", b"three").await;
    let new_loc = location(other, "shop");
    assert_ne!(new_loc, loc, "a new generation");
    replicated(&bin, &new_loc, &["before-1", "before-2", "after"]).await;

    // The unreplicated instance is reported lost with its host, and no
    // host made it anew.
    let (_, list) = all[1].get("/api/v1/instances").await;
    let missing = list["unreachable_hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["host"] == "a").cloned())
        .unwrap_or_else(|| panic!("a not named: {list}"));
    assert!(
        missing["instances"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "plain", "replicated": false})),
        "{missing}"
    );
    assert!(placed(&all[1], "plain").await.is_none(), "{list}");
    let out = all[1].cli(&["list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not replicated") && err.contains("plain"),
        "{err}"
    );

    // Host a comes back: its copy of shop is archived, not run; plain runs.
    all[0].restart().await;
    wait_until(Duration::from_secs(30), "a to stand down", || async {
        let audit = all[0].audit("shop").await;
        audit.iter().any(|(a, _)| a == "stand-down").then_some(())
    })
    .await;
    all[0].wait_status("plain", "running").await;
    assert!(!all[0].data_dir().join("instances/shop").exists());
    let archived = std::fs::read_dir(all[0].data_dir().join("archive"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("shop-"));
    assert!(archived, "a's copy of shop is archived");
    let (host, status, _) = placed(&all[0], "shop").await.expect("shop listed");
    assert_eq!(
        (host.as_str(), status.as_str()),
        (new_host.as_str(), "running")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_cut_off_from_nats_fences_itself_and_stands_down_after_the_failover() {
    let test =
        "failover::a_host_cut_off_from_nats_fences_itself_and_stands_down_after_the_failover";
    let Some((nats, bin)) = parts(test).await else {
        return;
    };
    let ls = bin.to_str().unwrap();
    // Host a reaches NATS only through a relay the test can cut.
    let mut relay = Relay::start(nats.addr(0)).await;
    let urls = nats.urls();
    let all = [
        host(&relay.url(), "a", ls).await,
        host(&urls, "b", ls).await,
        host(&urls, "c", ls).await,
    ];
    hosts_up(&all[1], 3).await;
    let replicas = tempfile::tempdir().unwrap();
    let port = shop_on_host(&all[0], "shop", "a").await;
    let target = format!("file://{}/shop", replicas.path().display());
    all[0].cli_json(&["replicate", "shop", "--to", &target]);
    let loc = location(&all[0], "shop");
    note(port, "before", b"one").await;
    replicated(&bin, &loc, &["before"]).await;
    wait_until(
        Duration::from_secs(15),
        "shop's replica in the cluster",
        || async {
            let (_, v) = all[1].get("/api/v1/instances").await;
            v["instances"]
                .as_array()?
                .iter()
                .any(|i| i["name"] == "shop" && i["host"] == "a")
                .then_some(())
        },
    )
    .await;

    // Cut off: a stops shop on its own (its API still answers locally).
    relay.cut();
    wait_until(Duration::from_secs(20), "a to fence shop", || async {
        let (_, v) = all[0].get("/api/v1/instances/shop").await;
        (v["status"] == "stopped").then_some(())
    })
    .await;
    let audit = all[0].audit("shop").await;
    assert!(
        audit.iter().any(|(a, r)| a == "fence" && r == "ok"),
        "{audit:?}"
    );
    // Started by hand meanwhile: refused, saying why.
    let (code, err) = all[0].post("/api/v1/instances/shop/start", json!({})).await;
    assert_eq!(code, 409, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("is fenced"),
        "{err}"
    );
    assert!(
        http()
            .get(format!("http://127.0.0.1:{port}/api/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_err(),
        "a's copy no longer answers"
    );
    // Another host brings it back, with its data.
    let (new_host, new_port) =
        running_elsewhere(&all[1], "shop", "a", Duration::from_secs(60)).await;
    assert!(titles(new_port).await.contains(&"before".to_string()));

    // Healed: a finds shop run elsewhere and archives its own copy.
    relay.heal().await;
    wait_until(Duration::from_secs(30), "a to stand down", || async {
        let audit = all[0].audit("shop").await;
        audit
            .iter()
            .any(|(a, r)| a == "stand-down" && r == "ok")
            .then_some(())
    })
    .await;
    assert!(!all[0].data_dir().join("instances/shop").exists());
    let (host, status, _) = wait_until(
        Duration::from_secs(20),
        "a to list shop on its new host",
        || async {
            let p = placed(&all[0], "shop").await?;
            (p.0 != "a").then_some(p)
        },
    )
    .await;
    assert_eq!(
        (host.as_str(), status.as_str()),
        (new_host.as_str(), "running")
    );
}

/// Every title of `notes` on the instance behind `d`'s proxy for
/// `shop.localhost`.
async fn proxied_titles(d: &Daemon) -> Option<Vec<String>> {
    let proxy = d.proxy?;
    let r = d
        .http
        .get(format!(
            "http://{proxy}/api/collections/notes/records?perPage=1000&fields=title"
        ))
        .header(reqwest::header::HOST, "shop.localhost")
        .send()
        .await
        .ok()?;
    let v: Value = r.json().await.ok()?;
    Some(
        v["items"]
            .as_array()?
            .iter()
            .filter_map(|i| i["title"].as_str().map(str::to_string))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_move_and_a_drain_lose_no_acknowledged_write() {
    let test = "failover::a_move_and_a_drain_lose_no_acknowledged_write";
    let Some((nats, bin)) = parts(test).await else {
        return;
    };
    let ls = bin.to_str().unwrap();
    let all = std::sync::Arc::new(three_hosts(&nats, ls).await);
    let replicas = tempfile::tempdir().unwrap();
    shop_on_host(&all[0], "shop", "a").await;
    let target = format!("file://{}/shop", replicas.path().display());
    all[0].cli_json(&["replicate", "shop", "--to", &target]);
    wait_until(Duration::from_secs(15), "c to route shop", || async {
        proxied_titles(&all[2]).await.map(|_| ())
    })
    .await;

    // A steady write load through host c's proxy, which routes to wherever
    // shop runs; only acknowledged writes count.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (all, stop) = (all.clone(), stop.clone());
        tokio::spawn(async move {
            let proxy = all[2].proxy.unwrap();
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let title = format!("w{n:05}");
                let ok = all[2]
                    .http
                    .post(format!("http://{proxy}/api/collections/notes/records"))
                    .header(reqwest::header::HOST, "shop.localhost")
                    .json(&json!({ "title": title }))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    acked.push(title);
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A move asked of host c, for an instance of host a.
    let moved = all[2].cli_json(&["move", "shop", "--to", "b"]);
    assert_eq!(
        moved,
        json!({"name": "shop", "from": "a", "to": "b"}),
        "{}",
        all[0].log()
    );
    assert!(!all[0].data_dir().join("instances/shop").exists());
    assert!(all[1].data_dir().join("instances/shop").is_dir());
    let audit = all[0].audit("shop").await;
    assert!(
        audit.iter().any(|(a, r)| a == "move" && r == "ok"),
        "{audit:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // b drained: shop goes on to a or c, and b takes nothing new.
    let (code, report) = all[0].post("/api/v1/hosts/b/drain", json!({})).await;
    assert_eq!(code, 200, "{report}\n{}", all[1].log());
    assert_eq!(
        report["moved"].as_array().map(Vec::len),
        Some(1),
        "{report}\n--- a\n{}\n--- b\n{}",
        all[0].log(),
        all[1].log()
    );
    let to = report["moved"][0]["to"].as_str().unwrap().to_string();
    assert!(to == "a" || to == "c", "{report}");
    let (code, err) = all[0]
        .post(
            "/api/v1/instances",
            json!({"name": "late", "host": "b", "port": quiet_port()}),
        )
        .await;
    assert_eq!(code, 409, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("drained"),
        "{err}"
    );
    let (_, hosts) = all[2].get("/api/v1/hosts").await;
    let b = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "b")
        .unwrap();
    assert_eq!(b["draining"], true, "{hosts}");
    let out = all[2].cli(&["host", "undrain", "b"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.await.unwrap();
    assert!(acked.len() > 20, "the load ran: {}", acked.len());
    let got = wait_until(
        Duration::from_secs(20),
        "shop's notes after the moves",
        || async { proxied_titles(&all[2]).await },
    )
    .await;
    let missing: Vec<&String> = acked.iter().filter(|t| !got.contains(t)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes lost: {missing:?} of {}",
        acked.len()
    );
    let (h, status, _) = placed(&all[1], "shop").await.unwrap();
    assert_eq!((h.as_str(), status.as_str()), (to.as_str(), "running"));

    // A stopped instance moves stopped, and its custom domain moves with it.
    let (code, added) = all[2]
        .post(
            "/api/v1/instances/shop/domains",
            json!({"domain": "shop.example.test"}),
        )
        .await;
    assert_eq!(code, 200, "{added}");
    let (code, stopped) = all[2].post("/api/v1/instances/shop/stop", json!({})).await;
    assert_eq!(code, 200, "{stopped}");
    let next = if to == "a" { "c" } else { "a" };
    let moved = all[1].cli_json(&["move", "shop", "--to", next]);
    assert_eq!(moved["to"], next, "{moved}");
    // It runs there for a moment, to come up and replicate, then stops.
    wait_until(
        Duration::from_secs(30),
        "shop stopped where it moved",
        || async {
            let (h, status, _) = placed(&all[1], "shop").await?;
            (h == next && status == "stopped").then_some(())
        },
    )
    .await;
    let (code, domains) = all[1].get("/api/v1/instances/shop/domains").await;
    assert_eq!(code, 200, "{domains}");
    assert_eq!(
        domains["domains"],
        json!(["shop.example.test"]),
        "{domains}"
    );

    // An unreplicated instance does not move, and says why.
    let (code, _) = all[2]
        .post(
            "/api/v1/instances",
            json!({"name": "plain", "host": "c", "port": quiet_port()}),
        )
        .await;
    assert_eq!(code, 201);
    let (code, err) = all[0]
        .post("/api/v1/instances/plain/move", json!({"to": "a"}))
        .await;
    assert_eq!(code, 409, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not replicated"),
        "{err}"
    );
    let (code, err) = all[0]
        .post("/api/v1/instances/plain/move", json!({"to": "no_such"}))
        .await;
    assert_eq!(code, 400, "{err}");
}
