//! Maximum-inner-product search over the exported item vectors [q_i; b_i].
//!
//! A [`RecallIndex`] answers "the k items with the largest ⟨query, item⟩" for a user query [p_u; 1],
//! optionally under a [`Filter`] applied inside the search. Three implementations: [`ExactIndex`]
//! (brute force; the reference, and the right choice for small catalogs), [`GraphIndex`] (our own
//! HNSW, the default above the small-catalog threshold because it measured fastest, see README) and
//! [`HnswRsIndex`] (hnsw_rs). All return exact inner products, best first, so the caller adds c_u to
//! get exact FM scores.

pub mod bench;
mod exact;
mod graph;
mod hnsw;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use exact::ExactIndex;
pub use graph::{BuildSpace, GraphFileError, GraphIndex, GraphParams, Metric};
pub use hnsw::{HnswParams, HnswRsIndex};

use crate::fm::ItemVectors;

/// Index errors: bad parameters or vectors, refused builds, bad queries.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A parameter is out of range.
    #[error("{name} should be {allowed}, but is {value}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// The allowed range.
        allowed: &'static str,
        /// What was given.
        value: String,
    },
    /// A vector has a NaN or infinite component.
    #[error("item {item} has a non-finite component; refusing to index it")]
    NonFiniteVector {
        /// The item's index.
        item: usize,
    },
    /// The query's length differs from the items'.
    #[error("query has {got} dimensions, the index has {expected}")]
    DimensionMismatch {
        /// Index dimension.
        expected: usize,
        /// Query dimension.
        got: usize,
    },
    /// The query has a NaN or infinite component.
    #[error("query has a non-finite component")]
    NonFiniteQuery,
    /// The built graph does not recall well enough to be served.
    #[error("index refused: {what} {value:.3} is below the floor {floor:.3}")]
    BelowFloor {
        /// Which check.
        what: &'static str,
        /// The measured figure.
        value: f64,
        /// The configured floor.
        floor: f64,
    },
}

/// One search result: an item and its exact inner product with the query.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hit {
    /// Item index.
    pub item: u32,
    /// ⟨query, item vector⟩.
    pub score: f32,
}

/// Which items a search may return. Lists are sorted and free of duplicates.
#[derive(Debug, Clone, Copy, Default)]
pub enum Filter<'a> {
    /// Every item.
    #[default]
    All,
    /// Every item except these.
    Exclude(&'a [u32]),
    /// Only these items.
    Only(&'a [u32]),
}

impl Filter<'_> {
    /// Whether `item` may be returned.
    #[inline]
    pub fn allows(&self, item: u32) -> bool {
        match self {
            Filter::All => true,
            Filter::Exclude(list) => list.binary_search(&item).is_err(),
            Filter::Only(list) => list.binary_search(&item).is_ok(),
        }
    }

    /// How many of `n` items the filter allows (lists may name items beyond `n`).
    pub fn allowed_count(&self, n: usize) -> usize {
        match self {
            Filter::All => n,
            Filter::Exclude(list) => n - list.iter().filter(|&&i| (i as usize) < n).count(),
            Filter::Only(list) => list.iter().filter(|&&i| (i as usize) < n).count(),
        }
    }
}

/// What an index reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexInfo {
    /// `exact` or `hnsw_rs`.
    pub kind: &'static str,
    /// Number of items.
    pub items: usize,
    /// Vector length.
    pub dim: usize,
    /// Kind-specific parameters.
    pub params: serde_json::Value,
    /// Estimated bytes held by the index.
    pub memory_bytes: usize,
    /// Seconds the build took.
    pub build_seconds: f64,
}

/// A searchable set of item vectors. Searching is safe from many threads at once.
pub trait RecallIndex: Send + Sync {
    /// The `k` allowed items with the largest inner product with `query`, best first; `ef` is the
    /// search breadth of graph indexes (ignored by exact search).
    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Filter<'_>,
    ) -> Result<Vec<Hit>, IndexError>;

    /// Kind, size and parameters.
    fn info(&self) -> IndexInfo;

    /// Roughly how many multiply-adds an unfiltered search for `k` items at `ef` costs: what the
    /// service uses to decide whether a request may run on an async worker (see `api::compute`).
    fn work_estimate(&self, k: usize, ef: Option<usize>) -> u64;
}

