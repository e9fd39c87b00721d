//! An Elman RNN with an output layer, and an LSTM in PyTorch's weight layout.

use ndarray::{s, Array1, Array2};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema::{Matrix, NumMatrix, Vector};
use super::tensor::{self, expect_shape, Tensor};
use super::{
    check_elements, check_steps, check_work, named, sigmoid, Activation, LayerError, LayerLimits,
};

fn default_sigmoid() -> Activation {
    Activation::Sigmoid
}

/// An Elman RNN request: h_t = σ(W [x_t, h_{t−1}] + b), o_t = σ_o(V h_t + c), over one sequence
/// (no batch axis). σ defaults to sigmoid, where PyTorch's `nn.RNN` uses tanh.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"x": [[1.0], [0.5]], "w": [[0.5, 0.1, 0.0], [0.2, 0.0, 0.3]], "b": [0.0, 0.1],
                          "v": [[1.0, -1.0]], "c": [0.0], "activation": "tanh"}))]
pub struct RnnRequest {
    /// Input sequence, (T, I): one sequence, no batch axis.
    #[schema(value_type = Matrix)]
    pub x: Value,
    /// W, (H, I + H): the input block first, then the recurrent block, i.e. PyTorch's
    /// [W_ih | W_hh] side by side.
    #[schema(value_type = Matrix)]
    pub w: Value,
    /// b, H values: one bias (PyTorch's b_ih + b_hh).
    #[schema(value_type = Vector)]
    pub b: Value,
    /// V, (O, H).
    #[schema(value_type = Matrix)]
    pub v: Value,
    /// c, O values.
    #[schema(value_type = Vector)]
    pub c: Value,
    /// h_0, H values; default zeros.
    #[serde(default)]
    #[schema(value_type = Option<Vector>)]
    pub h0: Option<Value>,
    /// σ of the hidden state; default `"sigmoid"` (PyTorch's `nn.RNN` uses tanh: pass `"tanh"`
    /// to match it).
    #[serde(default = "default_sigmoid", deserialize_with = "named::activation")]
    #[schema(default = default_sigmoid)]
    pub activation: Activation,
    /// σ_o of the output; default (absent or `null`) the same as `activation`.
    #[serde(default, deserialize_with = "named::output_activation")]
    pub output_activation: Option<Activation>,
}

/// Every hidden state and output of the RNN.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RnnResponse {
    /// h_1 … h_T, (T, H).
    #[schema(value_type = NumMatrix)]
    pub h: Tensor,
    /// o_1 … o_T, (T, O).
    #[schema(value_type = NumMatrix)]
    pub o: Tensor,
    /// Whether any value above is non-finite.
    pub non_finite: bool,
}

/// An LSTM request in PyTorch's layout (`torch.nn.LSTM`, one layer, gate order i, f, g, o; gates
/// σ = sigmoid, cell input and output tanh), over one sequence (no batch axis).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"x": [[1.0], [0.5]], "w_ih": [[0.5], [0.5], [0.5], [0.5]],
                          "w_hh": [[0.1], [0.1], [0.1], [0.1]]}))]
pub struct LstmRequest {
    /// Input sequence, (T, I): one sequence, no batch axis.
    #[schema(value_type = Matrix)]
    pub x: Value,
    /// W_ih, (4H, I): the blocks of gates i, f, g, o stacked in that order.
    #[schema(value_type = Matrix)]
    pub w_ih: Value,
    /// W_hh, (4H, H), same gate order; H is read from its width.
    #[schema(value_type = Matrix)]
    pub w_hh: Value,
    /// b_ih, 4H values; default zeros.
    #[serde(default)]
    #[schema(value_type = Option<Vector>)]
    pub b_ih: Option<Value>,
    /// b_hh, 4H values; default zeros.
    #[serde(default)]
    #[schema(value_type = Option<Vector>)]
    pub b_hh: Option<Value>,
    /// h_0, H values; default zeros.
    #[serde(default)]
    #[schema(value_type = Option<Vector>)]
    pub h0: Option<Value>,
    /// c_0, H values; default zeros.
    #[serde(default)]
    #[schema(value_type = Option<Vector>)]
    pub c0: Option<Value>,
}

/// Every hidden and cell state of the LSTM.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LstmResponse {
    /// h_1 … h_T, (T, H).
    #[schema(value_type = NumMatrix)]
    pub h: Tensor,
    /// c_1 … c_T, (T, H).
    #[schema(value_type = NumMatrix)]
    pub c: Tensor,
    /// Whether any value above is non-finite.
    pub non_finite: bool,
}

