//! Public read routes for browsing the serving model (what the dashboard shows besides recall):
//! its training history, the user-side features a new user can be described with, a user's known
//! items and items found by id or title. No token needed; nothing here changes state.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::serving::{EpochRow, FeatureGroup, ItemEntry};

/// A query string, or the API's error naming the parameter at fault.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::field("query", e.body_text()))
}

/// `?limit=` in 1..=max_k (else a 400 naming it); `default`, capped at max_k, when absent.
fn limit(state: &AppState, given: Option<usize>, default: usize) -> Result<usize, ApiError> {
    let max = state.settings.max_k;
    let value = given.unwrap_or(default.min(max));
    if value == 0 || value > max {
        return Err(ApiError::field(
            "limit",
            format!("limit must be in 1..={max}, got {value}"),
        ));
    }
    Ok(value)
}

/// The browsing routes: public, no token.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(history))
        .routes(routes!(features))
        .routes(routes!(user))
        .routes(routes!(items))
}

/// The serving model's training history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryResponse {
    /// Version of the model.
    pub model_version: String,
    /// Cut-off of the per-epoch figures (precision@k …); null when no epoch was evaluated.
    pub k: Option<usize>,
    /// The split whose held-out part the per-epoch figures were measured on.
    pub split: String,
    /// Epochs whose parameters the model holds.
    pub epochs_kept: usize,
    /// Whether that count was chosen by early stopping on validation data.
    pub early_stopping: bool,
    /// What the serving parameters were fitted on: `train_split`, `all_after_evaluation` (the
    /// deployment path: the figures are those of the evaluated run on the train split) or
    /// `all_unevaluated`.
    #[schema(value_type = String)]
    pub fit: crate::fm::artifact::ModelFit,
    /// Where the figures come from, in words.
    pub figures_from: String,
    /// One row per epoch of the evaluated training run (what `history.csv` holds).
    pub epochs: Vec<EpochRow>,
    /// Under early stopping, one row per epoch of the run on validation data carved from the
    /// train split, whose best epoch (`epochs_kept`) was chosen; empty otherwise.
    pub validation: Vec<EpochRow>,
}

/// The user-side features of the serving model.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeaturesResponse {
    /// Version of the model.
    pub model_version: String,
    /// Side features of known users, grouped by name; empty for an ids-only model (then a new user
    /// cannot be described to it).
    pub user_features: Vec<FeatureGroup>,
    /// Side features of the trained items, grouped by name: what a recall `filter` matches on
    /// (`{"key": name, "match": {"value": …}}`).
    pub item_features: Vec<FeatureGroup>,
}

/// `?limit=` of the user route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserParams {
    /// Most known items to list (1..=max_k, default 100 or max_k if lower).
    #[param(minimum = 1)]
    pub limit: Option<usize>,
}

/// A user and the items they are known to have interacted with.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    /// Version of the model.
    pub model_version: String,
    /// The user's id.
    pub user_id: String,
    /// `model` (known at training time, with their seen items) or `catalog` (created later with
    /// `PUT /v1/users/{id}`: features only).
    pub source: String,
    /// The user's features (the id feature first for users of the model).
    pub features: Vec<String>,
    /// How many items the user is known to have interacted with (what exclude-seen leaves out of
    /// recall).
    pub known_items_total: usize,
    /// The first `limit` of them.
    pub known_items: Vec<ItemEntry>,
}

/// `?q=&offset=&limit=` of the item listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemsParams {
    /// Case-insensitive part of an id or title; an exact id comes first. Empty: every item.
    #[param(max_length = 256)]
    pub q: Option<String>,
    /// Matches to skip (default 0).
    pub offset: Option<usize>,
    /// Most items to return (1..=max_k, default 20 or max_k if lower).
    #[param(minimum = 1)]
    pub limit: Option<usize>,
    /// Only the items written since training (`PUT /v1/items/{id}`), newest first.
    pub live: Option<bool>,
}

