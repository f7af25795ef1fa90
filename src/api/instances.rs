//! Handlers of `/api/v1`: instances, logs, versions, events, the daemon's
//! own health and the OpenAPI document.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::BroadcastStream;

use super::dto::*;
use super::error::ApiError;
use super::AppState;
use crate::manager::{Actor, BinaryChoice, CreateRequest, UpdateRequest};
use crate::model::version::VersionRequest;
use crate::model::Status;
use crate::release::Installed;

type ApiResult<T> = Result<T, ApiError>;

/// A JSON body whose decoding errors answer in our error shape.
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        // Every body is a JSON object: serde would also read a struct from
        // an array of its fields in order, which no client means.
        let Json(v) = Json::<serde_json::Value>::from_request(req, state).await?;
        if !v.is_object() {
            return Err(ApiError::bad_request(
                "invalid JSON body: it must be an object",
            ));
        }
        serde_json::from_value(v)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// A query string whose decoding errors answer in our error shape.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Query(v) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(v))
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/health", get(daemon_health))
        .route(
            "/api/v1/instances",
            get(list_instances).post(create_instance),
        )
        .route(
            "/api/v1/instances/{name}",
            get(get_instance)
                .patch(update_instance)
                .delete(delete_instance),
        )
        .route("/api/v1/instances/{name}/start", post(start_instance))
        .route("/api/v1/instances/{name}/stop", post(stop_instance))
        .route("/api/v1/instances/{name}/restart", post(restart_instance))
        .route("/api/v1/instances/{name}/sleep", post(sleep_instance))
        .route("/api/v1/instances/{name}/move", post(move_instance))
        .route("/api/v1/instances/{name}/upgrade", post(upgrade_instance))
        .route("/api/v1/instances/{name}/superuser", post(set_superuser))
        .route("/api/v1/instances/{name}/logs", get(instance_logs))
        .route("/api/v1/instances/{name}/history", get(instance_history))
        .route(
            "/api/v1/instances/{name}/domains",
            get(list_domains).post(add_domain),
        )
        .route(
            "/api/v1/instances/{name}/domains/{domain}",
            axum::routing::delete(remove_domain),
        )
        .route("/api/v1/import", post(import))
        .route("/api/v1/doctor", get(doctor))
        .route("/api/v1/doctor/repair", post(doctor_repair))
        .route("/api/v1/tls/ask", get(tls_ask))
        .route("/api/v1/versions", get(list_versions))
        .route("/api/v1/versions/install", post(install_version))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/events/stream", get(event_stream))
}

/// The wire form of an instance, with its domains and addresses.
pub fn instance_dto(
    state: &AppState,
    rec: &crate::store::InstanceRecord,
) -> ApiResult<InstanceDto> {
    let domains = state.manager.custom_domains(rec)?;
    let urls = state.manager.urls(rec, &domains);
    let limit = rec
        .max_body_bytes
        .unwrap_or(state.manager.config().routing.max_body_bytes);
    let mut dto = InstanceDto::new(rec, domains, urls, limit);
    dto.replica = state.manager.replication_of(&rec.name).map(Into::into);
    dto.host = state.manager.host_name().map(|h| h.to_string());
    Ok(dto)
}

/// Turn the `version`/`binary` pair of a request into a choice.
pub fn binary_choice(version: Option<&str>, binary: Option<&str>) -> ApiResult<BinaryChoice> {
    match (version, binary) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give either a version or a binary, not both",
        )),
        (None, Some(path)) => {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(ApiError::bad_request(format!(
                    "binary path {:?} must be absolute: the daemon does not share your working directory",
                    path.display().to_string()
                )));
            }
            Ok(BinaryChoice::Local(path))
        }
        (Some(v), None) => VersionRequest::parse(v)
            .map(BinaryChoice::Release)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_version", e.to_string())),
        (None, None) => Ok(BinaryChoice::Release(VersionRequest::Latest)),
    }
}

#[utoipa::path(get, path = "/api/v1/health", tag = "daemon",
    responses((status = 200, body = DaemonHealth)))]
