//! Learning an FM from implicit feedback with ranking losses, Adagrad and lock-free parallel updates.
//!
//! - WARP (Weston, Bengio & Usunier 2011, as LightFM implements it): for a positive (u, i), sample
//!   items until one, k, violates the margin s(u,k) > s(u,i) − 1; the update on (1 − s(u,i) + s(u,k))
//!   is weighted by ln⌊(n − 1)/samples⌋, an estimate of how badly i is ranked.
//! - BPR (Rendle et al. 2009): one sampled negative, loss −ln σ(s(u,i) − s(u,k)).
//!
//! Only score differences between items of one user enter these losses, so within-user terms cancel:
//! the user-side gradient is x_j (q_i − q_k) and the item-side one is Rendle's eq. 7.
//!
//! Parameters live in relaxed atomics so that threads update them without locks (Hogwild, Recht et
//! al. 2011) and without undefined behaviour; with one thread the run is bit-reproducible.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::eval::{evaluate_model, EvalSet, Metrics};
use super::model::{factor_gradient, FmModel, SparseRow};
use crate::data::FeatureRows;
use crate::kernels::dot;
use crate::rng::Rng;

/// Training errors: parameters out of range, or data that cannot be trained on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A hyper-parameter is outside its allowed range.
    #[error("{name} should be {allowed}, but is {value}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// The allowed range.
        allowed: &'static str,
        /// What was given.
        value: String,
    },
    /// Nothing to learn from.
    #[error("{0}")]
    NoData(String),
}

/// The ranking loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Weighted Approximate-Rank Pairwise.
    Warp,
    /// Bayesian Personalised Ranking.
    Bpr,
}

/// Hyper-parameters of one training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// Ranking loss.
    pub loss: Loss,
    /// Factor dimension k.
    pub dim: usize,
    /// Adagrad learning rate.
    pub learning_rate: f32,
    /// L2 penalty on every parameter an update touches.
    pub l2: f32,
    /// WARP: negatives sampled per positive before giving up.
    pub max_sampled: usize,
    /// Standard deviation of the initial factors.
    pub init_std: f32,
    /// Worker threads (Hogwild); 1 is bit-reproducible.
    pub threads: usize,
    /// Seed of initialisation, shuffling and sampling.
    pub seed: u64,
    /// Probability of leaving a user's id feature out of a training sample (DropoutNet-style input
    /// dropout, Volkovs et al. 2017): the user's side features then carry the whole user side of
    /// the update, so they learn to rank for users the model has never seen. 0 turns it off.
    #[serde(default)]
    pub user_id_dropout: f32,
    /// The same for items: each item of a sample (the positive and every sampled negative) loses
    /// its id feature with this probability, so that new items are recallable from their features.
    #[serde(default)]
    pub item_id_dropout: f32,
    /// Adagrad learning rate of side features (every feature that is not a user's or an item's
    /// id); `None` uses `learning_rate`.
    #[serde(default)]
    pub side_learning_rate: Option<f32>,
    /// History features (`history.rs`): each user's most recent this-many train items enter their
    /// row as user-side features weighted 1/√n. 0 (the default, and every model trained before it
    /// existed) turns them off.
    #[serde(default)]
    pub history: usize,
    /// How training builds a positive's history: with this probability, the `history` items the
    /// user had *before* it (causal: the next-item task that recall following events faces);
    /// otherwise the user's last `history` items without it (leave-one-out: their profile).
    /// 0 is always leave-one-out, 1 always causal.
    #[serde(default)]
    pub causal_history: f32,
}

impl TrainParams {
    /// Checks every parameter's range.
    pub fn check(&self) -> Result<(), TrainError> {
        fn bad(name: &'static str, allowed: &'static str, value: impl ToString) -> TrainError {
            TrainError::InvalidParameter {
                name,
                allowed,
                value: value.to_string(),
            }
        }
        if !(1..=1024).contains(&self.dim) {
            return Err(bad("dim", "in 1..=1024", self.dim));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(bad(
                "learning_rate",
                "a finite number > 0",
                self.learning_rate,
            ));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(bad("l2", "a finite number >= 0", self.l2));
        }
        if !(1..=10_000).contains(&self.max_sampled) {
            return Err(bad("max_sampled", "in 1..=10000", self.max_sampled));
        }
        if !(self.init_std.is_finite() && self.init_std >= 0.0) {
            return Err(bad("init_std", "a finite number >= 0", self.init_std));
        }
        if !(1..=256).contains(&self.threads) {
            return Err(bad("threads", "in 1..=256", self.threads));
        }
        if !(0.0..=1.0).contains(&self.user_id_dropout) {
            return Err(bad("user_id_dropout", "in [0, 1]", self.user_id_dropout));
        }
        if !(0.0..=1.0).contains(&self.item_id_dropout) {
            return Err(bad("item_id_dropout", "in [0, 1]", self.item_id_dropout));
        }
        if !(0.0..=1.0).contains(&self.causal_history) {
            return Err(bad("causal_history", "in [0, 1]", self.causal_history));
        }
        if self.history > MAX_HISTORY {
            return Err(bad("history", "in 0..=10000", self.history));
        }
        if let Some(lr) = self.side_learning_rate {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(bad("side_learning_rate", "a finite number > 0", lr));
            }
        }
        Ok(())
    }
}

