//! Handlers for recall, scoring, similar items, the model, health and admin: parse, call, map.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiJson, ErrorBody};
use super::AppState;
use crate::serving::{
    Condition, ItemFilter, LiveCounts, MatchValue, QualityNow, RecallQuery, Recalled, RefusedModel,
    ScoredItem, ServingModel, UserSpec,
};

fn default_k() -> usize {
    10
}

fn yes() -> bool {
    true
}

/// `POST /v1/recall`: a user by id, or by features (cold start), or both (a known user in a
/// context), and what to leave out.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "42", "k": 5}))]
pub struct RecallRequest {
    /// A user's id: one the model was trained on, or one created with `PUT /v1/users/{id}`
    /// (served from the features stored there).
    #[serde(default)]
    pub user_id: Option<String>,
    /// Features (`age:25-34`). Without a `user_id` the model knows, the user is served from these
    /// alone (cold start). With one, both are used on purpose: these replace that user's side
    /// features for this request (context such as a current region), while the user's id feature
    /// and seen items (left out by `exclude_seen`) stay.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// How many items (1..=max_k, default 10).
    #[serde(default = "default_k")]
    #[schema(minimum = 1)]
    pub k: usize,
    /// Leave out the items the user already interacted with: every interaction known when the
    /// model was built, whatever its split or rating (default true).
    #[serde(default = "yes")]
    pub exclude_seen: bool,
    /// Item ids to leave out.
    #[serde(default)]
    pub exclude_items: Vec<String>,
    /// Search breadth of graph indexes (1..=10000).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000)]
    pub ef: Option<usize>,
    /// Only items this filter allows (on their features and ids; at most 1,000 values in all).
    /// Features or ids it names that no item has are listed in `unknown_features` and match
    /// nothing.
    #[serde(default)]
    pub filter: Option<ItemFilter>,
    /// Item ids the user interacted with, oldest first (at most 1,000), beyond what the service
    /// knows of them: an anonymous visitor's history needs no `user_id`. They are left out under
    /// `exclude_seen`, and a model trained with history features folds them into the user's
    /// vector (its most recent `history` items, the model's `params.history`, count; older ones
    /// are cut). Ids the model does not serve are listed in `unknown_features` as
    /// `history:<id>` and ignored.
    #[serde(default)]
    #[schema(max_items = 1000, example = json!(["50", "181"]))]
    pub history: Vec<String>,
}

/// Most item ids one request's `history` may hold.
const MAX_REQUEST_HISTORY: usize = 1000;

/// Checks a request's history: at most [`MAX_REQUEST_HISTORY`] ids of 1..=256 printable characters.
fn check_history(history: &[String], at: &str) -> Result<(), ApiError> {
    if history.len() > MAX_REQUEST_HISTORY {
        return Err(ApiError::field(
            format!("{at}history"),
            format!(
                "at most {MAX_REQUEST_HISTORY} item ids, got {}",
                history.len()
            ),
        ));
    }
    for (i, id) in history.iter().enumerate() {
        if id.is_empty() || id.chars().count() > 256 || id.chars().any(char::is_control) {
            return Err(ApiError::field(
                format!("{at}history[{i}]"),
                "an item id: 1..=256 printable characters",
            ));
        }
    }
    Ok(())
}

/// Most values (features and ids) one filter may name.
const MAX_FILTER_VALUES: usize = 1000;

