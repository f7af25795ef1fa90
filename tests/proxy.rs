//! The embedded reverse proxy in front of real PocketBase instances:
//! routing by host, realtime (server-sent events) through the proxy, body
//! limits and large files, forwarding headers as PocketBase sees them, the
//! proxy's own error answers, route changes while requests are in flight,
//! WebSocket upgrades and HTTP/2 without TLS; and held routes: requests
//! that wait while an instance is switched to a new process on the same
//! port, the limits of that wait, and requests sent once more when a
//! keep-alive connection closes under them.
//!
//! Every PocketBase a test starts is killed when its guard is dropped,
//! passed or failed; every proxy is shut down the same way.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pockestrator::model::InstanceName;
use pockestrator::router::embedded::{ProxyConfig, ProxyRouter};
use pockestrator::router::{Route, Router, DEFAULT_READ_TIMEOUT};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::support::{free_port, pocketbase_bin, quiet_port, wait_until, PB_NEW};

/// How long anything in these tests may take before it counts as broken.
const LIMIT: Duration = Duration::from_secs(30);
const EMAIL: &str = "root@example.com";
const PASSWORD: &str = "correct-horse-battery";

/// One real PocketBase 0.40.6 in a temporary directory, with a superuser
/// and a public `posts` collection (`title` text, `doc` file up to 50 MB).
struct PocketBase {
    child: Child,
    port: u16,
    token: String,
    _dir: tempfile::TempDir,
}

impl Drop for PocketBase {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PocketBase {
    async fn start() -> PocketBase {
        PocketBase::start_on(free_port()).await
    }