/// The longest history `TrainParams::history` may ask for.
pub const MAX_HISTORY: usize = 10_000;

/// How many epochs to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Exactly `epochs` epochs; the evaluation set, when given, is scored after every
    /// `evaluate_every`-th epoch and after the last (the per-epoch history; 0: the last only).
    Fixed {
        /// Epochs to run.
        epochs: usize,
        /// Epochs between evaluations.
        evaluate_every: usize,
    },
    /// Up to `max_epochs`, stopping once the evaluation's precision@k, smoothed over
    /// neighbouring epochs ([`EpochChooser`]), has not improved for `patience` epochs, and keeping
    /// the best epoch's parameters. Requires an evaluation set, which must be validation data
    /// (never the test split).
    EarlyStopping {
        /// Upper bound on epochs.
        max_epochs: usize,
        /// Epochs without improvement before stopping.
        patience: usize,
    },
}

/// What the trainer learns from: encoded user and item rows and the positive pairs.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    /// Features of every user (row = user index).
    pub user_rows: FeatureRows,
    /// Features of every item (row = item index).
    pub item_rows: FeatureRows,
    /// Every user's features without the id feature (what id dropout leaves).
    pub user_side_rows: FeatureRows,
    /// Every item's features without the id feature.
    pub item_side_rows: FeatureRows,
    /// Per feature, whether it is some user's or item's id feature (ids and side features may
    /// learn at different rates).
    pub is_id: Vec<bool>,
    /// Positive (user, item) pairs.
    pub positives: Vec<(u32, u32)>,
    /// The (user, item) pairs of train, at any rating: never taken as negatives, since recall
    /// excludes them anyway (pushing them down would push down their look-alikes, which are the
    /// very items the user wants next).
    pub seen: super::SeenPairs,
    /// Each user's history, when the model has history features (`user_rows` then hold none:
    /// each positive's row is built without the positive itself, so the model learns what a
    /// history says about *other* items rather than that a user likes what they already had,
    /// which recall never offers).
    pub history: Option<TrainHistory>,
}

/// The users' train histories as the trainer reads them.
#[derive(Debug, Clone)]
pub struct TrainHistory {
    /// Per user, (item, its history feature) of every train item with a history feature,
    /// oldest first, each once (at its latest interaction).
    pub items: Vec<Vec<(u32, u32)>>,
    /// Per user, (item, its position in `items`), sorted by item.
    pub position: Vec<Vec<(u32, u32)>>,
    /// Items a positive's history holds at most (`TrainParams::history`).
    pub max_items: usize,
    /// Probability of a causal history (the items before the positive) rather than
    /// leave-one-out.
    pub causal: f32,
}

impl TrainHistory {
    /// From each user's items (item, feature) oldest first.
    pub fn new(items: Vec<Vec<(u32, u32)>>, max_items: usize, causal: f32) -> Self {
        let position = items
            .iter()
            .map(|list| {
                let mut p: Vec<(u32, u32)> = (list.iter().enumerate())
                    .map(|(at, &(item, _))| (item, at as u32))
                    .collect();
                p.sort_unstable();
                p
            })
            .collect();
        TrainHistory {
            items,
            position,
            max_items,
            causal,
        }
    }

    /// The history features of user `u`'s row for positive `i` (pushed onto `out`): the items
    /// before it when `causal`, else the last ones without it.
    fn features_for(&self, u: u32, i: u32, causal: bool, out: &mut Vec<u32>) {
        let list = &self.items[u as usize];
        let at = self.position[u as usize]
            .binary_search_by_key(&i, |&(item, _)| item)
            .ok()
            .map(|p| self.position[u as usize][p].1 as usize);
        if causal {
            let end = at.unwrap_or(list.len());
            let start = end.saturating_sub(self.max_items);
            out.extend(list[start..end].iter().map(|&(_, f)| f));
        } else {
            let start = list.len().saturating_sub(self.max_items);
            out.extend(
                list[start..]
                    .iter()
                    .filter(|&&(item, _)| item != i)
                    .map(|&(_, f)| f),
            );
        }
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean loss per positive.
    pub loss: f64,
    /// Wall time of the epoch's updates (evaluation excluded).
    pub seconds: f64,
    /// Figures on the evaluation set, when there is one.
    pub metrics: Option<Metrics>,
}

/// The trained model and how it got there.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The model (the best epoch's, under early stopping).
    pub model: FmModel,
    /// Every epoch run.
    pub history: Vec<EpochReport>,
    /// The epoch whose parameters were kept.
    pub best_epoch: usize,
    /// Total wall time of the epochs' updates.
    pub train_seconds: f64,
}

