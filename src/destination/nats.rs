//! A NATS JetStream object store bucket as a destination (`async-nats`):
//! one connection per operation to the listed servers, with the user and
//! password, token or `.creds` file from [`Credentials`]; the bucket is
//! made if it is missing. An object is only visible once its metadata is
//! written after the last chunk, so a failed upload shows no object; its
//! name is deleted anyway where the server still answers.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, object_store::ObjectStore};
use async_nats::ServerAddr;

use super::{local_failure, DestinationError, FailureKind, CONNECT_TIMEOUT};
use crate::credentials::Credentials;
use crate::model::backup::NatsLocation;
use crate::model::Destination;

pub struct NatsStore {
    bucket: ObjectStore,
    destination: Destination,
    location: NatsLocation,
    credentials: Credentials,
    /// Kept so the connection lives as long as the store.
    _client: async_nats::Client,
}

impl NatsStore {
    pub async fn open(
        destination: &Destination,
        location: &NatsLocation,
        credentials: &Credentials,
    ) -> Result<Self, DestinationError> {
        const WHAT: &str = "cannot reach";
        let fail = |kind, reason: String| {
            DestinationError::new(WHAT, destination, kind, credentials.scrub(&reason))
        };
        let options = credentials.nats_options(None).await.map_err(|(file, e)| {
            fail(
                FailureKind::Setup,
                format!("cannot read the NATS_CREDS file {}: {e}", file.display()),
            )
        })?;
        let options = options
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(Duration::from_secs(10)))
            // A server that goes away mid-operation fails it, instead of
            // the client waiting for it to come back.
            .max_reconnects(Some(2));
        let servers = location
            .server_urls()
            .iter()
            .map(|u| u.parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(FailureKind::Setup, e.to_string()))?;
        let client = options.connect(servers).await.map_err(|e| {
            let kind = match e.kind() {
                async_nats::ConnectErrorKind::Authentication
                | async_nats::ConnectErrorKind::AuthorizationViolation
                | async_nats::ConnectErrorKind::Tls
                | async_nats::ConnectErrorKind::ServerParse => FailureKind::Failed,
                _ => FailureKind::Unreachable,
            };
            fail(kind, format!("cannot connect: {e}"))
        })?;
        let js = jetstream::new(client.clone());
        let bucket = match js.get_object_store(&location.bucket).await {
            Ok(bucket) => bucket,
            Err(_) => js
                .create_object_store(jetstream::object_store::Config {
                    bucket: location.bucket.clone(),
                    description: Some("pockestrator backups".into()),
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    fail(
                        FailureKind::Failed,
                        format!("cannot open or make the bucket: {e}"),
                    )
                })?,
        };
        Ok(NatsStore {
            bucket,
            destination: destination.clone(),
            location: location.clone(),
            credentials: credentials.clone(),
            _client: client,
        })
    }

    fn failure(&self, what: &'static str, kind: FailureKind, e: impl ToString) -> DestinationError {
        DestinationError::new(
            what,
            &self.destination,
            kind,
            self.credentials.scrub(&e.to_string()),
        )
    }

    pub async fn put(&self, file: &Path, name: &str) -> Result<(), DestinationError> {
        const WHAT: &str = "cannot upload the backup to";
        let object = self.location.object(name);
        let mut input = tokio::fs::File::open(file)
            .await
            .map_err(|e| local_failure(WHAT, &self.destination, file, e))?;
        if let Err(e) = self.bucket.put(object.as_str(), &mut input).await {
            if let Err(gone) = self.bucket.delete(&object).await {
                if gone.kind() != jetstream::object_store::DeleteErrorKind::NotFound {
                    tracing::warn!(
                        destination = %self.destination.to_text(),
                        "cannot delete a failed upload's object"
                    );
                }
            }
            return Err(self.failure(WHAT, FailureKind::Unreachable, e));
        }
        Ok(())
    }

    pub async fn fetch(&self, name: &str, to: &Path) -> Result<(), DestinationError> {
        const WHAT: &str = "cannot download the backup from";
        let mut object = self
            .bucket
            .get(self.location.object(name))
            .await
            .map_err(|e| {
                let kind = match e.kind() {
                    jetstream::object_store::GetErrorKind::NotFound => FailureKind::NotFound,
                    _ => FailureKind::Failed,
                };
                self.failure(WHAT, kind, e)
            })?;
        let write_failure = |e| local_failure(WHAT, &self.destination, to, e);
        let mut out = tokio::fs::File::create(to).await.map_err(write_failure)?;
        tokio::io::copy(&mut object, &mut out)
            .await
            .map_err(|e| self.failure(WHAT, FailureKind::Failed, e))?;
        out.sync_all().await.map_err(write_failure)
    }

    pub async fn delete(&self, name: &str) -> Result<(), DestinationError> {
        match self.bucket.delete(self.location.object(name)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == jetstream::object_store::DeleteErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.failure("cannot remove the backup from", FailureKind::Failed, e)),
        }
    }
}
