//! Ranking metrics on held-out interactions: precision@k, recall@k, NDCG@k and AUC, averaged over
//! users with at least one test positive. Items the user interacted with in the train split, at any
//! rating, are removed from that user's ranking (the protocol of LightFM's evaluation with
//! `train_interactions`).

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use super::export::UserQuery;
use super::model::FmModel;
use crate::data::{Dataset, FeatureRows, Part};
use crate::vectors::ItemVectors;

/// One evaluated user: their test positives and the items excluded from their ranking.
#[derive(Debug, Clone)]
pub struct EvalUser {
    /// Index of the user.
    pub user: u32,
    /// Sorted test positives (none of them excluded).
    pub positives: Vec<u32>,
    /// Sorted items removed from the ranking (the user's train items).
    pub excluded: Vec<u32>,
}

/// Everything needed to evaluate a ranking of the catalog.
#[derive(Debug, Clone)]
pub struct EvalSet {
    /// Cut-off k.
    pub k: usize,
    /// Users with at least one test positive.
    pub users: Vec<EvalUser>,
    /// Encoded features of every user of the dataset.
    pub user_rows: FeatureRows,
    /// Encoded features of every item.
    pub item_rows: FeatureRows,
}

impl EvalSet {
    /// Test positives (rating ≥ `min_rating` in the test part) per user, excluding train items.
    pub fn new(
        dataset: &Dataset,
        min_rating: f32,
        k: usize,
        user_rows: FeatureRows,
        item_rows: FeatureRows,
    ) -> Self {
        let train = dataset.items_by_user(Part::Train, |_| true);
        let test = dataset.items_by_user(Part::Test, |it| Dataset::is_positive(it, min_rating));
        let users = test
            .into_iter()
            .zip(train)
            .enumerate()
            .filter_map(|(u, (mut positives, excluded))| {
                positives.retain(|i| excluded.binary_search(i).is_err());
                (!positives.is_empty()).then_some(EvalUser {
                    user: u as u32,
                    positives,
                    excluded,
                })
            })
            .collect();
        EvalSet {
            k,
            users,
            user_rows,
            item_rows,
        }
    }

    /// The same evaluation over a seeded sample of `n` of its users (all of them when it has no
    /// more), in their original order: a per-epoch history that costs `n` users, not all.
    pub fn sample_users(&self, n: usize, seed: u64) -> EvalSet {
        let mut picked: Vec<usize> = (0..self.users.len()).collect();
        crate::rng::Rng::derive(seed, 0xE7A1).shuffle(&mut picked);
        picked.truncate(n);
        picked.sort_unstable();
        EvalSet {
            users: picked.into_iter().map(|i| self.users[i].clone()).collect(),
            ..self.clone()
        }
    }

