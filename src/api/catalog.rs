//! Write routes on the catalog (write or admin token): users, item activity, events.

use axum::extract::{Path, State};
use axum::{middleware, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin::{require_write, store};
use super::error::{ApiError, ApiJson, ErrorBody};
use super::AppState;
use crate::store::EventRecord;

/// Longest id or feature accepted.
const MAX_ID: usize = 256;

fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
        return Err(ApiError::field(
            field,
            format!("must be 1..={MAX_ID} printable characters"),
        ));
    }
    Ok(())
}

/// The catalog's write routes, behind the write (or admin) token.
pub(super) fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_user))
        .routes(routes!(patch_item))
        .routes(routes!(post_events))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_write))
}

/// `PUT /v1/users/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"features": ["region:r3", "occupation:o3"]}))]
pub struct UserBody {
    /// The user's side features (`name:value`, at most 1000).
    #[schema(max_items = 1000)]
    pub features: Vec<String>,
}

/// The stored user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserStored {
    /// Id.
    pub user_id: String,
    /// Features stored.
    pub features: Vec<String>,
    /// Features the serving model does not know (stored, but ignored by recall until a model knows them).
    pub unknown_features: Vec<String>,
}

/// Create or replace a user; recall by this id works at once, from these features.
#[utoipa::path(put, path = "/v1/users/{user_id}", tag = "catalog", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id", min_length = 1, max_length = 256)), request_body = UserBody,
    responses((status = 200, body = UserStored), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn put_user(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    ApiJson(body): ApiJson<UserBody>,
) -> Result<Json<UserStored>, ApiError> {
    check_id("user_id", &user_id)?;
    if body.features.len() > 1000 {
        return Err(ApiError::field("features", "at most 1000 features"));
    }
    for (i, f) in body.features.iter().enumerate() {
        let ok = f
            .split_once(':')
            .is_some_and(|(n, v)| !n.is_empty() && !v.is_empty());
        if !ok || f.len() > MAX_ID {
            return Err(ApiError::field(
                format!("features[{i}]"),
                format!("{f:?} is not name:value"),
            ));
        }
    }
    store(&state)?.upsert_user(&user_id, &body.features).await?;
    let unknown_features = match state.live.current() {
        Some(m) => m.meta().vocabulary.encode(&body.features).1,
        None => Vec::new(),
    };
    Ok(Json(UserStored {
        user_id,
        features: body.features,
        unknown_features,
    }))
}

/// `PATCH /v1/items/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemPatch {
    /// false removes the item from every recall answer; true brings it back.
    pub active: bool,
}

/// The item's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemState {
    /// Id.
    pub item_id: String,
    /// Whether it can be recalled.
    pub active: bool,
}

/// Deactivate or reactivate an item; every replica applies it within one poll interval, this one at once.
#[utoipa::path(patch, path = "/v1/items/{item_id}", tag = "catalog", security(("bearer" = [])),
    params(("item_id" = String, Path, description = "Item id", min_length = 1, max_length = 256)), request_body = ItemPatch,
    responses((status = 200, body = ItemState), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn patch_item(
    State(state): State<AppState>,
    Path(item_id): Path<String>,
    ApiJson(body): ApiJson<ItemPatch>,
) -> Result<Json<ItemState>, ApiError> {
    check_id("item_id", &item_id)?;
    let db = store(&state)?;
    if !db.set_item_active(&item_id, body.active).await? {
        // An item the model knows but the catalog table has not seen yet (served from a file).
        let model = state.live.current();
        let entity = model.as_ref().and_then(|m| m.item(&item_id).cloned());
        let Some(entity) = entity else {
            return Err(ApiError::UnknownItem(format!("unknown item {item_id:?}")));
        };
        db.import_items(&[entity]).await?;
        db.set_item_active(&item_id, body.active).await?;
    }
    state.live.refresh_catalog().await;
    Ok(Json(ItemState {
        item_id,
        active: body.active,
    }))
}

/// One interaction in `POST /v1/events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// User id.
    #[schema(min_length = 1, max_length = 256)]
    pub user_id: String,
    /// Item id.
    #[schema(min_length = 1, max_length = 256)]
    pub item_id: String,
    /// Kind (default `interaction`).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    pub kind: Option<String>,
    /// Rating or weight (finite).
    #[serde(default)]
    pub weight: Option<f64>,
    /// Seconds since the epoch (default now).
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// `POST /v1/events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"events": [{"user_id": "42", "item_id": "7", "weight": 5.0}]}))]
pub struct EventsBody {
    /// 1..=max_batch × 10 events.
    #[schema(min_items = 1)]
    pub events: Vec<EventBody>,
}

/// What was recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsRecorded {
    /// Events received.
    pub received: usize,
    /// Events new to the database (exact duplicates are stored once).
    pub recorded: u64,
}

/// Record interactions for the next training run.
#[utoipa::path(post, path = "/v1/events", tag = "catalog", security(("bearer" = [])), request_body = EventsBody,
    responses((status = 200, body = EventsRecorded), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn post_events(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EventsBody>,
) -> Result<Json<EventsRecorded>, ApiError> {
    let cap = state.settings.max_batch * 10;
    if body.events.is_empty() || body.events.len() > cap {
        return Err(ApiError::field(
            "events",
            format!("give 1..={cap} events, got {}", body.events.len()),
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut records = Vec::with_capacity(body.events.len());
    for (i, e) in body.events.into_iter().enumerate() {
        check_id(&format!("events[{i}].user_id"), &e.user_id)?;
        check_id(&format!("events[{i}].item_id"), &e.item_id)?;
        let kind = e.kind.unwrap_or_else(|| "interaction".into());
        check_id(&format!("events[{i}].kind"), &kind)?;
        if e.weight.is_some_and(|w| !w.is_finite()) {
            return Err(ApiError::field(
                format!("events[{i}].weight"),
                "must be a finite number",
            ));
        }
        records.push(EventRecord {
            user_id: e.user_id,
            item_id: e.item_id,
            kind,
            weight: e.weight,
            timestamp: e.timestamp.unwrap_or(now),
        });
    }
    let recorded = store(&state)?.record_events(&records).await?;
    Ok(Json(EventsRecorded {
        received: records.len(),
        recorded,
    }))
}
