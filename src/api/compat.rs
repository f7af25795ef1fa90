//! Seed 001's per-user API, unchanged: `POST /api/users/{id}/init_pb`,
//! `GET /api/users/{id}/pb_status`, `POST /api/users/{id}/stop_pb`,
//! `GET /api/pb_instances` and `GET /health/pb`, with its response shapes,
//! its capitalised states and its error shape
//! `{"success": false, "message": …, "instance": null}`.
//!
//! Each user gets an ordinary managed instance (named by
//! [`crate::model::UserId::instance_name`]), so the CLI, the `/api/v1` API
//! and the audit log see them too.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use crate::manager::{Actor, ManagerError};
use crate::model::cluster::HostName;
use crate::model::{Status, UserId};
use crate::store::InstanceRecord;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/users/{id}/init_pb", post(init_pb))
        .route("/api/users/{id}/pb_status", get(pb_status))
        .route("/api/users/{id}/stop_pb", post(stop_pb))
        .route("/api/pb_instances", get(pb_instances))
        .route("/health/pb", get(health))
}

/// Whether a request path belongs to this API (for its error shape).
pub fn is_compat_path(path: &str) -> bool {
    path.starts_with("/api/users/") || path == "/api/pb_instances" || path == "/health/pb"
}

/// An instance in seed 001's shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct UserInstance {
    pub user_id: String,
    pub port: u16,
    pub db_path: String,
    pub url: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub last_health_check: Option<DateTime<Utc>>,
}

/// The listing entry of `GET /api/pb_instances` (no `db_path` there).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct UserInstanceSummary {
    pub user_id: String,
    pub port: u16,
    pub url: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub last_health_check: Option<DateTime<Utc>>,
}

/// `POST /api/users/{id}/init_pb`'s body; an empty body means the same
/// as `{"force_restart": false}`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct InitRequest {
    /// Restart the user's PocketBase if it already runs.
    #[serde(default)]
    pub force_restart: bool,
}

/// The answer to `init_pb`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InitResponse {
    pub success: bool,
    pub message: String,
    pub instance: UserInstance,
}

/// The answer to `pb_status`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    pub user_id: String,
    pub instance: UserInstance,
}

/// The answer to `stop_pb`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StopResponse {
    pub success: bool,
    pub message: String,
}

/// The answer to `GET /api/pb_instances`: every user's instance by user id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstancesResponse {
    pub instances: BTreeMap<String, UserInstanceSummary>,
    pub count: usize,
}

/// The answer to `GET /health/pb`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// Always `ok`.
    pub status: String,
    pub total_instances: usize,
    pub running_instances: usize,
    pub timestamp: DateTime<Utc>,
}

/// Seed 001's error body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompatFailure {
    /// Always `false`.
    pub success: bool,
    pub message: String,
    /// Always `null`.
    #[schema(value_type = Option<UserInstance>)]
    pub instance: Option<UserInstance>,
}

fn user_instance(rec: &InstanceRecord) -> UserInstance {
    UserInstance {
        user_id: rec
            .compat_user
            .as_ref()
            .map(|u| u.to_string())
            .unwrap_or_default(),
        port: rec.port,
        db_path: format!("{}/pb_data/data.db", rec.dir.display()),
        url: format!("http://localhost:{}", rec.port),
        status: rec.status.seed001_label().to_string(),
        created_at: rec.created_at,
        last_health_check: rec.last_health_check,
    }
}

/// Seed 001's failure answer: `{"success": false, "message": …, "instance": null}`.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = CompatFailure {
            success: false,
            message: self.message,
            instance: None,
        };
        (self.status, Json(body)).into_response()
    }
}

pub fn failure(status: StatusCode, message: &str) -> Failure {
    Failure {
        status,
        message: message.to_string(),
    }
}

impl From<ManagerError> for Failure {
    fn from(e: ManagerError) -> Self {
        let status = super::error::http_status(&e);
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        failure(status, &e.to_string())
    }
}

fn parse_user(raw: &str) -> Result<UserId, Failure> {
    UserId::parse(raw).map_err(|e| failure(StatusCode::BAD_REQUEST, &e.to_string()))
}

fn unknown_user(user: &UserId) -> Failure {
    failure(
        StatusCode::NOT_FOUND,
        &format!("No PocketBase instance found for user {user}"),
    )
}

type Answer<T> = Result<Json<T>, Failure>;

#[utoipa::path(post, path = "/api/users/{user_id}/init_pb", tag = "seed-001",
    params(("user_id" = String, Path, max_length = 128)),
    request_body(content = Option<InitRequest>, description = "optional: an empty body or `null` means `{\"force_restart\": false}`"),
    responses((status = 200, body = InitResponse),
              (status = 409, body = CompatFailure, description = "its directory or port is taken"),
              (status = 502, body = CompatFailure, description = "the router refused the route"),
              (status = 503, body = CompatFailure, description = "no free port is left")))]
