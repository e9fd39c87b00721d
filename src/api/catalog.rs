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
use crate::serving::ItemWritten;
use crate::store::{EventRecord, ItemRecord};

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

/// Most features one user or item may carry.
const MAX_FEATURES: usize = 1000;
/// Longest title accepted, in bytes.
const MAX_TITLE: usize = 1024;

/// Checks a feature list (`field` names it in errors): at most [`MAX_FEATURES`], each
/// `name:value` with both parts non-empty, at most [`MAX_ID`] bytes, no control characters.
fn check_features(field: &str, features: &[String]) -> Result<(), ApiError> {
    if features.len() > MAX_FEATURES {
        return Err(ApiError::field(
            field,
            format!("at most {MAX_FEATURES} features"),
        ));
    }
    for (i, f) in features.iter().enumerate() {
        let ok = f
            .split_once(':')
            .is_some_and(|(n, v)| !n.is_empty() && !v.is_empty());
        if !ok || f.len() > MAX_ID || f.chars().any(char::is_control) {
            return Err(ApiError::field(
                format!("{field}[{i}]"),
                format!("{f:?} is not name:value (at most {MAX_ID} printable characters)"),
            ));
        }
    }
    Ok(())
}

/// The catalog's write routes, behind the write (or admin) token.
pub(super) fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_user))
        .routes(routes!(put_item, patch_item, delete_item))
        .routes(routes!(post_items))
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
    check_features("features", &body.features)?;
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

/// `PUT /v1/items/{id}`: an item described by its features.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"features": ["genre:Comedy", "decade:1990s"], "title": "A new film"}))]
pub struct ItemBody {
    /// Side features (`name:value`, at most 1000); a trained item keeps its id feature.
    #[schema(max_items = 1000)]
    pub features: Vec<String>,
    /// Title (at most 1024 bytes).
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub title: Option<String>,
    /// Whether recall may return it (default: unchanged, true for a new item).
    #[serde(default)]
    pub active: Option<bool>,
}

/// One item of `POST /v1/items`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkItem {
    /// Id.
    #[schema(min_length = 1, max_length = 256)]
    pub item_id: String,
    /// As in `PUT /v1/items/{id}`.
    pub features: Vec<String>,
    /// As in `PUT /v1/items/{id}`.
    #[serde(default)]
    pub title: Option<String>,
    /// As in `PUT /v1/items/{id}`.
    #[serde(default)]
    pub active: Option<bool>,
}

/// `POST /v1/items`: many items at once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"items": [{"item_id": "new-1", "features": ["genre:Comedy"], "title": "A new film"}]}))]
pub struct BulkItems {
    /// 1..=max_batch items; an id given twice takes its last version.
    #[schema(min_items = 1)]
    pub items: Vec<BulkItem>,
}

/// What the serving model made of each item written.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemsStored {
    /// Per item, in the order given.
    pub items: Vec<ItemWritten>,
    /// The model version that serves them (none before a model is loaded: the items are stored
    /// and served by the first model that loads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
}

/// Checks one item of a write; `at` prefixes the field names (`items[3].`).
fn check_item(
    at: &str,
    id: &str,
    features: &[String],
    title: Option<&str>,
) -> Result<(), ApiError> {
    check_id(&format!("{at}item_id"), id)?;
    check_features(&format!("{at}features"), features)?;
    if title.is_some_and(|t| t.len() > MAX_TITLE || t.chars().any(char::is_control)) {
        return Err(ApiError::field(
            format!("{at}title"),
            format!("at most {MAX_TITLE} bytes, no control characters"),
        ));
    }
    Ok(())
}

/// Stores items and writes them into the serving model (see [`crate::serving::LiveModel::write_items`]).
async fn write_items(state: &AppState, records: Vec<ItemRecord>) -> Result<ItemsStored, ApiError> {
    Ok(match state.live.write_items(records).await? {
        Some((version, items)) => ItemsStored {
            items,
            model_version: Some(version),
        },
        None => ItemsStored {
            items: Vec::new(),
            model_version: None,
        },
    })
}

/// Create or replace an item from its features: recallable at once on this replica, within one
/// poll interval on the others.
#[utoipa::path(put, path = "/v1/items/{item_id}", tag = "catalog", security(("bearer" = [])),
    params(("item_id" = String, Path, description = "Item id", min_length = 1, max_length = 256)), request_body = ItemBody,
    responses((status = 200, body = ItemWritten), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn put_item(
    State(state): State<AppState>,
    Path(item_id): Path<String>,
    ApiJson(body): ApiJson<ItemBody>,
) -> Result<Json<ItemWritten>, ApiError> {
    check_item("", &item_id, &body.features, body.title.as_deref())?;
    let record = ItemRecord {
        id: item_id.clone(),
        title: body.title,
        features: body.features.clone(),
        active: body.active,
    };
    let stored = write_items(&state, vec![record]).await?;
    // Before a model loads, the item is stored and nothing is known about its features.
    Ok(Json(stored.items.into_iter().next().unwrap_or(
        ItemWritten {
            item_id,
            recallable: false,
            trained: false,
            unknown_features: body.features,
        },
    )))
}

/// Create or replace many items in one request (bounded like the batch route).
#[utoipa::path(post, path = "/v1/items", tag = "catalog", security(("bearer" = [])), request_body = BulkItems,
    responses((status = 200, body = ItemsStored), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn post_items(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<BulkItems>,
) -> Result<Json<ItemsStored>, ApiError> {
    let cap = state.settings.max_batch;
    if body.items.is_empty() || body.items.len() > cap {
        return Err(ApiError::field(
            "items",
            format!("give 1..={cap} items, got {}", body.items.len()),
        ));
    }
    let mut records = Vec::with_capacity(body.items.len());
    for (i, item) in body.items.into_iter().enumerate() {
        check_item(
            &format!("items[{i}]."),
            &item.item_id,
            &item.features,
            item.title.as_deref(),
        )?;
        records.push(ItemRecord {
            id: item.item_id,
            title: item.title,
            features: item.features,
            active: item.active,
        });
    }
    Ok(Json(write_items(&state, records).await?))
}

/// A deleted item.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemDeleted {
    /// Id.
    pub item_id: String,
    /// Always true: the item is in no answer from now on.
    pub deleted: bool,
}

/// Delete an item: it leaves every answer at once on this replica, within one poll interval on the
/// others. The row stays in the catalog, marked deleted, and the next training run leaves it out.
#[utoipa::path(delete, path = "/v1/items/{item_id}", tag = "catalog", security(("bearer" = [])),
    params(("item_id" = String, Path, description = "Item id", min_length = 1, max_length = 256)),
    responses((status = 200, body = ItemDeleted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn delete_item(
    State(state): State<AppState>,
    Path(item_id): Path<String>,
) -> Result<Json<ItemDeleted>, ApiError> {
    check_id("item_id", &item_id)?;
    if !state
        .live
        .delete_items(std::slice::from_ref(&item_id))
        .await?[0]
    {
        return Err(ApiError::UnknownItem(format!("unknown item {item_id:?}")));
    }
    Ok(Json(ItemDeleted {
        item_id,
        deleted: true,
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

/// Record interactions: stored for the next training run, and at once left out of the user's
/// recall (like the items the model trained on, under `exclude_seen`) on this replica, within one
/// poll interval on the others. A user id no model or catalog knows is served from these events.
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
    let recorded = state.live.record_events(&records).await?;
    Ok(Json(EventsRecorded {
        received: records.len(),
        recorded,
    }))
}
