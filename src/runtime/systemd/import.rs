//! Finding instances made by seed 000's script, to record them as managed
//! without stopping them.
//!
//! The script leaves, per project NAME: a unit
//! `/lib/systemd/system/NAME-pocketbase.service` whose `ExecStart` is
//! `/home/ubuntu/NAME/pocketbase serve --http="127.0.0.1:PORT"` run from
//! `WorkingDirectory=/home/ubuntu/NAME/`, and a Caddyfile site block
//! `NAME.DOMAIN { … reverse_proxy 127.0.0.1:PORT { … } }`. [`scan`] reads
//! unit directories and the Caddyfile into [`ImportCandidate`]s; anything
//! that does not fit is reported in `problems` and must not be imported.
//! The version comes from running the binary ([`read_version`]), which the
//! caller does.
//!
//! Without `--dir` PocketBase keeps its data in `pb_data` next to its
//! binary (the seed's binary sits in its working directory, so that is
//! `WORKDIR/pb_data`); a relative `--dir` is relative to the working
//! directory.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::model::names::shown;
use crate::model::{Domain, InstanceName};

/// The suffix of the seed's unit names.
pub const SEED_UNIT_SUFFIX: &str = "-pocketbase.service";

/// PocketBase's address when `serve` has no `--http`.
const POCKETBASE_DEFAULT_PORT: u16 = 8090;

/// One unit that looks like a seed-made instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportCandidate {
    pub unit_name: String,
    pub unit_path: PathBuf,
    /// The instance name (the unit name before `-pocketbase.service`).
    pub name: Option<InstanceName>,
    pub binary: Option<PathBuf>,
    pub working_dir: Option<PathBuf>,
    /// PocketBase's `--dir`: given, or `pb_data` next to the binary.
    pub data_dir: Option<PathBuf>,
    pub port: Option<u16>,
    /// From the Caddyfile site that proxies to the port.
    pub domain: Option<Domain>,
    /// `StandardOutput=append:FILE`, if output goes to a file.
    pub log_file: Option<PathBuf>,
    /// `User=`, if set (root otherwise).
    pub user: Option<String>,
    /// Why it cannot be imported; empty when it can.
    pub problems: Vec<String>,
    /// Worth knowing, but no obstacle.
    pub notes: Vec<String>,
}

impl ImportCandidate {
    fn new(unit_name: String, unit_path: PathBuf) -> Self {
        Self {
            unit_name,
            unit_path,
            name: None,
            binary: None,
            working_dir: None,
            data_dir: None,
            port: None,
            domain: None,
            log_file: None,
            user: None,
            problems: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// No problems: name, binary, port and data dir are all known.
    pub fn is_importable(&self) -> bool {
        self.problems.is_empty()
            && self.name.is_some()
            && self.binary.is_some()
            && self.port.is_some()
            && self.data_dir.is_some()
    }
}

/// Every `*-pocketbase.service` in `unit_dirs` (earlier directories take
/// precedence, as `/etc/systemd/system` does over `/lib/systemd/system`),
/// sorted by unit name, with the domain from `caddyfile` if given.
pub fn scan(unit_dirs: &[PathBuf], caddyfile: Option<&Path>) -> Vec<ImportCandidate> {
    let mut seen_dirs = HashSet::new();
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    let mut seen_units = HashSet::new();
    for dir in unit_dirs {
        let canonical = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if !seen_dirs.insert(canonical) {
            continue;
        }
        let Ok(read) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut here: Vec<(String, PathBuf)> = read
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let file_name = e.file_name().to_string_lossy().into_owned();
                file_name
                    .ends_with(SEED_UNIT_SUFFIX)
                    .then(|| (file_name, e.path()))
            })
            .collect();
        here.sort();
        for (unit, path) in here {
            if seen_units.insert(unit.clone()) {
                found.push((unit, path));
            }
        }
    }
    found.sort();

