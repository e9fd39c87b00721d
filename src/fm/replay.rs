//! Replay evaluation: an online protocol for recall that follows what users just did (issue 22).
//!
//! The model was trained on the interactions before a time T (the train part of a `time:` split).
//! Each user's interactions from T on are replayed in time order; before each one, the user's
//! earlier post-T interactions are known to the service (posted as events), and the next item is
//! the target. Every step ranks the whole catalog with the user's train items excluded and counts
//! a hit when the target is in the top k (hit rate@k), with NDCG@k = 1/log2(rank + 2) for a hit.
//!
//! Four rankings, on the same steps:
//! - **static**: the user's vector as trained, post-T events ignored (serving before events
//!   counted: only train items excluded);
//! - **exclusion only**: the same vectors, the post-T events so far excluded too;
//! - **moving**: the events folded into the user's history features as well (models with history
//!   features only: `history.rs`), the events excluded;
//! - **popularity at T**: items by their number of train interactions, the events excluded.
//!
//! Users with no train interaction are unknown to the model: they are served from the side
//! features the data gives them (none under `--features ids`) and, under *moving*, their events,
//! as the service serves a user created with `PUT /v1/users/{id}`.

use std::collections::HashMap;

use serde::Serialize;

use super::export::UserQuery;
use super::history;
use super::ModelArtifact;
use crate::data::{Dataset, Part};
use crate::kernels::dot;
use crate::vectors::ItemVectors;

/// Hit rate and NDCG at k over every replayed step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReplayFigures {
    /// Share of steps whose target was in the top k.
    pub hit_rate: f64,
    /// Mean NDCG@k (one target per step).
    pub ndcg: f64,
}

/// The replay's figures for each ranking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// Cut-off.
    pub k: usize,
    /// Steps replayed (post-T interactions whose item the model serves).
    pub steps: usize,
    /// Users replayed.
    pub users: usize,
    /// Of them, users the model does not know (no train interaction).
    pub unknown_users: usize,
    /// Static vectors, only train items excluded.
    pub static_model: ReplayFigures,
    /// Static vectors, the events so far excluded too.
    pub exclusion_only: ReplayFigures,
    /// Events folded into the user's vector and excluded (None without history features).
    pub moving: Option<ReplayFigures>,
    /// Items by train interactions, the events so far excluded.
    pub popularity: ReplayFigures,
}

/// One user's replay: their row and history in the model, train items, and post-T items in time
/// order (catalog slots of the artifact).
struct ReplayUser {
    /// Known to the model: its index in the artifact's users.
    known: Option<usize>,
    /// An unknown user's side features, encoded.
    side: (Vec<u32>, Vec<f32>),
    /// Train items (sorted).
    train: Vec<u32>,
    /// Post-T items, in time order.
    steps: Vec<u32>,
}

/// Replays the test part of `dataset` (a `time:` split of the data `artifact` was trained on)
/// against the artifact. `threads` workers share the users.
pub fn replay(
    artifact: &ModelArtifact,
    dataset: &Dataset,
    k: usize,
    threads: usize,
) -> ReplayReport {
    let meta = &artifact.meta;
    let model = &artifact.model;
    let slot_of: HashMap<&str, u32> = (meta.items.iter().enumerate())
        .map(|(i, e)| (e.id.as_str(), i as u32))
        .collect();
    let user_of: HashMap<&str, usize> = (meta.users.iter().enumerate())
        .map(|(u, e)| (e.id.as_str(), u))
        .collect();
    let slot = |i: u32| slot_of.get(dataset.items[i as usize].id.as_str()).copied();

    // Post-T interactions in time order (ties in the data's order), per user.
    let mut ordered: Vec<(i64, usize)> = (dataset.interactions.iter().enumerate())
        .filter(|(_, it)| it.part == Part::Test)
        .map(|(p, it)| (it.timestamp, p))
        .collect();
    ordered.sort_unstable();
    let mut by_user: Vec<ReplayUser> = Vec::new();
    let mut index_of: HashMap<u32, usize> = HashMap::new();
    for (_, p) in ordered {
        let it = &dataset.interactions[p];
        let Some(item) = slot(it.item) else { continue };
        let r = *index_of.entry(it.user).or_insert_with(|| {
            let entity = &dataset.users[it.user as usize];
            let known = user_of.get(entity.id.as_str()).copied();
            let side = match known {
                Some(_) => (Vec::new(), Vec::new()),
                None => meta
                    .vocabulary
                    .encode(entity.features.iter().skip(1))
                    .0
                    .into_iter()
                    .unzip(),
            };
            by_user.push(ReplayUser {
                known,
                side,
                train: Vec::new(),
                steps: Vec::new(),
            });
            by_user.len() - 1
        });
        by_user[r].steps.push(item);
    }
    let mut popularity = vec![0f32; meta.items.len()];
    for it in dataset
        .interactions
        .iter()
        .filter(|it| it.part == Part::Train)
    {
        let Some(item) = slot(it.item) else { continue };
        popularity[item as usize] += 1.0;
        if let Some(&r) = index_of.get(&it.user) {
            by_user[r].train.push(item);
        }
    }
    for u in &mut by_user {
        u.train.sort_unstable();
        u.train.dedup();
    }

    let items = ItemVectors::new(model, &artifact.item_rows());
    let base_rows = artifact.base_user_rows();
    let history_features = artifact.item_history_features();
    let steps: usize = by_user.iter().map(|u| u.steps.len()).sum();
    let context = Context {
        artifact,
        items: &items,
        base_rows: &base_rows,
        history_features: &history_features,
        popularity: &popularity,
        k,
    };
    let chunk = by_user.len().div_ceil(threads.clamp(1, 64)).max(1);
    let sums: [f64; 8] = std::thread::scope(|s| {
        let handles: Vec<_> = by_user
            .chunks(chunk)
            .map(|users| {
                let context = &context;
                s.spawn(move || {
                    let mut acc = [0f64; 8];
                    for user in users {
                        context.replay_user(user, &mut acc);
                    }
                    acc
                })
            })
            .collect();
        handles.into_iter().fold([0.0; 8], |mut acc, h| {
            let part = h.join().unwrap_or([f64::NAN; 8]);
            for (a, x) in acc.iter_mut().zip(part) {
                *a += x;
            }
            acc
        })
    });
    let n = steps.max(1) as f64;
    let figures = |i: usize| ReplayFigures {
        hit_rate: sums[2 * i] / n,
        ndcg: sums[2 * i + 1] / n,
    };
    ReplayReport {
        k,
        steps,
        users: by_user.len(),
        unknown_users: by_user.iter().filter(|u| u.known.is_none()).count(),
        static_model: figures(0),
        exclusion_only: figures(1),
        moving: meta.history.is_some().then(|| figures(2)),
        popularity: figures(3),
    }
}

