//! The build runner of deploys: one command of a build (`npm ci`, `npm
//! run build`, `go build`) in a workspace of its own, as an unprivileged
//! user, with a time limit, a memory limit and a size limit, its output
//! appended to the deploy's log.
//!
//! A command runs without a shell, in a new session (so that the whole
//! process group can be killed), with an environment made from nothing:
//! `PATH`, a `HOME`, `TMPDIR` and caches inside the workspace, and only
//! the proxy and registry settings of the daemon's own environment. The
//! daemon's credentials never reach it. While it runs, a watchdog adds up
//! the resident memory of the session's processes and the size of the
//! workspace, and kills the session when either passes its limit;
//! `RLIMIT_FSIZE` stops a single file from passing the size limit.
//!
//! When the daemon runs as root, builds run as `--build-user` (`nobody`
//! unless told otherwise) in a workspace under `--build-dir` that this
//! user owns; otherwise as the daemon's own user.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub use crate::config::BuildLimits;

/// Who builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl BuildUser {
    /// Look a user up by name.
    pub fn lookup(name: &str) -> Result<Self, BuildError> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok(Self {
                name: name.to_string(),
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            }),
            _ => Err(BuildError::Setup(format!(
                "the build user {name} does not exist: create it (useradd --system {name}) or pass another --build-user"
            ))),
        }
    }
}

/// How builds run on this host.
#[derive(Debug, Clone)]
pub struct Builder {
    /// `None`: as the daemon's own user.
    pub user: Option<BuildUser>,
    /// Workspaces are made under this directory.
    pub root: PathBuf,
    pub limits: BuildLimits,
    /// The Go toolchain's `go`, if one was given or found.
    pub go: Option<PathBuf>,
}

/// Why a build command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Setup(String),
    #[error("{program} is not installed (or not on the PATH): {hint}")]
    Missing { program: String, hint: String },
    #[error("`{command}` exited with {status}")]
    Failed { command: String, status: String },
    #[error("the build did not finish within its time limit of {}s (`{command}` was killed)", limit.as_secs())]
    Timeout { command: String, limit: Duration },
    #[error("`{command}` used more than the build's memory limit of {} (it was killed)", crate::procstat::human_bytes(*limit))]
    Memory { command: String, limit: u64 },
    #[error("the build grew past its size limit of {} (`{command}` was killed)", crate::procstat::human_bytes(*limit))]
    TooBig { command: String, limit: u64 },
    #[error("the disk is full: the build could not write its files")]
    DiskFull,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// A workspace: a directory owned by the build user, removed when dropped.
#[derive(Debug)]
pub struct Workspace {
    pub dir: PathBuf,
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove a build workspace");
            }
        }
    }
}

/// Variables of the daemon's environment a build may see: proxies and
/// package registries, nothing else.
const PASSED_ENV: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "GOPROXY",
    "GONOSUMDB",
    "GONOSUMCHECK",
    "GOPRIVATE",
    "GOFLAGS",
    "GOSUMDB",
    "npm_config_registry",
    "NPM_CONFIG_REGISTRY",
    "SSL_CERT_FILE",
];

