//! Export of an FM to inner-product form, so that recall is one dot product per item.
//!
//! For a user with feature set U and an item with feature set I (p, q the sums of their factors):
//! c_u = w0 + Σ_U w_j x_j + ½(‖p_u‖² − Σ_U ‖v_j‖² x_j²),
//! b_i = Σ_I w_j x_j + ½(‖q_i‖² − Σ_I ‖v_j‖² x_j²),
//! FM(u, i) = c_u + b_i + ⟨p_u, q_i⟩ = c_u + ⟨[p_u; 1], [q_i; b_i]⟩,
//! because the pairwise term over U ∪ I splits into within-U, within-I and cross terms, and the cross
//! term is exactly ⟨p_u, q_i⟩. Ranking items by ⟨[p_u; 1], [q_i; b_i]⟩ is therefore FM ranking.

use super::model::{FmModel, SparseRow};
use crate::data::FeatureRows;
use crate::vectors::ItemVectors;

/// The sum of a side's factor vectors and the part of the FM score that depends on that side alone
/// (its linear terms plus its within-side interactions).
pub fn side_terms(model: &FmModel, (idx, val): SparseRow<'_>, out: &mut [f32]) -> f32 {
    out.iter_mut().for_each(|o| *o = 0.0);
    let mut linear = 0.0;
    // Σ_j (v_jf x_j)² per factor f, summed at the end: one running sum would chain every
    // addition and keep the loop from vectorizing (it was 2% of a served recall).
    let mut squares = vec![0f32; out.len()];
    for (&j, &x) in idx.iter().zip(val) {
        linear += model.w[j as usize] * x;
        for ((o, sq), &v) in out.iter_mut().zip(&mut squares).zip(model.factors(j)) {
            let t = v * x;
            *o += t;
            *sq += t * t;
        }
    }
    let norm2: f32 = out.iter().map(|o| o * o).sum();
    let sq: f32 = squares.iter().sum();
    linear + 0.5 * (norm2 - sq)
}

/// A user's query: `vector` = [p_u; 1] (length k + 1) and the constant c_u, so that
/// FM(u, i) = constant + ⟨vector, item_vector_i⟩.
#[derive(Debug, Clone, PartialEq)]
pub struct UserQuery {
    /// [p_u; 1].
    pub vector: Vec<f32>,
    /// c_u.
    pub constant: f32,
}

impl UserQuery {
    /// The query of a user with these (encoded) features.
    pub fn new(model: &FmModel, row: SparseRow<'_>) -> Self {
        let k = model.dim();
        let mut vector = vec![0f32; k + 1];
        let within = side_terms(model, row, &mut vector[..k]);
        vector[k] = 1.0;
        UserQuery {
            vector,
            constant: model.w0 + within,
        }
    }
}

// `ItemVectors` lives in `vectors.rs`, apart from the model, so that the recall index depends on
// vectors and kernels only; its FM constructor lives here, with the FM maths.
impl ItemVectors {
    /// Computes every item's vector [q_i; b_i] from its features.
    pub fn new(model: &FmModel, items: &FeatureRows) -> Self {
        let k = model.dim();
        ItemVectors::from_fn(items.len(), k + 1, |i, row| {
            row[k] = side_terms(model, items.row(i), &mut row[..k]);
        })
    }
}

/// One item's exported vector [q_i; b_i] (length k + 1) from its encoded features: what
/// [`ItemVectors::new`] computes for every trained item, for an item written while serving.
pub fn item_vector(model: &FmModel, row: SparseRow<'_>) -> Vec<f32> {
    let k = model.dim();
    let mut vector = vec![0f32; k + 1];
    vector[k] = side_terms(model, row, &mut vector[..k]);
    vector
}
