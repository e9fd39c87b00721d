//! Settings: `config/default.toml` (embedded in the binary, so it runs from any folder), then an
//! optional file, then `FMRECALL_<SECTION>__<KEY>` environment variables, into one typed struct.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format as _, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::data::{synthetic::SyntheticConfig, FeatureSet, Format};
use crate::fm::Loss;

/// The defaults, as committed in `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// A setting could not be read or is out of range.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

/// `[data]`: where data comes from and how it is split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSettings {
    /// Input format.
    pub format: Format,
    /// Folder with the files.
    pub dir: PathBuf,
    /// Split specification (see [`crate::data::SplitSpec`]).
    pub split: String,
    /// Seed of splits, generator and training.
    pub seed: u64,
    /// Positive threshold.
    pub min_rating: f32,
    /// Feature set.
    pub features: FeatureSet,
    /// Generator size.
    pub synthetic: SyntheticConfig,
}

/// `[train]`: hyper-parameters and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Ranking loss.
    pub loss: Loss,
    /// Factor dimension.
    pub dim: usize,
    /// Epochs without early stopping.
    pub epochs: usize,
    /// Adagrad learning rate.
    pub learning_rate: f32,
    /// L2 penalty.
    pub l2: f32,
    /// WARP negatives per positive.
    pub max_sampled: usize,
    /// Initial factor standard deviation.
    pub init_std: f32,
    /// Worker threads.
    pub threads: usize,
    /// Metric cut-off.
    pub eval_k: usize,
    /// Early stopping on validation data.
    pub early_stopping: bool,
    /// Early stopping bound.
    pub max_epochs: usize,
    /// Early stopping patience.
    pub patience: usize,
    /// Validation share of train positives.
    pub validation_fraction: f64,
    /// Retrain on all train data after choosing the epoch count.
    pub refit: bool,
    /// Artifact folder.
    pub out: PathBuf,
}

/// All settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `[data]`.
    pub data: DataSettings,
    /// `[train]`.
    pub train: TrainSettings,
}

impl Settings {
    /// Defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!("{}: no such file", path.display())));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment
            .merge(Env::prefixed("FMRECALL_").split("__"))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_parse() {
        let s = Settings::load(None).unwrap();
        assert_eq!(s.train.dim, 64);
        assert_eq!(s.data.format, Format::Synthetic);
    }
}
