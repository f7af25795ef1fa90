//! The adapter to `git` for deploys: fetch one branch's newest commit,
//! shallow, into a bare cache repository per instance, and check a commit
//! out into a release directory of its own.
//!
//! Every value on a command line is a parsed [`crate::model::git`] value,
//! and git itself is hardened around them: remote helpers and unknown
//! protocols are off (`GIT_ALLOW_PROTOCOL`), `file://` repositories only
//! from the directories allowed, no prompt for credentials (a missing one
//! is an error, never a hang), no system or user configuration, no hooks,
//! and each command has a time limit. A checkout is `git archive` unpacked
//! member by member: absolute paths, `..`, and symlinks that leave the
//! release are refused, so a repository cannot write outside its release.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::model::{BranchName, CommitId, RepoUrl, Transport};

/// What went wrong talking to git.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git is not installed (or not on the PATH): install it, e.g. `apt-get install git`")]
    Missing,
    #[error("{0} is not in a directory that local repositories may come from (see `serve --git-allow-dir`)")]
    NotAllowed(String),
    #[error("git {what} did not finish within {limit:?}")]
    Timeout { what: &'static str, limit: Duration },
    #[error("git {what} failed: {stderr}")]
    Failed { what: &'static str, stderr: String },
    #[error("branch {branch} does not exist in {repo}")]
    NoBranch { repo: String, branch: String },
    #[error("the repository holds {member}, which {why}: nothing was checked out")]
    BadMember { member: String, why: &'static str },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, GitError>;

/// How git is run: where local repositories may come from, and how long a
/// fetch may take.
#[derive(Debug, Clone)]
pub struct Git {
    pub program: PathBuf,
    /// Directories `file://` repositories may be under (empty: none).
    pub allowed_dirs: Vec<PathBuf>,
    pub fetch_timeout: Duration,
    /// An HTTPS token for the repository (a file, mode 0600): sent as
    /// HTTP basic authentication (`x-access-token:TOKEN`, which GitHub,
    /// Gitea and GitLab accept) through git's environment, never on its
    /// command line.
    pub token_file: Option<PathBuf>,
    /// An SSH deploy key (a file, mode 0600) for `ssh://` repositories.
    pub ssh_key_file: Option<PathBuf>,
}

impl Default for Git {
    fn default() -> Self {
        Self {
            program: PathBuf::from("git"),
            allowed_dirs: Vec::new(),
            fetch_timeout: Duration::from_secs(300),
            token_file: None,
            ssh_key_file: None,
        }
    }
}

/// The ref a fetch leaves its commit under in the cache.
const FETCHED: &str = "refs/pockestrator/fetched";

impl Git {
    /// A `git` command with nothing from the environment that changes what
    /// it does: no configuration files, no prompts, only the protocols we
    /// allow.
    fn command(&self, transport: Option<Transport>) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", "/nonexistent")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .env("SSH_ASKPASS", "/bin/false")
            .env(
                "GIT_SSH_COMMAND",
                "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
            )
            .env(
                "GIT_ALLOW_PROTOCOL",
                match transport {
                    Some(Transport::File) => "file",
                    Some(Transport::Http) => "https:http",
                    Some(Transport::Ssh) => "ssh",
                    None => "",
                },
            )
            .env("LC_ALL", "C")
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "protocol.ext.allow=never",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match transport {
            Some(Transport::Http) => {
                if let Some(token) = self.token() {
                    use base64::Engine as _;
                    let basic = base64::engine::general_purpose::STANDARD
                        .encode(format!("x-access-token:{token}"));
                    cmd.env("GIT_CONFIG_COUNT", "1")
                        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                        .env(
                            "GIT_CONFIG_VALUE_0",
                            format!("Authorization: Basic {basic}"),
                        );
                }
            }
            Some(Transport::Ssh) => {
                if let Some(key) = &self.ssh_key_file {
                    let known = key.with_file_name("known_hosts");
                    cmd.env(
                        "GIT_SSH_COMMAND",
                        format!(
                            "ssh -i '{}' -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile='{}'",
                            key.display(),
                            known.display()
                        ),
                    );
                }
            }
            _ => {}
        }
        cmd
    }

    /// The token, read when it is needed (one line, trimmed).
    fn token(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.token_file.as_ref()?).ok()?;
        let token = text.trim().to_string();
        (!token.is_empty()).then_some(token)
    }

    async fn run(
        &self,
        mut cmd: tokio::process::Command,
        what: &'static str,
        limit: Duration,
    ) -> Result<Vec<u8>> {
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => GitError::Missing,
            _ => GitError::Io {
                context: format!("cannot run git {what}"),
                source: e,
            },
        })?;
        let output = tokio::time::timeout(limit, child.wait_with_output())
            .await
            .map_err(|_| GitError::Timeout { what, limit })?
            .map_err(|source| GitError::Io {
                context: format!("git {what}"),
                source,
            })?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr: String = stderr.trim().chars().take(2000).collect();
            Err(GitError::Failed { what, stderr })
        }
    }

    /// Refuse a local repository outside the allowed directories.
    pub fn check_allowed(&self, url: &RepoUrl) -> Result<()> {
        let Some(path) = url.local_path() else {
            return Ok(());
        };
        let real = std::fs::canonicalize(path).map_err(|source| GitError::Io {
            context: format!("cannot open the repository {path}"),
            source,
        })?;
        let allowed = self.allowed_dirs.iter().any(|dir| {
            std::fs::canonicalize(dir)
                .map(|dir| real.starts_with(dir))
                .unwrap_or(false)
        });
        if allowed {
            Ok(())
        } else {
            Err(GitError::NotAllowed(path.to_string()))
        }
    }

    /// Fetch the newest commit of `branch` from `url`, shallow, into the
    /// bare repository `cache` (made if missing). Returns the commit.
    pub async fn fetch(
        &self,
        cache: &Path,
        url: &RepoUrl,
        branch: &BranchName,
    ) -> Result<CommitId> {
        self.check_allowed(url)?;
        if !cache.join("HEAD").exists() {
            std::fs::create_dir_all(cache).map_err(|source| GitError::Io {
                context: format!("cannot create {}", cache.display()),
                source,
            })?;
            let mut init = self.command(None);
            init.arg("init")
                .arg("--bare")
                .arg("--quiet")
                .arg("--")
                .arg(cache);
            self.run(init, "init", Duration::from_secs(30)).await?;
        }
        let mut fetch = self.command(Some(url.transport()));
        fetch
            .arg("--git-dir")
            .arg(cache)
            .args([
                "fetch",
                "--quiet",
                "--depth=1",
                "--no-tags",
                "--force",
                "--",
            ])
            .arg(url.as_str())
            .arg(format!("+refs/heads/{branch}:{FETCHED}"));
        match self.run(fetch, "fetch", self.fetch_timeout).await {
            Err(GitError::Failed { stderr, .. }) if stderr.contains("couldn't find remote ref") => {
                return Err(GitError::NoBranch {
                    repo: url.to_string(),
                    branch: branch.to_string(),
                })
            }
            other => other?,
        };
        self.resolve(cache, FETCHED).await
    }

    /// The commit a ref of the cache points to.
    async fn resolve(&self, cache: &Path, reference: &str) -> Result<CommitId> {
        let mut rev = self.command(None);
        rev.arg("--git-dir")
            .arg(cache)
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{reference}^{{commit}}"));
        let out = self.run(rev, "rev-parse", Duration::from_secs(30)).await?;
        let text = String::from_utf8_lossy(&out);
        CommitId::parse(text.trim()).map_err(|_| GitError::Failed {
            what: "rev-parse",
            stderr: format!("unexpected answer {:?}", text.trim()),
        })
    }

    /// Check `commit` out of the cache into `dest` (which must not exist):
    /// its tree, no `.git`.
    pub async fn checkout(&self, cache: &Path, commit: &CommitId, dest: &Path) -> Result<()> {
        let mut archive = self.command(None);
        archive
            .arg("--git-dir")
            .arg(cache)
            .args(["archive", "--format=tar", "--end-of-options"])
            .arg(commit.as_str());
        let tar = self
            .run(archive, "archive", Duration::from_secs(300))
            .await?;
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || unpack(&tar, &dest))
            .await
            .map_err(|e| GitError::Io {
                context: "checkout task".to_string(),
                source: std::io::Error::other(e),
            })?
    }
}