/// Which index to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    /// Exact below `IndexSettings::exact_below` items, our graph ([`GraphIndex`]) above.
    Auto,
    /// Brute force.
    Exact,
    /// hnsw_rs.
    HnswRs,
    /// Our own HNSW ([`GraphIndex`]).
    Graph,
}

/// `[index]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexSettings {
    /// Which index.
    pub kind: IndexKind,
    /// `auto` uses exact search below this many items.
    pub exact_below: usize,
    /// A filtered search that allows at most this many items scans them exactly instead.
    pub exact_filter_below: usize,
    /// Graph parameters.
    pub hnsw: HnswParams,
    /// Refuse a graph whose recall@10 against brute force on sample queries is below this.
    pub min_recall: f64,
    /// Choose the graph's default search breadth at load: the smallest of [`EF_LADDER`] whose
    /// recall@10 against brute force on the sample queries reaches this; 0 keeps `hnsw.ef_search`.
    pub target_recall: f64,
    /// Sample queries for that check.
    pub check_queries: usize,
    /// Before walking our graph, walk up to this many largest-norm items exactly, stopping when
    /// the Cauchy–Schwarz bound proves the top k found (`graph/head.rs`); kept only when that
    /// settles at least half of the sample queries at k = 10. 0 turns it off.
    #[serde(default = "default_norm_scan_items")]
    pub norm_scan_items: usize,
}

fn default_norm_scan_items() -> usize {
    IndexSettings::default().norm_scan_items
}

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            kind: IndexKind::Auto,
            exact_below: 10_000,
            exact_filter_below: 2_000,
            hnsw: HnswParams::default(),
            min_recall: 0.9,
            target_recall: 0.98,
            check_queries: 200,
            norm_scan_items: 8192,
        }
    }
}

/// `Ok` when `value` is in `range`, else the error naming the parameter and its allowed range;
/// shared by every index's parameter check.
pub(crate) fn check_range(
    name: &'static str,
    value: usize,
    range: std::ops::RangeInclusive<usize>,
    allowed: &'static str,
) -> Result<(), IndexError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(IndexError::InvalidParameter {
            name,
            allowed,
            value: value.to_string(),
        })
    }
}

/// Refuses vectors with NaN or infinite components.
pub fn check_finite(vectors: &ItemVectors) -> Result<(), IndexError> {
    for i in 0..vectors.len() {
        if vectors.row(i).iter().any(|x| !x.is_finite()) {
            return Err(IndexError::NonFiniteVector { item: i });
        }
    }
    Ok(())
}

/// Checks a query's length and values against the index.
pub(crate) fn check_query(query: &[f32], dim: usize) -> Result<(), IndexError> {
    if query.len() != dim {
        return Err(IndexError::DimensionMismatch {
            expected: dim,
            got: query.len(),
        });
    }
    if query.iter().any(|x| !x.is_finite()) {
        return Err(IndexError::NonFiniteQuery);
    }
    Ok(())
}

/// How a built index measured up against brute force.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IndexQuality {
    /// Mean recall@10 of the index against exact search on the sample queries.
    pub recall_at_10: f64,
    /// The default search breadth these figures were measured at: `hnsw.ef_search`, or the one
    /// chosen for `target_recall`.
    pub ef_search: usize,
    /// The recall@10 the default breadth was chosen for (None: `hnsw.ef_search` as configured).
    pub target_recall: Option<f64>,
    /// Share of sampled items that the index returns when queried with their own vector, among
    /// those that exact search returns for that query (a graph that cannot reach a point fails).
    pub self_recall: f64,
    /// Mean recall@100 of the served search (default breadth, norm walk as configured) against
    /// exact search on the same queries: the depth a ranker usually asks for.
    pub recall_at_100: f64,
    /// What the norm walk settled on the sample queries (None: not our graph, or turned off).
    pub norm_scan: Option<NormScanReport>,
    /// Queries used.
    pub queries: usize,
    /// Whether the graph was read from its saved file instead of built.
    pub graph_from_file: bool,
}

/// How much of the sample queries' work the exact norm walk (`graph/head.rs`) took over.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NormScanReport {
    /// Largest-norm items it may read.
    pub items: usize,
    /// Share of the sample queries whose exact top 10 it proved without the graph.
    pub exact_share_at_10: f64,
    /// The same at k = 100 (None when k = 100 is too deep for a head this short).
    pub exact_share_at_100: Option<f64>,
    /// Whether it serves: only when the share at k = 10 is at least [`MIN_NORM_SCAN_SHARE`].
    pub enabled: bool,
}

