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
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{middleware, Router};
use tower::ServiceBuilder;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

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
        } else if work == crate::recall::REMOTE_WORK {
            // Waiting on the network (Milvus), not computing: a CPU permit would cap the calls in
            // flight at the core count. `server.max_concurrency` still bounds them.
            tokio::task::spawn_blocking(job)
                .await
                .map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
        } else {
            self.compute(job).await
        }
    }
}

/// The OpenAPI document's title, description and security scheme; its paths and schemas come from
/// the routes each module registers ([`api_routes`]).
#[derive(OpenApi)]
#[openapi(
    info(title = "fmrecall", description = "Recommendation recall on a Factorization Machine."),
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

/// Every documented route, each registered once beside its handler, with the write and admin
/// routes behind their tokens: the router and the OpenAPI document both come from here.
pub fn api_routes(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::routes())
        .merge(explore::routes())
        .merge(layers::routes())
        .merge(catalog::routes(state))
        .merge(admin::routes(state))
}

/// The part of the OpenAPI document that describes the ten `/v1/layers/...` routes, exactly as the
/// service serves it, for tools and tests without a running service (the write and admin routes
/// need the service's tokens to be built).
pub fn layers_openapi() -> utoipa::openapi::OpenApi {
    OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .merge(layers::routes())
        .split_for_parts()
        .1
}

async fn overloaded(err: tower::BoxError) -> impl IntoResponse {
    let (status, code) = if err.is::<tower::load_shed::error::Overloaded>() {
        (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "internal")
    };
    error::error_response(status, code, err.to_string(), None)
}

/// Every route, with limits (body size → 413, time → 408, concurrency → 503) and telemetry.
pub fn router(state: AppState) -> Router {
    let s = state.settings.clone();
    let (routes, openapi) = api_routes(&state).split_for_parts();
    // Written once: the document changes only with the binary.
    let openapi = axum::body::Bytes::from(
        serde_json::to_vec(&openapi).expect("an OpenAPI document has string keys only"),
    );
    routes
        .route(
            "/openapi.json",
            get(move || {
                let body = openapi.clone();
                async move { ([(CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .route("/", get(dashboard::index))
        .route("/dashboard/{file}", get(dashboard::asset))
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
