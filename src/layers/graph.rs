//! Graph layers: a polynomial spectral filter (GCN), a mean-aggregation layer (GNN), and the
//! over-smoothing diagnostic.
//!
//! References: Kipf & Welling, "Semi-Supervised Classification with Graph Convolutional Networks",
//! ICLR 2017 — the filter Σ_k α_k L^k x is the polynomial filter of their §2 (eq. 4–5 truncate it
//! at K = 1); the layer σ(D̂⁻¹ Â X W) with Â = A + I is their renormalisation trick (eq. 8) in its
//! random-walk form D̂⁻¹Â rather than D̂^−½ Â D̂^−½. Li, Han & Wu (AAAI 2018) show that repeating
//! that aggregation is Laplacian smoothing and drives node features together: the diagnostic
//! measures it.

use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema::{Matrix, NumMatrix, NumVector, Vector};
use super::tensor::{self, expect_shape, Num, Tensor};
use super::{check_steps, check_work, named, Activation, LayerError, LayerLimits};

/// Which graph Laplacian the GCN filter uses: `combinatorial` L = D − A, or `symmetric`
/// L = I − D^−½ A D^−½ (an isolated node gets D^−½ = 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Laplacian {
    /// L = D − A.
    #[default]
    Combinatorial,
    /// L = I − D^−½ A D^−½ (an isolated node, degree 0, gets D^−½ = 0, as networkx does).
    Symmetric,
}

fn default_identity() -> Activation {
    Activation::Identity
}

fn default_relu() -> Activation {
    Activation::Relu
}

fn default_steps() -> usize {
    20
}

fn default_tolerance() -> f64 {
    1e-3
}

/// A polynomial graph-filter request: y = σ(Σ_k α_k L^k x).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"a": [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]],
                          "x": [[1.0], [0.0], [-1.0]], "alpha": [1.0, -0.5], "laplacian": "symmetric"}))]
pub struct GcnRequest {
    /// Adjacency A, (N, N): square, symmetric, non-negative.
    #[schema(value_type = Matrix)]
    pub a: Value,
    /// Signal x, (N, F).
    #[schema(value_type = Matrix)]
    pub x: Value,
    /// α_0 … α_K, at least one; α_0 multiplies L⁰ = I. K is capped by `max_steps`.
    #[schema(value_type = Vector)]
    pub alpha: Value,
    /// `"combinatorial"` (default): L = D − A; `"symmetric"`: L = I − D^−½ A D^−½.
    #[serde(default, deserialize_with = "named::laplacian")]
    #[schema(default = Laplacian::default)]
    pub laplacian: Laplacian,
    /// σ; default `"identity"` (no non-linearity).
    #[serde(default = "default_identity", deserialize_with = "named::activation")]
    #[schema(default = default_identity)]
    pub activation: Activation,
}

/// The filtered signal.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GcnResponse {
    /// y, (N, F).
    #[schema(value_type = NumMatrix)]
    pub y: Tensor,
    /// Whether any value of y is non-finite.
    pub non_finite: bool,
}

/// A mean-aggregation layer request: Y = σ(D̂⁻¹ Â X W), Â = A + I (Kipf & Welling's
/// renormalisation in its random-walk form D̂⁻¹Â, not D̂^−½ Â D̂^−½).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"a": [[0.0, 1.0], [1.0, 0.0]], "x": [[1.0, 0.0], [0.0, 1.0]],
                          "w": [[1.0], [-1.0]]}))]
pub struct GnnRequest {
    /// Adjacency A, (N, N): square, symmetric, non-negative; self-loops are added (Â = A + I).
    #[schema(value_type = Matrix)]
    pub a: Value,
    /// Features X, (N, F).
    #[schema(value_type = Matrix)]
    pub x: Value,
    /// Weights W, (F, F').
    #[schema(value_type = Matrix)]
    pub w: Value,
    /// σ; default `"relu"`.
    #[serde(default = "default_relu", deserialize_with = "named::activation")]
    #[schema(default = default_relu)]
    pub activation: Activation,
}

