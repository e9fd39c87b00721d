//! The vectors recall searches: one row per item in a contiguous row-major f32 matrix. Kept beside
//! the kernels and apart from the model, so that the index depends on vectors and kernels only;
//! `fm::export` makes them from a trained model (rows [q_i; b_i]).

/// All items as rows of one contiguous row-major matrix (n_items × dim), in a huge-page buffer
/// (see `memory.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemVectors {
    dim: usize,
    data: Vec<f32>,
}

impl ItemVectors {
    /// `n` rows `dim` long, each written in place by `fill(i, row)` (no copy of the matrix).
    /// **Panics** if `dim` is 0.
    pub fn from_fn(n: usize, dim: usize, mut fill: impl FnMut(usize, &mut [f32])) -> Self {
        let mut data = crate::memory::filled_vec(n * dim, 0f32);
        for (i, row) in data.chunks_exact_mut(dim).enumerate() {
            fill(i, row);
        }
        ItemVectors { dim, data }
    }

    /// Builds from raw rows (each `dim` long), copied into a huge-page buffer (see `memory.rs`).
    /// **Panics** if `dim` is 0 or `data` is not a whole number of rows.
    pub fn from_raw(dim: usize, data: Vec<f32>) -> Self {
        assert!(dim > 0 && data.len() % dim == 0, "ragged item vectors");
        ItemVectors {
            dim,
            data: crate::memory::copied_vec(&data),
        }
    }

    /// Vector length (k + 1 for an FM's items).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Item i's vector.
    #[inline]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// All vectors, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// ⟨query, item_i⟩ for every item, into `out` (length `len()`).
    pub fn scores_into(&self, query: &[f32], out: &mut [f32]) {
        crate::kernels::dot_rows(&query[..self.dim.min(query.len())], &self.data, out);
    }
}
