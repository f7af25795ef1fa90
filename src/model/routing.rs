//! Which hostnames and URLs reach an instance (pure).
//!
//! An instance answers at `NAME.BASE`, where `BASE` is its own `--domain`
//! or else the daemon's `--base-domain` (default `localhost`), and at each
//! of its custom domains.

use super::names::{Domain, NameError};

/// Check a base domain: a domain, or a single label such as `localhost`
/// (so that `NAME.localhost` works on a laptop).
pub fn check_base_domain(raw: &str) -> Result<String, NameError> {
    if !raw.contains('.') {
        let folded = raw.to_ascii_lowercase();
        super::names::InstanceName::parse(&folded).map_err(|_| NameError::DomainInvalid {
            shown: super::names::shown(raw),
            why: "use a domain like example.com, or a single label like localhost".to_string(),
        })?;
        return Ok(folded);
    }
    Ok(Domain::parse(raw)?.to_string())
}

/// Every host of an instance: `NAME.BASE` first, then its custom domains in
/// the order given, without duplicates.
pub fn hosts(
    name: &str,
    own_base: Option<&str>,
    default_base: &str,
    custom: &[String],
) -> Vec<String> {
    let base = own_base.unwrap_or(default_base);
    let mut out = vec![format!("{name}.{base}")];
    for d in custom {
        if !out.contains(d) {
            out.push(d.clone());
        }
    }
    out
}

/// The smallest and largest request body limits an instance may have.
pub const MIN_BODY_LIMIT: u64 = 1_000;
pub const MAX_BODY_LIMIT: u64 = 1_000_000_000_000;

/// Check a request body limit in bytes.
pub fn check_body_limit(bytes: u64) -> Result<u64, String> {
    if (MIN_BODY_LIMIT..=MAX_BODY_LIMIT).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!(
            "a body limit of {bytes} bytes is outside 1KB-1TB: pick a size in that range"
        ))
    }
}

/// Parse a size as people write it: `10MB`, `512KB`, `1GB` (powers of
/// 1000, as Caddy reads them), `64MiB` (powers of 1024), or plain bytes.
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "size {} is not valid: write e.g. 10MB, 512KB, 1GB, 64MiB or a number of bytes",
            super::names::shown(raw)
        )
    };
    let text = raw.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 15 {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = n.checked_mul(factor).ok_or_else(bad)?;
    check_body_limit(bytes)
}

/// How the outside reaches the router: scheme and port (omitted when it is
/// the scheme's default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicEndpoint {
    pub scheme: &'static str,
    pub port: Option<u16>,
}

impl PublicEndpoint {
    pub fn url(&self, host: &str) -> String {
        match self.port {
            Some(p)
                if !(self.scheme == "http" && p == 80 || self.scheme == "https" && p == 443) =>
            {
                format!("{}://{host}:{p}", self.scheme)
            }
            _ => format!("{}://{host}", self.scheme),
        }
    }
}

/// Every address an instance answers at: through the router (when there is
/// one), then directly on 127.0.0.1.
pub fn urls(hosts: &[String], endpoint: Option<&PublicEndpoint>, port: u16) -> Vec<String> {
    let mut out: Vec<String> = match endpoint {
        Some(e) => hosts.iter().map(|h| e.url(h)).collect(),
        None => Vec::new(),
    };
    out.push(format!("http://127.0.0.1:{port}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_urls() {
        let h = hosts(
            "moots",
            Some("tigawanna.vip"),
            "localhost",
            &["moots.app".to_string(), "moots.tigawanna.vip".to_string()],
        );
        assert_eq!(h, ["moots.tigawanna.vip", "moots.app"]);
        let h = hosts("blog", None, "localhost", &[]);
        assert_eq!(h, ["blog.localhost"]);
        let embedded = PublicEndpoint {
            scheme: "http",
            port: Some(8080),
        };
        assert_eq!(
            urls(&h, Some(&embedded), 8091),
            ["http://blog.localhost:8080", "http://127.0.0.1:8091"]
        );
        let caddy = PublicEndpoint {
            scheme: "https",
            port: Some(443),
        };
        assert_eq!(
            urls(&h, Some(&caddy), 8091),
            ["https://blog.localhost", "http://127.0.0.1:8091"]
        );
        assert_eq!(urls(&h, None, 8091), ["http://127.0.0.1:8091"]);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("10mb"), Ok(10_000_000));
        assert_eq!(parse_size(" 512 KB "), Ok(512_000));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2000"), Ok(2000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        for bad in [
            "",
            "MB",
            "10XB",
            "-5MB",
            "1.5MB",
            "10MB;rm",
            "999999999999999999GB",
            "10",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_size("2000TB").is_err());
    }

    #[test]
    fn base_domains() {
        assert_eq!(check_base_domain("localhost").unwrap(), "localhost");
        assert_eq!(check_base_domain("Tigawanna.VIP").unwrap(), "tigawanna.vip");
        assert!(check_base_domain("bad domain").is_err());
        assert!(check_base_domain("x.com\n").is_err());
        assert!(check_base_domain("-x").is_err());
    }
}