/// Parameters and their Adagrad accumulators as relaxed atomics (f32 bit patterns).
struct SharedParams {
    k: usize,
    w0: f32,
    w: Vec<AtomicU32>,
    v: Vec<AtomicU32>,
    grad_w: Vec<AtomicU32>,
    grad_v: Vec<AtomicU32>,
}

#[inline]
fn load(a: &AtomicU32) -> f32 {
    f32::from_bits(a.load(Relaxed))
}

#[inline]
fn store(a: &AtomicU32, x: f32) {
    a.store(x.to_bits(), Relaxed)
}

fn atomics(values: impl Iterator<Item = f32>) -> Vec<AtomicU32> {
    values.map(|x| AtomicU32::new(x.to_bits())).collect()
}

impl SharedParams {
    fn new(model: &FmModel) -> Self {
        // Accumulators start at 1, as LightFM's do, which damps the very first steps.
        SharedParams {
            k: model.dim(),
            w0: model.w0,
            w: atomics(model.w.iter().copied()),
            v: atomics(model.v.iter().copied()),
            grad_w: atomics(model.w.iter().map(|_| 1.0)),
            grad_v: atomics(model.v.iter().map(|_| 1.0)),
        }
    }

    fn snapshot(&self) -> FmModel {
        let n = self.w.len();
        FmModel {
            w0: self.w0,
            w: self.w.iter().map(load).collect(),
            v: ndarray::Array2::from_shape_vec((n, self.k), self.v.iter().map(load).collect())
                .expect("n × k parameters"),
        }
    }

    /// Starts loading the factors, weight and accumulators of the features of `row` into cache.
    fn prefetch(&self, row: SparseRow<'_>) {
        self.prefetch_parts(row, true);
    }

    /// Starts loading what scoring the features of `row` reads: factors and weight. A candidate
    /// negative is scored on every draw but updated at most once per positive; prefetching its
    /// accumulators too kept twice the cache lines in flight, and the line fill buffers full.
    fn prefetch_for_scoring(&self, row: SparseRow<'_>) {
        self.prefetch_parts(row, false);
    }

    fn prefetch_parts(&self, (idx, _): SparseRow<'_>, accumulators: bool) {
        use crate::kernels::prefetch;
        for &j in idx {
            let base = j as usize * self.k;
            let (v, grad_v) = (
                &self.v[base..base + self.k],
                &self.grad_v[base..base + self.k],
            );
            // A 64-byte line holds 16 factors.
            for c in (0..self.k).step_by(16) {
                prefetch(v[c..].as_ptr().cast());
                if accumulators {
                    prefetch(grad_v[c..].as_ptr().cast());
                }
            }
            prefetch(std::ptr::from_ref(&self.w[j as usize]).cast());
        }
    }

    fn load_factors(&self, j: u32, out: &mut [f32]) {
        let base = j as usize * self.k;
        for (o, a) in out.iter_mut().zip(&self.v[base..base + self.k]) {
            *o = load(a);
        }
    }

    /// One Adagrad step on v_j along `grad` (a gradient of the loss), with L2. The row and its
    /// accumulators are copied into `scratch` so that the arithmetic vectorises.
    fn step_factors(&self, j: u32, grad: &[f32], lr: f32, l2: f32, scratch: &mut Scratch) {
        let base = j as usize * self.k;
        let params = &self.v[base..base + self.k];
        let accs = &self.grad_v[base..base + self.k];
        let (p, a) = (&mut scratch.param[..self.k], &mut scratch.acc[..self.k]);
        for ((x, y), (ap, aa)) in p.iter_mut().zip(a.iter_mut()).zip(params.iter().zip(accs)) {
            *x = load(ap);
            *y = load(aa);
        }
        for ((x, y), &g) in p.iter_mut().zip(a.iter_mut()).zip(grad) {
            let g = g + l2 * *x;
            *y += g * g;
            *x -= lr * g / y.sqrt();
        }
        for ((x, y), (ap, aa)) in p.iter().zip(a.iter()).zip(params.iter().zip(accs)) {
            store(ap, *x);
            store(aa, *y);
        }
    }

