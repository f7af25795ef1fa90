//! What a deploy from git is given, as values: the repository URL, the
//! branch, the subdirectory of the repository the app lives in, and
//! commit ids. Each ends up on a `git` command line or in a path, so each
//! is parsed strictly here, before anything runs: no `ext::` transports, no
//! option smuggled in as a URL or a branch (a leading `-`), no credentials
//! in a URL, no `..` out of the checkout.

use std::fmt;

use super::names::shown;

/// What is wrong with a repository URL, branch, subdirectory or commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    #[error("invalid repository URL {shown}: {why}")]
    BadUrl { shown: String, why: &'static str },
    #[error("invalid branch {shown}: {why}")]
    BadBranch { shown: String, why: &'static str },
    #[error("invalid subdirectory {shown}: {why}")]
    BadSubdir { shown: String, why: &'static str },
    #[error("invalid commit {shown}: give a full or abbreviated (7 to 64) hexadecimal commit id")]
    BadCommit { shown: String },
}

/// How a repository is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `https://` (or `http://`, for a server on a private network).
    Http,
    /// `ssh://user@host/path` or scp-like `user@host:path`.
    Ssh,
    /// `file:///abs/path` or `/abs/path`: a repository on this host, which
    /// the daemon only reads from the directories it is allowed to.
    File,
}

/// A repository URL `git` may be given as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    text: String,
    transport: Transport,
}

const NO_CREDENTIALS: &str = "credentials never go in a repository URL (it is shown in listings and the audit log): give the instance an HTTPS token or an SSH deploy key instead";

impl RepoUrl {
    pub const MAX_LEN: usize = 2048;

    pub fn parse(raw: &str) -> Result<Self, GitError> {
        let bad = |why| GitError::BadUrl {
            shown: if why == NO_CREDENTIALS {
                format!(
                    "{}…",
                    raw.split("://").next().unwrap_or("").get(..8).unwrap_or("")
                )
            } else {
                shown(raw)
            },
            why,
        };
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(bad("give 1 to 2048 characters"));
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("it holds a control character or a space"));
        }
        if raw.starts_with('-') {
            return Err(bad("it starts with '-', which git would read as an option"));
        }
        // git's `TRANSPORT::ADDRESS`: a `::` before any `://` (an IPv6
        // host such as `[::1]` comes after it).
        let helper = match (raw.find("::"), raw.find("://")) {
            (Some(helper), Some(scheme)) => helper < scheme,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if helper {
            return Err(bad(
                "remote helpers (`ext::`, `fd::`, `TRANSPORT::`) are not allowed: use https://, ssh:// or file://",
            ));
        }
        let transport = if let Some(rest) = raw
            .strip_prefix("https://")
            .or_else(|| raw.strip_prefix("http://"))
        {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            if authority.contains('@') {
                return Err(bad(NO_CREDENTIALS));
            }
            check_authority(authority).map_err(bad)?;
            check_repo_path(path).map_err(bad)?;
            Transport::Http
        } else if let Some(rest) = raw.strip_prefix("ssh://") {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = match authority.split_once('@') {
                Some((user, host)) => {
                    if user.contains(':') {
                        return Err(bad(NO_CREDENTIALS));
                    }
                    check_user(user).map_err(bad)?;
                    host
                }
                None => authority,
            };
            check_authority(host).map_err(bad)?;
            check_repo_path(path).map_err(bad)?;
            Transport::Ssh
        } else if let Some(rest) = raw.strip_prefix("file://") {
            check_local_path(rest).map_err(bad)?;
            Transport::File
        } else if raw.starts_with('/') {
            check_local_path(raw).map_err(bad)?;
            Transport::File
        } else if raw.contains("://") {
            return Err(bad(
                "use https://, http://, ssh://, git@HOST:PATH or file://",
            ));
        } else if let Some((user_host, path)) = raw.split_once(':') {
            // scp-like: user@host:path/repo.git
            let (user, host) = user_host
                .split_once('@')
                .ok_or("write an SSH address as USER@HOST:PATH")
                .map_err(bad)?;
            check_user(user).map_err(bad)?;
            check_authority(host).map_err(bad)?;
            if path.starts_with('-') || path.starts_with('/') && path.len() == 1 {
                return Err(bad("the path after ':' must name a repository"));
            }
            check_repo_path(path.trim_start_matches('/')).map_err(bad)?;
            Transport::Ssh
        } else {
            return Err(bad(
                "use https://, http://, ssh://, git@HOST:PATH or file://",
            ));
        };
        Ok(Self {
            text: raw.to_string(),
            transport,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The local path of a `file://` (or plain path) repository.
    pub fn local_path(&self) -> Option<&str> {
        match self.transport {
            Transport::File => Some(self.text.strip_prefix("file://").unwrap_or(&self.text)),
            _ => None,
        }
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn check_user(user: &str) -> Result<(), &'static str> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && !user.starts_with('-')
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    ok.then_some(())
        .ok_or("the user must be A-Z, a-z, 0-9, '.', '_' and '-'")
}

/// `host[:port]`: a DNS name, an IPv4 address or a bracketed IPv6 one.
fn check_authority(authority: &str) -> Result<(), &'static str> {
    const WHY: &str = "the host must be a DNS name or an IP address, with an optional :PORT";
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or(WHY)?;
        v6.parse::<core::net::Ipv6Addr>().map_err(|_| WHY)?;
        (None, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(authority), None),
        }
    };
    if let Some(host) = host {
        let ok = !host.is_empty()
            && host.len() <= 253
            && !host.starts_with('-')
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !ok {
            return Err(WHY);
        }
    }
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(WHY);
        }
    }
    Ok(())
}

