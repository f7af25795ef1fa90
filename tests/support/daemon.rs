//! A real `pockestrator serve` in a temp data dir, driven over its TCP API
//! and its CLI, with helpers to kill and restart it. The daemon can also run
//! inside another root and namespaces ([`Inside`], e.g. a
//! [`super::systemd_host::SystemdHost`]).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::wait_until;

pub const BIN: &str = env!("CARGO_BIN_EXE_pockestrator");

/// Where a daemon runs when it is not a plain child of the test: the
/// command prefix that enters the other root's namespaces, and its data dir
/// as the daemon sees it and as the test reaches it.
pub struct Inside {
    pub enter: Vec<std::ffi::OsString>,
    pub data_dir: PathBuf,
    pub data_dir_here: PathBuf,
}

/// One daemon process and its data dir. Dropping it kills the daemon and
/// every instance it started (inside another root, the instances are that
/// root's to end).
pub struct Daemon {
    /// The data dir, and the daemon's log; with [`Inside`] the log only.
    pub dir: tempfile::TempDir,
    inside: Option<Inside>,
    pub addr: SocketAddr,
    /// The embedded proxy, when the daemon runs one.
    pub proxy: Option<SocketAddr>,
    pub token: String,
    child: Option<Child>,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    pub http: reqwest::Client,
}

impl Daemon {
    /// A daemon whose releases come from the local mirror.
    pub async fn start() -> Daemon {
        Self::start_with(&[], &[]).await
    }

    pub async fn start_with(extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_in(None, extra, env).await
    }

    /// A daemon run inside another root (see [`Inside`]).
    pub async fn start_inside(inside: Inside, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_in(Some(inside), extra, env).await
    }

    async fn start_in(inside: Option<Inside>, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("pk")
            .tempdir_in("/tmp")
            .unwrap();
        let mut daemon = Daemon {
            dir,
            inside,
            addr: "127.0.0.1:0".parse().unwrap(),
            proxy: None,
            token: String::new(),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        };
        daemon.spawn().await;
        daemon
    }

    /// The data dir, as the test reaches it.
    pub fn data_dir(&self) -> &Path {
        match &self.inside {
            Some(inside) => &inside.data_dir_here,
            None => self.dir.path(),
        }
    }

    /// The data dir, as the daemon sees it.
    fn daemon_data_dir(&self) -> &Path {
        match &self.inside {
            Some(inside) => &inside.data_dir,
            None => self.dir.path(),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// The daemon's own output so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let start_len = log.metadata().unwrap().len() as usize;
        let mirror = super::mirror_dir();
        let mut cmd = match &self.inside {
            Some(inside) => {
                let mut cmd = Command::new(&inside.enter[0]);
                // nsenter forks the daemon and does not pass signals on:
                // the group takes them both.
                cmd.args(&inside.enter[1..]).arg(BIN).process_group(0);
                cmd
            }
            None => Command::new(BIN),
        };
        cmd.arg("--data-dir")
            .arg(self.daemon_data_dir())
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--release-source")
            .arg(&mirror)
            .args(if self.extra.iter().any(|a| a == "--health-interval") {
                &[][..]
            } else {
                &["--health-interval", "1s"][..]
            })
            .args(
                if self
                    .extra
                    .iter()
                    .any(|a| a == "--proxy-listen" || a == "--router")
                {
                    &[][..]
                } else {
                    &["--proxy-listen", "127.0.0.1:0"][..]
                },
            )
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env("POCKESTRATOR_LOG", "info,pockestrator=debug");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn pockestrator serve"));
        // Until the daemon names its API address; a daemon that exits first
        // fails the test at once with what it logged, not after a timeout.
        let log_path = self.log_path();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let addr: SocketAddr = loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let since = text.get(start_len..).unwrap_or_default();
            let addr = since
                .lines()
                .find(|l| l.contains("API on http://"))
                .and_then(|line| {
                    line.split("http://")
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                });
            if let Some(addr) = addr {
                break addr;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the daemon exited ({status}) before it named its API address; it logged:\n{since}");
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "timed out after 30s waiting for the daemon's API address; it logged:\n{since}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.addr = addr;
        let ready = self.log_path();
        wait_until(Duration::from_secs(60), "the daemon to be ready", || {
            let ready = ready.clone();
            async move {
                let text = std::fs::read_to_string(&ready).ok()?;
                text.get(start_len..)?
                    .contains("pockestrator is ready")
                    .then_some(())
            }
        })
        .await;
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        self.proxy = text.get(start_len..).and_then(|t| {
            let line = t.lines().find(|l| l.contains("proxy on http://"))?;
            line.split("http://")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });
        self.token = std::fs::read_to_string(self.data_dir().join("token"))
            .unwrap()
            .trim()
            .to_string();
    }

    /// SIGKILL the daemon (its instances keep running).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.inside.is_some() {
                // The group is the child's own and the child is not reaped
                // yet, so the id cannot name anyone else's group.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM the daemon and wait for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        if self.inside.is_some() {
            nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        } else {
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        }
        child.wait().unwrap()
    }

