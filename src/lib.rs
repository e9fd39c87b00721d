//! fmrecall: recommendation recall on a Factorization Machine.
//!
//! - [`data`]: datasets, loaders, splits and the feature vocabulary.
//! - [`fm`]: the model, its training, evaluation, inner-product export and artifact.
//! - [`pipeline`]: the offline jobs the command line runs.
//! - [`recall`]: maximum-inner-product indexes over the exported item vectors.
//! - [`vectors`]: the item vectors the indexes search, apart from the model that made them.
//! - [`kernels`]: the vectorised inner products everything above runs on.
//! - [`layers`]: diagnostic neural-network layers as pure functions over JSON-shaped requests.
//! - [`serving`]: a loaded model with its index, answering recall, score and similar-items questions.
//! - [`api`] and [`server`]: the HTTP service.
//! - [`config`]: the typed settings from `config/default.toml` and `FMRECALL_*` variables.

pub mod api;
pub mod config;
pub mod data;
pub mod fm;
pub mod kernels;
pub mod layers;
pub mod memory;
pub mod pipeline;
pub mod recall;
pub mod rng;
pub mod server;
pub mod serving;
pub mod store;
pub mod vectors;