/// Checks a filter: at least one clause, every condition with at least one value, every value
/// 1..=256 printable characters, at most [`MAX_FILTER_VALUES`] in all. `at` prefixes the field.
fn check_filter(filter: &ItemFilter, at: &str) -> Result<(), ApiError> {
    if filter.must.is_empty() && filter.should.is_empty() && filter.must_not.is_empty() {
        return Err(ApiError::field(
            format!("{at}filter"),
            "give at least one of must, should, must_not",
        ));
    }
    if filter.size() > MAX_FILTER_VALUES {
        return Err(ApiError::field(
            format!("{at}filter"),
            format!(
                "at most {MAX_FILTER_VALUES} values in all, got {}",
                filter.size()
            ),
        ));
    }
    let bad = |s: &str| s.is_empty() || s.chars().count() > 256 || s.chars().any(char::is_control);
    for (place, condition) in filter.conditions() {
        let field = format!("{at}filter.{place}");
        let (key, values): (Option<&str>, Vec<&str>) = match condition {
            Condition::Match { key, matches } => (
                Some(key),
                match matches {
                    MatchValue::Value(v) => vec![v.as_str()],
                    MatchValue::Any(vs) => vs.iter().map(String::as_str).collect(),
                },
            ),
            Condition::HasId { has_id } => (None, has_id.iter().map(String::as_str).collect()),
        };
        if key.is_some_and(|k| bad(k) || k.contains(':')) {
            return Err(ApiError::field(
                format!("{field}.key"),
                "a feature name: 1..=256 printable characters, no colon",
            ));
        }
        if values.is_empty() {
            return Err(ApiError::field(field, "give at least one value"));
        }
        if values.iter().any(|v| bad(v)) {
            return Err(ApiError::field(
                field,
                "every value must be 1..=256 printable characters",
            ));
        }
    }
    Ok(())
}

/// A recall answer. Fields spelled out rather than `#[serde(flatten)]`ed from [`Recalled`]: flatten
/// serializes through a map and cost more than the rest of the answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecallResponse<'a> {
    /// Version of the model that answered.
    pub model_version: &'a str,
    /// Best first.
    pub items: Vec<ScoredItem<'a>>,
    /// Features the model does not know (ignored).
    pub unknown_features: Vec<String>,
    /// Whether the user was served from features alone.
    pub cold_start: bool,
}

impl<'a> RecallResponse<'a> {
    fn new(model_version: &'a str, recalled: Recalled<'a>) -> Self {
        RecallResponse {
            model_version,
            items: recalled.items,
            unknown_features: recalled.unknown_features,
            cold_start: recalled.cold_start,
        }
    }

    /// The answer as JSON, byte for byte what serde_json writes for it (tested), with each item
    /// appended from its pre-rendered prefix ([`ScoredItem::write_json`]).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = answer_buffer(self.items.len());
        out.extend_from_slice(b"{\"model_version\":");
        serde_json::to_writer(&mut out, self.model_version)?;
        out.extend_from_slice(b",\"items\":[");
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            item.write_json(&mut out)?;
        }
        out.extend_from_slice(b"],\"unknown_features\":");
        serde_json::to_writer(&mut out, &self.unknown_features)?;
        out.extend_from_slice(b",\"cold_start\":");
        serde_json::to_writer(&mut out, &self.cold_start)?;
        out.push(b'}');
        Ok(out)
    }
}

/// `POST /v1/recall/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"queries": [{"user_id": "42", "k": 3}, {"features": ["region:r3"], "k": 3}]}))]
pub struct BatchRequest {
    /// The queries, answered in order.
    #[schema(min_items = 1)]
    pub queries: Vec<RecallRequest>,
}

/// One answer of a batch: items, or the error of that query alone.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchItem<'a> {
    /// The query's answer.
    Ok(Recalled<'a>),
    /// Why this query could not be answered.
    Err(ErrorBody),
}

/// The batch's answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse<'a> {
    /// Version of the model that answered every query.
    pub model_version: &'a str,
    /// One entry per query, in order.
    pub results: Vec<BatchItem<'a>>,
}

