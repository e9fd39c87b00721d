//! Batch and layer normalisation, following PyTorch's `BatchNorm1d` and `LayerNorm`.
//!
//! Both compute y = (x − E[x]) / √(Var[x] + ε) · γ + β with the biased variance (PyTorch docs,
//! `torch.nn.BatchNorm1d` and `torch.nn.LayerNorm`); they differ in what the statistics run over:
//! batchnorm per channel across the batch (and length), layernorm per sample across its trailing
//! dimensions.

use ndarray::{Array1, Array2, ArrayD, Axis, IxDyn};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema::{
    NumRank0To8, NumRank1To8, NumRank2Or3, NumVector, Rank1Or2, Rank1To8, Rank2Or3, Vector,
};
use super::tensor::{self, expect_shape, rank_error, Tensor};
use super::{named, LayerError, LayerLimits, Mode};

fn default_eps() -> f64 {
    1e-5
}

fn default_momentum() -> f64 {
    0.1
}

fn default_normalized_dims() -> usize {
    1
}

/// A batch-normalisation request. `x` is (B, C) or (B, L, C), channels last: PyTorch's
/// `BatchNorm1d` takes (B, C, L), so a (B, L, C) input matches torch after `permute(0, 2, 1)`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"x": [[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]], "mode": "train"}))]
pub struct BatchNormRequest {
    /// Input, (B, C) or (B, L, C): channels last (PyTorch's (B, C, L) after `permute(0, 2, 1)`).
    /// Train mode needs at least 2 values per channel (B·L ≥ 2).
    #[schema(value_type = Rank2Or3)]
    pub x: Value,
    /// `"train"` (default, as a fresh torch module): normalise with the batch statistics and
    /// update the running ones; `"eval"`: normalise with the running statistics.
    #[serde(default, deserialize_with = "named::mode")]
    #[schema(default = Mode::default)]
    pub mode: Mode,
    /// γ, C values; default ones.
    #[serde(default)]
    #[schema(value_type = Option<Vector>)]
    pub gamma: Option<Value>,
    /// β, C values; default zeros.
    #[serde(default)]
    #[schema(value_type = Option<Vector>)]
    pub beta: Option<Value>,
    /// Running mean before this call, C values; default zeros.
    #[serde(default)]
    #[schema(value_type = Option<Vector>)]
    pub running_mean: Option<Value>,
    /// Running variance before this call, C values; default ones.
    #[serde(default)]
    #[schema(value_type = Option<Vector>)]
    pub running_var: Option<Value>,
    /// ε added to the variance, ≥ 0; default 1e-5.
    #[serde(default = "default_eps", deserialize_with = "named::eps")]
    #[schema(default = default_eps, minimum = 0.0)]
    pub eps: f64,
    /// Running-statistics momentum in [0, 1]; default 0.1.
    #[serde(default = "default_momentum", deserialize_with = "named::momentum")]
    #[schema(default = default_momentum, minimum = 0.0, maximum = 1.0)]
    pub momentum: f64,
}

/// The result of batch normalisation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchNormResponse {
    /// Normalised output, same shape as `x`.
    #[schema(value_type = NumRank2Or3)]
    pub y: Tensor,
    /// The per-channel mean used (batch mean in train mode, running mean in eval mode), C values.
    #[schema(value_type = NumVector)]
    pub mean: Tensor,
    /// The per-channel variance used (biased batch variance in train, running variance in eval),
    /// C values.
    #[schema(value_type = NumVector)]
    pub var: Tensor,
    /// Running mean after this call (unchanged in eval mode), C values.
    #[schema(value_type = NumVector)]
    pub running_mean: Tensor,
    /// Running variance after this call, updated with the unbiased batch variance as PyTorch
    /// does (unchanged in eval mode), C values.
    #[schema(value_type = NumVector)]
    pub running_var: Tensor,
    /// Whether any value above is non-finite (written as a string).
    pub non_finite: bool,
}