    fn step_weight(&self, j: u32, grad: f32, lr: f32, l2: f32) {
        let (p, a) = (&self.w[j as usize], &self.grad_w[j as usize]);
        let x = load(p);
        let g = grad + l2 * x;
        let acc = load(a) + g * g;
        store(a, acc);
        store(p, x - lr * g / acc.sqrt());
    }
}

/// The factors of one side (user or item) loaded for an update: their sum and each row.
struct Side {
    sum: Vec<f32>,
    rows: Vec<f32>,
    /// Σ w_j x_j + ½(‖sum‖² − Σ ‖v_j‖² x_j²): this side's own part of the score.
    within: f32,
}

impl Side {
    fn new(k: usize) -> Self {
        Side {
            sum: vec![0.0; k],
            rows: Vec::with_capacity(8 * k),
            within: 0.0,
        }
    }

    fn load(&mut self, params: &SharedParams, (idx, val): SparseRow<'_>) {
        let k = params.k;
        self.rows.resize(idx.len() * k, 0.0);
        let mut linear = 0.0f32;
        for (r, (&j, &x)) in idx.iter().zip(val).enumerate() {
            params.load_factors(j, &mut self.rows[r * k..(r + 1) * k]);
            linear += load(&params.w[j as usize]) * x;
        }
        if let ([_], [x]) = (idx, val) {
            // One feature (an id): no within-side interaction, the sum is the scaled row.
            for (s, &v) in self.sum.iter_mut().zip(&self.rows[..k]) {
                *s = v * x;
            }
            self.within = linear;
            return;
        }
        self.sum.iter_mut().for_each(|s| *s = 0.0);
        let mut sq = 0.0f32;
        for (row, &x) in self.rows.chunks_exact(k).zip(val) {
            for (s, &v) in self.sum.iter_mut().zip(row) {
                *s += v * x;
            }
            sq += x * x * dot(row, row);
        }
        self.within = linear + 0.5 * (dot(&self.sum, &self.sum) - sq);
    }

    fn row(&self, r: usize, k: usize) -> &[f32] {
        &self.rows[r * k..(r + 1) * k]
    }
}

/// Per-thread scratch space, allocated once per epoch and thread.
struct Worker<'a> {
    params: &'a SharedParams,
    data: &'a TrainingSet,
    hp: &'a TrainParams,
    rng: Rng,
    user: Side,
    pos: Side,
    neg: Side,
    /// p_u + q_i and p_u + q_k: the factor sums over the whole (u, i) and (u, k) inputs.
    total_pos: Vec<f32>,
    total_neg: Vec<f32>,
    grad: Vec<f32>,
    scratch: Vec<f32>,
    step: Scratch,
    /// The user's row with their history (leave-one-out), when the model has history features.
    row_idx: Vec<u32>,
    row_val: Vec<f32>,
}

/// Buffers for one Adagrad step.
struct Scratch {
    param: Vec<f32>,
    acc: Vec<f32>,
}

impl<'a> Worker<'a> {
    fn new(params: &'a SharedParams, data: &'a TrainingSet, hp: &'a TrainParams, rng: Rng) -> Self {
        let k = params.k;
        Worker {
            params,
            data,
            hp,
            rng,
            user: Side::new(k),
            pos: Side::new(k),
            neg: Side::new(k),
            total_pos: vec![0.0; k],
            total_neg: vec![0.0; k],
            grad: vec![0.0; k],
            scratch: vec![0.0; k],
            step: Scratch {
                param: vec![0.0; k],
                acc: vec![0.0; k],
            },
            row_idx: Vec::new(),
            row_val: Vec::new(),
        }
    }

    /// The item-dependent part of s(u, ·): b + ⟨p_u, q⟩.
    fn item_score(user: &Side, item: &Side) -> f32 {
        item.within + dot(&user.sum, &item.sum)
    }

