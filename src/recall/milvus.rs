//! Milvus as the recall index (`index.kind = "milvus"`): the item vectors live in a Milvus
//! collection named by the model version; Milvus proposes candidates, the service re-scores them
//! exactly and keeps the best k.
//!
//! - **Collections.** Loading a model writes its trained item vectors to `{prefix}_{version}_{metric}`
//!   (or reuses that collection when it is complete: a restart, another replica, `fmrecall
//!   publish`), then a sentinel row (slot −1) that marks it complete; then flushes it (sealed
//!   segments get the configured index: rows left in growing segments are searched by Milvus's
//!   interim IVF index, which missed 10–20% of neighbours at 1M items), waits for the index and
//!   loads it. The load path checks recall against exact search before the model is swapped in;
//!   once swapped in, the alias `index.milvus.alias` is pointed at the collection (for other
//!   readers of "the serving collection"). The service itself searches its model's collection by
//!   name, so a request that started on the old model never reads the new model's slots. A
//!   swapped-out model's collection is dropped after `drop_grace_seconds` unless a model of this
//!   process uses it again or the alias names it.
//! - **Norm reduction.** Maximum inner product is not a metric, and graph search under it misses
//!   items when norms vary (trained FM items carry popularity in their norms). With `metric =
//!   "l2"` the items are stored as [x; √(M² − ‖x‖²)] and queries as [q; 0], M the largest item
//!   norm: ‖q − x̃‖² = ‖q‖² + M² − 2⟨q, x⟩, so the L2 order is the inner-product order
//!   (Bachrach et al. 2014, "Speeding up the Xbox recommender system using a Euclidean
//!   transformation for inner-product spaces", §3).
//! - **Filters** reach Milvus as boolean expressions over the integer slot (`filter_expression`):
//!   item ids never enter an expression, so no id can inject one.

mod client;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod proto;

pub use client::{Consistency, IndexSpec, IndexStatus, MilvusClient, MilvusError, QueryRow};
pub use client::{SearchRow, SegmentInfo, MAX_BACKOFF};

/// The most retries `index.milvus.retries` may ask for: with waits capped at [`MAX_BACKOFF`], a
/// call against a Milvus that is down then gives up within about 20 s plus its timeouts.
pub const MAX_RETRIES: u32 = 10;

use super::{check_appended, check_finite_rows, check_query, Filter, Hit, IndexError, IndexInfo};
use super::{RecallIndex, TopK};
use crate::vectors::ItemVectors;

/// The most results one Milvus search returns (its `topK` limit).
pub const MAX_CANDIDATES: usize = 16_384;

/// The slot of the row that marks a collection complete (written last).
const SENTINEL_SLOT: i64 = -1;

/// Rows of one query of a collection's own rows (Milvus's query window).
const QUERY_WINDOW: usize = 16_384;

/// How item vectors are compared in Milvus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MilvusMetric {
    /// L2 over the norm-reduced vectors (the order of inner products, see the module doc).
    L2,
    /// Raw inner products (Milvus's IP); measured to miss items on trained models (docs/milvus.md).
    Ip,
}

impl MilvusMetric {
    fn milvus_name(self) -> &'static str {
        match self {
            MilvusMetric::L2 => "L2",
            MilvusMetric::Ip => "IP",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            MilvusMetric::L2 => "l2",
            MilvusMetric::Ip => "ip",
        }
    }
}

/// The vector index Milvus builds on sealed segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MilvusIndexType {
    /// A graph (`hnsw_m`, `hnsw_ef_construction`; searched at `search_ef`).
    Hnsw,
    /// Inverted lists (`ivf_nlist`; searched with `ivf_nprobe` lists).
    IvfFlat,
    /// Brute force.
    Flat,
}

/// `[index.milvus]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MilvusSettings {
    /// `host:port` of Milvus's proxy (its gRPC port), or `http://host:port`.
    pub address: String,
    /// Collections are named `{prefix}_{version}_{metric}`.
    pub collection_prefix: String,
    /// The alias pointed at the serving model's collection once it is swapped in.
    pub alias: String,
    /// The index built on the collection's sealed segments.
    pub index_type: MilvusIndexType,
    /// HNSW: links per node (Milvus's `M`).
    pub hnsw_m: usize,
    /// HNSW: the build's candidate list (`efConstruction`).
    pub hnsw_ef_construction: usize,
    /// HNSW: the search's candidate list (`ef`), raised to the candidates asked and to the
    /// request's `ef`.
    pub search_ef: usize,
    /// IVF_FLAT: lists.
    pub ivf_nlist: usize,
    /// IVF_FLAT: lists searched when `target_recall` is 0.
    pub ivf_nprobe: usize,
    /// IVF_FLAT: at load, search the fewest lists of [`NPROBE_LADDER`] whose recall@10 and
    /// recall@100 on the load-time check queries reach this (0: `ivf_nprobe` as given).
    pub target_recall: f64,
    /// The consistency level of recall searches (`strong`, `session`, `bounded`, `eventually`);
    /// the collection is created with it. Loading and the load-time check read `strong`.
    pub consistency_level: Consistency,
    /// `l2` (norm-reduced) or `ip`.
    pub metric: MilvusMetric,
    /// Candidates asked of Milvus per recall: `k × oversample` (at least `k + min_extra`, at least
    /// the request's `ef`, at most [`MAX_CANDIDATES`]), re-scored exactly by the service.
    pub oversample: usize,
    /// See `oversample`.
    pub min_extra: usize,
    /// Connect timeout of one attempt.
    pub connect_timeout_ms: u64,
    /// Whole-call timeout of one attempt.
    pub timeout_ms: u64,
    /// Retries after a failed attempt (connection error, timeout, 5xx), with doubling backoff
    /// (at most [`MAX_RETRIES`]).
    pub retries: u32,
    /// The first backoff (at most 2000: every wait is capped at [`MAX_BACKOFF`]).
    pub backoff_ms: u64,
    /// Rows per insert call when writing a collection.
    pub insert_batch: usize,
    /// A filter whose slot list (or its complement) is longer than this is not sent to Milvus;
    /// the service scans the allowed items exactly instead.
    pub max_expression_slots: usize,
    /// How long a load waits for a written collection to be searchable and checked.
    pub ready_timeout_seconds: u64,
    /// Seconds after a model is swapped out before its collection is dropped (replicas following
    /// the registry swap within `database.poll_seconds`). 0 keeps old collections.
    pub drop_grace_seconds: u64,
}

