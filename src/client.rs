//! A typed client of the daemon's API, over the local unix socket (the
//! default, no token) or over TCP (`--server URL --token T`).
//!
//! **Architecture Invariant:** the CLI reaches the daemon only through this
//! client, and the client speaks only the wire types of [`crate::api::dto`].

use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::Full;
use hyper::http::{self, Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::dto::ErrorBody;

/// Where the daemon is.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The local unix socket in the data dir.
    Unix(PathBuf),
    /// A daemon's TCP listener, with its bearer token.
    Http {
        base: url::Url,
        token: Option<String>,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Http { base, .. } => write!(f, "{base}"),
        }
    }
}

/// What can go wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the pockestrator daemon at {endpoint}: {reason}\n  is it running? start it with `pockestrator serve`{hint}")]
    Connect {
        endpoint: String,
        reason: String,
        hint: String,
    },
    /// The daemon answered with an error.
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from the daemon ({status}): {body}")]
    Unexpected { status: u16, body: String },
    #[error("talking to the daemon failed: {0}")]
    Transport(String),
}

impl ClientError {
    /// The API error code, when the daemon answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A streamed response body.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, ClientError>> + Send>>;

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    endpoint: Endpoint,
    http: reqwest::Client,
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Self { endpoint, http })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Send a request and return the status and the body as a stream.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        accept: Option<&str>,
    ) -> Result<(StatusCode, ByteStream), ClientError> {
        match &self.endpoint {
            Endpoint::Unix(socket) => {
                let stream = tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(|e| self.connect_error(e.to_string()))?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| ClientError::Transport(e.to_string()))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                let mut req = http::Request::builder()
                    .method(method)
                    .uri(path_and_query)
                    .header(http::header::HOST, "localhost");
                if let Some(a) = accept {
                    req = req.header(http::header::ACCEPT, a);
                }
                if body.is_some() {
                    req = req.header(http::header::CONTENT_TYPE, "application/json");
                }
                let req = req
                    .body(Full::new(Bytes::from(body.unwrap_or_default())))
                    .map_err(|e| ClientError::Transport(e.to_string()))?;
                let resp = sender
                    .send_request(req)
                    .await
                    .map_err(|e| ClientError::Transport(e.to_string()))?;
                let status = resp.status();
                let stream = http_body_util::BodyStream::new(resp.into_body()).filter_map(
                    |frame| async move {
                        match frame {
                            Ok(f) => f.into_data().ok().map(Ok),
                            Err(e) => Some(Err(ClientError::Transport(e.to_string()))),
                        }
                    },
                );
                Ok((status, Box::pin(stream)))
            }
            Endpoint::Http { base, token } => {
                let url = base
                    .join(path_and_query.trim_start_matches('/'))
                    .map_err(|e| ClientError::Transport(e.to_string()))?;
                let mut req = self.http.request(method, url);
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                if let Some(a) = accept {
                    req = req.header(reqwest::header::ACCEPT, a);
                }
                if let Some(b) = body {
                    req = req
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(b);
                }
                let resp = req.send().await.map_err(|e| {
                    if e.is_connect() || e.is_timeout() {
                        self.connect_error(e.to_string())
                    } else {
                        ClientError::Transport(e.to_string())
                    }
                })?;
                let status = StatusCode::from_u16(resp.status().as_u16())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let stream = resp
                    .bytes_stream()
                    .map(|r| r.map_err(|e| ClientError::Transport(e.to_string())));
                Ok((status, Box::pin(stream)))
            }
        }
    }

    fn connect_error(&self, reason: String) -> ClientError {
        let hint = match &self.endpoint {
            Endpoint::Unix(_) => {
                " (or point --data-dir at its data dir, or use --server URL --token T)".to_string()
            }
            Endpoint::Http { .. } => " on that host, and check --server".to_string(),
        };
        ClientError::Connect {
            endpoint: self.endpoint.to_string(),
            reason,
            hint,
        }
    }

    /// Send a JSON request and decode a JSON answer; error answers become
    /// [`ClientError::Api`].
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let (status, stream) = self.send(method, path, body, None).await?;
        let bytes = collect(stream).await?;
        decode(status, &bytes)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    /// A streaming request: error statuses are decoded, success returns the
    /// body stream.
    pub async fn stream<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        accept: &str,
    ) -> Result<ByteStream, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let (status, stream) = self.send(method, path, body, Some(accept)).await?;
        if status.is_success() {
            return Ok(stream);
        }
        let bytes = collect(stream).await?;
        Err(decode::<serde_json::Value>(status, &bytes)
            .err()
            .unwrap_or(ClientError::Unexpected {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).into_owned(),
            }))
    }
}

async fn collect(mut stream: ByteStream) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn decode<T: DeserializeOwned>(status: StatusCode, bytes: &[u8]) -> Result<T, ClientError> {
    if status.is_success() {
        return serde_json::from_slice(bytes).map_err(|e| ClientError::Unexpected {
            status: status.as_u16(),
            body: format!("{e}: {}", String::from_utf8_lossy(bytes)),
        });
    }
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(err) => Err(ClientError::Api {
            status: status.as_u16(),
            code: err.error.code,
            message: err.error.message,
        }),
        Err(_) => Err(ClientError::Unexpected {
            status: status.as_u16(),
            body: String::from_utf8_lossy(bytes).into_owned(),
        }),
    }
}

/// Percent-encode one path segment (instance names are validated by the
/// daemon; this keeps a hostile name from changing the request path).
pub fn segment(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Read a body stream line by line (NDJSON).
pub fn lines(stream: ByteStream) -> impl Stream<Item = Result<String, ClientError>> {
    crate::lines::lines(stream, crate::lines::LineCodec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("moots"), "moots");
        assert_eq!(segment("../etc"), "..%2Fetc");
        assert_eq!(segment("a b\n"), "a%20b%0A");
    }

    #[tokio::test]
    async fn ndjson_lines_survive_chunking() {
        let chunks: Vec<Result<Bytes, ClientError>> = vec![
            Ok(Bytes::from("{\"a\":1}\n{\"b\"")),
            Ok(Bytes::from(":2}\n{\"c\":3}")),
        ];
        let stream: ByteStream = Box::pin(futures::stream::iter(chunks));
        let got: Vec<String> = lines(stream).map(|l| l.unwrap()).collect().await;
        assert_eq!(got, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
    }
}