impl Builder {
    /// A fresh workspace for one build: `ROOT/NAME-ID-RANDOM`, mode 0700,
    /// owned by the build user; its parents must be passable by that user.
    pub fn workspace(&self, label: &str) -> Result<Workspace, BuildError> {
        let io = |context: String| move |source| BuildError::Io { context, source };
        std::fs::create_dir_all(&self.root)
            .map_err(io(format!("cannot create {}", self.root.display())))?;
        if self.user.is_some() {
            use std::os::unix::fs::PermissionsExt as _;
            // Others may pass, not list: each workspace is its owner's.
            std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o711)).map_err(
                io(format!("cannot set the mode of {}", self.root.display())),
            )?;
            self.check_reachable(&self.root)?;
        }
        let dir = self
            .root
            .join(format!("{label}-{:08x}", rand::random::<u32>()));
        std::fs::create_dir(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let ws = Workspace { dir };
        for sub in [".home", ".tmp"] {
            std::fs::create_dir(ws.dir.join(sub))
                .map_err(io(format!("cannot create {}", ws.dir.display())))?;
        }
        self.give(&ws.dir)?;
        Ok(ws)
    }

    /// Remove the workspaces builds left behind when the daemon stopped
    /// (at its start, when no build runs): only directories named as
    /// [`Self::workspace`] names them, whatever else `--build-dir` holds.
    pub fn remove_stale_workspaces(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(is_workspace_name) {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    tracing::warn!(dir = %e.path().display(), error = %err, "cannot remove a stale build workspace");
                }
            }
        }
    }

    /// Hand a tree to the build user (nothing to do when builds run as
    /// the daemon's user).
    pub fn give(&self, dir: &Path) -> Result<(), BuildError> {
        if let Some(user) = &self.user {
            crate::runtime::systemd::chown_tree(
                dir,
                nix::unistd::Uid::from_raw(user.uid),
                nix::unistd::Gid::from_raw(user.gid),
            )
            .map_err(|source| BuildError::Io {
                context: format!("cannot give {} to the build user", dir.display()),
                source,
            })?;
        }
        Ok(())
    }

    /// Every directory above `dir` must let the build user pass.
    fn check_reachable(&self, dir: &Path) -> Result<(), BuildError> {
        use std::os::unix::fs::MetadataExt as _;
        let Some(user) = &self.user else {
            return Ok(());
        };
        let mut at = Some(dir);
        while let Some(d) = at {
            if let Ok(meta) = std::fs::metadata(d) {
                let mode = meta.mode();
                let passable = if meta.uid() == user.uid {
                    mode & 0o100 != 0
                } else if meta.gid() == user.gid {
                    mode & 0o010 != 0
                } else {
                    mode & 0o001 != 0
                };
                if !passable {
                    return Err(BuildError::Setup(format!(
                        "the build user {} cannot pass through {} (mode {:o}): pass a --build-dir it can reach",
                        user.name,
                        d.display(),
                        mode & 0o7777
                    )));
                }
            }
            at = d.parent();
        }
        Ok(())
    }

    /// The environment of a build command in `ws`.
    fn env(&self, ws: &Path) -> Vec<(String, OsString)> {
        let mut path = Vec::new();
        if let Some(go) = &self.go {
            if let Some(bin) = go.parent() {
                path.push(bin.to_path_buf());
            }
        }
        let inherited = std::env::var_os("PATH")
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| crate::runtime::DEFAULT_PATH.into());
        path.extend(std::env::split_paths(&inherited));
        let mut env: Vec<(String, OsString)> = vec![
            (
                "PATH".into(),
                std::env::join_paths(path).unwrap_or(inherited),
            ),
            ("HOME".into(), ws.join(".home").into()),
            ("TMPDIR".into(), ws.join(".tmp").into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("CI".into(), "true".into()),
            ("npm_config_cache".into(), ws.join(".home/.npm").into()),
            ("npm_config_update_notifier".into(), "false".into()),
            ("npm_config_fund".into(), "false".into()),
            ("npm_config_audit".into(), "false".into()),
            ("GOCACHE".into(), ws.join(".home/go-build").into()),
            ("GOPATH".into(), ws.join(".home/go").into()),
            ("GOTOOLCHAIN".into(), "local".into()),
            ("CGO_ENABLED".into(), "0".into()),
        ];
        if let Some(root) = self.go.as_deref().and_then(goroot) {
            env.push(("GOROOT".into(), root.into()));
        }
        for name in PASSED_ENV {
            if let Some(v) = std::env::var_os(name) {
                env.push(((*name).to_string(), v));
            }
        }
        env
    }

    /// Run one command in `cwd` (inside `ws`), its output appended to
    /// `log`, within what is left of the build's time (`deadline`).
    pub async fn run(
        &self,
        ws: &Workspace,
        cwd: &Path,
        argv: &[String],
        extra_env: &[(String, String)],
        log: &Path,
        deadline: tokio::time::Instant,
    ) -> Result<(), BuildError> {
        let command_text = argv.join(" ");
        let Some((program, args)) = argv.split_first() else {
            return Err(BuildError::Setup("an empty build command".into()));
        };
        let program_path = if program == "go" {
            self.go.clone().unwrap_or_else(|| PathBuf::from("go"))
        } else {
            PathBuf::from(program)
        };
        let out = open_log(log)?;
        let err = out.try_clone().map_err(|source| BuildError::Io {
            context: "cannot share the deploy log".into(),
            source,
        })?;
        let mut cmd = tokio::process::Command::new(&program_path);
        cmd.args(args)
            .env_clear()
            .envs(self.env(&ws.dir))
            .envs(
                extra_env
                    .iter()
                    .map(|(k, v)| (k.clone(), OsString::from(v))),
            )
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        if let Some(user) = &self.user {
            cmd.uid(user.uid).gid(user.gid);
        }
        let fsize = self.limits.max_size_bytes;
        // SAFETY: async-signal-safe calls only (setsid, setrlimit).
        unsafe {
            cmd.as_std_mut().pre_exec(move || {
                nix::unistd::setsid()?;
                nix::sys::resource::setrlimit(
                    nix::sys::resource::Resource::RLIMIT_FSIZE,
                    fsize,
                    fsize,
                )?;
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)?;
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BuildError::Missing {
                program: program.clone(),
                hint: hint_for(program),
            },
            _ => BuildError::Io {
                context: format!("cannot run {program}"),
                source: e,
            },
        })?;
        let pid = child.id().unwrap_or(0) as i32;
        let kill = || {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        };
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut ticks: u64 = 0;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status.map_err(|source| BuildError::Io {
                    context: format!("waiting for {program}"),
                    source,
                })?,
                () = tokio::time::sleep_until(deadline) => {
                    kill();
                    let _ = child.wait().await;
                    return Err(BuildError::Timeout { command: command_text, limit: self.limits.timeout });
                }
                _ = tick.tick() => {
                    ticks += 1;
                    let rss = group_rss(pid);
                    if rss > self.limits.memory_bytes {
                        kill();
                        let _ = child.wait().await;
                        return Err(BuildError::Memory { command: command_text, limit: self.limits.memory_bytes });
                    }
                    // The workspace's size every second.
                    if ticks % 4 == 0 {
                        let dir = ws.dir.clone();
                        let size = tokio::task::spawn_blocking(move || tree_size(&dir)).await.unwrap_or(0);
                        if size > self.limits.max_size_bytes {
                            kill();
                            let _ = child.wait().await;
                            return Err(BuildError::TooBig { command: command_text, limit: self.limits.max_size_bytes });
                        }
                    }
                }
            }
        };
        // Whatever the command left running in its session goes with it.
        kill();
        if status.success() {
            let dir = ws.dir.clone();
            let size = tokio::task::spawn_blocking(move || tree_size(&dir))
                .await
                .unwrap_or(0);
            if size > self.limits.max_size_bytes {
                return Err(BuildError::TooBig {
                    command: command_text,
                    limit: self.limits.max_size_bytes,
                });
            }
            return Ok(());
        }
        use std::os::unix::process::ExitStatusExt as _;
        let xfsz = nix::sys::signal::Signal::SIGXFSZ as i32;
        // A file stopped at the size limit: the command died of SIGXFSZ
        // (or its shell said so with 128 + SIGXFSZ).
        if status.signal() == Some(xfsz) || status.code() == Some(128 + xfsz) {
            return Err(BuildError::TooBig {
                command: command_text,
                limit: self.limits.max_size_bytes,
            });
        }
        if disk_full(&ws.dir) {
            return Err(BuildError::DiskFull);
        }
        Err(BuildError::Failed {
            command: command_text,
            status: match (status.code(), status.signal()) {
                (Some(code), _) => format!("status {code}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => "an unknown status".into(),
            },
        })
    }
}

