//! Backups as values: their ids (which end up in file names and URLs),
//! where they go, and why they were made.

use std::fmt;
use std::path::PathBuf;

use super::names::shown;

/// What is wrong with a backup id or destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    #[error("invalid backup id {0}: use 1 to 100 of a-z, 0-9, '_' and '-', starting with a letter or digit (see `pockestrator backup list NAME`)")]
    BadId(String),
    #[error("invalid backup destination {shown}: {why}")]
    BadDestination { shown: String, why: &'static str },
}

/// A backup's id: also its file name without `.zip`, so it obeys
/// PocketBase's own rule for backup names (`^[a-z0-9_-]+\.zip$`) and a
/// pockestrator archive can be uploaded to PocketBase as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackupId(String);

impl BackupId {
    pub const MAX_LEN: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, BackupError> {
        let raw = raw.strip_suffix(".zip").unwrap_or(raw);
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(BackupError::BadId(shown(raw)))
        }
    }

    /// A new id from a UTC time (`%Y%m%d-%H%M%S`) and a random suffix, so
    /// that ids sort by time and two backups in one second differ.
    pub fn new(stamp: &str, suffix: u16) -> Result<Self, BackupError> {
        Self::parse(&format!("{stamp}-{suffix:04x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The archive's file name.
    pub fn file_name(&self) -> String {
        format!("{}.zip", self.0)
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a backup goes (and, with [`crate::model::Destination`] reused
/// for it, where a replica is kept). Written as a URL:
///
/// - `/abs/dir` or `file:///abs/dir`: a directory on this host;
/// - `s3://BUCKET[/PREFIX][?endpoint=URL&region=R]`: any S3-compatible
///   store (`endpoint` for one that is not AWS, such as MinIO or moto);
/// - `nats://HOST:PORT[,HOST:PORT…]/BUCKET[/PREFIX]`: a NATS JetStream
///   object store bucket.
///
/// A URL never carries credentials: they come from the daemon's
/// environment or its credentials file, so that they never appear on a
/// command line, in the audit log or in an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A directory on this host (the default is `backups/<instance>/` in
    /// the data dir); archives are `<dir>/<id>.zip`.
    Local(PathBuf),
    /// Objects `<prefix>/<id>.zip` in an S3 bucket.
    S3(S3Location),
    /// Objects `<prefix>/<id>.zip` in a JetStream object store bucket.
    Nats(NatsLocation),
}

/// An S3 bucket, a key prefix and, for a store that is not AWS, its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// `a/b` (no leading or trailing `/`), or empty.
    pub prefix: String,
    /// `http(s)://host[:port]`, for S3-compatible stores.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

/// NATS servers and an object store bucket with a name prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsLocation {
    /// `host:port`, one or more.
    pub servers: Vec<String>,
    pub bucket: String,
    /// `a/b` (no leading or trailing `/`), or empty.
    pub prefix: String,
}

impl S3Location {
    /// The object key of a file under the prefix.
    pub fn key(&self, file: &str) -> String {
        join_prefix(&self.prefix, file)
    }
}

impl NatsLocation {
    /// The object name of a file under the prefix.
    pub fn object(&self, file: &str) -> String {
        join_prefix(&self.prefix, file)
    }

    /// The servers as `nats://host:port` URLs.
    pub fn server_urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| format!("nats://{s}")).collect()
    }
}

fn join_prefix(prefix: &str, file: &str) -> String {
    if prefix.is_empty() {
        file.to_string()
    } else {
        format!("{prefix}/{file}")
    }
}

const NO_CREDENTIALS: &str = "credentials never go in a destination URL (it is shown in listings and the audit log): give them to the daemon in its environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; NATS_USER and NATS_PASSWORD, or NATS_TOKEN) or in its credentials file";

impl Destination {
    /// `--to`: an absolute directory path, or a `file://`, `s3://` or
    /// `nats://` URL (see [`Destination`]).
    pub fn parse(raw: &str) -> Result<Self, BackupError> {
        let bad = |why| BackupError::BadDestination {
            shown: shown(raw),
            why,
        };
        if raw.len() > 4096 || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad(
                "it holds a NUL, a control character or a space, or is too long",
            ));
        }
        // A URL that holds credentials is not shown back, not even in part.
        let refused = |why: &'static str| BackupError::BadDestination {
            shown: if why == NO_CREDENTIALS {
                format!("{}://…", raw.split("://").next().unwrap_or(""))
            } else {
                shown(raw)
            },
            why,
        };
        if let Some(rest) = raw.strip_prefix("s3://") {
            return parse_s3(rest).map(Destination::S3).map_err(refused);
        }
        if let Some(rest) = raw.strip_prefix("nats://") {
            return parse_nats(rest).map(Destination::Nats).map_err(refused);
        }
        let path = if let Some(rest) = raw.strip_prefix("file://") {
            rest
        } else if raw.contains("://") {
            return Err(bad(
                "use a local directory (an absolute path or file:///path), s3://BUCKET/PREFIX or nats://HOST:PORT/BUCKET",
            ));
        } else {
            raw
        };
        if !path.starts_with('/') {
            return Err(bad("give an absolute directory path"));
        }
        if path.split('/').any(|c| c == "..") {
            return Err(bad("'..' is not allowed in a backup destination"));
        }
        Ok(Destination::Local(PathBuf::from(path)))
    }

    /// How it is written in the store and shown to users; parses back to
    /// the same value.
    pub fn to_text(&self) -> String {
        match self {
            Destination::Local(dir) => format!("file://{}", dir.display()),
            Destination::S3(s3) => {
                let mut text = format!("s3://{}", s3.bucket);
                if !s3.prefix.is_empty() {
                    text.push('/');
                    text.push_str(&s3.prefix);
                }
                let mut query = Vec::new();
                if let Some(e) = &s3.endpoint {
                    query.push(format!("endpoint={e}"));
                }
                if let Some(r) = &s3.region {
                    query.push(format!("region={r}"));
                }
                if !query.is_empty() {
                    text.push('?');
                    text.push_str(&query.join("&"));
                }
                text
            }
            Destination::Nats(n) => {
                let mut text = format!("nats://{}/{}", n.servers.join(","), n.bucket);
                if !n.prefix.is_empty() {
                    text.push('/');
                    text.push_str(&n.prefix);
                }
                text
            }
        }
    }

    /// The same destination with `sub` appended to its prefix (or
    /// directory): where one instance's backups go under a fleet-wide one.
    pub fn child(&self, sub: &str) -> Destination {
        match self {
            Destination::Local(dir) => Destination::Local(dir.join(sub)),
            Destination::S3(s3) => Destination::S3(S3Location {
                prefix: join_prefix(&s3.prefix, sub),
                ..s3.clone()
            }),
            Destination::Nats(n) => Destination::Nats(NatsLocation {
                prefix: join_prefix(&n.prefix, sub),
                ..n.clone()
            }),
        }
    }
}

