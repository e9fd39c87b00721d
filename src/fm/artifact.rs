//! The versioned model artifact: one file, `model.fmr`, holding everything needed to serve.
//!
//! Layout (all integers and floats little-endian):
//! `FMRECALL` magic (8 bytes) · format version (u32) · header length (u64) · header (JSON: version,
//! hyper-parameters, vocabulary, users, items, evaluation figures, …) · w0, w (n), V (n × k) as f32 ·
//! SHA-256 of everything before it (32 bytes).
//! It is written to a temporary file, fsynced and renamed into place, so a crash never leaves a file
//! that loads; loading checks the magic, the version, the checksum and every length.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::eval::{ColdStart, Metrics};
use super::model::FmModel;
use super::train::{EpochReport, TrainParams};
use crate::data::{Entity, FeatureRows, FeatureSet, FeatureVocabulary};

/// The artifact format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// File name of the model inside an artifact folder.
pub const MODEL_FILE: &str = "model.fmr";
const MAGIC: &[u8; 8] = b"FMRECALL";
const CHECKSUM_LEN: usize = 32;

/// Why an artifact could not be written or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not an fmrecall model at all.
    #[error("{0}: not an fmrecall model file (bad magic bytes)")]
    NotAnArtifact(PathBuf),
    /// Written by another format version.
    #[error("{path}: model format version {found} is not supported (this build reads {expected})")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// Truncated, altered or inconsistent content.
    #[error("{path}: corrupted model file: {reason}")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
}

/// How the model was trained: data, split and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// Input format and folder, e.g. `movielens:../shared/data/ml-100k`.
    pub data: String,
    /// Split used.
    pub split: String,
    /// Feature set.
    pub features: FeatureSet,
    /// Ratings at or above this are positives.
    pub min_rating: f32,
    /// Ratings at or above this were learnt from, when not `min_rating` (absent from files
    /// written before it existed).
    #[serde(default)]
    pub train_min_rating: Option<f32>,
    /// Epochs whose parameters the model holds.
    pub epochs: usize,
    /// Whether the epoch count was chosen by early stopping on validation data.
    pub early_stopping: bool,
    /// Wall time of the training epochs.
    pub train_seconds: f64,
    /// Per-epoch loss and figures of the evaluated run (the final run when nothing was evaluated).
    pub history: Vec<EpochReport>,
    /// Test users the per-epoch figures of `history` were measured on: all of them, or a seeded
    /// sample (`--eval-users`); absent from older files and when nothing was evaluated.
    #[serde(default)]
    pub history_users: Option<usize>,
    /// Under early stopping, the per-epoch figures on validation data that chose the epoch count
    /// (absent from files written before it was kept).
    #[serde(default)]
    pub validation_history: Vec<EpochReport>,
    /// What the parameters were fitted on, and so where `metrics` come from (absent from files
    /// written before the deployment path: those were fitted on the train split).
    #[serde(default)]
    pub fit: ModelFit,
}

/// What a model's parameters were fitted on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFit {
    /// The train split; its figures are its own, on the test split.
    #[default]
    TrainSplit,
    /// Every interaction, after a run on the train split with the same settings and epoch count
    /// was evaluated on the test split: the figures are that run's.
    AllAfterEvaluation,
    /// Every interaction, with no evaluation (`--split none`).
    AllUnevaluated,
}

impl ModelFit {
    /// Where the model's figures come from, in words (for `/v1/model`, the dashboard and logs).
    pub fn figures_source(self) -> &'static str {
        match self {
            ModelFit::TrainSplit => "this model, trained on the train split, on the test split",
            ModelFit::AllAfterEvaluation => {
                "a run with the same settings and epochs trained on the train split and evaluated \
                 on the test split; this model was then refit on all interactions"
            }
            ModelFit::AllUnevaluated => "none: trained on all interactions without evaluation",
        }
    }
}

