//! The API across a cluster: `GET /api/v1/hosts`, requests about an
//! instance another host holds sent on to that host over NATS (and its
//! answer given back as it came), and the side of this host that answers
//! such requests through its own router.
//!
//! A followed log (`?follow=true`) comes back piece by piece as the other
//! host writes it, for as long as the client listens.
//!
//! A request forwarded here carries [`ForwardedFrom`], which no client can
//! set: it is answered from this host alone and never sent on again.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use tower::ServiceExt;

use super::dto::{DrainDto, HostDto, HostList, LeftBehind, MovedTo};
use super::error::ApiError;
use super::AppState;
use crate::cluster::{Answer, Forwarded, Handler, Streamed};
use crate::manager::Actor;
use crate::model::cluster::HostName;
use futures::StreamExt;

/// Set on a request that another host forwarded here.
#[derive(Debug, Clone)]
pub struct ForwardedFrom(pub HostName);

/// The header naming the host that answered a forwarded request.
pub const HOST_HEADER: &str = "x-pockestrator-host";

/// The largest request body sent on to another host.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

#[utoipa::path(get, path = "/api/v1/hosts", tag = "cluster",
    responses((status = 200, body = HostList),
              (status = 409, body = super::dto::ErrorBody, description = "this daemon is not part of a cluster (`not_clustered`)"),
              (status = 503, body = super::dto::ErrorBody, description = "the NATS cluster cannot be reached")))]
pub async fn list_hosts(State(state): State<AppState>) -> Result<Json<HostList>, ApiError> {
    let me = state.manager.host_name().cloned();
    let hosts = state
        .manager
        .hosts()
        .await?
        .into_iter()
        .map(|(b, health)| HostDto {
            this: me.as_ref() == Some(&b.name),
            name: b.name.to_string(),
            region: b.region.map(|r| r.to_string()),
            tags: b.tags.iter().map(|t| t.to_string()).collect(),
            health: health.as_str().to_string(),
            api: b.api,
            proxy: b.proxy,
            version: b.version,
            instances: b.instances,
            running: b.running,
            mem_available_bytes: b.mem_available_bytes,
            mem_total_bytes: b.mem_total_bytes,
            load1: b.load1,
            cpus: b.cpus,
            started_at: b.started_at,
            seen_at: b.seen_at,
            draining: b.draining,
        })
        .collect();
    Ok(Json(HostList { hosts }))
}

#[utoipa::path(post, path = "/api/v1/hosts/{name}/drain", tag = "cluster",
    params(("name" = String, Path, max_length = 63)),
    responses((status = 200, body = DrainDto, description = "What moved where, and what stayed (with why); the host takes no new instances until `undrain`"),
              (status = 404, body = super::dto::ErrorBody, description = "no such host"),
              (status = 409, body = super::dto::ErrorBody, description = "not in a cluster"),
              (status = 503, body = super::dto::ErrorBody, description = "the NATS cluster or the host cannot be reached")))]