    /// Start the daemon again on the same data dir.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// A dashboard page, as a browser signed in with the admin token gets
    /// it: the status and the HTML.
    pub async fn ui_get(&self, path: &str) -> (u16, String) {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = http
            .post(self.url("/ui/login"))
            .form(&[("token", self.token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303, "sign-in");
        let cookie = resp.headers()[reqwest::header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let resp = http
            .get(self.url(path))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// An API call with the token; returns the status and the JSON body.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}\n{}", self.log()));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.api(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.api(reqwest::Method::POST, path, Some(body)).await
    }

    /// The audit log of one instance as `(action, result)`, newest first.
    pub async fn audit(&self, name: &str) -> Vec<(String, String)> {
        let (_, events) = self.get(&format!("/api/v1/events?instance={name}")).await;
        events["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap().to_string(),
                    e["result"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Run the CLI against this daemon (over its unix socket).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, None)
    }

    pub fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("POCKESTRATOR_URL")
            .env_remove("POCKESTRATOR_TOKEN")
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Run the CLI and parse its `--json` output; panics with stderr on failure.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "pockestrator {args:?} failed: {}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Wait until the instance shows `status` with a pid (if running).
    pub async fn wait_status(&self, name: &str, status: &str) -> Value {
        wait_until(
            Duration::from_secs(30),
            &format!("{name} to be {status}"),
            || async {
                let (code, v) = self.get(&format!("/api/v1/instances/{name}")).await;
                (code == 200 && v["status"] == status).then_some(v)
            },
        )
        .await
    }

    /// PIDs recorded in the instances' pidfiles (none inside another root:
    /// its PIDs are not this machine's).
    pub fn instance_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        if self.inside.is_some() {
            return pids;
        }
        for root in [
            self.dir.path().join("instances"),
            self.dir.path().join("user_dbs"),
        ] {
            let Ok(entries) = std::fs::read_dir(root) else {
                continue;
            };
            for entry in entries.flatten() {
                if let Ok(text) = std::fs::read_to_string(entry.path().join("pocketbase.pid")) {
                    if let Some(pid) = text.split_whitespace().next().and_then(|p| p.parse().ok()) {
                        pids.push(pid);
                    }
                }
            }
        }
        pids
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        // Litestream outlives the daemon too (one for the host).
        let pid = std::fs::read_to_string(self.dir.path().join("replication/litestream.pid"))
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(|p| p.parse().ok()));
        if let Some(pid) = pid {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for pid in self.instance_pids() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Authenticate as a superuser against PocketBase's own API (≥ 0.23).
pub async fn superuser_auth(http: &reqwest::Client, port: u64, email: &str, password: &str) -> u16 {
    http.post(format!(
        "http://127.0.0.1:{port}/api/collections/_superusers/auth-with-password"
    ))
    .json(&serde_json::json!({"identity": email, "password": password}))
    .send()
    .await
    .map(|r| r.status().as_u16())
    .unwrap_or(0)
}