/// Whether a directory name is one [`Builder::workspace`] makes for a
/// deploy: `INSTANCE-ID-XXXXXXXX`.
fn is_workspace_name(name: &str) -> bool {
    let Some((label, random)) = name.rsplit_once('-') else {
        return false;
    };
    let Some((instance, id)) = label.rsplit_once('-') else {
        return false;
    };
    random.len() == 8
        && random
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        && crate::model::DeployId::parse(id).is_ok()
        && crate::model::InstanceName::parse(instance).is_ok()
}

/// `GOROOT` of a toolchain's `go` (`ROOT/bin/go`), when it looks like one.
fn goroot(go: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(go).ok()?;
    let root = real.parent()?.parent()?;
    root.join("src")
        .join("runtime")
        .is_dir()
        .then(|| root.to_path_buf())
}

fn hint_for(program: &str) -> String {
    match program {
        "npm" | "node" | "npx" => "install Node.js and npm (e.g. apt-get install npm)".into(),
        "go" => "install Go 1.21 or newer and pass serve --go PATH, or put go on the daemon's PATH"
            .into(),
        _ => "install it on the host, or change build.commands in pockestrator.toml".into(),
    }
}

/// Open (append, create) the deploy log.
pub fn open_log(log: &Path) -> Result<std::fs::File, BuildError> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|source| BuildError::Io {
            context: format!("cannot create {}", dir.display()),
            source,
        })?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| BuildError::Io {
            context: format!("cannot open {}", log.display()),
            source,
        })
}

