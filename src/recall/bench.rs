//! `fmrecall bench-index`: build seconds, recall@k against exact search, single-thread queries/s
//! and memory for brute force, our graph, hnsw_rs and (when installed) hnswlib on the same vectors
//! and queries, unfiltered and with a filter that allows 1% of the items.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{
    ExactIndex, Filter, GraphIndex, GraphParams, HnswParams, HnswRsIndex, IndexError, RecallIndex,
};
use crate::rng::Rng;
use crate::vectors::ItemVectors;

/// One line of the benchmark table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRow {
    /// Index kind, with the filter when there is one.
    pub index: String,
    /// Search breadth (None for exact).
    pub ef: Option<usize>,
    /// Build wall time.
    pub build_seconds: f64,
    /// Mean recall@k against exact search (k of the run).
    pub recall: f64,
    /// Queries per second on one thread.
    pub qps: f64,
    /// Growth of resident memory while building, in MiB (0 for exact: it reuses the vectors).
    pub memory_mib: f64,
}

/// Item vectors drawn around `clusters` random centres with varying norms (like trained item
/// vectors, whose norms carry popularity), and `n_queries` queries drawn around the same centres.
pub fn clustered(
    n: usize,
    n_queries: usize,
    dim: usize,
    clusters: usize,
    seed: u64,
) -> (ItemVectors, Vec<Vec<f32>>) {
    let mut rng = Rng::derive(seed, 0xC1);
    let centres: Vec<Vec<f32>> = (0..clusters.max(1))
        .map(|_| (0..dim).map(|_| rng.normal() as f32).collect())
        .collect();
    let draw = |rng: &mut Rng| -> Vec<f32> {
        let c = &centres[rng.below(centres.len())];
        let scale = 0.5 + rng.uniform() as f32;
        c.iter()
            .map(|&x| scale * (x + 0.6 * rng.normal() as f32))
            .collect()
    };
    let data: Vec<f32> = (0..n).flat_map(|_| draw(&mut rng)).collect();
    let queries = (0..n_queries).map(|_| draw(&mut rng)).collect();
    (ItemVectors::from_raw(dim, data), queries)
}

/// Resident set size of this process in bytes (Linux; 0 elsewhere).
pub fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<usize>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// Passes over the queries per row; a row reports the fastest. On a shared machine the other
/// processes only ever slow a pass down, so the best of a few is the steadiest estimate (the same
/// rule in `benches/hnswlib_baseline.py`).
pub const PASSES: usize = 3;
/// A pass slower than this is not repeated (hnsw_rs's filtered search runs at a few queries/s).
const SLOW_PASS_SECONDS: f64 = 5.0;

fn run_queries(
    index: &dyn RecallIndex,
    queries: &[Vec<f32>],
    truth: &[Vec<u32>],
    ef: Option<usize>,
    filter: Filter<'_>,
) -> Result<(f64, f64), IndexError> {
    let k = truth.first().map_or(10, Vec::len);
    let mut recall = 0.0;
    let mut best = f64::INFINITY;
    for _ in 0..PASSES {
        let started = Instant::now();
        recall = super::measure::recall_against(index, queries, truth, k, ef, filter)?;
        best = best.min(started.elapsed().as_secs_f64().max(1e-9));
        if best > SLOW_PASS_SECONDS {
            break;
        }
    }
    Ok((recall, queries.len() as f64 / best))
}

/// Which indexes a bench run measures (each costs a build; hnsw_rs's is the slowest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BenchIndex {
    /// Brute force, unfiltered and with the 1% filter.
    Exact,
    /// Our graph index.
    Graph,
    /// hnswlib and NumPy brute force (Python subprocess).
    Hnswlib,
    /// hnsw_rs.
    HnswRs,
}

