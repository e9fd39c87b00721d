//! Diagnostic layers as pure functions: normalisation, dropout, recurrent cells, graph convolutions,
//! the FM score two ways, and two diagnostics (recurrent stability, graph over-smoothing).
//!
//! Every layer has a `…Request` (what a JSON body deserialises into), a `…Response` (what serialises
//! back) and a `run_<layer>(&req, &LayerLimits)` that validates everything it reads and never panics.
//! The HTTP handlers are meant to be trivial: [`parse_request`] → `run_<layer>` →
//! `serde_json::to_vec(&response)`; every failure is a [`LayerError`] whose [`LayerError::field`]
//! names the request field at fault. Requests and responses derive `utoipa::ToSchema`, so
//! `/openapi.json` documents every field; tensor fields take their shapes from [`schema`].
//!
//! Tensors travel as nested JSON lists ([`tensor`]); all arithmetic is in `f64`, except the FM
//! identity, which runs in the model's own f32 ([`fm`]). Non-finite results are written as the
//! strings `"inf"`, `"-inf"` and `"nan"` (JSON has no such numbers) and the response then carries
//! `"non_finite": true`.

pub mod dropout;
pub mod fm;
pub mod graph;
pub mod norm;
pub mod recurrent;
pub mod schema;
pub mod stability;
pub mod tensor;

mod named;

use serde::Deserialize;

pub use dropout::{run_dropout, DropoutRequest, DropoutResponse, DropoutVariant};
pub use fm::{run_fm, FmOpCount, FmRequest, FmResponse};
pub use graph::{
    run_gcn, run_gnn, run_smoothing, GcnRequest, GcnResponse, GnnRequest, GnnResponse, Laplacian,
    SmoothingRequest, SmoothingResponse, SmoothingVerdict,
};
pub use norm::{
    run_batchnorm, run_layernorm, BatchNormRequest, BatchNormResponse, LayerNormRequest,
    LayerNormResponse,
};
pub use recurrent::{run_lstm, run_rnn, LstmRequest, LstmResponse, RnnRequest, RnnResponse};
pub use stability::{
    run_stability, spectral_radius, SpectralMethod, StabilityRequest, StabilityResponse,
    StabilityVerdict,
};
pub use tensor::{Num, Tensor};

/// Caps on what one request may ask for, so a single body cannot exhaust memory or CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LayerLimits {
    /// Largest number of elements in any one input or output tensor.
    pub max_elements: usize,
    /// Largest number of steps: sequence length, power of a Laplacian, iterations of a diagnostic.
    pub max_steps: usize,
    /// Largest estimated number of multiply-adds one request may cost. The two caps above bound
    /// memory but not time: a 1000-node graph with 1000 features is within `max_elements`, yet
    /// 10 000 Laplacian powers of it would be 10¹³ operations.
    pub max_work: u64,
}

impl Default for LayerLimits {
    fn default() -> Self {
        LayerLimits {
            max_elements: 1_000_000,
            max_steps: 10_000,
            max_work: 1_000_000_000,
        }
    }
}

/// Why a layer request was rejected. Every variant names the request field at fault, so the HTTP
/// layer can answer 400 `{"error":{"code":"invalid_field","message":…,"field":…}}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LayerError {
    /// The body did not deserialise: malformed JSON, a missing or unknown field, a wrong type, or an
    /// unknown mode/variant/activation.
    #[error("{message}")]
    Parse {
        /// The field at fault (`"body"` when serde could not tell).
        field: String,
        /// serde's message, prefixed with the field.
        message: String,
    },
    /// A nested list is not rectangular.
    #[error("{field}: {path} has {got} elements, expected {expected}")]
    Ragged {
        /// The request field.
        field: String,
        /// Where in the field, e.g. `x[2]`.
        path: String,
        /// Length found.
        got: usize,
        /// Length of its siblings.
        expected: usize,
    },
    /// A tensor element that is not a number (or a list where a number belongs, or vice versa).
    #[error("{field}: {path} is {found}, expected {expected}")]
    NotANumber {
        /// The request field.
        field: String,
        /// Where in the field, e.g. `x[0][1]`.
        path: String,
        /// What was there (`a string`, `a list`, …).
        found: String,
        /// What belongs there.
        expected: String,
    },
    /// A tensor of the wrong rank.
    #[error("{field}: expected a tensor of rank {expected}, got rank {got} (shape {shape:?})")]
    Rank {
        /// The request field.
        field: String,
        /// Rank (or ranks, written `2 or 3`) accepted.
        expected: String,
        /// Rank received.
        got: usize,
        /// Shape received.
        shape: Vec<usize>,
    },
    /// A tensor of the wrong shape.
    #[error("{field}: expected shape {expected:?}, got {got:?}")]
    Shape {
        /// The request field.
        field: String,
        /// Shape required by the other fields.
        expected: Vec<usize>,
        /// Shape received.
        got: Vec<usize>,
    },
    /// A scalar or structural value outside its allowed range.
    #[error("{field}: {message}")]
    OutOfRange {
        /// The request field.
        field: String,
        /// What is allowed and what was given.
        message: String,
    },
    /// A size over one of the [`LayerLimits`].
    #[error("{field}: {what} {got} exceeds the cap of {cap} ({limit})")]
    TooLarge {
        /// The request field.
        field: String,
        /// What was counted (`elements`, `steps`, `estimated multiply-adds`).
        what: String,
        /// The count.
        got: u64,
        /// The cap.
        cap: u64,
        /// Which limit (`max_elements`, `max_steps`, `max_work`).
        limit: String,
    },
    /// An adjacency matrix that is not square, symmetric and non-negative.
    #[error("{field}: {message}")]
    Adjacency {
        /// The request field.
        field: String,
        /// What is wrong, with the offending entry.
        message: String,
    },
}