/// `POST /v1/score`: exact FM scores of candidate items for a user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "42", "item_ids": ["1", "2", "3"]}))]
pub struct ScoreRequest {
    /// A user's id: one the model was trained on, or one created with `PUT /v1/users/{id}`
    /// (served from the features stored there).
    #[serde(default)]
    pub user_id: Option<String>,
    /// Features (`age:25-34`). Without a `user_id` the model knows, the user is scored from these
    /// alone (cold start). With one, both are used on purpose: these replace that user's side
    /// features for this request (context such as a current region), while the user's id feature
    /// stays.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Items to score (1..=max_k).
    #[schema(min_items = 1)]
    pub item_ids: Vec<String>,
}

/// Scores in the order asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreResponse<'a> {
    /// Version of the model that answered.
    pub model_version: &'a str,
    /// One per requested item.
    pub scores: Vec<ScoredItem<'a>>,
    /// Features the model does not know (ignored).
    pub unknown_features: Vec<String>,
}

/// `?k=` of the similar-items route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SimilarParams {
    /// How many items (1..=max_k, default 10).
    #[param(minimum = 1)]
    pub k: Option<usize>,
}

/// Similar items.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimilarResponse<'a> {
    /// Version of the model that answered.
    pub model_version: &'a str,
    /// The item asked about.
    pub item_id: String,
    /// Items by cosine similarity of their factor vectors (score = cosine).
    pub items: Vec<ScoredItem<'a>>,
    /// Features and ids the filter names that no item has (they match nothing).
    pub unknown_features: Vec<String>,
}

/// `POST /v1/items/{item_id}/similar`: similar items under a filter.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"k": 5, "filter": {"must": [{"key": "genre", "match": {"value": "g1"}}]}}))]
pub struct SimilarRequest {
    /// How many items (1..=max_k, default 10).
    #[serde(default = "default_k")]
    #[schema(minimum = 1)]
    pub k: usize,
    /// Only items this filter allows (the shape of `/v1/recall`'s `filter`).
    #[serde(default)]
    pub filter: Option<ItemFilter>,
}

/// The serving model, described.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelResponse {
    /// Model version.
    pub version: String,
    /// When it was trained.
    pub created_at: String,
    /// Since when it serves.
    pub serving_since: String,
    /// Where it was loaded from.
    pub path: String,
    /// Seconds from file to ready (load + index build + checks).
    pub load_seconds: f64,
    /// Hyper-parameters.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Data, split, schedule.
    #[schema(value_type = Object)]
    pub training: serde_json::Value,
    /// Users, items and features.
    #[schema(value_type = Object)]
    pub counts: serde_json::Value,
    /// Evaluation figures on the test split (null without one).
    #[schema(value_type = Option<Object>)]
    pub metrics: serde_json::Value,
    /// Cold-start figures beside them (model and popularity on users or items held out whole by
    /// the training split; null when it held out none).
    #[schema(value_type = Option<Object>)]
    pub cold_start: serde_json::Value,
    /// Index kind, parameters, size.
    #[schema(value_type = Object)]
    pub index: serde_json::Value,
    /// The index's recall@10 against brute force on sample queries (null for exact search).
    #[schema(value_type = Option<Object>)]
    pub index_quality: serde_json::Value,
    /// The registry's active model when this service refused to load it (its file is missing,
    /// altered or broken): the version above, the previous one, keeps serving. Null otherwise.
    pub registry_refused: Option<RefusedModel>,
    /// Items written since training (`PUT`/`DELETE /v1/items`).
    pub live_items: LiveCounts,
    /// The index's recall against exact search as re-measured after those writes (null before
    /// any write, or until the first re-measure, at most 30 s after one).
    pub index_quality_now: Option<QualityNow>,
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `ready` / `not_ready` on /readyz.
    pub status: String,
    /// Why not ready (no model yet, or the external index does not answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A user the model does not know but the catalog does (created with `PUT /v1/users/{id}` after
/// training) is served from the catalog's features.
async fn with_catalog_features(
    state: &AppState,
    model: &ServingModel,
    user: &mut UserSpec,
) -> Result<(), ApiError> {
    if let (Some(id), None, Some(store)) = (&user.id, &user.features, &state.store) {
        if !model.knows_user(id) {
            user.features = store.user_features(id).await?;
        }
    }
    Ok(())
}