/// The resident memory of every process in the session `sid` leads.
fn group_rss(sid: i32) -> u64 {
    let page = rustix::param::page_size() as u64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        match crate::procstat::read_stat_line(pid) {
            Some(stat) if stat.pgrp == sid => {}
            _ => continue,
        }
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/statm")) {
            total += crate::procstat::parse_statm_rss(&text, page).unwrap_or(0);
        }
    }
    total
}

/// The bytes a tree holds (allocated blocks; symlinks not followed).
pub fn tree_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

fn disk_full(dir: &Path) -> bool {
    nix::sys::statvfs::statvfs(dir)
        .is_ok_and(|fs| fs.blocks_available().saturating_mul(fs.fragment_size()) < 64 * 1024)
}

/// Copy (or move, when on one filesystem) a tree built in a workspace
/// into its release: regular files, directories and symlinks that stay
/// inside; everything else refused. The copy belongs to the daemon.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = from.symlink_metadata()?;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.is_file() {
        std::fs::copy(from, to)?;
        let mode = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
    } else if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from)?;
        if target.is_absolute()
            || target
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(std::io::Error::other(format!(
                "{} is a symbolic link out of the build",
                from.display()
            )));
        }
        std::os::unix::fs::symlink(target, to)
    } else {
        Err(std::io::Error::other(format!(
            "{} is neither a file, a directory nor a symbolic link",
            from.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(root: &Path, limits: BuildLimits) -> Builder {
        Builder {
            user: None,
            root: root.to_path_buf(),
            limits,
            go: None,
        }
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    async fn run(b: &Builder, words: &[&str]) -> (Result<(), BuildError>, String) {
        let ws = b.workspace("t").unwrap();
        let log = ws.dir.join("log");
        let deadline = tokio::time::Instant::now() + b.limits.timeout;
        let result = b.run(&ws, &ws.dir, &argv(words), &[], &log, deadline).await;
        (result, std::fs::read_to_string(&log).unwrap_or_default())
    }

    #[tokio::test]
    async fn output_goes_to_the_log_and_the_environment_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("POCKESTRATOR_TEST_SECRET_IN_DAEMON", "x");
        let b = builder(dir.path(), BuildLimits::default());
        let (result, log) = run(&b, &["sh", "-c", "echo hello; env; echo oops >&2"]).await;
        result.unwrap();
        assert!(log.contains("hello") && log.contains("oops"), "{log}");
        assert!(log.contains("GOTOOLCHAIN=local"), "{log}");
        assert!(!log.contains("POCKESTRATOR_TEST_SECRET_IN_DAEMON"), "{log}");
        assert!(!log.contains("AWS_"), "{log}");
    }

    #[tokio::test]
    async fn failures_say_what_failed() {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path(), BuildLimits::default());
        let (result, _) = run(&b, &["sh", "-c", "exit 3"]).await;
        let err = result.unwrap_err().to_string();
        assert_eq!(err, "`sh -c exit 3` exited with status 3");
        let (result, _) = run(&b, &["no-such-build-tool-here"]).await;
        assert!(
            matches!(result, Err(BuildError::Missing { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_hanging_build_is_killed_at_its_time_limit_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        // Long enough for the shell to start and fork on a loaded machine:
        // the test is about what the limit kills, not how soon.
        let limits = BuildLimits {
            timeout: Duration::from_secs(3),
            ..BuildLimits::default()
        };
        let b = builder(dir.path(), limits);
        let marker = dir.path().join("child-pid");
        let script = format!("sleep 1000 & echo $! > {}; wait", marker.display());
        let (result, _) = run(&b, &["sh", "-c", &script]).await;
        assert!(
            matches!(result, Err(BuildError::Timeout { .. })),
            "{result:?}"
        );
        let child: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background child went with the session.
        let mut gone = false;
        for _ in 0..200 {
            let state = crate::procstat::read_stat_line(child as u32).map(|s| s.state);
            if matches!(state, None | Some('Z')) {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(gone, "the build's child {child} survived");
    }

    #[tokio::test]
    async fn memory_and_size_limits_kill_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let limits = BuildLimits {
            memory_bytes: 64 << 20,
            ..BuildLimits::default()
        };
        let b = builder(dir.path(), limits);
        // A shell holding a 200 MB string.
        let (result, _) = run(
            &b,
            &[
                "sh",
                "-c",
                "x=$(head -c 200000000 /dev/zero | tr '\\0' a); sleep 5",
            ],
        )
        .await;
        assert!(
            matches!(result, Err(BuildError::Memory { .. })),
            "{result:?}"
        );

        let limits = BuildLimits {
            max_size_bytes: 1 << 20,
            ..BuildLimits::default()
        };
        let b = builder(dir.path(), limits);
        let (result, _) = run(&b, &["sh", "-c", "head -c 5000000 /dev/zero > big"]).await;
        assert!(
            matches!(result, Err(BuildError::TooBig { .. })),
            "{result:?}"
        );
        let (result, _) = run(
            &b,
            &[
                "sh",
                "-c",
                "for i in 1 2 3 4 5 6; do head -c 300000 /dev/zero > f$i; done",
            ],
        )
        .await;
        assert!(
            matches!(result, Err(BuildError::TooBig { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn only_our_workspaces_count_as_stale() {
        for ours in ["blog-3-0a1b2c3d", "my-app-12-ffffffff"] {
            assert!(is_workspace_name(ours), "{ours}");
        }
        for theirs in [
            "blog",
            "blog-3",
            "blog-x-0a1b2c3d",
            "blog-3-0A1B2C3D",
            "blog-3-0a1b2c",
            "Blog-3-0a1b2c3d",
            ".home",
        ] {
            assert!(!is_workspace_name(theirs), "{theirs}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("blog-3-0a1b2c3d")).unwrap();
        std::fs::create_dir(dir.path().join("someone-elses")).unwrap();
        builder(dir.path(), BuildLimits::default()).remove_stale_workspaces();
        assert!(!dir.path().join("blog-3-0a1b2c3d").exists());
        assert!(dir.path().join("someone-elses").exists());
    }

    #[test]
    fn copies_refuse_links_out() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::create_dir_all(from.join("a")).unwrap();
        std::fs::write(from.join("a/file"), "x").unwrap();
        std::os::unix::fs::symlink("file", from.join("a/link")).unwrap();
        copy_tree(&from, &dir.path().join("to")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("to/a/link")).unwrap(),
            "x"
        );
        std::os::unix::fs::symlink("/etc/passwd", from.join("out")).unwrap();
        assert!(copy_tree(&from, &dir.path().join("to2")).is_err());
    }
}