/// A key prefix: components of `A-Z a-z 0-9 . _ -`, none empty, `.` or `..`.
fn parse_prefix(raw: &str) -> Result<String, &'static str> {
    let trimmed = raw.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed.len() > 512 {
        return Err("the prefix is longer than 512 characters");
    }
    for part in trimmed.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err("the prefix has an empty, '.' or '..' component");
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err("the prefix may hold only A-Z, a-z, 0-9, '.', '_', '-' and '/'");
        }
    }
    Ok(trimmed.to_string())
}

/// `host:port`, with a DNS name, an IPv4 address or a bracketed IPv6 one.
pub(crate) fn valid_host_port(raw: &str) -> bool {
    let Some((host, port)) = raw.rsplit_once(':') else {
        return false;
    };
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<core::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    };
    host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
}

fn parse_s3(rest: &str) -> Result<S3Location, &'static str> {
    let (location, query) = match rest.split_once('?') {
        Some((l, q)) => (l, Some(q)),
        None => (rest, None),
    };
    let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
    if bucket.contains('@') || bucket.contains(':') {
        return Err(NO_CREDENTIALS);
    }
    // S3's bucket rules: 3 to 63 of a-z, 0-9, '.', '-', starting and
    // ending with a letter or digit.
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !bucket.contains("..");
    if !bucket_ok {
        return Err("the bucket must be 3 to 63 of a-z, 0-9, '.' and '-', starting and ending with a letter or digit");
    }
    let prefix = parse_prefix(prefix)?;
    let (mut endpoint, mut region) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "endpoint" => {
                let hostport = value
                    .strip_prefix("http://")
                    .or_else(|| value.strip_prefix("https://"))
                    .ok_or("endpoint must be an http:// or https:// URL")?;
                if hostport.contains('@') {
                    return Err(NO_CREDENTIALS);
                }
                let hostport = hostport.trim_end_matches('/');
                let with_port = if hostport.contains(':') && !hostport.ends_with(']') {
                    hostport.to_string()
                } else if value.starts_with("https://") {
                    format!("{hostport}:443")
                } else {
                    format!("{hostport}:80")
                };
                if !valid_host_port(&with_port) {
                    return Err("endpoint must be http(s)://HOST[:PORT], with no path or query");
                }
                endpoint = Some(format!(
                    "{}{}",
                    if value.starts_with("https://") {
                        "https://"
                    } else {
                        "http://"
                    },
                    hostport
                ));
            }
            "region" => {
                let ok = !value.is_empty()
                    && value.len() <= 64
                    && value
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if !ok {
                    return Err("region must be a-z, 0-9 and '-', such as us-east-1");
                }
                region = Some(value.to_string());
            }
            "access_key_id" | "secret_access_key" | "access-key-id" | "secret-access-key"
            | "session_token" | "token" | "password" => return Err(NO_CREDENTIALS),
            _ => return Err("the only query parameters are endpoint= and region="),
        }
    }
    Ok(S3Location {
        bucket: bucket.to_string(),
        prefix,
        endpoint,
        region,
    })
}

