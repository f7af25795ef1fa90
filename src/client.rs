//! A typed client of the daemon's API, over the local unix socket (the
//! default, no token) or over TCP (`--server URL --token T`).
//!
//! Each API operation is one method of [`Client`], returning its wire type:
//! the API's paths and query strings are written here and nowhere else in
//! the CLI. Path segments are percent-encoded with `segment`, queries are
//! form-encoded.
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

use crate::api::dto::{
    AddDomain, ApplyDto, ApplyFleet, BackupDto, BackupList, ConfigHistory, CreateBackup,
    CreateInstance, CreatedDto, DeletedBackup, DeletedDto, DeployCredentials, DeployDto,
    DeployList, DoctorReport, DomainList, DrainDto, ErrorBody, EventList, ExportDto, HostList,
    ImportReport, ImportRequest, InstallProgress, InstallVersion, InstanceDto, InstanceList,
    InstanceOpenApi, LogLines, MoveInstance, MovedDto, PlanDto, PlanFleet, PushReportDto,
    PushSchema, RestoreBackup, ScheduleState, SchemaFile, SetSchedule, SetSuperuser, StartDeploy,
    StartRollback, SuperuserDto, TunnelDto, UpdateInstance, UpgradeInstance, VersionList,
    WebhookDto,
};

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
    /// A line of a streamed answer that is not what the daemon should send.
    #[error("unexpected progress line from the daemon: {line}: {reason}")]
    BadLine { line: String, reason: String },
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

/// The progress of a release install, one event at a time.
pub type ProgressStream = Pin<Box<dyn Stream<Item = Result<InstallProgress, ClientError>> + Send>>;

/// What to do to an instance's process: each one is its own endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Start,
    Stop,
    Restart,
    Sleep,
}