pub async fn daemon_health(State(state): State<AppState>) -> ApiResult<Json<DaemonHealth>> {
    let all = state.manager.list()?;
    Ok(Json(DaemonHealth {
        status: "ok".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        instances: all.len(),
        running: all.iter().filter(|r| r.status == Status::Running).count(),
    }))
}

#[utoipa::path(get, path = "/api/v1/instances", tag = "instances",
    responses((status = 200, body = InstanceList)))]
pub async fn list_instances(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    from: Option<Extension<super::cluster::ForwardedFrom>>,
) -> ApiResult<super::SizedJson<InstanceList>> {
    // In a cluster, the other hosts are asked at the same time as this one
    // lists its own; one that does not answer, or is lost, is named.
    let asked = tokio::spawn(super::cluster::ask_others::<InstanceList>(
        state.clone(),
        actor,
        "/api/v1/instances".into(),
        from.is_some(),
    ));
    let mut list = list_local(&state)?;
    let asked = asked
        .await
        .map_err(|e| ApiError::from(crate::manager::ManagerError::Internal(e.to_string())))??;
    let held = |host: &crate::model::cluster::HostName| {
        state
            .manager
            .held_by(host)
            .into_iter()
            .map(|(name, replicated)| super::dto::HeldInstance { name, replicated })
            .collect()
    };
    let others = asked.len();
    for (host, answer) in asked {
        match answer {
            Ok(theirs) => list.instances.extend(theirs.instances),
            Err(error) => list.unreachable_hosts.push(UnreachableHost {
                instances: held(&host),
                host: host.to_string(),
                error,
            }),
        }
    }
    if others > 0 {
        list.instances.sort_by(|a, b| a.name.cmp(&b.name));
    }
    // About 700 bytes an instance.
    let expected_bytes = 1024 + list.instances.len() * 768;
    Ok(super::SizedJson {
        body: list,
        expected_bytes,
    })
}

/// This host's instances.
fn list_local(state: &AppState) -> ApiResult<InstanceList> {
    // Three queries for the whole fleet, not one per instance.
    let records = state.manager.list()?;
    let mut domains = state.manager.all_custom_domains()?;
    let mut replicas = state.manager.replications_by_name();
    let default_limit = state.manager.config().routing.max_body_bytes;
    let host = state.manager.host_name().map(|h| h.to_string());
    let instances = records
        .iter()
        .map(|rec| {
            let custom = domains.remove(rec.name.as_str()).unwrap_or_default();
            let urls = state.manager.urls(rec, &custom);
            let limit = rec.max_body_bytes.unwrap_or(default_limit);
            let mut dto = InstanceDto::new(rec, custom, urls, limit);
            dto.replica = replicas.remove(rec.name.as_str()).map(Into::into);
            dto.host = host.clone();
            dto
        })
        .collect::<Vec<_>>();
    Ok(InstanceList {
        instances,
        unreachable_hosts: Vec::new(),
    })
}

#[utoipa::path(post, path = "/api/v1/instances", tag = "instances", request_body = CreateInstance,
    responses((status = 201, body = CreatedDto), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the name, the port, the domain or the directory is taken"),
              (status = 500, body = ErrorBody),
              (status = 502, body = ErrorBody, description = "the router (Caddy) refused the route change"),
              (status = 503, body = ErrorBody, description = "no free port is left")))]
pub async fn create_instance(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    from: Option<Extension<super::cluster::ForwardedFrom>>,
    ApiJson(body): ApiJson<CreateInstance>,
) -> ApiResult<Response> {
    // In a cluster, the instance may go to another host: the request goes
    // there whole.
    if from.is_none() {
        let target = state
            .manager
            .placement(body.host.as_deref(), body.region.as_deref(), &body.tags)
            .await?;
        if let Some(host) = target.filter(|h| Some(h) != state.manager.host_name()) {
            let bytes = serde_json::to_vec(&body)
                .map_err(|e| ApiError::bad_request(format!("cannot forward the request: {e}")))?;
            let mut req = axum::http::Request::builder()
                .method("POST")
                .uri("/api/v1/instances")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(bytes))
                .map_err(|e| ApiError::bad_request(format!("cannot forward the request: {e}")))?;
            req.extensions_mut().insert(actor);
            return Ok(super::cluster::send_on(&state, &host, req).await);
        }
    } else if let Some(host) = body.host.as_deref() {
        if Some(host) != state.manager.host_name().map(|h| h.as_str()) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("this host is not {}", crate::model::names::shown(host)),
            ));
        }
    }
    Ok(create_here(&state, &actor, body).await?.into_response())
}

