//! Brute-force maximum inner product search: the reference every other index is measured against.

use std::sync::Arc;

use super::{check_query, Filter, Hit, IndexError, IndexInfo, RecallIndex, TopK};
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

/// Rows scored per kernel call, into stack buffers: no allocation per query beyond the k results.
const BLOCK: usize = 256;

/// Offers `top` the scores of the rows `rows` yields (each published), a block of rows per kernel
/// call ([`crate::kernels::dot_gather`], which prefetches the rows it is about to read: an allowed
/// list's rows are scattered over the matrix).
fn scan_rows(
    vectors: &ItemVectors,
    query: &[f32],
    rows: impl Iterator<Item = u32>,
    top: &mut TopK,
) {
    let matrix = vectors.as_slice();
    let query = &query[..vectors.dim().min(query.len())];
    let mut block = [0u32; BLOCK];
    let mut scores = [0f32; BLOCK];
    let offer = |ids: &[u32], scores: &mut [f32], top: &mut TopK| {
        crate::kernels::dot_gather(query, matrix, ids, scores);
        for (&i, &s) in ids.iter().zip(scores.iter()) {
            if s > top.threshold() {
                top.push(i, s);
            }
        }
    };
    let mut m = 0;
    for i in rows {
        block[m] = i;
        m += 1;
        if m == BLOCK {
            offer(&block, &mut scores, top);
            m = 0;
        }
    }
    offer(&block[..m], &mut scores[..m], top);
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
    scan_rows(vectors, query, filter.rows(n), &mut top);
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
