//! The HTTP side of release sources: one reqwest client with timeouts that
//! make an unreachable source fail fast, small metadata requests with a
//! total deadline, and streaming downloads with an idle deadline only (a
//! 30 MB binary on a slow link may take minutes, but never stalls silently).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::error::{chain, ReleaseError};

/// How long to wait for a TCP (and TLS) connection before trying the next
/// source. DNS failures come back at once regardless.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The whole of a metadata request (listings, checksums.txt).
const METADATA_TIMEOUT: Duration = Duration::from_secs(15);
/// A download may take long, but no single read may stall longer than this.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Metadata is small; refuse to buffer more than this of it.
const METADATA_LIMIT: usize = 64 << 20;

/// An answered metadata request, whatever its status.
pub(crate) struct Fetched {
    pub status: StatusCode,
    /// The URL after redirects: relative links are resolved against it.
    pub url: url::Url,
    pub content_type: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Fetched {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
}

impl Http {
    pub fn new() -> Result<Self, ReleaseError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("pockestrator/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT);
        for cert in system_root_certificates() {
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build().map_err(|e| {
            ReleaseError::Internal(format!("cannot set up the HTTP client: {}", chain(&e)))
        })?;
        Ok(Self { client })
    }

    /// GET a small document. Any HTTP status is returned as it is; only a
    /// failure to get an answer at all is an error.
    pub async fn get(
        &self,
        source_name: &str,
        url: &str,
        headers: &[(HeaderName, String)],
    ) -> Result<Fetched, ReleaseError> {
        let mut request = self.client.get(url).timeout(METADATA_TIMEOUT);
        for (name, value) in headers {
            let value = HeaderValue::from_str(value).map_err(|_| {
                ReleaseError::Internal(format!("header {name} has a value that cannot be sent"))
            })?;
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| request_error(source_name, url, &e))?;
        let status = response.status();
        let final_url = response.url().clone();
        let headers = response.headers().clone();
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| request_error(source_name, url, &e))?;
            if body.len() + chunk.len() > METADATA_LIMIT {
                return Err(ReleaseError::BadResponse {
                    source_name: source_name.to_string(),
                    url: url.to_string(),
                    reason: format!("the answer is larger than {} MiB", METADATA_LIMIT >> 20),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status,
            url: final_url,
            content_type,
            headers,
            body: Bytes::from(body),
        })
    }

    /// Whether `url` exists (HEAD answered 2xx). Used only to tell "this
    /// mirror lacks the version" from "this mirror lacks its checksums".
    pub async fn exists(&self, source_name: &str, url: &str) -> Result<bool, ReleaseError> {
        let response = self
            .client
            .head(url)
            .timeout(METADATA_TIMEOUT)
            .send()
            .await
            .map_err(|e| request_error(source_name, url, &e))?;
        Ok(response.status().is_success())
    }

    /// Stream `url` into `file`, hashing on the way, calling `progress` with
    /// (bytes so far, Content-Length) after each chunk. Returns the size and
    /// the lowercase hex sha256 of what was written.
    pub async fn download(
        &self,
        source_name: &str,
        url: &str,
        file: &mut tokio::fs::File,
        file_path: &Path,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<(u64, String), ReleaseError> {
        let response = self
            .client
            .get(url)
            .header(ACCEPT, "application/octet-stream")
            .send()
            .await
            .map_err(|e| request_error(source_name, url, &e))?;
        if !response.status().is_success() {
            return Err(status_error(source_name, url, response.status(), ""));
        }
        let total = response.content_length();
        progress(0, total);
        let mut hasher = Sha256::new();
        let mut written: u64 = 0;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| request_error(source_name, url, &e))?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| ReleaseError::io("write", file_path, e))?;
            written += chunk.len() as u64;
            progress(written, total);
        }
        if let Some(total) = total {
            if written != total {
                return Err(ReleaseError::Http {
                    source_name: source_name.to_string(),
                    url: url.to_string(),
                    reason: format!("the download ended after {written} of {total} bytes"),
                });
            }
        }
        file.flush()
            .await
            .map_err(|e| ReleaseError::io("write", file_path, e))?;
        Ok((written, hex::encode(hasher.finalize())))
    }
}

/// Map a reqwest failure: no connection (DNS, refused, connect timeout) is
/// `Unreachable`, so that callers and logs can tell it from a server that
/// answered badly.
pub(crate) fn request_error(source_name: &str, url: &str, err: &reqwest::Error) -> ReleaseError {
    let url = redact(url);
    // reqwest's outermost message only repeats the URL ("error sending
    // request for url (…)"); the causes below it say what went wrong.
    let reason = match std::error::Error::source(err) {
        Some(cause) => chain(cause),
        None => chain(err),
    };
    if err.is_connect() || (err.is_timeout() && !err.is_body()) {
        ReleaseError::Unreachable {
            source_name: source_name.to_string(),
            url,
            reason,
        }
    } else {
        ReleaseError::Http {
            source_name: source_name.to_string(),
            url,
            reason,
        }
    }
}

pub(crate) fn status_error(
    source_name: &str,
    url: &str,
    status: StatusCode,
    hint: &str,
) -> ReleaseError {
    let hint = if hint.is_empty() && status.is_server_error() {
        "; the server has trouble: try again later, or configure another release source"
    } else {
        hint
    };
    ReleaseError::HttpStatus {
        source_name: source_name.to_string(),
        url: redact(url),
        status: status.as_u16(),
        hint: hint.to_string(),
    }
}

/// URLs end up in error messages and logs: drop any user:password part.
fn redact(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => raw.to_string(),
    }
}

/// The operating system's CA bundle, trusted in addition to the built-in
/// web PKI roots: hosts behind a TLS-inspecting proxy or with a private
/// mirror put their CA there, as curl and pip expect.
fn system_root_certificates() -> Vec<reqwest::Certificate> {
    let candidates = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/ca-bundle.pem",
                "/etc/ssl/cert.pem",
            ]
            .into_iter()
            .map(std::path::PathBuf::from),
        );
    for path in candidates {
        let Ok(pem) = std::fs::read(&path) else {
            continue;
        };
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) => return certs,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %chain(&e), "ignoring unreadable CA bundle");
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact("https://user:secret@mirror.example/pb/v0.28.4/checksums.txt"),
            "https://mirror.example/pb/v0.28.4/checksums.txt"
        );
        assert_eq!(
            redact("https://pypi.org/simple/"),
            "https://pypi.org/simple/"
        );
    }
}