/// A layer-normalisation request (PyTorch `LayerNorm` with `normalized_shape` = the last 1 or 2
/// axes of `x`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"x": [[1.0, 2.0, 3.0], [4.0, 6.0, 8.0]], "normalized_dims": 1}))]
pub struct LayerNormRequest {
    /// Input of rank ≥ `normalized_dims`; its last `normalized_dims` axes are normalised, the
    /// leading ones index samples (a (B, C) input gives B means).
    #[schema(value_type = Rank1To8)]
    pub x: Value,
    /// How many trailing axes to normalise over: 1 or 2; default 1.
    #[serde(
        default = "default_normalized_dims",
        deserialize_with = "named::normalized_dims"
    )]
    #[schema(default = default_normalized_dims, minimum = 1, maximum = 2)]
    pub normalized_dims: usize,
    /// γ, shaped like the normalised axes (rank `normalized_dims`); default ones.
    #[serde(default)]
    #[schema(value_type = Option<Rank1Or2>)]
    pub gamma: Option<Value>,
    /// β, shaped like the normalised axes (rank `normalized_dims`); default zeros.
    #[serde(default)]
    #[schema(value_type = Option<Rank1Or2>)]
    pub beta: Option<Value>,
    /// ε added to the variance, ≥ 0; default 1e-5.
    #[serde(default = "default_eps", deserialize_with = "named::eps")]
    #[schema(default = default_eps, minimum = 0.0)]
    pub eps: f64,
}

/// The result of layer normalisation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LayerNormResponse {
    /// Normalised output, same shape as `x`.
    #[schema(value_type = NumRank1To8)]
    pub y: Tensor,
    /// One mean per sample, shaped like the leading axes of `x` (a bare value when there are
    /// none).
    #[schema(value_type = NumRank0To8)]
    pub mean: Tensor,
    /// One biased variance per sample, shaped like the leading axes of `x`.
    #[schema(value_type = NumRank0To8)]
    pub var: Tensor,
    /// Whether any value above is non-finite.
    pub non_finite: bool,
}

fn check_eps(eps: f64) -> Result<(), LayerError> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(LayerError::out_of_range(
            "eps",
            format!("must be a finite number ≥ 0, got {eps}"),
        ));
    }
    Ok(())
}

/// Mean and biased variance of every column of `x` (two passes, for accuracy).
fn column_stats(x: &Array2<f64>) -> (Array1<f64>, Array1<f64>) {
    let n = x.nrows() as f64;
    let mean = x.sum_axis(Axis(0)) / n;
    let mut var = Array1::zeros(x.ncols());
    for row in x.rows() {
        for ((v, &xi), &m) in var.iter_mut().zip(row).zip(&mean) {
            let d: f64 = xi - m;
            *v += d * d;
        }
    }
    (mean, var / n)
}

/// Reshapes a standard-layout tensor, which cannot fail when the element counts agree.
fn reshape2(
    field: &str,
    a: ArrayD<f64>,
    rows: usize,
    cols: usize,
) -> Result<Array2<f64>, LayerError> {
    let shape = a.shape().to_vec();
    a.as_standard_layout()
        .to_owned()
        .into_shape_with_order((rows, cols))
        .map_err(|_| rank_error(field, "2", &shape))
}

/// Batch normalisation (PyTorch `BatchNorm1d`): statistics per channel over B (and L).
///
/// Train mode normalises with the batch's biased variance and updates
/// running_mean ← (1 − momentum)·running_mean + momentum·mean and
/// running_var ← (1 − momentum)·running_var + momentum·var·n/(n − 1), n = B·L, i.e. with the
/// unbiased variance, exactly as PyTorch does. Eval mode normalises with the running statistics and
/// returns them unchanged.
///
/// **Errors**: `x` not of rank 2 or 3 or empty; fewer than 2 values per channel in train mode
/// (PyTorch refuses it too: the unbiased variance is undefined); γ, β or running statistics not of
/// length C; `eps` < 0; `momentum` outside [0, 1]; sizes over the limits.
pub fn run_batchnorm(
    req: &BatchNormRequest,
    limits: &LayerLimits,
) -> Result<BatchNormResponse, LayerError> {
    let x = tensor::from_json("x", &req.x, limits)?;
    let shape = x.shape().to_vec();
    let (n, c) = match *shape.as_slice() {
        [b, c] => (b, c),
        [b, l, c] => (b * l, c),
        _ => return Err(rank_error("x", "2 or 3", &shape)),
    };
    check_eps(req.eps)?;
    if !(0.0..=1.0).contains(&req.momentum) {
        return Err(LayerError::out_of_range(
            "momentum",
            format!("must be in [0, 1], got {}", req.momentum),
        ));
    }
    if n == 0 {
        return Err(LayerError::out_of_range("x", "the batch is empty"));
    }
    if req.mode == Mode::Train && n < 2 {
        return Err(LayerError::out_of_range(
            "x",
            format!(
                "train mode needs more than 1 value per channel, got {n} (input shape {shape:?})"
            ),
        ));
    }
    let gamma = tensor::vector_or("gamma", req.gamma.as_ref(), c, 1.0, limits)?;
    let beta = tensor::vector_or("beta", req.beta.as_ref(), c, 0.0, limits)?;
    let running_mean =
        tensor::vector_or("running_mean", req.running_mean.as_ref(), c, 0.0, limits)?;
    let running_var = tensor::vector_or("running_var", req.running_var.as_ref(), c, 1.0, limits)?;

    let x2 = reshape2("x", x, n, c)?;
    let (mean, var, new_mean, new_var) = match req.mode {
        Mode::Train => {
            let (mean, var) = column_stats(&x2);
            let m = req.momentum;
            let unbiased = &var * (n as f64 / (n as f64 - 1.0));
            let new_mean = &running_mean * (1.0 - m) + &mean * m;
            let new_var = &running_var * (1.0 - m) + unbiased * m;
            (mean, var, new_mean, new_var)
        }
        Mode::Eval => (
            running_mean.clone(),
            running_var.clone(),
            running_mean,
            running_var,
        ),
    };
    let mut y = x2;
    for mut row in y.rows_mut() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (*v - mean[j]) / (var[j] + req.eps).sqrt() * gamma[j] + beta[j];
        }
    }
    let y = y
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|_| rank_error("x", "2 or 3", &shape))?;
    let out = [
        y.into(),
        mean.into(),
        var.into(),
        new_mean.into(),
        new_var.into(),
    ];
    let non_finite = out.iter().any(|t: &Tensor| !t.is_finite());
    let [y, mean, var, running_mean, running_var] = out;
    Ok(BatchNormResponse {
        y,
        mean,
        var,
        running_mean,
        running_var,
        non_finite,
    })
}