/// Runs the Elman RNN over the sequence.
///
/// **Errors**: any tensor of the wrong rank or of a shape inconsistent with `x` (T, I), `b` (H) and
/// `c` (O): W must be (H, I + H), V (O, H), h0 (H); T over `max_steps`; outputs over `max_elements`;
/// T·(H·(I+H) + O·H) over `max_work`.
pub fn run_rnn(req: &RnnRequest, limits: &LayerLimits) -> Result<RnnResponse, LayerError> {
    let x = tensor::matrix("x", &req.x, limits)?;
    let (t_len, i_dim) = x.dim();
    check_steps("x", t_len, limits)?;
    let b = tensor::vector("b", &req.b, limits)?;
    let h_dim = b.len();
    let w = tensor::matrix("w", &req.w, limits)?;
    expect_shape("w", w.shape(), &[h_dim, i_dim + h_dim])?;
    let c = tensor::vector("c", &req.c, limits)?;
    let o_dim = c.len();
    let v = tensor::matrix("v", &req.v, limits)?;
    expect_shape("v", v.shape(), &[o_dim, h_dim])?;
    let mut h = tensor::vector_or("h0", req.h0.as_ref(), h_dim, 0.0, limits)?;
    check_elements("h", t_len as u128 * h_dim as u128, limits)?;
    check_elements("o", t_len as u128 * o_dim as u128, limits)?;
    let per_step = h_dim as u128 * (i_dim + h_dim) as u128 + o_dim as u128 * h_dim as u128;
    check_work("x", t_len as u128 * per_step, limits)?;

    let w_x = w.slice(s![.., ..i_dim]);
    let w_h = w.slice(s![.., i_dim..]);
    let out_act = req.output_activation.unwrap_or(req.activation);
    let mut hs = Array2::zeros((t_len, h_dim));
    let mut os = Array2::zeros((t_len, o_dim));
    for t in 0..t_len {
        // W [x_t, h_{t−1}] = W_x x_t + W_h h_{t−1}: the concatenation is never materialised.
        let pre = w_x.dot(&x.row(t)) + w_h.dot(&h) + &b;
        h = pre.mapv(|z| req.activation.apply(z));
        let o = (v.dot(&h) + &c).mapv(|z| out_act.apply(z));
        hs.row_mut(t).assign(&h);
        os.row_mut(t).assign(&o);
    }
    let (h, o) = (Tensor::from(hs), Tensor::from(os));
    let non_finite = !(h.is_finite() && o.is_finite());
    Ok(RnnResponse { h, o, non_finite })
}

/// Runs the LSTM over the sequence (PyTorch docs, `torch.nn.LSTM`):
/// i = σ(W_ii x + b_ii + W_hi h + b_hi), f = σ(…), g = tanh(…), o = σ(…),
/// c_t = f ∘ c_{t−1} + i ∘ g, h_t = o ∘ tanh(c_t).
///
/// **Errors**: `w_hh` not (4H, H); `w_ih` not (4H, I); biases not 4H; h0, c0 not H; T over
/// `max_steps`; outputs over `max_elements`; T·4H·(I + H) over `max_work`.
pub fn run_lstm(req: &LstmRequest, limits: &LayerLimits) -> Result<LstmResponse, LayerError> {
    let x = tensor::matrix("x", &req.x, limits)?;
    let (t_len, i_dim) = x.dim();
    check_steps("x", t_len, limits)?;
    let w_hh = tensor::matrix("w_hh", &req.w_hh, limits)?;
    let h_dim = w_hh.ncols();
    expect_shape("w_hh", w_hh.shape(), &[4 * h_dim, h_dim])?;
    let w_ih = tensor::matrix("w_ih", &req.w_ih, limits)?;
    expect_shape("w_ih", w_ih.shape(), &[4 * h_dim, i_dim])?;
    let b_ih = tensor::vector_or("b_ih", req.b_ih.as_ref(), 4 * h_dim, 0.0, limits)?;
    let b_hh = tensor::vector_or("b_hh", req.b_hh.as_ref(), 4 * h_dim, 0.0, limits)?;
    let mut h = tensor::vector_or("h0", req.h0.as_ref(), h_dim, 0.0, limits)?;
    let mut c = tensor::vector_or("c0", req.c0.as_ref(), h_dim, 0.0, limits)?;
    check_elements("h", t_len as u128 * h_dim as u128, limits)?;
    check_work(
        "x",
        t_len as u128 * 4 * h_dim as u128 * (i_dim + h_dim) as u128,
        limits,
    )?;

    let bias = &b_ih + &b_hh;
    let mut hs = Array2::zeros((t_len, h_dim));
    let mut cs = Array2::zeros((t_len, h_dim));
    for t in 0..t_len {
        let gates: Array1<f64> = w_ih.dot(&x.row(t)) + w_hh.dot(&h) + &bias;
        let gate = |k: usize| gates.slice(s![k * h_dim..(k + 1) * h_dim]);
        let i = gate(0).mapv(sigmoid);
        let f = gate(1).mapv(sigmoid);
        let g = gate(2).mapv(f64::tanh);
        let o = gate(3).mapv(sigmoid);
        c = &f * &c + &i * &g;
        h = &o * &c.mapv(f64::tanh);
        hs.row_mut(t).assign(&h);
        cs.row_mut(t).assign(&c);
    }
    let (h, c) = (Tensor::from(hs), Tensor::from(cs));
    let non_finite = !(h.is_finite() && c.is_finite());
    Ok(LstmResponse { h, c, non_finite })
}