    /// Row `r` of `rows`, or of `side` (the same row without its id feature) with probability
    /// `p` when that leaves some feature. No random number is drawn when `p` is 0, so runs without
    /// dropout are the same as before it existed.
    fn maybe_drop(
        rng: &mut Rng,
        p: f32,
        rows: &'a FeatureRows,
        side: &'a FeatureRows,
        r: u32,
    ) -> SparseRow<'a> {
        let full = rows.row(r as usize);
        if p > 0.0 {
            let without = side.row(r as usize);
            if !without.0.is_empty() && without.0.len() < full.0.len() && rng.uniform() < p as f64 {
                return without;
            }
        }
        full
    }

    /// Runs the loss over the given positives; returns the summed loss.
    fn run(&mut self, positives: &[(u32, u32)]) -> f64 {
        let data = self.data;
        let n_items = data.item_rows.len();
        let (p_user, p_item) = (self.hp.user_id_dropout, self.hp.item_id_dropout);
        let mut loss_sum = 0.0f64;
        let (mut row_idx, mut row_val) = (
            std::mem::take(&mut self.row_idx),
            std::mem::take(&mut self.row_val),
        );
        // Where nothing else draws random numbers between two negatives (no id dropout, no
        // history), the next candidate negative is drawn one step early and its rows prefetched
        // while the current one is scored, and the next positive's rows while this one trains:
        // the profile of a WARP epoch at 19M interactions spent ~50% of its time waiting for
        // factor rows (loads missing cache in `Side::load`). The random stream is the same, so
        // are the results.
        let pipelined =
            self.hp.loss == Loss::Warp && p_user <= 0.0 && p_item <= 0.0 && data.history.is_none();
        let mut pending: Option<u32> = None;
        for (n, &(u, i)) in positives.iter().enumerate() {
            if pipelined {
                if let Some(&(nu, ni)) = positives.get(n + 1) {
                    self.params.prefetch(data.user_rows.row(nu as usize));
                    self.params.prefetch(data.item_rows.row(ni as usize));
                }
            }
            let mut u_row = Self::maybe_drop(
                &mut self.rng,
                p_user,
                &data.user_rows,
                &data.user_side_rows,
                u,
            );
            if let Some(history) = &data.history {
                // The positive is never part of the history that predicts it.
                row_idx.clear();
                row_val.clear();
                row_idx.extend_from_slice(u_row.0);
                row_val.extend_from_slice(u_row.1);
                let base = row_idx.len();
                // No random number is drawn at 0 or 1, so those runs are what they were.
                let causal = match history.causal {
                    c if c <= 0.0 => false,
                    c if c >= 1.0 => true,
                    c => self.rng.uniform() < c as f64,
                };
                history.features_for(u, i, causal, &mut row_idx);
                let w = super::history::weight(row_idx.len() - base);
                row_val.resize(row_idx.len(), w);
                u_row = (&row_idx, &row_val);
            }
            let i_row = Self::maybe_drop(
                &mut self.rng,
                p_item,
                &data.item_rows,
                &data.item_side_rows,
                i,
            );
            self.user.load(self.params, u_row);
            self.pos.load(self.params, i_row);
            let s_pos = Self::item_score(&self.user, &self.pos);
            match self.hp.loss {
                Loss::Warp => {
                    for sampled in 1..=self.hp.max_sampled {
                        let k = match pending.take() {
                            Some(k) => k,
                            None => self.rng.below(n_items) as u32,
                        };
                        if pipelined {
                            let next = self.rng.below(n_items) as u32;
                            self.params
                                .prefetch_for_scoring(data.item_rows.row(next as usize));
                            data.seen.prefetch(u, next);
                            pending = Some(next);
                        }
                        let k_row = Self::maybe_drop(
                            &mut self.rng,
                            p_item,
                            &data.item_rows,
                            &data.item_side_rows,
                            k,
                        );
                        self.neg.load(self.params, k_row);
                        let s_neg = Self::item_score(&self.user, &self.neg);
                        // A seen item is no negative: skipped, but only looked up once it
                        // violates the margin, as LightFM does. A seen item that does not
                        // violate is skipped either way, so the outcome is the same; the
                        // lookup was 45% of a WARP epoch at 19M interactions when it ran on every
                        // draw as a binary search (`seen.rs`).
                        if s_neg > s_pos - 1.0 && !data.seen.contains(u, k) {
                            let rank = ((n_items - 1) / sampled).max(1) as f32;
                            let weight = rank.ln().min(10.0);
                            loss_sum += (weight * (1.0 - s_pos + s_neg)) as f64;
                            self.update(u_row, i_row, k_row, weight);
                            break;
                        }
                    }
                }
                Loss::Bpr => {
                    let mut k = self.rng.below(n_items) as u32;
                    for _ in 0..10 {
                        if !data.seen.contains(u, k) {
                            break;
                        }
                        k = self.rng.below(n_items) as u32;
                    }
                    if data.seen.contains(u, k) {
                        continue;
                    }
                    let k_row = Self::maybe_drop(
                        &mut self.rng,
                        p_item,
                        &data.item_rows,
                        &data.item_side_rows,
                        k,
                    );
                    self.neg.load(self.params, k_row);
                    let diff = s_pos - Self::item_score(&self.user, &self.neg);
                    // −ln σ(d) = ln(1 + e^(−d)); its derivative in d is −σ(−d).
                    loss_sum += (-diff as f64).exp().ln_1p();
                    let g = 1.0 / (1.0 + diff.exp());
                    self.update(u_row, i_row, k_row, g);
                }
            }
        }
        self.row_idx = row_idx;
        self.row_val = row_val;
        loss_sum
    }

    /// A gradient step on the loss g·(s(u,k) − s(u,i)), i.e. along g·∂(s_pos − s_neg) upwards, for
    /// the user, positive and negative rows the scores were computed from (ids dropped or not).
    fn update(&mut self, u_row: SparseRow<'_>, i_row: SparseRow<'_>, k_row: SparseRow<'_>, g: f32) {
        let (l2, dim) = (self.hp.l2, self.params.k);
        let (id_lr, side_lr) = (
            self.hp.learning_rate,
            self.hp.side_learning_rate.unwrap_or(self.hp.learning_rate),
        );
        let is_id = &self.data.is_id;
        let rate = |j: u32| {
            if is_id.get(j as usize).copied().unwrap_or(true) {
                id_lr
            } else {
                side_lr
            }
        };
        // User side: ∂(s_ui − s_uk)/∂v_j = x_j (q_i − q_k); the user's linear terms cancel.
        let (u_idx, u_val) = u_row;
        for (&j, &x) in u_idx.iter().zip(u_val) {
            for ((o, &qi), &qk) in self.grad.iter_mut().zip(&self.pos.sum).zip(&self.neg.sum) {
                *o = -g * x * (qi - qk);
            }
            self.params
                .step_factors(j, &self.grad, rate(j), l2, &mut self.step);
        }
        // Item sides: Rendle's eq. 7 over the whole input (p_u + q), the positive's score pushed
        // up and the negative's down. A feature both items share (a genre) gets the net of the two.
        for (t, (&p, &q)) in self
            .total_pos
            .iter_mut()
            .zip(self.user.sum.iter().zip(&self.pos.sum))
        {
            *t = p + q;
        }
        for (t, (&p, &q)) in self
            .total_neg
            .iter_mut()
            .zip(self.user.sum.iter().zip(&self.neg.sum))
        {
            *t = p + q;
        }
        let (i_idx, i_val) = i_row;
        let (k_idx, k_val) = k_row;
        for (r, (&j, &x)) in i_idx.iter().zip(i_val).enumerate() {
            factor_gradient(x, self.pos.row(r, dim), &self.total_pos, &mut self.grad);
            self.grad.iter_mut().for_each(|o| *o *= -g);
            let mut linear = -g * x;
            if let Some(rk) = k_idx.iter().position(|&o| o == j) {
                let xk = k_val[rk];
                factor_gradient(
                    xk,
                    self.neg.row(rk, dim),
                    &self.total_neg,
                    &mut self.scratch,
                );
                for (o, &s) in self.grad.iter_mut().zip(&self.scratch) {
                    *o += g * s;
                }
                linear += g * xk;
            }
            self.params
                .step_factors(j, &self.grad, rate(j), l2, &mut self.step);
            self.params.step_weight(j, linear, rate(j), l2);
        }
        for (r, (&j, &x)) in k_idx.iter().zip(k_val).enumerate() {
            if i_idx.contains(&j) {
                continue;
            }
            factor_gradient(x, self.neg.row(r, dim), &self.total_neg, &mut self.grad);
            self.grad.iter_mut().for_each(|o| *o *= g);
            self.params
                .step_factors(j, &self.grad, rate(j), l2, &mut self.step);
            self.params.step_weight(j, g * x, rate(j), l2);
        }
    }
}

