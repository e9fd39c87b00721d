//! The recurrent-stability diagnostic: how ‖Wⁿx‖ grows, and the spectral radius that governs it.
//!
//! Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural networks" (ICML 2013,
//! §2–3): back-propagated gradients through T steps behave like products of T Jacobians, which for
//! a linearised RNN is Wᵀ-powers; they vanish when the spectral radius ρ(W) < 1 and can explode when
//! ρ(W) > 1. The diagnostic shows both the finite-horizon behaviour (the norms) and the asymptotic
//! one (ρ).
//!
//! ρ is computed from all eigenvalues: Householder reduction to Hessenberg form, then Francis
//! double-shift QR (Golub & Van Loan, *Matrix Computations*, 4th ed., Alg. 7.4.2 and 7.5.2, in the
//! form of EISPACK's `hqr`). Power iteration is not used: for a real non-symmetric matrix the
//! dominant eigenvalues are often a complex pair of equal modulus (a rotation), where the iterate
//! never converges. If QR fails to converge (30 iterations without deflation, rare) the estimate
//! falls back to Gelfand's formula ρ = lim ‖W^{2^k}‖^{1/2^k} by repeated squaring.

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema::{Matrix, NumVector, Vector};
use super::tensor::{self, expect_shape, Num, Tensor};
use super::{check_steps, check_work, named, LayerError, LayerLimits};

fn default_steps() -> usize {
    100
}

/// Norms outside [1e−6, 1e6] count as vanished or exploded.
const LOG10_LOW: f64 = -6.0;
const LOG10_HIGH: f64 = 6.0;
/// How far from 1 ρ must be to call the asymptotic behaviour vanishing or exploding; rounding in
/// the eigenvalue computation is ~1e-15 for a rotation.
const RADIUS_TOLERANCE: f64 = 1e-9;

/// A stability request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"w": [[0.0, -1.1], [1.1, 0.0]], "steps": 50}))]
pub struct StabilityRequest {
    /// Recurrent matrix W, (H, H), H ≥ 1.
    #[schema(value_type = Matrix)]
    pub w: Value,
    /// Start vector x, H values, non-zero; default all 1/√H (unit norm).
    #[serde(default)]
    #[schema(value_type = Option<Vector>)]
    pub x: Option<Value>,
    /// N: norms are reported for n = 1 … N; 1 … `max_steps`, default 100.
    #[serde(default = "default_steps", deserialize_with = "named::steps")]
    #[schema(default = default_steps, minimum = 1)]
    pub steps: usize,
}

/// Behaviour of ‖Wⁿx‖: `exploding` (rose above 1e6 or overflowed), `vanishing` (fell below
/// 1e−6) or `stable` (stayed within); for the asymptotic verdict, ρ > 1, ρ < 1 or ρ = 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StabilityVerdict {
    /// The norm rose above 1e6 (or overflowed).
    Exploding,
    /// The norm fell below 1e−6.
    Vanishing,
    /// The norm stayed within [1e−6, 1e6].
    Stable,
}

/// How the spectral radius was obtained: `qr_eigenvalues` (max |λ| from Hessenberg + Francis QR)
/// or `gelfand` (repeated squaring, when QR did not converge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpectralMethod {
    /// max |λ| over all eigenvalues from Hessenberg + Francis QR.
    QrEigenvalues,
    /// Gelfand's formula by repeated squaring (QR did not converge).
    Gelfand,
}

/// The stability report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StabilityResponse {
    /// ‖Wⁿx‖₂ for n = 1 … N. Tracked in log space with a renormalised iterate, so a norm is
    /// non-finite only when it truly exceeds f64 (then `"inf"`; every later norm too).
    #[schema(value_type = NumVector)]
    pub norms: Tensor,
    /// log₁₀‖Wⁿx‖₂, finite even where `norms` overflowed; `"-inf"` once Wⁿx is exactly 0.
    #[schema(value_type = NumVector)]
    pub log10_norms: Tensor,
    /// Finite-horizon verdict from the norms.
    pub verdict: StabilityVerdict,
    /// First n at which the norm left [1e−6, 1e6]; `null` if it never did.
    pub step: Option<usize>,
    /// ρ(W).
    pub spectral_radius: Num,
    /// How ρ was computed.
    pub spectral_method: SpectralMethod,
    /// (‖W^N x‖ / ‖x‖)^{1/N}: the growth rate seen by this x, which tends to ρ when x has a
    /// component along a dominant eigenvector.
    pub growth_rate: Num,
    /// What ρ says about n → ∞: vanishing if ρ < 1, exploding if ρ > 1, stable if ρ = 1 (to 1e-9).
    pub asymptotic_verdict: StabilityVerdict,
    /// Whether any value above is non-finite.
    pub non_finite: bool,
}

