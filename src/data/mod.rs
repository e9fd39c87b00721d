//! Datasets: users and items with feature lists, interactions marked train or test, and the loaders
//! that read them from MovieLens, plain CSV or a seeded generator.

mod csv_format;
mod movielens;
mod parquet_format;
pub mod shaped;
mod split;
pub mod synthetic;
mod vocab;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use csv_format::CsvColumns;
pub use split::{SplitSpec, ValidationSplit};
pub use vocab::{FeatureRows, FeatureVocabulary};

/// Everything that can go wrong while reading or preparing data. Errors about a file name the file
/// and, where there is one, the line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A row of a file does not parse.
    #[error("{path}:{line}: {message}")]
    BadRow {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        message: String,
    },
    /// A Parquet file does not hold what the format expects.
    #[error("{path}: {at}{}{message}", if at.is_empty() { "" } else { ": " })]
    Parquet {
        /// The file.
        path: PathBuf,
        /// Row group and row (from 1, over the whole file) where known, else empty.
        at: String,
        /// What is wrong with it.
        message: String,
    },
    /// The folder does not hold any layout this format knows.
    #[error("{0}")]
    UnknownLayout(String),
    /// A flag or option value is not valid.
    #[error("{0}")]
    InvalidOption(String),
    /// The dataset parsed but cannot be trained or evaluated on.
    #[error("{0}")]
    Unusable(String),
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn bad_row(path: &Path, line: u64, message: impl Into<String>) -> Self {
        DataError::BadRow {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

/// Which part of the data an interaction belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part {
    /// Used for training.
    Train,
    /// Held out for evaluation.
    Test,
}

/// A user or an item: its external id, an optional title, and its features (`name:value` strings,
/// the id feature first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// External id as it appears in the source data.
    pub id: String,
    /// Human-readable title (items only, where the data has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Feature names, `features[0]` being the id feature (`user:196`, `item:50`).
    pub features: Vec<String>,
}

/// An item row of the service's catalog (written by `PUT`/`DELETE /v1/items`), as a serving model
/// replays it: side features only (the id feature is derived from the id).
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogItem {
    /// External id.
    pub id: String,
    /// Title.
    pub title: Option<String>,
    /// Side features (`genre:g3`).
    pub features: Vec<String>,
    /// Deleted: removed from every answer.
    pub deleted: bool,
}

/// One observed (user, item) pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interaction {
    /// Index into [`Dataset::users`].
    pub user: u32,
    /// Index into [`Dataset::items`].
    pub item: u32,
    /// Explicit rating or weight; `None` when the source has none (every row is then a positive).
    pub rating: Option<f32>,
    /// Seconds since the epoch, 0 when unknown.
    pub timestamp: i64,
    /// Train or test.
    pub part: Part,
}

/// Which features the model sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FeatureSet {
    /// Only each user's and item's own id feature (pure collaborative filtering).
    Ids,
    /// Ids plus every side feature the format has.
    Hybrid,
    /// Hybrid when the data has any side feature, ids otherwise (the default: a feature a user's
    /// files define is learnt from unless they say otherwise).
    Auto,
}

/// Users, items and their interactions.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// All users; an interaction's `user` indexes this.
    pub users: Vec<Entity>,
    /// All items (the catalog); an interaction's `item` indexes this.
    pub items: Vec<Entity>,
    /// Every interaction, each marked train or test.
    pub interactions: Vec<Interaction>,
    /// Users and items held out whole by a `users:` or `items:` split.
    pub held_out: HeldOut,
}

/// Users and items held out whole (cold start): every interaction of theirs is test, the feature
/// vocabulary never holds their id features, and they are encoded from their side features alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldOut {
    /// Sorted indices into [`Dataset::users`].
    pub users: Vec<u32>,
    /// Sorted indices into [`Dataset::items`].
    pub items: Vec<u32>,
}

impl HeldOut {
    /// Whether user `u` is held out.
    pub fn user(&self, u: u32) -> bool {
        self.users.binary_search(&u).is_ok()
    }

    /// Whether item `i` is held out.
    pub fn item(&self, i: u32) -> bool {
        self.items.binary_search(&i).is_ok()
    }
}

