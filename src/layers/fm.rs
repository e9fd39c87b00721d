//! The FM score of one sparse input computed both ways, with what each way costs.
//!
//! Uses [`crate::fm::FmModel`], the model the trainer and the server share, so the diagnostic
//! measures the code that runs: the O(k·m) identity in f32, the precision of training and serving,
//! against the naive pairwise sum accumulated in f64 as the reference.

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema::{Matrix, Vector};
use super::tensor::{self, expect_shape, Num};
use super::{check_elements, check_work, named, LayerError, LayerLimits};
use crate::fm::FmModel;

/// An FM request: the parameters and one sparse input. Every number is rounded once to f32, the
/// precision the trainer and the server use.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"w0": 0.5, "w": [0.1, 0.2, 0.3], "v": [[1.0, 0.0], [0.5, 0.5], [0.0, 2.0]],
                          "indices": [0, 1, 2], "values": [1.0, 2.0, 1.0]}))]
pub struct FmRequest {
    /// Global bias w0.
    #[serde(deserialize_with = "named::w0")]
    pub w0: f64,
    /// Linear weights, n values.
    #[schema(value_type = Vector)]
    pub w: Value,
    /// Factors V, (n, k): row j is v_j.
    #[schema(value_type = Matrix)]
    pub v: Value,
    /// Indices of the m non-zero features, each < n (a repeated index counts as two features).
    #[serde(deserialize_with = "named::indices")]
    pub indices: Vec<u32>,
    /// Their values, one per index.
    #[schema(value_type = Vector)]
    pub values: Value,
}

/// An operation count: the formula in m (non-zeros) and k (factor dimension), and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FmOpCount {
    /// The formula, e.g. `m + m(m-1)/2·(k+1)`.
    pub formula: &'static str,
    /// The formula evaluated for this input (saturating at u64::MAX).
    pub multiply_adds: u64,
}

/// Both scores, their difference and their costs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FmResponse {
    /// The reference: the literal pairwise sum, O(k·m²), accumulated in f64 from the f32
    /// parameters ([`FmModel::score_naive`]).
    pub score_naive: Num,
    /// Rendle's identity, O(k·m), in f32 as training and serving run it ([`FmModel::score`]).
    pub score_fast: Num,
    /// |score_naive − score_fast|: the f32 rounding of the identity, which is exact in real numbers.
    pub abs_diff: Num,
    /// Number of non-zero features m.
    pub m: usize,
    /// Factor dimension k.
    pub k: usize,
    /// Cost of the naive sum.
    pub ops_naive: FmOpCount,
    /// Cost of the identity.
    pub ops_fast: FmOpCount,
    /// Whether any score is non-finite.
    pub non_finite: bool,
}

/// The naive sum: m multiply-adds for the linear part, then per pair a k-term dot product and one
/// multiply-add to scale it by x_j·x_l.
const NAIVE_FORMULA: &str = "m + m(m-1)/2·(k+1)";
/// The identity: m for the linear part, 2 per (feature, factor) for Σ v x and Σ v²x², and k for
/// Σ_f (s_f² − q_f) (Rendle 2010, eq. 5).
const FAST_FORMULA: &str = "m + 2·m·k + k";

fn saturate(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// Scores the sparse input with the naive O(k·m²) pairwise sum (in f64, the reference) and with
/// Rendle's O(k·m) identity (Rendle, "Factorization Machines", ICDM 2010, eq. 5) in f32, using the
/// shared [`FmModel`].
///
/// **Errors**: `v` not (n, k) with n = len(w); `values` not as long as `indices`; an index ≥ n;
/// more non-zeros than `max_elements`; the naive count over `max_work`.
pub fn run_fm(req: &FmRequest, limits: &LayerLimits) -> Result<FmResponse, LayerError> {
    let w = tensor::vector("w", &req.w, limits)?;
    let n = w.len();
    let v = tensor::matrix("v", &req.v, limits)?;
    let k = v.ncols();
    expect_shape("v", v.shape(), &[n, k])?;
    check_elements("indices", req.indices.len() as u128, limits)?;
    let values = tensor::vector("values", &req.values, limits)?;
    let m = req.indices.len();
    expect_shape("values", values.shape(), &[m])?;
    if let Some((pos, &j)) = req
        .indices
        .iter()
        .enumerate()
        .find(|(_, &j)| j as usize >= n)
    {
        return Err(LayerError::out_of_range(
            "indices",
            format!("indices[{pos}] = {j} is out of range for n = {n} features"),
        ));
    }
    let (m128, k128) = (m as u128, k as u128);
    let naive = m128 + m128 * m128.saturating_sub(1) / 2 * (k128 + 1);
    let fast = m128 + 2 * m128 * k128 + k128;
    check_work("indices", naive, limits)?;

    // The model is f32 (what training and serving use); the request's f64 values are rounded once.
    let model = FmModel {
        w0: req.w0 as f32,
        w: w.mapv(|x| x as f32),
        v: Array2::from_shape_vec((n, k), v.iter().map(|&x| x as f32).collect()).map_err(|e| {
            LayerError::out_of_range("v", format!("could not build the factor matrix: {e}"))
        })?,
    };
    let vals: Array1<f32> = values.mapv(|x| x as f32);
    let vals = vals.to_vec();
    let row = (req.indices.as_slice(), vals.as_slice());
    let naive_score = model.score_naive(row);
    let fast_score = model.score(row) as f64;
    let diff = (naive_score - fast_score).abs();
    Ok(FmResponse {
        score_naive: Num(naive_score),
        score_fast: Num(fast_score),
        abs_diff: Num(diff),
        m,
        k,
        ops_naive: FmOpCount {
            formula: NAIVE_FORMULA,
            multiply_adds: saturate(naive),
        },
        ops_fast: FmOpCount {
            formula: FAST_FORMULA,
            multiply_adds: saturate(fast),
        },
        non_finite: !(naive_score.is_finite() && fast_score.is_finite()),
    })
}