/// Create the instance on this host.
async fn create_here(
    state: &AppState,
    actor: &Actor,
    body: CreateInstance,
) -> ApiResult<(StatusCode, Json<CreatedDto>)> {
    let binary = binary_choice(body.version.as_deref(), body.binary.as_deref())?;
    let created = state
        .manager
        .create(
            CreateRequest {
                name: body.name,
                binary,
                port: body.port,
                domain: body.domain,
                superuser_email: body.superuser_email,
                superuser_password: body.superuser_password,
                max_body_bytes: body.max_body_bytes,
                memory_max: body.memory_max,
                cpu_quota: body.cpu_quota,
                idle_timeout_secs: body.idle_timeout_secs,
                wake_schedule: body.wake_schedule,
                fleet: None,
                tags: Vec::new(),
            },
            actor,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedDto {
            instance: instance_dto(state, &created.instance)?,
            superuser: created
                .superuser
                .map(|(email, password)| SuperuserDto { email, password }),
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/instances/{name}", tag = "instances",
    params(("name" = String, Path, max_length = 63)),
    responses((status = 200, body = InstanceDto), (status = 404, body = ErrorBody)))]
pub async fn get_instance(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<InstanceDto>> {
    let rec = state.manager.get(&name)?;
    let mut dto = instance_dto(&state, &rec)?;
    let router = state.manager.router_kind().to_string();
    dto.route = Some(match state.manager.route_status(&rec).await {
        Ok((in_place, drifts)) => RouteStatus {
            router,
            in_place,
            problems: drifts.into_iter().map(|d| d.detail).collect(),
        },
        Err(e) => RouteStatus {
            router,
            in_place: false,
            problems: vec![e.to_string()],
        },
    });
    Ok(Json(dto))
}

#[utoipa::path(patch, path = "/api/v1/instances/{name}", tag = "instances",
    params(("name" = String, Path, max_length = 63)), request_body = UpdateInstance,
    responses((status = 200, body = InstanceDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody, description = "the router (Caddy) refused the route change")))]
pub async fn update_instance(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<UpdateInstance>,
) -> ApiResult<Json<InstanceDto>> {
    let rec = state
        .manager
        .update(
            &name,
            UpdateRequest {
                domain: body.domain,
                port: body.port,
                max_body_bytes: body.max_body_bytes,
                memory_max: body.memory_max,
                cpu_quota: body.cpu_quota,
                idle_timeout_secs: body.idle_timeout_secs,
                wake_schedule: body.wake_schedule,
            },
            &actor,
        )
        .await?;
    Ok(Json(instance_dto(&state, &rec)?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Delete the data instead of archiving it.
    #[serde(default)]
    pub purge: bool,
}

#[utoipa::path(delete, path = "/api/v1/instances/{name}", tag = "instances",
    params(("name" = String, Path, max_length = 63), DeleteParams),
    responses((status = 200, body = DeletedDto), (status = 404, body = ErrorBody),
              (status = 502, body = ErrorBody, description = "the router (Caddy) refused the route change")))]
pub async fn delete_instance(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    ApiQuery(params): ApiQuery<DeleteParams>,
) -> ApiResult<Json<DeletedDto>> {
    let archive = state.manager.delete(&name, params.purge, &actor).await?;
    Ok(Json(DeletedDto {
        name,
        archive: archive.map(|p| p.display().to_string()),
    }))
}

macro_rules! lifecycle_handler {
    ($fn:ident, $method:ident, $path:literal) => {
        #[utoipa::path(post, path = $path, tag = "instances", params(("name" = String, Path, max_length = 63)),
                    responses((status = 200, body = InstanceDto), (status = 404, body = ErrorBody),
                              (status = 500, body = ErrorBody, description = "it did not start or stop; `start_failed` says why"),
                              (status = 502, body = ErrorBody, description = "the router (Caddy) refused the route change")))]
        pub async fn $fn(
            State(state): State<AppState>,
            Extension(actor): Extension<Actor>,
            Path(name): Path<String>,
        ) -> ApiResult<Json<InstanceDto>> {
            let rec = state.manager.$method(&name, &actor).await?;
            Ok(Json(instance_dto(&state, &rec)?))
        }
    };
}