/// Runs the diagnostic.
///
/// **Errors**: `w` not square; `x` not of length H or zero; `steps` 0 or over `max_steps`;
/// steps·H² + 20·H³ over `max_work`; H = 0.
pub fn run_stability(
    req: &StabilityRequest,
    limits: &LayerLimits,
) -> Result<StabilityResponse, LayerError> {
    if req.steps == 0 {
        return Err(LayerError::out_of_range(
            "steps",
            "must be at least 1, got 0",
        ));
    }
    check_steps("steps", req.steps, limits)?;
    let w = tensor::matrix("w", &req.w, limits)?;
    let h = w.nrows();
    expect_shape("w", w.shape(), &[h, h])?;
    if h == 0 {
        return Err(LayerError::out_of_range("w", "must be at least 1×1"));
    }
    let h128 = h as u128;
    check_work(
        "w",
        req.steps as u128 * h128 * h128 + 20 * h128 * h128 * h128,
        limits,
    )?;
    let x = tensor::vector_or("x", req.x.as_ref(), h, 1.0 / (h as f64).sqrt(), limits)?;
    let x_norm = norm2(&x);
    if x_norm == 0.0 || !x_norm.is_finite() {
        return Err(LayerError::out_of_range(
            "x",
            format!("must be non-zero with a finite norm, got norm {x_norm}"),
        ));
    }

    // Iterate the unit direction u and accumulate ln‖Wⁿx‖ = ln‖x‖ + Σ ln‖W u_{n−1}‖, so no
    // intermediate overflows even when the true norm is 1e400.
    let n = req.steps;
    let mut log_norms = Array1::from_elem(n, f64::NAN);
    let mut u = &x / x_norm;
    let mut log_norm = x_norm.ln();
    for k in 0..n {
        let z = w.dot(&u);
        let g = norm2(&z);
        if g == 0.0 {
            log_norm = f64::NEG_INFINITY;
        } else if g.is_finite() {
            log_norm += g.ln();
            u = z / g;
        } else {
            // W u itself overflowed (entries near f64::MAX); no direction left to follow.
            log_norm = if g.is_nan() { f64::NAN } else { f64::INFINITY };
        }
        log_norms[k] = log_norm;
        if !log_norm.is_finite() {
            log_norms.slice_mut(ndarray::s![k..]).fill(log_norm);
            break;
        }
    }
    let norms = log_norms.mapv(f64::exp);
    let log10 = log_norms.mapv(|l| l / std::f64::consts::LN_10);

    let mut verdict = StabilityVerdict::Stable;
    let mut step = None;
    for (k, &l) in log10.iter().enumerate() {
        let left = if l.is_nan() || l > LOG10_HIGH {
            Some(StabilityVerdict::Exploding)
        } else if l < LOG10_LOW {
            Some(StabilityVerdict::Vanishing)
        } else {
            None
        };
        if let Some(v) = left {
            verdict = v;
            step = Some(k + 1);
            break;
        }
    }

    let (rho, method) = spectral_radius(&w).unwrap_or((f64::NAN, SpectralMethod::Gelfand));
    let last = log_norms[n - 1];
    let growth_rate = ((last - x_norm.ln()) / n as f64).exp();
    let asymptotic_verdict = if rho < 1.0 - RADIUS_TOLERANCE {
        StabilityVerdict::Vanishing
    } else if rho > 1.0 + RADIUS_TOLERANCE || rho.is_nan() {
        StabilityVerdict::Exploding
    } else {
        StabilityVerdict::Stable
    };
    let norms = Tensor::from(norms);
    let log10_norms = Tensor::from(log10);
    let non_finite = !(norms.is_finite()
        && log10_norms.is_finite()
        && rho.is_finite()
        && growth_rate.is_finite());
    Ok(StabilityResponse {
        norms,
        log10_norms,
        verdict,
        step,
        spectral_radius: Num(rho),
        spectral_method: method,
        growth_rate: Num(growth_rate),
        asymptotic_verdict,
        non_finite,
    })
}

