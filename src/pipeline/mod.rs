//! The offline jobs: train (load → split → train → evaluate → refit → write the artifact and its
//! report), eval (score a saved model on a dataset) and registration (register, and activate when a
//! rule on the figures holds). The command line and the service call these.

mod registration;
mod summary;
mod train;

pub use registration::{register, Activation, ActivationRule, Registration};
pub use summary::{figure_text, TrainSummary};
pub use train::{
    data_source, run_eval, run_replay, run_train, train_on, EpochChoice, EvalOutcome, Progress,
    TrainJob,
};

use std::path::PathBuf;

use crate::data::DataError;
use crate::fm::{ArtifactError, TrainError};

/// Errors of the offline jobs.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Reading or preparing data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Training.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Writing or loading the artifact.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// Registering or activating the run.
    #[error("registry: {0}")]
    Registry(String),
    /// Writing the training report.
    #[error("{path}: {source}")]
    Report {
        /// The folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}