lifecycle_handler!(start_instance, start, "/api/v1/instances/{name}/start");
lifecycle_handler!(stop_instance, stop, "/api/v1/instances/{name}/stop");
lifecycle_handler!(
    restart_instance,
    restart,
    "/api/v1/instances/{name}/restart"
);
#[utoipa::path(post, path = "/api/v1/instances/{name}/move", tag = "cluster",
    params(("name" = String, Path, max_length = 63)), request_body = super::dto::MoveInstance,
    responses((status = 200, body = super::dto::MovedDto, description = "It runs on the target host now; this host's copy is archived"),
              (status = 400, body = super::dto::ErrorBody), (status = 404, body = super::dto::ErrorBody),
              (status = 409, body = super::dto::ErrorBody, description = "not in a cluster, not replicated, the target is not up, or the move failed (it runs where it was)"),
              (status = 503, body = super::dto::ErrorBody, description = "the NATS cluster cannot be reached")))]
pub async fn move_instance(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<super::dto::MoveInstance>,
) -> ApiResult<Json<super::dto::MovedDto>> {
    let from = state
        .manager
        .host_name()
        .map(|h| h.to_string())
        .unwrap_or_default();
    let to = state.manager.move_instance(&name, &body.to, &actor).await?;
    Ok(Json(super::dto::MovedDto { name, from, to }))
}

#[utoipa::path(post, path = "/api/v1/instances/{name}/sleep", tag = "instances",
    params(("name" = String, Path, max_length = 63)),
    responses((status = 200, body = InstanceDto), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "it is not running (stopped, asleep already, failed)"),
              (status = 500, body = ErrorBody, description = "its process could not be stopped"),
              (status = 502, body = ErrorBody, description = "the router (Caddy) refused the route change")))]
pub async fn sleep_instance(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<Json<InstanceDto>> {
    let rec = state.manager.sleep(&name, &actor).await?;
    Ok(Json(instance_dto(&state, &rec)?))
}

#[utoipa::path(post, path = "/api/v1/instances/{name}/upgrade", tag = "instances",
    params(("name" = String, Path, max_length = 63)), request_body = UpgradeInstance,
    responses((status = 200, body = InstanceDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "it already runs that binary, or `upgrade_rolled_back`: the new version did not come up and the old one runs again with its data as before"),
              (status = 500, body = ErrorBody, description = "the upgrade failed and could not be rolled back"),
              (status = 502, body = ErrorBody, description = "the release could not be fetched, or the router refused the route")))]
pub async fn upgrade_instance(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<UpgradeInstance>,
) -> ApiResult<Json<InstanceDto>> {
    if body.version.is_none() && body.binary.is_none() {
        return Err(ApiError::bad_request(
            "give the version to upgrade to (or a binary)",
        ));
    }
    let choice = binary_choice(body.version.as_deref(), body.binary.as_deref())?;
    Ok(Json(instance_dto(
        &state,
        &state.manager.upgrade(&name, choice, &actor).await?,
    )?))
}

#[utoipa::path(post, path = "/api/v1/instances/{name}/superuser", tag = "instances",
    params(("name" = String, Path, max_length = 63)), request_body = SetSuperuser,
    responses((status = 200, body = SuperuserDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn set_superuser(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SetSuperuser>,
) -> ApiResult<Json<SuperuserDto>> {
    let password = state
        .manager
        .set_superuser(&name, &body.email, body.password, &actor)
        .await?;
    Ok(Json(SuperuserDto {
        email: body.email,
        password,
    }))
}

#[utoipa::path(get, path = "/api/v1/instances/{name}/history", tag = "instances",
    params(("name" = String, Path, max_length = 63)),
    responses((status = 200, body = ConfigHistory), (status = 404, body = ErrorBody)))]
