//! `/api/v1/instances/{name}/deploys`, `…/rollback`, `…/webhook` and
//! `…/deploy-credentials` (the operations are `manager::deploy`,
//! `manager::rollback` and `manager::deploy_secrets`), and the webhook
//! itself, `POST /webhooks/{name}`, which needs no bearer token: its
//! signature is its authentication.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use bytes::Bytes;

use super::dto::{
    DeployCredentials, DeployDto, DeployList, ErrorBody, LogLines, StartDeploy, StartRollback,
    WebhookDto,
};
use super::error::ApiError;
use super::instances::{ApiJson, ApiQuery, LogParams};
use super::AppState;
use crate::manager::{Actor, DeployRequest, WebhookOutcome};

type ApiResult<T> = Result<T, ApiError>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/instances/{name}/deploys",
            get(list_deploys).post(start_deploy),
        )
        .route("/api/v1/instances/{name}/deploys/{deploy}", get(get_deploy))
        .route(
            "/api/v1/instances/{name}/deploys/{deploy}/log",
            get(deploy_log),
        )
        .route("/api/v1/instances/{name}/rollback", post(start_rollback))
        .route(
            "/api/v1/instances/{name}/webhook",
            put(set_webhook).delete(delete_webhook),
        )
        .route(
            "/api/v1/instances/{name}/deploy-credentials",
            put(set_credentials),
        )
        .route("/webhooks/{name}", post(webhook))
}

fn dto(state: &AppState, name: &str, d: &crate::store::DeployRecord) -> DeployDto {
    let current = state.manager.get(name).ok().and_then(|r| r.release);
    DeployDto::new(d, current.as_ref())
}

#[utoipa::path(post, path = "/api/v1/instances/{name}/deploys", tag = "deploys",
    params(("name" = String, Path)),
    request_body(content = Option<StartDeploy>, description = "optional for an instance deployed before"),
    responses((status = 202, body = DeployDto, description = "The deploy, `queued`: it runs in the background; follow `…/deploys/{deploy}/log?follow=true`"),
              (status = 400, body = ErrorBody, description = "A repository URL, branch or directory that is refused"),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "No repository given for an instance never deployed")))]
pub async fn start_deploy(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<DeployDto>)> {
    let body = super::backups::optional_json::<StartDeploy>(&body)?;
    if !body.create {
        state.manager.get(&name)?;
    }
    let d = state
        .manager
        .deploy(
            &name,
            DeployRequest {
                repo: body.repo,
                branch: body.branch,
                subdir: body.subdir,
                token: body.token,
                ssh_key: body.ssh_key,
            },
            &actor,
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(dto(&state, &name, &d))))
}

#[utoipa::path(get, path = "/api/v1/instances/{name}/deploys", tag = "deploys",
    params(("name" = String, Path)),
    responses((status = 200, body = DeployList), (status = 404, body = ErrorBody)))]
pub async fn list_deploys(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<DeployList>> {
    let rec = state.manager.get(&name)?;
    let source = state.manager.deploy_source(&name)?;
    let deploys = state
        .manager
        .deploys(&name)?
        .iter()
        .map(|d| DeployDto::new(d, rec.release.as_ref()))
        .collect();
    Ok(Json(DeployList {
        name,
        repo: source.as_ref().map(|s| s.repo.to_string()),
        branch: source.as_ref().map(|s| s.branch.to_string()),
        subdir: source
            .as_ref()
            .and_then(|s| s.subdir.as_ref().map(|d| d.as_str().to_string())),
        release: rec.release.map(|r| r.to_string()),
        deploys,
    }))
}

#[utoipa::path(get, path = "/api/v1/instances/{name}/deploys/{deploy}", tag = "deploys",
    params(("name" = String, Path), ("deploy" = String, Path, description = "The deploy's number")),
    responses((status = 200, body = DeployDto), (status = 404, body = ErrorBody)))]
