//! Seed 003's lab-manager API, verbatim: `POST /api/deploy`, `GET
//! /api/apps`, `GET|DELETE /api/apps/{name}`, `POST
//! /api/apps/{name}/restart`, `GET /api/apps/{name}/logs` and `GET
//! /health`, with its shapes and its errors (plain-text bodies as Go's
//! `http.Error` writes them: 400 `Invalid JSON` / `Invalid subdomain`,
//! 409 `App already exists`, 404 `App not found`). An app is an
//! instance deployed from a repository; each call goes through the same
//! `Manager` operations as the CLI's (deploy, delete, restart, logs).

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::AppState;
use crate::manager::{Actor, DeployRequest, ManagerError};
use crate::model::{DeployStatus, InstanceName, Status};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/api/deploy", post(deploy))
        .route("/api/apps", get(list))
        .route("/api/apps/{name}", get(get_app).delete(remove))
        .route("/api/apps/{name}/restart", post(restart))
        .route("/api/apps/{name}/logs", get(logs))
}

/// Seed 003's `AppInfo`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppInfo {
    pub name: String,
    pub repository: String,
    pub port: u16,
    /// `deploying`, `running`, `failed` (and `stopped` for an app stopped
    /// on purpose).
    pub status: String,
    #[serde(with = "go_time")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "go_time")]
    pub last_deploy: DateTime<Utc>,
    pub subdomain: String,
}

/// Go's `time.Time` in JSON: RFC 3339 with as many fractional digits as
/// needed.
mod go_time {
    use super::*;
    pub fn serialize<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
struct DeployBody {
    repository: String,
    subdomain: String,
    #[serde(default)]
    branch: Option<String>,
}

/// Whether a request path belongs to this API (for its error shape).
pub fn is_lab_path(path: &str) -> bool {
    path == "/api/deploy" || path == "/api/apps" || path.starts_with("/api/apps/")
}

/// What Go's `http.Error(w, text, code)` sends.
pub fn plain(code: StatusCode, text: &str) -> Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{text}\n"),
    )
        .into_response()
}

fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "App not found")
}

/// Any other failure: its status, and its message as plain text.
fn failure(e: ManagerError) -> Response {
    let status = super::error::http_status(&e);
    if status == StatusCode::NOT_FOUND {
        return not_found();
    }
    if status.is_server_error() {
        tracing::error!(error = %e, "seed 003 API request failed");
    }
    plain(status, &e.to_string())
}

fn app_info(state: &AppState, name: &str) -> Result<Option<AppInfo>, ManagerError> {
    let Some(source) = state.manager.deploy_source(name)? else {
        return Ok(None);
    };
    let rec = match state.manager.get(name) {
        Ok(r) => r,
        Err(ManagerError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let last = state.manager.deploys(name)?.into_iter().next();
    let status = match &last {
        Some(d) if !d.status.is_final() => "deploying",
        Some(d) if d.status == DeployStatus::Failed => "failed",
        _ => match rec.status {
            Status::Running | Status::Unhealthy => "running",
            Status::Stopped | Status::Sleeping => "stopped",
            Status::Starting => "deploying",
            _ => "failed",
        },
    };
    Ok(Some(AppInfo {
        name: rec.name.to_string(),
        repository: source.repo.to_string(),
        port: rec.port,
        status: status.to_string(),
        created_at: rec.created_at,
        last_deploy: last.map_or(rec.created_at, |d| d.started_at),
        subdomain: rec.name.to_string(),
    }))
}

/// The app, or the answer for an app that is not there (404) or cannot be
/// read.
fn existing_app(state: &AppState, name: &str) -> Result<AppInfo, Box<Response>> {
    match app_info(state, name) {
        Ok(Some(app)) => Ok(app),
        Ok(None) => Err(Box::new(not_found())),
        Err(e) => Err(Box::new(failure(e))),
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "healthy" }))
}