/// Early stopping's choice of epoch: the best validation figure averaged over the epoch and its
/// [`EpochChooser::SMOOTHING`] neighbours on each side. Precision@k on validation data carved from
/// the train split (one or two positives a user) is noisy: on MovieLens 100K (ua.base, ids, five
/// carves of its train part, each scored on a second carve: `train --tune`), the raw best stopped
/// anywhere from epoch 13 to 27 and its models averaged validation P@10 0.1291, against 0.1307 for
/// a fixed 30 epochs; smoothed over ±1 epoch 0.1300, over ±2 epochs 0.1306 (epochs 17 to 24).
#[derive(Default)]
struct EpochChooser {
    /// Validation figure of each epoch so far (epoch e at index e − 1).
    figures: Vec<f64>,
    /// Parameters of the last epochs, whose smoothed figure is not final yet.
    recent: std::collections::VecDeque<(usize, FmModel)>,
    /// Best smoothed figure so far, its epoch and parameters.
    best: Option<(f64, usize, FmModel)>,
}

impl EpochChooser {
    /// Neighbours on each side an epoch's figure is averaged with.
    const SMOOTHING: usize = 2;

    /// Records an epoch; the epoch `SMOOTHING` before it now has all its neighbours.
    fn push(&mut self, epoch: usize, figure: f64, snapshot: FmModel) {
        self.figures.push(figure);
        self.recent.push_back((epoch, snapshot));
        if self.recent.len() > Self::SMOOTHING + 1 {
            self.recent.pop_front();
        }
        if epoch > Self::SMOOTHING {
            self.consider(epoch - Self::SMOOTHING);
        }
    }

