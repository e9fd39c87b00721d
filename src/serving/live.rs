//! The live model: the one [`ServingModel`] requests read, and its lifecycle. Swapped whole and
//! read without locks; loaded one at a time off the request path; kept in step with the registry's
//! active model (refusing one whose file is missing, altered or broken, while the current one keeps
//! serving) and with the catalog's deactivated items. No HTTP here: the API and the server call in.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};

use super::{ItemWrite, ItemWritten, ServingModel};
use crate::recall::IndexSettings;
use crate::store::{ItemRecord, Store};

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
    /// One reload at a time (and no catalog replay while one runs).
    reload_lock: tokio::sync::Mutex<()>,
    /// The last item change (the catalog's change log) applied to the serving model.
    items_seen_up_to: AtomicI64,
    /// The last row of the catalog's `events` table applied to the serving model.
    events_seen_up_to: AtomicI64,
    /// When the index was last re-measured after live writes.
    last_measure: Mutex<Option<std::time::Instant>>,
    /// Held across "write the catalog, then the model" and across "read the catalog's changes,
    /// then apply them": a replay can then never apply a row read before a write of this process
    /// after that write (which would bring a deleted item back until the next poll).
    catalog_lock: tokio::sync::Mutex<()>,
}

/// Why an item write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No database: this replica is read-only.
    #[error("no database: this replica is read-only")]
    NoDatabase,
    /// The catalog refused or failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The serving model failed to take the write (it is stored: a replay applies it).
    #[error(transparent)]
    Serve(#[from] super::ServeError),
    /// The model-side task failed (a bug).
    #[error("item writer failed: {0}")]
    Task(String),
}

/// Live writes are followed by a re-measure of the index's recall at most this often (a
/// brute-force pass per sample query: seconds at a million items).
const MEASURE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Changes re-read behind the last one applied on every poll: PostgreSQL hands out sequence
/// numbers at insert and transactions commit in any order, so a change numbered below the last one
/// seen can still appear; replaying an unchanged row does nothing.
const CHANGE_LOOKBACK: i64 = 256;