/// Below this share of sample queries settled at k = 10, the norm walk would mostly be wasted work
/// before the graph, and is turned off.
pub const MIN_NORM_SCAN_SHARE: f64 = 0.5;

/// Share of a sample of `sample` items of `space` (the vectors `index` walks) that `index` returns
/// in its top 10 at `ef` for their own vector, among those that exact search returns for it (under
/// inner product an item need not be its own best match; a graph that cannot reach a point fails).
pub(crate) fn self_recall(
    index: &dyn RecallIndex,
    space: &ItemVectors,
    sample: usize,
    ef: Option<usize>,
) -> Result<f64, IndexError> {
    let n = space.len();
    if n == 0 || sample == 0 {
        return Ok(1.0);
    }
    let step = (n / sample.min(n)).max(1);
    let (mut expected, mut found) = (0usize, 0usize);
    for i in (0..n).step_by(step).take(sample) {
        let q = space.row(i);
        let truth = exact::exact_top_k(space, q, 10, Filter::All);
        if !truth.iter().any(|h| h.item as usize == i) {
            continue;
        }
        expected += 1;
        let got = index.search(q, 10, ef, Filter::All)?;
        found += usize::from(got.iter().any(|h| h.item as usize == i));
    }
    Ok(if expected == 0 {
        1.0
    } else {
        found as f64 / expected as f64
    })
}

/// Mean recall@k of `index` at `ef` against exact search over `queries`.
pub fn measure_recall(
    index: &dyn RecallIndex,
    exact: &ExactIndex,
    queries: &[Vec<f32>],
    k: usize,
    ef: Option<usize>,
) -> Result<f64, IndexError> {
    let truth = exact_truth(exact, queries, k, Filter::All)?;
    recall_against(index, queries, &truth, k, ef, Filter::All)
}

/// The exact top-k item ids of each query under `filter`.
pub(crate) fn exact_truth(
    exact: &ExactIndex,
    queries: &[Vec<f32>],
    k: usize,
    filter: Filter<'_>,
) -> Result<Vec<Vec<u32>>, IndexError> {
    queries
        .iter()
        .map(|q| {
            Ok(exact
                .search(q, k, None, filter)?
                .iter()
                .map(|h| h.item)
                .collect())
        })
        .collect()
}

/// Mean share of each query's `truth` (its exact top k under `filter`) that `index` returns in its
/// top k at `ef`.
pub(crate) fn recall_against(
    index: &dyn RecallIndex,
    queries: &[Vec<f32>],
    truth: &[Vec<u32>],
    k: usize,
    ef: Option<usize>,
    filter: Filter<'_>,
) -> Result<f64, IndexError> {
    if queries.is_empty() {
        return Ok(1.0);
    }
    let mut total = 0.0;
    for (q, t) in queries.iter().zip(truth) {
        let got = index.search(q, k, ef, filter)?;
        let hits = got.iter().filter(|h| t.contains(&h.item)).count();
        total += hits as f64 / t.len().max(1) as f64;
    }
    Ok(total / queries.len() as f64)
}

/// The search breadths `target_recall` chooses from, cheapest first.
pub const EF_LADDER: [usize; 12] = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512];

/// The smallest breadth of [`EF_LADDER`] at which `index` reaches `target` recall against `truth`
/// (the largest if none does).
fn tune_ef(
    index: &dyn RecallIndex,
    queries: &[Vec<f32>],
    truth: &[Vec<u32>],
    target: f64,
) -> Result<usize, IndexError> {
    for ef in EF_LADDER {
        if recall_against(index, queries, truth, 10, Some(ef), Filter::All)? >= target {
            return Ok(ef);
        }
    }
    Ok(EF_LADDER[EF_LADDER.len() - 1])
}

/// Builds the configured index over `vectors` and, for graph indexes, checks it against brute
/// force on `sample_queries` (real user queries), refusing it below `settings.min_recall`.
pub fn build(
    vectors: Arc<ItemVectors>,
    settings: &IndexSettings,
    sample_queries: &[Vec<f32>],
) -> Result<(Arc<dyn RecallIndex>, Option<IndexQuality>), IndexError> {
    build_with_file(vectors, settings, sample_queries, None)
}

