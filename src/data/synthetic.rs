//! A seeded generator of implicit-feedback data with planted structure: every user and item belongs
//! to a latent topic, users mostly interact with items of their topic, and side features (a user's
//! region and occupation, an item's genre) reveal the topic with some noise. A model that learns the
//! structure beats popularity by a wide margin; one that learns nothing does not. It is both the demo
//! data and the test data.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{Dataset, Entity, Interaction, Part};
use crate::rng::Rng;

/// Size and shape of the generated data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyntheticConfig {
    /// Number of users.
    pub users: usize,
    /// Number of items.
    pub items: usize,
    /// Number of latent topics.
    pub topics: usize,
    /// Mean number of interactions per user.
    pub interactions_per_user: usize,
    /// Fraction of a user's interactions drawn from their own topic (the rest by global popularity).
    pub topic_affinity: f64,
    /// Probability that a side feature shows the true topic rather than a random one.
    pub feature_fidelity: f64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            users: 1000,
            items: 600,
            topics: 8,
            interactions_per_user: 30,
            topic_affinity: 0.75,
            feature_fidelity: 0.8,
        }
    }
}

const AGES: [&str; 7] = [
    "under-18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+",
];

/// Draws an index with probability proportional to `weights` given their running sums.
pub(super) fn draw(rng: &mut Rng, cumulative: &[f64]) -> usize {
    let total = *cumulative.last().unwrap_or(&0.0);
    let x = rng.uniform() * total;
    cumulative
        .partition_point(|&c| c <= x)
        .min(cumulative.len() - 1)
}

/// Running sums of `weights`, for [`draw`].
pub(super) fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    weights
        .map(|w| {
            acc += w;
            acc
        })
        .collect()
}

/// Generates the dataset; everything is train until a split is applied.
pub fn generate(config: &SyntheticConfig, seed: u64) -> Dataset {
    let mut rng = Rng::derive(seed, 0x5EED);
    let topics = config.topics.max(1);
    let noisy = |rng: &mut Rng, truth: usize| {
        if rng.uniform() < config.feature_fidelity {
            truth
        } else {
            rng.below(topics)
        }
    };

    // Items: a topic each and a Zipf-like popularity, so popularity is a real (but weak) baseline.
    let mut item_topic = Vec::with_capacity(config.items);
    let mut popularity = Vec::with_capacity(config.items);
    let mut items = Vec::with_capacity(config.items);
    for i in 0..config.items {
        let t = rng.below(topics);
        item_topic.push(t);
        popularity.push(1.0 / (1.0 + rng.below(config.items.max(1)) as f64).powf(0.8));
        let genre = noisy(&mut rng, t);
        let decade = 1950 + 10 * rng.below(7);
        items.push(Entity {
            id: i.to_string(),
            title: Some(format!("Item {i} (topic {t})")),
            features: vec![
                format!("item:{i}"),
                format!("genre:g{genre}"),
                format!("decade:{decade}"),
            ],
        });
    }
    let global = cumulative(popularity.iter().copied());
    let by_topic: Vec<(Vec<usize>, Vec<f64>)> = (0..topics)
        .map(|t| {
            let members: Vec<usize> = (0..config.items).filter(|&i| item_topic[i] == t).collect();
            let cum = cumulative(members.iter().map(|&i| popularity[i]));
            (members, cum)
        })
        .collect();

    let mut users = Vec::with_capacity(config.users);
    let mut interactions = Vec::new();
    let mut clock: i64 = 1_600_000_000;
    for u in 0..config.users {
        let t = rng.below(topics);
        let region = noisy(&mut rng, t);
        let occupation = noisy(&mut rng, t);
        users.push(Entity {
            id: u.to_string(),
            title: None,
            features: vec![
                format!("user:{u}"),
                format!("region:r{region}"),
                format!("occupation:o{occupation}"),
                format!("age:{}", AGES[rng.below(AGES.len())]),
            ],
        });
        let wanted = (config.interactions_per_user / 2
            + rng.below(config.interactions_per_user + 1))
        .clamp(1, config.items);
        let mut taken = HashSet::new();
        let mut attempts = 0;
        while taken.len() < wanted && attempts < wanted * 20 {
            attempts += 1;
            let on_topic = rng.uniform() < config.topic_affinity && !by_topic[t].0.is_empty();
            let item = if on_topic {
                by_topic[t].0[draw(&mut rng, &by_topic[t].1)]
            } else {
                draw(&mut rng, &global)
            };
            if !taken.insert(item) {
                continue;
            }
            // Liked when on the user's topic, lukewarm otherwise: ratings ≥ 4 are the positives.
            let rating = if item_topic[item] == t {
                4 + rng.below(2)
            } else {
                1 + rng.below(4)
            };
            clock += 1 + rng.below(600) as i64;
            // A user's n-th interaction falls on day n (at a time of day that varies), so that
            // users interleave in time and a `time:` split leaves each user's later interactions
            // to replay (the clock's draws are those of the data before timestamps mattered).
            let day = taken.len() as i64 - 1;
            interactions.push(Interaction {
                user: u as u32,
                item: item as u32,
                rating: Some(rating as f32),
                timestamp: 1_600_000_000 + day * 86_400 + clock % 86_400,
                part: Part::Train,
            });
        }
    }
    Dataset {
        users,
        items,
        interactions,
        held_out: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_generates_the_same_data() {
        let c = SyntheticConfig {
            users: 50,
            items: 40,
            ..Default::default()
        };
        let a = generate(&c, 3);
        let b = generate(&c, 3);
        assert_eq!(a.interactions, b.interactions);
        assert_eq!(a.users, b.users);
        assert_ne!(generate(&c, 4).interactions, a.interactions);
    }
}
