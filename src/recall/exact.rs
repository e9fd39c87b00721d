//! Brute-force maximum inner product search: the reference every other index is measured against.

use std::sync::Arc;

use super::{check_query, Filter, Hit, IndexError, IndexInfo, RecallIndex, TopK};
use crate::kernels::dot;
use crate::vectors::ItemVectors;

/// Scans every allowed item; exact by construction. One streaming pass over the contiguous vectors
/// with a k-sized heap: no per-query buffer proportional to the catalog.
#[derive(Debug, Clone)]
pub struct ExactIndex {
    vectors: Arc<ItemVectors>,
}

impl ExactIndex {
    /// Wraps the item vectors (no copy).
    pub fn new(vectors: Arc<ItemVectors>) -> Self {
        ExactIndex { vectors }
    }

    /// The vectors searched.
    pub fn vectors(&self) -> &ItemVectors {
        &self.vectors
    }
}

/// Exact top-k of `query` over `vectors` under `filter`.
pub(crate) fn exact_top_k(
    vectors: &ItemVectors,
    query: &[f32],
    k: usize,
    filter: Filter<'_>,
) -> Vec<Hit> {
    let n = vectors.len();
    let mut top = TopK::new(k.min(n));
    if let Filter::All = filter {
        // Blocks of rows scored by one kernel call into a stack buffer: no per-query allocation
        // beyond the k results.
        const BLOCK: usize = 256;
        let mut scores = [0f32; BLOCK];
        let dim = vectors.dim();
        for (b, rows) in vectors.as_slice().chunks(BLOCK * dim).enumerate() {
            let m = rows.len() / dim;
            crate::kernels::dot_rows(query, rows, &mut scores[..m]);
            for (r, &s) in scores[..m].iter().enumerate() {
                if s > top.threshold() {
                    top.push((b * BLOCK + r) as u32, s);
                }
            }
        }
        return top.into_sorted();
    }
    let mut consider = |i: usize| {
        let s = dot(query, vectors.row(i));
        if s > top.threshold() {
            top.push(i as u32, s);
        }
    };
    match filter {
        Filter::All => {}
        Filter::Only(list) => list
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| i < n)
            .for_each(&mut consider),
        Filter::Exclude(list) => {
            // Walk the sorted exclusion list alongside the items instead of searching it per item.
            let mut next = list.iter().map(|&i| i as usize).peekable();
            for i in 0..n {
                while next.peek().is_some_and(|&e| e < i) {
                    next.next();
                }
                if next.peek() == Some(&i) {
                    continue;
                }
                consider(i);
            }
        }
    }
    top.into_sorted()
}

impl RecallIndex for ExactIndex {
    fn search(
        &self,
        query: &[f32],
        k: usize,
        _ef: Option<usize>,
        filter: Filter<'_>,
    ) -> Result<Vec<Hit>, IndexError> {
        check_query(query, self.vectors.dim())?;
        Ok(exact_top_k(&self.vectors, query, k, filter))
    }

    fn work_estimate(&self, _k: usize, _ef: Option<usize>) -> u64 {
        (self.vectors.len() * self.vectors.dim()) as u64
    }

    fn info(&self) -> IndexInfo {
        IndexInfo {
            kind: "exact",
            items: self.vectors.len(),
            dim: self.vectors.dim(),
            params: serde_json::json!({}),
            memory_bytes: std::mem::size_of_val(self.vectors.as_slice()),
            build_seconds: 0.0,
        }
    }

    /// Nothing to link: a scan reads every published row.
    fn insert(&self, first: u32, count: usize) -> Result<(), IndexError> {
        super::check_appended(&self.vectors, first, count)
    }

    fn regrown(&self, vectors: Arc<ItemVectors>) -> Result<Arc<dyn RecallIndex>, IndexError> {
        Ok(Arc::new(ExactIndex::new(vectors)))
    }
}

/// Exact top-k over the items that `filter` allows and `keep` accepts too: the exact path of an index
/// with its own exclusions (the graph's tombstones) on top of the caller's filter.
pub(crate) fn exact_top_k_where(
    vectors: &ItemVectors,
    query: &[f32],
    k: usize,
    filter: Filter<'_>,
    keep: impl Fn(u32) -> bool,
) -> Vec<Hit> {
    let n = vectors.len();
    let mut top = TopK::new(k.min(n));
    let mut consider = |i: usize| {
        if !keep(i as u32) {
            return;
        }
        let s = dot(query, vectors.row(i));
        if s > top.threshold() {
            top.push(i as u32, s);
        }
    };
    match filter {
        Filter::Only(list) => list
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| i < n)
            .for_each(&mut consider),
        Filter::All | Filter::Exclude(_) => (0..n)
            .filter(|&i| filter.allows(i as u32))
            .for_each(&mut consider),
    }
    top.into_sorted()
}
