//! A small client of Caddy's admin API over TCP (`http://HOST:PORT`) or a
//! unix socket (`unix//path`, Caddy's own spelling).
//!
//! One connection per request: the admin API closes the connection after
//! every config change anyway, and the daemon talks to it rarely.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::http::{self, header, Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::router::RouterError;

/// How long to wait for a connection to the admin endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one admin request may take: a config change makes Caddy
/// provision the whole new config before it answers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a request that failed on the way is sent in all.
const TRANSPORT_ATTEMPTS: u32 = 4;
/// The pause before sending again (times the attempt number).
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Caddy's error bodies are short; anything longer is cut in messages.
const BODY_IN_ERRORS: usize = 2000;

/// Where Caddy's admin API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminEndpoint {
    /// TCP: where to connect and the `Host` header Caddy's DNS-rebinding
    /// check expects (`host:port`, as Caddy lists its allowed origins).
    Tcp {
        host: String,
        port: u16,
        host_header: String,
    },
    /// A unix socket; Caddy ≥ 2.7 accepts any `Host` on it.
    Unix(PathBuf),
}

impl AdminEndpoint {
    /// Parse `http://127.0.0.1:2019`, `localhost:2019` or `unix//run/caddy.sock`.
    pub fn parse(raw: &str) -> Result<Self, RouterError> {
        let bad = |why: String| {
            RouterError::Other(format!(
                "caddy admin address {} is not usable: {why}; use http://HOST:PORT or unix//PATH",
                crate::model::names::shown(raw)
            ))
        };
        if let Some(path) = raw.strip_prefix("unix/") {
            if path.is_empty() {
                return Err(bad("the socket path is empty".into()));
            }
            return Ok(AdminEndpoint::Unix(PathBuf::from(path)));
        }
        let with_scheme = if raw.contains("://") {
            raw.to_string()
        } else {
            format!("http://{raw}")
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| bad(e.to_string()))?;
        if url.scheme() != "http" {
            return Err(bad(format!("the scheme {} is not supported", url.scheme())));
        }
        if url.path() != "/" && !url.path().is_empty() {
            return Err(bad("it must not have a path".into()));
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let (host, host_header) = match url.host() {
            Some(url::Host::Domain(d)) => (d.to_string(), format!("{d}:{port}")),
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), format!("{ip}:{port}")),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), format!("[{ip}]:{port}")),
            None => return Err(bad("it has no host".into())),
        };
        Ok(AdminEndpoint::Tcp {
            host,
            port,
            host_header,
        })
    }
}

impl std::fmt::Display for AdminEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminEndpoint::Tcp { host_header, .. } => write!(f, "http://{host_header}"),
            AdminEndpoint::Unix(p) => write!(f, "unix/{}", p.display()),
        }
    }
}

/// One answer of the admin API.
#[derive(Debug)]
pub struct AdminResponse {
    pub status: StatusCode,
    /// `"PATH HASH"` (with the quotes): pass back as `If-Match` so that a
    /// change applies only if the config at PATH did not change meanwhile.
    pub etag: Option<String>,
    pub body: Bytes,
}

impl AdminResponse {
    /// The body as JSON (`null` for an empty body).
    pub fn json(&self) -> Result<Value, RouterError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            RouterError::Other(format!(
                "caddy's admin API answered something that is not JSON: {e}"
            ))
        })
    }

    /// The body as text for an error message, bounded.
    pub fn body_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let mut out: String = text.chars().take(BODY_IN_ERRORS).collect();
        if text.chars().count() > BODY_IN_ERRORS {
            out.push('…');
        }
        out
    }

    /// `Refused` unless the status is 2xx.
    pub fn ok(self) -> Result<Self, RouterError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(self.refused())
        }
    }

    pub fn refused(&self) -> RouterError {
        RouterError::Refused {
            status: self.status.as_u16(),
            body: self.body_text(),
        }
    }
}

/// The client.
#[derive(Debug, Clone)]
pub struct AdminClient {
    endpoint: AdminEndpoint,
}