fn parse_nats(rest: &str) -> Result<NatsLocation, &'static str> {
    if rest.contains('?') {
        return Err("a nats:// destination takes no query parameters");
    }
    let (servers, path) = rest
        .split_once('/')
        .ok_or("write nats://HOST:PORT/BUCKET[/PREFIX]")?;
    if servers.contains('@') {
        return Err(NO_CREDENTIALS);
    }
    let servers: Vec<String> = servers.split(',').map(str::to_string).collect();
    if servers.is_empty() || servers.len() > 16 || !servers.iter().all(|s| valid_host_port(s)) {
        return Err("the servers must be HOST:PORT, separated by commas");
    }
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    // JetStream's rule for object store buckets.
    let bucket_ok = !bucket.is_empty()
        && bucket.len() <= 64
        && bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !bucket_ok {
        return Err("the bucket must be 1 to 64 of A-Z, a-z, 0-9, '_' and '-'");
    }
    Ok(NatsLocation {
        servers,
        bucket: bucket.to_string(),
        prefix: parse_prefix(prefix)?,
    })
}

/// Why a backup was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupTrigger {
    /// Asked for (CLI, API, dashboard).
    Manual,
    /// Made by the instance's backup schedule (and pruned by its retention).
    Schedule,
    /// Taken of the current data right before a restore replaced it.
    PreRestore,
    /// Made by PocketBase itself (its `pb_data/backups/`), found there.
    PocketBase,
    /// Taken right before an upgrade switched the instance's version: what
    /// a failed upgrade rolls back to, and what `backup restore` brings
    /// back later, old version included.
    PreUpgrade,
    /// Taken right before a deploy (or rollback) switched the instance to
    /// another release: what a failed switch puts back.
    PreDeploy,
    /// Taken right before `schema push` migrated the instance: what a
    /// failed migration rolls back to.
    PreSchema,
}