pub async fn drain_host(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    axum::extract::Path(name): axum::extract::Path<String>,
    req: Request,
) -> Response {
    match on_host(&state, &name).await {
        Ok(None) => {}
        Ok(Some(host)) => return send_on(&state, &host, req).await,
        Err(e) => return e.into_response(),
    }
    match state.manager.drain(&actor).await {
        Ok(report) => Json(DrainDto {
            host: name,
            moved: report
                .moved
                .into_iter()
                .map(|(name, to)| MovedTo {
                    name,
                    to: to.to_string(),
                })
                .collect(),
            left: report
                .left
                .into_iter()
                .map(|(name, reason)| LeftBehind { name, reason })
                .collect(),
        })
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[utoipa::path(post, path = "/api/v1/hosts/{name}/undrain", tag = "cluster",
    params(("name" = String, Path, max_length = 63)),
    responses((status = 200, body = HostList, description = "The hosts, this one taking new instances again"),
              (status = 404, body = super::dto::ErrorBody, description = "no such host"),
              (status = 409, body = super::dto::ErrorBody, description = "not in a cluster"),
              (status = 503, body = super::dto::ErrorBody, description = "the NATS cluster or the host cannot be reached")))]
pub async fn undrain_host(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    req: Request,
) -> Response {
    match on_host(&state, &name).await {
        Ok(None) => {}
        Ok(Some(host)) => return send_on(&state, &host, req).await,
        Err(e) => return e.into_response(),
    }
    if let Err(e) = state.manager.undrain() {
        return ApiError::from(e).into_response();
    }
    list_hosts(State(state)).await.into_response()
}

fn not_clustered() -> ApiError {
    ApiError::from(crate::manager::ManagerError::Cluster(
        crate::cluster::ClusterFailure::NotClustered,
    ))
}

/// `None` when `name` is this host; the host to send the request on to
/// otherwise (it must be one of the cluster).
async fn on_host(state: &AppState, name: &str) -> Result<Option<HostName>, ApiError> {
    let me = state
        .manager
        .host_name()
        .cloned()
        .ok_or_else(not_clustered)?;
    if name == me.as_str() {
        return Ok(None);
    }
    let hosts = state.manager.hosts().await?;
    match hosts.into_iter().find(|(h, _)| h.name.as_str() == name) {
        Some((h, _)) => Ok(Some(h.name)),
        None => Err(ApiError::from(crate::manager::ManagerError::Cluster(
            crate::cluster::ClusterFailure::UnknownHost(crate::model::names::shown(name)),
        ))),
    }
}

/// The instance a request path is about, in any of the three APIs:
/// `/api/v1/instances/{name}/…`, seed 003's `/api/apps/{name}/…` and seed
/// 001's `/api/users/{id}/…` (the user's instance, named as
/// [`crate::model::UserId::instance_name`] names it). A user id that is
/// not valid is about no instance: it is refused here, in seed 001's words.
fn instance_of(path: &str) -> Option<String> {
    let first = |rest: &str| {
        rest.split('/')
            .next()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let Some(rest) = path.strip_prefix("/api/v1/instances/") {
        return first(rest);
    }
    if let Some(rest) = path.strip_prefix("/api/apps/") {
        return first(rest);
    }
    let user = first(path.strip_prefix("/api/users/")?)?;
    crate::model::UserId::parse(&user)
        .ok()
        .map(|u| u.instance_name().to_string())
}

/// Middleware: a request about an instance that another host holds goes to
/// that host; everything else is answered here. A failure to send it on is
/// told in the shape of the API the request came in by.
pub async fn forward_if_elsewhere(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if req.extensions().get::<ForwardedFrom>().is_some() {
        return next.run(req).await;
    }
    let Some(name) = instance_of(req.uri().path()) else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_string();
    let host = match state.manager.held_elsewhere(&name).await {
        Ok(Some(host)) => host,
        Ok(None) => return next.run(req).await,
        Err(e) => return super::error_in_shape(&path, ApiError::from(e)),
    };
    let follows = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "follow=true" || p == "follow=1"));
    if follows {
        // A followed log never ends: its pieces come through as they are
        // written there, until the client hangs up.
        return match send_streamed(&state, &host, req).await {
            Ok(resp) => resp,
            Err(e) => super::error_in_shape(&path, e),
        };
    }
    send_on_in_shape(&state, &host, req).await
}

async fn send_streamed(
    state: &AppState,
    host: &HostName,
    req: Request,
) -> Result<Response, ApiError> {
    let forwarded = forwarded_of(state, req).await?;
    let answer = state.manager.forward_streamed(host, forwarded).await?;
    let body = Body::from_stream(answer.body.map(Ok::<_, std::convert::Infallible>));
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Some(t) = answer
        .content_type
        .and_then(|t| HeaderValue::from_str(&t).ok())
    {
        resp.headers_mut().insert(header::CONTENT_TYPE, t);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(h) = HeaderValue::from_str(host.as_str()) {
        resp.headers_mut().insert(HOST_HEADER, h);
    }
    Ok(resp)
}

/// [`crate::manager::Manager::ask_others`] for a list this host makes
/// meanwhile (owned, to run in a task of its own). A request another host
/// sent here asks nobody: that host asks the others itself.
pub async fn ask_others<T: serde::de::DeserializeOwned>(
    state: AppState,
    actor: Actor,
    path: String,
    forwarded: bool,
) -> Result<Vec<(HostName, Result<T, String>)>, ApiError> {
    if forwarded {
        return Ok(Vec::new());
    }
    Ok(state.manager.ask_others(&path, &actor.0).await?)
}

/// Send `req` to `host` and answer with what it answered.
pub async fn send_on(state: &AppState, host: &HostName, req: Request) -> Response {
    match send(state, host, req).await {
        Ok(answer) => answer_response(host, answer),
        Err(e) => e.into_response(),
    }
}

/// [`send_on`], a failure told in the shape of the API the request's path
/// belongs to.
pub async fn send_on_in_shape(state: &AppState, host: &HostName, req: Request) -> Response {
    let path = req.uri().path().to_string();
    match send(state, host, req).await {
        Ok(answer) => answer_response(host, answer),
        Err(e) => super::error_in_shape(&path, e),
    }
}

async fn send(state: &AppState, host: &HostName, req: Request) -> Result<Answer, ApiError> {
    let forwarded = forwarded_of(state, req).await?;
    Ok(state.manager.forward(host, forwarded).await?)
}

/// `req` as it travels to another host.
async fn forwarded_of(state: &AppState, req: Request) -> Result<Forwarded, ApiError> {
    let me = state
        .manager
        .host_name()
        .cloned()
        .ok_or_else(not_clustered)?;
    let actor = req
        .extensions()
        .get::<Actor>()
        .map(|a| a.0.clone())
        .unwrap_or_else(|| "unknown".into());
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
    let forwarded = Forwarded {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| parts.uri.path().to_string()),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
        actor,
        from: me,
    };
    Ok(forwarded)
}

fn answer_response(host: &HostName, answer: Answer) -> Response {
    let mut resp = Response::new(Body::from(answer.body));
    *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Some(t) = answer
        .content_type
        .and_then(|t| HeaderValue::from_str(&t).ok())
    {
        resp.headers_mut().insert(header::CONTENT_TYPE, t);
    }
    if let Ok(h) = HeaderValue::from_str(host.as_str()) {
        resp.headers_mut().insert(HOST_HEADER, h);
    }
    resp
}

/// What answers requests forwarded to this host: its own API router, as if
/// the request had come in on the unix socket, with the actor it came with
/// and the host it came from in the audit line.
pub fn forwarded_handler(state: AppState) -> Handler {
    let router = super::routes(state);
    std::sync::Arc::new(move |req: Forwarded| {
        let router = router.clone();
        Box::pin(async move {
            let mut builder = axum::http::Request::builder()
                .method(req.method.as_str())
                .uri(req.path_and_query.as_str());
            if let Some(t) = &req.content_type {
                builder = builder.header(header::CONTENT_TYPE, t);
            }
            let Ok(mut http) = builder.body(Body::from(req.body)) else {
                return Streamed {
                    status: 400,
                    content_type: None,
                    body: futures::stream::once(async {
                        Bytes::from_static(b"malformed forwarded request")
                    })
                    .boxed(),
                };
            };
            http.extensions_mut()
                .insert(Actor(format!("{} via host {}", req.actor, req.from)));
            http.extensions_mut().insert(ForwardedFrom(req.from));
            let resp = match router.oneshot(http).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            // Piece by piece as the router makes it: a followed log goes on
            // for as long as the asking host listens.
            let body = resp
                .into_body()
                .into_data_stream()
                .take_while(|piece| std::future::ready(piece.is_ok()))
                .filter_map(|piece| std::future::ready(piece.ok()))
                .boxed();
            Streamed {
                status,
                content_type,
                body,
            }
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_instance_a_path_is_about() {
        let of = |p| super::instance_of(p);
        assert_eq!(of("/api/v1/instances/blog").as_deref(), Some("blog"));
        assert_eq!(of("/api/v1/instances/blog/stop").as_deref(), Some("blog"));
        assert_eq!(of("/api/v1/instances/"), None);
        assert_eq!(of("/api/v1/instances"), None);
        assert_eq!(of("/api/v1/hosts"), None);
        // Seed 003's apps are instances of the same name.
        assert_eq!(of("/api/apps/shop").as_deref(), Some("shop"));
        assert_eq!(of("/api/apps/shop/logs").as_deref(), Some("shop"));
        assert_eq!(of("/api/apps"), None);
        assert_eq!(of("/api/apps/"), None);
        // Seed 001's users have the instance their id names.
        let user = crate::model::UserId::parse("Ada_1").unwrap();
        let theirs = user.instance_name().to_string();
        assert_eq!(of("/api/users/Ada_1/pb_status"), Some(theirs.clone()));
        assert_eq!(of("/api/users/Ada_1/init_pb"), Some(theirs));
        assert_eq!(of("/api/users/a%2Fb/pb_status"), None);
        assert_eq!(of("/api/users/../pb_status"), None);
        assert_eq!(of("/api/users//pb_status"), None);
        assert_eq!(of("/api/pb_instances"), None);
    }
}
