//! Dropout (Srivastava et al., 2014), inverted by default as in PyTorch's `torch.nn.Dropout`.

use ndarray::ArrayD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema::{NumRank0To8, Rank0To8, U64};
use super::tensor::{self, Num, Tensor};
use super::{named, LayerError, LayerLimits, Mode};
use crate::rng::Rng;

fn default_p() -> f64 {
    0.5
}

/// Where the 1/(1 − p) correction goes: `inverted` (PyTorch's) scales the survivors by 1/(1 − p)
/// in training and is the identity at inference; `classic` (the paper's) applies the bare mask in
/// training and multiplies by 1 − p at inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DropoutVariant {
    /// PyTorch's: survivors scaled by 1/(1 − p) in training, identity at inference.
    #[default]
    Inverted,
    /// The original paper's: the bare mask in training, outputs multiplied by 1 − p at inference.
    Classic,
}

/// A dropout request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"x": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "p": 0.5, "seed": 7}))]
pub struct DropoutRequest {
    /// Input of any shape (rank 0 to 8).
    #[schema(value_type = Rank0To8)]
    pub x: Value,
    /// Drop probability in [0, 1); default 0.5 (PyTorch's default).
    #[serde(default = "default_p", deserialize_with = "named::p")]
    #[schema(default = default_p, minimum = 0.0, exclusive_maximum = 1.0)]
    pub p: f64,
    /// `"train"` (default): draw a mask; `"eval"`: no mask, only the variant's scale.
    #[serde(default, deserialize_with = "named::mode")]
    #[schema(default = Mode::default)]
    pub mode: Mode,
    /// `"inverted"` (default, PyTorch's) or `"classic"`.
    #[serde(default, deserialize_with = "named::variant")]
    #[schema(default = DropoutVariant::default)]
    pub variant: DropoutVariant,
    /// Seed of the mask; the same seed and shape give the same mask. Default 0.
    #[serde(default, deserialize_with = "named::seed")]
    #[schema(value_type = U64, default = 0)]
    pub seed: u64,
}

/// The result of dropout.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DropoutResponse {
    /// Output, same shape as `x`.
    #[schema(value_type = NumRank0To8)]
    pub y: Tensor,
    /// The keep mask (1 kept, 0 dropped), same shape as `x`, in train mode; `null` in eval mode,
    /// where nothing is drawn.
    #[schema(value_type = Option<Rank0To8>)]
    pub mask: Option<Tensor>,
    /// The factor applied to kept elements: 1/(1 − p) (inverted, train), 1 (classic train, inverted
    /// eval) or 1 − p (classic eval).
    pub scale: Num,
    /// Whether any value above is non-finite.
    pub non_finite: bool,
}

/// Applies dropout. Train mode drops each element independently with probability p (an element is
/// kept when a uniform draw from [`Rng`] seeded with `seed`, taken in row-major order, is ≥ p).
///
/// **Errors**: `p` outside [0, 1); `x` over `max_elements`.
pub fn run_dropout(
    req: &DropoutRequest,
    limits: &LayerLimits,
) -> Result<DropoutResponse, LayerError> {
    let p = req.p;
    // p = 1 would drop everything and make the inverted scale 1/0.
    if !(0.0..1.0).contains(&p) {
        return Err(LayerError::out_of_range(
            "p",
            format!("must be in [0, 1), got {p}"),
        ));
    }
    let x = tensor::from_json("x", &req.x, limits)?;
    let (y, mask, scale) = match req.mode {
        Mode::Train => {
            let mut rng = Rng::new(req.seed);
            let mask: ArrayD<f64> = x.map(|_| if rng.uniform() >= p { 1.0 } else { 0.0 });
            let scale = match req.variant {
                DropoutVariant::Inverted => 1.0 / (1.0 - p),
                DropoutVariant::Classic => 1.0,
            };
            let y = &x * &mask * scale;
            (y, Some(Tensor(mask)), scale)
        }
        Mode::Eval => {
            let scale = match req.variant {
                DropoutVariant::Inverted => 1.0,
                DropoutVariant::Classic => 1.0 - p,
            };
            (x * scale, None, scale)
        }
    };
    let y = Tensor(y);
    let non_finite = !y.is_finite();
    Ok(DropoutResponse {
        y,
        mask,
        scale: Num(scale),
        non_finite,
    })
}