/// [`build`], but our graph is read from `graph_file` when that file holds a graph built with the
/// same parameters for these very vectors (its fingerprint), and saved there after a build
/// otherwise: a restart or a replica then skips the build (seconds at 100k items) and only loads
/// (a tenth of a second). A missing, stale or corrupt file is rebuilt; a failed save only logs.
pub fn build_with_file(
    vectors: Arc<ItemVectors>,
    settings: &IndexSettings,
    sample_queries: &[Vec<f32>],
    graph_file: Option<&std::path::Path>,
) -> Result<(Arc<dyn RecallIndex>, Option<IndexQuality>), IndexError> {
    check_finite(&vectors)?;
    let mut graph_from_file = false;
    let exact = ExactIndex::new(vectors.clone());
    let graph: Box<dyn GraphLike> = match settings.kind {
        IndexKind::Exact => return Ok((Arc::new(exact), None)),
        IndexKind::Auto if vectors.len() < settings.exact_below => {
            return Ok((Arc::new(exact), None))
        }
        IndexKind::HnswRs => Box::new(HnswRsIndex::build(
            vectors.clone(),
            settings.hnsw.clone(),
            settings.exact_filter_below,
        )?),
        IndexKind::Auto | IndexKind::Graph => {
            let params = GraphParams::from_hnsw(&settings.hnsw);
            let saved = graph_file.and_then(|path| load_saved_graph(path, &vectors, &params));
            graph_from_file = saved.is_some();
            let graph = match saved {
                Some(graph) => graph,
                None => {
                    let graph = GraphIndex::build(vectors.clone(), params, 0)?;
                    if let Some(path) = graph_file {
                        if let Err(e) = graph.save(path) {
                            tracing::warn!(error = %e, "could not save the graph; the next start rebuilds it");
                        }
                    }
                    graph
                }
            };
            Box::new(
                graph
                    .with_ef_search(settings.hnsw.ef_search)
                    .with_exact_filter_below(settings.exact_filter_below),
            )
        }
    };
    let queries: Vec<Vec<f32>> = sample_queries
        .iter()
        .take(settings.check_queries)
        .cloned()
        .collect();
    // One exact pass for both depths: the exact top 10 is the top 100's prefix (same tie rule).
    let truth_100 = exact_truth(&exact, &queries, 100, Filter::All)?;
    let truth: Vec<Vec<u32>> = truth_100
        .iter()
        .map(|t| t[..t.len().min(10)].to_vec())
        .collect();
    let mut graph = graph;
    let target_recall = (settings.target_recall > 0.0).then_some(settings.target_recall);
    if let Some(target) = target_recall {
        let ef = tune_ef(graph.as_index(), &queries, &truth, target)?;
        graph.set_ef_search(ef);
    }
    // The breadth and self-recall are measured on the graph alone: it serves the queries the norm
    // walk cannot settle, and the walk would hide large-norm items the graph cannot reach.
    let self_recall = graph.self_recall(&exact, settings.check_queries)?;
    let norm_scan = graph.enable_norm_scan(settings.norm_scan_items, &queries);
    let recall_at_10 = recall_against(graph.as_index(), &queries, &truth, 10, None, Filter::All)?;
    let recall_at_100 = recall_against(
        graph.as_index(),
        &queries,
        &truth_100,
        100,
        None,
        Filter::All,
    )?;
    let quality = IndexQuality {
        recall_at_10,
        recall_at_100,
        norm_scan,
        ef_search: graph.ef_search(),
        target_recall,
        self_recall,
        queries: queries.len(),
        graph_from_file,
    };
    if recall_at_10 < settings.min_recall {
        return Err(IndexError::BelowFloor {
            what: "recall@10 against brute force",
            value: recall_at_10,
            floor: settings.min_recall,
        });
    }
    Ok((graph.into_arc(), Some(quality)))
}

/// The graph saved at `path` if it was built with `params`' links for exactly `vectors`; `None`
/// (logged unless the file is simply absent) means build it.
fn load_saved_graph(
    path: &std::path::Path,
    vectors: &Arc<ItemVectors>,
    params: &GraphParams,
) -> Option<GraphIndex> {
    if !path.exists() {
        return None;
    }
    match GraphIndex::load(path, vectors.clone()) {
        Ok(graph) if graph.params().same_links(params) => Some(graph),
        Ok(_) => {
            tracing::info!(path = %path.display(), "saved graph has other parameters; rebuilding");
            None
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "saved graph not usable; rebuilding");
            None
        }
    }
}

