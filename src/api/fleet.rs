//! Fleet and schema as code over HTTP: `POST /api/v1/fleet/plan`, `POST
//! /api/v1/fleet/apply`, `GET /api/v1/fleet/export`, `POST
//! /api/v1/schema/push`. The file travels as
//! text; the daemon checks it (errors name its line and field), plans
//! against what runs and applies.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use super::instances::{ApiJson, ApiQuery};
use serde::Deserialize;
use utoipa::IntoParams;

use super::dto::{
    AppliedDto, ApplyDto, ApplyFleet, ChangeDto, ExportDto, FieldChangeDto, PlanDto, PlanFleet,
    PushReportDto, PushSchema, PushedDto, TunnelDto,
};
use super::error::ApiError;
use super::AppState;
use crate::manager::{Actor, ManagerError, PushResult, PushTargets};
use crate::model::fleet::{Change, ChangeKind};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/fleet/plan", post(plan))
        .route("/api/v1/fleet/apply", post(apply))
        .route("/api/v1/fleet/export", get(export))
        .route("/api/v1/schema/push", post(push_schema))
        .route("/api/v1/tunnel/config", get(tunnel_config))
}

fn change_dto(c: &Change) -> ChangeDto {
    ChangeDto {
        name: c.name.to_string(),
        action: c.kind.as_str().to_string(),
        fields: c
            .fields
            .iter()
            .map(|f| FieldChangeDto {
                field: f.field.clone(),
                from: f.from.clone(),
                to: f.to.clone(),
            })
            .collect(),
        restarts: c.restarts,
    }
}

fn file_name(raw: &Option<String>) -> &str {
    raw.as_deref().unwrap_or("fleet.toml")
}

