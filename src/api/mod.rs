//! The HTTP API: `/api/v1` (instances, logs, versions, events, OpenAPI
//! document) and seed 001's per-user API, served by axum on the unix socket
//! (no token) and the TCP listener (bearer token); and Prometheus's
//! `GET /metrics`, on the TCP listener (token) and on its own listener
//! without one (`serve --metrics-listen`). `/metrics` is not part of
//! `/api/v1`, so not in the OpenAPI document.
//!
//! Handlers are thin: they decode [`dto`] types, call the
//! [`crate::manager::Manager`], and encode the answer. Errors go through
//! the single mapping in [`error`].

pub mod backups;
pub mod cluster;
pub mod compat;
pub mod deploys;
pub mod dto;
pub mod error;
pub mod fleet;
pub mod instances;
pub mod lab;
pub mod openapi;
pub mod schema;

use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::Router;
use subtle::ConstantTimeEq;
use tokio::net::UnixListener;

use crate::manager::{Actor, Manager};
use error::ApiError;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub manager: Arc<Manager>,
    /// The bearer token the TCP listener requires.
    pub token: Arc<String>,
}

/// Who is on the other end of a unix-socket connection.
#[derive(Clone, Debug)]
pub struct UnixPeer {
    pub uid: Option<u32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for UnixPeer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        Self {
            uid: stream.io().peer_cred().ok().map(|c| c.uid()),
        }
    }
}

fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/hosts", get(cluster::list_hosts))
        .route("/api/v1/hosts/{name}/drain", post(cluster::drain_host))
        .route("/api/v1/hosts/{name}/undrain", post(cluster::undrain_host))
        .merge(instances::routes())
        .merge(backups::routes())
        .merge(compat::routes())
        .merge(deploys::routes())
        .merge(lab::routes())
        .merge(fleet::routes())
        .merge(schema::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            cluster::forward_if_elsewhere,
        ))
        .with_state(state)
}

/// The router for the unix socket: the socket's 0600 mode is the access
/// control, so no token is asked; the audit log records the peer's uid.
pub fn unix_router(state: AppState) -> Router {
    routes(state).layer(middleware::from_fn(unix_actor))
}

/// The router for the TCP listener: every request needs
/// `Authorization: Bearer <token>`.
pub fn tcp_router(state: AppState) -> Router {
    routes(state.clone())
        .merge(metrics_router(state.clone()))
        .layer(middleware::from_fn_with_state(state, require_token))
}

/// `GET /metrics` alone, as `serve --metrics-listen` serves it (no token:
/// that listener shows nothing else).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The Prometheus text exposition of the fleet and the daemon.
async fn metrics(State(state): State<AppState>) -> Response {
    match state.manager.metrics_text().await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn unix_actor(req: Request, next: Next) -> Response {
    let uid = req
        .extensions()
        .get::<ConnectInfo<UnixPeer>>()
        .and_then(|c| c.0.uid);
    let mut req = req;
    let actor = match uid {
        Some(uid) => format!("socket:uid={uid}"),
        None => "socket".to_string(),
    };
    req.extensions_mut().insert(Actor(actor));
    next.run(req).await
}

/// Compare secrets (the API token; the dashboard's session fingerprints
/// and CSRF tokens) in constant time, so that how long a refusal takes
/// tells nothing about how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/api/v1/tls/ask" {
        let mut req = req;
        req.extensions_mut().insert(Actor("caddy".to_string()));
        return next.run(req).await;
    }
    // A webhook's signature is its authentication; seed 003's `/health`
    // says nothing but that the daemon answers (load balancers' checks
    // send no token).
    if (req.method() == axum::http::Method::POST && req.uri().path().starts_with("/webhooks/"))
        || (req.method() == axum::http::Method::GET && req.uri().path() == "/health")
    {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = presented.is_some_and(|t| constant_time_eq(t.as_bytes(), state.token.as_bytes()));
    if !ok {
        let message = if presented.is_none() {
            "missing bearer token: send `Authorization: Bearer <token>`; `pockestrator token` prints it"
        } else {
            "invalid bearer token: `pockestrator token` prints the current one"
        };
        if compat::is_compat_path(req.uri().path()) {
            return compat::failure(StatusCode::UNAUTHORIZED, message).into_response();
        }
        let mut resp =
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return resp;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "tcp".to_string());
    let mut req = req;
    req.extensions_mut().insert(Actor(format!("token@{peer}")));
    next.run(req).await
}

/// An error told in the shape of the API `path` belongs to: seed 001's
/// `{"success": false, …}`, seed 003's plain text, or `/api/v1`'s
/// `{"error": {…}}`.
pub fn error_in_shape(path: &str, e: ApiError) -> Response {
    if compat::is_compat_path(path) {
        compat::failure(e.status, &e.message).into_response()
    } else if lab::is_lab_path(path) {
        lab::plain(e.status, &e.message)
    } else {
        e.into_response()
    }
}

/// A JSON answer whose size is roughly known beforehand (a list of the
/// whole fleet): serialized into a buffer of about that size at once, not
/// one that doubles, and copies, its way up to megabytes.
pub struct SizedJson<T> {
    pub body: T,
    pub expected_bytes: usize,
}

impl<T: serde::Serialize> IntoResponse for SizedJson<T> {
    fn into_response(self) -> Response {
        let mut buf = Vec::with_capacity(self.expected_bytes);
        match serde_json::to_writer(&mut buf, &self.body) {
            Ok(()) => ([(header::CONTENT_TYPE, "application/json")], buf).into_response(),
            Err(e) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                format!("cannot render the answer: {e}"),
            )
            .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
