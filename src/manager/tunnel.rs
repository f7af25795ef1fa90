//! `tunnel config`: a Cloudflare tunnel's ingress for every hostname this
//! host's instances answer at, to the proxy in front of them.

use super::{Manager, ManagerError, Result};
use crate::model::tunnel::{self, TunnelName};

impl Manager {
    /// `cloudflared`'s configuration, and the hostnames in it. `service`
    /// defaults to the embedded proxy's address.
    pub fn tunnel_config(
        &self,
        tunnel_name: &str,
        credentials_file: Option<&str>,
        service: Option<&str>,
    ) -> Result<(String, Vec<String>)> {
        let invalid = |e: tunnel::TunnelError| ManagerError::Invalid(e.to_string());
        let name = TunnelName::parse(tunnel_name).map_err(invalid)?;
        if let Some(c) = credentials_file {
            tunnel::check_credentials_file(c).map_err(invalid)?;
        }
        let service = match service {
            Some(s) => {
                tunnel::check_service(s).map_err(invalid)?;
                s.to_string()
            }
            None => format!("http://{}", self.cfg.routing.proxy_listen),
        };
        let mut hosts: Vec<String> = self
            .all_routes()
            .into_iter()
            .flat_map(|r| r.hosts)
            .collect();
        hosts.sort();
        hosts.dedup();
        let file = tunnel::render(&name, credentials_file, &service, &hosts);
        Ok((file, hosts))
    }
}