    let sites = match caddyfile {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Ok(caddy_sites(&text)),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        },
        None => Ok(Vec::new()),
    };

    let mut candidates: Vec<ImportCandidate> = found
        .into_iter()
        .map(|(unit, path)| examine(unit, path))
        .collect();

    let mut ports: HashMap<u16, String> = HashMap::new();
    for c in &mut candidates {
        let Some(port) = c.port else { continue };
        if let Some(other) = ports.get(&port) {
            c.problems
                .push(format!("port {port} is also used by {}", shown(other)));
        } else {
            ports.insert(port, c.unit_name.clone());
        }
        match (&sites, caddyfile) {
            (Err(e), _) => c.notes.push(e.clone()),
            (Ok(_), None) => {}
            (Ok(sites), Some(file)) => {
                let domains: Vec<Domain> = sites
                    .iter()
                    .filter(|s| s.upstreams.iter().any(|u| upstream_port(u) == Some(port)))
                    .flat_map(|s| s.addresses.iter().filter_map(|a| address_domain(a)))
                    .collect();
                match domains.split_first() {
                    Some((first, rest)) => {
                        c.domain = Some(first.clone());
                        if !rest.is_empty() {
                            c.notes.push(format!(
                                "{} more Caddyfile address(es) proxy to port {port}: {}",
                                rest.len(),
                                rest.iter()
                                    .map(|d| d.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ));
                        }
                    }
                    None => c.notes.push(format!(
                        "no site in {} proxies to port {port}",
                        file.display()
                    )),
                }
            }
        }
    }
    candidates
}

/// Read one unit file into a candidate.
fn examine(unit_name: String, unit_path: PathBuf) -> ImportCandidate {
    let mut c = ImportCandidate::new(unit_name.clone(), unit_path.clone());
    let stem = &unit_name[..unit_name.len() - SEED_UNIT_SUFFIX.len()];
    match InstanceName::parse(stem) {
        Ok(name) => c.name = Some(name),
        Err(e) => c.problems.push(format!("unit {}: {e}", shown(&unit_name))),
    }
    let text = match std::fs::read_to_string(&unit_path) {
        Ok(text) => text,
        Err(e) => {
            c.problems
                .push(format!("cannot read {}: {e}", unit_path.display()));
            return c;
        }
    };
    let settings = match parse_unit(&text) {
        Ok(settings) => settings,
        Err(e) => {
            c.problems.push(format!("{}: {e}", unit_path.display()));
            return c;
        }
    };
    let service = |key: &str| {
        settings
            .iter()
            .rev()
            .find(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
    };

    c.user = service("User").map(str::to_string);
    if let Some(out) = service("StandardOutput") {
        if let Some(file) = out.strip_prefix("append:") {
            c.log_file = Some(PathBuf::from(file));
        }
    }
    c.working_dir = service("WorkingDirectory")
        .map(|w| w.trim_start_matches('-'))
        .filter(|w| w.starts_with('/'))
        .map(normalize);

    let Some(exec) = service("ExecStart") else {
        c.problems.push("it has no ExecStart".to_string());
        return c;
    };
    let words = match split_words(exec) {
        Ok(words) if !words.is_empty() => words,
        Ok(_) => {
            c.problems.push("its ExecStart is empty".to_string());
            return c;
        }
        Err(e) => {
            c.problems
                .push(format!("its ExecStart cannot be read: {e}"));
            return c;
        }
    };
    let binary = PathBuf::from(words[0].trim_start_matches(['@', '-', ':', '+', '!']));
    let is_pocketbase = binary
        .file_name()
        .is_some_and(|f| f.to_string_lossy().starts_with("pocketbase"));
    let serve_at = words[1..]
        .iter()
        .position(|w| !w.starts_with('-'))
        .map(|i| i + 1)
        .filter(|&i| words[i] == "serve");
    let Some(serve_at) = serve_at.filter(|_| is_pocketbase) else {
        c.problems.push(format!(
            "its ExecStart does not run `pocketbase serve`: {}",
            shown(exec)
        ));
        return c;
    };
    if !binary.is_absolute() {
        c.problems.push(format!(
            "its binary {} is not an absolute path",
            shown(&binary.to_string_lossy())
        ));
        return c;
    }
    if !binary.is_file() {
        c.problems
            .push(format!("its binary {} does not exist", binary.display()));
    }

    let flags = &words[serve_at + 1..];
    let http = flag_value(flags, "http");
    match http {
        Some(addr) => match upstream_port(&addr) {
            Some(port) => c.port = Some(port),
            None => c
                .problems
                .push(format!("cannot read a port from --http {}", shown(&addr))),
        },
        None => c.port = Some(POCKETBASE_DEFAULT_PORT),
    }
    if flag_value(flags, "https").is_some() {
        c.notes.push("it serves HTTPS itself (--https)".to_string());
    }
    c.data_dir = match flag_value(flags, "dir") {
        Some(dir) if dir.starts_with('/') => Some(normalize(&dir)),
        Some(dir) => match &c.working_dir {
            Some(work) => Some(normalize(&work.join(dir).to_string_lossy())),
            None => Some(normalize(&Path::new("/").join(dir).to_string_lossy())),
        },
        None => binary.parent().map(|p| p.join("pb_data")),
    };
    c.binary = Some(binary);
    c
}

/// The value of `--NAME=V`, `-NAME=V`, `--NAME V` or `-NAME V`.
fn flag_value(words: &[String], name: &str) -> Option<String> {
    let mut iter = words.iter();
    while let Some(w) = iter.next() {
        let bare = w.trim_start_matches('-');
        if !w.starts_with('-') {
            continue;
        }
        if let Some(v) = bare.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_string());
        }
        if bare == name {
            return iter.next().cloned();
        }
    }
    None
}