pub async fn get_deploy(
    State(state): State<AppState>,
    Path((name, deploy)): Path<(String, String)>,
) -> ApiResult<Json<DeployDto>> {
    let d = state.manager.deploy_record(&name, &deploy)?;
    Ok(Json(dto(&state, &name, &d)))
}

#[utoipa::path(get, path = "/api/v1/instances/{name}/deploys/{deploy}/log", tag = "deploys",
    params(("name" = String, Path), ("deploy" = String, Path), LogParams),
    responses((status = 200, body = LogLines, description = "JSON, or `text/plain` streamed with follow=true until the deploy ends"),
              (status = 404, body = ErrorBody)))]
pub async fn deploy_log(
    State(state): State<AppState>,
    Path((name, deploy)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<LogParams>,
) -> ApiResult<Response> {
    let n = params.lines.unwrap_or(100).min(10_000) as usize;
    if !params.follow {
        let lines = state.manager.deploy_log_tail(&name, &deploy, n).await?;
        return Ok(Json(LogLines { name, lines }).into_response());
    }
    let follow = state.manager.follow_deploy_log(&name, &deploy, n).await?;
    Ok(super::instances::followed_text(follow))
}

#[utoipa::path(post, path = "/api/v1/instances/{name}/rollback", tag = "deploys",
    params(("name" = String, Path)),
    request_body(content = Option<StartRollback>, description = "optional: the newest release before the current one"),
    responses((status = 202, body = DeployDto, description = "The rollback, `queued`"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "No earlier release is kept")))]
pub async fn start_rollback(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<DeployDto>)> {
    let body = super::backups::optional_json::<StartRollback>(&body)?;
    let d = state
        .manager
        .rollback(&name, body.to.as_deref(), &actor)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(dto(&state, &name, &d))))
}

#[utoipa::path(put, path = "/api/v1/instances/{name}/webhook", tag = "deploys",
    params(("name" = String, Path)),
    responses((status = 200, body = WebhookDto, description = "A new secret (the old one no longer works), shown once"),
              (status = 404, body = ErrorBody)))]
pub async fn set_webhook(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<Json<WebhookDto>> {
    let secret = state.manager.set_webhook(&name, &actor).await?;
    Ok(Json(WebhookDto {
        path: format!("/webhooks/{name}"),
        name,
        secret,
    }))
}

#[utoipa::path(delete, path = "/api/v1/instances/{name}/webhook", tag = "deploys",
    params(("name" = String, Path)),
    responses((status = 204, description = "The webhook is off"), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state.manager.delete_webhook(&name, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/v1/instances/{name}/deploy-credentials", tag = "deploys",
    params(("name" = String, Path)), request_body = DeployCredentials,
    responses((status = 204, description = "Kept (never shown again)"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_credentials(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<DeployCredentials>,
) -> ApiResult<StatusCode> {
    state
        .manager
        .set_deploy_credentials(
            &name,
            body.token.as_deref(),
            body.ssh_key.as_deref(),
            &actor,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /webhooks/{name}`: a GitHub or Gitea push event.
pub async fn webhook(
    State(state): State<AppState>,
    Path(name): Path<String>,
    peer: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    let event = text("x-github-event").or_else(|| text("x-gitea-event"));
    let signature = text("x-hub-signature-256");
    let actor = Actor(format!(
        "webhook@{}",
        peer.map(|p| p.0 .0.ip().to_string())
            .unwrap_or_else(|| "socket".into())
    ));
    match state
        .manager
        .webhook(&name, event, signature, &body, &actor)
        .await
    {
        Ok(WebhookOutcome::Deploying(d)) => {
            (StatusCode::ACCEPTED, Json(dto(&state, &name, &d))).into_response()
        }
        Ok(WebhookOutcome::Ignored(why)) => {
            (StatusCode::OK, Json(serde_json::json!({ "ignored": why }))).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
