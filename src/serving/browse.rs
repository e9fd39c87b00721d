//! Read-only views of a serving model for browsing clients such as the dashboard: a known user's
//! features and seen items, items found by id or title, and the user-side features a new user can
//! be described with. Pure look-ups over the artifact; the HTTP layer only parses and maps.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ServingModel;
use crate::fm::train::EpochReport;

/// An item as a listing shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ItemEntry {
    /// External item id.
    pub item_id: String,
    /// Title, where the catalog has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Features (`genre:g3`), the id feature first.
    pub features: Vec<String>,
    /// False once the item was deactivated (`PATCH /v1/items/{id}`): never recalled then.
    pub active: bool,
    /// Written since training (`PUT /v1/items/{id}`): served from the vector its features give.
    pub live: bool,
}

/// A user the serving model knows, with the items they interacted with in the train split.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownUser {
    /// External user id.
    pub user_id: String,
    /// Features, the id feature first.
    pub features: Vec<String>,
    /// How many items the user is known to have interacted with.
    pub known_items_total: usize,
    /// The first `limit` of them, in catalog order.
    pub known_items: Vec<ItemEntry>,
}

/// A page of items matching a search.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemPage {
    /// How many items match in all.
    pub total: usize,
    /// The page asked for.
    pub items: Vec<ItemEntry>,
}

/// One value of a side feature and how many known users (or trained items) have it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FeatureValue {
    /// The full feature name, as recall takes it (`region:r3`).
    pub feature: String,
    /// Known users (for a user feature) or trained items (for an item feature) with it.
    pub count: usize,
}

/// The values of one side feature (`region`), sorted by name.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FeatureGroup {
    /// The part before the colon.
    pub name: String,
    /// Its values the model knows.
    pub values: Vec<FeatureValue>,
}

/// One epoch of the training history, flattened.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EpochRow {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean loss per positive.
    pub loss: f64,
    /// Wall time of the epoch's updates.
    pub seconds: f64,
    /// precision@k on the evaluation set (null when the epoch was not evaluated).
    pub precision: Option<f64>,
    /// recall@k on the evaluation set.
    pub recall: Option<f64>,
    /// NDCG@k on the evaluation set.
    pub ndcg: Option<f64>,
    /// Mean per-user AUC on the evaluation set.
    pub auc: Option<f64>,
}

impl From<&EpochReport> for EpochRow {
    fn from(r: &EpochReport) -> Self {
        let m = r.metrics.as_ref();
        EpochRow {
            epoch: r.epoch,
            loss: r.loss,
            seconds: r.seconds,
            precision: m.map(|m| m.precision),
            recall: m.map(|m| m.recall),
            ndcg: m.map(|m| m.ndcg),
            auc: m.map(|m| m.auc),
        }
    }
}

impl ServingModel {
    fn entry(&self, item: u32) -> ItemEntry {
        let entity = self.entity(item);
        ItemEntry {
            item_id: entity.id.clone(),
            title: entity.title.clone(),
            features: entity.features.clone(),
            active: self.inactive.load().binary_search(&item).is_err(),
            live: self.is_live(item),
        }
    }

    /// A known user's features and (up to `limit`) seen items; `None` if the model does not know
    /// the id.
    pub fn known_user(&self, id: &str, limit: usize) -> Option<KnownUser> {
        let &u = self.user_index.get(id)?;
        let meta = &self.artifact.meta;
        let seen = &meta.seen[u as usize];
        Some(KnownUser {
            user_id: id.to_string(),
            features: meta.users[u as usize].features.clone(),
            known_items_total: seen.len(),
            known_items: seen
                .iter()
                .take(limit)
                .map(|&i| self.entry(self.moved_to(i)))
                .collect(),
        })
    }

    /// Items whose id or title contains `query` (case-insensitive), an exact id match first, then
    /// catalog order (`live_only`: the items written since training, newest first); `offset` and
    /// `limit` pick the page. An empty query matches every item.
    pub fn find_items(
        &self,
        query: &str,
        offset: usize,
        limit: usize,
        live_only: bool,
    ) -> ItemPage {
        let needle = query.trim().to_lowercase();
        let exact = self
            .slot_of(query.trim())
            .filter(|&s| !live_only || self.is_live(s));
        let matches = |e: &crate::data::Entity| {
            needle.is_empty()
                || e.id.to_lowercase().contains(&needle)
                || e.title
                    .as_ref()
                    .is_some_and(|t| t.to_lowercase().contains(&needle))
        };
        let found: Vec<u32> = exact
            .into_iter()
            .chain(
                if live_only {
                    self.live_slots()
                } else {
                    self.served_slots()
                }
                .into_iter()
                .filter(|&i| Some(i) != exact && matches(self.entity(i))),
            )
            .collect();
        ItemPage {
            total: found.len(),
            items: found
                .iter()
                .skip(offset)
                .take(limit)
                .map(|&i| self.entry(i))
                .collect(),
        }
    }

    /// The side features of known users that the model has parameters for, grouped by name (the
    /// part before the colon); id features are left out. Empty for an ids-only model.
    pub fn user_feature_groups(&self) -> Vec<FeatureGroup> {
        self.feature_groups(&self.artifact.meta.users)
    }

    /// The side features of the trained items, grouped by name (`genre`), with how many items
    /// have each: what a recall filter can match on.
    pub fn item_feature_groups(&self) -> Vec<FeatureGroup> {
        self.feature_groups(&self.artifact.meta.items)
    }

    /// The side features (after each entity's id feature) the model knows, grouped and counted.
    fn feature_groups(&self, entities: &[crate::data::Entity]) -> Vec<FeatureGroup> {
        let meta = &self.artifact.meta;
        let mut counts: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        for entity in entities {
            for f in entity.features.iter().skip(1) {
                if meta.vocabulary.get(f).is_none() {
                    continue;
                }
                let name = f.split_once(':').map_or(f.as_str(), |(n, _)| n);
                *counts.entry(name).or_default().entry(f).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|(name, values)| FeatureGroup {
                name: name.to_string(),
                values: values
                    .into_iter()
                    .map(|(feature, count)| FeatureValue {
                        feature: feature.to_string(),
                        count,
                    })
                    .collect(),
            })
            .collect()
    }

    /// The training history stored in the artifact: the cut-off k of its figures (None when no
    /// epoch was evaluated), one row per epoch of the evaluated run, and one per epoch of the
    /// early-stopping run on validation data (empty without early stopping).
    pub fn history(&self) -> (Option<usize>, Vec<EpochRow>, Vec<EpochRow>) {
        let training = &self.artifact.meta.training;
        let history = &training.history;
        let k = (history.iter().chain(&training.validation_history))
            .find_map(|r| r.metrics.as_ref().map(|m| m.k));
        let rows = |h: &[crate::fm::train::EpochReport]| h.iter().map(EpochRow::from).collect();
        (k, rows(history), rows(&training.validation_history))
    }
}