/// `/home/ubuntu/moots/` → `/home/ubuntu/moots` (no `.` or trailing `/`).
fn normalize(path: &str) -> PathBuf {
    Path::new(path)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// `(section, key, value)` of every setting, with systemd's syntax: `#` and
/// `;` comments, `Key = value` with spaces around `=`, `\` continuations.
pub fn parse_unit(text: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let full = std::mem::take(&mut pending) + line;
        if full.starts_with('[') {
            match full.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                Some(name) if !name.is_empty() => section = name.to_string(),
                _ => return Err(format!("line {} is not a [Section] header", i + 1)),
            }
            continue;
        }
        let Some((key, value)) = full.split_once('=') else {
            return Err(format!("line {} is not KEY=value: {}", i + 1, shown(&full)));
        };
        if section.is_empty() {
            return Err(format!("line {} comes before any [Section]", i + 1));
        }
        out.push((
            section.clone(),
            key.trim().to_string(),
            value.trim().to_string(),
        ));
    }
    Ok(out)
}

/// Split a command line the way systemd does: whitespace separates words,
/// double or single quotes anywhere in a word group characters, a backslash
/// escapes the next character.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                let next = chars.next().ok_or("it ends with a backslash")?;
                word.push(next);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".to_string());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// One site block of a Caddyfile: its addresses and the upstreams of its
/// `reverse_proxy` directives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaddySite {
    pub addresses: Vec<String>,
    pub upstreams: Vec<String>,
}