/// The input formats `--format` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// MovieLens 100K, 1M, or the CSV layout of 20M/25M/32M/latest, detected from the files present.
    Movielens,
    /// interactions.csv with optional users.csv and items.csv.
    Csv,
    /// interactions.parquet (a file or a folder of part files) with optional users.parquet and
    /// items.parquet: the csv format's tables as Parquet (snappy or uncompressed).
    Parquet,
    /// The seeded generator with planted structure.
    Synthetic,
}

/// Where a dataset comes from and how it is split.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataSource {
    /// Input format.
    pub format: Format,
    /// Folder with the files (ignored by `synthetic`).
    pub dir: PathBuf,
    /// How test interactions are chosen.
    pub split: SplitSpec,
    /// Seed for random splits (and the generator).
    pub seed: u64,
    /// Size of the generated data set.
    pub synthetic: synthetic::SyntheticConfig,
    /// Column names of the CSV format's interaction file.
    #[serde(default)]
    pub columns: CsvColumns,
}

impl Dataset {
    /// Loads and splits a dataset; the result has at least one train and one test interaction.
    pub fn load(source: &DataSource) -> Result<Dataset, DataError> {
        if source.format != Format::Synthetic && !source.dir.is_dir() {
            let what = if source.dir.exists() {
                "not a folder"
            } else {
                "no such folder"
            };
            return Err(DataError::UnknownLayout(format!(
                "{}: {what} (--data names the folder holding the data files)",
                source.dir.display()
            )));
        }
        let mut dataset = match source.format {
            Format::Movielens => movielens::load(&source.dir, &source.split)?,
            Format::Csv => csv_format::load(&source.dir, &source.split, &source.columns)?,
            Format::Parquet => parquet_format::load(&source.dir, &source.split, &source.columns)?,
            Format::Synthetic => synthetic::generate(&source.synthetic, source.seed),
        };
        split::apply(&mut dataset, &source.split, source.seed)?;
        if dataset.interactions.is_empty() {
            return Err(DataError::Unusable(format!(
                "{}: the dataset has no interactions",
                source.dir.display()
            )));
        }
        Ok(dataset)
    }

    /// Divides interactions into train and test by a random, users or items split (the kinds a
    /// dataset read from the database supports: canonical and file splits belong to their files).
    pub fn apply_split(&mut self, spec: &SplitSpec, seed: u64) -> Result<(), DataError> {
        match spec {
            SplitSpec::Random(_)
            | SplitSpec::Users(_)
            | SplitSpec::Items(_)
            | SplitSpec::Time { .. }
            | SplitSpec::None => split::apply(self, spec, seed),
            other => Err(DataError::InvalidOption(format!(
                "--split {other}: only random:FRACTION, users:FRACTION, items:FRACTION, \
                 time:QUANTILE[:END] and none apply to data from the database"
            ))),
        }
    }

    /// Applies a feature set: keeps only the id feature of every user and item under
    /// [`FeatureSet::Ids`]. Returns the set applied ([`FeatureSet::Auto`] resolved to ids or
    /// hybrid) and, when side features of the data are dropped, a warning that names them, so
    /// that a feature a user's files define is never ignored silently.
    pub fn restrict_features(&mut self, set: FeatureSet) -> (FeatureSet, Option<String>) {
        let side = |entities: &[Entity]| -> Vec<String> {
            let mut names: Vec<String> = entities
                .iter()
                .flat_map(|e| e.features.iter().skip(1))
                .map(|f| {
                    f.split_once(':')
                        .map_or(f.as_str(), |(name, _)| name)
                        .to_string()
                })
                .collect();
            names.sort_unstable();
            names.dedup();
            names
        };
        let (user_side, item_side) = (side(&self.users), side(&self.items));
        let has_side = !user_side.is_empty() || !item_side.is_empty();
        let applied = match set {
            FeatureSet::Auto if has_side => FeatureSet::Hybrid,
            FeatureSet::Auto => FeatureSet::Ids,
            other => other,
        };
        if applied != FeatureSet::Ids {
            return (applied, None);
        }
        for e in self.users.iter_mut().chain(self.items.iter_mut()) {
            e.features.truncate(1);
        }
        let warning = has_side.then(|| {
            let list = |who: &str, names: &[String]| {
                (!names.is_empty()).then(|| format!("{who} {}", names.join(", ")))
            };
            let named: Vec<String> = [list("users:", &user_side), list("items:", &item_side)]
                .into_iter()
                .flatten()
                .collect();
            format!(
                "--features ids ignores the side features of the data ({}); --features hybrid \
                 (or auto, the default) learns from them",
                named.join("; ")
            )
        });
        (applied, warning)
    }

