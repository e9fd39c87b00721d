//! Our own HNSW graph index over the item vectors (Malkov & Yashunin 2018, "Efficient and robust
//! approximate nearest neighbor search using Hierarchical Navigable Small World graphs", TPAMI).
//!
//! Hierarchical layers with a geometric level distribution (mL = 1/ln M), greedy descent through the
//! upper layers, beam search with `ef` on layer 0, and the neighbour-selection heuristic (Alg. 4)
//! both when linking a new node and when pruning a full list.
//!
//! **Distance used to build and search.** Searches rank by −⟨q, x⟩ (or −cos): inner product is
//! not a metric, but the beam only needs an order "closer than", and no norm-augmentation trick is
//! needed (that reduction recalled 0.79 at ef 128 with hnsw_rs, issue 3). The build uses the same
//! −⟨·,·⟩ to find, rank and prune (the heuristic), as hnswlib's `ip` space does, so links point
//! towards what inner-product queries want (large norms in the right direction) and the graph is
//! comparable link for link with hnswlib's. Measured alternatives ([`BuildSpace`]), clustered
//! vectors, M 16, efC 200, ef 64, recall@10 / self-recall (an item found for its own vector whenever
//! exact search ranks it top-10) / build seconds on 2 loaded cores:
//!
//! | build | 20k × 32 | 50k × 64 | 200k × 64 |
//! |---|---|---|---|
//! | −⟨·,·⟩ (default) | 0.990 / 0.86 | 0.998 / 0.76 / 15 s | 0.991 / 0.58 / 64 s |
//! | −⟨·,·⟩, L2 domination test ×1.2 | 0.997 / 0.998 | 1.000 / 0.994 / 15 s | 0.923 / 0.89 / 141 s |
//! | ‖·‖² throughout | 0.917 / 0.97 | – | – |
//!
//! hnswlib's own self-recall on the 20k set was 0.84: under −⟨·,·⟩ a large-norm neighbour
//! "dominates" middling-norm items in the heuristic, so they lose their incoming links. That is a
//! property of inner-product graphs, not of the parallel build. So after the build one repair pass
//! (`build::link_missed`) searches every item's own vector the way serving does and links each
//! item it misses (though exact search ranks it top-10) from the nodes that search ended on; a
//! second pass catches what the first one's links moved. At 200k × 64: self-recall 0.645 → 0.998
//! and recall@10 at ef 64 0.990 → 0.997, for two narrow searches per item on top of the build.
//! Cosine graphs get the same passes: there a parallel build (not a one-thread one) leaves a few
//! items without a path to them, which the passes link (3,000 × 16: 1–15 items → 0).
//!
//! Searches walk 8-bit codes of the vectors (`codes.rs`) and re-score the final `ef` candidates
//! with the f32 vectors, so returned scores are exact.
//!
//! Layout: vectors contiguous (shared `Arc<ItemVectors>` for inner product, one normalised copy for
//! cosine), fixed-size u32 neighbour slots (`links.rs`), per-thread visited bitset
//! (`search.rs`), the walks' kernel choice and heap keys (`kernel.rs`, `order.rs`), atomic
//! tombstones (`tombstones.rs`), a versioned checksummed file (`persist.rs`).

mod build;
mod codes;
mod head;
mod kernel;
mod links;
mod order;
mod persist;
mod scan;
mod search;
mod tombstones;

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use persist::GraphFileError;

use self::build::{Builder, Entry};
use self::codes::Codes;
use self::head::NormHead;
use self::kernel::{Kernel, Portable};
use self::links::Links;
use self::order::Far;
use self::search::{with_scratch, Limits, Scratch, View};
use self::tombstones::Tombstones;
use super::{
    check_appended, check_finite, check_finite_rows, check_query, check_range, Filter, Hit,
    HnswParams, IndexError, IndexInfo, RecallIndex,
};
use crate::rng::Rng;
use crate::vectors::ItemVectors;

/// What "similar" means for a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// ⟨query, item⟩ on the raw vectors: user → item recall (FM ranking).
    #[default]
    InnerProduct,
    /// cos(query, item): item → similar items; scores are cosines.
    Cosine,
}

/// The distance the graph is built with (searches always rank by the index's [`Metric`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildSpace {
    /// −⟨a, b⟩ throughout, the order the searches use (hnswlib's `ip`). The default: best
    /// recall@10 and build time at 200k (module documentation).
    #[default]
    InnerProduct,
    /// ‖a − b‖²: a metric, so every node stays among its geometric neighbours' links.
    L2,
    /// Candidates found and ranked by −⟨a, b⟩, but the heuristic prunes e for a kept r only when
    /// ‖e − r‖ is clearly below ‖e − base‖ (geometric domination). Raises self-recall, but at 200k
    /// it lowered recall@10 and doubled the build time (module documentation).
    InnerProductL2Prune,
}

/// Graph parameters (unchecked; [`GraphParams::check`] is run by every constructor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GraphParams {
    /// Links per node on upper layers (M); layer 0 holds 2M.
    pub m: usize,
    /// Beam width while building.
    pub ef_construction: usize,
    /// Beam width of live inserts ([`RecallIndex::insert`]); 0 = automatic: a quarter of
    /// `ef_construction`, at least 64 (and at most `ef_construction`). Only inserts use it: the
    /// built graph does not depend on it. bench-live, 900k built + 100k inserted, recall@10 at
    /// ef 64 after the inserts (a fresh build: 0.982) and inserts/s with a query thread running:
    /// 64 → 0.978 at 5,081/s, 100 → 0.978 at 4,007/s (at 90k + 10k, 200 recalled as 100 did).
    pub ef_insert: usize,
    /// Default beam width while searching.
    pub ef_search: usize,
    /// Seed of the level draws.
    pub seed: u64,
    /// Build threads; 0 = every core.
    pub threads: usize,
    /// Inner product or cosine.
    pub metric: Metric,
    /// The distance used to link the graph.
    pub build_space: BuildSpace,
    /// Steer searches by 8-bit codes of the vectors and re-score the final `ef` candidates
    /// exactly (`codes.rs`); a search setting, the links do not depend on it.
    pub quantized: bool,
}

impl Default for GraphParams {
    fn default() -> Self {
        GraphParams {
            m: 16,
            ef_construction: 200,
            ef_insert: 0,
            ef_search: 64,
            seed: 0x5EED,
            threads: 0,
            metric: Metric::InnerProduct,
            build_space: BuildSpace::InnerProduct,
            quantized: true,
        }
    }
}