/// What `run` measured: the table rows and notes printed above it (self-recall, skipped columns).
#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    /// Table rows.
    pub rows: Vec<BenchRow>,
    /// One-line remarks.
    pub notes: Vec<String>,
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs the table for the `indexes` asked, measuring recall@`k`: exact search, our graph (alone and
/// behind the norm walk, as served), hnswlib and NumPy brute force (subprocess, when `import
/// hnswlib` works in `$FMRECALL_PYTHON`, default `python3`) and hnsw_rs at every `ef` (a search
/// never uses an ef below k), unfiltered and with a filter that allows 1% of the items. Graph
/// indexes build with every core.
pub fn run(
    vectors: Arc<ItemVectors>,
    queries: &[Vec<f32>],
    params: &HnswParams,
    efs: &[usize],
    indexes: &[BenchIndex],
    k: usize,
) -> Result<BenchReport, IndexError> {
    let k = k.clamp(1, vectors.len().max(1));
    let exact = ExactIndex::new(vectors.clone());
    let truth_of = |filter: Filter<'_>| super::measure::exact_truth(&exact, queries, k, filter);
    let truth = truth_of(Filter::All)?;
    let n = vectors.len();
    let allowed: Vec<u32> = (0..n as u32).step_by(100).collect();
    let only = Filter::Only(&allowed);
    let truth_filtered = truth_of(only)?;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let vector_bytes = std::mem::size_of_val(vectors.as_slice());
    let mut report = BenchReport::default();
    let rows = &mut report.rows;
    let notes = &mut report.notes;
    notes.push(format!(
        "{n} items x {} dims ({:.0} MiB raw), {} queries, k = {k}, {threads} build threads, queries on 1 thread",
        vectors.dim(),
        mib(vector_bytes),
        queries.len()
    ));

    let want = |i: BenchIndex| indexes.contains(&i);
    if want(BenchIndex::Exact) {
        let (recall, qps) = run_queries(&exact, queries, &truth, None, Filter::All)?;
        rows.push(BenchRow {
            index: "exact".into(),
            ef: None,
            build_seconds: 0.0,
            recall,
            qps,
            memory_mib: 0.0,
        });
        let (recall, qps) = run_queries(&exact, queries, &truth_filtered, None, only)?;
        rows.push(BenchRow {
            index: "exact, 1% allowed".into(),
            ef: None,
            build_seconds: 0.0,
            recall,
            qps,
            memory_mib: 0.0,
        });
    }

    // Our graph. It shares the item vectors, so its memory is the growth while building plus the
    // vectors it searches (comparable with hnswlib, which copies them in).
    if want(BenchIndex::Graph) {
        let before = resident_bytes();
        let graph = GraphIndex::build(vectors.clone(), GraphParams::from_hnsw(params), 0)?;
        let growth = resident_bytes().saturating_sub(before);
        let memory_mib = mib(growth + vector_bytes);
        let info = graph.info();
        let build_seconds = info.build_seconds;
        let link_bytes = info.memory_bytes - vector_bytes;
        notes.push(format!(
        "graph: raw vectors + links + byte codes = {:.1} MiB; measured {:.1} MiB ({:.2}x); self-recall at ef 64: {:.4}",
        mib(info.memory_bytes),
        memory_mib,
        memory_mib / mib(vector_bytes + link_bytes).max(1e-9),
        graph.self_recall(2000, Some(64))?
    ));
        notes.push(persist_note(&graph, &vectors));
        for &ef in efs {
            let (recall, qps) = run_queries(&graph, queries, &truth, Some(ef), Filter::All)?;
            rows.push(BenchRow {
                index: "graph (ours)".into(),
                ef: Some(ef),
                build_seconds,
                recall,
                qps,
                memory_mib,
            });
        }
        // As served: the exact norm walk first (`graph/head.rs`), the graph for what it leaves.
        let mut graph = graph;
        let walk_items = super::IndexSettings::default().norm_scan_items;
        graph.set_norm_scan(walk_items);
        if let Some(share) = graph.norm_scan_exact_share(queries, k) {
            notes.push(format!(
                "norm walk over the {} largest-norm items: exact top {k} without the graph for {:.1}% of the queries",
                walk_items.min(n),
                100.0 * share
            ));
        }
        for &ef in efs {
            let (recall, qps) = run_queries(&graph, queries, &truth, Some(ef), Filter::All)?;
            rows.push(BenchRow {
                index: "graph (ours) + norm walk".into(),
                ef: Some(ef),
                build_seconds,
                recall,
                qps,
                memory_mib,
            });
        }
        graph.set_norm_scan(0);
        // The same links walked with the f32 vectors instead of the byte codes.
        let graph = graph.with_quantized(false);
        for &ef in efs {
            let (recall, qps) = run_queries(&graph, queries, &truth, Some(ef), Filter::All)?;
            rows.push(BenchRow {
                index: "graph (ours), f32 walk".into(),
                ef: Some(ef),
                build_seconds,
                recall,
                qps,
                memory_mib,
            });
        }
        let graph = graph.with_quantized(true);
        let ef = efs.iter().copied().max().unwrap_or(64);
        // exact_filter_below = 0 above: this row is the beam with the predicate inside it.
        let (recall, qps) = run_queries(&graph, queries, &truth_filtered, Some(ef), only)?;
        rows.push(BenchRow {
            index: "graph (ours), 1% allowed, beam".into(),
            ef: Some(ef),
            build_seconds,
            recall,
            qps,
            memory_mib,
        });
        let graph =
            graph.with_exact_filter_below(super::IndexSettings::default().exact_filter_below);
        let (recall, qps) = run_queries(&graph, queries, &truth_filtered, Some(ef), only)?;
        rows.push(BenchRow {
            index: "graph (ours), 1% allowed, as served (exact below 2000)".into(),
            ef: Some(ef),
            build_seconds,
            recall,
            qps,
            memory_mib,
        });
        drop(graph);
    }

    if want(BenchIndex::Hnswlib) {
        match hnswlib_rows(&vectors, queries, &truth, params, efs, threads) {
            Ok(mut r) => rows.append(&mut r),
            Err(why) => notes.push(format!("hnswlib column skipped: {why}")),
        }
    }

    if !want(BenchIndex::HnswRs) {
        return Ok(report);
    }
    let ef = efs.iter().copied().max().unwrap_or(64);
    let before = resident_bytes();
    // exact_filter_below = 0: measure the graph's own filtered search, not the exact fallback.
    let graph = HnswRsIndex::build(vectors.clone(), params.clone(), 0)?;
    let memory_mib = mib(resident_bytes().saturating_sub(before));
    let build_seconds = graph.info().build_seconds;
    for &ef in efs {
        let (recall, qps) = run_queries(&graph, queries, &truth, Some(ef), Filter::All)?;
        rows.push(BenchRow {
            index: "hnsw_rs".into(),
            ef: Some(ef),
            build_seconds,
            recall,
            qps,
            memory_mib,
        });
    }
    let (recall, qps) = run_queries(&graph, queries, &truth_filtered, Some(ef), only)?;
    rows.push(BenchRow {
        index: "hnsw_rs, 1% allowed".into(),
        ef: Some(ef),
        build_seconds,
        recall,
        qps,
        memory_mib,
    });
    Ok(report)
}

/// Saves the graph to a temporary file and times loading it back (model file to ready to serve).
fn persist_note(graph: &GraphIndex, vectors: &Arc<ItemVectors>) -> String {
    let path = std::env::temp_dir().join(format!("fmrecall-bench-{}.graph", std::process::id()));
    let started = Instant::now();
    if let Err(e) = graph.save(&path) {
        return format!("graph file: save failed: {e}");
    }
    let saved = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).map_or(0, |m| m.len() as usize);
    let started = Instant::now();
    let loaded = GraphIndex::load(&path, vectors.clone());
    let load = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    match loaded {
        Ok(_) => format!(
            "graph file: {:.1} MiB, saved in {saved:.2} s, loaded and verified (checksum, fingerprint, links) in {load:.2} s",
            mib(size)
        ),
        Err(e) => format!("graph file: load failed: {e}"),
    }
}