fn norm2(v: &Array1<f64>) -> f64 {
    // Scaled so that squaring cannot overflow for entries up to f64::MAX.
    let scale = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if scale == 0.0 || !scale.is_finite() {
        return scale;
    }
    scale
        * v.iter()
            .map(|x| (x / scale) * (x / scale))
            .sum::<f64>()
            .sqrt()
}

/// ρ(W) = max |λ| and how it was computed; `None` if `w` is not square.
///
/// W is first divided by its largest |entry| (ρ scales linearly), so the QR iteration works on
/// entries in [−1, 1] and cannot overflow.
pub fn spectral_radius(w: &Array2<f64>) -> Option<(f64, SpectralMethod)> {
    let n = w.nrows();
    if w.ncols() != n {
        return None;
    }
    let scale = w.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if n == 0 || scale == 0.0 {
        return Some((0.0, SpectralMethod::QrEigenvalues));
    }
    if !scale.is_finite() {
        return Some((f64::NAN, SpectralMethod::QrEigenvalues));
    }
    let b = w / scale;
    let mut hess = b.clone();
    hessenberg(&mut hess);
    match hqr(&mut hess) {
        Some(eigs) => {
            let r = eigs.iter().fold(0.0f64, |m, &(re, im)| m.max(re.hypot(im)));
            Some((scale * r, SpectralMethod::QrEigenvalues))
        }
        None => Some((scale * gelfand(&b), SpectralMethod::Gelfand)),
    }
}

/// Reduces `a` in place to upper Hessenberg form by Householder reflections (similarity
/// transforms, so eigenvalues are kept; Golub & Van Loan Alg. 7.4.2). Entries below the
/// subdiagonal are set to exactly 0.
fn hessenberg(a: &mut Array2<f64>) {
    let n = a.nrows();
    for k in 0..n.saturating_sub(2) {
        // Householder vector for column k below the diagonal.
        let alpha_scale = (k + 1..n).fold(0.0f64, |m, i| m.max(a[[i, k]].abs()));
        if alpha_scale == 0.0 {
            continue;
        }
        let mut v: Vec<f64> = (k + 1..n).map(|i| a[[i, k]] / alpha_scale).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let alpha = if v[0] >= 0.0 { -norm } else { norm };
        v[0] -= alpha;
        let vnorm2 = v.iter().map(|x| x * x).sum::<f64>();
        if vnorm2 == 0.0 {
            continue;
        }
        // A ← (I − 2vvᵀ/vᵀv) A (I − 2vvᵀ/vᵀv), applied to the rows/columns k+1..n.
        for j in 0..n {
            let dot: f64 = (0..v.len()).map(|i| v[i] * a[[k + 1 + i, j]]).sum();
            let f = 2.0 * dot / vnorm2;
            for (i, vi) in v.iter().enumerate() {
                a[[k + 1 + i, j]] -= f * vi;
            }
        }
        for i in 0..n {
            let dot: f64 = (0..v.len()).map(|j| a[[i, k + 1 + j]] * v[j]).sum();
            let f = 2.0 * dot / vnorm2;
            for (j, vj) in v.iter().enumerate() {
                a[[i, k + 1 + j]] -= f * vj;
            }
        }
        for i in k + 2..n {
            a[[i, k]] = 0.0;
        }
    }
}

