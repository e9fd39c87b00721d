//! `fmrecall bench-filter`: filtered recall@k and single-thread queries/s at several
//! selectivities, for filters drawn at random and filters correlated with the query (the items it
//! scores best removed: the hard case), comparing the graph as served (planner, norm walk, tuned
//! breadth), an exact scan over the allowed items and hnswlib 0.8 with its `filter=` callable, on
//! the same vectors and queries in one run.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::bench::{run_hnswlib_script, PASSES};
use super::{ExactIndex, Filter, FilterSet, IndexError, IndexKind, IndexSettings, RecallIndex};
use crate::rng::Rng;
use crate::vectors::ItemVectors;

/// How the allowed items relate to the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterKind {
    /// Each item allowed with probability s, the same set for every query.
    Random,
    /// Per query, the (1 − s) · n items it scores best are removed: the best allowed items sit
    /// where the graph leads away from.
    Correlated,
}

/// What one bench-filter run measures.
#[derive(Debug, Clone)]
pub struct FilterSpec {
    /// Shares of the items a filter allows.
    pub selectivities: Vec<f64>,
    /// Recall depth.
    pub k: usize,
    /// Queries of the correlated rows (each needs its own filter and a full scoring pass).
    pub correlated_queries: usize,
    /// hnswlib's breadths, tried from the smallest until recall reaches `target`.
    pub hnswlib_efs: Vec<usize>,
    /// The recall asked of every row.
    pub target: f64,
    /// The service's index settings (the graph is built and tuned as `serve` does).
    pub settings: IndexSettings,
    /// Seed of the random filters.
    pub seed: u64,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilterRow {
    /// Random or correlated.
    pub filter: FilterKind,
    /// Share of the items allowed.
    pub selectivity: f64,
    /// Queries measured.
    pub queries: usize,
    /// Exact scan over the allowed items, queries/s (one thread).
    pub exact_qps: f64,
    /// The graph as served: recall@k against the exact filtered top k.
    pub served_recall: f64,
    /// The graph as served, queries/s.
    pub served_qps: f64,
    /// How the served searches were planned, e.g. `graph 100%` or `exact 98%, graph→exact 2%`.
    pub plans: String,
    /// hnswlib: the breadth chosen (the smallest reaching the target, else the best recall).
    pub hnswlib_ef: Option<usize>,
    /// hnswlib's recall@k there.
    pub hnswlib_recall: Option<f64>,
    /// hnswlib's queries/s there.
    pub hnswlib_qps: Option<f64>,
}

/// The table and the notes printed above it.
#[derive(Debug, Clone, Default)]
pub struct FilterReport {
    /// One row per (kind, selectivity).
    pub rows: Vec<FilterRow>,
    /// Remarks: data, index quality, skipped columns.
    pub notes: Vec<String>,
}

/// One row's filters, in the form the service searches with ([`FilterSet::for_search`]: a long
/// list as a bitmap), given alike to the exact scan and the served index: one shared filter, or
/// one per query.
enum RowFilters {
    Shared(FilterSet),
    PerQuery(Vec<FilterSet>),
}

impl RowFilters {
    fn get(&self, q: usize) -> Filter<'_> {
        match self {
            RowFilters::Shared(set) => set.as_filter(),
            RowFilters::PerQuery(sets) => sets[q].as_filter(),
        }
    }

    /// The allowed items of query `q` as a bitmap of `n` bits (hnswlib's input).
    fn bitmap(&self, q: usize, n: usize) -> Vec<u8> {
        let filter = self.get(q);
        let mut bits = vec![0u8; n.div_ceil(8)];
        for i in 0..n as u32 {
            if filter.allows(i) {
                bits[i as usize >> 3] |= 1 << (i & 7);
            }
        }
        bits
    }
}

/// Each item allowed with probability `s` (a seeded draw per item).
fn random_filter(n: usize, s: f64, seed: u64) -> Vec<u32> {
    let mut rng = Rng::derive(seed, (s * 1e9) as u64);
    (0..n as u32).filter(|_| rng.uniform() < s).collect()
}

/// For each query, the items outside its best (1 − s) · n: as the removed list when that is the
/// shorter, else as the allowed list (a bitmap when long).
fn correlated_filters(vectors: &ItemVectors, queries: &[Vec<f32>], s: f64) -> RowFilters {
    let n = vectors.len();
    let removed = ((1.0 - s) * n as f64).round() as usize;
    let exclude = removed <= n / 2;
    let sets = queries
        .iter()
        .map(|q| {
            let mut order: Vec<(f32, u32)> = (0..n)
                .map(|i| (crate::kernels::dot(q, vectors.row(i)), i as u32))
                .collect();
            if removed > 0 && removed < n {
                order.select_nth_unstable_by(removed, |a, b| b.0.total_cmp(&a.0));
            }
            let (best, rest) = order.split_at(removed.min(n));
            let mut list: Vec<u32> = if exclude { best } else { rest }
                .iter()
                .map(|&(_, i)| i)
                .collect();
            list.sort_unstable();
            let set = if exclude {
                FilterSet::Exclude(list)
            } else {
                FilterSet::Only(list)
            };
            set.for_search(n)
        })
        .collect();
    RowFilters::PerQuery(sets)
}