async fn deploy(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    from: Option<Extension<super::cluster::ForwardedFrom>>,
    body: Bytes,
) -> Response {
    let Ok(req) = serde_json::from_slice::<DeployBody>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "Invalid JSON");
    };
    if InstanceName::parse(&req.subdomain).is_err() {
        return plain(StatusCode::BAD_REQUEST, "Invalid subdomain");
    }
    // In a cluster, an instance another host holds is deployed there (the
    // request goes whole); a new one is made here.
    if from.is_none() {
        match state.manager.held_elsewhere(&req.subdomain).await {
            Ok(None) => {}
            Ok(Some(host)) => {
                let mut forwarded = axum::http::Request::new(axum::body::Body::from(body));
                *forwarded.method_mut() = axum::http::Method::POST;
                *forwarded.uri_mut() = axum::http::Uri::from_static("/api/deploy");
                forwarded.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                forwarded.extensions_mut().insert(actor);
                return super::cluster::send_on_in_shape(&state, &host, forwarded).await;
            }
            Err(e) => return failure(e),
        }
    }
    match state.manager.deploy_source(&req.subdomain) {
        Ok(Some(_)) => return plain(StatusCode::CONFLICT, "App already exists"),
        Ok(None) => {}
        Err(e) => return failure(e),
    }
    let started = state
        .manager
        .deploy(
            &req.subdomain,
            DeployRequest {
                repo: Some(req.repository),
                branch: req.branch.filter(|b| !b.is_empty()),
                subdir: None,
                token: None,
                ssh_key: None,
            },
            &actor,
        )
        .await;
    if let Err(e) = started {
        return failure(e);
    }
    match existing_app(&state, &req.subdomain) {
        Ok(mut app) => {
            app.status = "deploying".into();
            (StatusCode::ACCEPTED, Json(app)).into_response()
        }
        Err(answer) => *answer,
    }
}

#[derive(Serialize, Deserialize)]
struct AppRegistry {
    apps: BTreeMap<String, AppInfo>,
}

async fn list(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    from: Option<Extension<super::cluster::ForwardedFrom>>,
) -> Response {
    // In a cluster, every host's apps, asked of them while this host lists
    // its own. Seed 003's shape has no room for a host that does not
    // answer: its apps are left out, and the log says so.
    let asked = tokio::spawn(super::cluster::ask_others::<AppRegistry>(
        state.clone(),
        actor,
        "/api/apps".into(),
        from.is_some(),
    ));
    let sources = match state.manager.apps() {
        Ok(a) => a,
        Err(e) => return failure(e),
    };
    let mut apps = BTreeMap::new();
    for (rec, _, _) in sources {
        match app_info(&state, rec.name.as_str()) {
            Ok(Some(app)) => {
                apps.insert(app.name.clone(), app);
            }
            Ok(None) => {}
            Err(e) => return failure(e),
        }
    }
    let asked = match asked.await {
        Ok(Ok(asked)) => asked,
        Ok(Err(e)) => return plain(e.status, &e.message),
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    for (host, answer) in asked {
        match answer {
            Ok(theirs) => apps.extend(theirs.apps),
            Err(error) => {
                tracing::warn!(%host, error, "a host's apps are left out of the list");
            }
        }
    }
    Json(AppRegistry { apps }).into_response()
}

async fn get_app(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match existing_app(&state, &name) {
        Ok(app) => Json(app).into_response(),
        Err(answer) => *answer,
    }
}

async fn remove(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Response {
    if let Err(answer) = existing_app(&state, &name) {
        return *answer;
    }
    // Its data goes to the archive, as every delete's does: nothing lost.
    match state.manager.delete(&name, false, &actor).await {
        Ok(_) => Json(serde_json::json!({ "status": "removed" })).into_response(),
        Err(e) => failure(e),
    }
}

async fn restart(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Response {
    if let Err(answer) = existing_app(&state, &name) {
        return *answer;
    }
    if let Err(e) = state.manager.restart(&name, &actor).await {
        return failure(e);
    }
    match existing_app(&state, &name) {
        Ok(app) => Json(app).into_response(),
        Err(answer) => *answer,
    }
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    lines: Option<String>,
    follow: Option<String>,
}

async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return plain(StatusCode::BAD_REQUEST, "Invalid query");
    };
    let lines = match q.lines.as_deref() {
        None | Some("") => 100,
        Some(n) => match n.parse::<usize>() {
            Ok(n) => n.min(10_000),
            Err(_) => return plain(StatusCode::BAD_REQUEST, "Invalid lines"),
        },
    };
    // Go's strconv.ParseBool.
    let follow = match q.follow.as_deref() {
        None | Some("") => false,
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => true,
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => false,
        Some(_) => return plain(StatusCode::BAD_REQUEST, "Invalid follow"),
    };
    if let Err(answer) = existing_app(&state, &name) {
        return *answer;
    }
    let text_headers = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    if !follow {
        return match state.manager.log_tail(&name, lines).await {
            Ok(tail) => {
                let mut text = tail.join("\n");
                if !text.is_empty() {
                    text.push('\n');
                }
                (text_headers, text).into_response()
            }
            Err(e) => failure(e),
        };
    }
    match state.manager.follow_log(&name, lines).await {
        Ok(follow) => super::instances::followed_text(follow),
        Err(e) => failure(e),
    }
}
