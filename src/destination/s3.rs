//! An S3-compatible store as a destination, through `object_store`'s S3
//! client: path-style requests when an endpoint is given (MinIO, moto,
//! Garage…), keys from [`Credentials`], connect failures reported within
//! seconds (two retries at most). Archives larger than one part go up in
//! a multipart upload, read from the file part by part, and aborted if
//! anything fails so that no partial object stays behind.

use std::path::Path;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, MultipartUpload, ObjectStore, PutPayload, RetryConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{local_failure, DestinationError, FailureKind, CONNECT_TIMEOUT};
use crate::credentials::Credentials;
use crate::model::backup::S3Location;
use crate::model::Destination;

/// The size of one multipart part (S3 wants at least 5 MiB but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;

pub struct S3Store {
    store: AmazonS3,
    destination: Destination,
    location: S3Location,
    credentials: Credentials,
}

impl S3Store {
    pub fn open(
        destination: &Destination,
        location: &S3Location,
        credentials: &Credentials,
    ) -> Result<Self, DestinationError> {
        let setup = |reason: String| {
            DestinationError::new(
                "cannot use the destination",
                destination,
                FailureKind::Setup,
                reason,
            )
        };
        let (Some(key_id), Some(secret)) = (
            credentials.aws_access_key_id(),
            credentials.aws_secret_access_key(),
        ) else {
            return Err(setup(
                "no S3 credentials: give the daemon AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in its environment or in its --credentials file".into(),
            ));
        };
        let region = location
            .region
            .as_deref()
            .or(credentials.aws_region())
            .unwrap_or("us-east-1");
        let options = ClientOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(Duration::from_secs(120))
            .with_allow_http(
                location
                    .endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
            );
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(20),
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&location.bucket)
            .with_region(region)
            .with_access_key_id(key_id.expose())
            .with_secret_access_key(secret.expose())
            .with_client_options(options)
            .with_retry(retry);
        if let Some(token) = credentials.aws_session_token() {
            builder = builder.with_token(token.expose());
        }
        if let Some(endpoint) = &location.endpoint {
            // Path-style (`ENDPOINT/BUCKET/KEY`): what S3-compatible stores
            // answer without wildcard DNS.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let store = builder
            .build()
            .map_err(|e| setup(credentials.scrub(&e.to_string())))?;
        Ok(S3Store {
            store,
            destination: destination.clone(),
            location: location.clone(),
            credentials: credentials.clone(),
        })
    }

    fn path(&self, name: &str) -> ObjectPath {
        ObjectPath::from(self.location.key(name))
    }

    fn failure(&self, what: &'static str, e: &object_store::Error) -> DestinationError {
        let kind = match e {
            object_store::Error::NotFound { .. } => FailureKind::NotFound,
            other if unreachable(other) => FailureKind::Unreachable,
            _ => FailureKind::Failed,
        };
        let reason = match kind {
            FailureKind::Unreachable => format!(
                "the store does not answer ({})",
                self.credentials.scrub(&root_cause(e))
            ),
            FailureKind::NotFound => "no such object".to_string(),
            _ => self.credentials.scrub(&e.to_string()),
        };
        DestinationError::new(what, &self.destination, kind, reason)
    }

    pub async fn put(&self, file: &Path, name: &str) -> Result<(), DestinationError> {
        const WHAT: &str = "cannot upload the backup to";
        let read_failure = |e| local_failure(WHAT, &self.destination, file, e);
        let mut input = tokio::fs::File::open(file).await.map_err(read_failure)?;
        let size = input.metadata().await.map_err(read_failure)?.len();
        let path = self.path(name);
        if size <= PART_SIZE as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            input.read_to_end(&mut bytes).await.map_err(read_failure)?;
            self.store
                .put(&path, PutPayload::from(bytes))
                .await
                .map_err(|e| self.failure(WHAT, &e))?;
            return Ok(());
        }
        let mut upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| self.failure(WHAT, &e))?;
        let sent = async {
            loop {
                let mut part = Vec::with_capacity(PART_SIZE);
                (&mut input)
                    .take(PART_SIZE as u64)
                    .read_to_end(&mut part)
                    .await
                    .map_err(read_failure)?;
                if part.is_empty() {
                    break;
                }
                upload
                    .put_part(PutPayload::from(part))
                    .await
                    .map_err(|e| self.failure(WHAT, &e))?;
            }
            upload.complete().await.map_err(|e| self.failure(WHAT, &e))
        }
        .await;
        if let Err(e) = sent {
            if let Err(abort) = upload.abort().await {
                tracing::warn!(
                    destination = %self.destination.to_text(),
                    error = %self.credentials.scrub(&abort.to_string()),
                    "cannot abort a failed multipart upload: the store's lifecycle rules must take its parts"
                );
            }
            return Err(e);
        }
        Ok(())
    }

    pub async fn fetch(&self, name: &str, to: &Path) -> Result<(), DestinationError> {
        const WHAT: &str = "cannot download the backup from";
        let got = self
            .store
            .get(&self.path(name))
            .await
            .map_err(|e| self.failure(WHAT, &e))?;
        let write_failure = |e| local_failure(WHAT, &self.destination, to, e);
        let mut out = tokio::fs::File::create(to).await.map_err(write_failure)?;
        let mut stream = got.into_stream();
        use futures::StreamExt;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.failure(WHAT, &e))?;
            out.write_all(&chunk).await.map_err(write_failure)?;
        }
        out.sync_all().await.map_err(write_failure)
    }

    pub async fn delete(&self, name: &str) -> Result<(), DestinationError> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failure("cannot remove the backup from", &e)),
        }
    }
}

/// Whether the store could not be reached at all.
fn unreachable(e: &object_store::Error) -> bool {
    use std::io::ErrorKind;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(http) = s.downcast_ref::<HttpError>() {
            if matches!(http.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout) {
                return true;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::TimedOut
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            ) {
                return true;
            }
        }
        source = s.source();
    }
    // The client does not always hand its cause on: its words for "no
    // answer at all".
    let text = e.to_string();
    text.contains("error sending request") || text.contains("dns error")
}

/// The innermost error's text (e.g. "Connection refused (os error 111)").
fn root_cause(e: &object_store::Error) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}
