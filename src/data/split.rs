//! How interactions are divided into train and test, and how validation data is carved from train.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{DataError, Dataset, HeldOut, Interaction, Part};
use crate::rng::Rng;

/// A `--split` value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SplitSpec {
    /// A split shipped with the data set (`ua`, `ub`, `u1`..`u5` of MovieLens 100K).
    Canonical(String),
    /// Hold out this fraction of all interactions, chosen at random with the seed.
    Random(f64),
    /// Test interactions come from this file (same format as the main one); the rest is train.
    File(PathBuf),
    /// Hold out this fraction of all users whole (cold-start users): every interaction of theirs is
    /// test, and the model never sees them or their id features.
    Users(f64),
    /// Hold out this fraction of the catalog whole (cold-start items): every interaction with them
    /// is test, and the model never sees them or their id features.
    Items(f64),
    /// Split in time: interactions before the `train` quantile T of the timestamps are train, the
    /// rest test (`time:0.8`). With an `end` quantile below 1 (`time:0.64:0.8`), interactions
    /// from that quantile on are dropped: a time split carved from the train part of `time:0.8`,
    /// to choose settings without looking at what comes after.
    Time {
        /// Quantile of the timestamps where the test part starts.
        train: f64,
        /// Quantile where the data ends (1: all of it).
        end: f64,
    },
    /// Hold nothing out: every interaction is train and nothing is evaluated (scheduled retraining
    /// of a model whose settings were evaluated before).
    None,
}

impl FromStr for SplitSpec {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        let bad = |why: &str| {
            DataError::InvalidOption(format!(
                "--split {s:?}: {why} (expected ua, ub, u1..u5, random:FRACTION, users:FRACTION, \
                 items:FRACTION, time:QUANTILE[:END], file:PATH, or none to train on every \
                 interaction)"
            ))
        };
        let fraction = |f: &str| -> Result<f64, DataError> {
            let fraction: f64 = f.parse().map_err(|_| bad("fraction is not a number"))?;
            if fraction == 0.0 {
                return Err(bad("a fraction of 0 holds nothing out: say --split none"));
            }
            if !(fraction > 0.0 && fraction < 1.0) {
                return Err(bad(&format!("fraction {fraction} is not in (0, 1)")));
            }
            Ok(fraction)
        };
        if s == "none" {
            Ok(SplitSpec::None)
        } else if let Some(f) = s.strip_prefix("random:") {
            Ok(SplitSpec::Random(fraction(f)?))
        } else if let Some(f) = s.strip_prefix("time:") {
            let (train, end) = match f.split_once(':') {
                Some((train, end)) => (fraction(train)?, fraction(end)?),
                None => (fraction(f)?, 1.0),
            };
            if train >= end {
                return Err(bad("the train quantile must be below the end quantile"));
            }
            Ok(SplitSpec::Time { train, end })
        } else if let Some(f) = s.strip_prefix("users:") {
            Ok(SplitSpec::Users(fraction(f)?))
        } else if let Some(f) = s.strip_prefix("items:") {
            Ok(SplitSpec::Items(fraction(f)?))
        } else if let Some(p) = s.strip_prefix("file:") {
            if p.is_empty() {
                return Err(bad("empty path"));
            }
            Ok(SplitSpec::File(PathBuf::from(p)))
        } else if matches!(s, "ua" | "ub" | "u1" | "u2" | "u3" | "u4" | "u5") {
            Ok(SplitSpec::Canonical(s.to_string()))
        } else {
            Err(bad("unknown split"))
        }
    }
}

impl fmt::Display for SplitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitSpec::Canonical(name) => write!(f, "{name}"),
            SplitSpec::Random(fraction) => write!(f, "random:{fraction}"),
            SplitSpec::File(path) => write!(f, "file:{}", path.display()),
            SplitSpec::Users(fraction) => write!(f, "users:{fraction}"),
            SplitSpec::Items(fraction) => write!(f, "items:{fraction}"),
            SplitSpec::Time { train, end } if *end >= 1.0 => write!(f, "time:{train}"),
            SplitSpec::Time { train, end } => write!(f, "time:{train}:{end}"),
            SplitSpec::None => write!(f, "none"),
        }
    }
}

impl TryFrom<String> for SplitSpec {
    type Error = DataError;
    fn try_from(s: String) -> Result<Self, DataError> {
        s.parse()
    }
}

impl From<SplitSpec> for String {
    fn from(s: SplitSpec) -> String {
        s.to_string()
    }
}

/// Applies a random, users or items split (or none); canonical and file splits were resolved by the
/// loader.
pub(super) fn apply(dataset: &mut Dataset, spec: &SplitSpec, seed: u64) -> Result<(), DataError> {
    match spec {
        SplitSpec::None => dataset
            .interactions
            .iter_mut()
            .for_each(|it| it.part = Part::Train),
        SplitSpec::Random(fraction) => {
            let mut rng = Rng::derive(seed, 0x5911);
            for it in &mut dataset.interactions {
                it.part = if rng.uniform() < *fraction {
                    Part::Test
                } else {
                    Part::Train
                };
            }
        }
        SplitSpec::Users(fraction) => {
            let users = choose(
                dataset.users.len(),
                *fraction,
                &mut Rng::derive(seed, 0xC01D),
            );
            hold_out_users(dataset, users);
        }
        SplitSpec::Items(fraction) => {
            let items = choose(
                dataset.items.len(),
                *fraction,
                &mut Rng::derive(seed, 0x17E5),
            );
            hold_out_items(dataset, items);
        }
        SplitSpec::Time { train, end } => {
            let mut times: Vec<i64> = dataset.interactions.iter().map(|it| it.timestamp).collect();
            times.sort_unstable();
            let at = |q: f64| {
                let i = ((times.len() as f64 * q).floor() as usize).min(times.len());
                times.get(i).copied().unwrap_or(i64::MAX)
            };
            let (t, stop) = (at(*train), if *end >= 1.0 { i64::MAX } else { at(*end) });
            dataset.interactions.retain(|it| it.timestamp < stop);
            for it in &mut dataset.interactions {
                it.part = if it.timestamp < t {
                    Part::Train
                } else {
                    Part::Test
                };
            }
        }
        SplitSpec::Canonical(_) | SplitSpec::File(_) => {}
    }
    Ok(())
}