/// All eigenvalues (re, im) of an upper Hessenberg matrix by Francis double-shift QR with
/// deflation (EISPACK `hqr`, as in Numerical Recipes 3rd ed. §11.6.1). `None` if some eigenvalue
/// needs more than 30 iterations.
fn hqr(a: &mut Array2<f64>) -> Option<Vec<(f64, f64)>> {
    let n = a.nrows();
    let mut wr = vec![0.0; n];
    let mut wi = vec![0.0; n];
    let eps = f64::EPSILON;
    let mut anorm = 0.0;
    for i in 0..n {
        for j in i.saturating_sub(1)..n {
            anorm += a[[i, j]].abs();
        }
    }
    let mut nn = n as isize - 1;
    let mut t = 0.0;
    let (mut p, mut q, mut r, mut s, mut w, mut x, mut y, mut z);
    while nn >= 0 {
        let nu = nn as usize;
        let mut its = 0;
        loop {
            // Look for a negligible subdiagonal element to split the matrix.
            let mut l = nu;
            while l > 0 {
                s = a[[l - 1, l - 1]].abs() + a[[l, l]].abs();
                if s == 0.0 {
                    s = anorm;
                }
                if a[[l, l - 1]].abs() <= eps * s {
                    a[[l, l - 1]] = 0.0;
                    break;
                }
                l -= 1;
            }
            x = a[[nu, nu]];
            if l == nu {
                // One root found.
                wr[nu] = x + t;
                wi[nu] = 0.0;
                nn -= 1;
                break;
            }
            y = a[[nu - 1, nu - 1]];
            w = a[[nu, nu - 1]] * a[[nu - 1, nu]];
            if l + 1 == nu {
                // Two roots found.
                p = 0.5 * (y - x);
                q = p * p + w;
                z = q.abs().sqrt();
                x += t;
                if q >= 0.0 {
                    z = p + z.copysign(p);
                    wr[nu - 1] = x + z;
                    wr[nu] = if z != 0.0 { x - w / z } else { x + z };
                    wi[nu - 1] = 0.0;
                    wi[nu] = 0.0;
                } else {
                    wr[nu - 1] = x + p;
                    wr[nu] = x + p;
                    wi[nu - 1] = -z;
                    wi[nu] = z;
                }
                nn -= 2;
                break;
            }
            if its == 30 {
                return None;
            }
            if its == 10 || its == 20 {
                // Exceptional shift, to break cycles.
                t += x;
                for i in 0..=nu {
                    a[[i, i]] -= x;
                }
                s = a[[nu, nu - 1]].abs() + a[[nu - 1, nu - 2]].abs();
                x = 0.75 * s;
                y = x;
                w = -0.4375 * s * s;
            }
            its += 1;
            // Form the shift and look for two consecutive small subdiagonal elements.
            let mut m = nu - 2;
            loop {
                z = a[[m, m]];
                r = x - z;
                s = y - z;
                p = (r * s - w) / a[[m + 1, m]] + a[[m, m + 1]];
                q = a[[m + 1, m + 1]] - z - r - s;
                r = a[[m + 2, m + 1]];
                s = p.abs() + q.abs() + r.abs();
                p /= s;
                q /= s;
                r /= s;
                if m == l {
                    break;
                }
                let u = a[[m, m - 1]].abs() * (q.abs() + r.abs());
                let v = p.abs() * (a[[m - 1, m - 1]].abs() + z.abs() + a[[m + 1, m + 1]].abs());
                if u <= eps * v {
                    break;
                }
                m -= 1;
            }
            for i in m..nu - 1 {
                a[[i + 2, i]] = 0.0;
                if i != m {
                    a[[i + 2, i - 1]] = 0.0;
                }
            }
            // Double QR step on rows l..=nn and columns m..=nn.
            for k in m..nu {
                if k != m {
                    p = a[[k, k - 1]];
                    q = a[[k + 1, k - 1]];
                    r = if k + 1 != nu { a[[k + 2, k - 1]] } else { 0.0 };
                    x = p.abs() + q.abs() + r.abs();
                    if x != 0.0 {
                        p /= x;
                        q /= x;
                        r /= x;
                    }
                }
                s = (p * p + q * q + r * r).sqrt().copysign(p);
                if s != 0.0 {
                    if k == m {
                        if l != m {
                            a[[k, k - 1]] = -a[[k, k - 1]];
                        }
                    } else {
                        a[[k, k - 1]] = -s * x;
                    }
                    p += s;
                    x = p / s;
                    y = q / s;
                    z = r / s;
                    q /= p;
                    r /= p;
                    for j in k..=nu {
                        p = a[[k, j]] + q * a[[k + 1, j]];
                        if k + 1 != nu {
                            p += r * a[[k + 2, j]];
                            a[[k + 2, j]] -= p * z;
                        }
                        a[[k + 1, j]] -= p * y;
                        a[[k, j]] -= p * x;
                    }
                    let mmin = if nu < k + 3 { nu } else { k + 3 };
                    for i in l..=mmin {
                        p = x * a[[i, k]] + y * a[[i, k + 1]];
                        if k + 1 != nu {
                            p += z * a[[i, k + 2]];
                            a[[i, k + 2]] -= p * r;
                        }
                        a[[i, k + 1]] -= p * q;
                        a[[i, k]] -= p;
                    }
                }
            }
            if !a.iter().all(|v| v.is_finite()) {
                return None;
            }
        }
    }
    Some(wr.into_iter().zip(wi).collect())
}