    /// The same evaluation over the users for which `keep` holds.
    pub fn only_users(&self, keep: impl Fn(u32) -> bool) -> EvalSet {
        EvalSet {
            users: self
                .users
                .iter()
                .filter(|u| keep(u.user))
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    /// The same evaluation with the positives restricted to the items for which `keep` holds
    /// (users left without a positive are dropped), ranking the whole catalog as before.
    pub fn only_positives(&self, keep: impl Fn(u32) -> bool) -> EvalSet {
        let users = self
            .users
            .iter()
            .filter_map(|u| {
                let positives: Vec<u32> =
                    u.positives.iter().copied().filter(|&i| keep(i)).collect();
                (!positives.is_empty()).then(|| EvalUser {
                    positives,
                    ..u.clone()
                })
            })
            .collect();
        EvalSet {
            users,
            ..self.clone()
        }
    }

    /// The same evaluation ranking only the items for which `candidate` holds: every other item is
    /// excluded from every ranking, and positives outside the candidates are dropped.
    pub fn among(&self, candidate: impl Fn(u32) -> bool) -> EvalSet {
        let n_items = self.item_rows.len() as u32;
        let others: Vec<u32> = (0..n_items).filter(|&i| !candidate(i)).collect();
        let mut set = self.only_positives(&candidate);
        for u in &mut set.users {
            u.excluded.extend(&others);
            u.excluded.sort_unstable();
            u.excluded.dedup();
        }
        set
    }
}

/// Averaged ranking figures at cut-off `k`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Cut-off.
    pub k: usize,
    /// Mean precision@k.
    pub precision: f64,
    /// Mean recall@k.
    pub recall: f64,
    /// Mean NDCG@k (binary relevance, log2 discount).
    pub ndcg: f64,
    /// Mean per-user AUC.
    pub auc: f64,
    /// Number of users evaluated.
    pub users: usize,
}

impl Metrics {
    /// Named figures, as in the JSON contract: `precision@10`, `recall@10`, `ndcg@10`, `auc`, `users`.
    pub fn named(&self) -> Vec<(String, f64)> {
        vec![
            (format!("precision@{}", self.k), self.precision),
            (format!("recall@{}", self.k), self.recall),
            (format!("ndcg@{}", self.k), self.ndcg),
            ("auc".to_string(), self.auc),
            ("users".to_string(), self.users as f64),
        ]
    }
}

impl Serialize for Metrics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let named = self.named();
        let mut map = s.serialize_map(Some(named.len()))?;
        for (name, value) in named {
            if name == "users" {
                map.serialize_entry(&name, &self.users)?;
            } else {
                map.serialize_entry(&name, &value)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, f64>::deserialize(d)?;
        let (prefix, k) = map
            .keys()
            .find_map(|name| {
                let (p, k) = name.split_once('@')?;
                (p == "precision")
                    .then(|| k.parse::<usize>().ok())
                    .flatten()
                    .map(|k| (p, k))
            })
            .ok_or_else(|| serde::de::Error::custom("metrics without precision@k"))?;
        let _ = prefix;
        let get = |n: &str| map.get(n).copied().unwrap_or(f64::NAN);
        Ok(Metrics {
            k,
            precision: get(&format!("precision@{k}")),
            recall: get(&format!("recall@{k}")),
            ndcg: get(&format!("ndcg@{k}")),
            auc: get("auc"),
            users: get("users") as usize,
        })
    }
}

/// Figures of one user's ranking, given a score for every item.
fn user_figures(scores: &mut [f32], user: &EvalUser, k: usize, order: &mut Vec<u32>) -> [f64; 4] {
    for &i in &user.excluded {
        scores[i as usize] = f32::NEG_INFINITY;
    }
    let is_pos = |i: u32| user.positives.binary_search(&i).is_ok();
    // Top-k by partial selection, then sorted.
    order.clear();
    order.extend((0..scores.len() as u32).filter(|&i| scores[i as usize] > f32::NEG_INFINITY));
    let by_score = |a: &u32, b: &u32| {
        scores[*b as usize]
            .total_cmp(&scores[*a as usize])
            .then(a.cmp(b))
    };
    let top = k.min(order.len());
    if top > 0 && top < order.len() {
        order.select_nth_unstable_by(top - 1, by_score);
    }
    order[..top].sort_unstable_by(by_score);
    let hits: Vec<bool> = order[..top].iter().map(|&i| is_pos(i)).collect();
    let n_hits = hits.iter().filter(|&&h| h).count() as f64;
    let dcg: f64 = hits
        .iter()
        .enumerate()
        .filter(|(_, &h)| h)
        .map(|(r, _)| 1.0 / (r as f64 + 2.0).log2())
        .sum();
    let ideal: f64 = (0..user.positives.len().min(k))
        .map(|r| 1.0 / (r as f64 + 2.0).log2())
        .sum();
    // AUC: the share of (positive, negative) pairs ordered correctly, ties counting half. A scan
    // per positive is cheaper than sorting while positives are few.
    let n_neg = order.len() - user.positives.len();
    let auc = if n_neg == 0 {
        1.0
    } else if user.positives.len() <= 16 {
        let mut correct = 0.0;
        for &p in &user.positives {
            let s = scores[p as usize];
            let (mut below, mut ties) = (0usize, 0usize);
            for &i in order.iter() {
                let x = scores[i as usize];
                below += usize::from(x < s);
                ties += usize::from(x == s);
            }
            // The scan counted the positives too: those below or tied with s are not negatives.
            for &q in &user.positives {
                let x = scores[q as usize];
                below -= usize::from(x < s);
                ties -= usize::from(x == s);
            }
            correct += below as f64 + 0.5 * ties as f64;
        }
        correct / (user.positives.len() * n_neg) as f64
    } else {
        let mut negatives: Vec<f32> = order
            .iter()
            .filter(|&&i| !is_pos(i))
            .map(|&i| scores[i as usize])
            .collect();
        negatives.sort_unstable_by(f32::total_cmp);
        let mut correct = 0.0;
        for &p in &user.positives {
            let s = scores[p as usize];
            let below = negatives.partition_point(|&x| x < s);
            let ties = negatives[below..].partition_point(|&x| x <= s);
            correct += below as f64 + 0.5 * ties as f64;
        }
        correct / (user.positives.len() * n_neg) as f64
    };
    [
        n_hits / k as f64,
        n_hits / user.positives.len() as f64,
        if ideal > 0.0 { dcg / ideal } else { 0.0 },
        auc,
    ]
}

/// Evaluates any ranking: `score(user, out)` writes a score for every item of the catalog.
pub fn evaluate<F>(set: &EvalSet, threads: usize, score: F) -> Metrics
where
    F: Fn(u32, &mut [f32]) + Sync,
{
    let n_items = set.item_rows.len();
    let threads = threads.clamp(1, 64);
    let chunk = set.users.len().div_ceil(threads).max(1);
    let score = &score;
    let sums: [f64; 4] = std::thread::scope(|s| {
        let handles: Vec<_> = set
            .users
            .chunks(chunk)
            .map(|users| {
                s.spawn(move || {
                    let mut scores = vec![0f32; n_items];
                    let mut order = Vec::with_capacity(n_items);
                    let mut acc = [0f64; 4];
                    for user in users {
                        score(user.user, &mut scores);
                        let f = user_figures(&mut scores, user, set.k, &mut order);
                        for (a, x) in acc.iter_mut().zip(f) {
                            *a += x;
                        }
                    }
                    acc
                })
            })
            .collect();
        handles.into_iter().fold([0.0; 4], |mut acc, h| {
            let part = h.join().unwrap_or([f64::NAN; 4]);
            for (a, x) in acc.iter_mut().zip(part) {
                *a += x;
            }
            acc
        })
    });
    let n = set.users.len().max(1) as f64;
    Metrics {
        k: set.k,
        precision: sums[0] / n,
        recall: sums[1] / n,
        ndcg: sums[2] / n,
        auc: sums[3] / n,
        users: set.users.len(),
    }
}

/// Evaluates an FM through its inner-product export (the same path recall serves).
pub fn evaluate_model(model: &FmModel, set: &EvalSet, threads: usize) -> Metrics {
    let items = ItemVectors::new(model, &set.item_rows);
    evaluate(set, threads, |u, out| {
        let query = UserQuery::new(model, set.user_rows.row(u as usize));
        items.scores_into(&query.vector, out);
    })
}

/// The model beside the popularity ranking on the same users, positives and train data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The model's figures.
    pub model: Metrics,
    /// The popularity ranking's figures (items by their number of train positives).
    pub popularity: Metrics,
}

