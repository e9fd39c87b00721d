//! A seeded generator of data shaped like a large public rating log (MovieLens 25M by default:
//! 162,541 users, 59,047 items, 18.8M ratings, about 62% of them ≥ 4), written as the CSV format's
//! files so that every figure at that size can be rerun without the licensed data.
//!
//! Shape: item popularity follows Zipf's law (weight of the item of popularity rank r is r^-s);
//! user activity is a floor plus a lognormal draw, scaled so that the total is exactly the
//! requested number of interactions; each user has a latent topic and draws a share of their items
//! from it (so that a model has something to learn), and in-topic items are rated ≥ 4 more often
//! than others. Timestamps increase along each user's history.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::synthetic::{cumulative, draw};
use super::DataError;
use crate::rng::Rng;

/// Size and shape of the generated rating log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapeConfig {
    /// Number of users.
    pub users: usize,
    /// Number of items.
    pub items: usize,
    /// Total number of interactions (exact).
    pub interactions: usize,
    /// Zipf exponent of item popularity.
    pub zipf: f64,
    /// σ of the lognormal part of user activity.
    pub activity_sigma: f64,
    /// Interactions every user has at least (MovieLens keeps users with 20 ratings or more).
    pub min_per_user: usize,
    /// Number of latent topics.
    pub topics: usize,
    /// Share of a user's items drawn from their own topic.
    pub topic_affinity: f64,
    /// Share of interactions rated ≥ 4.
    pub positive_share: f64,
    /// Also write `users.csv` and `items.csv` with side features that reveal the topic with noise.
    pub side_features: bool,
}

impl ShapeConfig {
    /// MovieLens 25M's sizes.
    pub fn movielens_25m() -> Self {
        ShapeConfig {
            users: 162_541,
            items: 59_047,
            interactions: 18_800_000,
            zipf: 1.0,
            activity_sigma: 1.1,
            min_per_user: 20,
            topics: 32,
            topic_affinity: 0.5,
            positive_share: 0.62,
            side_features: false,
        }
    }

    fn check(&self) -> Result<(), DataError> {
        let bad = |m: String| Err(DataError::InvalidOption(m));
        if self.users == 0 || self.items == 0 {
            return bad("--users and --items must be at least 1".into());
        }
        let cap = self.items.div_ceil(2);
        if self.interactions < self.users {
            return bad(format!(
                "--interactions {} is fewer than one per user ({} users)",
                self.interactions, self.users
            ));
        }
        if self.interactions / self.users > cap {
            return bad(format!(
                "--interactions {} needs more than half of the {} items per user",
                self.interactions, self.items
            ));
        }
        if !(0.0..=1.0).contains(&self.topic_affinity)
            || !(0.0..=1.0).contains(&self.positive_share)
        {
            return bad("--topic-affinity and --positive-share are shares in [0, 1]".into());
        }
        if !(self.zipf >= 0.0 && self.activity_sigma >= 0.0) {
            return bad("--zipf and --activity-sigma must be ≥ 0".into());
        }
        Ok(())
    }
}

/// What [`write_csv`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Generated {
    /// Files written, interactions first.
    pub files: Vec<PathBuf>,
    /// Rows of `interactions.csv`.
    pub interactions: usize,
    /// Share of them rated ≥ 4.
    pub positive_share: f64,
    /// Most interactions of one user.
    pub max_per_user: usize,
    /// Interactions of the most popular item.
    pub max_per_item: usize,
}

/// Per-user interaction counts: `min_per_user` plus a lognormal draw, scaled and rounded so that
/// they sum to exactly `interactions`, none above half the catalog.
fn activity(config: &ShapeConfig, rng: &mut Rng) -> Vec<usize> {
    let floor = config.min_per_user.min(config.interactions / config.users);
    let cap = config.items.div_ceil(2);
    let rest = config.interactions - floor * config.users;
    let raw: Vec<f64> = (0..config.users)
        .map(|_| (config.activity_sigma * rng.normal()).exp())
        .collect();
    let total: f64 = raw.iter().sum();
    let mut counts: Vec<usize> = raw
        .iter()
        .map(|w| (floor + (w / total * rest as f64) as usize).min(cap))
        .collect();
    // Rounding and the cap leave a remainder: hand it out one at a time to users below the cap.
    let mut missing = config.interactions - counts.iter().sum::<usize>();
    while missing > 0 {
        let u = rng.below(config.users);
        if counts[u] < cap {
            counts[u] += 1;
            missing -= 1;
        }
    }
    counts
}

