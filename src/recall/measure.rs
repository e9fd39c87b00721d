//! How well an index recalls against brute force: the measures shared by the load-time check
//! (`build.rs`), the benchmark (`bench.rs`) and each graph's own `self_recall`.

use super::exact::{self, ExactIndex};
use super::{Filter, IndexError, RecallIndex};
use crate::vectors::ItemVectors;

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
    exact_truth_each(exact, queries, k, |_| filter)
}

/// [`exact_truth`] with query `q` under `filter_of(q)` (a user's own seen items excluded).
pub(crate) fn exact_truth_each<'f>(
    exact: &ExactIndex,
    queries: &[Vec<f32>],
    k: usize,
    filter_of: impl Fn(usize) -> Filter<'f>,
) -> Result<Vec<Vec<u32>>, IndexError> {
    queries
        .iter()
        .enumerate()
        .map(|(n, q)| {
            Ok(exact
                .search(q, k, None, filter_of(n))?
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
    recall_against_each(index, queries, truth, k, ef, |_| filter)
}

/// [`recall_against`] with query `q` under `filter_of(q)`.
pub(crate) fn recall_against_each<'f>(
    index: &dyn RecallIndex,
    queries: &[Vec<f32>],
    truth: &[Vec<u32>],
    k: usize,
    ef: Option<usize>,
    filter_of: impl Fn(usize) -> Filter<'f>,
) -> Result<f64, IndexError> {
    if queries.is_empty() {
        return Ok(1.0);
    }
    let mut total = 0.0;
    for (n, (q, t)) in queries.iter().zip(truth).enumerate() {
        let got = index.search(q, k, ef, filter_of(n))?;
        let hits = got.iter().filter(|h| t.contains(&h.item)).count();
        total += hits as f64 / t.len().max(1) as f64;
    }
    Ok(total / queries.len() as f64)
}

/// Recall@10 and recall@100 of `index` (default breadth) against exact search on `queries` under
/// `filter`, from one exact pass at depth 100 (the top 10 is its prefix): how a serving model
/// re-measures its index after live writes.
pub fn recall_at_10_and_100(
    index: &dyn RecallIndex,
    exact: &ExactIndex,
    queries: &[Vec<f32>],
    filter: Filter<'_>,
) -> Result<(f64, f64), IndexError> {
    let truth_100 = exact_truth(exact, queries, 100, filter)?;
    let truth_10: Vec<Vec<u32>> = truth_100
        .iter()
        .map(|t| t[..t.len().min(10)].to_vec())
        .collect();
    Ok((
        recall_against(index, queries, &truth_10, 10, None, filter)?,
        recall_against(index, queries, &truth_100, 100, None, filter)?,
    ))
}