impl GraphParams {
    /// The shared graph settings of `[index.hnsw]` (M, ef_construction, ef_search).
    pub fn from_hnsw(p: &HnswParams) -> Self {
        GraphParams {
            m: p.m,
            ef_construction: p.ef_construction,
            ef_search: p.ef_search,
            ..GraphParams::default()
        }
    }

    /// Checks the ranges.
    pub fn check(&self) -> Result<(), IndexError> {
        check_range("graph.m", self.m, 2..=256, "in 2..=256")?;
        check_range(
            "graph.ef_construction",
            self.ef_construction,
            1..=10_000,
            "in 1..=10000",
        )?;
        check_range(
            "graph.ef_insert",
            self.ef_insert,
            0..=10_000,
            "in 0..=10000",
        )?;
        check_range(
            "graph.ef_search",
            self.ef_search,
            1..=10_000,
            "in 1..=10000",
        )?;
        check_range("graph.threads", self.threads, 0..=1024, "in 0..=1024")
    }

    /// Whether a graph built with `other` has the same links as one built with these (everything
    /// but the search breadth and the thread count).
    pub fn same_links(&self, other: &GraphParams) -> bool {
        self.m == other.m
            && self.ef_construction == other.ef_construction
            && self.seed == other.seed
            && self.metric == other.metric
            && self.build_space == other.build_space
    }

    /// The beam width live inserts use (`ef_insert`, or the automatic choice when it is 0).
    pub fn insert_ef(&self) -> usize {
        if self.ef_insert == 0 {
            (self.ef_construction / 4).max(64).min(self.ef_construction)
        } else {
            self.ef_insert
        }
    }

    fn threads(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.threads
        }
    }
}

/// Beam width of the self-recall repair searches (`build::link_missed`), fixed so that the links
/// do not depend on the search setting `ef_search`. A narrower beam misses more items, so it links
/// more of them, and costs less: at 200k × 64 (two passes, quiet machine) ef 16 / 24 / 32 / 64 gave
/// self-recall at ef 64 of 0.994 / 0.998 / 0.998 / 0.996 and build times of 16.7 / 19.4 / 23.0 /
/// 25.6 s (hnswlib: 13.6 s).
const REPAIR_EF: usize = 24;
/// Repair passes: the second catches items whose search path the first pass's links changed (at
/// ef 64 it linked 1,155 more after 20,829; self-recall 0.979 after one pass, 0.996 after two).
const REPAIR_PASSES: usize = 2;

/// Self-recall repair passes (`build::link_missed`) a live insert runs over the nodes it linked.
/// Measured with bench-live at 90k + 10k inserts (ef_insert 100, repair links kept out of later
/// pruning): self-recall at ef 64 after the inserts 0.938 with none, 0.959 with one, 0.957 with
/// two (a fresh build: 1.000); recall@10 0.9968 / 0.9968 / 0.9970. One pass costs about a tenth
/// of an insert.
const INSERT_REPAIR_PASSES: usize = 1;

/// Searches per plan, since the index was built: unfiltered graph walks, filtered graph walks,
/// exact scans of the allowed items chosen up front ([`GraphIndex::plan_exact`]), and filtered walks
/// given up for an exact scan (over budget, or fewer than k found).
#[derive(Default)]
struct PlanCounts {
    graph: AtomicU64,
    filtered_graph: AtomicU64,
    exact_scan: AtomicU64,
    graph_then_exact: AtomicU64,
}

/// Which way a search went, for [`PlanCounts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Graph,
    FilteredGraph,
    ExactScan,
    GraphThenExact,
}

impl PlanCounts {
    fn count(&self, plan: Plan) {
        let counter = match plan {
            Plan::Graph => &self.graph,
            Plan::FilteredGraph => &self.filtered_graph,
            Plan::ExactScan => &self.exact_scan,
            Plan::GraphThenExact => &self.graph_then_exact,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "graph": self.graph.load(Ordering::Relaxed),
            "filtered_graph": self.filtered_graph.load(Ordering::Relaxed),
            "exact_scan": self.exact_scan.load(Ordering::Relaxed),
            "graph_then_exact": self.graph_then_exact.load(Ordering::Relaxed),
        })
    }
}

/// Selectivity classes of the walk-cost estimates: class c holds filters allowing about 2^-c of
/// the items (c = 0: more than half; the last class everything below 2^-(CLASSES-1)).
const COST_CLASSES: usize = 16;

/// What a filtered walk costs at each selectivity, as measured: an exponential moving average of
/// nodes scored per unit of ef (see `search::View::search_layer`), one per class, stored as f32
/// bits. Starts at a prior of M0 · 2^c / 4 per ef for class c (a beam holding ef allowed nodes
/// expands about ef / s nodes at selectivity s, scoring the fresh ones among their M0 neighbours),
/// then follows what completed walks cost.
struct WalkCosts([AtomicU32; COST_CLASSES]);

impl WalkCosts {
    /// Weight of the newest walk in the average.
    const RATE: f32 = 1.0 / 64.0;

    fn new(m0: usize) -> Self {
        WalkCosts(std::array::from_fn(|c| {
            let prior = m0 as f32 * (1u32 << c) as f32 / 4.0;
            AtomicU32::new(prior.to_bits())
        }))
    }

    fn class(allowed: usize, n: usize) -> usize {
        let ratio = n.max(1) as f64 / allowed.max(1) as f64;
        (ratio.log2().max(0.0) as usize).min(COST_CLASSES - 1)
    }

    /// Expected work of a walk with this `ef` over `allowed` of `n` items.
    fn expected(&self, allowed: usize, n: usize, ef: usize) -> f64 {
        let per_ef = f32::from_bits(self.0[Self::class(allowed, n)].load(Ordering::Relaxed));
        per_ef as f64 * ef as f64
    }

    /// Folds a completed walk's work into its class (a lost update under a race is harmless).
    fn record(&self, allowed: usize, n: usize, ef: usize, work: usize) {
        let cell = &self.0[Self::class(allowed, n)];
        let old = f32::from_bits(cell.load(Ordering::Relaxed));
        let new = old + Self::RATE * (work as f32 / ef.max(1) as f32 - old);
        cell.store(new.to_bits(), Ordering::Relaxed);
    }

    fn json(&self) -> serde_json::Value {
        self.0
            .iter()
            .map(|c| (f32::from_bits(c.load(Ordering::Relaxed)) * 10.0).round() / 10.0)
            .collect()
    }
}