/// The site blocks of a Caddyfile. Only a `{` or `}` standing alone as a
/// token opens or closes a block (placeholders like `{remote_host}` do
/// not); the global options block and snippets are skipped.
pub fn caddy_sites(text: &str) -> Vec<CaddySite> {
    let mut sites = Vec::new();
    let mut current: Option<CaddySite> = None;
    let mut depth = 0usize;
    for line in text.lines() {
        let tokens: Vec<&str> = line
            .split_whitespace()
            .take_while(|t| !t.starts_with('#'))
            .collect();
        let Some(&first) = tokens.first() else {
            continue;
        };
        if depth == 0 && tokens.last() == Some(&"{") {
            let addresses: Vec<String> = tokens[..tokens.len() - 1]
                .iter()
                .flat_map(|t| t.split(','))
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect();
            let is_site = !addresses.is_empty() && !addresses[0].starts_with('(');
            current = is_site.then_some(CaddySite {
                addresses,
                upstreams: Vec::new(),
            });
            depth = 1;
            continue;
        }
        if depth > 0 {
            if let Some(site) = current.as_mut() {
                if first == "reverse_proxy" || (first == "to" && depth >= 2) {
                    site.upstreams.extend(
                        tokens[1..]
                            .iter()
                            .take_while(|t| **t != "{")
                            .filter(|t| !t.starts_with('@') && !t.starts_with('/'))
                            .map(|t| t.to_string()),
                    );
                }
            }
        }
        for t in &tokens {
            match *t {
                "{" => depth += 1,
                "}" => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        if let Some(site) = current.take() {
                            sites.push(site);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    sites
}

/// The port of a local upstream or listen address (`127.0.0.1:8094`,
/// `localhost:8094`, `[::1]:8094`, `:8094`, with an optional `http://`).
fn upstream_port(addr: &str) -> Option<u16> {
    let addr = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("h2c://"))
        .unwrap_or(addr);
    let (host, port) = addr.rsplit_once(':')?;
    let local = matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "" | "0.0.0.0");
    local.then(|| port.parse().ok()).flatten()
}

/// The hostname of a site address, if it is a plain domain.
fn address_domain(addr: &str) -> Option<Domain> {
    let addr = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .unwrap_or(addr);
    let host = addr.split('/').next()?;
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    Domain::parse(host).ok()
}

/// The version a PocketBase binary reports (`pocketbase version 0.28.4` →
/// `0.28.4`).
pub async fn read_version(binary: &Path) -> std::io::Result<String> {
    let run = tokio::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{} --version did not answer within 10 s", binary.display()),
            )
        })??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let version = stdout
        .split_whitespace()
        .last()
        .map(|v| v.trim_start_matches('v').to_string())
        .filter(|v| semver::Version::parse(v).is_ok());
    match (output.status.success(), version) {
        (true, Some(v)) => Ok(v),
        _ => Err(std::io::Error::other(format!(
            "{} --version answered {} ({}): not a PocketBase version",
            binary.display(),
            shown(stdout.trim()),
            output.status
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn splits_like_systemd() {
        let w =
            split_words(r#"/home/ubuntu/moots/pocketbase serve --http="127.0.0.1:8094""#).unwrap();
        assert_eq!(
            w,
            [
                "/home/ubuntu/moots/pocketbase",
                "serve",
                "--http=127.0.0.1:8094"
            ]
        );
        let w = split_words(r#""/opt/my pb/pocketbase" 'a b' c\ d"#).unwrap();
        assert_eq!(w, ["/opt/my pb/pocketbase", "a b", "c d"]);
        assert!(split_words(r#"/x "open"#).is_err());
    }

    #[test]
    fn flags_in_every_spelling() {
        let words = |s: &str| split_words(s).unwrap();
        assert_eq!(
            flag_value(&words("--http=127.0.0.1:1"), "http").as_deref(),
            Some("127.0.0.1:1")
        );
        assert_eq!(
            flag_value(&words("--http 127.0.0.1:2"), "http").as_deref(),
            Some("127.0.0.1:2")
        );
        assert_eq!(
            flag_value(&words("-http=:3"), "http").as_deref(),
            Some(":3")
        );
        assert_eq!(flag_value(&words("--https=:443"), "http"), None);
        assert_eq!(upstream_port("127.0.0.1:8094"), Some(8094));
        assert_eq!(upstream_port("http://localhost:8094"), Some(8094));
        assert_eq!(upstream_port("10.0.0.5:8094"), None);
    }

    #[test]
    fn reads_caddyfile_sites() {
        let text = r#"
{
    email admin@example.com
}
(common) {
    encode gzip
}
example.com, www.example.com {
    root * /var/www
    file_server
}
moots.tigawanna.vip {
    request_body {
        max_size 10MB
    }
    reverse_proxy 127.0.0.1:8094 {
        transport http {
            read_timeout 360s
        }
        # Add these headers to forward client IP
        header_up X-Forwarded-For {remote_host}
        header_up X-Real-IP {remote_host}
    }
}
https://shop.example.org:443 {
    reverse_proxy {
        to localhost:8095
    }
}
"#;
        expect![[r#"
            [
                CaddySite {
                    addresses: [
                        "example.com",
                        "www.example.com",
                    ],
                    upstreams: [],
                },
                CaddySite {
                    addresses: [
                        "moots.tigawanna.vip",
                    ],
                    upstreams: [
                        "127.0.0.1:8094",
                    ],
                },
                CaddySite {
                    addresses: [
                        "https://shop.example.org:443",
                    ],
                    upstreams: [
                        "localhost:8095",
                    ],
                },
            ]"#]]
        .assert_eq(&format!("{:#?}", caddy_sites(text)));
        assert_eq!(
            address_domain("https://shop.example.org:443").map(|d| d.to_string()),
            Some("shop.example.org".to_string())
        );
    }

    #[test]
    fn unit_syntax() {
        let parsed =
            parse_unit("[Unit]\nDescription = x\n\n[Service]\nExecStart = /a \\\n  serve\n# c\n")
                .unwrap();
        assert_eq!(
            parsed[1],
            ("Service".into(), "ExecStart".into(), "/a  serve".into())
        );
        expect![[r#"line 2 is not KEY=value: "garbage""#]]
            .assert_eq(&parse_unit("[Service]\ngarbage\n").unwrap_err());
        expect!["line 1 comes before any [Section]"].assert_eq(&parse_unit("A=b\n").unwrap_err());
    }
}
