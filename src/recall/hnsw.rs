//! The hnsw_rs graph index, adapted to maximum inner product search.
//!
//! hnsw_rs needs a distance ≥ 0 and panics on NaN. Measured here (CRATES.md), the MIPS→L2 reduction
//! recalls badly, while scaling every item by 1/max‖x‖ (so ‖x‖ ≤ 1) and normalising the query, then
//! using 1 − ⟨a, b⟩, keeps the distance in [0, 2] and ranks exactly like the inner product for a given
//! query. We supply that distance ourselves ([`ScaledDot`]) so that no input can reach an assertion:
//! vectors are checked finite before insertion and the distance is clamped at 0.
//! Candidates are re-scored with the exact, unscaled inner product.

use std::sync::Arc;
use std::time::Instant;

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;
use serde::{Deserialize, Serialize};

use super::exact::exact_top_k;
use super::{
    check_finite, check_finite_rows, check_query, check_range, ExactIndex, Filter, Hit, IndexError,
    IndexInfo, RecallIndex,
};
use crate::kernels::dot;
use crate::vectors::ItemVectors;

/// 1 − ⟨a, b⟩ for a unit query and items of norm ≤ 1, clamped at 0 (NaN maps to 0 too).
#[derive(Debug, Default, Clone, Copy)]
pub struct ScaledDot;

impl Distance<f32> for ScaledDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// Graph parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HnswParams {
    /// Links per node (M); hnsw_rs exits the process above 256, so we refuse more.
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Default candidate list size while searching.
    pub ef_search: usize,
    /// Upper bound on layers (hnsw_rs clamps to 16).
    pub max_layers: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
            max_layers: 16,
        }
    }
}

impl HnswParams {
    /// Checks ranges before hnsw_rs sees them (it exits or panics on some).
    pub fn check(&self) -> Result<(), IndexError> {
        check_range("hnsw.m", self.m, 2..=256, "in 2..=256")?;
        check_range(
            "hnsw.ef_construction",
            self.ef_construction,
            1..=10_000,
            "in 1..=10000",
        )?;
        check_range("hnsw.ef_search", self.ef_search, 1..=10_000, "in 1..=10000")?;
        check_range("hnsw.max_layers", self.max_layers, 1..=16, "in 1..=16")
    }
}

/// hnsw_rs over scaled item vectors, with exact re-scoring and an exact path for selective filters.
pub struct HnswRsIndex {
    /// Shared with the copy made when the vectors grow ([`RecallIndex::regrown`]).
    graph: Arc<Hnsw<'static, f32, ScaledDot>>,
    vectors: Arc<ItemVectors>,
    /// The build's scale (vectors × scale have norm below 1); inserted rows get the same, and a
    /// larger-norm newcomer is clamped by the distance but re-scored exactly.
    scale: f32,
    params: HnswParams,
    exact_filter_below: usize,
    build_seconds: f64,
}