    /// The dataset with every interaction in the train part and nothing held out: the data a
    /// model for deployment learns from once its settings were evaluated on a split. Consumes it,
    /// so that a run at tens of millions of interactions never holds two copies.
    pub fn into_everything_as_train(mut self) -> Dataset {
        self.interactions
            .iter_mut()
            .for_each(|it| it.part = Part::Train);
        self.held_out = HeldOut::default();
        self
    }

    /// Per user, whether they have a train interaction (the users a model learns an id for).
    pub fn users_in_train(&self) -> Vec<bool> {
        let mut in_train = vec![false; self.users.len()];
        for it in self.interactions.iter().filter(|it| it.part == Part::Train) {
            in_train[it.user as usize] = true;
        }
        in_train
    }

    /// Per user, the sorted, de-duplicated items of every interaction, whatever its part: what
    /// the user already had, which recall must never offer again.
    pub fn seen_items(&self) -> Vec<Vec<u32>> {
        self.items_where(|_| true)
    }

    /// Whether an interaction counts as a positive at this rating threshold.
    pub fn is_positive(interaction: &Interaction, min_rating: f32) -> bool {
        interaction.rating.is_none_or(|r| r >= min_rating)
    }

    /// Per user, the sorted, de-duplicated items of the given part that pass `keep`.
    pub fn items_by_user(&self, part: Part, keep: impl Fn(&Interaction) -> bool) -> Vec<Vec<u32>> {
        self.items_where(|it| it.part == part && keep(it))
    }

    /// Per user, the sorted, de-duplicated items of the interactions that pass `keep`.
    fn items_where(&self, keep: impl Fn(&Interaction) -> bool) -> Vec<Vec<u32>> {
        let mut lists = vec![Vec::new(); self.users.len()];
        for it in &self.interactions {
            if keep(it) {
                lists[it.user as usize].push(it.item);
            }
        }
        for l in &mut lists {
            l.sort_unstable();
            l.dedup();
        }
        lists
    }
}

/// Interns external ids into dense indices while a loader reads interactions.
#[derive(Debug, Default)]
pub(crate) struct IdIndex {
    map: std::collections::HashMap<String, u32, std::hash::BuildHasherDefault<FxHasher>>,
    ids: Vec<String>,
}

/// The multiply-rotate hash of rustc's FxHash: two lookups a row at 19M rows made SipHash a
/// visible share of loading. Ids come from the operator's own files, so flooding is not a concern.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl IdIndex {
    pub(crate) fn get_or_insert(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.map.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.map.insert(id.to_string(), i);
        self.ids.push(id.to_string());
        i
    }

    pub(crate) fn ids(&self) -> &[String] {
        &self.ids
    }
}

/// Builds entities for indexed ids, taking features from `side` where known and the id feature alone
/// otherwise.
pub(crate) fn entities(
    ids: &IdIndex,
    prefix: &str,
    side: &std::collections::HashMap<String, (Option<String>, Vec<String>)>,
) -> Vec<Entity> {
    ids.ids()
        .iter()
        .map(|id| {
            let mut features = vec![format!("{prefix}:{id}")];
            let mut title = None;
            if let Some((t, f)) = side.get(id) {
                title = t.clone();
                features.extend(f.iter().cloned());
            }
            Entity {
                id: id.clone(),
                title,
                features,
            }
        })
        .collect()
}

/// Decodes Latin-1 bytes (MovieLens titles) into a String; every byte is one code point.
pub(crate) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// `decade:1990` from a four-digit year.
pub(crate) fn decade_feature(year: i32) -> String {
    format!("decade:{}", year.div_euclid(10) * 10)
}

/// Reads a file as bytes, naming it on failure.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}