/// Unpack `git archive`'s tar into `dest`, member by member, refusing any
/// that would land outside it.
fn unpack(tar: &[u8], dest: &Path) -> Result<()> {
    let io = |context: String| move |source| GitError::Io { context, source };
    std::fs::create_dir(dest).map_err(io(format!("cannot create {}", dest.display())))?;
    let result = (|| {
        let mut archive = tar::Archive::new(tar);
        let entries = archive
            .entries()
            .map_err(io("cannot read git's archive".to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(io("cannot read git's archive".to_string()))?;
            let path = entry
                .path()
                .map_err(io("a member's name".to_string()))?
                .into_owned();
            let shown = path.display().to_string();
            let bad = |why| GitError::BadMember {
                member: crate::model::names::shown(&shown),
                why,
            };
            if !path
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
            {
                return Err(bad("is absolute or climbs out with '..'"));
            }
            if path.components().any(|c| c.as_os_str() == ".git") {
                return Err(bad("is inside a .git directory"));
            }
            let target = dest.join(&path);
            let kind = entry.header().entry_type();
            match kind {
                tar::EntryType::Directory => {
                    std::fs::create_dir_all(&target)
                        .map_err(io(format!("cannot create {shown}")))?;
                }
                tar::EntryType::Regular => {
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(io(format!("cannot create {shown}")))?;
                    }
                    let executable = entry
                        .header()
                        .mode()
                        .map(|m| m & 0o111 != 0)
                        .unwrap_or(false);
                    let mut data = Vec::new();
                    entry
                        .read_to_end(&mut data)
                        .map_err(io(format!("cannot read {shown}")))?;
                    std::fs::write(&target, &data).map_err(io(format!("cannot write {shown}")))?;
                    if executable {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                            .map_err(io(format!("cannot mark {shown} executable")))?;
                    }
                }
                tar::EntryType::Symlink => {
                    let link = entry
                        .link_name()
                        .map_err(io(format!("the link {shown}")))?
                        .ok_or_else(|| bad("is a link to nothing"))?
                        .into_owned();
                    if !symlink_stays_inside(&path, &link) {
                        return Err(bad("is a symbolic link that points outside the repository"));
                    }
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(io(format!("cannot create {shown}")))?;
                    }
                    std::os::unix::fs::symlink(&link, &target)
                        .map_err(io(format!("cannot create the link {shown}")))?;
                }
                // git archive's pax header carries the commit id.
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
                _ => return Err(bad("is neither a file, a directory nor a symbolic link")),
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(dest);
    }
    result
}

/// Whether a relative symlink at `path` pointing to `link` stays inside
/// the tree (absolute targets never do).
fn symlink_stays_inside(path: &Path, link: &Path) -> bool {
    if link.is_absolute() {
        return false;
    }
    let mut depth: i64 = path.components().count() as i64 - 1;
    for c in link.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real repository with one commit on `main`.
    fn repo(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .current_dir(&work)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        git(&["init", "--quiet", "-b", "main"]);
        for (name, body) in files {
            let path = work.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        git(&["add", "-A"]);
        git(&["commit", "--quiet", "-m", "first"]);
        work
    }

    fn have_git() -> bool {
        std::process::Command::new("git")
            .arg("--version")
            .output()
            .is_ok()
    }

    #[tokio::test]
    async fn fetch_and_check_out_from_an_allowed_directory_only() {
        assert!(have_git());
        let dir = tempfile::tempdir().unwrap();
        let work = repo(
            dir.path(),
            &[
                ("pb_hooks/main.pb.js", "// hook\n"),
                ("pb_public/index.html", "hi"),
            ],
        );
        let url = RepoUrl::parse(&format!("file://{}", work.display())).unwrap();
        let cache = dir.path().join("cache.git");
        let refused = Git::default()
            .fetch(&cache, &url, &BranchName::default())
            .await
            .unwrap_err();
        assert!(matches!(refused, GitError::NotAllowed(_)), "{refused}");
        let git = Git {
            allowed_dirs: vec![dir.path().to_path_buf()],
            ..Git::default()
        };
        let commit = git
            .fetch(&cache, &url, &BranchName::default())
            .await
            .unwrap();
        assert_eq!(commit.as_str().len(), 40);
        let release = dir.path().join("release");
        git.checkout(&cache, &commit, &release).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(release.join("pb_hooks/main.pb.js")).unwrap(),
            "// hook\n"
        );
        assert!(!release.join(".git").exists());
        let missing = git
            .fetch(&cache, &url, &BranchName::parse("nope").unwrap())
            .await
            .unwrap_err();
        assert!(matches!(missing, GitError::NoBranch { .. }), "{missing}");
    }

    #[tokio::test]
    async fn links_out_of_the_repository_are_refused() {
        assert!(have_git());
        let dir = tempfile::tempdir().unwrap();
        let work = repo(dir.path(), &[("a.txt", "a")]);
        std::os::unix::fs::symlink("../../../etc/passwd", work.join("evil")).unwrap();
        let add = std::process::Command::new("git")
            .args(["add", "evil"])
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(add.status.success());
        let commit = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(["commit", "--quiet", "-m", "link"])
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(commit.status.success());
        let git = Git {
            allowed_dirs: vec![dir.path().to_path_buf()],
            ..Git::default()
        };
        let cache = dir.path().join("cache.git");
        let url = RepoUrl::parse(&format!("file://{}", work.display())).unwrap();
        let id = git
            .fetch(&cache, &url, &BranchName::default())
            .await
            .unwrap();
        let release = dir.path().join("release");
        let e = git.checkout(&cache, &id, &release).await.unwrap_err();
        assert!(matches!(e, GitError::BadMember { .. }), "{e}");
        assert!(!release.exists(), "a refused checkout leaves nothing");
    }

    #[test]
    fn symlink_rule() {
        assert!(symlink_stays_inside(Path::new("a/b"), Path::new("c")));
        assert!(symlink_stays_inside(Path::new("a/b"), Path::new("../c")));
        assert!(!symlink_stays_inside(
            Path::new("a/b"),
            Path::new("../../c")
        ));
        assert!(!symlink_stays_inside(
            Path::new("b"),
            Path::new("/etc/passwd")
        ));
        assert!(!symlink_stays_inside(
            Path::new("a/b"),
            Path::new("x/../../../y")
        ));
    }
}