/// Levels above this are never drawn (probability M^-30); keeps a corrupt or adversarial seed sane.
const MAX_LEVEL: usize = 30;

/// The HNSW graph index: a [`RecallIndex`] that is `Send + Sync`, searched from many threads while
/// one caller at a time inserts (see "Live inserts" in `docs/recall-index.md`).
pub struct GraphIndex {
    /// The item vectors, shared with the caller who appends rows to them.
    vectors: Arc<ItemVectors>,
    /// The vectors the graph walks: `vectors` itself for inner product, its normalised copy (with
    /// the same capacity) for cosine.
    space: Arc<ItemVectors>,
    params: GraphParams,
    /// Slots and levels for every row the vectors have room for.
    links: Links,
    /// Byte codes of `space`, used when `params.quantized`; room for the capacity.
    codes: Codes,
    entry: Entry,
    /// Nodes linked: rows `0..len` are findable (a node being linked may be found before).
    len: AtomicUsize,
    /// One lock per node slot, held while a list is rewritten (build and inserts).
    locks: Box<[Mutex<()>]>,
    /// One inserting caller at a time (the trait's contract, enforced).
    inserting: Mutex<()>,
    tombstones: Tombstones,
    exact_filter_below: usize,
    /// How many searches took each plan (reported by `info`).
    plans: PlanCounts,
    /// What filtered walks cost, by selectivity: the planner's measure of the graph.
    walk_costs: WalkCosts,
    /// Breadths of selective filtered walks by the share of the items a filter allows, ascending
    /// in share (chosen at load: `build::tune_filtered_ef`). A filter walks at the breadth of the
    /// largest share not above its own (below them all: the first). Empty: `ef_search`.
    filtered_efs: Vec<(f64, usize)>,
    /// Filtered searches always walk (the planner off): how the breadth is tuned.
    walks_only: bool,
    /// Filters allowing fewer than this share of the items are scanned exactly (load-time
    /// tuning found the walks short of the target there).
    exact_below_share: f64,
    /// The largest-norm items for the exact bounded walk tried before the graph (`head.rs`); None
    /// when off or for cosine graphs. Derived from the vectors, so not saved with the graph.
    head: Option<NormHead>,
    /// SHA-256 of the item vectors the graph was built or loaded for (see `persist.rs`), and how
    /// many rows it covers (a save after inserts hashes the rows linked then).
    fingerprint: ([u8; 32], usize),
    build_seconds: f64,
}

/// The normalised rows of `v`, in a copy with the same capacity (cosine graphs walk it).
fn normalised(v: &ItemVectors) -> ItemVectors {
    let mut data = v.as_slice().to_vec();
    for row in data.chunks_exact_mut(v.dim()) {
        normalise(row);
    }
    ItemVectors::from_raw(v.dim(), data).with_capacity(v.capacity())
}

