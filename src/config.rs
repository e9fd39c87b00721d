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
    /// Column names of the CSV format's interaction file.
    #[serde(default)]
    pub columns: crate::data::CsvColumns,
}

/// `[train]`: hyper-parameters and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Ranking loss.
    pub loss: Loss,
    /// Factor dimension.
    pub dim: usize,
    /// A fixed epoch count; absent: chosen by early stopping on validation data.
    #[serde(default)]
    pub epochs: Option<usize>,
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
    /// Probability of dropping a user's id feature from a training sample.
    pub user_id_dropout: f32,
    /// Probability of dropping an item's id feature from a training sample.
    pub item_id_dropout: f32,
    /// Learning rate of side features (absent: `learning_rate`).
    #[serde(default)]
    pub side_learning_rate: Option<f32>,
    /// Ratings at or above this are what the model learns from (absent: `data.min_rating`, which
    /// stays the threshold of evaluation and popularity).
    #[serde(default)]
    pub train_min_rating: Option<f32>,
    /// History features: each user's most recent this-many items as user-side features (0: off).
    #[serde(default)]
    pub history: usize,
    /// Share of positives trained on the history before them (causal) rather than
    /// leave-one-out (0: never, 1: always).
    #[serde(default)]
    pub causal_history: f32,
    /// Metric cut-off.
    pub eval_k: usize,
    /// Epochs between evaluations of the per-epoch history (0: the last epoch only).
    pub eval_every: usize,
    /// Test users of the per-epoch history, a seeded sample (0: all of them).
    pub eval_users: usize,
    /// Early stopping bound.
    pub max_epochs: usize,
    /// Early stopping patience.
    pub patience: usize,
    /// Validation share of train positives.
    pub validation_fraction: f64,
    /// Retrain on all train data after choosing the epoch count.
    pub refit: bool,
    /// After evaluating on the holdout, retrain on every interaction with the same settings and
    /// epoch count, and keep that model (with the evaluated run's figures).
    pub refit_on_all: bool,
    /// Artifact folder.
    pub out: PathBuf,
}

/// `[server]`: the HTTP service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSettings {
    /// Address to listen on.
    pub bind: String,
    /// Artifact to serve; empty serves the demo model.
    pub model: PathBuf,
    /// Where the demo model is trained and kept.
    pub demo_model_dir: PathBuf,
    /// Largest k of a recall, and most items of a score request.
    pub max_k: usize,
    /// Most queries in a batch.
    pub max_batch: usize,
    /// Largest request body.
    pub body_limit_bytes: usize,
    /// Requests taking longer get 408.
    pub request_timeout_ms: u64,
    /// A connection that has not sent a request's complete headers this long after it opened
    /// (or after its previous response) is closed: slow or idle clients cannot hold connections.
    /// 0 turns the timeout off.
    pub header_read_timeout_ms: u64,
    /// Requests in flight beyond this get 503.
    pub max_concurrency: usize,
    /// Bearer token of the admin routes; empty turns them off.
    pub admin_token: String,
    /// Bearer token of the write routes (users, items, events); the admin token works too.
    pub write_token: String,
    /// `text` or `json` logs.
    pub log_format: LogFormat,
    /// Seconds to drain requests on shutdown.
    pub shutdown_grace_seconds: u64,
    /// Requests estimated below this many multiply-adds run on the async worker that received
    /// them; larger ones go to the blocking pool (see `api::AppState::compute_sized`).
    pub inline_work_limit: u64,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// All settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `[data]`.
    pub data: DataSettings,
    /// `[train]`.
    pub train: TrainSettings,
    /// `[server]`.
    pub server: ServerSettings,
    /// `[index]`.
    pub index: crate::recall::IndexSettings,
    /// `[layers]`.
    pub layers: crate::layers::LayerLimits,
    /// `[database]`.
    pub database: DatabaseSettings,
}