impl Default for MilvusSettings {
    fn default() -> Self {
        MilvusSettings {
            address: "127.0.0.1:19530".into(),
            collection_prefix: "fmrecall".into(),
            alias: "fmrecall_serving".into(),
            // Measured on the 1M-item model (docs/milvus.md): IVF_FLAT reached recall 0.99/0.997
            // served where HNSW (M 16, efConstruction 200) stayed at 0.75 whatever its ef.
            index_type: MilvusIndexType::IvfFlat,
            hnsw_m: 16,
            hnsw_ef_construction: 200,
            search_ef: 128,
            ivf_nlist: 1024,
            // Used as given only with `target_recall` 0: 64 (1/16 of the lists) served recall@10
            // 0.973 on the 1M model, 128 0.994.
            ivf_nprobe: 128,
            // Above the 0.98 asked of served recall: a breadth just reaching it on the check's
            // users may fall short on others (as our graph's filtered breadth did).
            target_recall: 0.99,
            consistency_level: Consistency::Bounded,
            metric: MilvusMetric::L2,
            oversample: 4,
            min_extra: 90,
            connect_timeout_ms: 500,
            timeout_ms: 1000,
            retries: 2,
            backoff_ms: 50,
            insert_batch: 2000,
            max_expression_slots: 10_000,
            ready_timeout_seconds: 120,
            drop_grace_seconds: 60,
        }
    }
}

impl From<MilvusError> for IndexError {
    fn from(e: MilvusError) -> Self {
        IndexError::Unavailable(e.to_string())
    }
}

/// The collection holding `version`'s vectors: `{prefix}_{version}_{metric}`, every character
/// outside `[A-Za-z0-9_]` replaced by `_` (Milvus's rule for names), starting with a letter.
pub fn collection_name(prefix: &str, version: &str, metric: MilvusMetric) -> String {
    let raw = format!("{prefix}_{version}_{}", metric.suffix());
    let mut name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert_str(0, "c_");
    }
    name.truncate(255);
    name
}

/// Training points per IVF list below which k-means has too little to place a centroid: faiss's
/// own minimum (`Clustering::train` warns under 39 points per centroid).
const MIN_POINTS_PER_LIST: usize = 39;

/// The IVF lists of a collection of `rows`: `ivf_nlist`, fewer when the rows cannot train that
/// many (1,682 MovieLens items get 43 lists, each searched; 1M items get `ivf_nlist`).
pub fn ivf_lists(settings: &MilvusSettings, rows: usize) -> usize {
    settings.ivf_nlist.min(rows / MIN_POINTS_PER_LIST).max(1)
}

/// The index `settings` ask Milvus to build over a collection of `rows`.
pub fn index_spec(settings: &MilvusSettings, rows: usize) -> IndexSpec {
    let (index_type, params) = match settings.index_type {
        MilvusIndexType::Hnsw => (
            "HNSW",
            serde_json::json!({"M": settings.hnsw_m, "efConstruction": settings.hnsw_ef_construction}),
        ),
        MilvusIndexType::IvfFlat => (
            "IVF_FLAT",
            serde_json::json!({"nlist": ivf_lists(settings, rows)}),
        ),
        MilvusIndexType::Flat => ("FLAT", serde_json::json!({})),
    };
    IndexSpec {
        index_type,
        metric: settings.metric.milvus_name(),
        params,
    }
}

/// The IVF lists searched when nothing was tuned: `ivf_nprobe`, at most the lists there are.
pub fn default_nprobe(settings: &MilvusSettings, rows: usize) -> usize {
    settings.ivf_nprobe.min(ivf_lists(settings, rows))
}

/// The `nprobe` values tuning chooses from (those up to the collection's lists, then all lists).
pub const NPROBE_LADDER: [usize; 16] = [
    1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768,
];

/// [`NPROBE_LADDER`] below `lists`, then `lists` itself: cheapest first, the last one exhaustive.
pub fn nprobe_ladder(lists: usize) -> Vec<usize> {
    let mut ladder: Vec<usize> = NPROBE_LADDER.into_iter().filter(|&n| n < lists).collect();
    ladder.push(lists.max(1));
    ladder
}

/// The search parameters of a search for `limit` rows probing `nprobe` IVF lists: HNSW's `ef` is
/// at least `limit` (Milvus refuses less), `search_ef` and the request's `ef`.
pub fn search_params(
    settings: &MilvusSettings,
    nprobe: usize,
    limit: usize,
    ef: Option<usize>,
) -> serde_json::Value {
    match settings.index_type {
        MilvusIndexType::Hnsw => serde_json::json!({
            "ef": settings.search_ef.max(limit).max(ef.unwrap_or(0)).min(MAX_CANDIDATES)
        }),
        MilvusIndexType::IvfFlat => serde_json::json!({ "nprobe": nprobe }),
        MilvusIndexType::Flat => serde_json::json!({}),
    }
}

/// M of the norm reduction: the largest norm among `vectors`' rows.
pub fn reduction_radius(vectors: &ItemVectors) -> f32 {
    (0..vectors.len())
        .map(|i| crate::kernels::dot(vectors.row(i), vectors.row(i)))
        .fold(0.0f32, f32::max)
        .sqrt()
}

/// An item vector as stored under the norm reduction: [x; √(M² − ‖x‖²)]. An item longer than M
/// (written live after the collection was made) gets 0: it is then ranked as if its inner
/// products were lowered by (‖x‖² − M²)/2, and the exact re-scoring still scores it right.
pub fn reduced_item(row: &[f32], radius: f32) -> Vec<f32> {
    let norm2 = crate::kernels::dot(row, row);
    let mut out = Vec::with_capacity(row.len() + 1);
    out.extend_from_slice(row);
    out.push((radius * radius - norm2).max(0.0).sqrt());
    out
}

/// A query as searched under the norm reduction: [q; 0].
pub fn reduced_query(query: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(query.len() + 1);
    out.extend_from_slice(query);
    out.push(0.0);
    out
}

