//! The Factorization Machine: model, training, evaluation, export to inner-product form, artifact.

pub mod artifact;
pub mod eval;
pub mod export;
pub mod model;
pub mod report;
pub mod train;

pub use artifact::{ArtifactError, ModelArtifact};
pub use eval::{EvalSet, Metrics};
pub use export::UserQuery;
pub use model::FmModel;
pub use train::{Loss, Schedule, TrainError, TrainParams, TrainingSet};
