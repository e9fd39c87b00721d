//! Helpers shared by the integration tests: small random models, training jobs on generated data,
//! and a real server with a raw HTTP client ([`http`]).
#![allow(dead_code)]

pub mod http;

use std::path::Path;

use fmrecall::data::{synthetic::SyntheticConfig, DataSource, FeatureSet, Format, SplitSpec};
use fmrecall::fm::{FmModel, Loss, TrainParams};
use fmrecall::pipeline::{EpochChoice, TrainJob};
use fmrecall::rng::Rng;

/// A model with every parameter drawn at random (biases included), so no term is trivially zero.
pub fn random_model(n: usize, k: usize, seed: u64) -> FmModel {
    let mut rng = Rng::new(seed);
    let mut m = FmModel::random(n, k, 0.5, &mut rng);
    m.w0 = rng.normal() as f32;
    m.w.iter_mut().for_each(|w| *w = rng.normal() as f32);
    m
}

/// A sparse row of `m` distinct features out of `n`, with values in (0.5, 1.5).
pub fn random_row(n: usize, m: usize, rng: &mut Rng) -> (Vec<u32>, Vec<f32>) {
    let mut idx: Vec<u32> = (0..n as u32).collect();
    rng.shuffle(&mut idx);
    idx.truncate(m);
    let val = idx.iter().map(|_| 0.5 + rng.uniform() as f32).collect();
    (idx, val)
}

/// Hyper-parameters small enough for tests.
pub fn small_params(loss: Loss) -> TrainParams {
    TrainParams {
        loss,
        dim: 16,
        learning_rate: 0.05,
        l2: 0.0,
        max_sampled: 10,
        init_std: 1e-4,
        threads: 1,
        seed: 7,
    }
}

/// A training job on the generated data with a random 20% test split.
pub fn synthetic_job(out: &Path, epochs: usize, features: FeatureSet) -> TrainJob {
    TrainJob {
        source: DataSource {
            format: Format::Synthetic,
            dir: out.to_path_buf(),
            split: SplitSpec::Random(0.2),
            seed: 11,
            synthetic: SyntheticConfig {
                users: 400,
                items: 300,
                ..Default::default()
            },
        },
        features,
        min_rating: 4.0,
        params: small_params(Loss::Warp),
        epochs: EpochChoice::Fixed(epochs),
        eval_k: 10,
        out: out.to_path_buf(),
        tune: false,
        validation_fraction: 0.1,
    }
}