/// `filter` as a Milvus boolean expression over the integer `slot` of `n` item slots; `None` when
/// its list (and, for `Only`, the complement) is longer than `max_slots`: the caller scans
/// exactly. Every expression leaves out the sentinel row. Only integers are written: the ids of a
/// request are turned into slots before this, so nothing a client sends reaches the expression.
pub fn filter_expression(filter: Filter<'_>, n: usize, max_slots: usize) -> Option<String> {
    fn list(slots: impl Iterator<Item = u32>) -> String {
        let mut out = String::from("[");
        for (i, s) in slots.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&s.to_string());
        }
        out.push(']');
        out
    }
    fn in_range(list: &[u32], n: usize) -> impl Iterator<Item = u32> + '_ {
        list.iter().copied().filter(move |&s| (s as usize) < n)
    }
    match filter {
        Filter::All => Some("slot >= 0".into()),
        Filter::Exclude([]) => Some("slot >= 0".into()),
        Filter::Exclude(excluded) if excluded.len() <= max_slots => Some(format!(
            "slot >= 0 and slot not in {}",
            list(in_range(excluded, n))
        )),
        Filter::Only(allowed) => {
            // Lists are sorted and free of duplicates by contract; a list that is not is sorted
            // here rather than trusted, and duplicates are skipped, so that the complement is
            // sized by the distinct slots below n (slots written live since are past n).
            let sorted: std::borrow::Cow<'_, [u32]> = if allowed.windows(2).all(|w| w[0] <= w[1]) {
                allowed.into()
            } else {
                let mut copy = allowed.to_vec();
                copy.sort_unstable();
                copy.into()
            };
            let below_n = &sorted[..sorted.partition_point(|&s| (s as usize) < n)];
            let distinct = || {
                let mut previous = None;
                below_n
                    .iter()
                    .copied()
                    .filter(move |&s| previous.replace(s) != Some(s))
            };
            let held = distinct().count();
            if held <= max_slots {
                return Some(format!("slot in {}", list(distinct())));
            }
            // held ≤ n: distinct slots below n.
            if n - held > max_slots {
                return None;
            }
            // The complement: every slot below n that `allowed` does not hold.
            let mut rest = Vec::with_capacity(n - held);
            let mut next = distinct().peekable();
            for s in 0..n as u32 {
                if next.peek() == Some(&s) {
                    next.next();
                } else {
                    rest.push(s);
                }
            }
            Some(if rest.is_empty() {
                "slot >= 0".into()
            } else {
                format!("slot >= 0 and slot not in {}", list(rest.into_iter()))
            })
        }
        Filter::Bits(_) => {
            let allowed: Vec<u32> = filter.rows(n).collect();
            filter_expression(Filter::Only(&allowed), n, max_slots)
        }
        _ => None,
    }
}

/// Whether a search under `filter` over `n` slots can find nothing: an allow list (or bitmap)
/// naming no slot below `n`. Such a search answers empty without asking Milvus (`slot in []`).
pub fn allows_nothing(filter: Filter<'_>, n: usize) -> bool {
    n == 0
        || match filter {
            Filter::Only(allowed) => allowed.iter().all(|&s| s as usize >= n),
            Filter::Bits(_) => filter.rows(n).next().is_none(),
            Filter::All | Filter::Exclude(_) => false,
        }
}

/// One collection's users among this process's models, and whether a retired model's thread is
/// dropping it.
#[derive(Debug, Default)]
struct CollectionState {
    users: usize,
    dropping: bool,
}

/// Collections in use by models of this process, counted from the start of each `open` until
/// its model is retired (or dropped unserved: a load that failed or was refused). A swapped-out
/// model's collection is dropped after the grace period only if no model took it again
/// meanwhile (a rollback), and an `open` waits while a drop is under way rather than load a
/// collection about to vanish.
#[derive(Debug, Default)]
struct Uses {
    state: Mutex<HashMap<String, CollectionState>>,
    changed: std::sync::Condvar,
}

impl Uses {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CollectionState>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more user of `collection`, once no drop of it is under way.
    fn acquire(&self, collection: &str) {
        let mut state = self.lock();
        while state.get(collection).is_some_and(|c| c.dropping) {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.entry(collection.to_string()).or_default().users += 1;
    }

    /// One user fewer; the users left.
    fn release(&self, collection: &str) -> usize {
        let mut state = self.lock();
        let Some(entry) = state.get_mut(collection) else {
            return 0;
        };
        entry.users = entry.users.saturating_sub(1);
        let left = entry.users;
        if left == 0 && !entry.dropping {
            state.remove(collection);
        }
        left
    }

    /// The users of `collection` now.
    #[cfg(test)]
    fn users(&self, collection: &str) -> usize {
        self.lock().get(collection).map_or(0, |c| c.users)
    }

    /// Reserves `collection` for dropping when nobody uses it (checked under the lock, so no
    /// `open` can start using it until `end_drop`); false when a model uses it or another drop
    /// is under way.
    fn begin_drop(&self, collection: &str) -> bool {
        let mut state = self.lock();
        let entry = state.entry(collection.to_string()).or_default();
        if entry.users > 0 || entry.dropping {
            return false;
        }
        entry.dropping = true;
        true
    }

    /// The drop reserved by `begin_drop` is over (done or not): waiting opens go on.
    fn end_drop(&self, collection: &str) {
        let mut state = self.lock();
        if let Some(entry) = state.get_mut(collection) {
            entry.dropping = false;
            if entry.users == 0 {
                state.remove(collection);
            }
        }
        self.changed.notify_all();
    }
}

/// The process's collection users.
fn uses() -> &'static Uses {
    static USES: std::sync::OnceLock<Uses> = std::sync::OnceLock::new();
    USES.get_or_init(Default::default)
}

/// One model's use of its collection: taken at the start of `open`, shared by the indexes the
/// model grows into (`regrown`: one model, one use), given back by the retire thread after the
/// grace period, or when the last index holding it is dropped (a failed or refused load, a
/// model never retired).
#[derive(Debug)]
struct CollectionUse {
    uses: &'static Uses,
    collection: String,
    held: std::sync::atomic::AtomicBool,
}

impl CollectionUse {
    fn acquire(uses: &'static Uses, collection: &str) -> CollectionUse {
        uses.acquire(collection);
        CollectionUse {
            uses,
            collection: collection.to_string(),
            held: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Gives the use back (once, however often called).
    fn release(&self) {
        if self.held.swap(false, Ordering::AcqRel) {
            self.uses.release(&self.collection);
        }
    }
}

impl Drop for CollectionUse {
    fn drop(&mut self) {
        self.release();
    }
}

/// Ends a reserved drop however the retire thread leaves it.
struct DropReservation<'a> {
    uses: &'a Uses,
    collection: &'a str,
}

impl Drop for DropReservation<'_> {
    fn drop(&mut self) {
        self.uses.end_drop(self.collection);
    }
}

