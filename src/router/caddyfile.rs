//! Caddy managed by file (`serve --router caddyfile`), as seed 000's script
//! does it: one block per instance in the Caddyfile, between marker
//! comments, everything else in the file left byte-for-byte as it is.
//!
//! Every edit goes the same way: the new text is written to a temporary
//! file next to the Caddyfile, checked with `caddy validate`, renamed over
//! the Caddyfile (atomically, keeping its mode and owner), and Caddy is
//! reloaded. A file that does not validate never replaces the old one; a
//! failed reload puts the previous bytes back. The pure text work (render,
//! find and splice blocks) is in [`blocks`].

pub mod blocks;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use self::blocks::{
    parse_blocks, plan_file, render_block_at as render_block_checked, ManagedBlock,
};
use super::caddy::CaddyTls;
use super::{Drift, ReconcileReport, Route, Router, RouterError};
use crate::fsutil::{self, AtomicFile, Staged};
use crate::model::InstanceName;

/// How long `caddy validate` or the reload command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How much of a command's output goes into an error message (its end,
/// where Caddy prints the error).
const OUTPUT_IN_ERRORS: usize = 4000;
/// How often an edit is planned again when the file changed under it.
const EDIT_ATTEMPTS: usize = 3;
/// The mode of a Caddyfile this router creates.
const NEW_FILE_MODE: u32 = 0o644;
/// The first line of a Caddyfile this router creates. It also stands in
/// for a file that would otherwise end up empty: Caddy refuses an empty
/// Caddyfile, but accepts one with only comments.
pub const CREATED_HEADER: &str =
    "# Caddyfile created by pockestrator: the blocks between pockestrator markers are managed, the rest is yours\n";

/// Everything the Caddyfile router needs to know (from `serve` flags).
#[derive(Debug, Clone)]
pub struct CaddyfileConfig {
    /// The Caddyfile (`--caddyfile`, default `/etc/caddy/Caddyfile`).
    pub path: PathBuf,
    /// The caddy binary used for `caddy validate` (`--caddy-bin`).
    pub caddy_bin: PathBuf,
    /// How to reload Caddy (`--caddy-reload-cmd`); `None` runs
    /// `CADDY_BIN reload --config PATH --adapter caddyfile`.
    pub reload_cmd: Option<Vec<String>>,
    pub tls: CaddyTls,
    /// The port site addresses carry (`http://HOST:PORT`), when Caddy serves
    /// instances on a port other than the scheme's default.
    pub site_port: Option<u16>,
}

/// Caddy through managed blocks of its Caddyfile.
#[derive(Clone)]
pub struct CaddyfileRouter {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: CaddyfileConfig,
    /// One edit of the file at a time.
    lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for CaddyfileRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaddyfileRouter")
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

/// The Caddyfile as it is on disk.
struct Current {
    /// `None` when there is no file yet.
    bytes: Option<Vec<u8>>,
    text: String,
    blocks: Vec<ManagedBlock>,
}

impl CaddyfileRouter {
    pub fn new(cfg: CaddyfileConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn cfg(&self) -> &CaddyfileConfig {
        &self.inner.cfg
    }

    /// One instance's managed block, markers included (pure). For a route
    /// that [`Router::put`] refuses (a host that is not a plain hostname)
    /// the text is a single comment saying why, never the host itself.
    pub fn render_block(&self, route: &Route) -> String {
        match render_block_checked(route, self.cfg().tls, self.cfg().site_port) {
            Ok(block) => block,
            Err(e) => format!(
                "# pockestrator: not rendered: {}\n",
                one_line(&e.to_string())
            ),
        }
    }

    /// The same, or why it cannot be rendered.
    pub fn try_render_block(&self, route: &Route) -> Result<String, RouterError> {
        render_block_checked(route, self.cfg().tls, self.cfg().site_port)
    }

    /// The reload command as it will run.
    pub fn reload_command(&self) -> Vec<String> {
        let cfg = self.cfg();
        cfg.reload_cmd.clone().unwrap_or_else(|| {
            vec![
                cfg.caddy_bin.display().to_string(),
                "reload".into(),
                "--config".into(),
                cfg.path.display().to_string(),
                "--adapter".into(),
                "caddyfile".into(),
            ]
        })
    }

    fn io_error(&self, what: &str, source: std::io::Error) -> RouterError {
        RouterError::Io {
            context: format!("{what} {}", self.cfg().path.display()),
            source,
        }
    }

    async fn read(&self) -> Result<Current, RouterError> {
        let path = &self.cfg().path;
        let bytes = match tokio::fs::read(path).await {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io_error("cannot read", e)),
        };
        let text = match &bytes {
            None => CREATED_HEADER.to_string(),
            Some(b) => String::from_utf8(b.clone()).map_err(|_| {
                RouterError::Other(format!(
                    "{} is not UTF-8 text; a Caddyfile must be",
                    path.display()
                ))
            })?,
        };
        let blocks = parse_blocks(&text).map_err(|e| {
            RouterError::Other(format!(
                "the pockestrator markers in {} do not pair up ({e}); fix them by hand",
                path.display()
            ))
        })?;
        Ok(Current {
            bytes,
            text,
            blocks,
        })
    }