/// Gelfand's formula by repeated squaring: M_{j+1} = M_j² / ‖M_j²‖_F, and
/// ln‖B^{2^j}‖ accumulated alongside; 40 squarings put the norm-equivalence error at H^{2^−40}.
fn gelfand(b: &Array2<f64>) -> f64 {
    let fro = |m: &Array2<f64>| m.iter().map(|v| v * v).sum::<f64>().sqrt();
    let c0 = fro(b);
    if c0 == 0.0 {
        return 0.0;
    }
    let mut m = b / c0;
    let mut log_norm = c0.ln(); // ln‖B^{2^j}‖ (up to the normalisation carried in m)
    let mut power = 1.0f64;
    for _ in 0..40 {
        let sq = m.dot(&m);
        let c = fro(&sq);
        if c == 0.0 {
            return 0.0;
        }
        log_norm = 2.0 * log_norm + c.ln();
        power *= 2.0;
        m = sq / c;
    }
    (log_norm / power).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn rho(w: Array2<f64>) -> f64 {
        spectral_radius(&w).unwrap().0
    }

    fn rotation(scale: f64, theta: f64) -> Array2<f64> {
        array![[theta.cos(), -theta.sin()], [theta.sin(), theta.cos()]] * scale
    }

    #[test]
    fn rotation_scaled_by_0_9_has_radius_0_9() {
        assert!((rho(rotation(0.9, 0.7)) - 0.9).abs() < 1e-12);
    }

    #[test]
    fn rotation_scaled_by_1_1_has_radius_1_1() {
        assert!((rho(rotation(1.1, 2.0)) - 1.1).abs() < 1e-12);
    }

    #[test]
    fn diagonal_radius_is_the_largest_absolute_entry() {
        let w = Array2::from_diag(&array![0.3, -2.5, 1.0, 0.0]);
        assert!((rho(w) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn nilpotent_radius_is_zero() {
        let w = array![[0.0, 1.0, 5.0], [0.0, 0.0, -3.0], [0.0, 0.0, 0.0]];
        assert!(rho(w).abs() < 1e-12);
    }

    #[test]
    fn rotation_block_in_a_larger_matrix() {
        // A 4×4 matrix similar to diag(R(0.95), 0.5, −0.2): eigenvalues 0.95e^{±iθ}, 0.5, −0.2.
        let mut d = Array2::zeros((4, 4));
        d.slice_mut(ndarray::s![0..2, 0..2])
            .assign(&rotation(0.95, 1.3));
        d[[2, 2]] = 0.5;
        d[[3, 3]] = -0.2;
        // Q D Qᵀ with an orthogonal Q (a Givens rotation in the (0, 3) plane) keeps the spectrum.
        let q = {
            let mut q = Array2::eye(4);
            let (c, sn) = (0.6f64, 0.8f64);
            q[[0, 0]] = c;
            q[[0, 3]] = -sn;
            q[[3, 0]] = sn;
            q[[3, 3]] = c;
            q
        };
        let w = q.dot(&d).dot(&q.t());
        assert!((rho(w) - 0.95).abs() < 1e-12);
    }

    #[test]
    fn gelfand_fallback_agrees_on_a_rotation() {
        assert!((gelfand(&rotation(0.9, 0.7)) - 0.9).abs() < 1e-6);
    }
}