/// Runs every query of a row once per pass; returns (mean recall@k against `truth`, best q/s).
fn timed(
    index: &dyn RecallIndex,
    queries: &[Vec<f32>],
    filters: &RowFilters,
    truth: &[Vec<u32>],
    k: usize,
) -> Result<(f64, f64), IndexError> {
    let mut best = f64::INFINITY;
    let mut recall = 0.0;
    for _ in 0..PASSES {
        let (mut found, mut expected) = (0usize, 0usize);
        let started = Instant::now();
        for (i, q) in queries.iter().enumerate() {
            let hits = index.search(q, k, None, filters.get(i))?;
            expected += truth[i].len();
            found += hits.iter().filter(|h| truth[i].contains(&h.item)).count();
        }
        best = best.min(started.elapsed().as_secs_f64().max(1e-9));
        recall = if expected == 0 {
            1.0
        } else {
            found as f64 / expected as f64
        };
    }
    Ok((recall, queries.len() as f64 / best))
}

/// The served index's plan counters.
fn plan_counts(index: &dyn RecallIndex) -> [u64; 4] {
    let plans = &index.info().params["plans"];
    ["graph", "filtered_graph", "exact_scan", "graph_then_exact"]
        .map(|k| plans[k].as_u64().unwrap_or(0))
}

