//! How interactions are divided into train and test, and how validation data is carved from train.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{DataError, Dataset, Interaction, Part};
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
}

impl FromStr for SplitSpec {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        let bad = |why: &str| {
            DataError::InvalidOption(format!(
                "split {s:?}: {why} (expected ua, ub, u1..u5, random:FRACTION or file:PATH)"
            ))
        };
        if let Some(f) = s.strip_prefix("random:") {
            let fraction: f64 = f.parse().map_err(|_| bad("fraction is not a number"))?;
            if !(fraction > 0.0 && fraction < 1.0) {
                return Err(bad("fraction must be in (0, 1)"));
            }
            Ok(SplitSpec::Random(fraction))
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

/// Applies a random split; canonical and file splits were resolved by the loader.
pub(super) fn apply(dataset: &mut Dataset, spec: &SplitSpec, seed: u64) -> Result<(), DataError> {
    if let SplitSpec::Random(fraction) = spec {
        let mut rng = Rng::derive(seed, 0x5911);
        for it in &mut dataset.interactions {
            it.part = if rng.uniform() < *fraction {
                Part::Test
            } else {
                Part::Train
            };
        }
    }
    Ok(())
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
    /// A copy of `dataset` whose test part is a random `fraction` of each user's train positives
    /// (users with at least two), and whose train part is the rest of the original train part.
    /// The original test interactions are dropped.
    pub fn carve(dataset: &Dataset, fraction: f64, min_rating: f32, seed: u64) -> Dataset {
        let mut rng = Rng::derive(seed, 0x7A11D);
        let mut by_user: Vec<Vec<usize>> = vec![Vec::new(); dataset.users.len()];
        let mut interactions: Vec<Interaction> = Vec::new();
        for it in dataset
            .interactions
            .iter()
            .filter(|it| it.part == Part::Train)
        {
            if Dataset::is_positive(it, min_rating) {
                by_user[it.user as usize].push(interactions.len());
            }
            interactions.push(*it);
        }
        for positions in &mut by_user {
            if positions.len() < 2 {
                continue;
            }
            rng.shuffle(positions);
            let n = ((positions.len() as f64 * fraction).round() as usize).max(1);
            for &p in positions.iter().take(n.min(positions.len() - 1)) {
                interactions[p].part = Part::Test;
            }
        }
        Dataset {
            users: dataset.users.clone(),
            items: dataset.items.clone(),
            interactions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_specs_parse_and_print_back() {
        for s in ["ua", "u3", "random:0.2", "file:/tmp/x.test"] {
            assert_eq!(s.parse::<SplitSpec>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn bad_split_specs_are_refused_with_the_value() {
        for s in ["random:1.5", "random:x", "u9", "file:"] {
            let e = s.parse::<SplitSpec>().unwrap_err().to_string();
            assert!(e.contains(s), "{e}");
        }
    }
}