/// What a `users:` or `items:` split held out whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColdKind {
    /// Users never seen in training, ranked from their side features alone.
    Users,
    /// Items never seen in training, recalled from their side features alone.
    Items,
}

/// Cold-start figures: the model against popularity on what was held out whole.
///
/// - `users`: every held-out user with a positive, ranking the whole catalog (nothing is excluded:
///   they have no history), from their side features only.
/// - `items`: every user with a positive on a held-out item, ranking the whole catalog minus their
///   train items; the positives are the held-out items they liked, so recall@k is the share of
///   those that reach the user's top k (*cold-item recall@k*). `among_held_out` ranks the held-out
///   items only: how well features order new items against each other, whatever their scale
///   against the known ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdStart {
    /// Users or items.
    pub kind: ColdKind,
    /// How many users (items) were held out.
    pub held_out: usize,
    /// The model's figures.
    pub model: Metrics,
    /// Popularity's figures on the same users and positives.
    pub popularity: Metrics,
    /// Items only: the ranking restricted to the held-out items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub among_held_out: Option<Comparison>,
}

/// The popularity ranking: each item scored by its number of train positives.
pub fn popularity(dataset: &Dataset, min_rating: f32) -> Vec<f32> {
    let mut counts = vec![0f32; dataset.items.len()];
    for it in &dataset.interactions {
        if it.part == Part::Train && Dataset::is_positive(it, min_rating) {
            counts[it.item as usize] += 1.0;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_ranking_scores_one_everywhere() {
        let user = EvalUser {
            user: 0,
            positives: vec![1, 3],
            excluded: vec![0],
        };
        let mut scores = vec![9.0, 5.0, 1.0, 4.0, 0.0];
        let mut order = Vec::new();
        let [p, r, ndcg, auc] = user_figures(&mut scores, &user, 2, &mut order);
        assert_eq!((p, r, auc), (1.0, 1.0, 1.0));
        assert!((ndcg - 1.0).abs() < 1e-12);
    }

    #[test]
    fn figures_match_a_hand_computed_ranking() {
        // Ranking after exclusion: 2 (neg), 1 (pos), 4 (neg), 3 (pos).
        let user = EvalUser {
            user: 0,
            positives: vec![1, 3],
            excluded: vec![0],
        };
        let mut scores = vec![9.0, 5.0, 6.0, 1.0, 2.0];
        let mut order = Vec::new();
        let [p, r, ndcg, auc] = user_figures(&mut scores, &user, 2, &mut order);
        assert_eq!(p, 0.5);
        assert_eq!(r, 0.5);
        let expected = (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg - expected).abs() < 1e-12);
        // Pairs: (1 > 4), (1 < 2), (3 < 2), (3 < 4): 1 of 4 correct.
        assert_eq!(auc, 0.25);
    }
}