/// The layer output.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GnnResponse {
    /// Y, (N, F').
    #[schema(value_type = NumMatrix)]
    pub y: Tensor,
    /// Whether any value of Y is non-finite.
    pub non_finite: bool,
}

/// An over-smoothing request: apply P = D̂⁻¹Â (Â = A + I) to X, `steps` times.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"a": [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]],
                          "x": [[1.0], [0.0], [-1.0]], "steps": 10}))]
pub struct SmoothingRequest {
    /// Adjacency A, (N, N): square, symmetric, non-negative.
    #[schema(value_type = Matrix)]
    pub a: Value,
    /// Features X, (N, F), N ≥ 1 and F ≥ 1.
    #[schema(value_type = Matrix)]
    pub x: Value,
    /// Number of applications of P, 1 … `max_steps`; default 20.
    #[serde(default = "default_steps", deserialize_with = "named::steps")]
    #[schema(default = default_steps, minimum = 1)]
    pub steps: usize,
    /// Relative tolerance: over-smoothed once the spread falls below `tolerance` × the initial
    /// spread. In (0, 1); default 1e-3.
    #[serde(default = "default_tolerance", deserialize_with = "named::tolerance")]
    #[schema(default = default_tolerance, exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub tolerance: f64,
}

/// Whether repeated aggregation made the nodes indistinguishable: `over-smoothed` once the spread
/// fell below `tolerance` × the initial spread, `not-over-smoothed` if it did not within `steps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum SmoothingVerdict {
    /// The spread fell below `tolerance` × the initial spread.
    #[serde(rename = "over-smoothed")]
    OverSmoothed,
    /// It did not within the steps asked for.
    #[serde(rename = "not-over-smoothed")]
    NotOverSmoothed,
}

/// The spread of node features after each application of P.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SmoothingResponse {
    /// Spread of X itself: the mean over features of the (population) standard deviation across
    /// nodes.
    pub initial_spread: Num,
    /// Mean over nodes of ‖x_i − x̄‖₂ for X itself (x̄ the mean row).
    pub initial_mean_distance: Num,
    /// Spread after n = 1 … steps applications, `steps` values.
    #[schema(value_type = NumVector)]
    pub spread: Tensor,
    /// Mean distance to the mean row after n = 1 … steps applications, `steps` values.
    #[schema(value_type = NumVector)]
    pub mean_distance: Tensor,
    /// The verdict.
    pub verdict: SmoothingVerdict,
    /// The first n at which the spread fell below the tolerance (0 when X has no spread to begin
    /// with); `null` if it never did.
    pub step: Option<usize>,
    /// Whether any value above is non-finite.
    pub non_finite: bool,
}

/// Parses and checks an adjacency matrix: square, symmetric (to 1e-12 relative), non-negative.
fn adjacency(field: &str, v: &Value, limits: &LayerLimits) -> Result<Array2<f64>, LayerError> {
    let a = tensor::matrix(field, v, limits)?;
    let n = a.nrows();
    if a.ncols() != n {
        return Err(LayerError::Adjacency {
            field: field.to_string(),
            message: format!("must be square, got shape {:?}", a.shape()),
        });
    }
    for ((i, j), &aij) in a.indexed_iter() {
        if aij < 0.0 {
            return Err(LayerError::Adjacency {
                field: field.to_string(),
                message: format!("must be non-negative, but {field}[{i}][{j}] = {aij}"),
            });
        }
        let aji = a[[j, i]];
        if (aij - aji).abs() > 1e-12 * aij.abs().max(aji.abs()).max(1.0) {
            return Err(LayerError::Adjacency {
                field: field.to_string(),
                message: format!(
                    "must be symmetric, but {field}[{i}][{j}] = {aij} and {field}[{j}][{i}] = {aji}"
                ),
            });
        }
    }
    Ok(a)
}