/// The hnswlib baseline script, embedded so the bench runs from any directory.
const HNSWLIB_SCRIPT: &str = include_str!("../../benches/hnswlib_baseline.py");

/// Runs `benches/hnswlib_baseline.py` on the same vectors, queries and exact top-k; `Err` says
/// why the column is skipped.
fn hnswlib_rows(
    vectors: &ItemVectors,
    queries: &[Vec<f32>],
    truth: &[Vec<u32>],
    params: &HnswParams,
    efs: &[usize],
    threads: usize,
) -> Result<Vec<BenchRow>, String> {
    let k = truth.first().map_or(10, Vec::len);
    let head = [
        vectors.len(),
        queries.len(),
        vectors.dim(),
        threads,
        params.m,
        params.ef_construction,
        k,
        efs.len(),
    ];
    let header: Vec<usize> = head.iter().chain(efs).copied().collect();
    let out = run_hnswlib_script(
        ("hnswlib_baseline.py", HNSWLIB_SCRIPT),
        &header,
        vectors.as_slice(),
        queries,
        (truth, k),
        &[],
    )?;
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<BenchRow>(l).map_err(|e| e.to_string()))
        .collect()
}

/// Runs an hnswlib script (`name`, `text`) with `$FMRECALL_PYTHON` (default `python3`) on one
/// little-endian input file: the u32 `header`, the f32 `rows` then `queries`, then each query's
/// first `k` true ids (u32::MAX where fewer), then `tail`; returns its standard output. `Err` says why not
/// (no interpreter, no hnswlib, the script failed). NumPy runs on one thread, like our queries.
pub(crate) fn run_hnswlib_script(
    (name, text): (&str, &str),
    header: &[usize],
    rows: &[f32],
    queries: &[Vec<f32>],
    (truth, k): (&[Vec<u32>], usize),
    tail: &[u8],
) -> Result<String, String> {
    use std::process::Command;
    let python = std::env::var("FMRECALL_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import hnswlib, numpy"])
        .output()
        .map_err(|e| format!("{python} not runnable ({e})"))?;
    if !probe.status.success() {
        return Err(format!(
            "`import hnswlib, numpy` fails in {python} (set FMRECALL_PYTHON to a venv with hnswlib==0.8.0)"
        ));
    }
    let dir = std::env::temp_dir().join(format!("fmrecall-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = (|| {
        let script = dir.join(name);
        std::fs::write(&script, text).map_err(|e| e.to_string())?;
        let mut buf: Vec<u8> = Vec::new();
        for v in header {
            buf.extend_from_slice(&(*v as u32).to_le_bytes());
        }
        for x in rows.iter().chain(queries.iter().flatten()) {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        for t in truth {
            for i in 0..k {
                let id = t.get(i).copied().unwrap_or(u32::MAX);
                buf.extend_from_slice(&id.to_le_bytes());
            }
        }
        buf.extend_from_slice(tail);
        let input = dir.join("input.bin");
        std::fs::write(&input, &buf).map_err(|e| e.to_string())?;
        drop(buf);
        let out = Command::new(&python)
            .env("OPENBLAS_NUM_THREADS", "1")
            .env("OMP_NUM_THREADS", "1")
            .arg(&script)
            .arg(&input)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "hnswlib script failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The rows as a Markdown table (`k`: the run's recall depth).
pub fn table(rows: &[BenchRow], k: usize) -> String {
    let mut out = format!(
        "| index | ef | build s | recall@{k} | queries/s (1 thread) | memory MiB |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.3} | {:.0} | {:.0} |\n",
            r.index,
            r.ef.map_or("-".into(), |e| e.to_string()),
            r.build_seconds,
            r.recall,
            r.qps,
            r.memory_mib
        ));
    }
    out
}

/// A trained model's item vectors, and the queries of up to `n_queries` of its known users. The
/// harness's one tie to the model (`bench-index --model`); the indexes read only `vectors`.
pub fn from_model(
    dir: &std::path::Path,
    n_queries: usize,
) -> Result<(ItemVectors, Vec<Vec<f32>>), crate::fm::ArtifactError> {
    use crate::fm::{ModelArtifact, UserQuery};
    let artifact = ModelArtifact::load(dir)?;
    let items = ItemVectors::new(&artifact.model, &artifact.item_rows());
    let users = artifact.user_rows();
    let step = (users.len() / n_queries.max(1)).max(1);
    let queries = (0..users.len())
        .step_by(step)
        .take(n_queries)
        .map(|u| UserQuery::new(&artifact.model, users.row(u)).vector)
        .collect();
    Ok((items, queries))
}