/// Item vectors in a Milvus collection, searched there and re-scored here.
pub struct MilvusIndex {
    client: Arc<MilvusClient>,
    collection: String,
    /// This model's use of the collection (shared with the indexes it is regrown into).
    usage: Arc<CollectionUse>,
    vectors: Arc<ItemVectors>,
    settings: MilvusSettings,
    /// M of the norm reduction (unused under `ip`).
    radius: f32,
    /// Whether the collection was found complete rather than written by this load.
    reused: bool,
    /// The model's item count when the collection was opened: what its index was sized for.
    indexed_rows: usize,
    /// IVF lists searched (`default_nprobe`, or what `tune_nprobe` chose at load).
    nprobe: AtomicUsize,
    build_seconds: f64,
}

impl MilvusIndex {
    /// The collection of `version` over `vectors`: reused when complete, else (re)written; then
    /// flushed, indexed and loaded, and ready once its sentinel is visible. **Errors** when Milvus
    /// cannot be reached or refuses, or the collection is not ready within
    /// `ready_timeout_seconds`.
    pub fn open(
        vectors: Arc<ItemVectors>,
        settings: &MilvusSettings,
        version: &str,
    ) -> Result<MilvusIndex, IndexError> {
        let started = Instant::now();
        let client = Arc::new(MilvusClient::new(settings)?);
        let collection = collection_name(&settings.collection_prefix, version, settings.metric);
        // Counted before anything is asked of Milvus: a retired model's thread does not drop the
        // collection under this load (a rollback within the grace period), and the count is given
        // back when the load fails or its index is refused (`usage` dropped with it).
        let usage = Arc::new(CollectionUse::acquire(uses(), &collection));
        let radius = reduction_radius(&vectors);
        let deadline = started + Duration::from_secs(settings.ready_timeout_seconds);
        let indexed_rows = vectors.len();
        let mut index = MilvusIndex {
            client,
            collection,
            usage,
            vectors,
            settings: settings.clone(),
            radius,
            reused: false,
            indexed_rows,
            nprobe: AtomicUsize::new(default_nprobe(settings, indexed_rows)),
            build_seconds: 0.0,
        };
        let exists = index.client.has_collection(&index.collection)?;
        index.reused = exists && index.is_complete()?;
        if !index.reused {
            if exists {
                // Half written (a crash, or another replica still writing: it will find its
                // rows gone and its check failing, and refuse; a model is never served unchecked).
                tracing::warn!(collection = %index.collection, "incomplete collection: rewriting it");
                index.client.drop_collection(&index.collection)?;
            }
            index.write()?;
        }
        index.seal_and_load(deadline)?;
        index.build_seconds = started.elapsed().as_secs_f64();
        Ok(index)
    }

    /// The collection's name.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Whether the collection was found complete (not written by this load).
    pub fn reused(&self) -> bool {
        self.reused
    }

    fn is_complete(&self) -> Result<bool, IndexError> {
        // Milvus refuses to load a collection without a vector index, and the writer creates the
        // index right after the collection: one without it (a crash in between, a refused
        // CreateIndex) holds no sentinel, and loading it would fail every later open.
        if self.client.describe_index(&self.collection)?.is_none() {
            return Ok(false);
        }
        if !self.client.is_loaded(&self.collection)? {
            // A query needs the collection loaded; one found unloaded is loaded to be asked.
            self.client.load_collection(&self.collection)?;
            self.wait_loaded(
                Instant::now() + Duration::from_secs(self.settings.ready_timeout_seconds),
            )?;
        }
        Ok(!self
            .client
            .query(
                &self.collection,
                &format!("slot == {SENTINEL_SLOT}"),
                1,
                Consistency::Strong,
            )?
            .is_empty())
    }

    /// The vector of `row` as stored.
    fn stored(&self, row: &[f32]) -> Vec<f32> {
        match self.settings.metric {
            MilvusMetric::L2 => reduced_item(row, self.radius),
            MilvusMetric::Ip => row.to_vec(),
        }
    }

    fn stored_dim(&self) -> usize {
        match self.settings.metric {
            MilvusMetric::L2 => self.vectors.dim() + 1,
            MilvusMetric::Ip => self.vectors.dim(),
        }
    }

    /// Creates the collection and its index, writes every row, then the sentinel.
    fn write(&self) -> Result<(), IndexError> {
        self.client.create_collection(
            &self.collection,
            self.stored_dim(),
            self.settings.consistency_level,
        )?;
        // The index first: every segment sealed from now on is indexed as it seals.
        self.client.create_index(
            &self.collection,
            &index_spec(&self.settings, self.indexed_rows),
        )?;
        self.insert_rows(0..self.vectors.len())?;
        let zero = vec![0.0; self.stored_dim()];
        self.client.insert(
            &self.collection,
            self.stored_dim(),
            &[(SENTINEL_SLOT, zero)],
        )?;
        Ok(())
    }

    fn insert_rows(&self, rows: std::ops::Range<usize>) -> Result<(), IndexError> {
        let batch = self.settings.insert_batch.max(1);
        let mut start = rows.start;
        while start < rows.end {
            let end = (start + batch).min(rows.end);
            let data: Vec<(i64, Vec<f32>)> = (start..end)
                .map(|i| (i as i64, self.stored(self.vectors.row(i))))
                .collect();
            self.client
                .insert(&self.collection, self.stored_dim(), &data)?;
            start = end;
        }
        Ok(())
    }