    /// Validate `new` in a temporary file next to the Caddyfile, put it in
    /// place and reload Caddy; restore `previous` if the reload fails.
    ///
    /// `Ok(false)` when the Caddyfile no longer holds `previous` (edited by
    /// hand meanwhile): nothing was replaced, the caller plans again.
    async fn replace_and_reload(
        &self,
        previous: Option<&[u8]>,
        new: &str,
    ) -> Result<bool, RouterError> {
        let path = self.cfg().path.clone();
        let temp = self.write_temp(new.as_bytes()).await?;
        let validate = vec![
            self.cfg().caddy_bin.display().to_string(),
            "validate".into(),
            "--config".into(),
            temp.path().display().to_string(),
            "--adapter".into(),
            "caddyfile".into(),
        ];
        let (ok, output) = run(&validate).await;
        if !ok {
            // The temporary file is removed on drop; the Caddyfile is untouched.
            return Err(RouterError::Invalid { output });
        }
        let now = match tokio::fs::read(&path).await {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io_error("cannot read", e)),
        };
        if now.as_deref() != previous {
            return Ok(false);
        }
        temp.persist(&path)
            .map_err(|e| self.io_error("cannot replace", e))?;
        sync_dir(&path);
        let (ok, output) = run(&self.reload_command()).await;
        if ok {
            return Ok(true);
        }
        let restored = match previous {
            Some(bytes) => match self.write_temp(bytes).await {
                Ok(t) => t.persist(&path).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            None => std::fs::remove_file(&path).map_err(|e| e.to_string()),
        };
        sync_dir(&path);
        let output = match restored {
            Ok(()) => output,
            Err(e) => format!(
                "{output}\nand the previous Caddyfile could not be restored: {e}; check {} by hand",
                path.display()
            ),
        };
        Err(RouterError::ReloadFailed { output })
    }

    /// A temporary file in the Caddyfile's directory (so that the rename is
    /// atomic and relative imports resolve alike) holding `bytes`, with the
    /// Caddyfile's mode and owner, synced.
    async fn write_temp(&self, bytes: &[u8]) -> Result<Staged, RouterError> {
        let path = self.cfg().path.clone();
        let bytes = bytes.to_vec();
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            std::fs::create_dir_all(&dir).map_err(|e| this.io_error("cannot create the directory of", e))?;
            let mut temp = AtomicFile::beside(&path)
                .map_err(|e| this.io_error("cannot create a temporary file next to", e))?;
            temp.write_all(&bytes)
                .map_err(|e| this.io_error("cannot write a temporary file next to", e))?;
            let (mode, owner) = match std::fs::metadata(&path) {
                Ok(m) => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
                Err(_) => (NEW_FILE_MODE, None),
            };
            temp.set_mode(mode)
                .map_err(|e| this.io_error("cannot set the mode of a temporary file next to", e))?;
            if let Some((uid, gid)) = owner {
                let meta = temp
                    .as_file()
                    .metadata()
                    .map_err(|e| this.io_error("cannot stat a temporary file next to", e))?;
                if (meta.uid(), meta.gid()) != (uid, gid) {
                    if let Err(e) = std::os::unix::fs::fchown(temp.as_file(), Some(uid), Some(gid)) {
                        tracing::warn!(
                            path = %path.display(), error = %e,
                            "cannot keep the owner of the Caddyfile; the new one belongs to the daemon's user"
                        );
                    }
                }
            }
            temp.finish()
                .map_err(|e| this.io_error("cannot write a temporary file next to", e))
        })
        .await
        .map_err(|e| RouterError::Other(format!("writing the Caddyfile failed: {e}")))?
    }

    /// Read, plan, and if anything changes write + validate + reload.
    async fn edit(
        &self,
        desired: &[(String, String)],
        stale: impl Fn(&str) -> bool,
    ) -> Result<ReconcileReport, RouterError> {
        let _guard = self.inner.lock.lock().await;
        for _ in 0..EDIT_ATTEMPTS {
            let current = self.read().await?;
            let mut plan = plan_file(&current.text, &current.blocks, desired, &stale);
            if plan.text.trim().is_empty() {
                plan.text = CREATED_HEADER.to_string();
            }
            let report = ReconcileReport {
                added: plan.added,
                updated: plan.updated,
                removed: plan.removed,
            };
            if plan.text == current.text {
                return Ok(report);
            }
            if self
                .replace_and_reload(current.bytes.as_deref(), &plan.text)
                .await?
            {
                tracing::info!(
                    path = %self.cfg().path.display(),
                    added = ?report.added, updated = ?report.updated, removed = ?report.removed,
                    "Caddyfile updated and caddy reloaded"
                );
                return Ok(report);
            }
            tracing::debug!(path = %self.cfg().path.display(), "the Caddyfile changed while being edited; planning again");
        }
        Err(RouterError::Other(format!(
            "{} kept changing while pockestrator edited it; try again",
            self.cfg().path.display()
        )))
    }
}

