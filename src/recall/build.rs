//! The index a model is served with: built (or read from its saved file), tuned and checked
//! against brute force. This is the whole load path of `recall`, top to bottom
//! (`serving::LiveModel::swap` → `serving::ServingModel::load` → [`build_with_file`]):
//!
//! 1. Refuse vectors with a NaN or infinite component.
//! 2. Choose the index (`choose_graph`). Brute force, when asked for or under `auto` below
//!    `exact_below` items, serves as is: it is the reference, there is nothing to check. Otherwise
//!    hnsw_rs, or our graph read from its saved file when that file holds these vectors' graph with
//!    these links, built and saved otherwise (`load_or_build_graph`).
//! 3. One exact pass over the sample queries gives the truth at depth 100 and, as its prefix, at 10.
//! 4. With `target_recall`, the default breadth: the cheapest of [`EF_LADDER`] reaching it (`tune_ef`).
//! 5. Self-recall, on the graph alone.
//! 6. Our graph's norm walk, kept only when it settles enough sample queries (`choose_norm_scan`);
//!    then how selective filters are served: which shares scan exactly, the filtered breadth
//!    (`tune_filtered_ef`).
//! 7. Recall@10 and @100 of the search as served; below `min_recall` the index is refused.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::measure::{exact_truth, recall_against};
use super::{
    check_finite, ExactIndex, Filter, GraphIndex, GraphParams, HnswRsIndex, IndexError, IndexKind,
    IndexSettings, RecallIndex,
};
use crate::vectors::ItemVectors;

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
    graph_file: Option<&Path>,
) -> Result<(Arc<dyn RecallIndex>, Option<IndexQuality>), IndexError> {
    // 1. Finite vectors only.
    check_finite(&vectors)?;
    let exact = ExactIndex::new(vectors.clone());
    // 2. Brute force is the reference: nothing to check.
    let Some(chosen) = choose_graph(&vectors, settings, graph_file)? else {
        return Ok((Arc::new(exact), None));
    };
    let ChosenGraph {
        mut graph,
        from_file,
    } = chosen;
    // 3. One exact pass for both depths: the exact top 10 is the top 100's prefix (same tie rule).
    let (queries, truth, truth_100) = sample_truth(&exact, sample_queries, settings.check_queries)?;
    // 4. The default breadth.
    let target_recall = (settings.target_recall > 0.0).then_some(settings.target_recall);
    if let Some(target) = target_recall {
        let ef = tune_ef(graph.as_index(), &queries, &truth, target)?;
        graph.set_ef_search(ef);
    }
    // 5. The breadth and self-recall are measured on the graph alone: it serves the queries the
    // norm walk cannot settle, and the walk would hide large-norm items the graph cannot reach.
    let self_recall = graph.self_recall(&exact, settings.check_queries)?;
    // 6. The norm walk, if it pays.
    let norm_scan = graph.enable_norm_scan(settings.norm_scan_items, &queries);
    // 6b. How selective filters are served, for `target_filtered_recall`: measured with the norm
    // walk as served (on trained catalogs it proves most filtered answers before the graph).
    let filtered = graph.tune_filtered_ef(&exact, &queries, settings.target_filtered_recall)?;
    // 7. Recall as served, and the floor.
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
        filtered,
        self_recall,
        queries: queries.len(),
        graph_from_file: from_file,
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

/// Up to `check_queries` of the sample queries with their exact top 10 and top 100 (one exact pass:
/// the top 10 is the top 100's prefix, same tie rule).
fn sample_truth(
    exact: &ExactIndex,
    sample_queries: &[Vec<f32>],
    check_queries: usize,
) -> Result<(Vec<Vec<f32>>, Truth, Truth), IndexError> {
    let queries: Vec<Vec<f32>> = sample_queries.iter().take(check_queries).cloned().collect();
    let (truth, truth_100) = truth_10_and_100(exact, &queries, |_| Filter::All)?;
    Ok((queries, truth, truth_100))
}

/// Each query's exact top items (ids, best first).
type Truth = Vec<Vec<u32>>;

/// The exact top 10 and top 100 of each query under `filter_of(query)`, from one pass at depth 100.
fn truth_10_and_100<'f>(
    exact: &ExactIndex,
    queries: &[Vec<f32>],
    filter_of: impl Fn(usize) -> Filter<'f>,
) -> Result<(Truth, Truth), IndexError> {
    let truth_100 = super::measure::exact_truth_each(exact, queries, 100, filter_of)?;
    let truth = truth_100
        .iter()
        .map(|t| t[..t.len().min(10)].to_vec())
        .collect();
    Ok((truth, truth_100))
}