/// What `build` needs of either graph index beyond [`RecallIndex`].
trait GraphLike: RecallIndex {
    fn self_recall(&self, exact: &ExactIndex, sample: usize) -> Result<f64, IndexError>;
    /// The default search breadth, and changing it (a search parameter: the graph stays).
    fn ef_search(&self) -> usize;
    fn set_ef_search(&mut self, ef: usize);
    /// Turns the exact norm walk on for our graph when it settles enough of `queries` (see
    /// [`NormScanReport`]); None for indexes without one.
    fn enable_norm_scan(&mut self, _limit: usize, _queries: &[Vec<f32>]) -> Option<NormScanReport> {
        None
    }
    fn as_index(&self) -> &dyn RecallIndex;
    fn into_arc(self: Box<Self>) -> Arc<dyn RecallIndex>;
}

impl GraphLike for HnswRsIndex {
    fn self_recall(&self, exact: &ExactIndex, sample: usize) -> Result<f64, IndexError> {
        HnswRsIndex::self_recall(self, exact, sample)
    }
    fn ef_search(&self) -> usize {
        self.params().ef_search
    }
    fn set_ef_search(&mut self, ef: usize) {
        HnswRsIndex::set_ef_search(self, ef);
    }
    fn as_index(&self) -> &dyn RecallIndex {
        self
    }
    fn into_arc(self: Box<Self>) -> Arc<dyn RecallIndex> {
        Arc::from(self as Box<dyn RecallIndex>)
    }
}

impl GraphLike for GraphIndex {
    fn self_recall(&self, _exact: &ExactIndex, sample: usize) -> Result<f64, IndexError> {
        GraphIndex::self_recall(self, sample, None)
    }
    fn ef_search(&self) -> usize {
        self.params().ef_search
    }
    fn set_ef_search(&mut self, ef: usize) {
        GraphIndex::set_ef_search(self, ef);
    }
    fn enable_norm_scan(&mut self, limit: usize, queries: &[Vec<f32>]) -> Option<NormScanReport> {
        self.set_norm_scan(limit);
        let Some(exact_share_at_10) = self.norm_scan_exact_share(queries, 10) else {
            // Off, or too short a walk for k = 10 (fewer than 80 items): serve the graph alone.
            self.set_norm_scan(0);
            return None;
        };
        let enabled = exact_share_at_10 >= MIN_NORM_SCAN_SHARE;
        let report = NormScanReport {
            items: limit.min(self.len()),
            exact_share_at_10,
            exact_share_at_100: self.norm_scan_exact_share(queries, 100),
            enabled,
        };
        if !enabled {
            self.set_norm_scan(0);
        }
        Some(report)
    }
    fn as_index(&self) -> &dyn RecallIndex {
        self
    }
    fn into_arc(self: Box<Self>) -> Arc<dyn RecallIndex> {
        Arc::from(self as Box<dyn RecallIndex>)
    }
}

/// Keeps the k best hits seen so far; `push` is O(log k).
pub(crate) struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<HeapHit>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct HeapHit(Hit);

impl Eq for HeapHit {}

impl PartialOrd for HeapHit {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HeapHit {
    // Higher score first; among equal scores the lower item id wins, so results are deterministic.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .score
            .total_cmp(&other.0.score)
            .then(other.0.item.cmp(&self.0.item))
    }
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: std::collections::BinaryHeap::with_capacity(k + 1),
        }
    }

    /// The score an item must beat to enter (−∞ until k items are held).
    #[inline]
    pub(crate) fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0.score)
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, item: u32, score: f32) {
        if self.k == 0 {
            return;
        }
        let hit = HeapHit(Hit { item, score });
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(hit));
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if hit > worst.0 {
                *worst = std::cmp::Reverse(hit);
            }
        }
    }

    /// The held hits, best first.
    pub(crate) fn into_sorted(self) -> Vec<Hit> {
        let mut v: Vec<HeapHit> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v.into_iter().map(|h| h.0).collect()
    }
}
