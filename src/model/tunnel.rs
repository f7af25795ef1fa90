//! A Cloudflare tunnel's configuration for the fleet (seed 002):
//! `cloudflared`'s `config.yml` with one ingress rule per hostname an
//! instance answers at, each to the proxy in front of the instances (which
//! sends it on by its Host header), and the catch-all 404 rule cloudflared
//! requires last.

use std::fmt;

/// A tunnel's name or UUID (`cloudflared tunnel create NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelName(String);

/// Why a tunnel setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TunnelError(pub String);

impl TunnelName {
    pub fn parse(raw: &str) -> Result<Self, TunnelError> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(TunnelError(format!(
                "tunnel {} is not a tunnel name or UUID: 1 to 64 of a-z, A-Z, 0-9, - and _",
                crate::model::names::shown(raw)
            )))
        }
    }
}

impl fmt::Display for TunnelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tunnel's credentials file: an absolute path without anything YAML
/// or a shell would read differently.
pub fn check_credentials_file(raw: &str) -> Result<(), TunnelError> {
    let ok = raw.starts_with('/')
        && raw.len() <= 4096
        && !raw.split('/').any(|part| part == "..")
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(TunnelError(format!(
            "credentials file {} must be an absolute path of a-z, A-Z, 0-9, /, ., _ and - (no ..)",
            crate::model::names::shown(raw)
        )))
    }
}

/// Where cloudflared sends the requests: `http(s)://HOST:PORT` of the
/// proxy in front of the instances.
pub fn check_service(raw: &str) -> Result<(), TunnelError> {
    let rest = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"));
    let ok = rest.is_some_and(|r| {
        !r.is_empty()
            && r.len() <= 253
            && r.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    });
    if ok {
        Ok(())
    } else {
        Err(TunnelError(format!(
            "service {} must be http://HOST:PORT or https://HOST:PORT (the proxy in front of the instances)",
            crate::model::names::shown(raw)
        )))
    }
}

/// `cloudflared`'s configuration: the hostnames sorted, no duplicates,
/// each kept as the Host header so the proxy finds the instance.
pub fn render(
    tunnel: &TunnelName,
    credentials_file: Option<&str>,
    service: &str,
    hostnames: &[String],
) -> String {
    let mut hosts: Vec<&String> = hostnames.iter().collect();
    hosts.sort();
    hosts.dedup();
    let mut out = String::new();
    out.push_str(
        "# cloudflared configuration for the fleet, written by `pockestrator tunnel config`.\n",
    );
    out.push_str("# Run: cloudflared tunnel --config FILE run\n");
    out.push_str(&format!("tunnel: {tunnel}\n"));
    if let Some(c) = credentials_file {
        out.push_str(&format!("credentials-file: {c}\n"));
    }
    out.push_str("ingress:\n");
    for h in hosts {
        out.push_str(&format!("  - hostname: {h}\n    service: {service}\n"));
        out.push_str(&format!("    originRequest:\n      httpHostHeader: {h}\n"));
    }
    out.push_str("  - service: http_status:404\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn every_hostname_goes_to_the_proxy_and_the_rest_is_404() {
        let t = TunnelName::parse("6ff42ae2-765d-4adf-8112-31c55c1551ef").unwrap();
        let hosts = vec![
            "shop.example.com".to_string(),
            "blog.example.com".to_string(),
            "shop.example.com".to_string(),
        ];
        expect![[r#"
            # cloudflared configuration for the fleet, written by `pockestrator tunnel config`.
            # Run: cloudflared tunnel --config FILE run
            tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef
            credentials-file: /etc/cloudflared/fleet.json
            ingress:
              - hostname: blog.example.com
                service: http://127.0.0.1:8080
                originRequest:
                  httpHostHeader: blog.example.com
              - hostname: shop.example.com
                service: http://127.0.0.1:8080
                originRequest:
                  httpHostHeader: shop.example.com
              - service: http_status:404
        "#]]
        .assert_eq(&render(
            &t,
            Some("/etc/cloudflared/fleet.json"),
            "http://127.0.0.1:8080",
            &hosts,
        ));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(TunnelName::parse("a b").is_err());
        assert!(TunnelName::parse("x\nservice: evil").is_err());
        assert!(check_credentials_file("relative.json").is_err());
        assert!(check_credentials_file("/etc/../x.json").is_err());
        assert!(check_credentials_file("/etc/x.json\ningress: []").is_err());
        assert!(check_service("ftp://x").is_err());
        assert!(check_service("http://a b").is_err());
        assert!(check_service("http://127.0.0.1:8080").is_ok());
        assert!(check_service("https://[::1]:443").is_ok());
    }
}