    /// Mean figure of `epoch` and its neighbours recorded so far.
    fn smoothed(&self, epoch: usize) -> f64 {
        let lo = (epoch - 1).saturating_sub(Self::SMOOTHING);
        let hi = (epoch - 1 + Self::SMOOTHING).min(self.figures.len() - 1);
        self.figures[lo..=hi].iter().sum::<f64>() / (hi - lo + 1) as f64
    }

    fn consider(&mut self, epoch: usize) {
        let figure = self.smoothed(epoch);
        if self.best.as_ref().is_none_or(|(b, _, _)| figure > *b) {
            if let Some((_, model)) = self.recent.iter().find(|(e, _)| *e == epoch) {
                self.best = Some((figure, epoch, model.clone()));
            }
        }
    }

    /// Judged epochs since the best one, once `epoch` is recorded: an epoch is judged when its
    /// neighbours after it are in, so the count runs `SMOOTHING` behind; 0 while none is judged.
    fn epochs_since_best(&self, epoch: usize) -> usize {
        self.best.as_ref().map_or(0, |b| {
            epoch.saturating_sub(Self::SMOOTHING).saturating_sub(b.1)
        })
    }

    /// The chosen epoch and its parameters, once the last epochs are judged on the neighbours
    /// they have.
    fn finish(mut self) -> Option<(usize, FmModel)> {
        let last = self.figures.len();
        for epoch in (last.saturating_sub(Self::SMOOTHING) + 1).max(1)..=last {
            self.consider(epoch);
        }
        self.best.map(|(_, epoch, model)| (epoch, model))
    }
}

