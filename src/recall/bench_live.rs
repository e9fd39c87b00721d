//! `fmrecall bench-live`: live inserts into a serving graph (issue "Live catalog"). Builds our
//! graph on the first `items − inserts` synthetic vectors (bench-index's, see [`super::bench::clustered`])
//! with the serving layer's headroom, measures query throughput alone, then appends the remaining
//! rows and inserts them in batches while query threads keep searching, and finally compares
//! recall@10 of the grown graph with a fresh build on the same vectors. hnswlib's `add_items` runs
//! the same schedule on the same vectors as the anchor (`benches/hnswlib_live.py`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::bench::{clustered, PASSES};
use super::measure::{exact_truth, recall_against};
use super::{ExactIndex, Filter, GraphIndex, GraphParams, IndexError, RecallIndex};
use crate::vectors::ItemVectors;

/// What `bench-live` runs.
#[derive(Debug, Clone)]
pub struct LiveSpec {
    /// Items in the end (built + inserted).
    pub items: usize,
    /// Items inserted live.
    pub inserts: usize,
    /// Vector length.
    pub dim: usize,
    /// Queries (recall and throughput).
    pub queries: usize,
    /// Clusters of the synthetic vectors.
    pub clusters: usize,
    /// Seed of the synthetic vectors.
    pub seed: u64,
    /// Rows per `insert` call.
    pub batch: usize,
    /// Threads one insert call links a batch with.
    pub insert_threads: usize,
    /// Threads searching meanwhile.
    pub query_threads: usize,
    /// Graph parameters (their `threads` is used for the builds).
    pub params: GraphParams,
    /// Search breadth of the throughput phases.
    pub ef: usize,
    /// Breadths recall@10 is measured at after the inserts.
    pub recall_efs: Vec<usize>,
    /// Run the hnswlib anchor (when `import hnswlib` works).
    pub hnswlib: bool,
}

/// One line of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveRow {
    /// Which index.
    pub index: String,
    /// Seconds to build on the first items.
    pub build_seconds: f64,
    /// Inserts per second while the query threads ran.
    pub inserts_per_second: f64,
    /// Queries per second (all query threads) with nothing inserting.
    pub qps_alone: f64,
    /// Queries per second (all query threads) while inserting.
    pub qps_during: f64,
    /// recall@10 after the inserts, per breadth in `efs`.
    pub recall_after: Vec<f64>,
    /// recall@10 of a fresh build on all items, per breadth (our graph only).
    pub recall_fresh: Vec<f64>,
    /// The breadths.
    pub efs: Vec<usize>,
}

/// The run's rows and remarks.
#[derive(Debug, Clone, Default)]
pub struct LiveReport {
    /// Table rows.
    pub rows: Vec<LiveRow>,
    /// One-line remarks.
    pub notes: Vec<String>,
}