impl AdminClient {
    pub fn new(endpoint: AdminEndpoint) -> Self {
        Self { endpoint }
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> RouterError {
        RouterError::Unreachable {
            endpoint: self.endpoint.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Send one request; any status is returned, transport failures are
    /// `Unreachable`.
    ///
    /// A request that fails on the way (refused, reset, closed early) is
    /// sent again a few times: Caddy replaces its admin server on every
    /// config change, and a connection accepted by the old one just before
    /// it stops is closed unanswered. Every request this router sends may
    /// be repeated safely: GETs, PATCHes that set a value, DELETEs (404 the
    /// second time), PUTs that fail with 409 once the key exists, and
    /// `If-Match` requests that fail with 412 once applied.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<AdminResponse, RouterError> {
        let bytes = match body {
            Some(v) => Some(Bytes::from(
                serde_json::to_vec(v).map_err(|e| RouterError::Other(e.to_string()))?,
            )),
            None => None,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = self.build(&method, path, bytes.clone(), if_match)?;
            let sent = tokio::time::timeout(REQUEST_TIMEOUT, self.send_once(req))
                .await
                .map_err(|_| {
                    self.unreachable(format!("no answer to {path} within {REQUEST_TIMEOUT:?}"))
                })?;
            match sent {
                Err(e) if attempt < TRANSPORT_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "caddy admin request failed on the way; sending it again");
                    tokio::time::sleep(RETRY_PAUSE * attempt).await;
                }
                other => return other,
            }
        }
    }

    fn build(
        &self,
        method: &Method,
        path: &str,
        body: Option<Bytes>,
        if_match: Option<&str>,
    ) -> Result<http::Request<Full<Bytes>>, RouterError> {
        let host_header = match &self.endpoint {
            AdminEndpoint::Tcp { host_header, .. } => host_header.as_str(),
            AdminEndpoint::Unix(_) => "localhost",
        };
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, host_header)
            .header(
                header::USER_AGENT,
                concat!("pockestrator/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(tag) = if_match {
            req = req.header(header::IF_MATCH, tag);
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        req.body(Full::new(body.unwrap_or_default())).map_err(|e| {
            RouterError::Other(format!("cannot build an admin request for {path}: {e}"))
        })
    }

    async fn send_once(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<AdminResponse, RouterError> {
        let no_connection =
            |_| self.unreachable(format!("no connection within {CONNECT_TIMEOUT:?}"));
        match &self.endpoint {
            AdminEndpoint::Tcp { host, port, .. } => {
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect_tcp(host, *port))
                    .await
                    .map_err(no_connection)?
                    .map_err(|e| self.unreachable(e))?;
                exchange(stream, req).await.map_err(|e| self.unreachable(e))
            }
            AdminEndpoint::Unix(path) => {
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(path))
                        .await
                        .map_err(no_connection)?
                        .map_err(|e| self.unreachable(e))?;
                exchange(stream, req).await.map_err(|e| self.unreachable(e))
            }
        }
    }

    /// GET a config path as JSON.
    pub async fn get(&self, path: &str) -> Result<(Value, Option<String>), RouterError> {
        let resp = self.request(Method::GET, path, None, None).await?.ok()?;
        Ok((resp.json()?, resp.etag.clone()))
    }
}

async fn connect_tcp(host: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => tokio::net::TcpStream::connect(SocketAddr::new(ip, port)).await,
        Err(_) => tokio::net::TcpStream::connect((host, port)).await,
    }
}

async fn exchange<S>(
    stream: S,
    req: http::Request<Full<Bytes>>,
) -> Result<AdminResponse, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let etag = resp
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(AdminResponse { status, etag, body })
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_admin_addresses() {
        let tcp = |host: &str, port, hh: &str| AdminEndpoint::Tcp {
            host: host.into(),
            port,
            host_header: hh.into(),
        };
        assert_eq!(
            AdminEndpoint::parse("http://127.0.0.1:2019").unwrap(),
            tcp("127.0.0.1", 2019, "127.0.0.1:2019")
        );
        assert_eq!(
            AdminEndpoint::parse("localhost:2019").unwrap(),
            tcp("localhost", 2019, "localhost:2019")
        );
        assert_eq!(
            AdminEndpoint::parse("http://[::1]:2019/").unwrap(),
            tcp("::1", 2019, "[::1]:2019")
        );
        assert_eq!(
            AdminEndpoint::parse("http://localhost").unwrap(),
            tcp("localhost", 80, "localhost:80")
        );
        assert_eq!(
            AdminEndpoint::parse("unix//run/caddy/admin.sock").unwrap(),
            AdminEndpoint::Unix("/run/caddy/admin.sock".into())
        );
        assert_eq!(
            AdminEndpoint::parse("unix//run/caddy/admin.sock")
                .unwrap()
                .to_string(),
            "unix//run/caddy/admin.sock"
        );
        for bad in [
            "unix/",
            "https://127.0.0.1:2019",
            "http://127.0.0.1:2019/config",
            "http://",
        ] {
            assert!(AdminEndpoint::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