impl RecallRequest {
    /// Checks ranges; `at` prefixes field names (e.g. `queries[2].`).
    fn into_query(self, max_k: usize, at: &str) -> Result<RecallQuery, ApiError> {
        if self.k == 0 || self.k > max_k {
            return Err(ApiError::field(
                format!("{at}k"),
                format!("k must be in 1..={max_k}, got {}", self.k),
            ));
        }
        if let Some(ef) = self.ef {
            if !(1..=10_000).contains(&ef) {
                return Err(ApiError::field(
                    format!("{at}ef"),
                    format!("ef must be in 1..=10000, got {ef}"),
                ));
            }
        }
        if self.user_id.is_none() && self.features.is_none() && self.history.is_empty() {
            return Err(ApiError::field(
                format!("{at}user_id"),
                "give a user_id, a list of features or a history",
            ));
        }
        check_history(&self.history, at)?;
        if let Some(filter) = &self.filter {
            check_filter(filter, at)?;
        }
        Ok(RecallQuery {
            user: UserSpec {
                id: self.user_id,
                features: self.features,
                history: self.history,
            },
            k: self.k,
            exclude_seen: self.exclude_seen,
            exclude_items: self.exclude_items,
            ef: self.ef,
            filter: self.filter,
        })
    }
}

/// Recall the k best items for a user.
#[utoipa::path(post, path = "/v1/recall", request_body = RecallRequest, tag = "recall",
    responses((status = 200, body = RecallResponse), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn recall(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RecallRequest>,
) -> Result<Response, ApiError> {
    let mut query = req.into_query(state.settings.max_k, "")?;
    let model = state.serving()?;
    with_catalog_features(&state, &model, &mut query.user).await?;
    let work = model.recall_work(&query);
    state
        .compute_sized(work, move || {
            let recalled = model.recall(&query)?;
            let body = RecallResponse::new(&model.meta().version, recalled)
                .to_json()
                .map_err(|e| ApiError::Internal(format!("could not encode the answer: {e}")))?;
            Ok(json_body(body))
        })
        .await
}

/// Many recall queries in one request, answered in order by one model.
#[utoipa::path(post, path = "/v1/recall/batch", request_body = BatchRequest, tag = "recall",
    responses((status = 200, body = BatchResponse), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn recall_batch(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<BatchRequest>,
) -> Result<Response, ApiError> {
    let max_batch = state.settings.max_batch;
    if req.queries.is_empty() || req.queries.len() > max_batch {
        return Err(ApiError::field(
            "queries",
            format!("give 1..={max_batch} queries, got {}", req.queries.len()),
        ));
    }
    let mut queries = req
        .queries
        .into_iter()
        .enumerate()
        .map(|(i, q)| q.into_query(state.settings.max_k, &format!("queries[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    let model = state.serving()?;
    for query in &mut queries {
        with_catalog_features(&state, &model, &mut query.user).await?;
    }
    state
        .compute(move || {
            let results: Vec<BatchItem> = queries
                .iter()
                .map(|q| match model.recall(q) {
                    Ok(r) => BatchItem::Ok(r),
                    Err(e) => BatchItem::Err(ApiError::from(e).body().1),
                })
                .collect();
            let items = results
                .iter()
                .map(|r| match r {
                    BatchItem::Ok(r) => r.items.len(),
                    BatchItem::Err(_) => 0,
                })
                .sum();
            json_response(
                &BatchResponse {
                    model_version: &model.meta().version,
                    results,
                },
                items,
            )
        })
        .await
}

/// Exact FM scores of the given items for a user.
#[utoipa::path(post, path = "/v1/score", request_body = ScoreRequest, tag = "recall",
    responses((status = 200, body = ScoreResponse), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn score(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ScoreRequest>,
) -> Result<Response, ApiError> {
    let max = state.settings.max_k;
    if req.item_ids.is_empty() || req.item_ids.len() > max {
        return Err(ApiError::field(
            "item_ids",
            format!("give 1..={max} item ids, got {}", req.item_ids.len()),
        ));
    }
    if req.user_id.is_none() && req.features.is_none() {
        return Err(ApiError::field(
            "user_id",
            "give a user_id or a list of features",
        ));
    }
    let model = state.serving()?;
    let mut user = UserSpec {
        id: req.user_id,
        features: req.features,
        history: Vec::new(),
    };
    with_catalog_features(&state, &model, &mut user).await?;
    state
        .compute(move || {
            let (scores, unknown_features) = model.score(&user, &req.item_ids)?;
            let items = scores.len();
            json_response(
                &ScoreResponse {
                    model_version: &model.meta().version,
                    scores,
                    unknown_features,
                },
                items,
            )
        })
        .await
}

/// Items similar to an item (cosine of factor vectors).
#[utoipa::path(get, path = "/v1/items/{item_id}/similar", tag = "recall",
    params(("item_id" = String, Path, description = "Item id"), SimilarParams),
    responses((status = 200, body = SimilarResponse), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn similar(
    State(state): State<AppState>,
    Path(item_id): Path<String>,
    params: Result<Query<SimilarParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::field("k", e.body_text()))?;
    similar_items(state, item_id, params.k.unwrap_or(10), None).await
}

/// Items similar to an item among those a filter allows (cosine of factor vectors).
#[utoipa::path(post, path = "/v1/items/{item_id}/similar", tag = "recall",
    params(("item_id" = String, Path, description = "Item id")),
    request_body = SimilarRequest,
    responses((status = 200, body = SimilarResponse), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn similar_filtered(
    State(state): State<AppState>,
    Path(item_id): Path<String>,
    ApiJson(req): ApiJson<SimilarRequest>,
) -> Result<Response, ApiError> {
    if let Some(filter) = &req.filter {
        check_filter(filter, "")?;
    }
    similar_items(state, item_id, req.k, req.filter).await
}

/// The similar-items answer shared by both methods.
async fn similar_items(
    state: AppState,
    item_id: String,
    k: usize,
    filter: Option<ItemFilter>,
) -> Result<Response, ApiError> {
    let max = state.settings.max_k;
    if k == 0 || k > max {
        return Err(ApiError::field(
            "k",
            format!("k must be in 1..={max}, got {k}"),
        ));
    }
    let model = state.serving()?;
    state
        .compute(move || {
            let (items, unknown_features) = model.similar(&item_id, k, filter.as_ref())?;
            let count = items.len();
            json_response(
                &SimilarResponse {
                    model_version: &model.meta().version,
                    item_id,
                    items,
                    unknown_features,
                },
                count,
            )
        })
        .await
}

/// Recall, scoring, similar items, the model, health and metrics: public, no token.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(recall))
        .routes(routes!(recall_batch))
        .routes(routes!(score))
        .routes(routes!(similar, similar_filtered))
        .routes(routes!(model))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// A 200 JSON response, serialized where the answer still borrows from the serving model (see
/// [`ScoredItem`]); what `axum::Json` does, minus the copy into owned strings.
fn json_response(value: &impl Serialize, items: usize) -> Result<Response, ApiError> {
    let mut body = answer_buffer(items);
    serde_json::to_writer(&mut body, value)
        .map_err(|e| ApiError::Internal(format!("could not encode the answer: {e}")))?;
    Ok(json_body(body))
}

/// A buffer for an answer with `items` scored items (id, title, score: ~90 bytes each): grown
/// from empty, a 1 KB answer was copied through eight reallocations.
fn answer_buffer(items: usize) -> Vec<u8> {
    Vec::with_capacity(128 + 96 * items)
}

/// A 200 with a JSON body already encoded.
fn json_body(body: Vec<u8>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn rfc3339_of(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    crate::fm::artifact::rfc3339(secs)
}

/// `value` as JSON with each `f32` as its shortest decimal (`0.05`): `serde_json::to_value` widens
/// an f32 to f64 first and shows `0.05000000074505806`; written as text and read back, it does not.
fn json_value(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_string(value)
        .and_then(|text| serde_json::from_str(&text))
        .unwrap_or_default()
}

/// The serving model: version, training, figures, index.
#[utoipa::path(get, path = "/v1/model", tag = "model",
    responses((status = 200, body = ModelResponse), (status = 503, body = ErrorBody)))]
pub async fn model(State(state): State<AppState>) -> Result<Json<ModelResponse>, ApiError> {
    let m = state.serving()?;
    let meta = m.meta();
    let training = &meta.training;
    Ok(Json(ModelResponse {
        version: meta.version.clone(),
        created_at: meta.created_at.clone(),
        serving_since: rfc3339_of(m.loaded_at()),
        path: m.path().display().to_string(),
        load_seconds: m.load_seconds(),
        params: json_value(&meta.params),
        training: serde_json::json!({
            "data": training.data,
            "split": training.split,
            "features": training.features,
            "min_rating": json_value(&training.min_rating),
            "epochs": training.epochs,
            "early_stopping": training.early_stopping,
            "train_seconds": training.train_seconds,
            "fit": training.fit,
            "figures_from": training.fit.figures_source(),
        }),
        counts: serde_json::json!({
            "users": meta.users.len(),
            "items": meta.items.len(),
            "features": meta.vocabulary.len(),
        }),
        metrics: json_value(&meta.metrics),
        cold_start: json_value(&meta.cold_start),
        index: json_value(&m.index_info()),
        index_quality: json_value(&m.index_quality()),
        registry_refused: state.live.refused(),
        live_items: m.live_counts(),
        index_quality_now: m.quality_now().map(|q| (*q).clone()),
    }))
}

/// Alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        reason: None,
    })
}

/// Ready once a model is serving and its index answers (Milvus is asked; in-process indexes
/// always answer).
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    // An external index (Milvus) is asked, off the async workers: its call has its own timeouts.
    let index = match state.live.current() {
        Some(model) => tokio::task::spawn_blocking(move || model.index_health())
            .await
            .map_err(|e| e.to_string())
            .and_then(|health| health.map_err(|e| e.to_string())),
        None => Err("no model is serving yet".into()),
    };
    match index {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ready".into(),
                reason: None,
            }),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "not_ready".into(),
                reason: Some(reason),
            }),
        )
            .into_response(),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    super::telemetry::metrics_response(&state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serving::json_prefix;

    #[test]
    fn a_recall_answer_written_by_hand_is_what_serde_json_writes() {
        let prefixes: Vec<String> = ["7", "x\"y"]
            .iter()
            .map(|id| json_prefix(id, Some("T\\")).unwrap())
            .collect();
        let items = |n: usize| -> Vec<ScoredItem<'_>> {
            (0..n)
                .map(|i| ScoredItem {
                    item_id: if i % 2 == 0 { "7" } else { "x\"y" },
                    title: Some("T\\"),
                    score: 0.5 - i as f32,
                    json_prefix: &prefixes[i % 2],
                })
                .collect()
        };
        for (n, unknown, cold) in [
            (0, vec![], true),
            (1, vec!["age:\"9\"".to_string()], false),
            (5, vec!["a".into(), "b".into()], false),
        ] {
            let answer = RecallResponse {
                model_version: "v\"1",
                items: items(n),
                unknown_features: unknown,
                cold_start: cold,
            };
            assert_eq!(
                String::from_utf8(answer.to_json().unwrap()).unwrap(),
                serde_json::to_string(&answer).unwrap()
            );
        }
    }
}