/// Runs queries on `threads` threads until `stop` (or, with no stop flag raised by anyone, for
/// `seconds`); returns queries per second over all threads.
fn query_load(
    index: &dyn RecallIndex,
    queries: &[Vec<f32>],
    ef: usize,
    threads: usize,
    stop: &AtomicBool,
    seconds: Option<f64>,
) -> f64 {
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads.max(1) {
            let done = &done;
            s.spawn(move || {
                let mut i = t * 7919;
                loop {
                    if stop.load(Ordering::Relaxed)
                        || seconds.is_some_and(|limit| started.elapsed().as_secs_f64() >= limit)
                    {
                        break;
                    }
                    let q = &queries[i % queries.len()];
                    // A failed search would be a bug the recall figures show; keep the load going.
                    let _ = index.search(q, 10, Some(ef), Filter::All);
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64().max(1e-9)
}

/// Throughput seconds of the query-alone phase (best of [`PASSES`]).
const ALONE_SECONDS: f64 = 4.0;

/// Runs the benchmark. **Errors** if an index refuses the vectors or parameters.
pub fn run(spec: &LiveSpec) -> Result<LiveReport, IndexError> {
    let mut report = LiveReport::default();
    let n = spec.items;
    let built = n.saturating_sub(spec.inserts).max(1);
    let (all, queries) = clustered(n, spec.queries, spec.dim, spec.clusters, spec.seed);
    // The serving layer's headroom: capacity n + max(1024, n / 8).
    let capacity = built + (built / 8).max(1024);
    let dim = spec.dim;
    let vectors = Arc::new(
        ItemVectors::from_raw(dim, all.as_slice()[..built * dim].to_vec()).with_capacity(capacity),
    );
    let all = Arc::new(all);
    let exact = ExactIndex::new(all.clone());
    let truth = exact_truth(&exact, &queries, 10, Filter::All)?;
    report.notes.push(format!(
        "{n} items x {dim} dims: built on {built} (capacity {capacity}), {} inserted in batches of {} on {} insert thread(s) while {} query thread(s) search at ef {}; {} queries, recall@10 against exact search on all {n}",
        n - built,
        spec.batch,
        spec.insert_threads,
        spec.query_threads,
        spec.ef,
        queries.len()
    ));

    let graph = GraphIndex::build(vectors.clone(), spec.params.clone(), 0)?;
    let build_seconds = graph.info().build_seconds;
    let graph = graph.with_insert_threads(spec.insert_threads);
    let never = AtomicBool::new(false);
    let qps_alone = (0..PASSES)
        .map(|_| {
            query_load(
                &graph,
                &queries,
                spec.ef,
                spec.query_threads,
                &never,
                Some(ALONE_SECONDS),
            )
        })
        .fold(0.0, f64::max);
    let stop = AtomicBool::new(false);
    let mut insert_seconds = 0.0;
    let mut insert_error = None;
    let qps_during = std::thread::scope(|s| {
        let inserter = s.spawn(|| {
            let started = Instant::now();
            let result = (|| {
                for chunk_start in (built..n).step_by(spec.batch.max(1)) {
                    let end = (chunk_start + spec.batch.max(1)).min(n);
                    for i in chunk_start..end {
                        vectors
                            .push(all.row(i))
                            .ok_or(IndexError::InvalidParameter {
                                name: "bench capacity",
                                allowed: "room for every insert",
                                value: i.to_string(),
                            })?;
                    }
                    graph.insert(chunk_start as u32, end - chunk_start)?;
                }
                Ok::<(), IndexError>(())
            })();
            let seconds = started.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            (seconds, result)
        });
        let qps = query_load(&graph, &queries, spec.ef, spec.query_threads, &stop, None);
        let (seconds, result) = inserter.join().unwrap_or((0.0, Ok(())));
        insert_seconds = seconds;
        insert_error = result.err();
        qps
    });
    if let Some(e) = insert_error {
        return Err(e);
    }
    let recall_after = spec
        .recall_efs
        .iter()
        .map(|&ef| recall_against(&graph, &queries, &truth, 10, Some(ef), Filter::All))
        .collect::<Result<Vec<_>, _>>()?;
    let info = graph.info();
    report.notes.push(format!(
        "ours after the inserts: {} items, self-recall at ef 64 {:.4}",
        info.items,
        graph.self_recall(2000, Some(64))?
    ));
    drop(graph);
    let fresh = GraphIndex::build(all.clone(), spec.params.clone(), 0)?;
    let recall_fresh = spec
        .recall_efs
        .iter()
        .map(|&ef| recall_against(&fresh, &queries, &truth, 10, Some(ef), Filter::All))
        .collect::<Result<Vec<_>, _>>()?;
    report.notes.push(format!(
        "fresh build on all {n}: {:.1} s, self-recall at ef 64 {:.4}",
        fresh.info().build_seconds,
        fresh.self_recall(2000, Some(64))?
    ));
    drop(fresh);
    report.rows.push(LiveRow {
        index: format!("graph (ours), ef_insert {}", spec.params.insert_ef()),
        build_seconds,
        inserts_per_second: (n - built) as f64 / insert_seconds.max(1e-9),
        qps_alone,
        qps_during,
        recall_after,
        recall_fresh,
        efs: spec.recall_efs.clone(),
    });
    if spec.hnswlib {
        match hnswlib_row(&all, &queries, &truth, built, spec) {
            Ok(row) => report.rows.push(row),
            Err(why) => report.notes.push(format!("hnswlib row skipped: {why}")),
        }
    }
    Ok(report)
}

/// The hnswlib live script, embedded so the bench runs from any directory.
const HNSWLIB_LIVE_SCRIPT: &str = include_str!("../../benches/hnswlib_live.py");

/// Runs `benches/hnswlib_live.py` on the same vectors, queries and truth; `Err` says why not.
fn hnswlib_row(
    all: &ItemVectors,
    queries: &[Vec<f32>],
    truth: &[Vec<u32>],
    built: usize,
    spec: &LiveSpec,
) -> Result<LiveRow, String> {
    let build_threads = if spec.params.threads == 0 {
        std::thread::available_parallelism().map_or(1, |t| t.get())
    } else {
        spec.params.threads
    };
    let head = [
        all.len(),
        built,
        queries.len(),
        all.dim(),
        build_threads,
        spec.insert_threads,
        spec.query_threads,
        spec.params.m,
        spec.params.ef_construction,
        spec.ef,
        spec.batch,
        spec.recall_efs.len(),
    ];
    let header: Vec<usize> = head.iter().chain(&spec.recall_efs).copied().collect();
    let out = super::bench::run_hnswlib_script(
        ("hnswlib_live.py", HNSWLIB_LIVE_SCRIPT),
        &header,
        all.as_slice(),
        queries,
        (truth, 10),
        &[],
    )?;
    out.lines()
        .rfind(|l| l.starts_with('{'))
        .ok_or_else(|| "no row printed".to_string())
        .and_then(|l| serde_json::from_str::<LiveRow>(l).map_err(|e| e.to_string()))
}

/// The rows as a Markdown table.
pub fn table(rows: &[LiveRow]) -> String {
    let mut out = String::from(
        "| index | build s | inserts/s (during queries) | q/s alone | q/s during inserts | change | recall@10 after inserts (ef) | fresh build (ef) |\n|---|---|---|---|---|---|---|---|\n",
    );
    let by_ef = |values: &[f64], efs: &[usize]| -> String {
        if values.is_empty() {
            return "-".into();
        }
        values
            .iter()
            .zip(efs)
            .map(|(r, ef)| format!("{r:.4} ({ef})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.1} | {:.0} | {:.0} | {:.0} | {:+.1}% | {} | {} |\n",
            r.index,
            r.build_seconds,
            r.inserts_per_second,
            r.qps_alone,
            r.qps_during,
            100.0 * (r.qps_during / r.qps_alone.max(1e-9) - 1.0),
            by_ef(&r.recall_after, &r.efs),
            by_ef(&r.recall_fresh, &r.efs),
        ));
    }
    out
}