impl Lifecycle {
    /// The last segment of its endpoint's path.
    fn action(self) -> &'static str {
        match self {
            Lifecycle::Start => "start",
            Lifecycle::Stop => "stop",
            Lifecycle::Restart => "restart",
            Lifecycle::Sleep => "sleep",
        }
    }
}

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
    async fn send(
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
    async fn call<B: Serialize, T: DeserializeOwned>(
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

    /// A request whose success has no body (204).
    async fn call_no_content<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let (status, stream) = self.send(method, path, body, None).await?;
        let bytes = collect(stream).await?;
        if status.is_success() {
            return Ok(());
        }
        decode::<serde_json::Value>(status, &bytes).map(|_| ())
    }

    /// `GET` a path and decode its JSON answer.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    /// A streaming request: error statuses are decoded, success returns the
    /// body stream.
    async fn stream<B: Serialize>(
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

    /// Every instance: `GET /api/v1/instances`.
    pub async fn list_instances(&self) -> Result<InstanceList, ClientError> {
        self.get(INSTANCES).await
    }

    /// The hosts of the cluster: `GET /api/v1/hosts`.
    pub async fn hosts(&self) -> Result<HostList, ClientError> {
        self.get(HOSTS).await
    }

    /// Move an instance to another host: `POST /api/v1/instances/{name}/move`.
    pub async fn move_instance(&self, name: &str, to: &str) -> Result<MovedDto, ClientError> {
        let body = MoveInstance { to: to.to_string() };
        self.call(Method::POST, &instance_sub(name, "move"), Some(&body))
            .await
    }

    /// Move every instance of a host elsewhere: `POST /api/v1/hosts/{name}/drain`.
    pub async fn drain_host(&self, host: &str) -> Result<DrainDto, ClientError> {
        let path = format!("{HOSTS}/{}/drain", segment(host));
        self.call::<(), _>(Method::POST, &path, None).await
    }

    /// Let a drained host take instances again: `POST /api/v1/hosts/{name}/undrain`.
    pub async fn undrain_host(&self, host: &str) -> Result<HostList, ClientError> {
        let path = format!("{HOSTS}/{}/undrain", segment(host));
        self.call::<(), _>(Method::POST, &path, None).await
    }

    /// What an apply of a fleet file would change: `POST /api/v1/fleet/plan`.
    pub async fn fleet_plan(&self, body: &PlanFleet) -> Result<PlanDto, ClientError> {
        self.call(Method::POST, "/api/v1/fleet/plan", Some(body))
            .await
    }

    /// Apply a fleet file (or a saved plan): `POST /api/v1/fleet/apply`.
    pub async fn fleet_apply(&self, body: &ApplyFleet) -> Result<ApplyDto, ClientError> {
        self.call(Method::POST, "/api/v1/fleet/apply", Some(body))
            .await
    }

    /// The fleet as it runs, as a fleet file: `GET /api/v1/fleet/export`.
    pub async fn fleet_export(&self, fleet: Option<&str>) -> Result<ExportDto, ClientError> {
        let mut q = Query::new();
        if let Some(f) = fleet {
            q.pair("fleet", f);
        }
        self.get(&q.finish("/api/v1/fleet/export".to_string()))
            .await
    }

    /// Push a schema to instances: `POST /api/v1/schema/push`.
    pub async fn schema_push(&self, body: &PushSchema) -> Result<PushReportDto, ClientError> {
        self.call(Method::POST, "/api/v1/schema/push", Some(body))
            .await
    }

    /// A Cloudflare tunnel's configuration: `GET /api/v1/tunnel/config`.
    pub async fn tunnel_config(
        &self,
        tunnel: &str,
        credentials_file: Option<&str>,
        service: Option<&str>,
    ) -> Result<TunnelDto, ClientError> {
        let mut q = Query::new();
        q.pair("tunnel", tunnel);
        if let Some(c) = credentials_file {
            q.pair("credentials_file", c);
        }
        if let Some(s) = service {
            q.pair("service", s);
        }
        self.get(&q.finish("/api/v1/tunnel/config".to_string()))
            .await
    }

    /// One instance in detail: `GET /api/v1/instances/{name}`.
    pub async fn instance(&self, name: &str) -> Result<InstanceDto, ClientError> {
        self.get(&instance_path(name)).await
    }

    /// Create an instance and wait until it is healthy: `POST /api/v1/instances`.
    pub async fn create_instance(&self, body: &CreateInstance) -> Result<CreatedDto, ClientError> {
        self.call(Method::POST, INSTANCES, Some(body)).await
    }

    /// Change an instance's settings: `PATCH /api/v1/instances/{name}`.
    pub async fn update_instance(
        &self,
        name: &str,
        body: &UpdateInstance,
    ) -> Result<InstanceDto, ClientError> {
        self.call(Method::PATCH, &instance_path(name), Some(body))
            .await
    }

    /// Start, stop or restart an instance: `POST /api/v1/instances/{name}/{action}`.
    pub async fn lifecycle(
        &self,
        name: &str,
        action: Lifecycle,
    ) -> Result<InstanceDto, ClientError> {
        self.call::<(), _>(Method::POST, &instance_sub(name, action.action()), None)
            .await
    }

    /// Delete an instance, archiving its data unless `purge`: `DELETE /api/v1/instances/{name}`.
    pub async fn delete_instance(
        &self,
        name: &str,
        purge: bool,
    ) -> Result<DeletedDto, ClientError> {
        self.call::<(), _>(Method::DELETE, &delete_path(name, purge), None)
            .await
    }

    /// Switch an instance to another PocketBase: `POST /api/v1/instances/{name}/upgrade`.
    pub async fn upgrade(
        &self,
        name: &str,
        body: &UpgradeInstance,
    ) -> Result<InstanceDto, ClientError> {
        self.call(Method::POST, &instance_sub(name, "upgrade"), Some(body))
            .await
    }

    /// Start a deploy from git: `POST /api/v1/instances/{name}/deploys`.
    pub async fn start_deploy(
        &self,
        name: &str,
        body: &StartDeploy,
    ) -> Result<DeployDto, ClientError> {
        self.call(Method::POST, &instance_sub(name, "deploys"), Some(body))
            .await
    }

    /// An instance's deploys: `GET /api/v1/instances/{name}/deploys`.
    pub async fn deploys(&self, name: &str) -> Result<DeployList, ClientError> {
        self.get(&instance_sub(name, "deploys")).await
    }

    /// One deploy: `GET /api/v1/instances/{name}/deploys/{deploy}`.
    pub async fn deploy(&self, name: &str, id: u32) -> Result<DeployDto, ClientError> {
        self.get(&format!("{}/{id}", instance_sub(name, "deploys")))
            .await
    }

    /// A deploy's log as it is written, until the deploy ends:
    /// `GET /api/v1/instances/{name}/deploys/{deploy}/log?follow=true`.
    pub async fn follow_deploy_log(&self, name: &str, id: u32) -> Result<ByteStream, ClientError> {
        let mut query = Query::new();
        query.pair("lines", "10000");
        query.pair("follow", "true");
        let path = query.finish(format!("{}/{id}/log", instance_sub(name, "deploys")));
        self.stream::<()>(Method::GET, &path, None, "text/plain")
            .await
    }

    /// Roll back to an earlier release: `POST /api/v1/instances/{name}/rollback`.
    pub async fn rollback(
        &self,
        name: &str,
        body: &StartRollback,
    ) -> Result<DeployDto, ClientError> {
        self.call(Method::POST, &instance_sub(name, "rollback"), Some(body))
            .await
    }

    /// Make or rotate the webhook secret: `PUT /api/v1/instances/{name}/webhook`.
    pub async fn set_webhook(&self, name: &str) -> Result<WebhookDto, ClientError> {
        self.call::<(), _>(Method::PUT, &instance_sub(name, "webhook"), None)
            .await
    }

    /// Turn the webhook off: `DELETE /api/v1/instances/{name}/webhook`.
    pub async fn delete_webhook(&self, name: &str) -> Result<(), ClientError> {
        self.call_no_content::<()>(Method::DELETE, &instance_sub(name, "webhook"), None)
            .await
    }

    /// Keep a repository token or SSH deploy key:
    /// `PUT /api/v1/instances/{name}/deploy-credentials`.
    pub async fn set_deploy_credentials(
        &self,
        name: &str,
        body: &DeployCredentials,
    ) -> Result<(), ClientError> {
        self.call_no_content(
            Method::PUT,
            &instance_sub(name, "deploy-credentials"),
            Some(body),
        )
        .await
    }

    /// The last `lines` lines of an instance's log: `GET /api/v1/instances/{name}/logs`.
    pub async fn logs(&self, name: &str, lines: usize) -> Result<LogLines, ClientError> {
        self.get(&logs_path(name, lines, false)).await
    }

    /// The last `lines` lines of an instance's log, then new output as it
    /// comes, as plain text: `GET /api/v1/instances/{name}/logs?follow=true`.
    pub async fn follow_logs(&self, name: &str, lines: usize) -> Result<ByteStream, ClientError> {
        self.stream::<()>(
            Method::GET,
            &logs_path(name, lines, true),
            None,
            "text/plain",
        )
        .await
    }

    /// An instance's collections as a schema file holds them:
    /// `GET /api/v1/instances/{name}/schema`.
    pub async fn schema(&self, name: &str) -> Result<SchemaFile, ClientError> {
        self.get(&instance_sub(name, "schema")).await
    }

    /// The OpenAPI document of an instance's PocketBase API:
    /// `GET /api/v1/instances/{name}/openapi.json`.
    pub async fn instance_openapi(&self, name: &str) -> Result<InstanceOpenApi, ClientError> {
        self.get(&instance_sub(name, "openapi.json")).await
    }

    /// Types of an instance's collections in `lang`, as text:
    /// `GET /api/v1/instances/{name}/types?lang=LANG`.
    pub async fn types(&self, name: &str, lang: &str) -> Result<String, ClientError> {
        let stream = self
            .stream::<()>(Method::GET, &types_path(name, lang), None, "text/plain")
            .await?;
        let bytes = collect(stream).await?;
        String::from_utf8(bytes).map_err(|e| ClientError::Unexpected {
            status: 200,
            body: format!("the types are not UTF-8: {e}"),
        })
    }

    /// PocketBase versions installed and offered: `GET /api/v1/versions`.
    pub async fn versions(&self) -> Result<VersionList, ClientError> {
        self.get(VERSIONS).await
    }

    /// Install a release, streaming its progress: `POST /api/v1/versions/install`.
    pub async fn install_version(
        &self,
        body: &InstallVersion,
    ) -> Result<ProgressStream, ClientError> {
        let stream = self
            .stream(Method::POST, VERSIONS_INSTALL, Some(body), NDJSON)
            .await?;
        Ok(progress(stream))
    }

    /// The audit log, newest first, optionally of one instance and older than
    /// event `before`: `GET /api/v1/events`.
    pub async fn events(
        &self,
        instance: Option<&str>,
        limit: Option<u32>,
        before: Option<i64>,
    ) -> Result<EventList, ClientError> {
        self.get(&events_path(instance, limit, before)).await
    }

    /// An instance's configuration changes: `GET /api/v1/instances/{name}/history`.
    pub async fn history(&self, name: &str) -> Result<ConfigHistory, ClientError> {
        self.get(&instance_sub(name, "history")).await
    }

    /// Create or reset an instance's superuser: `POST /api/v1/instances/{name}/superuser`.
    pub async fn set_superuser(
        &self,
        name: &str,
        body: &SetSuperuser,
    ) -> Result<SuperuserDto, ClientError> {
        self.call(Method::POST, &instance_sub(name, "superuser"), Some(body))
            .await
    }

    /// An instance's custom domains: `GET /api/v1/instances/{name}/domains`.
    pub async fn domains(&self, name: &str) -> Result<DomainList, ClientError> {
        self.get(&instance_sub(name, "domains")).await
    }

    /// Route a custom domain to an instance: `POST /api/v1/instances/{name}/domains`.
    pub async fn add_domain(
        &self,
        name: &str,
        body: &AddDomain,
    ) -> Result<DomainList, ClientError> {
        self.call(Method::POST, &instance_sub(name, "domains"), Some(body))
            .await
    }

    /// Stop routing a custom domain: `DELETE /api/v1/instances/{name}/domains/{domain}`.
    pub async fn remove_domain(&self, name: &str, domain: &str) -> Result<DomainList, ClientError> {
        self.call::<(), _>(Method::DELETE, &domain_path(name, domain), None)
            .await
    }

    /// Check the host, the routes and the units: `GET /api/v1/doctor`.
    pub async fn doctor(&self) -> Result<DoctorReport, ClientError> {
        self.get(DOCTOR).await
    }

    /// Put routes and units back, and check again: `POST /api/v1/doctor/repair`.
    pub async fn repair(&self) -> Result<DoctorReport, ClientError> {
        self.call::<(), _>(Method::POST, DOCTOR_REPAIR, None).await
    }

    /// Take over instances made by seed 000's script: `POST /api/v1/import`.
    pub async fn import(&self, body: &ImportRequest) -> Result<ImportReport, ClientError> {
        self.call(Method::POST, IMPORT, Some(body)).await
    }

    /// The backups of an instance: `GET /api/v1/instances/{name}/backups`.
    pub async fn backups(&self, name: &str) -> Result<BackupList, ClientError> {
        self.get(&instance_sub(name, "backups")).await
    }

    /// Back an instance up: `POST /api/v1/instances/{name}/backups`.
    pub async fn create_backup(
        &self,
        name: &str,
        body: &CreateBackup,
    ) -> Result<BackupDto, ClientError> {
        self.call(Method::POST, &instance_sub(name, "backups"), Some(body))
            .await
    }

    /// Delete a backup: `DELETE /api/v1/instances/{name}/backups/{id}`.
    pub async fn delete_backup(&self, name: &str, id: &str) -> Result<DeletedBackup, ClientError> {
        self.call::<(), _>(Method::DELETE, &backup_path(name, id), None)
            .await
    }

    /// Restore from a backup, in place or into a clone:
    /// `POST /api/v1/instances/{name}/backups/{id}/restore`.
    pub async fn restore_backup(
        &self,
        name: &str,
        id: &str,
        body: &RestoreBackup,
    ) -> Result<InstanceDto, ClientError> {
        let path = format!("{}/restore", backup_path(name, id));
        self.call(Method::POST, &path, Some(body)).await
    }

    /// Replicate an instance continuously: `PUT /api/v1/instances/{name}/replication`.
    pub async fn set_replication(
        &self,
        name: &str,
        body: &crate::api::dto::SetReplication,
    ) -> Result<InstanceDto, ClientError> {
        self.call(Method::PUT, &instance_sub(name, "replication"), Some(body))
            .await
    }

    /// Stop replicating it: `DELETE /api/v1/instances/{name}/replication`.
    pub async fn remove_replication(&self, name: &str) -> Result<InstanceDto, ClientError> {
        self.call::<(), _>(Method::DELETE, &instance_sub(name, "replication"), None)
            .await
    }

    /// Restore from its replica: `POST /api/v1/instances/{name}/replication/restore`.
    pub async fn restore_replica(
        &self,
        name: &str,
        body: &crate::api::dto::RestoreReplica,
    ) -> Result<InstanceDto, ClientError> {
        self.call(
            Method::POST,
            &instance_sub(name, "replication/restore"),
            Some(body),
        )
        .await
    }
}

impl Client {
    /// An instance's backup schedule: `GET /api/v1/instances/{name}/backup-schedule`.
    pub async fn backup_schedule(&self, name: &str) -> Result<ScheduleState, ClientError> {
        self.get(&instance_sub(name, "backup-schedule")).await
    }

    /// Set it: `PUT /api/v1/instances/{name}/backup-schedule`.
    pub async fn set_backup_schedule(
        &self,
        name: &str,
        body: &SetSchedule,
    ) -> Result<ScheduleState, ClientError> {
        self.call(
            Method::PUT,
            &instance_sub(name, "backup-schedule"),
            Some(body),
        )
        .await
    }

    /// Remove it: `DELETE /api/v1/instances/{name}/backup-schedule`.
    pub async fn remove_backup_schedule(&self, name: &str) -> Result<ScheduleState, ClientError> {
        self.call::<(), _>(Method::DELETE, &instance_sub(name, "backup-schedule"), None)
            .await
    }
}

/// `/api/v1/instances/{name}/backups/{id}`.
fn backup_path(name: &str, id: &str) -> String {
    format!("{}/{}", instance_sub(name, "backups"), segment(id))
}

const INSTANCES: &str = "/api/v1/instances";
const HOSTS: &str = "/api/v1/hosts";
const VERSIONS: &str = "/api/v1/versions";
const VERSIONS_INSTALL: &str = "/api/v1/versions/install";
const EVENTS: &str = "/api/v1/events";
const DOCTOR: &str = "/api/v1/doctor";
const DOCTOR_REPAIR: &str = "/api/v1/doctor/repair";
const IMPORT: &str = "/api/v1/import";
const NDJSON: &str = "application/x-ndjson";

/// `/api/v1/instances/{name}`.
fn instance_path(name: &str) -> String {
    format!("{INSTANCES}/{}", segment(name))
}

/// `/api/v1/instances/{name}/{sub}`, `sub` being a fixed part of the API.
fn instance_sub(name: &str, sub: &'static str) -> String {
    format!("{}/{sub}", instance_path(name))
}

/// `/api/v1/instances/{name}/domains/{domain}`.
fn domain_path(name: &str, domain: &str) -> String {
    format!("{}/{}", instance_sub(name, "domains"), segment(domain))
}

/// `DELETE`'s path: `?purge=true` only when purging.
fn delete_path(name: &str, purge: bool) -> String {
    let mut query = Query::new();
    if purge {
        query.pair("purge", "true");
    }
    query.finish(instance_path(name))
}

/// The logs path with its `lines` and, when following, `follow=true`.
fn logs_path(name: &str, lines: usize, follow: bool) -> String {
    let mut query = Query::new();
    query.pair("lines", &lines.to_string());
    if follow {
        query.pair("follow", "true");
    }
    query.finish(instance_sub(name, "logs"))
}

/// The types path with its `lang`.
fn types_path(name: &str, lang: &str) -> String {
    let mut query = Query::new();
    query.pair("lang", lang);
    query.finish(instance_sub(name, "types"))
}

/// The events path with whichever filters are given.
fn events_path(instance: Option<&str>, limit: Option<u32>, before: Option<i64>) -> String {
    let mut query = Query::new();
    if let Some(limit) = limit {
        query.pair("limit", &limit.to_string());
    }
    if let Some(before) = before {
        query.pair("before", &before.to_string());
    }
    if let Some(instance) = instance {
        query.pair("instance", instance);
    }
    query.finish(EVENTS.to_string())
}

/// Decode an NDJSON body of install progress, skipping blank lines.
fn progress(stream: ByteStream) -> ProgressStream {
    Box::pin(lines(stream).filter_map(|line| async move {
        match line {
            Ok(line) if line.trim().is_empty() => None,
            Ok(line) => Some(serde_json::from_str::<InstallProgress>(&line).map_err(|e| {
                ClientError::BadLine {
                    line,
                    reason: e.to_string(),
                }
            })),
            Err(e) => Some(Err(e)),
        }
    }))
}

/// A query string, form-encoded.
struct Query(url::form_urlencoded::Serializer<'static, String>);

impl Query {
    fn new() -> Self {
        Self(url::form_urlencoded::Serializer::new(String::new()))
    }

    fn pair(&mut self, key: &str, value: &str) {
        self.0.append_pair(key, value);
    }

    /// `path`, followed by `?` and the query when there is one.
    fn finish(mut self, path: String) -> String {
        let query = self.0.finish();
        if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        }
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
fn segment(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Read a body stream line by line (NDJSON).
fn lines(stream: ByteStream) -> impl Stream<Item = Result<String, ClientError>> {
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

    #[test]
    fn odd_instance_names_stay_one_segment() {
        assert_eq!(instance_path("moots"), "/api/v1/instances/moots");
        assert_eq!(instance_path("../doctor"), "/api/v1/instances/..%2Fdoctor");
        assert_eq!(
            instance_sub("a/b?c#d", "history"),
            "/api/v1/instances/a%2Fb%3Fc%23d/history"
        );
        assert_eq!(
            domain_path("moots", "x.example.com/../y"),
            "/api/v1/instances/moots/domains/x.example.com%2F..%2Fy"
        );
    }

    #[test]
    fn lifecycle_actions_are_the_api_paths() {
        let paths: Vec<String> = [Lifecycle::Start, Lifecycle::Stop, Lifecycle::Restart]
            .into_iter()
            .map(|a| instance_sub("moots", a.action()))
            .collect();
        assert_eq!(
            paths,
            [
                "/api/v1/instances/moots/start",
                "/api/v1/instances/moots/stop",
                "/api/v1/instances/moots/restart",
            ]
        );
    }

    #[test]
    fn delete_purges_only_when_asked() {
        assert_eq!(delete_path("moots", false), "/api/v1/instances/moots");
        assert_eq!(
            delete_path("moots", true),
            "/api/v1/instances/moots?purge=true"
        );
        assert_eq!(
            delete_path("a&purge=true", false),
            "/api/v1/instances/a%26purge%3Dtrue"
        );
    }

    #[test]
    fn logs_query() {
        assert_eq!(
            logs_path("moots", 100, false),
            "/api/v1/instances/moots/logs?lines=100"
        );
        assert_eq!(
            logs_path("a b", 5, true),
            "/api/v1/instances/a%20b/logs?lines=5&follow=true"
        );
    }

    #[test]
    fn schema_paths() {
        assert_eq!(
            instance_sub("blog", "schema"),
            "/api/v1/instances/blog/schema"
        );
        assert_eq!(
            instance_sub("blog", "openapi.json"),
            "/api/v1/instances/blog/openapi.json"
        );
        assert_eq!(
            types_path("blog", "ts&x=1"),
            "/api/v1/instances/blog/types?lang=ts%26x%3D1"
        );
    }

    #[test]
    fn events_query_with_and_without_filters() {
        assert_eq!(events_path(None, None, None), "/api/v1/events");
        assert_eq!(events_path(None, Some(50), None), "/api/v1/events?limit=50");
        assert_eq!(
            events_path(Some("a&b=c d"), Some(10), Some(42)),
            "/api/v1/events?limit=10&before=42&instance=a%26b%3Dc+d"
        );
        // The daemon reads the instance back exactly as it was given.
        let path = events_path(Some("a&b=c d"), Some(10), Some(42));
        let query = path.split_once('?').unwrap().1;
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            pairs,
            [
                ("limit".to_string(), "10".to_string()),
                ("before".to_string(), "42".to_string()),
                ("instance".to_string(), "a&b=c d".to_string()),
            ]
        );
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

    #[tokio::test]
    async fn install_progress_is_decoded_and_blank_lines_skipped() {
        let chunks: Vec<Result<Bytes, ClientError>> = vec![
            Ok(Bytes::from(
                "{\"progress\":{\"downloaded\":5,\"total\":10,\"source\":\"github\"}}\n\n",
            )),
            Ok(Bytes::from("not json\n")),
        ];
        let got: Vec<Result<InstallProgress, ClientError>> =
            progress(Box::pin(futures::stream::iter(chunks)))
                .collect()
                .await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(
            got[0],
            Ok(InstallProgress::Progress {
                downloaded: 5,
                total: Some(10),
                ..
            })
        ));
        let err = got[1].as_ref().unwrap_err().to_string();
        assert!(
            err.starts_with("unexpected progress line from the daemon: not json: "),
            "{err}"
        );
    }
}
