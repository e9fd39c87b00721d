//! The Factorization Machine: model, training, evaluation, export to inner-product form (and to
//! `.npy` files other systems read), artifact.

pub mod artifact;
pub mod eval;
pub mod export;
pub mod export_files;
pub mod history;
pub mod model;
pub mod npy;
pub mod replay;
pub mod report;
pub mod seen;
pub mod train;

pub use artifact::{ArtifactError, ModelArtifact};
pub use eval::{EvalSet, Metrics};
pub use export::UserQuery;
pub use export_files::{write_npy, write_parquet, ExportError, ExportManifest, ExportReport};
pub use model::FmModel;
pub use seen::SeenPairs;
pub use train::{Loss, Schedule, TrainError, TrainHistory, TrainParams, TrainingSet};