    /// One on `port`, which should be a [`quiet_port`] if the test starts
    /// a second process on it.
    async fn start_on(port: u16) -> PocketBase {
        let dir = tempfile::Builder::new()
            .prefix("pkproxy")
            .tempdir_in("/tmp")
            .unwrap();
        let data = dir.path().join("pb_data");
        let upsert = Command::new(pocketbase_bin(PB_NEW))
            .args(["superuser", "upsert", EMAIL, PASSWORD])
            .arg(format!("--dir={}", data.display()))
            .output()
            .unwrap();
        assert!(upsert.status.success(), "superuser upsert: {upsert:?}");
        let child = PocketBase::serve(dir.path(), port);
        let mut pb = PocketBase {
            child,
            port,
            token: String::new(),
            _dir: dir,
        };
        pb.wait_healthy().await;
        let http = http();
        let auth: Value = http
            .post(pb.direct("/api/collections/_superusers/auth-with-password"))
            .json(&json!({"identity": EMAIL, "password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pb.token = auth["token"].as_str().unwrap().to_string();
        let created = http
            .post(pb.direct("/api/collections"))
            .header("Authorization", &pb.token)
            .json(&json!({
                "name": "posts",
                "type": "base",
                "listRule": "",
                "viewRule": "",
                "createRule": "",
                "fields": [
                    {"name": "title", "type": "text"},
                    {"name": "doc", "type": "file", "maxSelect": 1, "maxSize": 50_000_000},
                ],
            }))
            .send()
            .await
            .unwrap();
        assert!(
            created.status().is_success(),
            "create collection: {created:?}"
        );
        pb
    }

    fn serve(root: &std::path::Path, port: u16) -> Child {
        Command::new(pocketbase_bin(PB_NEW))
            .arg("serve")
            .arg(format!("--http=127.0.0.1:{port}"))
            .arg(format!("--dir={}", root.join("pb_data").display()))
            .arg(format!("--hooksDir={}", root.join("pb_hooks").display()))
            .arg(format!(
                "--migrationsDir={}",
                root.join("pb_migrations").display()
            ))
            .arg(format!("--publicDir={}", root.join("pb_public").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    async fn wait_healthy(&self) {
        let http = http();
        let health = self.direct("/api/health");
        wait_until(LIMIT, "pocketbase to answer /api/health", || {
            let http = http.clone();
            let health = health.clone();
            async move {
                let r = http.get(&health).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
    }

    /// Stop this PocketBase with SIGTERM (it finishes the requests it is
    /// answering), wait for it to exit, and start a new process on the same
    /// port and data directory: what a switch to a new release does.
    async fn stop_and_start_again(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let child = &mut self.child;
        wait_until(LIMIT, "pocketbase to exit after SIGTERM", || {
            let exited = child.try_wait().unwrap().is_some();
            async move { exited.then_some(()) }
        })
        .await;
        self.child = PocketBase::serve(self._dir.path(), self.port);
        self.wait_healthy().await;
    }

    fn direct(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn create_post(&self, title: &str) -> Value {
        let r = http()
            .post(self.direct("/api/collections/posts/records"))
            .json(&json!({ "title": title }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "create post: {r:?}");
        r.json().await.unwrap()
    }

    async fn patch_settings(&self, settings: Value) {
        let r = http()
            .patch(self.direct("/api/settings"))
            .header("Authorization", &self.token)
            .json(&settings)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "patch settings: {r:?}");
    }
}

/// One embedded proxy on 127.0.0.1:0, shut down when dropped.
struct Proxy {
    router: ProxyRouter,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Proxy {
    async fn start(config: ProxyConfig) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = ProxyRouter::new(config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = router.clone();
        let served = tokio::spawn(async move {
            serving
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
        });
        Proxy {
            router,
            addr,
            stop: Some(stop),
            served: Some(served),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, host: &str, path: &str) -> reqwest::RequestBuilder {
        http().get(self.url(path)).header("Host", host)
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            tokio::time::timeout(LIMIT, served)
                .await
                .expect("the proxy stops in time")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn route(name: &str, port: u16) -> Route {
    Route {
        name: InstanceName::parse(name).unwrap(),
        port,
        hosts: vec![format!("{name}.localhost")],
        max_body_bytes: 10_000_000,
        read_timeout: DEFAULT_READ_TIMEOUT,
        available: true,
        held: false,
        asleep: false,
    }
}

/// A `multipart/form-data` record with a title and a file.
fn multipart(title: &str, file_name: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "pockestrator-test-boundary-7d3f";
    let mut body = Vec::with_capacity(content.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{title}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"{file_name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Bytes that are not all the same, so a shuffled or truncated download
/// shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) % 251) as u8).collect()
}

/// A server-sent event stream read event by event.
struct Events {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: String,
}

impl Events {
    fn new(response: reqwest::Response) -> Events {
        Events {
            stream: Box::pin(response.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event's name and data, or a panic once `deadline` passes.
    async fn next(&mut self, deadline: Instant) -> (String, String) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                return (name, data);
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("an event before the deadline")
                .expect("the stream is still open")
                .unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Wait for an event named `name`, skipping others.
    async fn wait_for(&mut self, name: &str, deadline: Instant) -> Value {
        loop {
            let (event, data) = self.next(deadline).await;
            if event == name {
                return serde_json::from_str(&data).unwrap();
            }
        }
    }
}

/// Open `/api/realtime` through the proxy for `host`, subscribe to
/// `posts`, and return the stream.
async fn subscribe_posts(proxy: &Proxy, host: &str) -> Events {
    let response = proxy.get(host, "/api/realtime").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut events = Events::new(response);
    let connect = events.wait_for("PB_CONNECT", Instant::now() + LIMIT).await;
    let client_id = connect["clientId"].as_str().unwrap().to_string();
    let subscribed = http()
        .post(proxy.url("/api/realtime"))
        .header("Host", host)
        .json(&json!({"clientId": client_id, "subscriptions": ["posts"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(subscribed.status(), 204, "subscribe through the proxy");
    events
}

async fn list_titles(proxy: &Proxy, host: &str) -> Vec<String> {
    let r = proxy
        .get(host, "/api/collections/posts/records")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "list through the proxy for {host}");
    let list: Value = r.json().await.unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_string())
        .collect()
}

/// Send raw bytes to the proxy and read until the connection closes.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut out))
        .await
        .expect("the proxy answers and closes")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_each_host_to_its_own_instance() {
    let (alpha, beta) = tokio::join!(PocketBase::start(), PocketBase::start());
    alpha.create_post("from alpha").await;
    beta.create_post("from beta").await;
    let proxy = Proxy::start(ProxyConfig::default()).await;
    proxy.router.put(&route("alpha", alpha.port)).await.unwrap();
    let mut beta_route = route("beta", beta.port);
    beta_route.hosts.push("beta.example.com".to_string());
    proxy.router.put(&beta_route).await.unwrap();

    assert_eq!(list_titles(&proxy, "alpha.localhost").await, ["from alpha"]);
    assert_eq!(list_titles(&proxy, "beta.localhost").await, ["from beta"]);
    // A custom domain, a port in the Host header and uppercase all route.
    assert_eq!(list_titles(&proxy, "beta.example.com").await, ["from beta"]);
    assert_eq!(
        list_titles(&proxy, "ALPHA.LocalHost:8080").await,
        ["from alpha"]
    );
    assert_eq!(
        list_titles(&proxy, "Beta.Example.COM.:80").await,
        ["from beta"]
    );

    let names: Vec<String> = proxy
        .router
        .routes()
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_events_flow_through_the_proxy() {
    let pb = PocketBase::start().await;
    let proxy = Proxy::start(ProxyConfig::default()).await;
    proxy.router.put(&route("live", pb.port)).await.unwrap();

    let mut events = subscribe_posts(&proxy, "live.localhost").await;
    for title in ["first", "second"] {
        let created = pb.create_post(title).await;
        let event = events.wait_for("posts", Instant::now() + LIMIT).await;
        assert_eq!(event["action"], "create");
        assert_eq!(event["record"]["id"], created["id"]);
        assert_eq!(event["record"]["title"], title);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_refuses_large_uploads_and_large_files_stream() {
    let pb = PocketBase::start().await;
    let proxy = Proxy::start(ProxyConfig::default()).await;
    let mut small = route("files", pb.port);
    small.max_body_bytes = 1_000_000;
    proxy.router.put(&small).await.unwrap();
    let upload = |body: (String, Vec<u8>)| {
        http()
            .post(proxy.url("/api/collections/posts/records"))
            .header("Host", "files.localhost")
            .header("Content-Type", body.0)
            .body(body.1)
            .send()
    };

    // Content-Length over the limit: refused before PocketBase sees it.
    let refused = upload(multipart("big", "big.bin", &pattern(1_500_000)))
        .await
        .unwrap();
    assert_eq!(refused.status(), 413);
    // Under it: created.
    let accepted = upload(multipart("small", "small.bin", &pattern(900_000)))
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);

    // A chunked body (no Content-Length) that grows past the limit is cut
    // off and answered 413.
    let (content_type, body) = multipart("chunked", "chunked.bin", &pattern(2_000_000));
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let refused = http()
        .post(proxy.url("/api/collections/posts/records"))
        .header("Host", "files.localhost")
        .header("Content-Type", content_type)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 413);
    assert_eq!(list_titles(&proxy, "files.localhost").await, ["small"]);

    // The per-instance limit raised: several megabytes up and down again.
    let mut large = route("files", pb.port);
    large.max_body_bytes = 20_000_000;
    proxy.router.put(&large).await.unwrap();
    let content = pattern(6_000_000);
    let created = upload(multipart("large", "large.bin", &content))
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let record: Value = created.json().await.unwrap();
    let path = format!(
        "/api/files/posts/{}/{}",
        record["id"].as_str().unwrap(),
        record["doc"].as_str().unwrap()
    );
    let download = proxy.get("files.localhost", &path).send().await.unwrap();
    assert_eq!(download.status(), 200);
    let mut received = Vec::with_capacity(content.len());
    let mut stream = download.bytes_stream();
    while let Some(chunk) = stream.next().await {
        received.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(received.len(), content.len());
    assert!(
        received == content,
        "the download is the upload, byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_forwarded_for_does_not_reach_pocketbase() {
    let pb = PocketBase::start().await;
    let proxy = Proxy::start(ProxyConfig::default()).await;
    proxy.router.put(&route("ip", pb.port)).await.unwrap();
    let real_ip = |proxy: &Proxy, spoof: &'static str| {
        proxy
            .get("ip.localhost", "/api/health")
            .header("Authorization", &pb.token)
            .header("X-Forwarded-For", spoof)
            .header("X-Real-IP", spoof)
            .send()
    };
    let read = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        let health: Value = r.json().await.unwrap();
        health["data"]["realIP"].as_str().unwrap().to_string()
    };

    // PocketBase believes the rightmost X-Forwarded-For entry.
    pb.patch_settings(
        json!({"trustedProxy": {"headers": ["X-Forwarded-For"], "useLeftmostIP": false}}),
    )
    .await;
    assert_eq!(
        read(real_ip(&proxy, "6.6.6.6").await.unwrap()).await,
        "127.0.0.1"
    );
    // Even the leftmost entry is ours: the client's header was dropped.
    pb.patch_settings(
        json!({"trustedProxy": {"headers": ["X-Forwarded-For"], "useLeftmostIP": true}}),
    )
    .await;
    assert_eq!(
        read(real_ip(&proxy, "6.6.6.6").await.unwrap()).await,
        "127.0.0.1"
    );
    // And X-Real-IP is ours too.
    pb.patch_settings(json!({"trustedProxy": {"headers": ["X-Real-IP"], "useLeftmostIP": false}}))
        .await;
    assert_eq!(
        read(real_ip(&proxy, "6.6.6.6").await.unwrap()).await,
        "127.0.0.1"
    );

    // Behind a trusted proxy (the test itself, on 127.0.0.1), the client's
    // chain is kept and appended to.
    let trusting = Proxy::start(ProxyConfig {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..ProxyConfig::default()
    })
    .await;
    trusting.router.put(&route("ip", pb.port)).await.unwrap();
    assert_eq!(
        read(real_ip(&trusting, "6.6.6.6").await.unwrap()).await,
        "6.6.6.6"
    );
    pb.patch_settings(
        json!({"trustedProxy": {"headers": ["X-Forwarded-For"], "useLeftmostIP": true}}),
    )
    .await;
    assert_eq!(
        read(real_ip(&trusting, "6.6.6.6").await.unwrap()).await,
        "6.6.6.6"
    );
    pb.patch_settings(
        json!({"trustedProxy": {"headers": ["X-Forwarded-For"], "useLeftmostIP": false}}),
    )
    .await;
    assert_eq!(
        read(real_ip(&trusting, "6.6.6.6").await.unwrap()).await,
        "127.0.0.1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_answers_for_what_it_cannot_route() {
    let pb = PocketBase::start().await;
    let proxy = Proxy::start(ProxyConfig {
        retry_after_secs: 7,
        ..ProxyConfig::default()
    })
    .await;
    proxy.router.put(&route("up", pb.port)).await.unwrap();
    let mut stopped = route("stopped", pb.port);
    stopped.available = false;
    proxy.router.put(&stopped).await.unwrap();
    proxy.router.put(&route("gone", free_port())).await.unwrap();

    // Unknown host: 404 naming it.
    let r = proxy
        .get("nobody.localhost:8080", "/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("<code>nobody.localhost:8080</code>"));
    // The host is attacker-controlled: it comes back escaped.
    let r = proxy
        .get("<script>alert(1)</script>.localhost", "/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let page = r.text().await.unwrap();
    assert!(!page.contains("<script>"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;.localhost"),
        "{page}"
    );

    // Stopped or starting: 503 with Retry-After.
    let r = proxy
        .get("stopped.localhost", "/api/health")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "7");
    // Nothing listens on the upstream port: 502.
    let r = proxy
        .get("gone.localhost", "/api/health")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    // The healthy one answers all along.
    let r = proxy
        .get("up.localhost", "/api/health")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // No Host at all: 400 (HTTP/1.1 and HTTP/1.0).
    let answer = raw_exchange(
        proxy.addr,
        b"GET /api/health HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = raw_exchange(proxy.addr, b"GET /api/health HTTP/1.0\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.0 400") || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    // An absolute-form request routes by its authority.
    let answer = raw_exchange(
        proxy.addr,
        b"GET http://up.localhost/api/health HTTP/1.1\r\nHost: nobody.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_gets_504() {
    // A listener that accepts and then says nothing: the failure path of a
    // hung instance, which a real PocketBase cannot be made to show.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let proxy = Proxy::start(ProxyConfig::default()).await;
    let mut hung = route("hung", silent_port);
    hung.read_timeout = Duration::from_millis(300);
    proxy.router.put(&hung).await.unwrap();
    let started = Instant::now();
    let r = proxy.get("hung.localhost", "/").send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_changes_do_not_disturb_requests_in_flight() {
    let (alpha, beta) = tokio::join!(PocketBase::start(), PocketBase::start());
    let proxy = Proxy::start(ProxyConfig::default()).await;
    proxy.router.put(&route("alpha", alpha.port)).await.unwrap();
    let mut events = subscribe_posts(&proxy, "alpha.localhost").await;

    // Churn the table while requests to alpha keep going.
    let churn = {
        let router = proxy.router.clone();
        let beta_port = beta.port;
        tokio::spawn(async move {
            for i in 0..300 {
                let name = format!("churn-{}", i % 7);
                router.put(&route(&name, beta_port)).await.unwrap();
                if i % 3 == 0 {
                    router
                        .remove(&InstanceName::parse(&name).unwrap())
                        .await
                        .unwrap();
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut requests = 0;
    while !churn.is_finished() || requests < 20 {
        let r = proxy
            .get("alpha.localhost", "/api/health")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "alpha answers while routes change");
        requests += 1;
    }
    churn.await.unwrap();

    // The stream opened before all that still delivers.
    let created = alpha.create_post("after churn").await;
    let event = events.wait_for("posts", Instant::now() + LIMIT).await;
    assert_eq!(event["record"]["id"], created["id"]);

    // Removed: new requests get 404, the open stream keeps flowing.
    proxy
        .router
        .remove(&InstanceName::parse("alpha").unwrap())
        .await
        .unwrap();
    let r = proxy
        .get("alpha.localhost", "/api/health")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let created = alpha.create_post("after remove").await;
    let event = events.wait_for("posts", Instant::now() + LIMIT).await;
    assert_eq!(event["record"]["id"], created["id"]);
}

/// An upstream that switches protocols and then echoes bytes.
///
/// PocketBase has no WebSocket endpoint (its realtime API is server-sent
/// events), so this tiny hyper server is the only way to see an upgrade
/// pass through the proxy.
async fn start_upgrade_echo() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(
                    |mut request: hyper::Request<hyper::body::Incoming>| async move {
                        let mut response = hyper::Response::new(Empty::<Bytes>::new());
                        if request.headers().get("upgrade").is_none() {
                            return Ok::<_, std::convert::Infallible>(response);
                        }
                        let upgrade = hyper::upgrade::on(&mut request);
                        tokio::spawn(async move {
                            let Ok(upgraded) = upgrade.await else { return };
                            let mut io = TokioIo::new(upgraded);
                            let mut buf = [0u8; 1024];
                            loop {
                                match io.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => {
                                        if io.write_all(&buf[..n]).await.is_err() {
                                            return;
                                        }
                                    }
                                }
                            }
                        });
                        *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
                        response
                            .headers_mut()
                            .insert("upgrade", "websocket".parse().unwrap());
                        response
                            .headers_mut()
                            .insert("connection", "Upgrade".parse().unwrap());
                        response
                            .headers_mut()
                            .insert("x-saw-key", request.headers()["sec-websocket-key"].clone());
                        Ok(response)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_pass() {
    let (echo_port, echo) = start_upgrade_echo().await;
    let proxy = Proxy::start(ProxyConfig::default()).await;
    proxy.router.put(&route("ws", echo_port)).await.unwrap();

    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(
            b"GET /socket HTTP/1.1\r\nHost: ws.localhost\r\nConnection: Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout_at(deadline, stream.read_exact(&mut byte))
            .await
            .expect("the 101 before the deadline")
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(
        head.contains("x-saw-key: dghlihnhbxbszsbub25jzq=="),
        "{head}"
    );

    for message in [&b"hello through the proxy"[..], &[0u8, 1, 2, 255, 254][..]] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(LIMIT, stream.read_exact(&mut echoed))
            .await
            .expect("the echo before the deadline")
            .unwrap();
        assert_eq!(echoed, message);
    }
    drop(stream);
    proxy.shutdown().await;
    echo.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_without_tls_routes_by_authority() {
    let pb = PocketBase::start().await;
    let proxy = Proxy::start(ProxyConfig::default()).await;
    proxy.router.put(&route("two", pb.port)).await.unwrap();
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get("http://two.localhost/api/health")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(LIMIT, sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(std::str::from_utf8(&body)
        .unwrap()
        .contains("API is healthy"));
    drop(sender);
    driver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_and_check_through_the_router_seam() {
    let proxy = ProxyRouter::new(ProxyConfig::default());
    proxy.put(&route("blog", 8091)).await.unwrap();
    proxy.put(&route("old", 8092)).await.unwrap();
    let mut blog = route("blog", 8095);
    blog.hosts.push("blog.example.com".to_string());
    let desired = vec![blog.clone(), route("shop", 8093)];

    let drift = proxy.check(&desired).await.unwrap();
    let kinds: Vec<(&str, Option<&str>)> = drift
        .iter()
        .map(|d| (d.kind.as_str(), d.instance.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("changed", Some("blog")),
            ("missing", Some("shop")),
            ("stale", None)
        ]
    );
    // check changes nothing.
    assert_eq!(proxy.routes().len(), 2);

    let report = proxy.reconcile(&desired).await.unwrap();
    assert_eq!(report.added, ["shop"]);
    assert_eq!(report.updated, ["blog"]);
    assert_eq!(report.removed, ["old"]);
    assert_eq!(proxy.routes(), [blog.clone(), route("shop", 8093)]);
    assert!(proxy.check(&desired).await.unwrap().is_empty());
    let again = proxy.reconcile(&desired).await.unwrap();
    assert!(again.added.is_empty() && again.updated.is_empty() && again.removed.is_empty());

    let hash = proxy.render_hash(&blog);
    assert_eq!(hash.len(), 64);
    assert_eq!(hash, proxy.render_hash(&blog.clone()));
    assert_ne!(hash, proxy.render_hash(&route("blog", 8095)));
    // Removing what is not there is fine.
    proxy
        .remove(&InstanceName::parse("nothing").unwrap())
        .await
        .unwrap();
}

/// An upstream that answers every request after `delay`, and says when a
/// request has arrived.
///
/// A stand-in for an instance busy with a slow request: PocketBase cannot
/// be made to take its time on cue.
async fn start_slow_upstream(
    delay: Duration,
) -> (
    u16,
    tokio::sync::mpsc::Receiver<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (arrived, arrivals) = tokio::sync::mpsc::channel(8);
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let arrived = arrived.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = arrived.send(()).await;
                tokio::time::sleep(delay).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow",
                    )
                    .await;
            });
        }
    });
    (port, arrivals, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let (slow_port, mut arrivals, slow) = start_slow_upstream(Duration::from_millis(700)).await;
    let proxy = Proxy::start(ProxyConfig::default()).await;
    proxy.router.put(&route("slow", slow_port)).await.unwrap();
    let addr = proxy.addr;

    let in_flight = tokio::spawn(proxy.get("slow.localhost", "/").send());
    tokio::time::timeout(LIMIT, arrivals.recv())
        .await
        .expect("the request reaches the upstream")
        .unwrap();
    let started = Instant::now();
    proxy.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited for the request only"
    );

    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "slow");
    // The listener is gone.
    assert!(TcpStream::connect(addr).await.is_err());
    slow.abort();
}

/// A small HTTP/1.1 upstream on a given port: answers every request
/// `200 <label>` over keep-alive connections and counts the requests it
/// got. [`Upstream::stop`] closes its listener and every connection, as a
/// process that exits does, so that a new one can take the port.
///
/// Where a test needs to know exactly which process got which request (and
/// that none got any while held), which PocketBase does not tell.
struct Upstream {
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start(port: u16, label: &'static str) -> Upstream {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = tokio_util::sync::CancellationToken::new();
        let task = {
            let requests = requests.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut connections = tokio::task::JoinSet::new();
                loop {
                    let stream = tokio::select! {
                        () = stop.cancelled() => break,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => break,
                        },
                    };
                    let requests = requests.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |_request| {
                            requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            async move {
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                    Bytes::from_static(label.as_bytes()),
                                )))
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                drop(listener);
                connections.shutdown().await;
            })
        };
        Upstream {
            requests,
            stop,
            task,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn stop(mut self) {
        self.stop.cancel();
        tokio::time::timeout(LIMIT, &mut self.task)
            .await
            .expect("the upstream stops in time")
            .unwrap();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn held(mut route: Route) -> Route {
    route.held = true;
    route.available = false;
    route
}

/// A GET through `proxy` for `host`, answered with its status and body.
async fn status_and_text(
    client: &reqwest::Client,
    proxy: &Proxy,
    host: &str,
) -> (u16, String, Option<String>) {
    let response = tokio::time::timeout(
        LIMIT,
        client
            .get(proxy.url("/api/health"))
            .header("Host", host)
            .send(),
    )
    .await
    .expect("an answer before the limit")
    .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, response.text().await.unwrap(), retry_after)
}

async fn wait_held(proxy: &Proxy, count: usize) {
    wait_until(LIMIT, &format!("{count} held requests"), || {
        let held = proxy.router.held_requests();
        async move { (held == count).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_requests_wait_for_the_new_process_on_the_same_port() {
    let port = quiet_port();
    let old = Upstream::start(port, "old").await;
    let proxy = Proxy::start(ProxyConfig::default()).await;
    proxy.router.put(&route("switch", port)).await.unwrap();

    // Keep-alive connections to the old process in the proxy's pool.
    let client = http();
    let warm_up = futures::future::join_all(
        (0..4).map(|_| status_and_text(&client, &proxy, "switch.localhost")),
    )
    .await;
    for answer in warm_up {
        assert_eq!((answer.0, answer.1.as_str()), (200, "old"));
    }
    let before_hold = old.requests();
    assert_eq!(before_hold, 4);

    proxy
        .router
        .put(&held(route("switch", port)))
        .await
        .unwrap();
    let waiting: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let url = proxy.url("/api/health");
            tokio::spawn(async move {
                let r = client
                    .get(url)
                    .header("Host", "switch.localhost")
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    wait_held(&proxy, 8).await;

    // The switch: the old process goes, a new one takes the port.
    old.stop().await;
    let new = Upstream::start(port, "new").await;
    assert!(waiting.iter().all(|w| !w.is_finished()));
    assert_eq!(new.requests(), 0, "nothing reached the upstream while held");

    proxy.router.put(&route("switch", port)).await.unwrap();
    for answer in waiting {
        let (status, body) = tokio::time::timeout(LIMIT, answer)
            .await
            .expect("held requests are answered once the route is available")
            .unwrap();
        assert_eq!((status, body.as_str()), (200, "new"));
    }
    assert_eq!(new.requests(), 8);
    assert_eq!(proxy.router.held_requests(), 0);
    // And requests sent now, over whatever the pool holds, reach the new
    // process too.
    let after = futures::future::join_all(
        (0..4).map(|_| status_and_text(&client, &proxy, "switch.localhost")),
    )
    .await;
    for answer in after {
        assert_eq!((answer.0, answer.1.as_str()), (200, "new"));
    }
    proxy.shutdown().await;
    new.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_pocketbase_is_switched_behind_a_held_route() {
    let mut pb = PocketBase::start_on(quiet_port()).await;
    pb.create_post("kept across the switch").await;
    let proxy = Proxy::start(ProxyConfig::default()).await;
    proxy.router.put(&route("live", pb.port)).await.unwrap();

    // Four clients, each on its own keep-alive connection, one request
    // after the other until told to stop.
    let stop = tokio_util::sync::CancellationToken::new();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            let answered = answered.clone();
            let url = proxy.url("/api/collections/posts/records");
            tokio::spawn(async move {
                let client = http();
                let mut failures = Vec::new();
                while !stop.is_cancelled() {
                    match client
                        .get(&url)
                        .header("Host", "live.localhost")
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => match r.json::<Value>().await {
                            Ok(list) if list["totalItems"] == 1 => {}
                            other => failures.push(format!("200 with {other:?}")),
                        },
                        Ok(r) => failures.push(format!("status {}", r.status())),
                        Err(e) => failures.push(format!("{e:#}")),
                    }
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                failures
            })
        })
        .collect();
    let answered_now = || answered.load(std::sync::atomic::Ordering::SeqCst);
    let wait_for_more = |n: usize| {
        let from = answered_now();
        let answered = answered.clone();
        async move {
            wait_until(LIMIT, &format!("{n} more answers"), || {
                let count = answered.load(std::sync::atomic::Ordering::SeqCst);
                async move { (count >= from + n).then_some(()) }
            })
            .await;
        }
    };

    for _ in 0..2 {
        wait_for_more(40).await;
        // Held, and at once the process is stopped: requests it is
        // answering finish, new ones wait in the proxy.
        proxy
            .router
            .put(&held(route("live", pb.port)))
            .await
            .unwrap();
        pb.stop_and_start_again().await;
        // Every client's request waits now, the new process answers.
        wait_held(&proxy, 4).await;
        proxy.router.put(&route("live", pb.port)).await.unwrap();
    }
    wait_for_more(40).await;
    stop.cancel();
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(
            tokio::time::timeout(LIMIT, client)
                .await
                .expect("the clients stop")
                .unwrap(),
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}",
        failures.len(),
        answered_now()
    );
    assert_eq!(proxy.router.held_requests(), 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_past_its_limit_is_answered_503() {
    let port = free_port();
    let upstream = Upstream::start(port, "up").await;
    let hold_timeout = Duration::from_millis(300);
    let proxy = Proxy::start(ProxyConfig {
        hold_timeout,
        retry_after_secs: 3,
        ..ProxyConfig::default()
    })
    .await;
    proxy.router.put(&held(route("stuck", port))).await.unwrap();

    let client = http();
    let started = Instant::now();
    let (status, _, retry_after) = status_and_text(&client, &proxy, "stuck.localhost").await;
    assert_eq!(status, 503);
    assert_eq!(retry_after.as_deref(), Some("3"));
    // It was held, for the limit: the proxy's timer does not fire early.
    assert!(started.elapsed() >= hold_timeout);
    assert_eq!(upstream.requests(), 0);
    assert_eq!(proxy.router.held_requests(), 0);

    // Available again: answered at once.
    proxy.router.put(&route("stuck", port)).await.unwrap();
    let (status, body, _) = status_and_text(&client, &proxy, "stuck.localhost").await;
    assert_eq!((status, body.as_str()), (200, "up"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_max_held_are_answered_503_at_once() {
    let port = free_port();
    let upstream = Upstream::start(port, "up").await;
    let proxy = Proxy::start(ProxyConfig {
        max_held: 2,
        ..ProxyConfig::default()
    })
    .await;
    proxy.router.put(&held(route("busy", port))).await.unwrap();

    let client = http();
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            let url = proxy.url("/");
            tokio::spawn(async move {
                let r = client
                    .get(url)
                    .header("Host", "busy.localhost")
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    wait_held(&proxy, 2).await;
    let (status, _, retry_after) = status_and_text(&client, &proxy, "busy.localhost").await;
    assert_eq!(status, 503);
    assert!(retry_after.is_some());
    // The two that wait still do.
    assert_eq!(proxy.router.held_requests(), 2);
    assert!(waiting.iter().all(|w| !w.is_finished()));

    proxy.router.put(&route("busy", port)).await.unwrap();
    for answer in waiting {
        let answer = tokio::time::timeout(LIMIT, answer).await.unwrap().unwrap();
        assert_eq!((answer.0, answer.1.as_str()), (200, "up"));
    }
    assert_eq!(upstream.requests(), 2);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_route_that_is_removed_or_stopped_answers_as_such() {
    let port = free_port();
    let upstream = Upstream::start(port, "up").await;
    let proxy = Proxy::start(ProxyConfig {
        retry_after_secs: 9,
        ..ProxyConfig::default()
    })
    .await;
    proxy.router.put(&held(route("gone", port))).await.unwrap();
    proxy.router.put(&held(route("down", port))).await.unwrap();
    proxy.router.put(&held(route("other", port))).await.unwrap();
    let send = |host: &'static str| {
        let client = http();
        let url = proxy.url("/");
        tokio::spawn(async move {
            let r = client.get(url).header("Host", host).send().await.unwrap();
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), retry_after, r.text().await.unwrap())
        })
    };
    let gone = send("gone.localhost");
    let down = send("down.localhost");
    let other = send("other.localhost");
    wait_held(&proxy, 3).await;

    // Removed: the unknown-host page; the others keep waiting.
    proxy
        .router
        .remove(&InstanceName::parse("gone").unwrap())
        .await
        .unwrap();
    let (status, _, page) = tokio::time::timeout(LIMIT, gone).await.unwrap().unwrap();
    assert_eq!(status, 404);
    assert!(page.contains("<code>gone.localhost</code>"), "{page}");
    wait_held(&proxy, 2).await;

    // No longer held but not available (the switch failed, the instance
    // is stopped): 503 as for any stopped instance.
    let mut stopped = route("down", port);
    stopped.available = false;
    proxy.router.put(&stopped).await.unwrap();
    let (status, retry_after, _) = tokio::time::timeout(LIMIT, down).await.unwrap().unwrap();
    assert_eq!((status, retry_after.as_deref()), (503, Some("9")));
    wait_held(&proxy, 1).await;
    assert!(!other.is_finished());

    // Shutdown begins: the last one is answered 503 rather than kept.
    proxy.shutdown().await;
    let (status, _, _) = tokio::time::timeout(LIMIT, other).await.unwrap().unwrap();
    assert_eq!(status, 503);
    assert_eq!(upstream.requests(), 0);
}

/// An upstream that answers the first request on each connection and keeps
/// the connection open, then closes it without a word when the next
/// request arrives: a keep-alive connection that goes away just as the
/// proxy sends a request on it (a process stopped behind its port, or one
/// closing idle connections). Counts the requests it answered and those
/// it cut off.
struct ClosingAfterOne {
    port: u16,
    answered: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    cut: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ClosingAfterOne {
    async fn start() -> ClosingAfterOne {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = {
            let (answered, cut) = (answered.clone(), cut.clone());
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let (answered, cut) = (answered.clone(), cut.clone());
                    tokio::spawn(async move {
                        if read_request(&mut stream).await.is_none() {
                            return;
                        }
                        answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
                            .await
                            .is_err()
                        {
                            return;
                        }
                        // The next request's head, and the connection is gone.
                        if read_request(&mut stream).await.is_some() {
                            cut.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    });
                }
            })
        };
        ClosingAfterOne {
            port,
            answered,
            cut,
            task,
        }
    }

    fn answered(&self) -> usize {
        self.answered.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn cut(&self) -> usize {
        self.cut.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for ClosingAfterOne {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Read one HTTP/1.1 request (head, and a body of `Content-Length` bytes);
/// `None` if the connection closes first.
async fn read_request(stream: &mut TcpStream) -> Option<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut have = head.len() - end;
    while have < length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => have += n,
        }
    }
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bodiless_get_on_a_keep_alive_connection_that_closes_is_sent_again() {
    let upstream = ClosingAfterOne::start().await;
    let proxy = Proxy::start(ProxyConfig::default()).await;
    proxy
        .router
        .put(&route("flaky", upstream.port))
        .await
        .unwrap();
    let client = http();

    // Each answer leaves a pooled connection that the next request is sent
    // on (unless the pool has not got it back yet); that connection closes
    // under it, and the request goes again on a new one.
    let mut sent = 0;
    while upstream.cut() < 3 {
        assert!(sent < 100, "the pool never reused a connection");
        let (status, body, _) = status_and_text(&client, &proxy, "flaky.localhost").await;
        assert_eq!((status, body.as_str()), (200, "first"));
        sent += 1;
    }
    assert_eq!(upstream.answered(), sent);

    // A request with a body is never sent twice: on such a connection it
    // is a 502.
    let answered_before = upstream.answered();
    let mut accepted = 0;
    loop {
        assert!(accepted < 100, "the pool never reused a connection");
        let r = client
            .post(proxy.url("/"))
            .header("Host", "flaky.localhost")
            .body("a body")
            .send()
            .await
            .unwrap();
        if r.status() == 502 {
            break;
        }
        assert_eq!(r.status(), 200);
        accepted += 1;
    }
    assert_eq!(upstream.answered(), answered_before + accepted);
    proxy.shutdown().await;
}