/// Exactly round(fraction · n) of the indices `0..n` (at least one when n > 1, never all), sorted:
/// a fixed count rather than a coin per index, so that `users:0.2` of MovieLens 100K is always 189
/// users.
fn choose(n: usize, fraction: f64, rng: &mut Rng) -> Vec<u32> {
    let count = ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    let mut all: Vec<u32> = (0..n as u32).collect();
    rng.shuffle(&mut all);
    all.truncate(count);
    all.sort_unstable();
    all
}

/// Marks every interaction of `users` (sorted) as test and records them as held out.
fn hold_out_users(dataset: &mut Dataset, users: Vec<u32>) {
    for it in &mut dataset.interactions {
        if users.binary_search(&it.user).is_ok() {
            it.part = Part::Test;
        }
    }
    dataset.held_out.users = users;
}

/// Marks every interaction with `items` (sorted) as test and records them as held out.
fn hold_out_items(dataset: &mut Dataset, items: Vec<u32>) {
    for it in &mut dataset.interactions {
        if items.binary_search(&it.item).is_ok() {
            it.part = Part::Test;
        }
    }
    dataset.held_out.items = items;
}

/// Adds the interactions of a separate test file; any (user, item) pair it holds is removed from the
/// main file's interactions, so the main file may hold everything or only the train part.
pub(super) fn merge_test_file(interactions: &mut Vec<Interaction>, test: Vec<Interaction>) {
    let held_out: std::collections::HashSet<(u32, u32)> =
        test.iter().map(|it| (it.user, it.item)).collect();
    interactions.retain(|it| !held_out.contains(&(it.user, it.item)));
    interactions.extend(test);
}

/// Validation data carved from the train part only, so that choices made on it never see the test.
pub struct ValidationSplit;

impl ValidationSplit {
    /// A copy of `dataset` whose test part is validation data carved from the train part the same
    /// way the test part was made; the original test interactions are dropped.
    ///
    /// - After a `users:` split: a `fraction` of the *training* users (those with a train
    ///   interaction) is held out whole, so that tuning measures cold-start users without ever
    ///   looking at the held-out test users.
    /// - After an `items:` split: a `fraction` of the items not already held out is held out whole;
    ///   the test split's held-out items stay held out (the model must never see them either).
    /// - Otherwise: a random `fraction` of each user's train positives (users with at least two).
    pub fn carve(dataset: &Dataset, fraction: f64, min_rating: f32, seed: u64) -> Dataset {
        let mut carved = Dataset {
            users: dataset.users.clone(),
            items: dataset.items.clone(),
            interactions: dataset
                .interactions
                .iter()
                .filter(|it| it.part == Part::Train)
                .copied()
                .collect(),
            held_out: HeldOut::default(),
        };
        let mut rng = Rng::derive(seed, 0x7A11D);
        if !dataset.held_out.users.is_empty() {
            let in_train = carved.users_in_train();
            let training: Vec<u32> = (0..dataset.users.len() as u32)
                .filter(|&u| in_train[u as usize])
                .collect();
            let picked = choose(training.len(), fraction, &mut rng);
            let users = picked.iter().map(|&p| training[p as usize]).collect();
            hold_out_users(&mut carved, users);
        } else if !dataset.held_out.items.is_empty() {
            let warm: Vec<u32> = (0..dataset.items.len() as u32)
                .filter(|i| dataset.held_out.items.binary_search(i).is_err())
                .collect();
            let picked = choose(warm.len(), fraction, &mut rng);
            let mut items: Vec<u32> = picked.iter().map(|&p| warm[p as usize]).collect();
            hold_out_items(&mut carved, items.clone());
            items.extend(&dataset.held_out.items);
            items.sort_unstable();
            carved.held_out.items = items;
        } else {
            let mut by_user: Vec<Vec<usize>> = vec![Vec::new(); dataset.users.len()];
            for (p, it) in carved.interactions.iter().enumerate() {
                if Dataset::is_positive(it, min_rating) {
                    by_user[it.user as usize].push(p);
                }
            }
            for positions in &mut by_user {
                if positions.len() < 2 {
                    continue;
                }
                rng.shuffle(positions);
                let n = ((positions.len() as f64 * fraction).round() as usize).max(1);
                for &p in positions.iter().take(n.min(positions.len() - 1)) {
                    carved.interactions[p].part = Part::Test;
                }
            }
        }
        carved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_specs_parse_and_print_back() {
        for s in [
            "ua",
            "u3",
            "random:0.2",
            "users:0.2",
            "items:0.25",
            "time:0.8",
            "time:0.64:0.8",
            "file:/tmp/x.test",
            "none",
        ] {
            assert_eq!(s.parse::<SplitSpec>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn bad_split_specs_are_refused_with_the_value() {
        for s in [
            "random:1.5",
            "random:x",
            "u9",
            "file:",
            "users:1.5",
            "users:0",
            "items:-0.1",
            "items:",
            "time:1",
            "time:0.8:0.5",
            "time:0.5:x",
        ] {
            let e = s.parse::<SplitSpec>().unwrap_err().to_string();
            assert!(e.contains(s) && e.contains("--split"), "{e}");
        }
    }
}