fn plan_summary(before: [u64; 4], after: [u64; 4]) -> String {
    let d: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    let total = d.iter().sum::<u64>().max(1) as f64;
    ["graph", "filtered graph", "exact", "graph→exact"]
        .iter()
        .zip(&d)
        .filter(|(_, &c)| c > 0)
        .map(|(name, &c)| format!("{name} {:.0}%", 100.0 * c as f64 / total))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The hnswlib filter script, embedded so the bench runs from any directory.
const HNSWLIB_FILTER_SCRIPT: &str = include_str!("../../benches/hnswlib_filter.py");

/// Runs the table: for each kind and selectivity, the exact scan (which also gives the truth), the
/// served graph and hnswlib.
pub fn run(
    vectors: Arc<ItemVectors>,
    queries: &[Vec<f32>],
    spec: &FilterSpec,
) -> Result<FilterReport, IndexError> {
    let n = vectors.len();
    let k = spec.k.clamp(1, n.max(1));
    let mut report = FilterReport::default();
    let mut settings = spec.settings.clone();
    settings.kind = IndexKind::Graph;
    let started = Instant::now();
    let (served, quality) = super::build(vectors.clone(), &settings, queries)?;
    report.notes.push(format!(
        "{n} items x {} dims, {} queries (random rows), {} (correlated rows), k = {k}; graph built and tuned as served in {:.1} s: {}",
        vectors.dim(),
        queries.len(),
        spec.correlated_queries.min(queries.len()),
        started.elapsed().as_secs_f64(),
        quality.map_or("no quality check".into(), |q| format!(
            "ef_search {}, unfiltered recall@10 {:.4}; filtered {}",
            q.ef_search,
            q.recall_at_10,
            q.filtered.map_or("-".into(), |f| format!(
                "ef_search by share allowed {} (lowest probe recall@10 {:.4}), exact below {}% allowed",
                f.by_share
                    .iter()
                    .filter_map(|c| Some(format!("{}%: {}", c.share * 100.0, c.ef_search?)))
                    .collect::<Vec<_>>()
                    .join(", "),
                f.recall_at_10,
                f.exact_below_share * 100.0
            ))
        )),
    ));
    let exact = ExactIndex::new(vectors.clone());
    let mut hnswlib_input: Vec<HnswlibInput> = Vec::new();
    for kind in [FilterKind::Random, FilterKind::Correlated] {
        for &s in &spec.selectivities {
            let (row_queries, filters) = match kind {
                FilterKind::Random => {
                    let only = FilterSet::Only(random_filter(n, s, spec.seed));
                    (queries, RowFilters::Shared(only.for_search(n)))
                }
                FilterKind::Correlated => {
                    let qs = &queries[..spec.correlated_queries.min(queries.len())];
                    (qs, correlated_filters(&vectors, qs, s))
                }
            };
            // The exact scan over the allowed items: the baseline and the truth.
            let truth: Vec<Vec<u32>> = row_queries
                .iter()
                .enumerate()
                .map(|(i, q)| {
                    exact
                        .search(q, k, None, filters.get(i))
                        .map(|h| h.iter().map(|h| h.item).collect())
                })
                .collect::<Result<_, _>>()?;
            let (_, exact_qps) = timed(&exact, row_queries, &filters, &truth, k)?;
            let before = plan_counts(served.as_ref());
            let (served_recall, served_qps) =
                timed(served.as_ref(), row_queries, &filters, &truth, k)?;
            let plans = plan_summary(before, plan_counts(served.as_ref()));
            let bitmaps: Vec<u8> = match &filters {
                RowFilters::Shared(_) => filters.bitmap(0, n),
                RowFilters::PerQuery(_) => (0..row_queries.len())
                    .flat_map(|q| filters.bitmap(q, n))
                    .collect(),
            };
            hnswlib_input.push(HnswlibInput {
                shared: kind == FilterKind::Random,
                truth,
                bitmaps,
            });
            report.rows.push(FilterRow {
                filter: kind,
                selectivity: s,
                queries: row_queries.len(),
                exact_qps,
                served_recall,
                served_qps,
                plans,
                hnswlib_ef: None,
                hnswlib_recall: None,
                hnswlib_qps: None,
            });
        }
    }
    drop(served);
    match hnswlib_filtered(
        &vectors,
        queries,
        &spec.settings,
        &spec.hnswlib_efs,
        k,
        spec.target,
        &hnswlib_input,
    ) {
        Ok(results) => {
            for (row, (ef, recall, qps)) in report.rows.iter_mut().zip(results) {
                row.hnswlib_ef = Some(ef);
                row.hnswlib_recall = Some(recall);
                row.hnswlib_qps = Some(qps);
            }
        }
        Err(why) => report.notes.push(format!("hnswlib column skipped: {why}")),
    }
    Ok(report)
}

/// What hnswlib is given of one row: its queries are the first `truth.len()` of the run's.
struct HnswlibInput {
    /// One bitmap for every query (random rows) or one per query.
    shared: bool,
    /// The exact filtered top k of each query.
    truth: Vec<Vec<u32>>,
    /// The allowed items, `n` bits per bitmap.
    bitmaps: Vec<u8>,
}

/// One hnswlib answer per row: (ef, recall, q/s).
#[derive(Deserialize)]
struct HnswlibFilterRow {
    ef: usize,
    recall: f64,
    qps: f64,
}

/// Builds hnswlib once on the vectors and runs every row with its `filter=` callable.
fn hnswlib_filtered(
    vectors: &ItemVectors,
    queries: &[Vec<f32>],
    settings: &IndexSettings,
    efs: &[usize],
    k: usize,
    target: f64,
    rows: &[HnswlibInput],
) -> Result<Vec<(usize, f64, f64)>, String> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let mut header = vec![
        vectors.len(),
        queries.len(),
        vectors.dim(),
        threads,
        settings.hnsw.m,
        settings.hnsw.ef_construction,
        k,
        efs.len(),
        rows.len(),
        (target * 10_000.0).round() as usize,
    ];
    header.extend_from_slice(efs);
    // Each row: its query count, whether its bitmap is shared; then the query ids, truth, bitmaps.
    let mut tail: Vec<u8> = Vec::new();
    for row in rows {
        let count = row.truth.len() as u32;
        for v in [count, u32::from(row.shared)] {
            tail.extend_from_slice(&v.to_le_bytes());
        }
        for q in 0..count {
            tail.extend_from_slice(&q.to_le_bytes());
        }
        for t in &row.truth {
            for i in 0..k {
                tail.extend_from_slice(&t.get(i).copied().unwrap_or(u32::MAX).to_le_bytes());
            }
        }
        tail.extend_from_slice(&row.bitmaps);
    }
    let out = run_hnswlib_script(
        ("hnswlib_filter.py", HNSWLIB_FILTER_SCRIPT),
        &header,
        vectors.as_slice(),
        queries,
        (&[], 0),
        &tail,
    )?;
    let parsed: Vec<HnswlibFilterRow> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    if parsed.len() != rows.len() {
        return Err(format!(
            "hnswlib script answered {} of {} rows",
            parsed.len(),
            rows.len()
        ));
    }
    Ok(parsed
        .into_iter()
        .map(|r| (r.ef, r.recall, r.qps))
        .collect())
}

/// The rows as a Markdown table, with the served graph's q/s as a multiple of the best baseline:
/// the exact scan, or hnswlib at its chosen breadth (counted even where it falls short of the
/// target recall).
pub fn table(rows: &[FilterRow], k: usize) -> String {
    let mut out = format!(
        "| filter | allowed | queries | exact scan q/s | served recall@{k} | served q/s | served plans | hnswlib ef | hnswlib recall@{k} | hnswlib q/s | served ÷ best baseline |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        let best = r.exact_qps.max(r.hnswlib_qps.unwrap_or(0.0));
        let opt = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
        out.push_str(&format!(
            "| {:?} | {}% | {} | {:.0} | {:.4} | {:.0} | {} | {} | {} | {} | {:.2}× |\n",
            r.filter,
            r.selectivity * 100.0,
            r.queries,
            r.exact_qps,
            r.served_recall,
            r.served_qps,
            r.plans,
            r.hnswlib_ef.map_or("-".into(), |e| e.to_string()),
            opt(r.hnswlib_recall, 4),
            opt(r.hnswlib_qps, 0),
            r.served_qps / best,
        ));
    }
    out.replace("| Random |", "| random |")
        .replace("| Correlated |", "| correlated |")
}