/// Trains an FM. `eval`, when given, is evaluated after every epoch (and drives early stopping);
/// `on_epoch` sees each epoch's report as it completes.
pub fn train(
    hp: &TrainParams,
    data: &TrainingSet,
    n_features: usize,
    eval: Option<&EvalSet>,
    schedule: Schedule,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<TrainOutcome, TrainError> {
    hp.check()?;
    if data.positives.is_empty() {
        return Err(TrainError::NoData(
            "no positive interactions in the train split (check --min-rating)".into(),
        ));
    }
    if data.item_rows.is_empty() || n_features == 0 {
        return Err(TrainError::NoData("no items or no features".into()));
    }
    let (max_epochs, patience) = match schedule {
        Schedule::Fixed { epochs, .. } => (epochs, usize::MAX),
        Schedule::EarlyStopping {
            max_epochs,
            patience,
        } => {
            if eval.is_none() {
                return Err(TrainError::NoData(
                    "early stopping needs validation data".into(),
                ));
            }
            (max_epochs, patience.max(1))
        }
    };
    let mut init_rng = Rng::derive(hp.seed, 1);
    let params = SharedParams::new(&FmModel::random(
        n_features,
        hp.dim,
        hp.init_std,
        &mut init_rng,
    ));
    let mut order = data.positives.clone();
    let mut history = Vec::new();
    let mut chooser = EpochChooser::default();
    let mut last = None;
    let mut train_seconds = 0.0;
    for epoch in 1..=max_epochs {
        let started = Instant::now();
        Rng::derive(hp.seed, 2 + epoch as u64).shuffle(&mut order);
        let chunk = order.len().div_ceil(hp.threads);
        let loss_sum: f64 = std::thread::scope(|s| {
            let handles: Vec<_> = order
                .chunks(chunk)
                .enumerate()
                .map(|(t, part)| {
                    let rng = Rng::derive(hp.seed, ((epoch as u64) << 16) | (t as u64 + 1));
                    let params = &params;
                    s.spawn(move || Worker::new(params, data, hp, rng).run(part))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(f64::NAN))
                .sum()
        });
        let seconds = started.elapsed().as_secs_f64();
        train_seconds += seconds;
        let snapshot = params.snapshot();
        let evaluate_now = match schedule {
            Schedule::Fixed { evaluate_every, .. } => {
                epoch == max_epochs || (evaluate_every > 0 && epoch % evaluate_every == 0)
            }
            Schedule::EarlyStopping { .. } => true,
        };
        let metrics = eval
            .filter(|_| evaluate_now)
            .map(|set| evaluate_model(&snapshot, set, hp.threads));
        let report = EpochReport {
            epoch,
            loss: loss_sum / order.len() as f64,
            seconds,
            metrics,
        };
        on_epoch(&report);
        let figure = report.metrics.as_ref().map_or(0.0, |m| m.precision);
        history.push(report);
        if let Schedule::EarlyStopping { .. } = schedule {
            chooser.push(epoch, figure, snapshot);
            if chooser.epochs_since_best(epoch) >= patience {
                break;
            }
        } else if epoch == max_epochs {
            last = Some((epoch, snapshot));
        }
    }
    let (best_epoch, model) = match schedule {
        Schedule::EarlyStopping { .. } => chooser.finish(),
        Schedule::Fixed { .. } => last,
    }
    .unwrap_or_else(|| (0, params.snapshot()));
    Ok(TrainOutcome {
        model,
        history,
        best_epoch,
        train_seconds,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_positive_is_predicted_from_the_history_before_it_or_from_the_rest() {
        // One user's items 10, 11, 12, 13 (features 110..113), oldest first.
        let items = vec![vec![(10, 110), (11, 111), (12, 112), (13, 113)]];
        let features = |h: &TrainHistory, i: u32| {
            let mut out = Vec::new();
            h.features_for(0, i, h.causal >= 1.0, &mut out);
            out
        };
        let causal = TrainHistory::new(items.clone(), 2, 1.0);
        assert_eq!(
            features(&causal, 10),
            Vec::<u32>::new(),
            "nothing before the first"
        );
        assert_eq!(features(&causal, 12), vec![110, 111]);
        assert_eq!(
            features(&causal, 13),
            vec![111, 112],
            "the last two before it"
        );
        let loo = TrainHistory::new(items, 3, 0.0);
        assert_eq!(
            features(&loo, 12),
            vec![111, 113],
            "the last three, itself left out"
        );
        assert_eq!(features(&loo, 10), vec![111, 112, 113]);
    }

    use super::*;

    /// Feeds validation figures to a chooser, with a model whose bias records the epoch.
    fn choose(figures: &[f64]) -> (usize, f32) {
        let mut chooser = EpochChooser::default();
        for (i, &f) in figures.iter().enumerate() {
            let mut model = FmModel::random(1, 1, 0.0, &mut Rng::new(1));
            model.w0 = (i + 1) as f32;
            chooser.push(i + 1, f, model);
        }
        let (epoch, model) = chooser.finish().expect("an epoch");
        (epoch, model.w0)
    }

    #[test]
    fn early_stopping_prefers_a_plateau_to_a_lone_spike_and_keeps_that_epochs_parameters() {
        // Epoch 2 is a spike; epochs 5 to 7 are a plateau just below it.
        let (epoch, w0) = choose(&[0.10, 0.30, 0.10, 0.22, 0.25, 0.25, 0.25, 0.22, 0.20]);
        assert_eq!(epoch, 6);
        assert_eq!(w0, 6.0, "the parameters are the chosen epoch's");
    }

    #[test]
    fn patience_counts_judged_epochs_after_the_best() {
        let mut chooser = EpochChooser::default();
        let mut stopped_at = None;
        // Smoothed, epoch 4 is best (the middle of the plateau); with patience 2, epochs 5 and 6
        // must be judged after it, which needs epoch 8 recorded, before stopping.
        let figures = [0.1, 0.2, 0.3, 0.3, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1];
        for (i, f) in figures.iter().enumerate() {
            let model = FmModel::random(1, 1, 0.0, &mut Rng::new(1));
            chooser.push(i + 1, *f, model);
            if chooser.epochs_since_best(i + 1) >= 2 {
                stopped_at = Some(i + 1);
                break;
            }
        }
        assert_eq!(stopped_at, Some(8));
        assert_eq!(chooser.finish().unwrap().0, 4);
        // Nothing judged yet: no stop, whatever the patience.
        let mut early = EpochChooser::default();
        early.push(1, 0.1, FmModel::random(1, 1, 0.0, &mut Rng::new(1)));
        assert_eq!(early.epochs_since_best(1), 0);
    }

    #[test]
    fn early_stopping_judges_the_last_epochs_on_the_neighbours_they_have() {
        assert_eq!(choose(&[0.1, 0.2, 0.3, 0.4, 0.5]).0, 5);
        assert_eq!(choose(&[0.3]).0, 1);
        assert_eq!(choose(&[0.5, 0.4, 0.3, 0.2]).0, 1);
    }
}