pub async fn instance_history(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ConfigHistory>> {
    let changes = state
        .manager
        .history(&name)?
        .iter()
        .map(ConfigChangeDto::from)
        .collect();
    Ok(Json(ConfigHistory { name, changes }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// How many of the last lines (default 100; more than 10000 read as 10000).
    #[param(value_type = i64, required = false, minimum = 0, maximum = 4294967295_i64)]
    pub lines: Option<u32>,
    /// Keep the answer open and stream new lines as plain text.
    #[serde(default)]
    pub follow: bool,
}

#[utoipa::path(get, path = "/api/v1/instances/{name}/logs", tag = "logs",
    params(("name" = String, Path, max_length = 63), LogParams),
    responses((status = 200, body = LogLines, description = "JSON, or `text/plain` streamed with follow=true"),
              (status = 404, body = ErrorBody)))]
pub async fn instance_logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(params): ApiQuery<LogParams>,
) -> ApiResult<Response> {
    let n = params.lines.unwrap_or(100).min(10_000) as usize;
    if !params.follow {
        let lines = state.manager.log_tail(&name, n).await?;
        return Ok(Json(LogLines { name, lines }).into_response());
    }
    let follow = state.manager.follow_log(&name, n).await?;
    Ok(followed_text(follow))
}

/// A followed log as a `text/plain` answer: its tail, then what is
/// appended, as it comes.
pub(super) fn followed_text(follow: crate::manager::LogFollow) -> Response {
    let mut head = String::new();
    for line in &follow.tail {
        head.push_str(line);
        head.push('\n');
    }
    let stream = futures::stream::once(async move { Bytes::from(head) })
        .chain(follow.appended)
        .map(Ok::<_, Infallible>);
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

fn installed_dto(i: &Installed) -> InstalledVersion {
    InstalledVersion {
        version: i.version.to_string(),
        binary: i.binary.display().to_string(),
        sha256: i.sha256.clone(),
        source: i.source.clone(),
    }
}

#[utoipa::path(get, path = "/api/v1/versions", tag = "versions",
    responses((status = 200, body = VersionList)))]