impl LayerError {
    /// The request field at fault.
    pub fn field(&self) -> &str {
        match self {
            LayerError::Parse { field, .. }
            | LayerError::Ragged { field, .. }
            | LayerError::NotANumber { field, .. }
            | LayerError::Rank { field, .. }
            | LayerError::Shape { field, .. }
            | LayerError::OutOfRange { field, .. }
            | LayerError::TooLarge { field, .. }
            | LayerError::Adjacency { field, .. } => field,
        }
    }

    pub(crate) fn out_of_range(field: &str, message: impl Into<String>) -> Self {
        LayerError::OutOfRange {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Deserialises a request body, turning serde's errors into a [`LayerError::Parse`] that names the
/// field. Enum-valued and scalar fields are deserialised through wrappers that prefix the field name
/// (`mode: unknown variant `x`, expected `train` or `eval``); unknown and missing fields are named by
/// serde itself; anything else (malformed JSON, a body that is not an object) is field `"body"`.
pub fn parse_request<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, LayerError> {
    // serde reads a struct from an array too, field by position: only objects are requests.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(LayerError::Parse {
            field: "body".into(),
            message: "the body must be a JSON object, got an array".into(),
        });
    }
    serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        LayerError::Parse {
            field: field_of_serde_message(&message),
            message,
        }
    })
}

/// The field a serde message is about: `"mode: …"` (our wrappers), "unknown field `x`", "missing
/// field `x`"; otherwise `"body"`.
fn field_of_serde_message(message: &str) -> String {
    for marker in ["unknown field `", "missing field `"] {
        if let Some(rest) = message.strip_prefix(marker) {
            if let Some(end) = rest.find('`') {
                return rest[..end].to_string();
            }
        }
    }
    if let Some((head, _)) = message.split_once(": ") {
        if !head.is_empty() && head.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return head.to_string();
        }
    }
    "body".to_string()
}

/// Train or eval behaviour of batchnorm and dropout (PyTorch's `module.train()` / `module.eval()`):
/// `train` uses batch statistics and draws a dropout mask, `eval` uses the running statistics and
/// draws nothing.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Training behaviour (batch statistics, random mask).
    #[default]
    Train,
    /// Inference behaviour (running statistics, no mask).
    Eval,
}

/// An element-wise non-linearity σ: `identity` σ(z) = z, `relu` max(z, 0), `sigmoid`
/// 1 / (1 + e^−z), `tanh` tanh z. Each layer's field says which one it applies by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// σ(z) = z.
    Identity,
    /// σ(z) = max(z, 0).
    Relu,
    /// σ(z) = 1 / (1 + e^−z).
    Sigmoid,
    /// σ(z) = tanh z.
    Tanh,
}

impl Activation {
    /// σ(z).
    pub fn apply(self, z: f64) -> f64 {
        match self {
            Activation::Identity => z,
            Activation::Relu => {
                // max() would turn NaN into 0 and hide an overflow upstream.
                if z > 0.0 || z.is_nan() {
                    z
                } else {
                    0.0
                }
            }
            Activation::Sigmoid => sigmoid(z),
            Activation::Tanh => z.tanh(),
        }
    }
}

/// The logistic function, written so that neither branch overflows: e^−z only for z ≥ 0.
pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Checks a step count against `max_steps`.
pub(crate) fn check_steps(
    field: &str,
    steps: usize,
    limits: &LayerLimits,
) -> Result<(), LayerError> {
    if steps > limits.max_steps {
        return Err(LayerError::TooLarge {
            field: field.to_string(),
            what: "steps".to_string(),
            got: steps as u64,
            cap: limits.max_steps as u64,
            limit: "max_steps".to_string(),
        });
    }
    Ok(())
}

/// Checks an output size against `max_elements` (inputs are checked while parsing).
pub(crate) fn check_elements(
    field: &str,
    elements: u128,
    limits: &LayerLimits,
) -> Result<(), LayerError> {
    if elements > limits.max_elements as u128 {
        return Err(LayerError::TooLarge {
            field: field.to_string(),
            what: "elements".to_string(),
            got: u64::try_from(elements).unwrap_or(u64::MAX),
            cap: limits.max_elements as u64,
            limit: "max_elements".to_string(),
        });
    }
    Ok(())
}

/// Checks an estimated multiply-add count against `max_work`; `work` is computed in u128 by the
/// caller so the estimate itself cannot overflow.
pub(crate) fn check_work(field: &str, work: u128, limits: &LayerLimits) -> Result<(), LayerError> {
    if work > limits.max_work as u128 {
        return Err(LayerError::TooLarge {
            field: field.to_string(),
            what: "estimated multiply-adds".to_string(),
            got: u64::try_from(work).unwrap_or(u64::MAX),
            cap: limits.max_work,
            limit: "max_work".to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_their_field() {
        assert_eq!(
            field_of_serde_message("unknown field `foo`, expected one of `x`"),
            "foo"
        );
        assert_eq!(
            field_of_serde_message("missing field `x` at line 1 column 2"),
            "x"
        );
        assert_eq!(field_of_serde_message("mode: unknown variant `t`"), "mode");
        assert_eq!(
            field_of_serde_message("expected value at line 1 column 1"),
            "body"
        );
    }

    #[test]
    fn sigmoid_never_overflows() {
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-15);
    }
}