impl HnswRsIndex {
    /// Builds the graph with all cores (hnsw_rs' parallel insertion).
    pub fn build(
        vectors: Arc<ItemVectors>,
        params: HnswParams,
        exact_filter_below: usize,
    ) -> Result<Self, IndexError> {
        params.check()?;
        check_finite(&vectors)?;
        let started = Instant::now();
        let n = vectors.len();
        let max_norm = (0..n)
            .map(|i| dot(vectors.row(i), vectors.row(i)).sqrt())
            .fold(0f32, f32::max);
        // A hair below 1 so that rounding never pushes a self-product above 1.
        let scale = if max_norm > 0.0 {
            0.999 / max_norm
        } else {
            1.0
        };
        let scaled: Vec<Vec<f32>> = (0..n)
            .map(|i| vectors.row(i).iter().map(|x| x * scale).collect())
            .collect();
        let graph = Hnsw::new(
            params.m,
            n.max(1),
            params.max_layers,
            params.ef_construction,
            ScaledDot,
        );
        let data: Vec<(&[f32], usize)> = scaled
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_slice(), i))
            .collect();
        graph.parallel_insert_slice(&data);
        let mut graph = graph;
        graph.set_searching_mode(true);
        Ok(HnswRsIndex {
            graph: Arc::new(graph),
            vectors,
            scale,
            params,
            exact_filter_below,
            build_seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The parameters it was built and searches with.
    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// Changes the default search breadth (a search parameter: the graph stays).
    pub fn set_ef_search(&mut self, ef_search: usize) {
        self.params.ef_search = ef_search.max(1);
    }

    /// Share of a sample of items that the graph returns for their own vector whenever exact
    /// search does (exact MIPS need not rank an item first for itself).
    pub fn self_recall(&self, exact: &ExactIndex, sample: usize) -> Result<f64, IndexError> {
        super::measure::self_recall(self, exact.vectors(), sample, None)
    }

    fn rescore(&self, query: &[f32], ids: impl Iterator<Item = usize>, k: usize) -> Vec<Hit> {
        let mut hits: Vec<Hit> = ids
            .map(|i| Hit {
                item: i as u32,
                score: dot(query, self.vectors.row(i)),
            })
            .collect();
        hits.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
        hits.truncate(k);
        hits
    }
}

impl RecallIndex for HnswRsIndex {
    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Filter<'_>,
    ) -> Result<Vec<Hit>, IndexError> {
        check_query(query, self.vectors.dim())?;
        let n = self.vectors.len();
        if k == 0 || n == 0 {
            return Ok(Vec::new());
        }
        // A selective filter leaves too few allowed points for the graph walk: scan them exactly.
        if !matches!(filter, Filter::All) && filter.allowed_count(n) <= self.exact_filter_below {
            return Ok(exact_top_k(&self.vectors, query, k, filter));
        }
        let norm = dot(query, query).sqrt();
        if norm == 0.0 {
            return Ok(exact_top_k(&self.vectors, query, k, filter));
        }
        let unit: Vec<f32> = query.iter().map(|x| x / norm).collect();
        let ef = ef.unwrap_or(self.params.ef_search).max(k);
        let found = match filter {
            Filter::All => self.graph.search(&unit, k, ef),
            _ => {
                let allows = |id: &usize| filter.allows(*id as u32);
                self.graph.search_filter(&unit, k, ef, Some(&allows))
            }
        };
        Ok(self.rescore(query, found.into_iter().map(|nb| nb.d_id), k))
    }

    fn work_estimate(&self, k: usize, ef: Option<usize>) -> u64 {
        let ef = ef.unwrap_or(self.params.ef_search).max(k);
        (ef * 2 * self.params.m * self.vectors.dim()) as u64
    }

    fn info(&self) -> IndexInfo {
        let n = self.vectors.len();
        let links = n * self.params.m * 2 * std::mem::size_of::<usize>();
        IndexInfo {
            kind: "hnsw_rs",
            items: n,
            dim: self.vectors.dim(),
            params: serde_json::to_value(&self.params).unwrap_or_default(),
            // Scaled copy inside the graph, the unscaled vectors for re-scoring, and the links.
            memory_bytes: 2 * std::mem::size_of_val(self.vectors.as_slice()) + links,
            build_seconds: self.build_seconds,
        }
    }

    /// hnsw_rs' own concurrent insertion, of the rows scaled like the build's.
    fn insert(&self, first: u32, count: usize) -> Result<(), IndexError> {
        super::check_appended(&self.vectors, first, count)?;
        check_finite_rows(&self.vectors, first as usize..first as usize + count)?;
        for i in first as usize..first as usize + count {
            let scaled: Vec<f32> = self.vectors.row(i).iter().map(|x| x * self.scale).collect();
            self.graph.insert_slice((&scaled, i));
        }
        Ok(())
    }

    fn regrown(&self, vectors: Arc<ItemVectors>) -> Result<Arc<dyn RecallIndex>, IndexError> {
        Ok(Arc::new(HnswRsIndex {
            graph: self.graph.clone(),
            vectors,
            scale: self.scale,
            params: self.params.clone(),
            exact_filter_below: self.exact_filter_below,
            build_seconds: self.build_seconds,
        }))
    }
}
