//! `/api/v1/instances/{name}/backups`: create, list, delete and restore an
//! instance's backups (the operations are `manager::backup`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use bytes::Bytes;

use super::dto::{
    BackupDto, BackupList, CreateBackup, DeletedBackup, ErrorBody, InstanceDto, RestoreBackup,
    RestoreReplica, ScheduleDto, ScheduleState, SetReplication, SetSchedule,
};
use super::error::ApiError;
use super::instances::{instance_dto, ApiJson};
use super::AppState;
use crate::manager::{Actor, ScheduleRequest};
use crate::model::Retention;

type ApiResult<T> = Result<T, ApiError>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/instances/{name}/backups",
            get(list_backups).post(create_backup),
        )
        .route(
            "/api/v1/instances/{name}/backups/{id}",
            delete(delete_backup),
        )
        .route(
            "/api/v1/instances/{name}/backups/{id}/restore",
            post(restore_backup),
        )
        .route(
            "/api/v1/instances/{name}/backup-schedule",
            get(get_schedule).put(set_schedule).delete(delete_schedule),
        )
        .route(
            "/api/v1/instances/{name}/replication",
            put(set_replication).delete(delete_replication),
        )
        .route(
            "/api/v1/instances/{name}/replication/restore",
            post(restore_replica),
        )
}

#[utoipa::path(put, path = "/api/v1/instances/{name}/replication", tag = "backups",
    params(("name" = String, Path)), request_body = SetReplication,
    responses((status = 200, body = InstanceDto, description = "The instance, its `replica` filled in"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Litestream is not installed, or another instance replicates to that path")))]
pub async fn set_replication(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SetReplication>,
) -> ApiResult<Json<InstanceDto>> {
    let rec = state.manager.replicate(&name, &body.to, &actor).await?;
    Ok(Json(instance_dto(&state, &rec)?))
}

#[utoipa::path(delete, path = "/api/v1/instances/{name}/replication", tag = "backups",
    params(("name" = String, Path)),
    responses((status = 200, body = InstanceDto, description = "The instance, no longer replicated (the replica stays)"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "It is not replicated")))]
pub async fn delete_replication(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<Json<InstanceDto>> {
    let rec = state.manager.replicate_off(&name, &actor).await?;
    Ok(Json(instance_dto(&state, &rec)?))
}

#[utoipa::path(post, path = "/api/v1/instances/{name}/replication/restore", tag = "backups",
    params(("name" = String, Path)),
    request_body(content = Option<RestoreReplica>, description = "optional: an empty body or `null` restores the latest state in place"),
    responses((status = 200, body = InstanceDto, description = "The restored instance (or the new clone)"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "It is not replicated, Litestream is missing, or the restore failed (nothing changed)")))]
pub async fn restore_replica(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<InstanceDto>> {
    let body = optional_json::<RestoreReplica>(&body)?;
    let rec = state
        .manager
        .restore_from_replica(
            &name,
            body.as_name.as_deref(),
            body.timestamp.as_deref(),
            &actor,
        )
        .await?;
    Ok(Json(instance_dto(&state, &rec)?))
}

#[utoipa::path(get, path = "/api/v1/instances/{name}/backup-schedule", tag = "backups",
    params(("name" = String, Path)),
    responses((status = 200, body = ScheduleState), (status = 404, body = ErrorBody)))]
pub async fn get_schedule(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleState>> {
    let schedule = state.manager.backup_schedule(&name)?;
    Ok(Json(ScheduleState {
        name,
        schedule: schedule.as_ref().map(ScheduleDto::from),
    }))
}

#[utoipa::path(put, path = "/api/v1/instances/{name}/backup-schedule", tag = "backups",
    params(("name" = String, Path)), request_body = SetSchedule,
    responses((status = 200, body = ScheduleState), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn set_schedule(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SetSchedule>,
) -> ApiResult<Json<ScheduleState>> {
    let d = Retention::default();
    let req = ScheduleRequest {
        cron: body.cron,
        retention: Retention {
            keep_last: body.keep_last.unwrap_or(d.keep_last),
            keep_daily: body.keep_daily.unwrap_or(d.keep_daily),
            keep_weekly: body.keep_weekly.unwrap_or(d.keep_weekly),
            keep_monthly: body.keep_monthly.unwrap_or(d.keep_monthly),
        },
        to: body.to,
    };
    let schedule = state
        .manager
        .set_backup_schedule(&name, Some(req), &actor)
        .await?;
    Ok(Json(ScheduleState {
        name,
        schedule: schedule.as_ref().map(ScheduleDto::from),
    }))
}

#[utoipa::path(delete, path = "/api/v1/instances/{name}/backup-schedule", tag = "backups",
    params(("name" = String, Path)),
    responses((status = 200, body = ScheduleState), (status = 404, body = ErrorBody)))]
pub async fn delete_schedule(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleState>> {
    state
        .manager
        .set_backup_schedule(&name, None, &actor)
        .await?;
    Ok(Json(ScheduleState {
        name,
        schedule: None,
    }))
}

#[utoipa::path(get, path = "/api/v1/instances/{name}/backups", tag = "backups",
    params(("name" = String, Path)),
    responses((status = 200, body = BackupList), (status = 404, body = ErrorBody)))]
pub async fn list_backups(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<BackupList>> {
    let backups = state.manager.backups(&name).await?;
    Ok(Json(BackupList {
        name,
        backups: backups.iter().map(BackupDto::from).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/instances/{name}/backups", tag = "backups",
    params(("name" = String, Path)),
    request_body(content = Option<CreateBackup>, description = "optional: an empty body or `null` backs up to the default directory"),
    responses((status = 201, body = BackupDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 500, body = ErrorBody)))]
pub async fn create_backup(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<BackupDto>)> {
    let to = optional_json::<CreateBackup>(&body)?.to;
    let backup = state
        .manager
        .backup_create(&name, to.as_deref(), &actor)
        .await?;
    Ok((StatusCode::CREATED, Json(BackupDto::from(&backup))))
}

#[utoipa::path(delete, path = "/api/v1/instances/{name}/backups/{id}", tag = "backups",
    params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = DeletedBackup), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn delete_backup(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<DeletedBackup>> {
    state.manager.backup_delete(&name, &id, &actor).await?;
    Ok(Json(DeletedBackup { name, id }))
}

#[utoipa::path(post, path = "/api/v1/instances/{name}/backups/{id}/restore", tag = "backups",
    params(("name" = String, Path), ("id" = String, Path)),
    request_body(content = Option<RestoreBackup>, description = "optional: an empty body or `null` restores in place"),
    responses((status = 200, body = InstanceDto, description = "The restored instance (or the new clone)"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 500, body = ErrorBody)))]
pub async fn restore_backup(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((name, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<InstanceDto>> {
    let as_name = optional_json::<RestoreBackup>(&body)?.as_name;
    let rec = state
        .manager
        .backup_restore(&name, &id, as_name.as_deref(), &actor)
        .await?;
    Ok(Json(instance_dto(&state, &rec)?))
}

/// A JSON body that may be left out (then every field takes its default).
pub(super) fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}
