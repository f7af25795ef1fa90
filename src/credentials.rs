//! The secrets that remote backup destinations need: S3 keys and NATS
//! credentials. They come from the daemon's environment or from a
//! credentials file (`serve --credentials FILE`, `KEY=VALUE` lines, mode
//! 0600 or 0400), never from a command line or a destination URL. A secret
//! is held in a [`Secret`], whose `Debug` and `Display` print `…`, and
//! [`Credentials::scrub`] takes every secret out of a text (an error of an
//! S3 or NATS client) before it is shown, logged or audited.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A secret value: printed as `…`, read only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("…")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("…")
    }
}

/// The names read from the environment and accepted in the file.
pub const NAMES: [&str; 8] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "NATS_USER",
    "NATS_PASSWORD",
    "NATS_TOKEN",
    "NATS_CREDS",
];

/// What is wrong with the credentials file. Never holds a value from it.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read the credentials file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the credentials file {path} can be read by others than its owner (mode {mode:04o}): run `chmod 600 {path}`")]
    Readable { path: String, mode: u32 },
    #[error("the credentials file {path}, line {line}: {why}")]
    Line {
        path: String,
        line: usize,
        why: String,
    },
}

/// S3 and NATS credentials, each optional.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    values: BTreeMap<&'static str, Secret>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Which are set, never what they are.
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Credentials {
    /// From the environment (`env` looks a name up), then the file, whose
    /// values win.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CredentialsError> {
        let mut values = BTreeMap::new();
        for name in NAMES {
            if let Some(v) = env(name).filter(|v| !v.is_empty()) {
                values.insert(name, Secret(v));
            }
        }
        if let Some(path) = file {
            for (name, value) in read_file(path)? {
                values.insert(name, value);
            }
        }
        Ok(Credentials { values })
    }

    fn get(&self, name: &str) -> Option<&Secret> {
        self.values.get(name)
    }

    pub fn aws_access_key_id(&self) -> Option<&Secret> {
        self.get("AWS_ACCESS_KEY_ID")
    }
    pub fn aws_secret_access_key(&self) -> Option<&Secret> {
        self.get("AWS_SECRET_ACCESS_KEY")
    }
    pub fn aws_session_token(&self) -> Option<&Secret> {
        self.get("AWS_SESSION_TOKEN")
    }
    /// Not a secret, but given with the keys.
    pub fn aws_region(&self) -> Option<&str> {
        self.get("AWS_REGION").map(Secret::expose)
    }
    pub fn nats_user(&self) -> Option<&Secret> {
        self.get("NATS_USER")
    }
    pub fn nats_password(&self) -> Option<&Secret> {
        self.get("NATS_PASSWORD")
    }
    pub fn nats_token(&self) -> Option<&Secret> {
        self.get("NATS_TOKEN")
    }
    /// A NATS `.creds` file (a JWT and an nkey seed).
    pub fn nats_creds(&self) -> Option<PathBuf> {
        self.get("NATS_CREDS").map(|s| PathBuf::from(s.expose()))
    }

    /// NATS connection options with these credentials: the `.creds` file
    /// `creds` (else NATS_CREDS), user and password, a token. `Err`: the
    /// `.creds` file that cannot be read, and why.
    pub async fn nats_options(
        &self,
        creds: Option<&Path>,
    ) -> Result<async_nats::ConnectOptions, (PathBuf, String)> {
        let file = creds.map(Path::to_path_buf).or_else(|| self.nats_creds());
        let mut options = match file {
            Some(file) => async_nats::ConnectOptions::with_credentials_file(&file)
                .await
                .map_err(|e| (file, e.to_string()))?,
            None => async_nats::ConnectOptions::new(),
        };
        if let (Some(user), Some(password)) = (self.nats_user(), self.nats_password()) {
            options =
                options.user_and_password(user.expose().to_string(), password.expose().to_string());
        }
        if let Some(token) = self.nats_token() {
            options = options.token(token.expose().to_string());
        }
        Ok(options)
    }

    /// The variables a child process (Litestream) needs to reach the same
    /// stores, under the names it reads.
    pub fn child_env(&self) -> Vec<(&'static str, Secret)> {
        self.values
            .iter()
            .map(|(name, value)| (*name, value.clone()))
            .collect()
    }

    /// `text` with every secret in it replaced by `…` (the access key id
    /// and the user name too: they are half of a pair).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (name, value) in &self.values {
            if *name == "AWS_REGION" || *name == "NATS_CREDS" || value.0.len() < 4 {
                continue;
            }
            out = out.replace(&value.0, "…");
        }
        out
    }
}

/// The `KEY=VALUE` lines of a credentials file that only its owner reads.
fn read_file(path: &Path) -> Result<Vec<(&'static str, Secret)>, CredentialsError> {
    let shown = path.display().to_string();
    let read = |source| CredentialsError::Read {
        path: shown.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CredentialsError::Readable { path: shown, mode });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: String| CredentialsError::Line {
            path: shown.clone(),
            line: i + 1,
            why,
        };
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad("write KEY=VALUE".into()));
        };
        let key = key.trim();
        let Some(name) = NAMES.iter().find(|n| **n == key) else {
            return Err(bad(format!(
                "unknown name {}: use {}",
                crate::model::names::shown(key),
                NAMES.join(", ")
            )));
        };
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        if value.is_empty() {
            return Err(bad(format!("{name} is empty")));
        }
        out.push((*name, Secret(value.to_string())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_printed() {
        let s = Secret::new("hunter22");
        assert_eq!(format!("{s} {s:?}"), "… …");
        let c = Credentials::load(None, |k| {
            (k == "AWS_SECRET_ACCESS_KEY").then(|| "hunter22".to_string())
        })
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter22"), "{debug}");
        assert!(debug.contains("AWS_SECRET_ACCESS_KEY"), "{debug}");
        assert_eq!(c.scrub("bad key hunter22!"), "bad key …!");
        assert_eq!(c.child_env()[0].1.expose(), "hunter22");
    }

    #[test]
    fn the_file_wins_and_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        std::fs::write(
            &path,
            "# S3\nAWS_ACCESS_KEY_ID=AKIA1\nexport AWS_SECRET_ACCESS_KEY=\"s3cret\"\n\nNATS_TOKEN='tok'\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Credentials::load(Some(&path), |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("chmod 600"), "{e}");
        assert!(e.contains("0644"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Credentials::load(Some(&path), |k| {
            (k == "AWS_ACCESS_KEY_ID").then(|| "from-env".to_string())
        })
        .unwrap();
        assert_eq!(c.aws_access_key_id().unwrap().expose(), "AKIA1");
        assert_eq!(c.aws_secret_access_key().unwrap().expose(), "s3cret");
        assert_eq!(c.nats_token().unwrap().expose(), "tok");

        std::fs::write(&path, "AWS_SECRET_ACCESS_KEY s3cret\n").unwrap();
        let e = Credentials::load(Some(&path), |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && !e.contains("s3cret"), "{e}");
        std::fs::write(&path, "PASSWORD=s3cret\n").unwrap();
        let e = Credentials::load(Some(&path), |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown name") && !e.contains("s3cret"), "{e}");
    }
}