/// The Milvus collection of model `version` over `vectors` (written, or reused when complete),
/// checked like a graph: recall@10 and @100 of the search as served (Milvus's candidates
/// re-scored exactly) against brute force on `sample_queries`, each with its user's seen items
/// (`sample_seen`, sorted slots; missing = none) excluded as a served recall excludes them, and
/// refused below `min_recall`. Rows just written become searchable a moment later, so a check
/// below the floor is repeated until `milvus.ready_timeout_seconds` have passed. Under IVF_FLAT,
/// `nprobe` is then tuned on the same queries (`milvus.target_recall`).
pub fn build_milvus(
    vectors: Arc<ItemVectors>,
    settings: &IndexSettings,
    sample_queries: &[Vec<f32>],
    sample_seen: &[Vec<u32>],
    version: &str,
) -> Result<(Arc<dyn RecallIndex>, Option<IndexQuality>), IndexError> {
    check_finite(&vectors)?;
    let started = std::time::Instant::now();
    let index = super::MilvusIndex::open(vectors.clone(), &settings.milvus, version)?;
    let exact = ExactIndex::new(vectors.clone());
    let queries = &sample_queries[..sample_queries.len().min(settings.check_queries)];
    // A user's seen items are excluded from what is served: the answers then reach past the
    // IVF lists nearest the query, which a check without exclusions does not see (MovieLens:
    // recall@100 0.994 on the check without them, 0.963 served).
    let filter_of = |q: usize| match sample_seen.get(q) {
        Some(seen) if !seen.is_empty() => Filter::Exclude(seen),
        _ => Filter::All,
    };
    let (truth, truth_100) = truth_10_and_100(&exact, queries, filter_of)?;
    let deadline = started + std::time::Duration::from_secs(settings.milvus.ready_timeout_seconds);
    let measure = |index: &super::MilvusIndex| -> Result<(f64, f64), IndexError> {
        use super::measure::recall_against_each;
        Ok((
            recall_against_each(index, queries, &truth, 10, None, filter_of)?,
            recall_against_each(index, queries, &truth_100, 100, None, filter_of)?,
        ))
    };
    let (mut recall_at_10, mut recall_at_100) = loop {
        let (at_10, at_100) = measure(&index)?;
        if at_10 >= settings.min_recall || std::time::Instant::now() >= deadline {
            break (at_10, at_100);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let target = settings.milvus.target_recall;
    let target_recall = (index.probes_lists() && target > 0.0).then_some(target);
    if let Some(target) = target_recall {
        let nprobe = tune_nprobe(&index, |index| {
            let (at_10, at_100) = measure(index)?;
            Ok(at_10 >= target && at_100 >= target)
        })?;
        index.set_nprobe(nprobe);
        (recall_at_10, recall_at_100) = measure(&index)?;
    }
    let self_recall = super::measure::self_recall(&index, &vectors, settings.check_queries, None)?;
    tracing::info!(
        collection = index.collection(),
        reused = index.reused(),
        recall_at_10,
        recall_at_100,
        nprobe = index.nprobe(),
        "Milvus collection checked"
    );
    if recall_at_10 < settings.min_recall {
        return Err(IndexError::BelowFloor {
            what: "recall@10 through Milvus against brute force",
            value: recall_at_10,
            floor: settings.min_recall,
        });
    }
    let quality = IndexQuality {
        recall_at_10,
        recall_at_100,
        norm_scan: None,
        // The candidates a k = 10 recall asks Milvus for: its breadth, as far as the service sets it.
        ef_search: index.candidates(10, None),
        target_recall,
        filtered: None,
        self_recall,
        queries: queries.len(),
        graph_from_file: index.reused(),
    };
    Ok((Arc::new(index), Some(quality)))
}

/// The fewest IVF lists of [`super::milvus::nprobe_ladder`] for which `reaches` holds, by
/// bisection: probing more lists only adds candidates (IVF_FLAT scans each probed list whole), so
/// `reaches` is monotone along the ladder, and probing every list is a brute-force scan, taken
/// to reach it without measuring. About log2(16) = 4 measurements.
fn tune_nprobe(
    index: &super::MilvusIndex,
    reaches: impl Fn(&super::MilvusIndex) -> Result<bool, IndexError>,
) -> Result<usize, IndexError> {
    let ladder = super::milvus::nprobe_ladder(index.lists());
    let (mut low, mut high) = (0, ladder.len() - 1);
    while low < high {
        let middle = (low + high) / 2;
        index.set_nprobe(ladder[middle]);
        if reaches(index)? {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(ladder[high])
}

/// A graph index to check before it serves.
struct ChosenGraph {
    graph: Box<dyn GraphLike>,
    /// Whether it was read from its saved file instead of built.
    from_file: bool,
}

/// The graph index `settings` ask for over `vectors`; `None` when brute force serves.
fn choose_graph(
    vectors: &Arc<ItemVectors>,
    settings: &IndexSettings,
    graph_file: Option<&Path>,
) -> Result<Option<ChosenGraph>, IndexError> {
    let (graph, from_file): (Box<dyn GraphLike>, bool) = match settings.kind {
        IndexKind::Exact => return Ok(None),
        IndexKind::Auto if vectors.len() < settings.exact_below => return Ok(None),
        IndexKind::HnswRs => (
            Box::new(HnswRsIndex::build(
                vectors.clone(),
                settings.hnsw.clone(),
                settings.exact_filter_below,
            )?),
            false,
        ),
        IndexKind::Milvus => {
            return Err(IndexError::InvalidParameter {
                name: "index.kind",
                allowed: "exact, auto, graph or hnsw_rs here (a Milvus collection is named by its model: build_milvus)",
                value: "milvus".into(),
            })
        }
        IndexKind::Auto | IndexKind::Graph => {
            let (graph, from_file) = load_or_build_graph(vectors, settings, graph_file)?;
            (Box::new(graph), from_file)
        }
    };
    Ok(Some(ChosenGraph { graph, from_file }))
}

/// Our graph, read from `graph_file` when it is usable, else built and saved there; set to the
/// configured default breadth and exact-filter threshold. The flag says whether it was read.
fn load_or_build_graph(
    vectors: &Arc<ItemVectors>,
    settings: &IndexSettings,
    graph_file: Option<&Path>,
) -> Result<(GraphIndex, bool), IndexError> {
    let params = GraphParams::from_hnsw(&settings.hnsw);
    let saved = graph_file.and_then(|path| load_saved_graph(path, vectors, &params));
    let from_file = saved.is_some();
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
    let graph = graph
        .with_ef_search(settings.hnsw.ef_search)
        .with_exact_filter_below(settings.exact_filter_below);
    Ok((graph, from_file))
}

/// The graph saved at `path` if it was built with `params`' links for exactly `vectors`; `None`
/// (logged unless the file is simply absent) means build it.
fn load_saved_graph(
    path: &Path,
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

/// Below this share of sample queries settled at k = 10, the norm walk would mostly be wasted work
/// before the graph, and is turned off.
pub const MIN_NORM_SCAN_SHARE: f64 = 0.5;

/// Turns `graph`'s norm walk over its `limit` largest-norm items on, and keeps it only when it
/// settles at least [`MIN_NORM_SCAN_SHARE`] of `queries` at k = 10; None when it cannot run.
fn choose_norm_scan(
    graph: &mut GraphIndex,
    limit: usize,
    queries: &[Vec<f32>],
) -> Option<NormScanReport> {
    graph.set_norm_scan(limit);
    let Some(exact_share_at_10) = graph.norm_scan_exact_share(queries, 10) else {
        // Off, or too short a walk for k = 10 (fewer than 80 items): serve the graph alone.
        graph.set_norm_scan(0);
        return None;
    };
    let enabled = exact_share_at_10 >= MIN_NORM_SCAN_SHARE;
    let report = NormScanReport {
        items: limit.min(graph.len()),
        exact_share_at_10,
        exact_share_at_100: graph.norm_scan_exact_share(queries, 100),
        enabled,
    };
    if !enabled {
        graph.set_norm_scan(0);
    }
    Some(report)
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
    /// The breadth of walks under a selective filter, as chosen at load (None: not our graph, or
    /// too few items for a filtered walk).
    pub filtered: Option<FilteredBreadth>,
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

/// The default breadths of our graph's walks under selective filters, and what they recalled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FilteredBreadth {
    /// The widest of the classes' breadths (that of the most selective class walked).
    pub ef_search: usize,
    /// The lowest recall@10 over the probe filters the graph walks, each at its class's breadth,
    /// without exact scans (as served, recall is at least this); 1.0 when it walks none of them.
    pub recall_at_10: f64,
    /// Filters allowing fewer than this share of the items are scanned exactly: the walks did
    /// not reach the target under the probe filters below it even at the widest breadth (1.0: no
    /// filtered walks at all; 0: every probe reached it).
    pub exact_below_share: f64,
    /// Per probe selectivity ([`PROBE_SELECTIVITIES`]): the breadth of filters allowing at least
    /// that share of the items, and what it recalled.
    pub by_share: [ShareBreadth; PROBE_SELECTIVITIES.len()],
    /// The target (`index.target_filtered_recall`).
    pub target: f64,
}

/// The breadth of one selectivity class of filtered walks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ShareBreadth {
    /// Share of the items the probe filter allowed.
    pub share: f64,
    /// The smallest of [`EF_LADDER`] whose recall@10 reached the target under that filter (the
    /// widest when none did); None when filters this selective are scanned exactly.
    pub ef_search: Option<usize>,
    /// Recall@10 of the walks at that breadth (None when scanned exactly).
    pub recall_at_10: Option<f64>,
}

/// Shares of the items allowed by the seeded random filters the filtered breadths are tuned on:
/// one class of breadth each. A walk under a filter allowing half the items scores about twice
/// the nodes per allowed result of one allowing 90%, so one breadth for all would be tuned to the
/// most selective class and waste work on the others (at 1M items: 384 for every class, where
/// hnswlib reached recall 0.99 at 90% allowed with 128).
const PROBE_SELECTIVITIES: [f64; 4] = [0.1, 0.25, 0.5, 0.9];

/// Chooses how `graph` serves selective filters, measured on its searches without the planner
/// (no exact scans chosen, no give-ups: a scan would recall 1.0 and say nothing of the walk; the
/// norm walk, when on, runs as served) against the exact filtered top 10 on `queries` under each
/// probe filter: first which selectivities walks can serve (those reaching `target` at the widest
/// breadth; below the least selective of them filters are scanned exactly), then for each of
/// those the smallest breadth of [`EF_LADDER`] that reaches it. None when the target is 0 (keep
/// `ef_search`).
fn tune_filtered_ef(
    graph: &mut GraphIndex,
    exact: &ExactIndex,
    queries: &[Vec<f32>],
    target: f64,
) -> Result<Option<FilteredBreadth>, IndexError> {
    if target <= 0.0 || queries.is_empty() {
        return Ok(None);
    }
    let n = graph.len();
    let mut rng = crate::rng::Rng::new(0xF117E2);
    let probes: Vec<Vec<u32>> = PROBE_SELECTIVITIES
        .iter()
        .map(|&s| (0..n as u32).filter(|_| rng.uniform() < s).collect())
        .collect();
    let truths = probes
        .iter()
        .map(|p| exact_truth(exact, queries, 10, Filter::Only(p)))
        .collect::<Result<Vec<_>, _>>()?;
    graph.set_walks_only(true);
    let recall = |graph: &GraphIndex, probe: usize, ef: usize| {
        let only = Filter::Only(&probes[probe]);
        recall_against(graph, queries, &truths[probe], 10, Some(ef), only)
    };
    // Which selectivities walks can serve at all: those reaching the target at the widest
    // breadth. Below the least selective of them the planner scans exactly.
    let widest = EF_LADDER[EF_LADDER.len() - 1];
    let at_widest = (0..probes.len())
        .map(|p| recall(graph, p, widest))
        .collect::<Result<Vec<_>, _>>()?;
    let exact_below_share = PROBE_SELECTIVITIES
        .iter()
        .zip(&at_widest)
        .filter(|(_, &r)| r >= target)
        .map(|(&s, _)| s)
        .fold(f64::INFINITY, f64::min)
        .min(1.0);
    // Each class walked: the cheapest breadth reaching the target (the widest if none does).
    let mut by_share = PROBE_SELECTIVITIES.map(|share| ShareBreadth {
        share,
        ef_search: None,
        recall_at_10: None,
    });
    for (p, class) in by_share.iter_mut().enumerate() {
        if class.share < exact_below_share {
            continue;
        }
        let mut chosen = (widest, at_widest[p]);
        for ef in EF_LADDER.into_iter().take_while(|&ef| ef < widest) {
            let r = recall(graph, p, ef)?;
            if r >= target {
                chosen = (ef, r);
                break;
            }
        }
        class.ef_search = Some(chosen.0);
        class.recall_at_10 = Some(chosen.1);
    }
    graph.set_walks_only(false);
    let walked: Vec<(f64, usize)> = by_share
        .iter()
        .filter_map(|c| Some((c.share, c.ef_search?)))
        .collect();
    if walked.is_empty() {
        graph.set_filtered_ef(widest);
    } else {
        graph.set_filtered_efs(&walked);
    }
    graph.set_exact_below_share(exact_below_share);
    let lowest = by_share
        .iter()
        .filter_map(|c| c.recall_at_10)
        .fold(f64::INFINITY, f64::min);
    Ok(Some(FilteredBreadth {
        ef_search: walked.iter().map(|&(_, ef)| ef).max().unwrap_or(widest),
        recall_at_10: if lowest.is_finite() { lowest } else { 1.0 },
        exact_below_share,
        by_share,
        target,
    }))
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

/// What the load path needs of either graph index beyond [`RecallIndex`].
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
    /// Chooses the breadth of walks under selective filters (see [`tune_filtered_ef`]); None for
    /// indexes without one.
    fn tune_filtered_ef(
        &mut self,
        _exact: &ExactIndex,
        _queries: &[Vec<f32>],
        _target: f64,
    ) -> Result<Option<FilteredBreadth>, IndexError> {
        Ok(None)
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
        choose_norm_scan(self, limit, queries)
    }
    fn tune_filtered_ef(
        &mut self,
        exact: &ExactIndex,
        queries: &[Vec<f32>],
        target: f64,
    ) -> Result<Option<FilteredBreadth>, IndexError> {
        tune_filtered_ef(self, exact, queries, target)
    }
    fn as_index(&self) -> &dyn RecallIndex {
        self
    }
    fn into_arc(self: Box<Self>) -> Arc<dyn RecallIndex> {
        Arc::from(self as Box<dyn RecallIndex>)
    }
}