/// Parses node features that must have one row per node.
fn features(
    field: &str,
    v: &Value,
    n: usize,
    limits: &LayerLimits,
) -> Result<Array2<f64>, LayerError> {
    let x = tensor::matrix(field, v, limits)?;
    let f = x.ncols();
    expect_shape(field, x.shape(), &[n, f])?;
    Ok(x)
}

/// P = D̂⁻¹Â with Â = A + I; every row sum of Â is ≥ 1 since A ≥ 0, so the division is safe.
fn random_walk(a: &Array2<f64>) -> Array2<f64> {
    let mut p = a.clone();
    for (i, mut row) in p.rows_mut().into_iter().enumerate() {
        row[i] += 1.0;
        let d = row.sum();
        row.mapv_inplace(|v| v / d);
    }
    p
}

/// The polynomial Laplacian filter y = σ(Σ_k α_k L^k x) (Kipf & Welling 2017, §2).
///
/// L^k x is computed as L(L^{k−1} x), one sparse-free matrix product per power; L^k itself is never
/// formed, and L only implicitly: L z = D z − A z, or z − D^−½ A D^−½ z.
///
/// **Errors**: `a` not square, symmetric and non-negative; `x` not (N, F); `alpha` empty or not a
/// list; K = len(alpha) − 1 over `max_steps`; K·N²·F over `max_work`.
pub fn run_gcn(req: &GcnRequest, limits: &LayerLimits) -> Result<GcnResponse, LayerError> {
    let a = adjacency("a", &req.a, limits)?;
    let n = a.nrows();
    let x = features("x", &req.x, n, limits)?;
    let alpha = tensor::vector("alpha", &req.alpha, limits)?;
    if alpha.is_empty() {
        return Err(LayerError::out_of_range(
            "alpha",
            "needs at least α_0 (one coefficient)",
        ));
    }
    let k_max = alpha.len() - 1;
    check_steps("alpha", k_max, limits)?;
    check_work(
        "alpha",
        k_max as u128 * (n as u128 * n as u128 + n as u128) * x.ncols() as u128,
        limits,
    )?;

    let degree = a.sum_axis(Axis(1));
    let inv_sqrt: Array1<f64> = degree.mapv(|d| if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 });
    let apply_l = |z: &Array2<f64>| -> Array2<f64> {
        match req.laplacian {
            Laplacian::Combinatorial => {
                let az = a.dot(z);
                let mut out = z.clone();
                for ((i, _), v) in out.indexed_iter_mut() {
                    *v *= degree[i];
                }
                out - az
            }
            Laplacian::Symmetric => {
                let mut scaled = z.clone();
                for ((i, _), v) in scaled.indexed_iter_mut() {
                    *v *= inv_sqrt[i];
                }
                let mut az = a.dot(&scaled);
                for ((i, _), v) in az.indexed_iter_mut() {
                    *v *= inv_sqrt[i];
                }
                z - &az
            }
        }
    };
    let mut power = x.clone();
    let mut y = &x * alpha[0];
    for &coef in alpha.iter().skip(1) {
        power = apply_l(&power);
        y.scaled_add(coef, &power);
    }
    let y = Tensor::from(y.mapv(|v| req.activation.apply(v)));
    let non_finite = !y.is_finite();
    Ok(GcnResponse { y, non_finite })
}

/// One graph layer Y = σ(D̂⁻¹ Â X W), Â = A + I (Kipf & Welling 2017, eq. 8, random-walk
/// normalisation).
///
/// **Errors**: `a` not square, symmetric and non-negative; `x` not (N, F); `w` not (F, F');
/// N·F·F' + N²·F' over `max_work`.
pub fn run_gnn(req: &GnnRequest, limits: &LayerLimits) -> Result<GnnResponse, LayerError> {
    let a = adjacency("a", &req.a, limits)?;
    let n = a.nrows();
    let x = features("x", &req.x, n, limits)?;
    let w = tensor::matrix("w", &req.w, limits)?;
    let f_out = w.ncols();
    expect_shape("w", w.shape(), &[x.ncols(), f_out])?;
    check_work(
        "w",
        (n as u128 * x.ncols() as u128 + n as u128 * n as u128) * f_out as u128,
        limits,
    )?;
    let p = random_walk(&a);
    let y = p.dot(&x.dot(&w)).mapv(|v| req.activation.apply(v));
    let y = Tensor::from(y);
    let non_finite = !y.is_finite();
    Ok(GnnResponse { y, non_finite })
}

