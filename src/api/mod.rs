//! The HTTP API (axum): routes, shared state, limits and the OpenAPI document. The model it serves
//! lives in [`crate::serving::LiveModel`].

pub mod admin;
pub mod catalog;
mod dashboard;
pub mod error;
pub mod explore;
mod layers;
pub mod routes;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use tower::ServiceBuilder;
use utoipa::OpenApi;

use crate::config::ServerSettings;
use crate::layers::LayerLimits;
use crate::recall::IndexSettings;
use crate::serving::{LiveModel, ServingModel};
use crate::store::Store;
use error::ApiError;
use telemetry::Metrics;

/// What every handler shares: one `Arc`, so that the per-request clones axum makes (one per
/// extractor and middleware) cost one atomic increment instead of one per field.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;
    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The fields of [`AppState`].
pub struct SharedState {
    /// The serving model and its lifecycle (loads, registry, catalog).
    pub live: LiveModel,
    /// Server settings.
    pub settings: Arc<ServerSettings>,
    /// Caps of the layer endpoints.
    pub layer_limits: LayerLimits,
    /// Request metrics.
    pub metrics: Arc<Metrics>,
    /// The registry and catalog, when configured.
    pub store: Option<Store>,
    /// Permits for CPU-bound work: about one per core, so a burst of requests queues here instead of
    /// oversubscribing the cores with hundreds of blocking threads.
    cpu: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// State with no model serving yet; with a database, `follow_registry` makes the service serve
    /// whatever model is active there.
    pub fn new(
        settings: ServerSettings,
        index_settings: IndexSettings,
        layer_limits: LayerLimits,
        store: Option<Store>,
        follow_registry: bool,
    ) -> Self {
        AppState(Arc::new(SharedState {
            live: LiveModel::new(index_settings, store.clone(), follow_registry),
            settings: Arc::new(settings),
            layer_limits,
            metrics: Arc::new(Metrics::default()),
            store,
            cpu: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
        }))
    }

    /// The serving model, or a 503 before the first one is loaded.
    pub fn serving(&self) -> Result<Arc<ServingModel>, ApiError> {
        self.live.current().ok_or(ApiError::NotReady)
    }

    /// Runs CPU-bound work (search, scoring, layers) on the blocking pool, at most one task per
    /// core at a time, so the async workers stay free to accept and answer.
    pub async fn compute<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .cpu
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(format!("compute pool closed: {e}")))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
    }

    /// [`AppState::compute`] for work estimated at `work` multiply-adds: at most
    /// `server.inline_work_limit`, it runs right here on the async worker (tokio's guidance is that
    /// a task may run 10–100 µs between awaits, and a hop to the blocking pool and back costs two
    /// thread switches, which dominated a 60 µs graph search); above, on the blocking pool.
    pub async fn compute_sized<T: Send + 'static>(
        &self,
        work: u64,
        job: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        if work <= self.settings.inline_work_limit {
            job()
        } else {
            self.compute(job).await
        }
    }
}

/// The OpenAPI 3 document of every endpoint.
#[derive(OpenApi)]
#[openapi(
    info(title = "fmrecall", description = "Recommendation recall on a Factorization Machine."),
    paths(
        routes::recall, routes::recall_batch, routes::score, routes::similar, routes::model,
        routes::healthz, routes::readyz, routes::metrics, admin::reload, admin::list_models,
        admin::activate, admin::rollback, catalog::put_user, catalog::patch_item, catalog::post_events,
        layers::batchnorm, layers::layernorm, layers::dropout, layers::rnn, layers::lstm,
        layers::gcn, layers::gnn, layers::fm, layers::rnn_stability, layers::gnn_smoothing,
        explore::history, explore::features, explore::user, explore::items,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

async fn overloaded(err: tower::BoxError) -> impl IntoResponse {
    let (status, code) = if err.is::<tower::load_shed::error::Overloaded>() {
        (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "internal")
    };
    error::error_response(status, code, err.to_string(), None)
}

/// The dashboard at `/` and the public read routes it browses with (beside the write routes of
/// the same paths).
fn explore_routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/dashboard/{file}", get(dashboard::asset))
        .route("/v1/model/history", get(explore::history))
        .route("/v1/model/features", get(explore::features))
        .route("/v1/users/{user_id}", get(explore::user))
        .route("/v1/items", get(explore::items))
}

/// Every route, with limits (body size → 413, time → 408, concurrency → 503) and telemetry.
pub fn router(state: AppState) -> Router {
    let s = state.settings.clone();
    Router::new()
        .route("/v1/recall", post(routes::recall))
        .route("/v1/recall/batch", post(routes::recall_batch))
        .route("/v1/score", post(routes::score))
        .route("/v1/items/{item_id}/similar", get(routes::similar))
        .route("/v1/model", get(routes::model))
        .route("/v1/admin/reload", post(admin::reload))
        .route("/v1/admin/models", get(admin::list_models))
        .route("/v1/admin/models/{id}/activate", post(admin::activate))
        .route("/v1/admin/rollback", post(admin::rollback))
        .route("/v1/users/{user_id}", axum::routing::put(catalog::put_user))
        .route(
            "/v1/items/{item_id}",
            axum::routing::patch(catalog::patch_item),
        )
        .route("/v1/events", post(catalog::post_events))
        .route("/v1/layers/batchnorm", post(layers::batchnorm))
        .route("/v1/layers/layernorm", post(layers::layernorm))
        .route("/v1/layers/dropout", post(layers::dropout))
        .route("/v1/layers/rnn", post(layers::rnn))
        .route("/v1/layers/lstm", post(layers::lstm))
        .route("/v1/layers/gcn", post(layers::gcn))
        .route("/v1/layers/gnn", post(layers::gnn))
        .route("/v1/layers/fm", post(layers::fm))
        .route("/v1/layers/rnn/stability", post(layers::rnn_stability))
        .route("/v1/layers/gnn/smoothing", post(layers::gnn_smoothing))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(openapi))
        .merge(explore_routes())
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(DefaultBodyLimit::max(s.body_limit_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    telemetry::track,
                ))
                .layer(HandleErrorLayer::new(overloaded))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    s.max_concurrency,
                ))
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    Duration::from_millis(s.request_timeout_ms),
                )),
        )
        .with_state(state)
}
