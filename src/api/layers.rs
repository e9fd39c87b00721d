//! `POST /v1/layers/<name>`: the diagnostic layers of [`crate::layers`], one thin handler each.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;

use super::error::{body_error, ApiError, ErrorBody};
use super::AppState;
use crate::layers::{self, parse_request};

macro_rules! layer_endpoint {
    ($name:ident, $path:literal, $request:ty, $response:ty, $run:path, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "layers", description = $doc,
            request_body(content = $request, description = "The layer's input and parameters; tensors are nested JSON arrays of numbers"),
            responses((status = 200, description = "The layer's output", body = $response),
                      (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
        pub async fn $name(
            State(state): State<AppState>,
            body: Result<Bytes, BytesRejection>,
        ) -> Result<Json<$response>, ApiError> {
            let body = body.map_err(body_error)?;
            let limits = state.layer_limits;
            let answer = state.compute(move || {
                let request: $request = parse_request(&body)?;
                Ok($run(&request, &limits)?)
            })
            .await?;
            Ok(Json(answer))
        }
    };
}

layer_endpoint!(batchnorm, "/v1/layers/batchnorm", layers::BatchNormRequest, layers::BatchNormResponse, layers::run_batchnorm,
    "BatchNorm over (B, C) or (B, L, C), channels last (PyTorch's (B, C, L) after permute(0, 2, 1)): train mode (the default) normalises with batch statistics and returns updated running statistics; eval mode uses the given ones.");
layer_endpoint!(
    layernorm,
    "/v1/layers/layernorm",
    layers::LayerNormRequest,
    layers::LayerNormResponse,
    layers::run_layernorm,
    "LayerNorm over the last one (default) or two dimensions of each sample."
);
layer_endpoint!(
    dropout,
    "/v1/layers/dropout",
    layers::DropoutRequest,
    layers::DropoutResponse,
    layers::run_dropout,
    "Dropout, inverted (default) or classic, in train or eval mode, seeded; returns the mask."
);
layer_endpoint!(
    rnn,
    "/v1/layers/rnn",
    layers::RnnRequest,
    layers::RnnResponse,
    layers::run_rnn,
    "Elman RNN over one sequence x (T, I), no batch axis: h_t = σ(W[x_t, h_{t−1}] + b), o_t = σ_o(V h_t + c), with W = [W_ih | W_hh] and one bias b; every h_t and o_t. σ defaults to sigmoid (PyTorch's nn.RNN uses tanh: pass \"activation\": \"tanh\")."
);
layer_endpoint!(
    lstm,
    "/v1/layers/lstm",
    layers::LstmRequest,
    layers::LstmResponse,
    layers::run_lstm,
    "LSTM over one sequence x (T, I), no batch axis, in PyTorch's weight layout (gate order i, f, g, o); every h_t and c_t."
);
layer_endpoint!(gcn, "/v1/layers/gcn", layers::GcnRequest, layers::GcnResponse, layers::run_gcn,
    "Polynomial graph filter y = σ(Σ_k α_k L^k x) with L = D − A (laplacian \"combinatorial\", the default) or I − D^−½ A D^−½ (\"symmetric\"); σ defaults to identity.");
layer_endpoint!(
    gnn,
    "/v1/layers/gnn",
    layers::GnnRequest,
    layers::GnnResponse,
    layers::run_gnn,
    "Graph layer Y = σ(D̂⁻¹ Â X W) with Â = A + I; σ defaults to relu."
);
layer_endpoint!(fm, "/v1/layers/fm", layers::FmRequest, layers::FmResponse, layers::run_fm,
    "FM score of a sparse input by the naive pairwise sum, accumulated in f64 (the reference), and by Rendle's O(k·m) identity in f32 (m non-zeros) (what training and serving run), with their difference and operation counts.");
layer_endpoint!(rnn_stability, "/v1/layers/rnn/stability", layers::StabilityRequest, layers::StabilityResponse, layers::run_stability,
    "‖Wⁿx‖ for n = 1..N, the spectral radius, and whether repeated application explodes, vanishes or stays stable.");
layer_endpoint!(
    gnn_smoothing,
    "/v1/layers/gnn/smoothing",
    layers::SmoothingRequest,
    layers::SmoothingResponse,
    layers::run_smoothing,
    "How the spread of node features shrinks as (D̂⁻¹Â)ⁿ is applied (over-smoothing)."
);

/// The ten layer routes, each with its OpenAPI operation: public, no token.
pub(super) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(batchnorm))
        .routes(routes!(layernorm))
        .routes(routes!(dropout))
        .routes(routes!(rnn))
        .routes(routes!(lstm))
        .routes(routes!(gcn))
        .routes(routes!(gnn))
        .routes(routes!(fm))
        .routes(routes!(rnn_stability))
        .routes(routes!(gnn_smoothing))
}