impl BackupTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupTrigger::Manual => "manual",
            BackupTrigger::Schedule => "schedule",
            BackupTrigger::PreRestore => "pre-restore",
            BackupTrigger::PocketBase => "pocketbase",
            BackupTrigger::PreUpgrade => "pre-upgrade",
            BackupTrigger::PreDeploy => "pre-deploy",
            BackupTrigger::PreSchema => "pre-schema",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "manual" => Some(BackupTrigger::Manual),
            "schedule" => Some(BackupTrigger::Schedule),
            "pre-restore" => Some(BackupTrigger::PreRestore),
            "pocketbase" => Some(BackupTrigger::PocketBase),
            "pre-upgrade" => Some(BackupTrigger::PreUpgrade),
            "pre-deploy" => Some(BackupTrigger::PreDeploy),
            "pre-schema" => Some(BackupTrigger::PreSchema),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in [
            "20261201-101500-3f2a",
            "pb_backup_20261201101500",
            "a",
            "x.zip",
        ] {
            assert!(BackupId::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(BackupId::parse("x.zip").unwrap().file_name(), "x.zip");
        let long = "a".repeat(10_000);
        for bad in [
            "",
            "../etc",
            "a/b",
            "A",
            "-a",
            "_a",
            "a\0b",
            "a b",
            "a.b",
            ".zip",
            long.as_str(),
        ] {
            let e = BackupId::parse(bad).unwrap_err().to_string();
            assert!(e.len() < 400, "message stays bounded: {e}");
            assert!(!e.contains('\0'));
        }
        assert_eq!(
            BackupId::new("20261201-101500", 0x3f2a).unwrap().as_str(),
            "20261201-101500-3f2a"
        );
    }

    #[test]
    fn destinations() {
        assert_eq!(
            Destination::parse("/srv/backups").unwrap(),
            Destination::Local("/srv/backups".into())
        );
        for text in [
            "file:///srv/b",
            "s3://my-bucket",
            "s3://my-bucket/fleet/shop?endpoint=http://127.0.0.1:9000&region=us-east-1",
            "s3://b.example.com/x?endpoint=https://s3.example.com",
            "nats://127.0.0.1:4222/backups",
            "nats://a:4222,b.example:4223/backups/fleet/shop",
            "nats://[::1]:4222/b_1",
        ] {
            assert_eq!(Destination::parse(text).unwrap().to_text(), text);
        }
        let Destination::S3(s3) =
            Destination::parse("s3://bkt/a/b/?endpoint=http://localhost:9000/").unwrap()
        else {
            panic!("not s3")
        };
        assert_eq!(s3.prefix, "a/b");
        assert_eq!(s3.endpoint.as_deref(), Some("http://localhost:9000"));
        assert_eq!(s3.key("x.zip"), "a/b/x.zip");
        assert_eq!(
            Destination::parse("nats://h:1/b")
                .unwrap()
                .child("shop")
                .to_text(),
            "nats://h:1/b/shop"
        );
        let long = format!("s3://bkt/{}", "a/".repeat(3000));
        for bad in [
            "relative/dir",
            "/srv/../etc",
            "/a\0b",
            "/a\nb",
            "/a b",
            "ext::sh -c x",
            "ftp://host/x",
            "",
            "s3://",
            "s3://ab",
            "s3://Bucket",
            "s3://-bkt",
            "s3://bkt/../x",
            "s3://bkt/a//b",
            "s3://bkt/a;rm",
            "s3://bkt?endpoint=ftp://x",
            "s3://bkt?endpoint=http://host/path",
            "s3://bkt?endpoint=http://h:99999",
            "s3://bkt?region=US EAST",
            "s3://bkt?foo=bar",
            "nats://h:4222",
            "nats://h/b",
            "nats://h:0/b",
            "nats://h:4222/b.c",
            "nats://h:4222/b?x=1",
            "nats://h:4222/",
            long.as_str(),
        ] {
            let e = Destination::parse(bad).unwrap_err().to_string();
            assert!(e.len() < 700, "bounded: {e}");
        }
        // Credentials in a URL are refused, and the refusal does not echo them.
        for with_secret in [
            "s3://AKIA:supersecret@bkt/x",
            "s3://bkt?endpoint=http://AKIA:supersecret@h:9000",
            "s3://bkt?secret_access_key=supersecret",
            "nats://user:supersecret@h:4222/b",
        ] {
            let e = Destination::parse(with_secret).unwrap_err().to_string();
            assert!(e.contains("credentials never go"), "{e}");
            assert!(!e.contains("supersecret"), "the secret is echoed: {e}");
        }
    }

    #[test]
    fn triggers_round_trip() {
        for t in [
            BackupTrigger::Manual,
            BackupTrigger::Schedule,
            BackupTrigger::PreRestore,
            BackupTrigger::PocketBase,
            BackupTrigger::PreUpgrade,
        ] {
            assert_eq!(BackupTrigger::parse(t.as_str()), Some(t));
        }
    }
}