    /// Flushes the collection (its growing segments seal and get the index), waits until every
    /// sealed row is indexed, loads it and waits until it is loaded. Also on a reused collection:
    /// a writer that crashed after the sentinel may have left rows unflushed, and flushing
    /// nothing is cheap.
    fn seal_and_load(&self, deadline: Instant) -> Result<(), IndexError> {
        if self.client.describe_index(&self.collection)?.is_none() {
            self.client.create_index(
                &self.collection,
                &index_spec(&self.settings, self.indexed_rows),
            )?;
        }
        self.client.flush(&self.collection, deadline)?;
        loop {
            match self.client.describe_index(&self.collection)? {
                Some(status) if status.failure.is_some() => {
                    return Err(IndexError::Unavailable(format!(
                        "Milvus could not build the index of {}: {}",
                        self.collection,
                        status.failure.unwrap_or_default()
                    )))
                }
                Some(status)
                    if status.finished
                        && status.pending_rows == 0
                        && status.indexed_rows >= status.total_rows =>
                {
                    break
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(IndexError::Unavailable(format!(
                    "the index of collection {} not built after {} s",
                    self.collection, self.settings.ready_timeout_seconds
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        self.client.load_collection(&self.collection)?;
        self.wait_loaded(deadline)?;
        if !self.is_complete()? {
            return Err(IndexError::Unavailable(format!(
                "collection {} lost its sentinel row while loading",
                self.collection
            )));
        }
        Ok(())
    }

    fn wait_loaded(&self, deadline: Instant) -> Result<(), IndexError> {
        while !self.client.is_loaded(&self.collection)? {
            if Instant::now() >= deadline {
                return Err(IndexError::Unavailable(format!(
                    "collection {} not loaded after {} s",
                    self.collection, self.settings.ready_timeout_seconds
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// The primary keys of the rows holding these slots (read `strong`: a live write just made
    /// must be found).
    fn row_ids(&self, slots: &[u32]) -> Result<Vec<i64>, IndexError> {
        let mut ids = Vec::new();
        for chunk in slots.chunks(self.settings.max_expression_slots.max(1)) {
            let filter = format!(
                "slot in [{}]",
                chunk
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            );
            // Several rows per slot are possible (replicas writing the same live item).
            let rows = self.client.query(
                &self.collection,
                &filter,
                QUERY_WINDOW.min(chunk.len() * 4),
                Consistency::Strong,
            )?;
            ids.extend(rows.into_iter().map(|r| r.id));
        }
        Ok(ids)
    }

    /// Whether Milvus answers and the collection is loaded (what `/readyz` asks).
    pub fn check_health(&self) -> Result<(), IndexError> {
        match self.client.load_state(&self.collection)? {
            "Loaded" => Ok(()),
            other => Err(IndexError::Unavailable(format!(
                "collection {} is {other}",
                self.collection,
            ))),
        }
    }

    /// Points the alias at this index's collection (the model serving it was swapped in).
    pub fn point_alias(&self) -> Result<(), IndexError> {
        if self.settings.alias.is_empty() {
            return Ok(());
        }
        self.client
            .point_alias(&self.settings.alias, &self.collection)?;
        tracing::info!(alias = %self.settings.alias, collection = %self.collection, "alias switched");
        Ok(())
    }

    /// Whether the collection's index has an `nprobe` to tune (IVF_FLAT).
    pub fn probes_lists(&self) -> bool {
        self.settings.index_type == MilvusIndexType::IvfFlat
    }

    /// The IVF lists of the collection.
    pub fn lists(&self) -> usize {
        ivf_lists(&self.settings, self.indexed_rows)
    }

    /// The IVF lists searched.
    pub fn nprobe(&self) -> usize {
        self.nprobe.load(Ordering::Relaxed)
    }

    /// Searches `nprobe` IVF lists from now on (at least 1, at most the lists there are).
    pub fn set_nprobe(&self, nprobe: usize) {
        self.nprobe
            .store(nprobe.clamp(1, self.lists()), Ordering::Relaxed);
    }

    fn search_params(&self, limit: usize, ef: Option<usize>) -> serde_json::Value {
        search_params(&self.settings, self.nprobe(), limit, ef)
    }

    /// How many candidates a recall of `k` at `ef` asks Milvus for.
    pub(crate) fn candidates(&self, k: usize, ef: Option<usize>) -> usize {
        (k * self.settings.oversample)
            .max(k + self.settings.min_extra)
            .max(ef.unwrap_or(0))
            .min(MAX_CANDIDATES)
    }
}

impl RecallIndex for MilvusIndex {
    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Filter<'_>,
    ) -> Result<Vec<Hit>, IndexError> {
        check_query(query, self.vectors.dim())?;
        let n = self.vectors.len();
        if allows_nothing(filter, n) {
            return Ok(Vec::new());
        }
        let Some(expression) = filter_expression(filter, n, self.settings.max_expression_slots)
        else {
            // A list too long for an expression: the allowed items scanned here, exactly.
            return Ok(super::exact::exact_top_k(&self.vectors, query, k, filter));
        };
        let searched = match self.settings.metric {
            MilvusMetric::L2 => reduced_query(query),
            MilvusMetric::Ip => query.to_vec(),
        };
        let limit = self.candidates(k, ef);
        let rows = self.client.search(
            &self.collection,
            &searched,
            limit,
            &expression,
            &self.search_params(limit, ef),
            self.settings.consistency_level,
        )?;
        // Exact re-scoring; a slot may come twice (replicas writing the same live item).
        let mut top = TopK::new(k);
        let mut taken = std::collections::HashSet::with_capacity(rows.len());
        for row in rows {
            let Ok(slot) = u32::try_from(row.slot) else {
                continue;
            };
            if (slot as usize) < n && filter.allows(slot) && taken.insert(slot) {
                top.push(
                    slot,
                    crate::kernels::dot(query, self.vectors.row(slot as usize)),
                );
            }
        }
        Ok(top.into_sorted())
    }

    fn info(&self) -> IndexInfo {
        IndexInfo {
            kind: "milvus",
            items: self.vectors.len(),
            dim: self.vectors.dim(),
            params: serde_json::json!({
                "address": self.settings.address,
                "collection": self.collection,
                "metric": self.settings.metric,
                "alias": self.settings.alias,
                "index_type": index_spec(&self.settings, self.indexed_rows).index_type,
                "index_params": index_spec(&self.settings, self.indexed_rows).params,
                "search_params": self.search_params(self.candidates(10, None), None),
                "target_recall": self.settings.target_recall,
                "search_ef": self.settings.search_ef,
                "consistency_level": self.settings.consistency_level,
                "oversample": self.settings.oversample,
                "min_extra": self.settings.min_extra,
                "reduction_radius": self.radius,
                "reused_collection": self.reused,
            }),
            // The service keeps the vectors for exact re-scoring; the graph lives in Milvus.
            memory_bytes: self.vectors.len() * self.vectors.dim() * 4,
            build_seconds: self.build_seconds,
        }
    }

    fn work_estimate(&self, _k: usize, _ef: Option<usize>) -> u64 {
        // A network round trip: never on an async worker, never holding a CPU permit.
        super::REMOTE_WORK
    }

    fn insert(&self, first: u32, count: usize) -> Result<(), IndexError> {
        check_appended(&self.vectors, first, count)?;
        let rows = first as usize..first as usize + count;
        check_finite_rows(&self.vectors, rows.clone())?;
        // Replace: a restart, or another replica, may have written these slots already.
        let slots: Vec<u32> = rows.clone().map(|i| i as u32).collect();
        let stale = self.row_ids(&slots)?;
        self.client.delete(&self.collection, &stale)?;
        self.insert_rows(rows)?;
        // Read your writes, as the in-process indexes give: Milvus makes rows searchable a moment
        // after the insert (under a second here), so the write answers once a strong read finds
        // the last one (searches at `bounded` may still miss it for up to gracefulTime, 5 s).
        if let Some(&last) = slots.last() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.row_ids(&[last])?.is_empty() {
                if Instant::now() >= deadline {
                    tracing::warn!(
                        slot = last,
                        "an inserted row is not visible in Milvus after 10 s"
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn regrown(&self, vectors: Arc<ItemVectors>) -> Result<Arc<dyn RecallIndex>, IndexError> {
        Ok(Arc::new(MilvusIndex {
            client: self.client.clone(),
            collection: self.collection.clone(),
            usage: self.usage.clone(),
            vectors,
            settings: self.settings.clone(),
            radius: self.radius,
            reused: self.reused,
            indexed_rows: self.indexed_rows,
            nprobe: AtomicUsize::new(self.nprobe()),
            build_seconds: self.build_seconds,
        }))
    }

    fn remove(&self, item: u32) -> bool {
        // The service keeps excluding the slot itself (false); the rows go from Milvus too, so
        // they stop taking candidate places. A failure here only costs candidates.
        match self.row_ids(&[item]) {
            Ok(ids) => {
                if let Err(e) = self.client.delete(&self.collection, &ids) {
                    tracing::warn!(slot = item, error = %e, "could not delete a retired slot from Milvus");
                }
            }
            Err(e) => {
                tracing::warn!(slot = item, error = %e, "could not find a retired slot in Milvus")
            }
        }
        false
    }

    fn health(&self) -> Result<(), IndexError> {
        self.check_health()
    }

    fn activated(&self) -> Result<(), IndexError> {
        self.point_alias()
    }

    fn retire(&self) {
        let grace = self.settings.drop_grace_seconds;
        let alias = self.settings.alias.clone();
        if grace == 0 {
            return;
        }
        let client = self.client.clone();
        let collection = self.collection.clone();
        let usage = self.usage.clone();
        let spawned = std::thread::Builder::new()
            .name("milvus-retire".into())
            .spawn(move || {
                std::thread::sleep(Duration::from_secs(grace));
                usage.release();
                // Under the lock: no model uses it, and none starts to until the drop is over.
                if !usage.uses.begin_drop(&collection) {
                    return;
                }
                let _reserved = DropReservation {
                    uses: usage.uses,
                    collection: &collection,
                };
                // Another replica may have pointed the alias back at it (a rollback).
                if !alias.is_empty() {
                    match client.describe_alias(&alias) {
                        Ok(Some(named)) if named == collection => {
                            tracing::info!(collection = %collection, "a retired collection is the alias's again: kept");
                            return;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(collection = %collection, error = %e, "could not read the alias: the retired collection is kept");
                            return;
                        }
                    }
                }
                match client.drop_collection(&collection) {
                    Ok(()) => tracing::info!(collection = %collection, "dropped a retired collection"),
                    Err(e) => tracing::warn!(collection = %collection, error = %e, "could not drop a retired collection"),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not schedule the retired collection's drop");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_norm_reduction_turns_l2_order_into_inner_product_order() {
        let mut rng = crate::rng::Rng::new(3);
        let dim = 8;
        // Norms that vary by two orders of magnitude, as popularity makes them.
        let items: Vec<Vec<f32>> = (0..200)
            .map(|i| {
                let scale = 0.05 + (i % 20) as f32 * 0.5;
                (0..dim).map(|_| rng.normal() as f32 * scale).collect()
            })
            .collect();
        let vectors = ItemVectors::from_raw(dim, items.concat());
        let radius = reduction_radius(&vectors);
        let largest = items
            .iter()
            .map(|x| crate::kernels::dot(x, x).sqrt())
            .fold(0.0, f32::max);
        assert!((radius - largest).abs() < 1e-4);
        for _ in 0..20 {
            let q: Vec<f32> = (0..dim).map(|_| rng.normal() as f32).collect();
            let rq = reduced_query(&q);
            assert_eq!(rq.len(), dim + 1);
            assert_eq!(rq[dim], 0.0);
            let l2 = |x: &[f32]| {
                let rx = reduced_item(x, radius);
                // Every reduced item lies on the sphere of radius M.
                assert!((crate::kernels::dot(&rx, &rx).sqrt() - radius).abs() < 1e-3 * radius);
                rq.iter()
                    .zip(&rx)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>()
            };
            // ‖q − x̃‖² = ‖q‖² + M² − 2⟨q, x⟩ for every item.
            let q2 = crate::kernels::dot(&q, &q);
            for x in &items {
                let expected = q2 + radius * radius - 2.0 * crate::kernels::dot(&q, x);
                assert!((l2(x) - expected).abs() < 1e-3 * (1.0 + expected.abs()));
            }
            let mut by_ip: Vec<usize> = (0..items.len()).collect();
            by_ip.sort_by(|&a, &b| {
                crate::kernels::dot(&q, &items[b]).total_cmp(&crate::kernels::dot(&q, &items[a]))
            });
            let mut by_l2: Vec<usize> = (0..items.len()).collect();
            by_l2.sort_by(|&a, &b| l2(&items[a]).total_cmp(&l2(&items[b])));
            assert_eq!(by_ip[..10], by_l2[..10]);
        }
    }

    #[test]
    fn an_item_longer_than_the_radius_gets_a_zero_coordinate_not_a_nan() {
        let v = reduced_item(&[3.0, 4.0], 2.0);
        assert_eq!(v, vec![3.0, 4.0, 0.0]);
    }

    #[test]
    fn filters_become_expressions_over_integer_slots_only() {
        assert_eq!(
            filter_expression(Filter::All, 10, 100).unwrap(),
            "slot >= 0"
        );
        assert_eq!(
            filter_expression(Filter::Exclude(&[]), 10, 100).unwrap(),
            "slot >= 0"
        );
        assert_eq!(
            filter_expression(Filter::Exclude(&[1, 4, 7]), 10, 100).unwrap(),
            "slot >= 0 and slot not in [1,4,7]"
        );
        assert_eq!(
            filter_expression(Filter::Only(&[2, 3]), 10, 100).unwrap(),
            "slot in [2,3]"
        );
        // Slots beyond the index are dropped, not sent.
        assert_eq!(
            filter_expression(Filter::Only(&[2, 30]), 10, 100).unwrap(),
            "slot in [2]"
        );
    }

    #[test]
    fn the_complement_counts_only_distinct_slots_below_n() {
        // 8 distinct slots below 10 and two past it: the complement is [3,8], not an overrun.
        let allowed = [0, 1, 2, 4, 5, 6, 7, 9, 12, 40];
        assert_eq!(
            filter_expression(Filter::Only(&allowed), 10, 4).unwrap(),
            "slot >= 0 and slot not in [3,8]"
        );
        // Every slot below n allowed, plus some past it: everything.
        let all_and_more: Vec<u32> = (0..15).collect();
        assert_eq!(
            filter_expression(Filter::Only(&all_and_more), 10, 4).unwrap(),
            "slot >= 0"
        );
        // Slots past n would have hidden the complement's size: 6 below 10 leaves 4 out.
        let few_in_range = [0, 1, 2, 3, 4, 5, 20, 21, 22, 23, 24];
        assert_eq!(
            filter_expression(Filter::Only(&few_in_range), 10, 4).unwrap(),
            "slot >= 0 and slot not in [6,7,8,9]"
        );
    }

    #[test]
    fn a_duplicate_in_an_allow_list_does_not_exclude_the_slots_after_it() {
        let allowed = [0, 1, 1, 2, 4, 5, 5, 6, 7, 9];
        assert_eq!(
            filter_expression(Filter::Only(&allowed), 10, 4).unwrap(),
            "slot >= 0 and slot not in [3,8]"
        );
        assert_eq!(
            filter_expression(Filter::Only(&[2, 2, 3]), 10, 4).unwrap(),
            "slot in [2,3]"
        );
        // Unsorted, against the contract: still the same set.
        let shuffled = [9, 0, 7, 1, 6, 2, 5, 4, 0];
        assert_eq!(
            filter_expression(Filter::Only(&shuffled), 10, 4).unwrap(),
            "slot >= 0 and slot not in [3,8]"
        );
    }

    #[test]
    fn a_filter_allowing_no_slot_is_known_without_asking_milvus() {
        assert!(allows_nothing(Filter::Only(&[]), 10));
        assert!(allows_nothing(Filter::Only(&[10, 30]), 10));
        assert!(!allows_nothing(Filter::Only(&[9, 30]), 10));
        assert!(!allows_nothing(Filter::All, 10));
        assert!(allows_nothing(Filter::All, 0));
        assert!(!allows_nothing(Filter::Exclude(&[0, 1]), 10));
        let none = crate::recall::AllowedBits::only(&[], 10);
        assert!(allows_nothing(Filter::Bits(&none), 10));
        let one = crate::recall::AllowedBits::only(&[3], 10);
        assert!(!allows_nothing(Filter::Bits(&one), 10));
    }

    /// An index over `n` rows of a Milvus that is not there (nothing listens on port 1): any
    /// call it makes fails.
    fn unreachable_index(n: usize, uses: &'static Uses) -> MilvusIndex {
        let settings = MilvusSettings {
            address: "127.0.0.1:1".into(),
            retries: 0,
            connect_timeout_ms: 200,
            timeout_ms: 200,
            ..Default::default()
        };
        let dim = 4;
        let vectors = Arc::new(ItemVectors::from_raw(dim, vec![0.5; n * dim]));
        MilvusIndex {
            client: Arc::new(MilvusClient::new(&settings).unwrap()),
            collection: "unreachable".into(),
            usage: Arc::new(CollectionUse::acquire(uses, "unreachable")),
            radius: reduction_radius(&vectors),
            vectors,
            settings,
            reused: false,
            indexed_rows: n,
            nprobe: AtomicUsize::new(1),
            build_seconds: 0.0,
        }
    }

    #[test]
    fn a_search_allowing_nothing_answers_empty_without_a_round_trip() {
        let uses: &'static Uses = Box::leak(Box::default());
        let index = unreachable_index(10, uses);
        let query = [1.0, 0.0, 0.0, 0.0];
        assert!(index
            .search(&query, 5, None, Filter::Only(&[]))
            .unwrap()
            .is_empty());
        assert!(index
            .search(&query, 5, None, Filter::Only(&[10, 11]))
            .unwrap()
            .is_empty());
        // The same index does ask Milvus when a slot is allowed (and fails here).
        assert!(index.search(&query, 5, None, Filter::Only(&[3])).is_err());
    }

    #[test]
    fn a_collection_is_used_from_the_start_of_a_load_until_its_model_lets_go() {
        let uses: &'static Uses = Box::leak(Box::default());
        let index = unreachable_index(10, uses);
        assert_eq!(uses.users("unreachable"), 1);
        // A regrown index is the same model: one use between them.
        let grown = index
            .regrown(Arc::new(ItemVectors::from_raw(4, vec![0.5; 80])))
            .unwrap();
        assert_eq!(uses.users("unreachable"), 1);
        assert!(!uses.begin_drop("unreachable"));
        drop(index);
        assert_eq!(uses.users("unreachable"), 1);
        // A load refused after `open` (its index dropped unserved) gives the use back.
        drop(grown);
        assert_eq!(uses.users("unreachable"), 0);
        assert!(uses.begin_drop("unreachable"));
        uses.end_drop("unreachable");
    }

    #[test]
    fn a_use_is_given_back_once_however_often_it_is_released() {
        let uses: &'static Uses = Box::leak(Box::default());
        let first = CollectionUse::acquire(uses, "c");
        let second = CollectionUse::acquire(uses, "c");
        assert_eq!(uses.users("c"), 2);
        first.release();
        first.release();
        assert_eq!(uses.users("c"), 1);
        drop(first);
        assert_eq!(uses.users("c"), 1);
        assert!(!uses.begin_drop("c"), "dropped while a model uses it");
        drop(second);
        assert!(uses.begin_drop("c"));
        assert!(!uses.begin_drop("c"), "two drops of one collection at once");
        uses.end_drop("c");
    }

    #[test]
    fn a_load_waits_for_a_drop_under_way_then_counts_as_a_user() {
        let uses: &'static Uses = Box::leak(Box::default());
        assert!(uses.begin_drop("c"));
        let (sender, receiver) = std::sync::mpsc::channel();
        let opener = std::thread::spawn(move || {
            let usage = CollectionUse::acquire(uses, "c");
            sender.send(()).unwrap();
            usage
        });
        // The load does not start using the collection while the drop is under way...
        assert!(receiver.recv_timeout(Duration::from_millis(300)).is_err());
        assert_eq!(uses.users("c"), 0);
        uses.end_drop("c");
        // ... and does once it is over; a retire thread firing now keeps the collection.
        receiver.recv_timeout(Duration::from_secs(10)).unwrap();
        let usage = opener.join().unwrap();
        assert_eq!(uses.users("c"), 1);
        assert!(!uses.begin_drop("c"));
        drop(usage);
        assert!(uses.begin_drop("c"));
    }

    #[test]
    fn a_long_allow_list_is_sent_as_its_complement_and_a_longer_one_not_at_all() {
        let allowed: Vec<u32> = (0..10).filter(|s| *s != 3 && *s != 8).collect();
        assert_eq!(
            filter_expression(Filter::Only(&allowed), 10, 4).unwrap(),
            "slot >= 0 and slot not in [3,8]"
        );
        let half: Vec<u32> = (0..10).step_by(2).collect();
        assert!(filter_expression(Filter::Only(&half), 10, 4).is_none());
        let many: Vec<u32> = (0..6).collect();
        assert!(filter_expression(Filter::Exclude(&many), 10, 4).is_none());
    }

    #[test]
    fn expressions_hold_nothing_but_slots_and_fixed_words() {
        let mut rng = crate::rng::Rng::new(9);
        for _ in 0..100 {
            let mut list: Vec<u32> = (0..20).map(|_| (rng.uniform() * 1000.0) as u32).collect();
            list.sort_unstable();
            list.dedup();
            for filter in [Filter::Exclude(&list), Filter::Only(&list)] {
                let e = filter_expression(filter, 1000, 100).unwrap();
                let rest = e
                    .replace("slot >= 0 and slot not in ", "")
                    .replace("slot in ", "");
                assert!(
                    rest.chars()
                        .all(|c| c.is_ascii_digit() || "[],".contains(c)),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn the_configured_index_and_its_parameters_are_what_milvus_is_asked_to_build() {
        let mut settings = MilvusSettings {
            index_type: MilvusIndexType::Hnsw,
            hnsw_m: 24,
            hnsw_ef_construction: 300,
            ..Default::default()
        };
        let spec = index_spec(&settings, 1_000_000);
        assert_eq!(spec.index_type, "HNSW");
        assert_eq!(spec.metric, "L2");
        assert_eq!(
            spec.params,
            serde_json::json!({"M": 24, "efConstruction": 300})
        );
        settings.index_type = MilvusIndexType::IvfFlat;
        settings.metric = MilvusMetric::Ip;
        let spec = index_spec(&settings, 1_000_000);
        assert_eq!((spec.index_type, spec.metric), ("IVF_FLAT", "IP"));
        assert_eq!(spec.params, serde_json::json!({"nlist": 1024}));
        // Fewer rows than 39 per list: fewer lists (MovieLens 100K's 1,682 items: 43).
        assert_eq!(
            index_spec(&settings, 1682).params,
            serde_json::json!({"nlist": 43})
        );
        assert_eq!(
            index_spec(&settings, 10).params,
            serde_json::json!({"nlist": 1})
        );
        settings.index_type = MilvusIndexType::Flat;
        assert_eq!(index_spec(&settings, 1_000_000).index_type, "FLAT");
    }

    #[test]
    fn hnsw_searches_at_least_as_broadly_as_the_candidates_asked_and_the_requests_ef() {
        let settings = MilvusSettings {
            index_type: MilvusIndexType::Hnsw,
            search_ef: 128,
            ..Default::default()
        };
        assert_eq!(
            search_params(&settings, 0, 100, None),
            serde_json::json!({"ef": 128})
        );
        assert_eq!(
            search_params(&settings, 0, 400, None),
            serde_json::json!({"ef": 400})
        );
        assert_eq!(
            search_params(&settings, 0, 100, Some(900)),
            serde_json::json!({"ef": 900})
        );
        assert_eq!(
            search_params(&settings, 0, 100, Some(1 << 20)),
            serde_json::json!({"ef": MAX_CANDIDATES})
        );
        let ivf = MilvusSettings {
            index_type: MilvusIndexType::IvfFlat,
            ivf_nprobe: 32,
            ..Default::default()
        };
        assert_eq!(
            search_params(&ivf, 48, 100, Some(900)),
            serde_json::json!({"nprobe": 48})
        );
        // Never more lists probed than there are: a small collection is scanned whole.
        assert_eq!(default_nprobe(&ivf, 1_000_000), 32);
        assert_eq!(default_nprobe(&ivf, 800), 20);
    }

    #[test]
    fn the_nprobe_ladder_ends_with_every_list_probed() {
        assert_eq!(nprobe_ladder(1), vec![1]);
        assert_eq!(nprobe_ladder(20), vec![1, 2, 4, 8, 16, 20]);
        assert_eq!(nprobe_ladder(64), vec![1, 2, 4, 8, 16, 24, 32, 48, 64]);
        let full = nprobe_ladder(1024);
        assert_eq!(full.last(), Some(&1024));
        assert!(full.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn collection_names_keep_to_milvus_characters() {
        assert_eq!(
            collection_name("fmrecall", "20261206-044500-ab12", MilvusMetric::L2),
            "fmrecall_20261206_044500_ab12_l2"
        );
        assert_eq!(
            collection_name("1x", "v\"; drop", MilvusMetric::Ip),
            "c_1x_v___drop_ip"
        );
    }
}
