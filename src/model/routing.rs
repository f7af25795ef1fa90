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
    fn base_domains() {
        assert_eq!(check_base_domain("localhost").unwrap(), "localhost");
        assert_eq!(check_base_domain("Tigawanna.VIP").unwrap(), "tigawanna.vip");
        assert!(check_base_domain("bad domain").is_err());
        assert!(check_base_domain("x.com\n").is_err());
        assert!(check_base_domain("-x").is_err());
    }
}
