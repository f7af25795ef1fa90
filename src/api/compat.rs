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

use super::AppState;
use crate::manager::{Actor, ManagerError};
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserInstanceSummary {
    pub user_id: String,
    pub port: u16,
    pub url: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub last_health_check: Option<DateTime<Utc>>,
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
        (
            self.status,
            Json(serde_json::json!({"success": false, "message": self.message, "instance": null})),
        )
            .into_response()
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

type Answer = Result<Json<serde_json::Value>, Failure>;

#[derive(Debug, Default, Deserialize)]
struct InitBody {
    #[serde(default)]
    force_restart: bool,
}

async fn init_pb(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let user = parse_user(&id)?;
    // The seed sends `{"force_restart": false}`; an empty body means the same.
    let body: InitBody = if body.iter().all(u8::is_ascii_whitespace) {
        InitBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| failure(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")))?
    };
    let (rec, message) = state
        .manager
        .init_user(&user, body.force_restart, &actor)
        .await?;
    Ok(Json(serde_json::json!({
        "success": true,
        "message": message,
        "instance": user_instance(&rec),
    })))
}

async fn pb_status(State(state): State<AppState>, Path(id): Path<String>) -> Answer {
    let user = parse_user(&id)?;
    let rec = state
        .manager
        .get_user(&user)?
        .ok_or_else(|| unknown_user(&user))?;
    Ok(Json(serde_json::json!({
        "user_id": user.as_str(),
        "instance": user_instance(&rec),
    })))
}

async fn stop_pb(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Answer {
    let user = parse_user(&id)?;
    let rec = state
        .manager
        .get_user(&user)?
        .ok_or_else(|| unknown_user(&user))?;
    state.manager.stop(&rec.name, &actor).await?;
    Ok(Json(serde_json::json!({
        "success": true,
        "message": "PocketBase instance stopped successfully",
    })))
}

async fn pb_instances(State(state): State<AppState>) -> Answer {
    let records = state.manager.list_users()?;
    let instances: BTreeMap<String, UserInstanceSummary> = records
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
    let count = instances.len();
    Ok(Json(
        serde_json::json!({ "instances": instances, "count": count }),
    ))
}

async fn health(State(state): State<AppState>) -> Answer {
    let records = state.manager.list_users()?;
    Ok(Json(serde_json::json!({
        "status": "ok",
        "total_instances": records.len(),
        "running_instances": records.iter().filter(|r| r.status == Status::Running).count(),
        "timestamp": Utc::now(),
    })))
}