/// `[database]`: the registry and catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` or `postgres://…`; empty runs without a database.
    pub url: String,
    /// Seconds between the service's looks at the registry and the catalog.
    pub poll_seconds: f64,
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
        let figment = figment.merge(Env::prefixed("FMRECALL_").split("__"));
        // A key that changed meaning must not be dropped silently: with it gone, a config that set
        // it and `epochs = 30` would quietly train 30 fixed epochs.
        if figment.find_value("train.early_stopping").is_ok() {
            return Err(ConfigError(
                "train.early_stopping was removed: epochs are chosen by early stopping unless \
                 train.epochs is set (remove the key, and train.epochs to keep early stopping)"
                    .into(),
            ));
        }
        figment
            .extract::<Settings>()
            .map_err(|e| ConfigError(e.to_string()))
            .and_then(Settings::validated)
    }

    /// Checks the ranges that a typo would otherwise turn into a strange failure later.
    fn validated(self) -> Result<Settings, ConfigError> {
        let s = &self.server;
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if s.max_k == 0 {
            return bad("server.max_k", "must be at least 1");
        }
        if s.max_batch == 0 {
            return bad("server.max_batch", "must be at least 1");
        }
        if s.max_concurrency == 0 {
            return bad("server.max_concurrency", "must be at least 1");
        }
        if s.request_timeout_ms == 0 {
            return bad("server.request_timeout_ms", "must be at least 1");
        }
        if s.body_limit_bytes < 1024 {
            return bad("server.body_limit_bytes", "must be at least 1024");
        }
        self.index
            .hnsw
            .check()
            .map_err(|e| ConfigError(format!("index: {e}")))?;
        if !(self.database.poll_seconds > 0.0 && self.database.poll_seconds <= 3600.0) {
            return bad("database.poll_seconds", "must be in (0, 3600]");
        }
        let milvus = &self.index.milvus;
        if milvus.oversample == 0 {
            return bad("index.milvus.oversample", "must be at least 1");
        }
        if milvus.timeout_ms == 0 || milvus.connect_timeout_ms == 0 {
            return bad(
                "index.milvus.timeout_ms",
                "timeouts must be at least 1 ms (with connect_timeout_ms)",
            );
        }
        if milvus.retries > crate::recall::MILVUS_MAX_RETRIES {
            return bad(
                "index.milvus.retries",
                "must be at most 10 (each retry waits up to 2 s, and a recall waits for them)",
            );
        }
        if milvus.backoff_ms > crate::recall::MILVUS_MAX_BACKOFF.as_millis() as u64 {
            return bad(
                "index.milvus.backoff_ms",
                "must be at most 2000 (each wait between retries is capped at 2 s)",
            );
        }
        if milvus.insert_batch == 0 {
            return bad("index.milvus.insert_batch", "must be at least 1");
        }
        if milvus.address.trim().is_empty() {
            return bad("index.milvus.address", "must name Milvus's host:port");
        }
        // Values no index can use are refused here; Milvus refuses its own out-of-range ones at
        // load (CreateIndex), with its message in the load's error.
        if milvus.hnsw_m < 2 {
            return bad("index.milvus.hnsw_m", "must be at least 2");
        }
        if milvus.hnsw_ef_construction == 0 {
            return bad("index.milvus.hnsw_ef_construction", "must be at least 1");
        }
        if milvus.search_ef == 0 || milvus.search_ef > crate::recall::MILVUS_MAX_CANDIDATES {
            return bad("index.milvus.search_ef", "must be in [1, 16384]");
        }
        if !(1..=65536).contains(&milvus.ivf_nlist) {
            return bad("index.milvus.ivf_nlist", "must be in [1, 65536]");
        }
        if milvus.ivf_nprobe == 0 || milvus.ivf_nprobe > milvus.ivf_nlist {
            return bad("index.milvus.ivf_nprobe", "must be in [1, ivf_nlist]");
        }
        if !(0.0..=1.0).contains(&milvus.target_recall) {
            return bad("index.milvus.target_recall", "must be in [0, 1]");
        }
        if !milvus
            .alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || milvus.alias.starts_with(|c: char| c.is_ascii_digit())
        {
            return bad(
                "index.milvus.alias",
                "must be letters, digits and _ (not starting with a digit), or empty",
            );
        }
        if !(0.0..=1.0).contains(&self.index.min_recall) {
            return bad("index.min_recall", "must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.index.target_recall) {
            return bad(
                "index.target_recall",
                "must be in [0, 1] (0: use index.hnsw.ef_search)",
            );
        }
        if !(0.0..=1.0).contains(&self.index.target_filtered_recall) {
            return bad(
                "index.target_filtered_recall",
                "must be in [0, 1] (0: the unfiltered breadth)",
            );
        }
        Ok(self)
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

    #[test]
    fn milvus_retries_and_backoff_beyond_their_caps_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let load = |body: &str| {
            let file = dir.path().join("milvus.toml");
            std::fs::write(&file, body).unwrap();
            Settings::load(Some(&file))
        };
        assert!(load("[index.milvus]\nretries = 10\nbackoff_ms = 2000\n").is_ok());
        let e = load("[index.milvus]\nretries = 11\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("index.milvus.retries"), "{e}");
        let e = load("[index.milvus]\nbackoff_ms = 2001\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("index.milvus.backoff_ms"), "{e}");
    }

    #[test]
    fn the_removed_early_stopping_key_is_refused_with_what_replaced_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("old.toml");
        std::fs::write(&file, "[train]\nearly_stopping = true\nepochs = 30\n").unwrap();
        let e = Settings::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("train.early_stopping was removed"), "{e}");
    }
}