/// A page of the catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemsResponse {
    /// Version of the model.
    pub model_version: String,
    /// Items matching in all.
    pub total: usize,
    /// Matches skipped.
    pub offset: usize,
    /// The page.
    pub items: Vec<ItemEntry>,
}

/// The serving model's training history: loss and ranking figures per epoch.
#[utoipa::path(get, path = "/v1/model/history", tag = "model",
    responses((status = 200, body = HistoryResponse), (status = 503, body = ErrorBody)))]
pub async fn history(State(state): State<AppState>) -> Result<Json<HistoryResponse>, ApiError> {
    let m = state.serving()?;
    let training = &m.meta().training;
    let (k, epochs, validation) = m.history();
    Ok(Json(HistoryResponse {
        model_version: m.meta().version.clone(),
        k,
        split: training.split.clone(),
        epochs_kept: training.epochs,
        early_stopping: training.early_stopping,
        fit: training.fit,
        figures_from: training.fit.figures_source().to_string(),
        epochs,
        validation,
    }))
}

/// The side features a new (cold-start) user can be described with, and how many known users have
/// each; the item side features a recall filter can match, and how many trained items have each.
#[utoipa::path(get, path = "/v1/model/features", tag = "model",
    responses((status = 200, body = FeaturesResponse), (status = 503, body = ErrorBody)))]
pub async fn features(State(state): State<AppState>) -> Result<Json<FeaturesResponse>, ApiError> {
    let m = state.serving()?;
    let answer = state
        .compute(move || {
            Ok(FeaturesResponse {
                model_version: m.meta().version.clone(),
                user_features: m.user_feature_groups(),
                item_features: m.item_feature_groups(),
            })
        })
        .await?;
    Ok(Json(answer))
}

/// A user's features and known (train) items, with titles.
#[utoipa::path(get, path = "/v1/users/{user_id}", tag = "catalog",
    params(("user_id" = String, Path, description = "User id"), UserParams),
    responses((status = 200, body = UserResponse), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn user(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    params: Result<Query<UserParams>, QueryRejection>,
) -> Result<Json<UserResponse>, ApiError> {
    let params = query(params)?;
    let limit = limit(&state, params.limit, 100)?;
    let m = state.serving()?;
    let version = m.meta().version.clone();
    if let Some(known) = m.known_user(&user_id, limit) {
        return Ok(Json(UserResponse {
            model_version: version,
            user_id: known.user_id,
            source: "model".into(),
            features: known.features,
            known_items_total: known.known_items_total,
            known_items: known.known_items,
        }));
    }
    let stored = match &state.store {
        Some(store) => store.user_features(&user_id).await?,
        None => None,
    };
    match stored {
        Some(features) => Ok(Json(UserResponse {
            model_version: version,
            user_id,
            source: "catalog".into(),
            features,
            known_items_total: 0,
            known_items: Vec::new(),
        })),
        None => Err(ApiError::UnknownUser(format!("unknown user {user_id:?}"))),
    }
}

/// Items whose id or title contains `q`, a page at a time.
#[utoipa::path(get, path = "/v1/items", tag = "catalog", params(ItemsParams),
    responses((status = 200, body = ItemsResponse), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn items(
    State(state): State<AppState>,
    params: Result<Query<ItemsParams>, QueryRejection>,
) -> Result<Json<ItemsResponse>, ApiError> {
    let params = query(params)?;
    let limit = limit(&state, params.limit, 20)?;
    let offset = params.offset.unwrap_or(0);
    let q = params.q.unwrap_or_default();
    if q.chars().count() > 256 {
        return Err(ApiError::field("q", "q must be at most 256 characters"));
    }
    let live_only = params.live.unwrap_or(false);
    let m = state.serving()?;
    let answer = state
        .compute(move || {
            let page = m.find_items(&q, offset, limit, live_only);
            Ok(ItemsResponse {
                model_version: m.meta().version.clone(),
                total: page.total,
                offset,
                items: page.items,
            })
        })
        .await?;
    Ok(Json(answer))
}