/// (mean over features of the std across nodes, mean over nodes of ‖x_i − x̄‖₂).
fn spread(x: &Array2<f64>) -> (f64, f64) {
    let n = x.nrows() as f64;
    let mean = x.sum_axis(Axis(0)) / n;
    let centred = x - &mean;
    let std_mean = centred
        .map_axis(Axis(0), |col| {
            (col.iter().map(|v| v * v).sum::<f64>() / n).sqrt()
        })
        .mean()
        .unwrap_or(0.0);
    let dist = centred
        .map_axis(Axis(1), |row| row.iter().map(|v| v * v).sum::<f64>().sqrt())
        .mean()
        .unwrap_or(0.0);
    (std_mean, dist)
}

/// Applies P = D̂⁻¹Â to X `steps` times and reports the spread after each step (the over-smoothing
/// of Li, Han & Wu 2018; P is Kipf & Welling's aggregation). On a connected graph P is the
/// transition matrix of an irreducible aperiodic random walk, so Pⁿ X tends to rows that are all
/// the same weighted average of X and the spread tends to 0.
///
/// **Errors**: `a` not square, symmetric and non-negative; `x` not (N, F) with N, F ≥ 1; `steps` 0
/// or over `max_steps`; `tolerance` outside (0, 1); steps·N²·F over `max_work`.
pub fn run_smoothing(
    req: &SmoothingRequest,
    limits: &LayerLimits,
) -> Result<SmoothingResponse, LayerError> {
    if req.steps == 0 {
        return Err(LayerError::out_of_range(
            "steps",
            "must be at least 1, got 0",
        ));
    }
    check_steps("steps", req.steps, limits)?;
    if !(req.tolerance > 0.0 && req.tolerance < 1.0) {
        return Err(LayerError::out_of_range(
            "tolerance",
            format!("must be in (0, 1), got {}", req.tolerance),
        ));
    }
    let a = adjacency("a", &req.a, limits)?;
    let n = a.nrows();
    let mut x = features("x", &req.x, n, limits)?;
    if n == 0 || x.ncols() == 0 {
        return Err(LayerError::out_of_range(
            "x",
            format!(
                "needs at least one node and one feature, got shape {:?}",
                x.shape()
            ),
        ));
    }
    check_work(
        "steps",
        req.steps as u128 * n as u128 * n as u128 * x.ncols() as u128,
        limits,
    )?;
    let p = random_walk(&a);
    let (s0, d0) = spread(&x);
    let threshold = req.tolerance * s0;
    let mut step = if s0 <= 0.0 { Some(0) } else { None };
    let mut spreads = Array1::zeros(req.steps);
    let mut dists = Array1::zeros(req.steps);
    for k in 0..req.steps {
        x = p.dot(&x);
        let (s, d) = spread(&x);
        spreads[k] = s;
        dists[k] = d;
        if step.is_none() && s < threshold {
            step = Some(k + 1);
        }
    }
    let spread = Tensor::from(spreads);
    let mean_distance = Tensor::from(dists);
    let non_finite =
        !(s0.is_finite() && d0.is_finite() && spread.is_finite() && mean_distance.is_finite());
    Ok(SmoothingResponse {
        initial_spread: Num(s0),
        initial_mean_distance: Num(d0),
        spread,
        mean_distance,
        verdict: if step.is_some() {
            SmoothingVerdict::OverSmoothed
        } else {
            SmoothingVerdict::NotOverSmoothed
        },
        step,
        non_finite,
    })
}