/// A file written under a temporary name and renamed into place once complete.
struct AtomicFile {
    tmp: PathBuf,
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl AtomicFile {
    fn create(path: PathBuf) -> Result<Self, DataError> {
        let tmp = path.with_extension("csv.partial");
        let file = std::fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        Ok(AtomicFile {
            tmp,
            path,
            out: std::io::BufWriter::with_capacity(1 << 20, file),
        })
    }

    fn finish(self) -> Result<PathBuf, DataError> {
        let AtomicFile { tmp, path, out } = self;
        let file = out
            .into_inner()
            .map_err(|e| DataError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| DataError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| DataError::io(&path, e))?;
        Ok(path)
    }
}

/// Writes `interactions.csv` (`user_id,item_id,rating,timestamp`) and, with side features,
/// `users.csv` and `items.csv` into `dir`, the same files for the same config and seed.
pub fn write_csv(config: &ShapeConfig, seed: u64, dir: &Path) -> Result<Generated, DataError> {
    config.check()?;
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let mut rng = Rng::derive(seed, 0x25_3A);
    let topics = config.topics.max(1);

    // Items: a random popularity rank each (so that ids say nothing), weight rank^-s, a topic.
    let mut rank: Vec<usize> = (1..=config.items).collect();
    rng.shuffle(&mut rank);
    let popularity: Vec<f64> = rank
        .iter()
        .map(|&r| (r as f64).powf(-config.zipf))
        .collect();
    let item_topic: Vec<usize> = (0..config.items).map(|_| rng.below(topics)).collect();
    let global = cumulative(popularity.iter().copied());
    let by_topic: Vec<(Vec<u32>, Vec<f64>)> = (0..topics)
        .map(|t| {
            let members: Vec<u32> = (0..config.items as u32)
                .filter(|&i| item_topic[i as usize] == t)
                .collect();
            let cum = cumulative(members.iter().map(|&i| popularity[i as usize]));
            (members, cum)
        })
        .collect();
    let counts = activity(config, &mut rng);
    let user_topic: Vec<usize> = (0..config.users).map(|_| rng.below(topics)).collect();

    // In-topic items are liked more often than others, by `lift`.
    let lift = 0.15f64;

    let mut file = AtomicFile::create(dir.join("interactions.csv"))?;
    let werr = |e: std::io::Error| DataError::io(&dir.join("interactions.csv"), e);
    writeln!(file.out, "user_id,item_id,rating,timestamp").map_err(werr)?;
    let (first, last) = (789_652_009i64, 1_574_327_703i64);
    let mut seen = vec![false; config.items];
    let mut picked: Vec<u32> = Vec::new();
    let mut per_item = vec![0usize; config.items];
    let mut positives = 0usize;
    for (u, &n) in counts.iter().enumerate() {
        picked.clear();
        let (members, cum) = &by_topic[user_topic[u]];
        while picked.len() < n {
            let in_topic = !members.is_empty() && rng.uniform() < config.topic_affinity;
            let i = if in_topic {
                members[draw(&mut rng, cum)] as usize
            } else {
                draw(&mut rng, &global)
            };
            if !seen[i] {
                seen[i] = true;
                picked.push(i as u32);
            }
        }
        // Rates that average to `positive_share` over this user's actual mix of in-topic items
        // (duplicates rejected and global draws landing in the topic move it off the affinity).
        let in_topic = picked
            .iter()
            .filter(|&&i| item_topic[i as usize] == user_topic[u])
            .count() as f64
            / n.max(1) as f64;
        let like_in = (config.positive_share + lift * (1.0 - in_topic)).min(1.0);
        let like_out = (config.positive_share - lift * in_topic).max(0.0);
        let mut clock = first + (rng.uniform() * (last - first) as f64) as i64;
        for &i in &picked {
            seen[i as usize] = false;
            per_item[i as usize] += 1;
            let like = if item_topic[i as usize] == user_topic[u] {
                like_in
            } else {
                like_out
            };
            // Half-star ratings as MovieLens has them: 4..5 for a positive, 0.5..3.5 otherwise.
            let rating = if rng.uniform() < like {
                positives += 1;
                4.0 + 0.5 * rng.below(3) as f64
            } else {
                0.5 + 0.5 * rng.below(7) as f64
            };
            clock += 1 + (rng.uniform() * 600.0) as i64;
            writeln!(file.out, "{u},{i},{rating:.1},{clock}").map_err(werr)?;
        }
    }
    let mut files = vec![file.finish()?];
    if config.side_features {
        let noisy = |rng: &mut Rng, t: usize| {
            if rng.uniform() < 0.8 {
                t
            } else {
                rng.below(topics)
            }
        };
        let mut users = AtomicFile::create(dir.join("users.csv"))?;
        let uerr = |e: std::io::Error| DataError::io(&dir.join("users.csv"), e);
        writeln!(users.out, "id,features").map_err(uerr)?;
        for (u, &t) in user_topic.iter().enumerate() {
            let region = noisy(&mut rng, t);
            writeln!(users.out, "{u},region:r{region}").map_err(uerr)?;
        }
        files.push(users.finish()?);
        let mut items = AtomicFile::create(dir.join("items.csv"))?;
        let ierr = |e: std::io::Error| DataError::io(&dir.join("items.csv"), e);
        writeln!(items.out, "id,features,title").map_err(ierr)?;
        for (i, &t) in item_topic.iter().enumerate() {
            let genre = noisy(&mut rng, t);
            writeln!(items.out, "{i},genre:g{genre},Item {i}").map_err(ierr)?;
        }
        files.push(items.finish()?);
    }
    Ok(Generated {
        files,
        interactions: config.interactions,
        positive_share: positives as f64 / config.interactions as f64,
        max_per_user: counts.iter().copied().max().unwrap_or(0),
        max_per_item: per_item.iter().copied().max().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ShapeConfig {
        ShapeConfig {
            users: 300,
            items: 500,
            interactions: 20_000,
            side_features: true,
            ..ShapeConfig::movielens_25m()
        }
    }

    #[test]
    fn writes_exactly_the_requested_rows_without_duplicate_pairs_and_reproducibly() {
        let dir = tempfile::tempdir().unwrap();
        let g = write_csv(&small(), 7, dir.path()).unwrap();
        assert_eq!(g.files.len(), 3);
        let text = std::fs::read_to_string(dir.path().join("interactions.csv")).unwrap();
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows.len(), 20_000);
        let pairs: std::collections::HashSet<(&str, &str)> = rows
            .iter()
            .map(|r| {
                let mut f = r.split(',');
                (f.next().unwrap(), f.next().unwrap())
            })
            .collect();
        assert_eq!(pairs.len(), 20_000, "a (user, item) pair appears twice");
        let users: std::collections::HashSet<&str> = pairs.iter().map(|p| p.0).collect();
        assert_eq!(users.len(), 300, "every user has interactions");
        assert!(
            (g.positive_share - 0.62).abs() < 0.03,
            "{}",
            g.positive_share
        );
        // Zipf: the most popular item is far above the mean of 40 interactions per item.
        assert!(g.max_per_item > 120, "{}", g.max_per_item);
        let again = tempfile::tempdir().unwrap();
        write_csv(&small(), 7, again.path()).unwrap();
        let same = std::fs::read_to_string(again.path().join("interactions.csv")).unwrap();
        assert_eq!(text, same);
    }

    #[test]
    fn impossible_sizes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let too_dense = ShapeConfig {
            interactions: 300 * 400,
            ..small()
        };
        assert!(matches!(
            write_csv(&too_dense, 1, dir.path()),
            Err(DataError::InvalidOption(_))
        ));
    }
}