/// The path of a remote repository: components of `A-Z a-z 0-9 . _ - ~`,
/// none empty, `.` or `..`; no query or fragment.
fn check_repo_path(path: &str) -> Result<(), &'static str> {
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Err("name the repository's path");
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err("the path has an empty, '.' or '..' component");
        }
        if part.starts_with('-') {
            return Err("a path component starts with '-'");
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~'))
        {
            return Err("the path may hold only A-Z, a-z, 0-9, '.', '_', '-', '~' and '/'");
        }
    }
    Ok(())
}

fn check_local_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("a local repository needs an absolute path (file:///srv/git/app.git)");
    }
    check_repo_path(&path[1..]).map_err(|why| match why {
        "name the repository's path" => "name the repository's directory",
        other => other,
    })
}

/// A branch name, by `git check-ref-format --branch`'s rules and a little
/// stricter: never an option, never a revision expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchName(String);

impl BranchName {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, GitError> {
        let bad = |why| GitError::BadBranch {
            shown: shown(raw),
            why,
        };
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(bad("give 1 to 255 characters"));
        }
        if raw.starts_with('-') {
            return Err(bad("it starts with '-', which git would read as an option"));
        }
        if raw == "@" || raw == "HEAD" {
            return Err(bad("name a branch, not HEAD or '@'"));
        }
        if raw
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
        {
            return Err(bad(
                "it holds a space, a control character or one of ~ ^ : ? * [ \\",
            ));
        }
        if raw.contains("..") || raw.contains("@{") || raw.contains("//") {
            return Err(bad("it holds '..', '@{' or '//'"));
        }
        if raw.starts_with('/') || raw.ends_with('/') || raw.ends_with('.') {
            return Err(bad("it starts or ends with '/', or ends with '.'"));
        }
        if raw
            .split('/')
            .any(|part| part.starts_with('.') || part.ends_with(".lock"))
        {
            return Err(bad("a part starts with '.' or ends with '.lock'"));
        }
        if !raw.is_ascii() {
            return Err(bad("use ASCII letters, digits and - _ . /"));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for BranchName {
    /// `main`, as seed 003's deploy script assumes.
    fn default() -> Self {
        Self("main".to_string())
    }
}

impl fmt::Display for BranchName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where in the repository the app is (`--subdir`): relative, inside it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subdir(String);

impl Subdir {
    pub fn parse(raw: &str) -> Result<Self, GitError> {
        let bad = |why| GitError::BadSubdir {
            shown: shown(raw),
            why,
        };
        let trimmed = raw.trim_end_matches('/');
        if trimmed.is_empty() || trimmed == "." {
            return Ok(Self::default());
        }
        if trimmed.len() > 512 {
            return Err(bad("it is longer than 512 characters"));
        }
        if trimmed.starts_with('/') {
            return Err(bad("give a path relative to the repository's top"));
        }
        for part in trimmed.split('/') {
            if part.is_empty() || part == "." || part == ".." {
                return Err(bad("it has an empty, '.' or '..' component"));
            }
            if part == ".git" {
                return Err(bad("the repository's .git is not an app"));
            }
            if !part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return Err(bad("use only A-Z, a-z, 0-9, '.', '_', '-' and '/'"));
            }
        }
        Ok(Self(trimmed.to_string()))
    }

    /// `""` for the repository's top.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A commit id: 7 to 64 hex digits (SHA-1 or SHA-256 repositories),
/// lowercased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommitId(String);

impl CommitId {
    pub fn parse(raw: &str) -> Result<Self, GitError> {
        let ok = (7..=64).contains(&raw.len()) && raw.chars().all(|c| c.is_ascii_hexdigit());
        if ok {
            Ok(Self(raw.to_ascii_lowercase()))
        } else {
            Err(GitError::BadCommit { shown: shown(raw) })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 digits, for listings.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_urls() {
        for (ok, transport) in [
            ("https://github.com/user/repo", Transport::Http),
            ("https://git.example.com:8443/team/app.git", Transport::Http),
            ("http://127.0.0.1:9418/app.git", Transport::Http),
            ("http://[::1]:8080/a/b.git", Transport::Http),
            ("ssh://git@example.com/team/app.git", Transport::Ssh),
            ("ssh://example.com:2222/app", Transport::Ssh),
            ("git@github.com:user/repo.git", Transport::Ssh),
            ("file:///srv/git/app.git", Transport::File),
            ("/srv/git/app.git", Transport::File),
            ("https://host/~user/repo", Transport::Http),
        ] {
            let url = RepoUrl::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(url.transport(), transport, "{ok}");
            assert_eq!(url.as_str(), ok);
        }
        assert_eq!(
            RepoUrl::parse("file:///srv/git/app.git")
                .unwrap()
                .local_path(),
            Some("/srv/git/app.git")
        );
        let long = format!("https://h/{}", "a".repeat(3000));
        for bad in [
            "",
            "ext::sh -c touch% /tmp/pwned",
            "ext::sh",
            "fd::3",
            "transport::https://h/x",
            "--upload-pack=touch /tmp/x",
            "-oProxyCommand=x",
            "https://h/a b",
            "https://h/a\nb",
            "https://h/a\0b",
            "https://h/../etc",
            "https://h/a/./b",
            "https://h/a?x=1",
            "https://h/a#frag",
            "https://-h/a",
            "https://h:0/a",
            "https://h:99999/a",
            "https://h",
            "ssh://-oProxyCommand=x/a",
            "ssh://git@-h/a",
            "git@h:-u/a",
            "git@h:/",
            "h:path",
            "ftp://h/a",
            "file://relative/a",
            "file:///srv/../etc",
            "relative/path",
            "./repo",
            long.as_str(),
        ] {
            let e = RepoUrl::parse(bad).unwrap_err().to_string();
            assert!(e.len() < 600, "bounded: {e}");
            assert!(!e.contains('\0') && !e.contains('\n'), "{e:?}");
        }
        for secret in [
            "https://user:hunter2secret@github.com/a/b",
            "https://hunter2secret@github.com/a/b",
            "ssh://git:hunter2secret@h/a",
        ] {
            let e = RepoUrl::parse(secret).unwrap_err().to_string();
            assert!(e.contains("credentials never go"), "{e}");
            assert!(!e.contains("hunter2secret"), "the secret is echoed: {e}");
        }
    }

    #[test]
    fn branches() {
        for ok in [
            "main",
            "feature/x",
            "release-1.2",
            "v1.0.0",
            "a_b",
            "user@x",
        ] {
            assert_eq!(BranchName::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(BranchName::default().as_str(), "main");
        let long = "a".repeat(256);
        for bad in [
            "",
            "-main",
            "--upload-pack=x",
            "HEAD",
            "@",
            "a..b",
            "a@{1}",
            "a b",
            "a\tb",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "/a",
            "a/",
            "a//b",
            "a.",
            ".a",
            "a/.b",
            "a.lock",
            "a/b.lock/c",
            "brañch",
            "a\0b",
            long.as_str(),
        ] {
            assert!(BranchName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subdirs_and_commits() {
        assert_eq!(Subdir::parse("").unwrap().as_str(), "");
        assert_eq!(Subdir::parse("./").unwrap().as_str(), "");
        assert_eq!(Subdir::parse("apps/blog/").unwrap().as_str(), "apps/blog");
        for bad in [
            "/etc",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            ".git",
            "a/.git",
            "a b",
            "a\0",
        ] {
            assert!(Subdir::parse(bad).is_err(), "{bad:?}");
        }
        let c = CommitId::parse("0123456789ABCDEF0123456789abcdef01234567").unwrap();
        assert_eq!(c.as_str(), "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(c.short(), "0123456789ab");
        for bad in ["", "abc", "xyz1234", "-1234567", "HEAD~1", &"a".repeat(65)] {
            assert!(CommitId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