fn normalise(row: &mut [f32]) {
    let norm = crate::kernels::dot(row, row).sqrt();
    // A zero vector stays zero: cosine 0 with everything rather than NaN.
    if norm > 0.0 {
        row.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Geometric levels, P(level ≥ l) = M^-l (the paper's mL = 1/ln M), from a fixed seed.
fn draw_levels(n: usize, m: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::derive(seed, 0x1E7E1);
    let ml = 1.0 / (m as f64).ln();
    (0..n)
        .map(|_| {
            let u = 1.0 - rng.uniform(); // in (0, 1], so ln is finite
            ((-u.ln() * ml).floor() as usize).min(MAX_LEVEL) as u8
        })
        .collect()
}

/// The norm walk runs for k up to an eighth of its items: it read 18–23 × k items before its bound
/// stopped it on the load-benchmark model (`head.rs`), so a larger k would mostly read the whole
/// head and then pay for the graph as well.
fn walks(head: &NormHead, k: usize) -> bool {
    k * 8 <= head.len()
}

/// A search on byte codes re-scores this many times k of its nearest candidates (at least k + 8)
/// exactly: on a 100k x 65 model re-scoring 2k instead of all ef changed recall@10 by at most
/// 0.001, while each re-scored row is a cache miss. The load-time check measures the result.
const RESCORE_FACTOR: usize = 2;

impl GraphIndex {
    /// Builds the graph over `vectors` on `params.threads` threads, with room for inserts up to
    /// the vectors' capacity ([`RecallIndex::insert`]). Filtered searches that allow at most
    /// `exact_filter_below` items scan them exactly. **Errors** on bad parameters, non-finite
    /// vectors, or a capacity of 2³² − 1 items or more.
    pub fn build(
        vectors: Arc<ItemVectors>,
        params: GraphParams,
        exact_filter_below: usize,
    ) -> Result<Self, IndexError> {
        params.check()?;
        check_finite(&vectors)?;
        let started = Instant::now();
        let n = vectors.len();
        let capacity = vectors.capacity();
        let too_many = || IndexError::InvalidParameter {
            name: "items",
            allowed: "a capacity below 2^32 - 1 for a graph",
            value: capacity.to_string(),
        };
        if capacity >= u32::MAX as usize {
            return Err(too_many());
        }
        let fingerprint = (persist::fingerprint(&vectors, n), n);
        // Levels for the whole capacity: the first n draws are the ones a graph without headroom
        // gets, so the trained items' graph (and its file) does not depend on the headroom.
        let links = Links::new(
            draw_levels(capacity, params.m, params.seed),
            params.m,
            2 * params.m,
        )
        .ok_or_else(too_many)?;
        let threads = params.threads();
        let mut graph = Self::from_parts(vectors, params, links, None, fingerprint, n)
            .with_exact_filter_below(exact_filter_below);
        build::build(
            &graph.space,
            &graph.links,
            n,
            graph.params.ef_construction,
            threads,
            graph.params.build_space,
            &graph.locks,
            &graph.entry,
        );
        // Both metrics (module documentation): the pruning of −⟨·,·⟩ and, under either, a
        // parallel build leave items that a search for their own vector cannot reach.
        if let Some(entry) = graph.entry.get() {
            let view = graph.search_view();
            let codes = graph.params.quantized.then_some(&graph.codes);
            // The second pass catches items whose path the first pass's new links changed.
            for _ in 0..REPAIR_PASSES {
                build::link_missed(&view, codes, entry, REPAIR_EF, 0..n, threads);
            }
        }
        graph.build_seconds = started.elapsed().as_secs_f64();
        Ok(graph)
    }

    /// A graph from its parts, after a build or a load: the walked space (normalised for cosine),
    /// the byte codes of its `n` rows with room for the capacity, node locks, no tombstones, the
    /// default filtered-search threshold, no build time.
    fn from_parts(
        vectors: Arc<ItemVectors>,
        params: GraphParams,
        links: Links,
        entry: Option<(u32, usize)>,
        fingerprint: ([u8; 32], usize),
        n: usize,
    ) -> Self {
        let space = match params.metric {
            Metric::InnerProduct => vectors.clone(),
            Metric::Cosine => Arc::new(normalised(&vectors)),
        };
        let capacity = links.capacity();
        let m0 = links.m0;
        let codes = Codes::encode_with_capacity(
            &space.as_slice()[..n * space.dim()],
            space.dim(),
            capacity,
        );
        GraphIndex {
            codes,
            tombstones: Tombstones::new(capacity),
            locks: build::node_locks(capacity),
            inserting: Mutex::new(()),
            vectors,
            space,
            links,
            entry: Entry::new(entry),
            len: AtomicUsize::new(n),
            exact_filter_below: super::IndexSettings::default().exact_filter_below,
            plans: PlanCounts::default(),
            walk_costs: WalkCosts::new(m0),
            filtered_efs: Vec::new(),
            walks_only: false,
            exact_below_share: 0.0,
            head: None,
            fingerprint,
            build_seconds: 0.0,
            params,
        }
    }

    /// What searches walk: the vectors and the links (a quantised search adds the byte codes and
    /// its prepared query).
    fn search_view(&self) -> View<'_> {
        View {
            vectors: &self.space,
            links: &self.links,
            norms: &[],
            l2: false,
            prune_l2: false,
            codes: None,
        }
    }

    /// Rows the graph has room for before it must be regrown ([`RecallIndex::regrown`]).
    pub fn capacity(&self) -> usize {
        self.links.capacity()
    }

    /// [`RecallIndex::regrown`] with the concrete type: this graph over `vectors`, a larger copy
    /// of its item vectors (the same rows first), with its lists, codes, levels and tombstones
    /// copied into room for the new capacity and the norm walk made afresh over every item.
    /// **Errors** if `vectors` has another width, fewer rows than are linked, or less room.
    pub fn regrow(&self, vectors: Arc<ItemVectors>) -> Result<GraphIndex, IndexError> {
        // No insert may run while the structure is copied.
        let _one = self
            .inserting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = self.len();
        let capacity = vectors.capacity();
        if vectors.dim() != self.vectors.dim() || vectors.len() < n || capacity < self.capacity() {
            return Err(IndexError::InvalidParameter {
                name: "regrown vectors",
                allowed: "a larger copy of the index's vectors (same width, same rows first)",
                value: format!(
                    "{} rows of {} (capacity {capacity}) for an index of {n} rows of {} (capacity {})",
                    vectors.len(),
                    vectors.dim(),
                    self.vectors.dim(),
                    self.capacity()
                ),
            });
        }
        if capacity >= u32::MAX as usize {
            return Err(IndexError::InvalidParameter {
                name: "items",
                allowed: "a capacity below 2^32 - 1 for a graph",
                value: capacity.to_string(),
            });
        }
        let old = self.capacity();
        let mut levels = self.links.levels.clone();
        levels.extend_from_slice(&draw_levels(capacity, self.params.m, self.params.seed)[old..]);
        let too_many = || IndexError::InvalidParameter {
            name: "items",
            allowed: "upper layers addressable with u32 offsets",
            value: capacity.to_string(),
        };
        let links = self.links.grown(levels).ok_or_else(too_many)?;
        let space = match self.params.metric {
            Metric::InnerProduct => vectors.clone(),
            Metric::Cosine => Arc::new(self.space.with_capacity(capacity)),
        };
        let mut graph = GraphIndex {
            codes: self.codes.grown(n, capacity),
            tombstones: self.tombstones.grown(capacity),
            locks: build::node_locks(capacity),
            inserting: Mutex::new(()),
            vectors,
            space,
            links,
            entry: Entry::new(self.entry.get()),
            len: AtomicUsize::new(n),
            exact_filter_below: self.exact_filter_below,
            plans: PlanCounts::default(),
            walk_costs: WalkCosts::new(self.links.m0),
            filtered_efs: self.filtered_efs.clone(),
            walks_only: self.walks_only,
            exact_below_share: self.exact_below_share,
            head: None,
            fingerprint: self.fingerprint,
            build_seconds: self.build_seconds,
            params: self.params.clone(),
        };
        if let Some(head) = &self.head {
            graph.set_norm_scan(head.limit());
        }
        Ok(graph)
    }

    /// Links rows `first..first + count` (see [`RecallIndex::insert`]).
    fn insert_rows(&self, first: u32, count: usize) -> Result<(), IndexError> {
        let _one = self
            .inserting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        check_appended(&self.vectors, first, count)?;
        let n = self.len();
        let end = n + count;
        if first as usize != n {
            return Err(IndexError::InvalidParameter {
                name: "inserted rows",
                allowed: "the rows right after the linked ones, in order",
                value: format!("{first}.. (linked: 0..{n})"),
            });
        }
        if count == 0 {
            return Ok(());
        }
        if end > self.capacity() {
            return Err(IndexError::InvalidParameter {
                name: "inserted rows",
                allowed: "within the capacity the graph was built for (regrow it)",
                value: format!("{n}..{end} (capacity {})", self.capacity()),
            });
        }
        if self.params.build_space != BuildSpace::InnerProduct {
            // Those spaces keep a squared-norm table of the build's rows only.
            return Err(IndexError::InvalidParameter {
                name: "live inserts",
                allowed: "graphs built in the inner-product build space",
                value: format!("{:?}", self.params.build_space),
            });
        }
        check_finite_rows(&self.vectors, n..end)?;
        // Everything a reader could touch about a node is written before the first link to it
        // (module documentation, "Live inserts"): the walked row, its code, its norm-walk entry.
        let mut row = Vec::with_capacity(self.vectors.dim());
        for i in n..end {
            if self.params.metric == Metric::Cosine {
                row.clear();
                row.extend_from_slice(self.vectors.row(i));
                normalise(&mut row);
                if self.space.push(&row) != Some(i as u32) {
                    return Err(IndexError::InvalidParameter {
                        name: "inserted rows",
                        allowed: "appended in order to a graph's vectors",
                        value: i.to_string(),
                    });
                }
            }
            let walked = self.space.row(i);
            // SAFETY: row i is not linked yet (inserts run one at a time, under `inserting`, and
            // link only rows below `end` after this loop); the links' Release stores publish it.
            unsafe { self.codes.encode_row(i as u32, walked) };
            if let Some(head) = &self.head {
                head.note(i as u32, walked);
            }
        }
        let mut start = n;
        if self.entry.start(n as u32, self.links.levels[n] as usize) {
            start += 1;
        }
        let view = self.search_view();
        let builder = Builder {
            view: self.search_view(),
            locks: &self.locks,
            entry: &self.entry,
            ef_construction: self.params.insert_ef(),
        };
        build::link_nodes(&builder, start..end, self.params.threads());
        for _ in 0..INSERT_REPAIR_PASSES {
            if let Some(entry) = self.entry.get() {
                let codes = self.params.quantized.then_some(&self.codes);
                build::link_missed(
                    &view,
                    codes,
                    entry,
                    REPAIR_EF,
                    n..end,
                    self.params.threads(),
                );
            }
        }
        self.len.store(end, Ordering::Release);
        Ok(())
    }

    /// A cosine graph for similar-item search (scores are cosines of the item vectors).
    pub fn build_cosine(
        vectors: Arc<ItemVectors>,
        params: GraphParams,
        exact_filter_below: usize,
    ) -> Result<Self, IndexError> {
        let params = GraphParams {
            metric: Metric::Cosine,
            ..params
        };
        Self::build(vectors, params, exact_filter_below)
    }

    /// Changes the filtered-search threshold (e.g. after [`GraphIndex::load`]).
    pub fn with_exact_filter_below(mut self, exact_filter_below: usize) -> Self {
        self.exact_filter_below = exact_filter_below;
        self
    }

    /// Changes the threads a live insert links a batch with (0 = every core; the build's setting
    /// until then).
    pub fn with_insert_threads(mut self, threads: usize) -> Self {
        self.params.threads = threads;
        self
    }

    /// Changes the default search breadth (a search parameter: the links do not depend on it).
    pub fn with_ef_search(mut self, ef_search: usize) -> Self {
        self.set_ef_search(ef_search);
        self
    }

    /// [`GraphIndex::with_ef_search`] in place.
    pub fn set_ef_search(&mut self, ef_search: usize) {
        self.params.ef_search = ef_search.max(1);
    }

    /// Tries an exact walk over the `limit` largest-norm items before the graph (`head.rs`); 0
    /// turns it off. Inner-product graphs only (a cosine graph's vectors all have norm 1).
    pub fn set_norm_scan(&mut self, limit: usize) {
        self.head = (limit > 0 && self.params.metric == Metric::InnerProduct)
            .then(|| NormHead::new(&self.space, &self.codes, self.len(), limit));
    }

    /// Share of `queries` whose exact top `k` the norm walk settles without the graph (None when
    /// the walk is off or does not run for this `k`).
    pub fn norm_scan_exact_share(&self, queries: &[Vec<f32>], k: usize) -> Option<f64> {
        let head = self.head.as_ref().filter(|h| walks(h, k))?;
        let exact = queries
            .iter()
            .filter(|q| head.scan::<Portable>(q, k, |_| true).exact)
            .count();
        Some(exact as f64 / queries.len().max(1) as f64)
    }

    /// Turns the quantised search (see [`GraphParams::quantized`]) on or off.
    pub fn with_quantized(mut self, quantized: bool) -> Self {
        self.params.quantized = quantized;
        self
    }

    /// The parameters it was built with.
    pub fn params(&self) -> &GraphParams {
        &self.params
    }

    /// Number of items linked (findable).
    #[inline]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether the index holds no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deactivates (`false`) or reactivates (`true`) an item: searches skip deactivated items like a
    /// filter, from any thread, without a rebuild. Returns whether the state changed. **Errors** if
    /// `item` is not in the index. Tombstones are catalog state and are not saved with the graph.
    pub fn set_active(&self, item: u32, active: bool) -> Result<bool, IndexError> {
        if item as usize >= self.len() {
            return Err(IndexError::InvalidParameter {
                name: "item",
                allowed: "below the number of items",
                value: item.to_string(),
            });
        }
        Ok(self.tombstones.set_dead(item, !active))
    }

    /// Whether `item` exists and is active.
    pub fn is_active(&self, item: u32) -> bool {
        (item as usize) < self.len() && !self.tombstones.is_dead(item)
    }

    /// Number of deactivated items.
    pub fn deactivated(&self) -> usize {
        self.tombstones.count()
    }

    /// Share of a sample of `sample` items that the graph returns (top-10 at `ef`) for their own
    /// vector, among those that exact search returns for it (under inner product an item need not
    /// be its own best match; a graph that cannot reach a point fails).
    pub fn self_recall(&self, sample: usize, ef: Option<usize>) -> Result<f64, IndexError> {
        super::measure::self_recall(self, &self.space, sample, ef)
    }

    /// How many items a search under `filter` may return (exact for `Only`, a lower bound otherwise).
    fn allowed(&self, filter: Filter<'_>) -> usize {
        let n = self.len();
        let dead = self.tombstones.count();
        match filter {
            Filter::Only(_) | Filter::Bits(_) if dead > 0 => {
                filter.rows(n).filter(|&i| self.is_active(i)).count()
            }
            // A lower bound without a pass over the list (a user's seen items, on every recall).
            Filter::Exclude(list) => n.saturating_sub(list.len()).saturating_sub(dead),
            _ => filter.allowed_count(n).saturating_sub(dead),
        }
    }

    /// The norm walk first (exact when its bound stops it), else the graph merged with what the
    /// walk found. `Err` when a filtered walk gave up (see [`View::search_layer`]).
    #[inline(always)]
    fn search_graph<K: Kernel>(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        walk: Walk<'_>,
        s: &mut Scratch,
    ) -> Result<Vec<Hit>, GaveUp> {
        let Some(head) = self.head.as_ref().filter(|h| walks(h, k)) else {
            return self.walk_graph::<K>(q, k, ef, walk, s);
        };
        let t = &self.tombstones;
        let filter = walk.filter;
        let allow = |id| filter.allows(id) && !t.is_dead(id);
        if let WalkMode::Limited(_) = walk.mode {
            // Under a selective filter the walk goes first: its probe gives up on a filter that
            // removed the items near the query before the norm walk reads its rows in vain.
            let walked = self.walk_graph::<K>(q, k, ef, walk, s)?;
            let scan = head.scan_with::<K>(q, k, allow, &mut s.head);
            return Ok(if scan.exact {
                scan.hits
            } else {
                head::merge(walked, scan.hits, k)
            });
        }
        let scan = head.scan_with::<K>(q, k, allow, &mut s.head);
        if scan.exact {
            return Ok(scan.hits);
        }
        Ok(head::merge(
            self.walk_graph::<K>(q, k, ef, walk, s)?,
            scan.hits,
            k,
        ))
    }

    /// The graph alone: greedy descent, the beam on layer 0, then the best re-scored exactly.
    #[inline(always)]
    fn walk_graph<K: Kernel>(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        walk: Walk<'_>,
        s: &mut Scratch,
    ) -> Result<Vec<Hit>, GaveUp> {
        let Some((entry, top)) = self.entry.get() else {
            return Ok(Vec::new());
        };
        let quantized = self.params.quantized;
        let mut view = self.search_view();
        let mut prepared = std::mem::take(&mut s.prepared);
        if quantized {
            view.codes = Some((&self.codes, self.codes.prepare(q, &mut prepared)));
        }
        // Visited bits for every slot: a node linked while this search runs may be reached.
        s.begin(self.links.capacity());
        let start = (view.dist::<K>(q, 0.0, entry), entry);
        let ep = view.descend::<K>(q, 0.0, start, top, 0);
        let t = &self.tombstones;
        let filter = walk.filter;
        let walked = match walk.mode {
            WalkMode::Unfiltered => {
                // Unlimited walks never give up.
                let _ = view.search_layer::<K>(q, 0.0, ep, ef, 0, s, false, None, |_| true);
                Ok(())
            }
            WalkMode::Through => {
                // Unlimited walks never give up.
                let _ = view.search_layer::<K>(q, 0.0, ep, ef, 0, s, true, None, |id| {
                    filter.allows(id) && !t.is_dead(id)
                });
                Ok(())
            }
            WalkMode::Limited(limits) => {
                // A short allowed list is looked up in a bitmap instead of searched (the bits are
                // cleared through the list afterwards).
                let bits = match filter {
                    Filter::Only(list) if list.len() <= self.len() / 8 => {
                        let mut bits = std::mem::take(&mut s.allowed_bits);
                        bits.resize(bits.len().max(self.links.capacity().div_ceil(64)), 0);
                        for &i in list {
                            if let Some(w) = bits.get_mut(i as usize >> 6) {
                                *w |= 1 << (i & 63);
                            }
                        }
                        Some(bits)
                    }
                    _ => None,
                };
                let scored = match &bits {
                    Some(bits) => {
                        view.search_layer::<K>(q, 0.0, ep, ef, 0, s, true, Some(limits), |id| {
                            bits[id as usize >> 6] & (1 << (id & 63)) != 0 && !t.is_dead(id)
                        })
                    }
                    None => {
                        view.search_layer::<K>(q, 0.0, ep, ef, 0, s, true, Some(limits), |id| {
                            filter.allows(id) && !t.is_dead(id)
                        })
                    }
                };
                if let (Some(mut bits), Filter::Only(list)) = (bits, filter) {
                    for &i in list {
                        if let Some(w) = bits.get_mut(i as usize >> 6) {
                            *w = 0;
                        }
                    }
                    s.allowed_bits = bits;
                }
                // Walks over budget are recorded too (their work so far, a lower bound): a class
                // where most walks run out of budget then plans exact scans. A probe's give-up
                // says the query met an anti-correlated filter, not what walks of the class cost.
                match scored {
                    Ok(work) => self.walk_costs.record(walk.allowed, self.len(), ef, work),
                    Err(work) if work > limits.budget => {
                        self.walk_costs.record(walk.allowed, self.len(), ef, work)
                    }
                    Err(_) => {}
                }
                // Fewer than k found means the allowed part the walk reached was too small.
                match scored {
                    Err(work) if work <= limits.budget => Err(GaveUp::AgainstQuery),
                    Err(_) => Err(GaveUp::OverBudget),
                    Ok(_) if s.results.len() < k.min(walk.allowed) => Err(GaveUp::OverBudget),
                    Ok(_) => Ok(()),
                }
            }
        };
        s.prepared = prepared;
        if let Err(gave_up) = walked {
            s.results.clear();
            s.candidates.clear();
            return Err(gave_up);
        }
        // The beam's results, then the best k of them. A walk on byte codes ranked them
        // approximately: the 2k nearest by code distance (see RESCORE_FACTOR) are re-scored with
        // the f32 rows, so the order and scores returned are exact. Sorts, not heap pops.
        let mut best = std::mem::take(&mut s.rescored);
        best.clear();
        best.extend(s.results.drain());
        if quantized {
            let keep = (RESCORE_FACTOR * k).max(k + 8);
            if best.len() > keep {
                best.select_nth_unstable(keep - 1);
                best.truncate(keep);
            }
            // Those rows are cold (26 MiB of f32 at 100k x 65): request them all at once so that
            // their misses overlap instead of stalling the loop below one by one.
            for &Far(_, id) in &best {
                let row = self.space.linked_row(id as usize);
                for line in row.chunks(16) {
                    crate::kernels::prefetch(line.as_ptr());
                }
                if let Some(last) = row.last() {
                    crate::kernels::prefetch(last);
                }
            }
            // A plain loop: a closure passed to a non-inlined iterator would lose AVX2/FMA.
            for hit in best.iter_mut() {
                hit.0 = -K::dot(q, self.space.linked_row(hit.1 as usize));
            }
        }
        if best.len() > k {
            best.select_nth_unstable(k - 1);
            best.truncate(k);
        }
        best.sort_unstable();
        let out = best
            .iter()
            .map(|&Far(d, id)| Hit {
                item: id,
                score: -d,
            })
            .collect();
        s.rescored = best;
        Ok(out)
    }

    fn search_dispatch(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        walk: Walk<'_>,
        s: &mut Scratch,
    ) -> Result<Vec<Hit>, GaveUp> {
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::has_avx2() {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { search_avx2(self, q, k, ef, walk, s) };
        }
        self.search_graph::<Portable>(q, k, ef, walk, s)
    }

    /// The exact plan: every allowed row that is not deleted, by its byte code and re-scored when
    /// there are many and `by_codes` ([`scan`]), else by its f32 row.
    fn exact_scan(
        &self,
        q: &[f32],
        k: usize,
        filter: Filter<'_>,
        by_codes: bool,
        s: &mut Scratch,
    ) -> Vec<Hit> {
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::has_avx2() {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { exact_scan_avx2(self, q, k, filter, by_codes, s) };
        }
        self.exact_scan_with::<Portable>(q, k, filter, by_codes, s)
    }

    #[inline(always)]
    fn exact_scan_with<K: Kernel>(
        &self,
        q: &[f32],
        k: usize,
        filter: Filter<'_>,
        by_codes: bool,
        s: &mut Scratch,
    ) -> Vec<Hit> {
        let t = &self.tombstones;
        let rows = filter.rows(self.space.len());
        let mut prepared = std::mem::take(&mut s.prepared);
        let (codes, space, scan) = (&self.codes, &*self.space, &mut s.scan);
        let hits = if t.count() == 0 {
            scan::exact_scan::<K>(codes, space, q, k, rows, by_codes, &mut prepared, scan)
        } else {
            let rows = rows.filter(|&i| !t.is_dead(i));
            scan::exact_scan::<K>(codes, space, q, k, rows, by_codes, &mut prepared, scan)
        };
        s.prepared = prepared;
        hits
    }

    /// The planner for filtered searches: scan the `allowed` items exactly when that reads fewer
    /// rows than a filtered walk is expected to score nodes (each about one row's cost: a cache
    /// miss and a short dot product), as measured on this graph's completed walks of the same
    /// selectivity class ([`WalkCosts`]). The walk's own limits ([`View::search_layer`]) catch
    /// what no estimate from the count can: a filter that removes exactly the items near the
    /// query. `exact_filter_below` stays a floor, and so does the share below which the load-time
    /// tuning found walks short of the target (`exact_below_share`).
    fn plan_exact(&self, allowed: usize, ef: usize) -> bool {
        allowed <= self.exact_filter_below
            || (allowed as f64) < self.exact_below_share * self.len() as f64
            || allowed as f64 <= self.walk_costs.expected(allowed, self.len(), ef)
    }

    /// Sets one default breadth for walks under every selective filter (one removing more than
    /// 1/64 of the items; others use `ef_search`).
    pub fn set_filtered_ef(&mut self, ef: usize) {
        self.filtered_efs = vec![(0.0, ef.max(1))];
    }

    /// Sets the breadths of walks under selective filters by the share of the items a filter
    /// allows: `(share, ef)` pairs, each the breadth for filters allowing at least that share (a
    /// filter less selective than a class walks at that class's breadth, or narrower).
    pub fn set_filtered_efs(&mut self, by_share: &[(f64, usize)]) {
        let mut efs: Vec<(f64, usize)> = by_share
            .iter()
            .map(|&(share, ef)| (share.clamp(0.0, 1.0), ef.max(1)))
            .collect();
        efs.sort_by(|a, b| a.0.total_cmp(&b.0));
        self.filtered_efs = efs;
    }

    /// Turns the planner off (every filtered search walks the graph) or back on: the filtered
    /// breadth is tuned on the walks themselves, not on what the planner would scan instead.
    pub(crate) fn set_walks_only(&mut self, on: bool) {
        self.walks_only = on;
    }

    /// Filters allowing fewer than `share` of the items are scanned exactly, whatever the costs.
    pub fn set_exact_below_share(&mut self, share: f64) {
        self.exact_below_share = share.clamp(0.0, 1.0);
    }

    /// The widest default breadth of walks under a selective filter (that of the most selective
    /// class).
    pub fn filtered_ef(&self) -> usize {
        self.filtered_efs
            .iter()
            .map(|&(_, ef)| ef)
            .max()
            .unwrap_or(self.params.ef_search)
    }

    /// The default breadth of a walk under a selective filter allowing `allowed` items: that of
    /// the least selective class whose share is not above the filter's.
    fn filtered_ef_for(&self, allowed: usize) -> usize {
        let share = allowed as f64 / self.len().max(1) as f64;
        let mut chosen = None;
        for &(class_share, ef) in &self.filtered_efs {
            if chosen.is_some() && class_share > share {
                break;
            }
            chosen = Some(ef);
        }
        chosen.unwrap_or(self.params.ef_search)
    }

    /// The SHA-256 fingerprint of the item vectors this graph was built for.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint.0
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn search_avx2(
    index: &GraphIndex,
    q: &[f32],
    k: usize,
    ef: usize,
    walk: Walk<'_>,
    s: &mut Scratch,
) -> Result<Vec<Hit>, GaveUp> {
    index.search_graph::<kernel::Avx2>(q, k, ef, walk, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exact_scan_avx2(
    index: &GraphIndex,
    q: &[f32],
    k: usize,
    filter: Filter<'_>,
    by_codes: bool,
    s: &mut Scratch,
) -> Vec<Hit> {
    index.exact_scan_with::<kernel::Avx2>(q, k, filter, by_codes, s)
}

/// What a graph walk is told of the filter, and how many items it allows (a lower bound for
/// exclusions).
#[derive(Clone, Copy)]
struct Walk<'a> {
    filter: Filter<'a>,
    mode: WalkMode,
    allowed: usize,
}

/// How the layer-0 beam treats the filter.
#[derive(Clone, Copy)]
enum WalkMode {
    /// No filter, no tombstones.
    Unfiltered,
    /// Nearly everything allowed (a user's seen items, a few tombstones): the plain beam, which
    /// walks through disallowed nodes without returning them.
    Through,
    /// A selective filter: the same beam, which gives up for an exact scan when it has scored
    /// as many nodes as there are allowed items or when its probe finds the filter anti-correlated
    /// with the query ([`View::search_layer`]).
    Limited(Limits),
}

/// Why a filtered walk gave up for an exact scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GaveUp {
    /// It scored as many nodes as there are allowed items, or reached fewer than k of them: the
    /// filter is merely selective.
    OverBudget,
    /// The nodes near the query were mostly disallowed: the filter removed the best items.
    AgainstQuery,
}

/// A filter removing fewer than n / NEARLY_ALL items walks as unfiltered ([`WalkMode::Through`]).
const NEARLY_ALL: usize = 64;

impl RecallIndex for GraphIndex {
    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Filter<'_>,
    ) -> Result<Vec<Hit>, IndexError> {
        check_query(query, self.space.dim())?;
        let n = self.len();
        let k = k.min(n);
        if k == 0 {
            return Ok(Vec::new());
        }
        let dead = self.tombstones.count() > 0;
        let filtered = dead || !matches!(filter, Filter::All);
        with_scratch(|s| {
            let mut qbuf = std::mem::take(&mut s.query);
            let q: &[f32] = match self.params.metric {
                Metric::InnerProduct => query,
                Metric::Cosine => {
                    let norm = crate::kernels::dot(query, query).sqrt();
                    let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
                    qbuf.clear();
                    qbuf.extend(query.iter().map(|x| x * inv));
                    &qbuf
                }
            };
            let allowed = if filtered { self.allowed(filter) } else { n };
            let selective = allowed < n - n / NEARLY_ALL;
            let ef = ef
                .unwrap_or(if selective {
                    self.filtered_ef_for(allowed)
                } else {
                    self.params.ef_search
                })
                .max(k);
            let (plan, hits) = if selective && !self.walks_only && self.plan_exact(allowed, ef) {
                let by_codes = allowed >= scan::CODES_FROM;
                (Plan::ExactScan, self.exact_scan(q, k, filter, by_codes, s))
            } else {
                let mode = match (filtered, selective) {
                    (false, _) => WalkMode::Unfiltered,
                    (true, false) => WalkMode::Through,
                    // A walk may do as much work as scanning the allowed rows before it gives up.
                    // While the breadth is tuned, walks never give up (no budget, no probe).
                    (true, true) if self.walks_only => WalkMode::Limited(Limits {
                        budget: usize::MAX,
                        selectivity: 0.0,
                    }),
                    (true, true) => WalkMode::Limited(Limits {
                        budget: allowed,
                        selectivity: allowed as f32 / n.max(1) as f32,
                    }),
                };
                let walk = Walk {
                    filter,
                    mode,
                    allowed,
                };
                match self.search_dispatch(q, k, ef, walk, s) {
                    Ok(hits) if selective => (Plan::FilteredGraph, hits),
                    Ok(hits) => (Plan::Graph, hits),
                    Err(gave_up) => {
                        // Against the query, the best allowed items lie where scores are dense:
                        // the codes could not narrow the scan, so it reads f32 rows at once.
                        let by_codes = allowed >= scan::CODES_FROM && gave_up == GaveUp::OverBudget;
                        let hits = self.exact_scan(q, k, filter, by_codes, s);
                        (Plan::GraphThenExact, hits)
                    }
                }
            };
            self.plans.count(plan);
            s.query = qbuf;
            Ok(hits)
        })
    }

    fn work_estimate(&self, k: usize, ef: Option<usize>) -> u64 {
        // A beam of ef expands about ef nodes, scoring up to 2M neighbours of each.
        let ef = ef.unwrap_or(self.params.ef_search).max(k);
        (ef * self.links.m0 * self.space.dim()) as u64
    }

    fn info(&self) -> IndexInfo {
        // The room reserved for inserts is held too.
        let vectors = self.space.capacity() * self.space.dim() * std::mem::size_of::<f32>();
        IndexInfo {
            kind: "graph",
            items: self.len(),
            dim: self.space.dim(),
            params: serde_json::json!({
                "m": self.params.m,
                "ef_construction": self.params.ef_construction,
                "ef_insert": self.params.insert_ef(),
                "ef_search": self.params.ef_search,
                "filtered_ef_search": self.filtered_ef(),
                "filtered_ef_by_share": self.filtered_efs,
                "filtered_exact_below_share": self.exact_below_share,
                "metric": self.params.metric,
                "quantized": self.params.quantized,
                "levels": self.entry.get().map_or(0, |(_, top)| top + 1),
                "capacity": self.capacity(),
                "deactivated": self.tombstones.count(),
                "plans": self.plans.json(),
                "filtered_walk_work_per_ef": self.walk_costs.json(),
                "norm_scan_items": self.head.as_ref().map_or(0, NormHead::len),
                "norm_scan_newcomers": self.head.as_ref().map_or(0, |h| h.newcomers().0),
                "norm_scan_overflowed": self.head.as_ref().is_some_and(|h| h.newcomers().1),
            }),
            memory_bytes: vectors
                + self.links.memory_bytes()
                + self.tombstones.memory_bytes()
                + self.codes.memory_bytes()
                + self.head.as_ref().map_or(0, NormHead::memory_bytes),
            build_seconds: self.build_seconds,
        }
    }

    /// Links the new rows with the build's insertion routine: a batch on `params.threads`
    /// scoped threads, one row inline; then the self-recall repair over them.
    fn insert(&self, first: u32, count: usize) -> Result<(), IndexError> {
        self.insert_rows(first, count)
    }

    fn regrown(&self, vectors: Arc<ItemVectors>) -> Result<Arc<dyn RecallIndex>, IndexError> {
        Ok(Arc::new(self.regrow(vectors)?))
    }

    /// A tombstone: the node stays a waypoint, searches skip it (copied by [`GraphIndex::regrow`]).
    fn remove(&self, item: u32) -> bool {
        self.set_active(item, false).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_graph() -> GraphIndex {
        let vectors = ItemVectors::from_fn(1000, 8, |i, row| {
            for (c, x) in row.iter_mut().enumerate() {
                *x = ((i * 31 + c * 7) % 17) as f32 / 17.0 - 0.5;
            }
        });
        GraphIndex::build(Arc::new(vectors), GraphParams::default(), 0).unwrap()
    }

    #[test]
    fn a_filter_walks_at_the_breadth_of_the_nearest_class_at_or_below_its_share() {
        let mut graph = small_graph().with_ef_search(20);
        assert_eq!(
            graph.filtered_ef_for(500),
            20,
            "untuned: the unfiltered breadth"
        );
        graph.set_filtered_efs(&[(0.9, 16), (0.1, 256), (0.5, 64)]);
        // Below every class: the most selective class's breadth.
        assert_eq!(graph.filtered_ef_for(50), 256);
        assert_eq!(graph.filtered_ef_for(100), 256);
        assert_eq!(graph.filtered_ef_for(499), 256);
        assert_eq!(graph.filtered_ef_for(500), 64);
        assert_eq!(graph.filtered_ef_for(899), 64);
        assert_eq!(graph.filtered_ef_for(900), 16);
        assert_eq!(graph.filtered_ef_for(1000), 16);
        assert_eq!(graph.filtered_ef(), 256, "reported: the widest");
        graph.set_filtered_ef(48);
        assert_eq!(graph.filtered_ef_for(10), 48);
        assert_eq!(graph.filtered_ef_for(990), 48);
    }
}
