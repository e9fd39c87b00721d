//! The Factorization Machine (Rendle, 2010):
//! y(x) = w0 + Σ_j w_j x_j + Σ_{j<l} ⟨v_j, v_l⟩ x_j x_l,
//! evaluated in O(k·m) for m non-zero features with Rendle's identity (eq. 5 of the paper):
//! Σ_{j<l} ⟨v_j, v_l⟩ x_j x_l = ½ Σ_f [(Σ_j v_jf x_j)² − Σ_j v_jf² x_j²].

use ndarray::{Array1, Array2};

use crate::rng::Rng;

/// A sparse input: (feature index, value) pairs.
pub type SparseRow<'a> = (&'a [u32], &'a [f32]);

/// FM parameters, stored as f32: global bias `w0`, linear weights `w` (n), factors `v` (n × k).
#[derive(Debug, Clone, PartialEq)]
pub struct FmModel {
    /// Global bias.
    pub w0: f32,
    /// One weight per feature.
    pub w: Array1<f32>,
    /// One k-dimensional factor vector per feature (row j is v_j).
    pub v: Array2<f32>,
}

/// The gradient of y(x) with respect to every parameter that x touches.
#[derive(Debug, Clone, PartialEq)]
pub struct FmGradient {
    /// ∂y/∂w0 (always 1).
    pub w0: f32,
    /// (j, ∂y/∂w_j) for each feature of x.
    pub w: Vec<(u32, f32)>,
    /// (j, ∂y/∂v_j) for each feature of x.
    pub v: Vec<(u32, Vec<f32>)>,
}

/// ∂y/∂v_j = x_j Σ_l v_l x_l − v_j x_j² (Rendle 2010, eq. 7), written into `out`.
/// `sum` is Σ_l v_l x_l over every feature of the input, including j. The trainer uses the same
/// function, so the finite-difference test covers what training does.
#[inline]
pub fn factor_gradient(x_j: f32, v_j: &[f32], sum: &[f32], out: &mut [f32]) {
    let x2 = x_j * x_j;
    for ((o, &s), &v) in out.iter_mut().zip(sum).zip(v_j) {
        *o = x_j * s - x2 * v;
    }
}

impl FmModel {
    /// A model with zero biases and factors drawn from N(0, init_std²).
    pub fn random(n_features: usize, dim: usize, init_std: f32, rng: &mut Rng) -> Self {
        let v = Array2::from_shape_fn((n_features, dim), |_| rng.normal() as f32 * init_std);
        FmModel {
            w0: 0.0,
            w: Array1::zeros(n_features),
            v,
        }
    }

    /// Number of features n.
    pub fn n_features(&self) -> usize {
        self.w.len()
    }

    /// Factor dimension k.
    pub fn dim(&self) -> usize {
        self.v.ncols()
    }

    /// Row j of V as a slice.
    #[inline]
    pub fn factors(&self, j: u32) -> &[f32] {
        let k = self.dim();
        let all = self.v.as_slice().expect("V is stored in standard layout");
        &all[j as usize * k..(j as usize + 1) * k]
    }

    /// y(x) in O(k·m) with Rendle's identity.
    pub fn score(&self, (idx, val): SparseRow<'_>) -> f32 {
        let k = self.dim();
        let mut sum = vec![0f32; k];
        let mut sum_sq = vec![0f32; k];
        let mut linear = self.w0;
        for (&j, &x) in idx.iter().zip(val) {
            linear += self.w[j as usize] * x;
            for ((s, q), &v) in sum.iter_mut().zip(sum_sq.iter_mut()).zip(self.factors(j)) {
                *s += v * x;
                *q += v * v * x * x;
            }
        }
        let pairwise: f32 = sum.iter().zip(&sum_sq).map(|(s, q)| s * s - q).sum();
        linear + 0.5 * pairwise
    }

    /// y(x) by the literal O(k·m²) pairwise sum, accumulated in f64: the reference for
    /// [`FmModel::score`]. In f32 this sum of m²/2 terms rounds more than the identity it checks
    /// (relative 1e-5 against 5e-7 at m = 600, k = 32), and a product of two f32 is exact in f64.
    pub fn score_naive(&self, (idx, val): SparseRow<'_>) -> f64 {
        let mut y = f64::from(self.w0);
        for (a, (&j, &xj)) in idx.iter().zip(val).enumerate() {
            let xj = f64::from(xj);
            y += f64::from(self.w[j as usize]) * xj;
            for (&l, &xl) in idx.iter().zip(val).skip(a + 1) {
                let dot: f64 = self
                    .factors(j)
                    .iter()
                    .zip(self.factors(l))
                    .map(|(&p, &q)| f64::from(p) * f64::from(q))
                    .sum();
                y += dot * xj * f64::from(xl);
            }
        }
        y
    }

    /// The analytic gradient of y(x) (Rendle 2010, eq. 7).
    pub fn gradient(&self, (idx, val): SparseRow<'_>) -> FmGradient {
        let k = self.dim();
        let mut sum = vec![0f32; k];
        for (&j, &x) in idx.iter().zip(val) {
            for (s, &v) in sum.iter_mut().zip(self.factors(j)) {
                *s += v * x;
            }
        }
        let mut v = Vec::with_capacity(idx.len());
        for (&j, &x) in idx.iter().zip(val) {
            let mut g = vec![0f32; k];
            factor_gradient(x, self.factors(j), &sum, &mut g);
            v.push((j, g));
        }
        FmGradient {
            w0: 1.0,
            w: idx.iter().zip(val).map(|(&j, &x)| (j, x)).collect(),
            v,
        }
    }
}
