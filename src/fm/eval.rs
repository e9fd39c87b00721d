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

/// Scratch space of one evaluating thread, reused across users.
#[derive(Default)]
struct Scratch {
    /// Candidates for the top k: (item, score).
    top: Vec<(u32, f32)>,
    /// Scores of the user's positives, sorted.
    positive_scores: Vec<f32>,
    /// Per distinct positive score: items strictly below it, items equal to it.
    below: Vec<u64>,
    equal: Vec<u64>,
}

/// Best first: higher score, then lower item index (the order a stable sort by score gives).
fn better(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The `k` best items of `scores` (NEG_INFINITY marks excluded items), best first, in one pass:
/// candidates are collected until twice `k`, then cut to the best `k` by selection; from then on
/// only an item above the k-th score can enter (an equal score loses the tie: it has a higher
/// index than every candidate). O(n) with a selection every k insertions at most.
fn top_k(scores: &[f32], k: usize, top: &mut Vec<(u32, f32)>) {
    top.clear();
    if k == 0 {
        return;
    }
    let mut threshold = f32::NEG_INFINITY;
    for (i, &x) in scores.iter().enumerate() {
        if x > threshold {
            top.push((i as u32, x));
            if top.len() == 2 * k {
                top.select_nth_unstable_by(k - 1, better);
                top.truncate(k);
                threshold = top.iter().map(|c| c.1).fold(f32::INFINITY, f32::min);
            }
        }
    }
    if top.len() > k {
        top.select_nth_unstable_by(k - 1, better);
        top.truncate(k);
    }
    top.sort_unstable_by(better);
}

/// Figures of one user's ranking, given a score for every item; excluded items are overwritten.
///
/// AUC is the share of (positive, negative) pairs ordered correctly, ties counting half (the
/// Mann–Whitney U statistic over the pair count), computed by counting ranks: the positives' scores
/// are sorted, each ranked item adds one to the count of the positives above it (found by binary
/// search), and the positives' counts of each other are taken out again. O(n log p), no sort of
/// the catalog.
fn user_figures(scores: &mut [f32], user: &EvalUser, k: usize, scratch: &mut Scratch) -> [f64; 4] {
    for &i in &user.excluded {
        if let Some(x) = scores.get_mut(i as usize) {
            *x = f32::NEG_INFINITY;
        }
    }
    let is_pos = |i: u32| user.positives.binary_search(&i).is_ok();
    top_k(scores, k, &mut scratch.top);
    let mut n_hits = 0.0;
    let mut dcg = 0.0;
    for (r, &(i, _)) in scratch.top.iter().enumerate() {
        if is_pos(i) {
            n_hits += 1.0;
            dcg += 1.0 / (r as f64 + 2.0).log2();
        }
    }
    let ideal: f64 = (0..user.positives.len().min(k))
        .map(|r| 1.0 / (r as f64 + 2.0).log2())
        .sum();

    let positives = &mut scratch.positive_scores;
    positives.clear();
    positives.extend(user.positives.iter().map(|&p| scores[p as usize]));
    positives.sort_unstable_by(f32::total_cmp);
    positives.dedup();
    let (below, equal) = (&mut scratch.below, &mut scratch.equal);
    let (ranked, ranked_positives) = if positives.len() <= SCAN_PER_POSITIVE {
        count_by_scans(scores, user, positives, below, equal)
    } else {
        count_by_search(scores, user, positives, below, equal)
    };
    let n_neg = ranked - ranked_positives;
    let auc = if n_neg == 0 {
        1.0
    } else {
        let correct: f64 = user
            .positives
            .iter()
            .map(|&p| {
                let s = scores[p as usize];
                let j = positives.partition_point(|&x| x < s);
                below[j] as f64 + 0.5 * equal[j] as f64
            })
            .sum();
        correct / (user.positives.len() as f64 * n_neg as f64)
    };
    [
        n_hits / k as f64,
        n_hits / user.positives.len() as f64,
        if ideal > 0.0 { dcg / ideal } else { 0.0 },
        auc,
    ]
}

/// Up to this many distinct positive scores, [`count_by_scans`] (a vectorised pass over the scores
/// per positive) beats [`count_by_search`] (a binary search among the positives per item): a pass
/// costs ~n/8 vector operations, a search ~log2(p) dependent loads per item. Test users have 14
/// positives on average at MovieLens-25M shape, where the search was 70% of the evaluation.
const SCAN_PER_POSITIVE: usize = 32;

/// For each distinct positive score `positives[j]` (sorted): `below[j]`, the ranked items (score
/// above NEG_INFINITY) strictly below it, and `equal[j]`, those equal to it, the user's positives
/// themselves left out. Returns (ranked items, ranked positives). One counting pass per positive.
fn count_by_scans(
    scores: &[f32],
    user: &EvalUser,
    positives: &[f32],
    below: &mut Vec<u64>,
    equal: &mut Vec<u64>,
) -> (u64, u64) {
    let ranked = scores.iter().filter(|&&x| x > f32::NEG_INFINITY).count() as u64;
    let unranked = scores.iter().filter(|&&x| x == f32::NEG_INFINITY).count() as u64;
    below.clear();
    equal.clear();
    for &t in positives {
        if t > f32::NEG_INFINITY {
            let (lt, eq) = below_and_equal(scores, t);
            // Every excluded item (NEG_INFINITY) lies below a ranked score.
            below.push(lt - unranked);
            equal.push(eq);
        } else {
            below.push(0);
            equal.push(0);
        }
    }
    // The positives out again: each is equal to its own score and below every higher one.
    let mut ranked_positives = 0u64;
    for &p in &user.positives {
        let y = scores[p as usize];
        if y > f32::NEG_INFINITY {
            ranked_positives += 1;
            let j = positives.partition_point(|&t| t < y);
            equal[j] -= 1;
            below[j + 1..].iter_mut().for_each(|b| *b -= 1);
        }
    }
    (ranked, ranked_positives)
}

/// Items of `scores` strictly below `t` and equal to it: one pass in 16 lanes, which the compiler
/// turns into vector compares and adds.
fn below_and_equal(scores: &[f32], t: f32) -> (u64, u64) {
    const LANES: usize = 16;
    let (mut lt, mut eq) = ([0u32; LANES], [0u32; LANES]);
    let chunks = scores.chunks_exact(LANES);
    let rest = chunks.remainder();
    // A lane counts at most len / 16 items: no u32 overflow below 2^36 items.
    for chunk in chunks {
        for l in 0..LANES {
            lt[l] += u32::from(chunk[l] < t);
            eq[l] += u32::from(chunk[l] == t);
        }
    }
    let mut below: u64 = lt.iter().map(|&c| u64::from(c)).sum();
    let mut equal: u64 = eq.iter().map(|&c| u64::from(c)).sum();
    for &x in rest {
        below += u64::from(x < t);
        equal += u64::from(x == t);
    }
    (below, equal)
}

/// What [`count_by_scans`] gives, by a binary search among the positives per ranked item.
fn count_by_search(
    scores: &[f32],
    user: &EvalUser,
    positives: &[f32],
    below: &mut Vec<u64>,
    equal: &mut Vec<u64>,
) -> (u64, u64) {
    below.clear();
    below.resize(positives.len() + 1, 0);
    equal.clear();
    equal.resize(positives.len(), 0);
    // below[j] (before the prefix sum) counts items whose score lies between distinct positive
    // scores j-1 and j: after it, every item below positive score j.
    let mut ranked = 0u64;
    let mut count = |x: f32, sign: i64| {
        let j = positives.partition_point(|&s| s < x);
        if j < positives.len() && positives[j] == x {
            equal[j] = equal[j].wrapping_add(sign as u64);
            below[j + 1] = below[j + 1].wrapping_add(sign as u64);
        } else {
            below[j] = below[j].wrapping_add(sign as u64);
        }
    };
    for &x in scores.iter() {
        if x > f32::NEG_INFINITY {
            ranked += 1;
            count(x, 1);
        }
    }
    let mut ranked_positives = 0u64;
    for &p in &user.positives {
        if scores[p as usize] > f32::NEG_INFINITY {
            ranked_positives += 1;
            count(scores[p as usize], -1);
        }
    }
    // A prefix sum turns "between j-1 and j" into "below j"; an item equal to score j was counted
    // into below[j + 1] so that it is below every higher score but not below its own.
    for j in 1..below.len() {
        below[j] = below[j].wrapping_add(below[j - 1]);
    }
    below.truncate(positives.len());
    (ranked, ranked_positives)
}

/// Users scored together: the item tile is read once per block from L2, not once per user.
const USER_BLOCK: usize = 64;
/// Items per tile: 1,024 rows of a 65-wide model are 266 KB, half of a core's L2 here.
const ITEM_TILE: usize = 1024;

/// Runs `score_block(users, scores, stride)` (writing `stride`-apart score rows for a block of up to
/// [`USER_BLOCK`] users) over the users split between `threads`, and averages their figures.
/// `report(done, total)` is called from the calling thread about every 10 s while workers run, and
/// once at the end.
fn evaluate_blocks<F>(
    set: &EvalSet,
    threads: usize,
    stride: usize,
    score_block: F,
    report: &mut dyn FnMut(usize, usize),
) -> Metrics
where
    F: Fn(&[EvalUser], &mut [f32]) + Sync,
{
    let n_items = set.item_rows.len();
    let threads = threads.clamp(1, 64);
    let chunk = set.users.len().div_ceil(threads).max(1);
    let score_block = &score_block;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let done = &done;
    let sums: [f64; 4] = std::thread::scope(|s| {
        let handles: Vec<_> = set
            .users
            .chunks(chunk)
            .map(|users| {
                s.spawn(move || {
                    let mut scores = vec![0f32; USER_BLOCK * stride];
                    let mut scratch = Scratch::default();
                    let mut acc = [0f64; 4];
                    for block in users.chunks(USER_BLOCK) {
                        score_block(block, &mut scores);
                        for (b, user) in block.iter().enumerate() {
                            let row = &mut scores[b * stride..][..n_items];
                            let f = user_figures(row, user, set.k, &mut scratch);
                            for (a, x) in acc.iter_mut().zip(f) {
                                *a += x;
                            }
                        }
                        done.fetch_add(block.len(), std::sync::atomic::Ordering::Relaxed);
                    }
                    acc
                })
            })
            .collect();
        let every = std::time::Duration::from_secs(10);
        let mut last = std::time::Instant::now();
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(std::time::Duration::from_millis(50));
            if last.elapsed() >= every {
                report(
                    done.load(std::sync::atomic::Ordering::Relaxed),
                    set.users.len(),
                );
                last = std::time::Instant::now();
            }
        }
        let sums = handles.into_iter().fold([0.0; 4], |mut acc, h| {
            let part = h.join().unwrap_or([f64::NAN; 4]);
            for (a, x) in acc.iter_mut().zip(part) {
                *a += x;
            }
            acc
        });
        report(set.users.len(), set.users.len());
        sums
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

/// Evaluates any ranking: `score(user, out)` writes a score for every item of the catalog.
pub fn evaluate<F>(set: &EvalSet, threads: usize, score: F) -> Metrics
where
    F: Fn(u32, &mut [f32]) + Sync,
{
    let n_items = set.item_rows.len();
    evaluate_blocks(
        set,
        threads,
        n_items,
        |users, out| {
            for (b, user) in users.iter().enumerate() {
                score(user.user, &mut out[b * n_items..][..n_items]);
            }
        },
        &mut |_, _| {},
    )
}

/// Evaluates an FM through its inner-product export (the same vectors recall serves).
pub fn evaluate_model(model: &FmModel, set: &EvalSet, threads: usize) -> Metrics {
    evaluate_model_reporting(model, set, threads, &mut |_, _| {})
}

/// [`evaluate_model`], calling `report(users done, users)` about every 10 s and at the end: the scores of a block
/// of 64 users against tiles of 1,024 items are one blocked matrix product
/// ([`crate::kernels::score_block`]).
pub fn evaluate_model_reporting(
    model: &FmModel,
    set: &EvalSet,
    threads: usize,
    report: &mut dyn FnMut(usize, usize),
) -> Metrics {
    use crate::kernels::{score_block, Transposed};
    let items = ItemVectors::new(model, &set.item_rows);
    let dim = items.dim();
    let items = Transposed::new(items.as_slice(), dim);
    let stride = items.stride();
    let items = &items;
    evaluate_blocks(
        set,
        threads,
        stride,
        |users, out| {
            let q = Transposed::QUERIES;
            let n_queries = users.len().div_ceil(q) * q;
            let mut queries = vec![0f32; n_queries * dim];
            for (b, user) in users.iter().enumerate() {
                let query = UserQuery::new(model, set.user_rows.row(user.user as usize));
                queries[b * dim..][..dim].copy_from_slice(&query.vector[..dim]);
            }
            let mut tile = 0;
            while tile < stride {
                let end = (tile + ITEM_TILE).min(stride);
                for g in 0..n_queries / q {
                    score_block(
                        &queries[g * q * dim..],
                        items,
                        tile..end,
                        &mut out[g * q * stride..],
                    );
                }
                tile = end;
            }
        },
        report,
    )
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
        let [p, r, ndcg, auc] = user_figures(&mut scores, &user, 2, &mut Scratch::default());
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
        let [p, r, ndcg, auc] = user_figures(&mut scores, &user, 2, &mut Scratch::default());
        assert_eq!(p, 0.5);
        assert_eq!(r, 0.5);
        let expected = (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg - expected).abs() < 1e-12);
        // Pairs: (1 > 4), (1 < 2), (3 < 2), (3 < 4): 1 of 4 correct.
        assert_eq!(auc, 0.25);
    }

    /// The definition, by sorting the whole ranking: the reference the fast paths must equal.
    fn sorted_reference(scores: &[f32], user: &EvalUser, k: usize) -> [f64; 4] {
        let mut order: Vec<u32> = (0..scores.len() as u32)
            .filter(|i| user.excluded.binary_search(i).is_err())
            .collect();
        order.sort_by(|&a, &b| {
            scores[b as usize]
                .total_cmp(&scores[a as usize])
                .then(a.cmp(&b))
        });
        let is_pos = |i: u32| user.positives.binary_search(&i).is_ok();
        let hits: Vec<usize> = (0..k.min(order.len()))
            .filter(|&r| is_pos(order[r]))
            .collect();
        let dcg: f64 = hits.iter().map(|&r| 1.0 / (r as f64 + 2.0).log2()).sum();
        let ideal: f64 = (0..user.positives.len().min(k))
            .map(|r| 1.0 / (r as f64 + 2.0).log2())
            .sum();
        let negatives: Vec<f32> = order
            .iter()
            .filter(|&&i| !is_pos(i))
            .map(|&i| scores[i as usize])
            .collect();
        let mut pairs = 0.0;
        for &p in &user.positives {
            for &x in &negatives {
                let s = scores[p as usize];
                pairs += if s > x {
                    1.0
                } else if s == x {
                    0.5
                } else {
                    0.0
                };
            }
        }
        let auc = if negatives.is_empty() {
            1.0
        } else {
            pairs / (user.positives.len() * negatives.len()) as f64
        };
        [
            hits.len() as f64 / k as f64,
            hits.len() as f64 / user.positives.len() as f64,
            dcg / ideal,
            auc,
        ]
    }

    #[test]
    fn fast_paths_equal_the_sorting_reference_on_random_scores_with_ties() {
        let mut rng = crate::rng::Rng::new(23);
        let mut scratch = Scratch::default();
        for case in 0..400 {
            let n = 1 + rng.below(3000);
            // Few distinct values: many ties, between negatives, positives and both.
            let levels = 1 + rng.below(if case % 2 == 0 { 6 } else { 500 });
            let scores: Vec<f32> = (0..n).map(|_| rng.below(levels) as f32 * 0.25).collect();
            let mut items: Vec<u32> = (0..n as u32).collect();
            rng.shuffle(&mut items);
            // Up to 120 positives: both counting paths (SCAN_PER_POSITIVE distinct scores) run.
            let n_pos = 1 + rng.below((n / 2).clamp(1, 120));
            let n_excluded = rng.below(n - n_pos + 1);
            let mut positives = items[..n_pos].to_vec();
            let mut excluded = items[n_pos..n_pos + n_excluded].to_vec();
            positives.sort_unstable();
            excluded.sort_unstable();
            let user = EvalUser {
                user: 0,
                positives,
                excluded,
            };
            let k = 1 + rng.below(30);
            let expected = sorted_reference(&scores, &user, k);
            let got = user_figures(&mut scores.clone(), &user, k, &mut scratch);
            for (m, (g, e)) in got.iter().zip(expected).enumerate() {
                assert!(
                    (g - e).abs() < 1e-9,
                    "case {case} (n {n}, k {k}, {levels} levels) figure {m}: {g} != {e}"
                );
            }
        }
    }

    #[test]
    fn top_k_by_selection_is_the_head_of_the_sorted_order_with_ties_by_index() {
        let mut rng = crate::rng::Rng::new(5);
        let mut top = Vec::new();
        for _ in 0..200 {
            let n = rng.below(500);
            let mut scores: Vec<f32> = (0..n).map(|_| rng.below(7) as f32).collect();
            for x in scores.iter_mut() {
                if rng.below(5) == 0 {
                    *x = f32::NEG_INFINITY;
                }
            }
            let k = rng.below(40);
            top_k(&scores, k, &mut top);
            let mut all: Vec<(u32, f32)> = scores
                .iter()
                .enumerate()
                .filter(|(_, &x)| x > f32::NEG_INFINITY)
                .map(|(i, &x)| (i as u32, x))
                .collect();
            all.sort_by(better);
            all.truncate(k);
            assert_eq!(top, all);
        }
    }
}