/// Everything in the artifact except the parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactMeta {
    /// Model version, e.g. `20261129T021500Z-1a2b3c4d`.
    pub version: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Hyper-parameters.
    pub params: TrainParams,
    /// Data and schedule.
    pub training: TrainingInfo,
    /// Evaluation on the test split, when there was one.
    pub metrics: Option<Metrics>,
    /// Under a `users:` or `items:` split, the model against popularity on what was held out whole
    /// (absent from files written before cold-start splits existed).
    #[serde(default)]
    pub cold_start: Option<ColdStart>,
    /// Feature name → parameter row.
    pub vocabulary: FeatureVocabulary,
    /// Users known at training time, with their features.
    pub users: Vec<Entity>,
    /// The catalog, with features.
    pub items: Vec<Entity>,
    /// Per user (same order as `users`), the indices into `items` of every interaction known when
    /// the model was built (train and test alike: what recall must not offer again), sorted and
    /// without repeats once loaded. Files written before the deployment path hold train ones only.
    pub seen: Vec<Vec<u32>>,
    /// Each known user's train history, when the model has history features (absent from models
    /// trained without them, and from files written before they existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<super::history::HistoryMeta>,
}

/// A model with its metadata.
#[derive(Debug, Clone)]
pub struct ModelArtifact {
    /// Metadata.
    pub meta: ArtifactMeta,
    /// Parameters.
    pub model: FmModel,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ModelArtifact {
    /// The artifact as bytes (see the module documentation for the layout).
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.meta).expect("metadata serialises");
        let m = &self.model;
        let n_floats = 1 + m.w.len() + m.v.len();
        let mut out = Vec::with_capacity(20 + header.len() + 4 * n_floats + CHECKSUM_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&m.w0.to_le_bytes());
        for x in m.w.iter().chain(m.v.iter()) {
            out.extend_from_slice(&x.to_le_bytes());
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Parses and verifies bytes read from `path` (named in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, ArtifactError> {
        let corrupted = |reason: String| ArtifactError::Corrupted {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(ArtifactError::NotAnArtifact(path.to_path_buf()));
        }
        if bytes.len() < 20 + CHECKSUM_LEN {
            return Err(corrupted(format!("only {} bytes", bytes.len())));
        }
        let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if found != FORMAT_VERSION {
            return Err(ArtifactError::UnsupportedVersion {
                path: path.to_path_buf(),
                found,
                expected: FORMAT_VERSION,
            });
        }
        let (content, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if Sha256::digest(content).as_slice() != checksum {
            return Err(corrupted(
                "SHA-256 checksum mismatch (truncated or altered)".into(),
            ));
        }
        let header_len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let header_end = usize::try_from(header_len)
            .ok()
            .and_then(|h| h.checked_add(20))
            .filter(|&e| e <= content.len())
            .ok_or_else(|| corrupted(format!("header length {header_len} exceeds the file")))?;
        let mut meta: ArtifactMeta = serde_json::from_slice(&content[20..header_end])
            .map_err(|e| corrupted(format!("header: {e}")))?;
        // Hyper-parameters the trainer would refuse (a dimension of 0 …) were never written by it.
        meta.params
            .check()
            .map_err(|e| corrupted(format!("header: {e}")))?;
        let floats = &content[header_end..];
        let n = meta.vocabulary.len();
        let k = meta.params.dim;
        let expected = n
            .checked_mul(k)
            .and_then(|nk| nk.checked_add(n + 1))
            .and_then(|c| c.checked_mul(4));
        if expected != Some(floats.len()) {
            return Err(corrupted(format!(
                "{} parameter bytes for {n} features × dim {k}",
                floats.len()
            )));
        }
        let values: Vec<f32> = floats
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let model = FmModel {
            w0: values[0],
            w: ndarray::Array1::from(values[1..1 + n].to_vec()),
            v: ndarray::Array2::from_shape_vec((n, k), values[1 + n..].to_vec())
                .map_err(|e| corrupted(e.to_string()))?,
        };
        if meta.seen.len() != meta.users.len()
            || meta
                .seen
                .iter()
                .flatten()
                .any(|&i| i as usize >= meta.items.len())
        {
            return Err(corrupted("seen lists do not match users and items".into()));
        }
        if let Some(h) = &meta.history {
            if h.per_user.len() != meta.users.len()
                || h.max_items != meta.params.history
                || h.per_user.iter().any(|l| l.len() > h.max_items)
                || h.per_user
                    .iter()
                    .flatten()
                    .any(|&i| i as usize >= meta.items.len())
            {
                return Err(corrupted(
                    "history lists do not match users, items and params.history".into(),
                ));
            }
        }
        // Readers binary-search them (recall's exclusion filter); training writes them so already.
        for seen in &mut meta.seen {
            seen.sort_unstable();
            seen.dedup();
        }
        // Every user and item starts with its id feature; serving relies on it.
        for (kind, entities) in [("user", &meta.users), ("item", &meta.items)] {
            if let Some(e) = entities.iter().find(|e| e.features.is_empty()) {
                return Err(corrupted(format!("{kind} {:?} has no features", e.id)));
            }
        }
        Ok(ModelArtifact { meta, model })
    }

    /// Writes `dir/model.fmr` atomically (temporary file, fsync, rename, fsync of the folder) and
    /// returns its path. The folder is created if needed.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, ArtifactError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(MODEL_FILE);
        let tmp = dir.join(format!(".{MODEL_FILE}.tmp-{}", std::process::id()));
        let bytes = self.to_bytes();
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp, &path)?;
            // The rename itself is durable only once the folder is synced.
            std::fs::File::open(dir)?.sync_all()
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(&path)(e));
        }
        Ok(path)
    }

    /// Every known user's features encoded with the vocabulary, in `meta.users` order: what
    /// serving and the export compute user queries from.
    pub fn user_rows(&self) -> FeatureRows {
        let rows = self.base_user_rows();
        match &self.meta.history {
            Some(history) => rows.with_histories(&self.history_features(&history.per_user)),
            None => rows,
        }
    }

    /// Every known user's id and side features, without history features (`fm::history`).
    pub fn base_user_rows(&self) -> FeatureRows {
        FeatureRows::encode(&self.meta.vocabulary, &self.meta.users)
    }

    /// Per catalog item (`meta.items` order), the index of its history feature, if any.
    pub fn item_history_features(&self) -> Vec<Option<u32>> {
        let ids: Vec<&str> = self.meta.items.iter().map(|e| e.id.as_str()).collect();
        super::history::item_features(&self.meta.vocabulary, &ids)
    }

    /// Lists of item slots as lists of their history features (items without one left out).
    fn history_features(&self, lists: &[Vec<u32>]) -> Vec<Vec<u32>> {
        let features = self.item_history_features();
        lists
            .iter()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|&i| features.get(i as usize).copied().flatten())
                    .collect()
            })
            .collect()
    }

    /// Every catalog item's features encoded with the vocabulary, in `meta.items` order: what
    /// serving and the export compute item vectors from.
    pub fn item_rows(&self) -> FeatureRows {
        FeatureRows::encode(&self.meta.vocabulary, &self.meta.items)
    }

    /// Loads an artifact from its folder or from the model file itself.
    pub fn load(path: &Path) -> Result<Self, ArtifactError> {
        let file = model_file(path);
        // A device or a pipe (`/dev/zero`, a FIFO) would be read without end: only regular files.
        let metadata = std::fs::metadata(&file).map_err(io_err(&file))?;
        if !metadata.is_file() {
            return Err(io_err(&file)(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let bytes = std::fs::read(&file).map_err(io_err(&file))?;
        Self::from_bytes(&bytes, &file)
    }
}

/// The model file of an artifact given as its folder or as the file itself.
pub fn model_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(MODEL_FILE)
    } else {
        path.to_path_buf()
    }
}

/// A version string from the creation time and the parameters: `YYYYMMDDTHHMMSSZ-xxxxxxxx`.
pub fn make_version(created_unix: u64, model: &FmModel) -> String {
    let mut h = Sha256::new();
    for x in model.w.iter().chain(model.v.iter()) {
        h.update(x.to_le_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let (y, mo, d, hh, mm, ss) = civil_utc(created_unix);
    format!("{y:04}{mo:02}{d:02}T{hh:02}{mm:02}{ss:02}Z-{hex}")
}

/// RFC 3339 UTC time of a Unix timestamp.
pub fn rfc3339(unix: u64) -> String {
    let (y, mo, d, hh, mm, ss) = civil_utc(unix);
    format!("{y:04}-{mo:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Calendar date and time of a Unix timestamp (Howard Hinnant's days-from-civil inverse).
fn civil_utc(unix: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (secs / 3600) as u32,
        (secs % 3600 / 60) as u32,
        (secs % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_convert_to_calendar_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_000_000), "2026-11-30T00:53:20Z");
    }
}
