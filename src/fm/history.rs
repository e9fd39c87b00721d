//! History features: the items a user interacted with as features of the user (SVD++'s implicit
//! feedback y_j, LightFM's item-interaction user features). Every item has a second embedding on
//! the user side, the feature `history:<item id>`; a user's row holds, besides their id and side
//! features, the history features of their most recent `max_items` items, each weighted 1/√n
//! (n the number of them), so that a long history does not outweigh the id.
//!
//! Since the user's vector is a sum of its features' vectors (`export.rs`), a new interaction moves
//! it at once: the row is rebuilt with one more item and [`super::UserQuery`] recomputed, with no
//! retraining. Pure computation: the trainer, the evaluation and serving all build rows here.

use serde::{Deserialize, Serialize};

use super::model::SparseRow;
use crate::data::{Dataset, FeatureVocabulary, Part};

/// Prefix of the history feature of an item: `history:<item id>`.
pub const PREFIX: &str = "history:";

/// The name of an item's history feature.
pub fn feature_name(item_id: &str) -> String {
    format!("{PREFIX}{item_id}")
}

/// Whether a feature name is a history feature (never a user's side feature: requests giving one
/// as a feature have it reported unknown).
pub fn is_history_feature(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// What an artifact records of its history features (absent from models trained without them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryMeta {
    /// The most recent items of a user's history that enter their row (older ones are cut).
    pub max_items: usize,
    /// Per user (the artifact's `users` order), the indices into `items` of their train history,
    /// oldest first, each item once (at its latest interaction), at most `max_items`.
    pub per_user: Vec<Vec<u32>>,
}

/// Per user, the items of their train interactions (any rating), oldest first, each once at its
/// latest interaction, the most recent `max_items` kept. Ties in time keep the data's order.
pub fn train_histories(dataset: &Dataset, max_items: usize) -> Vec<Vec<u32>> {
    let mut by_user: Vec<Vec<(i64, usize, u32)>> = vec![Vec::new(); dataset.users.len()];
    for (order, it) in dataset.interactions.iter().enumerate() {
        if it.part == Part::Train && !dataset.held_out.user(it.user) {
            by_user[it.user as usize].push((it.timestamp, order, it.item));
        }
    }
    by_user
        .into_iter()
        .map(|mut events| {
            events.sort_unstable();
            let items: Vec<u32> = events.into_iter().map(|(_, _, item)| item).collect();
            recent_distinct(&items, max_items)
        })
        .collect()
}

/// The last `max_items` distinct items of `items` (oldest first), each at its last position.
pub fn recent_distinct(items: &[u32], max_items: usize) -> Vec<u32> {
    let mut kept: Vec<u32> = Vec::with_capacity(items.len().min(max_items));
    let mut taken = std::collections::HashSet::new();
    for &item in items.iter().rev() {
        if kept.len() == max_items {
            break;
        }
        if taken.insert(item) {
            kept.push(item);
        }
    }
    kept.reverse();
    kept
}

/// Per item (index into the vocabulary's catalog order), the vocabulary index of its history
/// feature, if the model has one.
pub fn item_features(vocab: &FeatureVocabulary, item_ids: &[&str]) -> Vec<Option<u32>> {
    item_ids
        .iter()
        .map(|id| vocab.get(&feature_name(id)))
        .collect()
}

/// The weight of each of `n` history features: 1/√n.
pub fn weight(n: usize) -> f32 {
    if n == 0 {
        0.0
    } else {
        1.0 / (n as f32).sqrt()
    }
}

/// A user's row: `base` (id and side features) followed by the history features `history`
/// (vocabulary indices, distinct, none of them in `base`), each weighted 1/√n.
pub fn with_history((idx, val): SparseRow<'_>, history: &[u32]) -> (Vec<u32>, Vec<f32>) {
    let w = weight(history.len());
    let mut out_idx = Vec::with_capacity(idx.len() + history.len());
    let mut out_val = Vec::with_capacity(idx.len() + history.len());
    out_idx.extend_from_slice(idx);
    out_val.extend_from_slice(val);
    out_idx.extend_from_slice(history);
    out_val.extend(std::iter::repeat_n(w, history.len()));
    (out_idx, out_val)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_recent_distinct_items_are_kept_in_time_order() {
        assert_eq!(recent_distinct(&[1, 2, 3, 2, 4], 10), vec![1, 3, 2, 4]);
        assert_eq!(recent_distinct(&[1, 2, 3, 2, 4], 2), vec![2, 4]);
        assert_eq!(recent_distinct(&[], 3), Vec::<u32>::new());
    }

    #[test]
    fn history_features_share_one_over_root_n() {
        let (idx, val) = with_history((&[7], &[1.0]), &[1, 2, 3, 4]);
        assert_eq!(idx, vec![7, 1, 2, 3, 4]);
        assert_eq!(val, vec![1.0, 0.5, 0.5, 0.5, 0.5]);
        let squares: f32 = val[1..].iter().map(|v| v * v).sum();
        assert!((squares - 1.0).abs() < 1e-6, "unit norm whatever n");
    }
}