pub async fn init_pb(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer<InitResponse> {
    let user = parse_user(&id)?;
    // The seed sends `{"force_restart": false}`; an empty body or `null`
    // means the same.
    let body: InitRequest = if body.iter().all(u8::is_ascii_whitespace) {
        InitRequest::default()
    } else {
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| failure(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")))?;
        if value.is_null() {
            InitRequest::default()
        } else if !value.is_object() {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                "invalid JSON body: it must be an object",
            ));
        } else {
            serde_json::from_value(value)
                .map_err(|e| failure(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")))?
        }
    };
    let (rec, message) = state
        .manager
        .init_user(&user, body.force_restart, &actor)
        .await?;
    Ok(Json(InitResponse {
        success: true,
        message,
        instance: user_instance(&rec),
    }))
}

#[utoipa::path(get, path = "/api/users/{user_id}/pb_status", tag = "seed-001",
    params(("user_id" = String, Path, max_length = 128)),
    responses((status = 200, body = StatusResponse),
              (status = 404, body = CompatFailure, description = "the user has no instance")))]
pub async fn pb_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Answer<StatusResponse> {
    let user = parse_user(&id)?;
    let rec = state
        .manager
        .get_user(&user)?
        .ok_or_else(|| unknown_user(&user))?;
    Ok(Json(StatusResponse {
        user_id: user.as_str().to_string(),
        instance: user_instance(&rec),
    }))
}

#[utoipa::path(post, path = "/api/users/{user_id}/stop_pb", tag = "seed-001",
    params(("user_id" = String, Path, max_length = 128)),
    responses((status = 200, body = StopResponse),
              (status = 404, body = CompatFailure, description = "the user has no instance"),
              (status = 502, body = CompatFailure, description = "the router refused the change")))]
pub async fn stop_pb(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Answer<StopResponse> {
    let user = parse_user(&id)?;
    let rec = state
        .manager
        .get_user(&user)?
        .ok_or_else(|| unknown_user(&user))?;
    state.manager.stop(&rec.name, &actor).await?;
    Ok(Json(StopResponse {
        success: true,
        message: "PocketBase instance stopped successfully".to_string(),
    }))
}

#[utoipa::path(get, path = "/api/pb_instances", tag = "seed-001",
    responses((status = 200, body = InstancesResponse)))]
pub async fn pb_instances(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    from: Option<Extension<super::cluster::ForwardedFrom>>,
) -> Result<super::SizedJson<InstancesResponse>, Failure> {
    // In a cluster, every host's users, asked of them while this host
    // lists its own. The seed's shape has no room for a host that does not
    // answer: its users are left out, and the log says so.
    let asked = tokio::spawn(super::cluster::ask_others::<InstancesResponse>(
        state.clone(),
        actor,
        "/api/pb_instances".into(),
        from.is_some(),
    ));
    let records = state.manager.list_users()?;
    let mut instances: BTreeMap<String, UserInstanceSummary> = records
        .iter()
        .map(|rec| {
            let full = user_instance(rec);
            (
                full.user_id.clone(),
                UserInstanceSummary {
                    user_id: full.user_id,
                    port: full.port,
                    url: full.url,
                    status: full.status,
                    created_at: full.created_at,
                    last_health_check: full.last_health_check,
                },
            )
        })
        .collect();
    for (host, answer) in others_answers(asked).await? {
        match answer {
            Ok(theirs) => instances.extend(theirs.instances),
            Err(error) => unanswered(&host, "/api/pb_instances", &error),
        }
    }
    let count = instances.len();
    // About 160 bytes a user.
    Ok(super::SizedJson {
        body: InstancesResponse { instances, count },
        expected_bytes: 256 + count * 192,
    })
}

type Answers<T> = Vec<(HostName, Result<T, String>)>;

async fn others_answers<T>(
    asked: tokio::task::JoinHandle<Result<Answers<T>, super::error::ApiError>>,
) -> Result<Answers<T>, Failure> {
    asked
        .await
        .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
        .map_err(|e| failure(e.status, &e.message))
}

fn unanswered(host: &HostName, path: &str, error: &str) {
    tracing::warn!(%host, path, error, "a host's part of a list is left out");
}

#[utoipa::path(get, path = "/health/pb", tag = "seed-001",
    responses((status = 200, body = HealthResponse)))]
pub async fn health(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    from: Option<Extension<super::cluster::ForwardedFrom>>,
) -> Answer<HealthResponse> {
    let asked = tokio::spawn(super::cluster::ask_others::<HealthResponse>(
        state.clone(),
        actor,
        "/health/pb".into(),
        from.is_some(),
    ));
    let records = state.manager.list_users()?;
    let mut total_instances = records.len();
    let mut running_instances = records
        .iter()
        .filter(|r| r.status == Status::Running)
        .count();
    for (host, answer) in others_answers(asked).await? {
        match answer {
            Ok(theirs) => {
                total_instances += theirs.total_instances;
                running_instances += theirs.running_instances;
            }
            Err(error) => unanswered(&host, "/health/pb", &error),
        }
    }
    Ok(Json(HealthResponse {
        status: "ok".to_string(),
        total_instances,
        running_instances,
        timestamp: Utc::now(),
    }))
}