/// Layer normalisation (PyTorch `LayerNorm` with `normalized_shape` = the last 1 or 2 axes):
/// statistics per sample over the normalised axes, so a (B, C) input gives B means. γ and β are
/// element-wise over the normalised shape.
///
/// **Errors**: `normalized_dims` not 1 or 2; `x` of rank below `normalized_dims`; γ or β not of the
/// normalised shape; an empty normalised shape; `eps` < 0; sizes over the limits.
pub fn run_layernorm(
    req: &LayerNormRequest,
    limits: &LayerLimits,
) -> Result<LayerNormResponse, LayerError> {
    let nd = req.normalized_dims;
    if !(nd == 1 || nd == 2) {
        return Err(LayerError::out_of_range(
            "normalized_dims",
            format!("must be 1 or 2, got {nd}"),
        ));
    }
    check_eps(req.eps)?;
    let x = tensor::from_json("x", &req.x, limits)?;
    let shape = x.shape().to_vec();
    if shape.len() < nd {
        return Err(rank_error("x", &format!("at least {nd}"), &shape));
    }
    let (lead, norm) = shape.split_at(shape.len() - nd);
    let s: usize = norm.iter().product();
    let m: usize = lead.iter().product();
    if s == 0 {
        return Err(LayerError::out_of_range(
            "x",
            format!("the normalised axes {norm:?} are empty"),
        ));
    }
    let params = |field: &str, v: Option<&Value>, fill: f64| -> Result<Array1<f64>, LayerError> {
        match v {
            None => Ok(Array1::from_elem(s, fill)),
            Some(v) => {
                let a = tensor::from_json(field, v, limits)?;
                expect_shape(field, a.shape(), norm)?;
                Ok(a.iter().copied().collect())
            }
        }
    };
    let gamma = params("gamma", req.gamma.as_ref(), 1.0)?;
    let beta = params("beta", req.beta.as_ref(), 0.0)?;

    let mut y = reshape2("x", x, m, s)?;
    let mut means = Array1::zeros(m);
    let mut vars = Array1::zeros(m);
    for (i, mut row) in y.rows_mut().into_iter().enumerate() {
        let mean = row.sum() / s as f64;
        let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<f64>() / s as f64;
        let inv = 1.0 / (var + req.eps).sqrt();
        for ((v, &g), &b) in row.iter_mut().zip(&gamma).zip(&beta) {
            *v = (*v - mean) * inv * g + b;
        }
        means[i] = mean;
        vars[i] = var;
    }
    let y = y
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|_| rank_error("x", "any", &shape))?;
    let means = means
        .into_shape_with_order(IxDyn(lead))
        .map_err(|_| rank_error("x", "any", &shape))?;
    let vars = vars
        .into_shape_with_order(IxDyn(lead))
        .map_err(|_| rank_error("x", "any", &shape))?;
    let out: [Tensor; 3] = [y.into(), means.into(), vars.into()];
    let non_finite = out.iter().any(|t| !t.is_finite());
    let [y, mean, var] = out;
    Ok(LayerNormResponse {
        y,
        mean,
        var,
        non_finite,
    })
}