/// The lengths the document gives the request's texts.
fn check_lengths(file_name: &Option<String>, state: Option<&str>) -> Result<(), ApiError> {
    if file_name.as_ref().is_some_and(|n| n.len() > 255) {
        return Err(ApiError::bad_request("file_name: at most 255 bytes"));
    }
    if state.is_some_and(|s| s.len() > 64) {
        return Err(ApiError::bad_request(
            "state: at most 64 characters (a plan's `state`)",
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/fleet/plan", tag = "fleet", request_body = PlanFleet,
    responses((status = 200, body = PlanDto, description = "What an apply of the file would create, update and delete; nothing is changed"),
              (status = 400, body = super::dto::ErrorBody, description = "the file does not check (`invalid_fleet_file`: its line and field named)")))]
pub async fn plan(State(state): State<AppState>, ApiJson(body): ApiJson<PlanFleet>) -> Response {
    if let Err(e) = check_lengths(&body.file_name, None) {
        return e.into_response();
    }
    match state
        .manager
        .fleet_plan(&body.file, file_name(&body.file_name), body.prune)
    {
        Ok(p) => Json(PlanDto {
            fleet: p.fleet.to_string(),
            state: p.state,
            prune: p.prune,
            changes: p.changes.iter().map(change_dto).collect(),
            unmanaged: p.unmanaged.iter().map(ToString::to_string).collect(),
            file: body.file,
            file_name: body.file_name,
        })
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[utoipa::path(post, path = "/api/v1/fleet/apply", tag = "fleet", request_body = ApplyFleet,
    responses((status = 200, body = ApplyDto, description = "What was done, change by change (`failed` counts the changes that failed, each with its error)"),
              (status = 400, body = super::dto::ErrorBody, description = "the file does not check (`invalid_fleet_file`); nothing was applied"),
              (status = 409, body = super::dto::ErrorBody, description = "`stale_plan`: the fleet changed since the saved plan was made; nothing was applied")))]
pub async fn apply(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<ApplyFleet>,
) -> Response {
    if let Err(e) = check_lengths(&body.file_name, body.state.as_deref()) {
        return e.into_response();
    }
    match state
        .manager
        .fleet_apply(
            &body.file,
            file_name(&body.file_name),
            body.prune,
            body.state.as_deref(),
            &actor,
        )
        .await
    {
        Ok(done) => {
            let results: Vec<AppliedDto> = done
                .applied
                .iter()
                .map(|a| AppliedDto {
                    change: change_dto(&a.change),
                    result: match (&a.error, a.change.kind) {
                        (Some(_), _) => "failed",
                        (None, ChangeKind::Nothing) => "unchanged",
                        (None, _) => "ok",
                    }
                    .to_string(),
                    error: a.error.clone(),
                    deploy: a.deploy,
                })
                .collect();
            Json(ApplyDto {
                fleet: done.fleet.to_string(),
                state: done.state,
                failed: results.iter().filter(|r| r.error.is_some()).count(),
                results,
            })
            .into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /api/v1/fleet/export` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// The fleet's name in the file (default `fleet`).
    #[param(max_length = 63, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub fleet: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/fleet/export", tag = "fleet", params(ExportQuery),
    responses((status = 200, body = ExportDto, description = "Every instance as it runs, as a fleet file that plans nothing"),
              (status = 400, body = super::dto::ErrorBody, description = "a bad fleet name")))]
pub async fn export(State(state): State<AppState>, ApiQuery(q): ApiQuery<ExportQuery>) -> Response {
    let fleet = q.fleet.unwrap_or_else(|| "fleet".to_string());
    match state.manager.fleet_export(&fleet) {
        Ok(file) => Json(ExportDto { fleet, file }).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[utoipa::path(post, path = "/api/v1/schema/push", tag = "fleet", request_body = PushSchema,
    responses((status = 200, body = PushReportDto, description = "Each instance's result, in rollout order: a canary first, a backup before each, a failed migration rolled back, and after a failure the rest skipped"),
              (status = 400, body = super::dto::ErrorBody, description = "the schema does not check, or not exactly one of `to`, `all`, `tag`"),
              (status = 409, body = super::dto::ErrorBody, description = "two collections (or two fields of one) share an id or a name"),
              (status = 404, body = super::dto::ErrorBody, description = "an instance named does not exist, or none has the tag")))]
pub async fn push_schema(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<PushSchema>,
) -> Response {
    let given =
        usize::from(!body.to.is_empty()) + usize::from(body.all) + usize::from(body.tag.is_some());
    if given != 1 {
        return ApiError::from(ManagerError::Invalid(
            "say where to push: `to` (names), `all`, or `tag` — exactly one".into(),
        ))
        .into_response();
    }
    let targets = match (body.all, body.tag) {
        (true, _) => PushTargets::All,
        (_, Some(tag)) => PushTargets::Tag(tag),
        _ => PushTargets::Names(body.to),
    };
    match state
        .manager
        .schema_push(&body.schema, targets, body.delete_missing, &actor)
        .await
    {
        Ok(report) => {
            let results: Vec<PushedDto> = report
                .outcomes
                .iter()
                .map(|o| PushedDto {
                    name: o.name.clone(),
                    result: o.result.as_str().to_string(),
                    detail: o.detail.clone(),
                    snapshot: o.snapshot.clone(),
                })
                .collect();
            Json(PushReportDto {
                migration: report.migration,
                collections: report.collections,
                failed: report
                    .outcomes
                    .iter()
                    .filter(|o| !matches!(o.result, PushResult::Applied | PushResult::Unchanged))
                    .count(),
                results,
            })
            .into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /api/v1/tunnel/config` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TunnelQuery {
    /// The tunnel's name or UUID (`cloudflared tunnel create NAME`).
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub tunnel: String,
    /// Its credentials file, an absolute path.
    #[param(max_length = 4096, pattern = "^/[A-Za-z0-9/._-]*$")]
    pub credentials_file: Option<String>,
    /// Where cloudflared sends requests (default: the embedded proxy).
    #[param(max_length = 261, pattern = "^https?://[A-Za-z0-9.:\\[\\]-]{1,253}$")]
    pub service: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/tunnel/config", tag = "fleet", params(TunnelQuery),
    responses((status = 200, body = TunnelDto, description = "cloudflared's configuration: an ingress rule per hostname of this host's instances, to the proxy, then 404"),
              (status = 400, body = super::dto::ErrorBody, description = "a bad tunnel name, credentials file or service")))]
pub async fn tunnel_config(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TunnelQuery>,
) -> Response {
    match state.manager.tunnel_config(
        &q.tunnel,
        q.credentials_file.as_deref(),
        q.service.as_deref(),
    ) {
        Ok((file, hostnames)) => Json(TunnelDto { file, hostnames }).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