/// What every user's replay reads.
struct Context<'a> {
    artifact: &'a ModelArtifact,
    items: &'a ItemVectors,
    base_rows: &'a crate::data::FeatureRows,
    history_features: &'a [Option<u32>],
    popularity: &'a [f32],
    k: usize,
}

impl Context<'_> {
    /// The user's query with these items as their history beyond the train history (`history.rs`;
    /// the base row alone without history features).
    fn query(&self, user: &ReplayUser, events: &[u32]) -> UserQuery {
        let model = &self.artifact.model;
        let known = user.known;
        let base: (&[u32], &[f32]) = match known {
            Some(u) => self.base_rows.row(u),
            None => (&user.side.0, &user.side.1),
        };
        match &self.artifact.meta.history {
            Some(h) => {
                let mut items: Vec<u32> = known.map(|u| h.per_user[u].clone()).unwrap_or_default();
                items.extend_from_slice(events);
                let items = history::recent_distinct(&items, h.max_items);
                let features: Vec<u32> = items
                    .iter()
                    .filter_map(|&i| self.history_features.get(i as usize).copied().flatten())
                    .collect();
                let (idx, val) = history::with_history(base, &features);
                UserQuery::new(model, (&idx, &val))
            }
            None => UserQuery::new(model, base),
        }
    }

    /// Adds the user's (hit, NDCG) sums of the four rankings to `acc`.
    fn replay_user(&self, user: &ReplayUser, acc: &mut [f64; 8]) {
        let n = self.items.len();
        let mut scores = vec![0f32; n];
        let static_query = self.query(user, &[]);
        for (i, s) in scores.iter_mut().enumerate() {
            *s = dot(&static_query.vector, self.items.row(i));
        }
        let has_history = self.artifact.meta.history.is_some();
        let mut moving = vec![0f32; n];
        let mut excluded: Vec<u32> = user.train.clone();
        for (t, &target) in user.steps.iter().enumerate() {
            let events = &user.steps[..t];
            // Static: train items only.
            let (hit, ndcg) = self.rank(&scores, target, &user.train);
            acc[0] += hit;
            acc[1] += ndcg;
            // The events so far excluded too.
            let (hit, ndcg) = self.rank(&scores, target, &excluded);
            acc[2] += hit;
            acc[3] += ndcg;
            if has_history {
                let q = self.query(user, events);
                for (i, s) in moving.iter_mut().enumerate() {
                    *s = dot(&q.vector, self.items.row(i));
                }
                let (hit, ndcg) = self.rank(&moving, target, &excluded);
                acc[4] += hit;
                acc[5] += ndcg;
            }
            let (hit, ndcg) = self.rank(self.popularity, target, &excluded);
            acc[6] += hit;
            acc[7] += ndcg;
            if let Err(at) = excluded.binary_search(&target) {
                excluded.insert(at, target);
            }
        }
    }

    /// (1, NDCG) when `target` ranks in the top k among the items not `excluded` (sorted), else
    /// (0, 0). Ties go to the lower slot (popularity has many). An excluded target is a miss.
    fn rank(&self, scores: &[f32], target: u32, excluded: &[u32]) -> (f64, f64) {
        if excluded.binary_search(&target).is_ok() {
            return (0.0, 0.0);
        }
        let s = scores[target as usize];
        let mut above = 0usize;
        for (i, &x) in scores.iter().enumerate() {
            let ahead = x > s || (x == s && (i as u32) < target);
            if ahead && excluded.binary_search(&(i as u32)).is_err() {
                above += 1;
                if above >= self.k {
                    return (0.0, 0.0);
                }
            }
        }
        (1.0, 1.0 / ((above + 2) as f64).log2())
    }
}