/// Event rows re-read behind the last one applied on every poll, for the same reason. Wider than
/// [`CHANGE_LOOKBACK`]: one `POST /v1/events` takes up to ten times `max_batch` rows (1,000 by
/// default) in one transaction, and a transaction that commits after others that started later
/// must still fall inside the window. Re-reading 4,096 short rows is about a millisecond.
const EVENT_LOOKBACK: i64 = 4096;

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
            items_seen_up_to: AtomicI64::new(0),
            events_seen_up_to: AtomicI64::new(0),
            last_measure: Mutex::new(None),
            catalog_lock: tokio::sync::Mutex::new(()),
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
        // The catalog's items written live, replayed onto the new model before it serves; the
        // change counter is read first, so a write racing this read is replayed again later.
        let catalog = match &self.store {
            Some(store) => {
                let read = async {
                    let seen_up_to = store.last_item_change().await?;
                    Ok::<_, crate::store::StoreError>((seen_up_to, store.catalog_items().await?))
                };
                Some(
                    read.await.map_err(|e| {
                        SwapError::Refused(format!("reading the catalog's items: {e}"))
                    })?,
                )
            }
            None => None,
        };
        let (seen_up_to, rows) = catalog.unwrap_or_default();
        // Every stored event, so that recall leaves out what users did since the data the model
        // was trained on was read (pairs it trained on add nothing); later rows come with polls.
        let (events, events_up_to) = match &self.store {
            Some(store) => store
                .events_since(0)
                .await
                .map_err(|e| SwapError::Refused(format!("reading the catalog's events: {e}")))?,
            None => (Vec::new(), 0),
        };
        let loaded = tokio::task::spawn_blocking(move || {
            let model = ServingModel::load(&path, &settings)?;
            model.add_events(&events);
            model.apply_catalog(&rows)?;
            if model.live_counts().slots_appended > 0 {
                model.measure_quality_now()?;
            }
            Ok::<_, super::ServeError>(model)
        })
        .await
        .map_err(|e| SwapError::Loader(e.to_string()))?
        .map_err(|e| SwapError::Refused(e.to_string()))?;
        loaded.set_inactive(&self.inactive_ids.load());
        self.items_seen_up_to.store(seen_up_to, Ordering::Release);
        self.events_seen_up_to
            .fetch_max(events_up_to, Ordering::AcqRel);
        let version = loaded.meta().version.clone();
        let load_seconds = loaded.load_seconds();
        let loaded = Arc::new(loaded);
        let previous = self.model.swap(Some(loaded.clone()));
        tracing::info!(version = %version, load_seconds, "model swapped in");
        // Only now does what other readers follow (Milvus's alias) name the new model's index:
        // the service itself searches each model's own collection, so this order costs nothing.
        match tokio::task::spawn_blocking(move || loaded.activate_index()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(version = %version, error = %e, "the index's alias was not switched")
            }
            Err(e) => {
                tracing::warn!(version = %version, error = %e, "the index's alias switch did not finish")
            }
        }
        if let Some(previous) = &previous {
            previous.retire_index();
        }
        // What was written while it loaded. Events from where this model's read ended, not from
        // the shared counter: a poll during the load may have moved that on, applying rows to the
        // old model only.
        self.replay_item_changes().await;
        self.replay_events_from(events_up_to).await;
        Ok(Swapped {
            version,
            previous_version: previous.map(|m| m.meta().version.clone()),
            load_seconds,
        })
    }

    /// Reads the catalog's item changes (written, deleted) and deactivated items and applies them
    /// to the serving model: how replicas converge on what another one took.
    pub async fn refresh_catalog(&self) {
        self.replay_item_changes().await;
        self.replay_events().await;
        self.remeasure_if_written().await;
        let _catalog = self.catalog_lock.lock().await;
        self.refresh_inactive().await;
    }

    /// Reads the deactivated items and applies them to the serving model (the caller holds the
    /// catalog lock).
    async fn refresh_inactive(&self) {
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

    /// Applies the catalog's item changes since the last ones applied (and a window behind them,
    /// see [`CHANGE_LOOKBACK`]) to the serving model.
    async fn replay_item_changes(&self) {
        let Some(store) = &self.store else { return };
        let _catalog = self.catalog_lock.lock().await;
        let since = self.items_seen_up_to.load(Ordering::Acquire) - CHANGE_LOOKBACK;
        let (rows, last) = match store.item_changes_since(since.max(0)).await {
            Ok(changes) => changes,
            Err(e) => return tracing::warn!(error = %e, "reading item changes failed"),
        };
        let Some(model) = self.current().filter(|_| !rows.is_empty()) else {
            // No model yet: the first one replays the whole catalog when it loads.
            return self.items_seen_up_to.store(last, Ordering::Release);
        };
        match tokio::task::spawn_blocking(move || model.apply_catalog(&rows)).await {
            Ok(Ok(_)) => self.items_seen_up_to.store(last, Ordering::Release),
            Ok(Err(e)) => tracing::error!(error = %e, "replaying item changes failed"),
            Err(e) => tracing::error!(error = %e, "replaying item changes panicked"),
        }
    }

    /// Applies the events stored since the last ones applied (and a window behind them, see
    /// [`EVENT_LOOKBACK`]) to the serving model.
    async fn replay_events(&self) {
        self.replay_events_from(self.events_seen_up_to.load(Ordering::Acquire))
            .await;
    }

    /// Applies the events stored after row `up_to` (and a window behind it) to the serving model.
    async fn replay_events_from(&self, up_to: i64) {
        let Some(store) = &self.store else { return };
        let since = up_to - EVENT_LOOKBACK;
        let (events, last) = match store.events_since(since.max(0)).await {
            Ok(read) => read,
            Err(e) => return tracing::warn!(error = %e, "reading events failed"),
        };
        // Before the first model, nothing to apply: it reads every event when it loads.
        if let Some(model) = self.current() {
            model.add_events(&events);
        }
        self.events_seen_up_to.fetch_max(last, Ordering::AcqRel);
    }

    /// Stores events in the catalog (for the next training run), then adds them to the serving
    /// model: recall leaves their items out from the moment this returns. Returns how many were
    /// new to the database. **Errors** without a database or when the catalog refuses.
    pub async fn record_events(
        &self,
        records: &[crate::store::EventRecord],
    ) -> Result<u64, WriteError> {
        let store = self.store.as_ref().ok_or(WriteError::NoDatabase)?;
        let recorded = store.record_events(records).await?;
        if let Some(model) = self.current() {
            let pairs: Vec<crate::store::EventPair> = records
                .iter()
                .map(|r| crate::store::EventPair {
                    user_id: r.user_id.clone(),
                    item_id: r.item_id.clone(),
                })
                .collect();
            model.add_events(&pairs);
        }
        Ok(recorded)
    }

    /// Stores items in the catalog, then writes them into the serving model (recallable when
    /// this returns; deactivated flags applied first, so an item written inactive is never in an
    /// answer). `None` when no model serves yet (the first one replays them). **Errors** without
    /// a database ([`WriteError::Store`]) or when the catalog refuses.
    pub async fn write_items(
        &self,
        records: Vec<ItemRecord>,
    ) -> Result<Option<(String, Vec<ItemWritten>)>, WriteError> {
        let store = self.store.as_ref().ok_or(WriteError::NoDatabase)?;
        let _catalog = self.catalog_lock.lock().await;
        store.upsert_items(&records).await?;
        if records.iter().any(|r| r.active.is_some()) {
            self.refresh_inactive().await;
        }
        let Some(model) = self.current() else {
            return Ok(None);
        };
        let writes: Vec<ItemWrite> = records
            .into_iter()
            .map(|r| ItemWrite {
                id: r.id,
                title: r.title,
                features: r.features,
            })
            .collect();
        let version = model.meta().version.clone();
        let written = tokio::task::spawn_blocking(move || model.upsert_items(&writes))
            .await
            .map_err(|e| WriteError::Task(e.to_string()))??;
        Ok(Some((version, written)))
    }

    /// Deletes items from the catalog and from the serving model; per id, whether either had it.
    /// A trained item the catalog has not seen (served from a file) is recorded as deleted, so
    /// the other replicas and the next model learn of it.
    pub async fn delete_items(&self, ids: &[String]) -> Result<Vec<bool>, WriteError> {
        let store = self.store.as_ref().ok_or(WriteError::NoDatabase)?;
        let _catalog = self.catalog_lock.lock().await;
        let in_catalog = store.delete_items(ids).await?;
        let model = self.current();
        let served = model
            .as_ref()
            .map_or_else(|| vec![false; ids.len()], |m| m.delete_items(ids));
        let mut found = Vec::with_capacity(ids.len());
        for ((id, stored), served) in ids.iter().zip(in_catalog).zip(served) {
            if served && !stored {
                let entity = model
                    .as_ref()
                    .and_then(|m| m.meta().items.iter().find(|e| &e.id == id).cloned());
                if let Some(entity) = entity {
                    store.import_items(&[entity]).await?;
                    store.delete_items(std::slice::from_ref(id)).await?;
                }
            }
            found.push(stored || served);
        }
        Ok(found)
    }

    /// Re-measures the serving index's recall when slots were appended since the last measure,
    /// at most every [`MEASURE_EVERY`], on the blocking pool.
    async fn remeasure_if_written(&self) {
        let Some(model) = self.current() else { return };
        let measured_items = model
            .quality_now()
            .map_or(model.meta().items.len(), |q| q.items);
        if model.item_count() == measured_items {
            return;
        }
        {
            let Ok(mut last) = self.last_measure.lock() else {
                return;
            };
            if last.is_some_and(|t| t.elapsed() < MEASURE_EVERY) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        match tokio::task::spawn_blocking(move || model.measure_quality_now()).await {
            Ok(Ok(q)) => tracing::info!(
                recall_at_10 = q.recall_at_10,
                recall_at_100 = q.recall_at_100,
                items = q.items,
                "index re-measured after live writes"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "re-measuring the index failed"),
            Err(e) => tracing::warn!(error = %e, "re-measuring the index panicked"),
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