pub async fn list_versions(State(state): State<AppState>) -> ApiResult<Json<VersionList>> {
    let releases = state.manager.releases();
    let installed = releases
        .installed()
        .map_err(crate::manager::ManagerError::from)?
        .iter()
        .map(installed_dto)
        .collect();
    let (available, available_error) = match releases.available().await {
        Ok(list) => (list, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let latest = crate::model::version::newest_stable(&available).map(|v| v.to_string());
    Ok(Json(VersionList {
        installed,
        available: available.iter().map(|v| v.to_string()).collect(),
        latest,
        available_error,
    }))
}

#[utoipa::path(post, path = "/api/v1/versions/install", tag = "versions", request_body = InstallVersion,
    responses((status = 200, body = InstalledVersion,
               description = "JSON; with `Accept: application/x-ndjson`, a stream of InstallProgress lines"),
              (status = 400, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn install_version(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<InstallVersion>,
) -> ApiResult<Response> {
    let choice = binary_choice(body.version.as_deref(), body.binary.as_deref())?;
    let streaming = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    let manager = state.manager.clone();
    // Resolve first (fast): the version is needed to follow its download.
    let choice = match choice {
        BinaryChoice::Release(req) => {
            let v = manager
                .releases()
                .resolve(&req)
                .await
                .map_err(crate::manager::ManagerError::from)?;
            BinaryChoice::Release(VersionRequest::Exact(v))
        }
        local => local,
    };
    if !streaming {
        let installed = manager.install_audited(&choice, &actor).await?;
        return Ok(Json(installed_dto(&installed)).into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<InstallProgress>(32);
    tokio::spawn(async move {
        let version = match &choice {
            BinaryChoice::Release(VersionRequest::Exact(v)) => Some(v.clone()),
            _ => None,
        };
        let install = manager.install_audited(&choice, &actor);
        tokio::pin!(install);
        let mut last = None;
        loop {
            tokio::select! {
                result = &mut install => {
                    let line = match result {
                        Ok(i) => InstallProgress::Installed(installed_dto(&i)),
                        Err(e) => InstallProgress::Error(ApiError::from(e).detail()),
                    };
                    let _ = tx.send(line).await;
                    return;
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    let progress = version.as_ref().and_then(|v| manager.releases().progress(v));
                    if let Some(rx) = progress {
                        let p = rx.borrow().clone();
                        let key = (p.downloaded, p.total);
                        if last != Some(key) {
                            last = Some(key);
                            let line = InstallProgress::Progress { downloaded: p.downloaded, total: p.total, source: p.source.clone() };
                            if tx.send(line).await.is_err() {
                                // The client went away; the download goes on.
                            }
                        }
                    }
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|line| {
        let mut text = serde_json::to_string(&line).unwrap_or_else(|_| "{}".to_string());
        text.push('\n');
        Ok::<_, Infallible>(Bytes::from(text))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only events of this instance.
    #[param(value_type = String, required = false)]
    pub instance: Option<String>,
    /// How many (default 100; more than 1000 read as 1000), newest first.
    #[param(value_type = i64, required = false, minimum = 0, maximum = 4294967295_i64)]
    pub limit: Option<u32>,
    /// Only events older than this id (for paging).
    #[param(value_type = i64, required = false)]
    pub before: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventParams),
    responses((status = 200, body = EventList)))]
pub async fn list_events(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<EventParams>,
) -> ApiResult<Json<EventList>> {
    let limit = params.limit.unwrap_or(100).min(1000);
    let events = state
        .manager
        .audit_log(params.instance.as_deref(), limit, params.before)?
        .iter()
        .map(EventDto::from)
        .collect();
    Ok(Json(EventList { events }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Only events of this instance.
    #[param(value_type = String, required = false)]
    pub instance: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events", params(StreamParams),
    responses((status = 200, content_type = "text/event-stream", body = StreamEvent,
        description = "Server-sent events, one `StreamEvent` each: `event:` is its type (instance_state, instance_removed, audit, download), `data:` the event as JSON")))]
pub async fn event_stream(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<StreamParams>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = state.manager.events().subscribe();
    let stream = BroadcastStream::new(rx).filter_map(move |ev| {
        let wanted = params.instance.clone();
        async move {
            let ev = ev.ok()?;
            if let Some(w) = &wanted {
                if ev.instance() != Some(w.as_str()) {
                    return None;
                }
            }
            let wire = StreamEvent::from(&ev);
            let data = serde_json::to_string(&wire).ok()?;
            Some(Ok(SseEvent::default().event(wire.kind()).data(data)))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[utoipa::path(get, path = "/api/v1/instances/{name}/domains", tag = "routing",
    params(("name" = String, Path, max_length = 63)),
    responses((status = 200, body = DomainList), (status = 404, body = ErrorBody)))]
pub async fn list_domains(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<DomainList>> {
    let domains = state.manager.domains(&name)?;
    Ok(Json(DomainList { name, domains }))
}

#[utoipa::path(post, path = "/api/v1/instances/{name}/domains", tag = "routing",
    params(("name" = String, Path, max_length = 63)), request_body = AddDomain,
    responses((status = 200, body = DomainList), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the domain already reaches an instance"),
              (status = 502, body = ErrorBody, description = "the router (Caddy) refused the route change")))]
pub async fn add_domain(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<AddDomain>,
) -> ApiResult<Json<DomainList>> {
    let domains = state
        .manager
        .add_domain(&name, &body.domain, &actor)
        .await?;
    Ok(Json(DomainList { name, domains }))
}

#[utoipa::path(delete, path = "/api/v1/instances/{name}/domains/{domain}", tag = "routing",
    params(("name" = String, Path, max_length = 63), ("domain" = String, Path, max_length = 253)),
    responses((status = 200, body = DomainList), (status = 404, body = ErrorBody),
              (status = 502, body = ErrorBody, description = "the router (Caddy) refused the route change")))]
pub async fn remove_domain(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((name, domain)): Path<(String, String)>,
) -> ApiResult<Json<DomainList>> {
    let domains = state.manager.remove_domain(&name, &domain, &actor).await?;
    Ok(Json(DomainList { name, domains }))
}

async fn check_dtos(state: &AppState) -> Vec<CheckDto> {
    state
        .manager
        .host_checks()
        .await
        .into_iter()
        .map(|c| CheckDto {
            name: c.name,
            level: match c.level {
                crate::doctor::Level::Ok => "ok",
                crate::doctor::Level::Warning => "warning",
                crate::doctor::Level::Failed => "failed",
            }
            .to_string(),
            detail: c.detail,
            fix: c.fix,
        })
        .collect()
}

fn drift_dtos(drifts: Vec<crate::router::Drift>) -> Vec<DriftDto> {
    drifts
        .into_iter()
        .map(|d| DriftDto {
            instance: d.instance,
            kind: d.kind.as_str().to_string(),
            detail: d.detail,
        })
        .collect()
}

#[utoipa::path(get, path = "/api/v1/doctor", tag = "routing",
    responses((status = 200, body = DoctorReport), (status = 502, body = ErrorBody)))]
pub async fn doctor(State(state): State<AppState>) -> ApiResult<Json<DoctorReport>> {
    let mut drifts = state.manager.check_routes().await?;
    drifts.extend(state.manager.check_units());
    Ok(Json(DoctorReport {
        checks: check_dtos(&state).await,
        router: state.manager.router_kind().to_string(),
        drifts: drift_dtos(drifts),
        repaired: None,
    }))
}

#[utoipa::path(post, path = "/api/v1/doctor/repair", tag = "routing",
    responses((status = 200, body = DoctorReport), (status = 502, body = ErrorBody)))]
pub async fn doctor_repair(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> ApiResult<Json<DoctorReport>> {
    let report = state.manager.repair_routes(&actor).await?;
    let units = state.manager.repair_units(&actor).await?;
    let mut drifts = state.manager.check_routes().await?;
    drifts.extend(state.manager.check_units());
    Ok(Json(DoctorReport {
        checks: check_dtos(&state).await,
        router: state.manager.router_kind().to_string(),
        drifts: drift_dtos(drifts),
        repaired: Some(RepairDto {
            added: report.added,
            updated: report.updated.into_iter().chain(units).collect(),
            removed: report.removed,
        }),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AskParams {
    pub domain: String,
}

/// Caddy's on-demand TLS asks here before getting a certificate for a
/// domain: 200 only for domains an instance answers at. Needs no token
/// (Caddy cannot send one) and tells nothing but yes or no.
#[utoipa::path(get, path = "/api/v1/tls/ask", tag = "routing", params(AskParams),
    security(()),
    responses((status = 200, description = "an instance answers at this domain"),
              (status = 404, description = "no instance answers at this domain")))]
pub async fn tls_ask(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<AskParams>,
) -> StatusCode {
    if state.manager.routes_host(&params.domain) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

#[utoipa::path(post, path = "/api/v1/import", tag = "instances", request_body = ImportRequest,
    responses((status = 200, body = ImportReport), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the daemon does not run the systemd runtime, or a unit is already managed")))]
pub async fn import(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<ImportRequest>,
) -> ApiResult<Json<ImportReport>> {
    let unit_dirs: Vec<PathBuf> = match body.unit_dirs {
        Some(dirs) => dirs.into_iter().map(PathBuf::from).collect(),
        None => crate::manager::import::default_unit_dirs(),
    };
    if let Some(dir) = unit_dirs.iter().find(|d| !d.is_absolute()) {
        return Err(ApiError::bad_request(format!(
            "unit directory {:?} must be absolute",
            dir.display().to_string()
        )));
    }
    let caddyfile = body
        .caddyfile
        .map(PathBuf::from)
        .unwrap_or_else(|| state.manager.config().routing.caddyfile.clone());
    let outcomes = state
        .manager
        .import(&unit_dirs, Some(&caddyfile), body.dry_run, &actor)
        .await?;
    Ok(Json(ImportReport {
        dry_run: body.dry_run,
        units: outcomes
            .into_iter()
            .map(|o| ImportOutcomeDto {
                unit: o.unit,
                name: o.name,
                port: o.port,
                version: o.version,
                domain: o.domain,
                dir: o.dir,
                action: o.action.as_str().to_string(),
                reasons: o.reasons,
            })
            .collect(),
    }))
}