impl Router for CaddyfileRouter {
    async fn put(&self, route: &Route) -> Result<(), RouterError> {
        let block = self.try_render_block(route)?;
        self.edit(&[(route.name.as_str().to_string(), block)], |_| false)
            .await
            .map(|_| ())
    }

    async fn remove(&self, name: &InstanceName) -> Result<(), RouterError> {
        self.edit(&[], |n| n == name.as_str()).await.map(|_| ())
    }

    async fn reconcile(&self, routes: &[Route]) -> Result<ReconcileReport, RouterError> {
        let desired = routes
            .iter()
            .map(|r| Ok((r.name.as_str().to_string(), self.try_render_block(r)?)))
            .collect::<Result<Vec<_>, RouterError>>()?;
        self.edit(&desired, |_| true).await
    }

    async fn check(&self, routes: &[Route]) -> Result<Vec<Drift>, RouterError> {
        let current = self.read().await?;
        let desired: Vec<(String, String)> = routes
            .iter()
            .map(|r| (r.name.as_str().to_string(), self.render_block(r)))
            .collect();
        Ok(blocks::drifts(&current.text, &current.blocks, &desired))
    }

    fn render_hash(&self, route: &Route) -> String {
        hex::encode(Sha256::digest(self.render_block(route).as_bytes()))
    }
}

/// Run a command; whether it succeeded, and its output (stderr and stdout,
/// the end of it when long).
async fn run(argv: &[String]) -> (bool, String) {
    let Some((program, args)) = argv.split_first() else {
        return (false, "the command is empty".into());
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let shown_cmd = argv.join(" ");
    match tokio::time::timeout(COMMAND_TIMEOUT, child).await {
        Err(_) => (
            false,
            format!("`{shown_cmd}` did not finish within {COMMAND_TIMEOUT:?}"),
        ),
        Ok(Err(e)) => (false, format!("cannot run `{shown_cmd}`: {e}")),
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !stdout.trim().is_empty() {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&stdout);
            }
            let text = tail(text.trim(), OUTPUT_IN_ERRORS);
            if out.status.success() {
                (true, text)
            } else {
                (
                    false,
                    format!("`{shown_cmd}` failed ({}): {text}", out.status),
                )
            }
        }
    }
}

/// The last `limit` characters of `text`.
fn tail(text: &str, limit: usize) -> String {
    let count = text.chars().count();
    if count <= limit {
        return text.to_string();
    }
    let skipped: String = text.chars().skip(count - limit).collect();
    format!("…{skipped}")
}

/// Collapse a message to one line (for a Caddyfile comment).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Make a rename in the Caddyfile's directory durable (best effort).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = fsutil::sync_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(hosts: &[&str]) -> Route {
        Route {
            name: InstanceName::parse("a").unwrap(),
            port: 8091,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            max_body_bytes: crate::router::DEFAULT_MAX_BODY_BYTES,
            read_timeout: crate::router::DEFAULT_READ_TIMEOUT,
            available: true,
            held: false,
            asleep: false,
        }
    }

    fn router(reload_cmd: Option<Vec<String>>) -> CaddyfileRouter {
        CaddyfileRouter::new(CaddyfileConfig {
            path: "/etc/caddy/Caddyfile".into(),
            caddy_bin: "caddy".into(),
            reload_cmd,
            tls: CaddyTls::Auto,
            site_port: None,
        })
    }

    #[test]
    fn default_reload_command() {
        assert_eq!(
            router(None).reload_command().join(" "),
            "caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile"
        );
        let custom = vec!["systemctl".to_string(), "reload".into(), "caddy".into()];
        assert_eq!(router(Some(custom.clone())).reload_command(), custom);
    }

    #[test]
    fn refused_routes_render_as_one_comment_line() {
        let r = router(None);
        let text = r.render_block(&route(&["a.example.com\n}\nevil {"]));
        assert_eq!(text.lines().count(), 1);
        assert!(text.starts_with("# pockestrator: not rendered: refusing to route host"));
        assert!(!text.contains('\r') && text.matches('\n').count() == 1);
        assert!(r.try_render_block(&route(&["a.example.com}"])).is_err());
        assert_ne!(
            r.render_hash(&route(&["a.example.com"])),
            r.render_hash(&route(&["b.example.com"]))
        );
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("abcdef", 3), "…def");
        assert_eq!(tail("abc", 3), "abc");
    }
}
