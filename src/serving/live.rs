//! The live model: the one [`ServingModel`] requests read, and its lifecycle. Swapped whole and
//! read without locks; loaded one at a time off the request path; kept in step with the registry's
//! active model (refusing one whose file is missing, altered or broken, while the current one keeps
//! serving) and with the catalog's deactivated items. No HTTP here: the API and the server call in.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};

use super::ServingModel;
use crate::recall::IndexSettings;
use crate::store::Store;

/// Why a model was not swapped in; the previous one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The model failed to load or validate (the reason names the file).
    #[error("model refused: {0}")]
    Refused(String),
    /// The loading task itself failed (a bug).
    #[error("loader failed: {0}")]
    Loader(String),
}

/// A model swapped in.
#[derive(Debug, Clone)]
pub struct Swapped {
    /// The version now serving.
    pub version: String,
    /// The version that served before, if any.
    pub previous_version: Option<String>,
    /// Seconds from file to ready.
    pub load_seconds: f64,
}

/// The registry's active model, which this service refused to load: the model it serves instead is
/// the previous one.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RefusedModel {
    /// The refused version.
    pub version: String,
    /// Why: the file is missing, changed since it was registered, or does not load.
    pub reason: String,
}

/// The serving model and everything that changes it.
pub struct LiveModel {
    /// The serving model; swapped whole, read without locks.
    model: ArcSwapOption<ServingModel>,
    /// How indexes are built on (re)load.
    index_settings: IndexSettings,
    /// The registry and catalog, when configured.
    store: Option<Store>,
    /// Whether to follow the registry's active model (false when a model file was named).
    follow_registry: bool,
    /// Deactivated item ids, as last read from the catalog; applied to every model swapped in.
    inactive_ids: ArcSwap<Vec<String>>,
    /// The registry's active model when it failed to load, not retried until the registry changes.
    refused: Mutex<Option<RefusedModel>>,
    /// One reload at a time.
    reload_lock: tokio::sync::Mutex<()>,
}

impl LiveModel {
    /// No model serving yet; with a database, `follow_registry` makes [`LiveModel::sync_with_registry`]
    /// serve whatever model is active there.
    pub fn new(index_settings: IndexSettings, store: Option<Store>, follow_registry: bool) -> Self {
        LiveModel {
            model: ArcSwapOption::empty(),
            index_settings,
            follow_registry: follow_registry && store.is_some(),
            store,
            inactive_ids: ArcSwap::from_pointee(Vec::new()),
            refused: Mutex::new(None),
            reload_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The serving model, held for as long as the caller keeps the `Arc` (a swap does not disturb
    /// requests in flight); `None` before the first load.
    pub fn current(&self) -> Option<Arc<ServingModel>> {
        self.model.load_full()
    }

    /// Whether a model is serving.
    pub fn is_serving(&self) -> bool {
        self.model.load().is_some()
    }

    /// The registry's active model if this service refused to load it (while the previous one
    /// keeps serving); `None` when it serves what the registry says, or follows no registry.
    pub fn refused(&self) -> Option<RefusedModel> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }

    fn set_refused(&self, refused: Option<RefusedModel>) {
        if let Ok(mut r) = self.refused.lock() {
            *r = refused;
        }
    }

    /// Loads, validates and indexes the model at `path` on the blocking pool, then swaps it in.
    ///
    /// **Errors** if it does not load or validate; the old model keeps serving.
    pub async fn swap(&self, path: PathBuf) -> Result<Swapped, SwapError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let settings = self.index_settings.clone();
        let loaded = tokio::task::spawn_blocking(move || ServingModel::load(&path, &settings))
            .await
            .map_err(|e| SwapError::Loader(e.to_string()))?
            .map_err(|e| SwapError::Refused(e.to_string()))?;
        loaded.set_inactive(&self.inactive_ids.load());
        let version = loaded.meta().version.clone();
        let load_seconds = loaded.load_seconds();
        let previous = self.model.swap(Some(Arc::new(loaded)));
        tracing::info!(version = %version, load_seconds, "model swapped in");
        Ok(Swapped {
            version,
            previous_version: previous.map(|m| m.meta().version.clone()),
            load_seconds,
        })
    }

    /// Reads the deactivated items from the catalog and applies them to the serving model.
    pub async fn refresh_catalog(&self) {
        let Some(store) = &self.store else { return };
        match store.inactive_items().await {
            Ok(ids) => {
                if let Some(model) = self.current() {
                    model.set_inactive(&ids);
                }
                self.inactive_ids.store(Arc::new(ids));
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the catalog failed; keeping the last known state")
            }
        }
    }

    /// One look at the registry: swaps to a newly activated model (refusing one whose file is
    /// missing or altered, while the current one keeps serving), then refreshes the catalog.
    pub async fn sync_with_registry(&self) {
        if let (Some(store), true) = (&self.store, self.follow_registry) {
            match store.active_model().await {
                Ok(Some(active)) => {
                    let serving = self.current().map(|m| m.meta().version.clone());
                    let refused = self.refused().map(|r| r.version);
                    if serving.as_deref() == Some(active.version.as_str()) {
                        self.set_refused(None);
                    } else if refused.as_deref() != Some(active.version.as_str()) {
                        let outcome = match crate::store::verify_artifact(&active) {
                            Ok(()) => self.swap(active.artifact_path.clone()).await.map(|_| ()),
                            Err(e) => Err(SwapError::Refused(e.to_string())),
                        };
                        match outcome {
                            Ok(()) => self.set_refused(None),
                            Err(e) => {
                                tracing::error!(version = %active.version, error = %e, "active model refused; the previous one keeps serving");
                                self.set_refused(Some(RefusedModel {
                                    version: active.version.clone(),
                                    reason: e.to_string(),
                                }));
                            }
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "reading the registry failed"),
            }
        }
        self.refresh_catalog().await;
    }
}
