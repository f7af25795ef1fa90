//! `/api/v1/instances/{name}/schema`, `…/openapi.json` and `…/types`:
//! schema as code, read from the instance's own `data.db` (the operations
//! are `manager::schema`; the generators `crate::codegen`).

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::dto::{ErrorBody, InstanceOpenApi, SchemaFile};
use super::error::ApiError;
use super::instances::ApiQuery;
use super::AppState;
use crate::codegen::Lang;

type ApiResult<T> = Result<T, ApiError>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/instances/{name}/schema", get(instance_schema))
        .route(
            "/api/v1/instances/{name}/openapi.json",
            get(instance_openapi),
        )
        .route("/api/v1/instances/{name}/types", get(instance_types))
}

#[utoipa::path(get, path = "/api/v1/instances/{name}/schema", tag = "schema",
    params(("name" = String, Path, max_length = 63)),
    responses((status = 200, body = SchemaFile, description = "The collections in PocketBase's export shape, in creation order, without secrets"),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "The instance's data.db cannot be read as PocketBase 0.23 or newer")))]
pub async fn instance_schema(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<SchemaFile>> {
    Ok(Json(SchemaFile(state.manager.schema(&name).await?)))
}

#[utoipa::path(get, path = "/api/v1/instances/{name}/openapi.json", tag = "schema",
    params(("name" = String, Path, max_length = 63)),
    responses((status = 200, body = InstanceOpenApi, description = "An OpenAPI 3.0 document of the instance's own PocketBase API"),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "The instance's data.db cannot be read as PocketBase 0.23 or newer"),
              (status = 422, body = ErrorBody, description = "A collection of the instance does not parse")))]
pub async fn instance_openapi(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<InstanceOpenApi>> {
    Ok(Json(InstanceOpenApi(
        state.manager.instance_openapi(&name).await?,
    )))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TypesParams {
    /// The language: `ts` (TypeScript, the default).
    #[param(required = false, pattern = "^(ts|typescript)$")]
    pub lang: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/instances/{name}/types", tag = "schema",
    params(("name" = String, Path, max_length = 63), TypesParams),
    responses((status = 200, body = String, content_type = "text/plain", description = "Types of the instance's collections (TypeScript: pocketbase-typegen's style)"),
              (status = 400, body = ErrorBody, description = "A language there are no types for"),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "The instance's data.db cannot be read as PocketBase 0.23 or newer"),
              (status = 422, body = ErrorBody, description = "A collection of the instance does not parse")))]
pub async fn instance_types(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(params): ApiQuery<TypesParams>,
) -> ApiResult<Response> {
    let lang =
        Lang::parse(params.lang.as_deref().unwrap_or("ts")).map_err(ApiError::bad_request)?;
    let text = state.manager.instance_types(&name, lang).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
