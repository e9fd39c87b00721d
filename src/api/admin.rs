//! Admin routes (bearer token): reload a model file, and the registry (list, activate, rollback).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::store::{ModelRecord, Store, StoreError};

/// `POST /v1/admin/reload`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// Artifact folder or file; the configured model when absent.
    #[serde(default)]
    pub path: Option<String>,
}

/// What a reload did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadResponse {
    /// The version now serving.
    pub version: String,
    /// The version that served before.
    pub previous_version: Option<String>,
    /// Seconds from file to ready.
    pub load_seconds: f64,
}

/// Compares in constant time, so the token cannot be guessed byte by byte from response times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin routes, behind the admin token.
pub(super) fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(reload))
        .routes(routes!(list_models))
        .routes(routes!(activate))
        .routes(routes!(rollback))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
}

/// Middleware of the admin routes: passes requests bearing the admin token; 401 otherwise, 403
/// when no admin token is configured.
pub(super) async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check_bearer(request.headers(), &[state.settings.admin_token.as_bytes()])?;
    Ok(next.run(request).await)
}

/// Middleware of the write routes: passes requests bearing the write token or the admin token;
/// 401 otherwise, 403 when neither is configured.
pub(super) async fn require_write(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let tokens = [
        state.settings.write_token.as_bytes(),
        state.settings.admin_token.as_bytes(),
    ];
    check_bearer(request.headers(), &tokens)?;
    Ok(next.run(request).await)
}

/// Whether the bearer token is one of `tokens` (the empty ones are not configured).
fn check_bearer(headers: &HeaderMap, tokens: &[&[u8]]) -> Result<(), ApiError> {
    if tokens.iter().all(|t| t.is_empty()) {
        return Err(ApiError::AdminDisabled);
    }
    let given = bearer(headers).as_bytes();
    if tokens
        .iter()
        .any(|t| !t.is_empty() && constant_time_eq(given, t))
    {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Load a model artifact and swap it in; the old one serves until the new one is ready, and keeps
/// serving if the new one is refused.
#[utoipa::path(post, path = "/v1/admin/reload", request_body = Option<ReloadRequest>, tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, body = ReloadResponse), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn reload(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<ReloadResponse>, ApiError> {
    let req: ReloadRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReloadRequest::default()
    } else {
        super::error::parse_json(&body)?
    };
    let path = req
        .path
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| state.settings.model.clone());
    let swapped = state.live.swap(path).await?;
    Ok(Json(ReloadResponse {
        version: swapped.version,
        previous_version: swapped.previous_version,
        load_seconds: swapped.load_seconds,
    }))
}

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// The database, or a 503 when the service runs without one.
pub(super) fn store(state: &AppState) -> Result<&Store, ApiError> {
    state.store.as_ref().ok_or(ApiError::NoDatabase)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchModel(_) => ApiError::NotFound(e.to_string()),
            StoreError::BadArtifact { .. } => ApiError::ModelRefused(e.to_string()),
            StoreError::NothingToRollBack(_) => ApiError::Conflict(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Registered models.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    pub models: Vec<ModelRecord>,
}

/// One registered model after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelChange {
    /// The model now active.
    #[schema(value_type = Object)]
    pub active: ModelRecord,
}

/// List the registry.
#[utoipa::path(get, path = "/v1/admin/models", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = ModelList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn list_models(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    Ok(Json(ModelList {
        models: store(&state)?.list_models().await?,
    }))
}

/// Activate a registered model; every replica serves it within one poll interval.
#[utoipa::path(post, path = "/v1/admin/models/{id}/activate", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Registry id")),
    responses((status = 200, body = ModelChange), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn activate(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<ModelChange>, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::field("id", e.body_text()))?;
    let active = store(&state)?.activate(id, "http").await?;
    state.live.sync_with_registry().await;
    Ok(Json(ModelChange { active }))
}

/// Re-activate the model that was active before the current one.
#[utoipa::path(post, path = "/v1/admin/rollback", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = ModelChange), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn rollback(State(state): State<AppState>) -> Result<Json<ModelChange>, ApiError> {
    let active = store(&state)?.rollback("http").await?;
    state.live.sync_with_registry().await;
    Ok(Json(ModelChange { active }))
}
