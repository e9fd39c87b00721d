//! A model ready to serve: the artifact, its item vectors, the recall index over them, and the
//! look-ups from external ids. Pure computation: the HTTP layer parses requests and calls these.
//! [`LiveModel`] holds the one serving now and swaps it (file, registry, catalog).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::data::FeatureRows;
use crate::fm::artifact::ArtifactMeta;
use crate::fm::{ArtifactError, FmModel, ModelArtifact, UserQuery};
use crate::recall::{
    self, ExactIndex, Filter, IndexError, IndexInfo, IndexQuality, IndexSettings, RecallIndex,
};
use crate::vectors::ItemVectors;

mod bench_history;
mod browse;
mod events;
mod filter;
mod live;
mod live_items;
pub use bench_history::{bench_history, FoldInRow};
pub use browse::{EpochRow, FeatureGroup, FeatureValue, ItemEntry, ItemPage, KnownUser};
pub use filter::{Allowed, Condition, ItemFilter, MatchValue};
pub use live::{LiveModel, RefusedModel, SwapError, Swapped, WriteError};
pub use live_items::{ItemWrite, ItemWritten, LiveCounts};

use live_items::{LiveItems, Searchable};

/// Why a request could not be answered, or a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The user id is unknown and no features were given.
    #[error("unknown user {0:?}: give its features for a cold-start recall")]
    UnknownUser(String),
    /// Neither an id, nor features, nor a history.
    #[error("give a user_id, a list of features or a history")]
    NoUser,
    /// An item id is not in the catalog.
    #[error("unknown item {0:?}")]
    UnknownItem(String),
    /// The artifact could not be loaded.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// The index refused the vectors or the query.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The catalog's ids or titles could not be rendered as JSON.
    #[error("could not render the catalog as JSON: {0}")]
    Render(serde_json::Error),
}

/// A user as a request describes them.
#[derive(Debug, Clone, Default)]
pub struct UserSpec {
    /// External id; known users bring their features and their seen items.
    pub id: Option<String>,
    /// Features (`age:25-34`); with an unknown id, or none, this is a cold-start user.
    pub features: Option<Vec<String>>,
    /// Item ids the user interacted with, oldest first, beyond what the service knows of them
    /// (an anonymous visitor's whole history): left out under `exclude_seen`, and folded into
    /// the user's vector by a model with history features. Ids the model does not serve are
    /// reported as unknown `history:<id>` features and ignored.
    pub history: Vec<String>,
}

/// One recall question.
#[derive(Debug, Clone)]
pub struct RecallQuery {
    /// Who.
    pub user: UserSpec,
    /// How many items.
    pub k: usize,
    /// Leave out the items the user already interacted with (every interaction known when the
    /// model was built).
    pub exclude_seen: bool,
    /// Leave out these item ids too (unknown ids are ignored).
    pub exclude_items: Vec<String>,
    /// Search breadth for graph indexes.
    pub ef: Option<usize>,
    /// Only items this filter allows.
    pub filter: Option<ItemFilter>,
}

/// An item with its exact FM score. Borrows the id and title from the serving model: an answer is
/// serialized while the model is held, so a hot path of k items allocates no strings.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ScoredItem<'a> {
    /// External item id.
    pub item_id: &'a str,
    /// Title, where the catalog has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<&'a str>,
    /// Exact FM score y(user ∪ item).
    pub score: f32,
    /// This item's JSON up to its score, rendered at model load (see [`ScoredItem::write_json`]);
    /// not part of the answer's shape.
    #[serde(skip)]
    pub json_prefix: &'a str,
}

impl ScoredItem<'_> {
    /// Appends this item as JSON, byte for byte what serde_json writes for it: the prefix the
    /// model rendered once, then the score. Escaping the id, the title and three keys per item was
    /// a quarter of a k = 100 recall's instructions (callgrind, README "Service under load").
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        out.extend_from_slice(self.json_prefix.as_bytes());
        serde_json::to_writer(&mut *out, &self.score)?;
        out.push(b'}');
        Ok(())
    }
}

/// `{"item_id":…,"title":…,"score":`: a [`ScoredItem`]'s JSON up to its score, escaped by
/// serde_json, fields in the struct's order.
pub fn json_prefix(item_id: &str, title: Option<&str>) -> Result<String, serde_json::Error> {
    #[derive(Serialize)]
    struct Head<'a> {
        item_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<&'a str>,
    }
    let mut head = serde_json::to_string(&Head { item_id, title })?;
    head.pop(); // the closing brace
    head.push_str(",\"score\":");
    Ok(head)
}

/// Every item's JSON up to its score, `{"item_id":"…","title":"…","score":`, in one string.
struct ItemJson {
    text: String,
    /// Item i's prefix is `text[starts[i]..starts[i + 1]]`.
    starts: Vec<usize>,
}

impl ItemJson {
    fn render(items: &[crate::data::Entity]) -> Result<ItemJson, serde_json::Error> {
        let mut text = String::with_capacity(items.len() * 64);
        let mut starts = Vec::with_capacity(items.len() + 1);
        for item in items {
            starts.push(text.len());
            text.push_str(&json_prefix(&item.id, item.title.as_deref())?);
        }
        starts.push(text.len());
        Ok(ItemJson { text, starts })
    }

    fn prefix(&self, item: u32) -> &str {
        let i = item as usize;
        &self.text[self.starts[i]..self.starts[i + 1]]
    }
}

/// A recall answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Recalled<'a> {
    /// Best first.
    pub items: Vec<ScoredItem<'a>>,
    /// Features the model does not know (ignored).
    pub unknown_features: Vec<String>,
    /// Whether the user was served from features alone.
    pub cold_start: bool,
}

/// The resolved user: query vector, seen items (sorted), unknown features.
struct ResolvedUser<'a> {
    query: UserQuery,
    seen: &'a [u32],
    /// Items of the user's stored events beyond `seen` (ids: an item may have moved slots).
    recent: Vec<String>,
    unknown: Vec<String>,
    cold: bool,
}

/// The index's recall against exact search as measured after live writes, on the load-time
/// check's user queries, seen items not excluded, deleted and superseded items excluded.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct QualityNow {
    /// Mean recall@10.
    pub recall_at_10: f64,
    /// Mean recall@100.
    pub recall_at_100: f64,
    /// Index slots when measured (trained items plus every version written live).
    pub items: usize,
    /// Queries used.
    pub queries: usize,
    /// When (RFC 3339).
    pub measured_at: String,
}

/// The file, in the artifact's folder, that holds its saved graph index.
pub const GRAPH_FILE: &str = "index.graph";

/// The folder of an artifact given as its folder or as its `model.fmr` file.
fn artifact_dir(path: &Path) -> &Path {
    if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    }
}

/// A loaded model with its index.
pub struct ServingModel {
    artifact: ModelArtifact,
    path: PathBuf,
    user_index: HashMap<String, u32>,
    item_index: HashMap<String, u32>,
    /// Known users' id and side features (history features are added per request).
    user_rows: FeatureRows,
    /// Per trained item, its history feature (None without history features).
    history_features: Vec<Option<u32>>,
    /// The trained items' JSON prefixes (written items carry their own).
    item_json: ItemJson,
    /// Vectors, index and directions: trained items first, then the items written live.
    searchable: arc_swap::ArcSwap<Searchable>,
    /// Items written while serving (`live_items.rs`).
    live: LiveItems,
    /// Per feature, the slots that have it (`filter.rs`).
    postings: filter::FeaturePostings,
    quality: Option<IndexQuality>,
    /// The load-time check's user queries, kept to re-measure the index after live writes.
    sample: Vec<Vec<f32>>,
    /// The last re-measure (`LiveModel` runs it after writes).
    quality_now: arc_swap::ArcSwapOption<QualityNow>,
    load_seconds: f64,
    loaded_at: std::time::SystemTime,
    /// Deactivated item ids, as the catalog last said.
    inactive_ids: arc_swap::ArcSwap<Vec<String>>,
    /// Items of each user's stored events beyond their train items (`events.rs`).
    events: events::UserEvents,
    /// Slots never returned (sorted): deactivated items and retired slots; replaced whole.
    inactive: arc_swap::ArcSwap<Vec<u32>>,
    /// What recall must exclude itself: `inactive` minus the retired slots the index leaves out
    /// on its own (`RecallIndex::remove`).
    recall_excluded: arc_swap::ArcSwap<Vec<u32>>,
}

impl ServingModel {
    /// Loads an artifact, computes its item vectors and builds and checks the index. Takes seconds
    /// for large catalogs: call it off the request path.
    pub fn load(path: &Path, settings: &IndexSettings) -> Result<ServingModel, ServeError> {
        let started = Instant::now();
        let artifact = ModelArtifact::load(path)?;
        let meta = &artifact.meta;
        let full_user_rows = artifact.user_rows();
        let user_rows = artifact.base_user_rows();
        let history_features = artifact.item_history_features();
        let item_rows = artifact.item_rows();
        // Room for items written live (`live_items.rs`).
        let trained = ItemVectors::new(&artifact.model, &item_rows);
        let items = Arc::new(trained.with_capacity(live_items::initial_capacity(trained.len())));
        drop(trained);
        // A sample of real user queries to check the graph against brute force.
        let step = (meta.users.len() / settings.check_queries.max(1)).max(1);
        let checked: Vec<usize> = (0..meta.users.len())
            .step_by(step)
            .take(settings.check_queries)
            .collect();
        let sample: Vec<Vec<f32>> = checked
            .iter()
            .map(|&u| UserQuery::new(&artifact.model, full_user_rows.row(u)).vector)
            .collect();
        // The graph is saved beside the artifact (see `recall::build_with_file`).
        let graph_file = artifact_dir(path).join(GRAPH_FILE);
        let (index, quality) = if settings.kind == recall::IndexKind::Milvus {
            // Milvus's breadth is checked and tuned as served: each user's seen items excluded.
            let sample_seen: Vec<Vec<u32>> = checked
                .iter()
                .map(|&u| meta.seen.get(u).cloned().unwrap_or_default())
                .collect();
            recall::build_milvus(
                items.clone(),
                settings,
                &sample,
                &sample_seen,
                &meta.version,
            )?
        } else {
            recall::build_with_file(items.clone(), settings, &sample, Some(&graph_file))?
        };
        let directions = unit_directions(&items);
        let directions = Arc::new(directions.with_capacity(items.capacity()));
        let item_json = ItemJson::render(&meta.items).map_err(ServeError::Render)?;
        let postings = filter::FeaturePostings::new(&meta.items);
        Ok(ServingModel {
            item_json,
            user_index: index_of(meta.users.iter().map(|u| &u.id)),
            item_index: index_of(meta.items.iter().map(|i| &i.id)),
            path: path.to_path_buf(),
            artifact,
            user_rows,
            history_features,
            searchable: arc_swap::ArcSwap::from_pointee(Searchable {
                items,
                index,
                directions,
            }),
            live: LiveItems::default(),
            postings,
            quality,
            sample,
            quality_now: arc_swap::ArcSwapOption::empty(),
            load_seconds: started.elapsed().as_secs_f64(),
            loaded_at: std::time::SystemTime::now(),
            inactive_ids: arc_swap::ArcSwap::from_pointee(Vec::new()),
            events: events::UserEvents::default(),
            inactive: arc_swap::ArcSwap::from_pointee(Vec::new()),
            recall_excluded: arc_swap::ArcSwap::from_pointee(Vec::new()),
        })
    }

    /// Marks exactly these item ids as deactivated (ids this model does not serve are ignored).
    pub fn set_inactive(&self, ids: &[String]) {
        self.inactive_ids.store(Arc::new(ids.to_vec()));
        self.refresh_excluded();
    }

    /// Whether the model knows this user id.
    pub fn knows_user(&self, id: &str) -> bool {
        self.user_index.contains_key(id)
    }

    /// The catalog entry of an item id (title and features), if the model serves it.
    pub fn item(&self, id: &str) -> Option<&crate::data::Entity> {
        self.slot_of(id).map(|slot| self.entity(slot))
    }

    /// The artifact's metadata.
    pub fn meta(&self) -> &ArtifactMeta {
        &self.artifact.meta
    }

    /// The FM parameters.
    pub fn model(&self) -> &FmModel {
        &self.artifact.model
    }

    /// Where the artifact was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The index's description.
    pub fn index_info(&self) -> IndexInfo {
        self.searchable.load().index.info()
    }

    /// `Ok` when the index can answer now (an external index is asked; see `RecallIndex::health`).
    pub fn index_health(&self) -> Result<(), ServeError> {
        Ok(self.searchable.load().index.health()?)
    }

    /// This model was swapped in: its index points what others read at itself (Milvus's alias).
    pub fn activate_index(&self) -> Result<(), ServeError> {
        Ok(self.searchable.load().index.activated()?)
    }

    /// This model was swapped out: its index releases what it holds outside the process.
    pub fn retire_index(&self) {
        self.searchable.load().index.retire();
    }

    /// The index's measured quality against brute force (None for exact search).
    pub fn index_quality(&self) -> Option<IndexQuality> {
        self.quality
    }

    /// The last re-measure of the index after live writes, if any.
    pub fn quality_now(&self) -> Option<Arc<QualityNow>> {
        self.quality_now.load_full()
    }

    /// Re-measures the index's recall@10/@100 against exact search (every slot appended so far,
    /// under the current exclusions) and keeps the figures for `/v1/model`. A brute-force pass
    /// per sample query: call it off the request path, and not after every write.
    pub fn measure_quality_now(&self) -> Result<Arc<QualityNow>, ServeError> {
        let searchable = self.searchable.load_full();
        let exact = ExactIndex::new(searchable.items.clone());
        let excluded = self.inactive.load_full();
        let filter = if excluded.is_empty() {
            Filter::All
        } else {
            Filter::Exclude(&excluded)
        };
        let (at_10, at_100) =
            recall::recall_at_10_and_100(&*searchable.index, &exact, &self.sample, filter)?;
        let measured = Arc::new(QualityNow {
            recall_at_10: at_10,
            recall_at_100: at_100,
            items: searchable.items.len(),
            queries: self.sample.len(),
            measured_at: crate::fm::artifact::rfc3339(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            ),
        });
        self.quality_now.store(Some(measured.clone()));
        Ok(measured)
    }

    /// Seconds from "model file" to "ready to serve".
    pub fn load_seconds(&self) -> f64 {
        self.load_seconds
    }

    /// When this model started serving.
    pub fn loaded_at(&self) -> std::time::SystemTime {
        self.loaded_at
    }

    /// Number of slots in the index: trained items and every version of the items written live
    /// (retired slots included).
    pub fn item_count(&self) -> usize {
        self.searchable.load().items.len()
    }

    fn resolve(&self, user: &UserSpec) -> Result<ResolvedUser<'_>, ServeError> {
        let known = user
            .id
            .as_ref()
            .and_then(|id| self.user_index.get(id))
            .copied();
        // What the user did beyond the model's train items: their stored events, then the
        // request's history (each item once).
        let mut recent = user
            .id
            .as_deref()
            .map_or_else(Vec::new, |id| self.events_of(id));
        let mut unknown = Vec::new();
        if !user.history.is_empty() {
            // A set, not `contains` on the list: a request may carry 1,000 ids.
            let mut taken: std::collections::HashSet<String> = recent.iter().cloned().collect();
            for id in &user.history {
                if self.slot_of(id).is_none() {
                    unknown.push(crate::fm::history::feature_name(id));
                } else if taken.insert(id.clone()) {
                    recent.push(id.clone());
                }
            }
        }
        // A user the model does not know but whose events (or history) are given is served from
        // no features (the items' own terms: popularity as the model learnt it) and that history.
        let no_features: Vec<String> = Vec::new();
        let features = match (&user.features, known) {
            (None, None) if !recent.is_empty() || !user.history.is_empty() => Some(&no_features),
            (features, _) => features.as_ref(),
        };
        match (known, features) {
            (Some(u), None) => {
                let (idx, val) = self.user_rows.row(u as usize);
                let row = (idx.to_vec(), val.to_vec());
                Ok(self.with_history(known, row, recent, unknown, false))
            }
            (known, Some(features)) => {
                // The id feature of a known user joins the given features; history features are
                // not side features (they come from the history).
                let mut names: Vec<&String> = Vec::with_capacity(features.len() + 1);
                if let Some(u) = known {
                    names.push(&self.artifact.meta.users[u as usize].features[0]);
                }
                for f in features {
                    if crate::fm::history::is_history_feature(f) {
                        unknown.push(f.clone());
                    } else {
                        names.push(f);
                    }
                }
                let (row, missing) = self.artifact.meta.vocabulary.encode(names);
                unknown.extend(missing);
                let row: (Vec<u32>, Vec<f32>) = row.into_iter().unzip();
                Ok(self.with_history(known, row, recent, unknown, known.is_none()))
            }
            (None, None) => Err(match &user.id {
                Some(id) => ServeError::UnknownUser(id.clone()),
                None => ServeError::NoUser,
            }),
        }
    }

    /// The user's query from their id and side features (`row`) and, when the model has history
    /// features, their current history: train history, then `recent` (events and the request's
    /// history), the most recent `max_items` of it (`fm::history`).
    fn with_history(
        &self,
        known: Option<u32>,
        row: (Vec<u32>, Vec<f32>),
        recent: Vec<String>,
        unknown: Vec<String>,
        cold: bool,
    ) -> ResolvedUser<'_> {
        let model = &self.artifact.model;
        let query = match &self.artifact.meta.history {
            Some(history) => {
                let mut items: Vec<u32> = known
                    .map(|u| history.per_user[u as usize].clone())
                    .unwrap_or_default();
                // Only trained items have a history feature (an item written live has none).
                items.extend(
                    recent
                        .iter()
                        .filter_map(|id| self.item_index.get(id).copied()),
                );
                let items = crate::fm::history::recent_distinct(&items, history.max_items);
                let features: Vec<u32> = items
                    .iter()
                    .filter_map(|&i| self.history_features.get(i as usize).copied().flatten())
                    .collect();
                let (idx, val) = crate::fm::history::with_history((&row.0, &row.1), &features);
                UserQuery::new(model, (&idx, &val))
            }
            None => UserQuery::new(model, (&row.0, &row.1)),
        };
        ResolvedUser {
            query,
            seen: known.map_or(&[], |u| &self.artifact.meta.seen[u as usize]),
            recent,
            unknown,
            cold,
        }
    }

    fn scored(&self, item: u32, score: f32) -> ScoredItem<'_> {
        let entity = self.entity(item);
        ScoredItem {
            item_id: &entity.id,
            title: entity.title.as_deref(),
            score,
            json_prefix: self.prefix(item),
        }
    }

    /// Roughly how many multiply-adds [`ServingModel::recall`] costs for `q`.
    pub fn recall_work(&self, q: &RecallQuery) -> u64 {
        self.searchable.load().index.work_estimate(q.k, q.ef)
    }

    /// The k items with the highest FM score for the user, under the query's exclusions.
    pub fn recall(&self, q: &RecallQuery) -> Result<Recalled<'_>, ServeError> {
        let user = self.resolve(&q.user)?;
        let seen = if q.exclude_seen { user.seen } else { &[] };
        let recent: &[String] = if q.exclude_seen { &user.recent } else { &[] };
        let inactive = self.recall_excluded.load();
        // The common case, only the user's own (sorted) items, needs no merged copy.
        let merged: Vec<u32>;
        let excluded: &[u32] =
            if q.exclude_items.is_empty() && inactive.is_empty() && recent.is_empty() {
                seen
            } else {
                let mut all = seen.to_vec();
                {
                    // A seen item written live since training is excluded at its new slot too.
                    let overrides = self
                        .live
                        .overrides
                        .read()
                        .unwrap_or_else(|e| e.into_inner());
                    if !overrides.moved.is_empty() {
                        all.extend(seen.iter().filter_map(|s| overrides.moved.get(s).copied()));
                    }
                }
                all.extend(q.exclude_items.iter().filter_map(|id| self.slot_of(id)));
                // Items of events since training, at their current slots.
                all.extend(recent.iter().filter_map(|id| self.slot_of(id)));
                all.extend(inactive.iter().copied());
                all.sort_unstable();
                all.dedup();
                merged = all;
                &merged
            };
        let mut unknown = user.unknown;
        let searchable = self.searchable.load();
        let allowed = q.filter.as_ref().map(|f| {
            let (allowed, missing) = self.allowed_except(f, excluded);
            unknown.extend(missing);
            allowed.for_search(searchable.items.len())
        });
        let filter = match &allowed {
            Some(allowed) => allowed.as_filter(),
            None if excluded.is_empty() => Filter::All,
            None => Filter::Exclude(excluded),
        };
        let hits = searchable
            .index
            .search(&user.query.vector, q.k, q.ef, filter)?;
        Ok(Recalled {
            items: hits
                .into_iter()
                .map(|h| self.scored(h.item, user.query.constant + h.score))
                .collect(),
            unknown_features: unknown,
            cold_start: user.cold,
        })
    }

    /// The full FM score of the user with each item, in the order given.
    pub fn score(
        &self,
        user: &UserSpec,
        item_ids: &[String],
    ) -> Result<(Vec<ScoredItem<'_>>, Vec<String>), ServeError> {
        let user = self.resolve(user)?;
        let items = &self.searchable.load().items;
        let mut out = Vec::with_capacity(item_ids.len());
        for id in item_ids {
            let i = self
                .slot_of(id)
                .ok_or_else(|| ServeError::UnknownItem(id.clone()))?;
            let s = user.query.constant
                + crate::kernels::dot(&user.query.vector, items.row(i as usize));
            out.push(self.scored(i, s));
        }
        Ok((out, user.unknown))
    }

    /// The k items whose factor vectors are closest in cosine to this item's (itself and inactive
    /// items left out), among those `filter` allows; with the filter's unknown features and ids.
    pub fn similar(
        &self,
        item_id: &str,
        k: usize,
        filter: Option<&ItemFilter>,
    ) -> Result<(Vec<ScoredItem<'_>>, Vec<String>), ServeError> {
        let i = self
            .slot_of(item_id)
            .ok_or_else(|| ServeError::UnknownItem(item_id.to_string()))?;
        let directions = ExactIndex::new(self.searchable.load().directions.clone());
        let query = directions.vectors().row(i as usize).to_vec();
        let mut excluded: Vec<u32> = self.inactive.load().iter().copied().collect();
        excluded.push(i);
        excluded.sort_unstable();
        excluded.dedup();
        let (allowed, unknown) = match filter {
            Some(f) => self.allowed_except(f, &excluded),
            None => (filter::Allowed::AllBut(excluded), Vec::new()),
        };
        let hits = directions.search(&query, k, None, allowed.as_filter())?;
        let items = hits
            .into_iter()
            .map(|h| self.scored(h.item, h.score))
            .collect();
        Ok((items, unknown))
    }
}

fn index_of<'a>(ids: impl Iterator<Item = &'a String>) -> HashMap<String, u32> {
    ids.enumerate()
        .map(|(i, id)| (id.clone(), i as u32))
        .collect()
}

/// q_i (without the bias coordinate) scaled to unit length; zero vectors stay zero.
fn unit_directions(items: &ItemVectors) -> ItemVectors {
    let k = items.dim() - 1;
    let mut data = Vec::with_capacity(items.len() * k);
    for i in 0..items.len() {
        let q = &items.row(i)[..k];
        let norm = crate::kernels::dot(q, q).sqrt();
        let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        data.extend(q.iter().map(|x| x * scale));
    }
    ItemVectors::from_raw(k.max(1), data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_written_from_its_prefix_is_what_serde_json_writes() {
        let ids = [
            "1",
            "a \"quoted\" id",
            "back\\slash",
            "tab\tnew\nline\u{1}",
            "ünï €😀",
        ];
        let titles = [
            None,
            Some("Toy Story (1995)"),
            Some("\"\\/\u{7f}\u{1f}"),
            Some(""),
        ];
        let scores = [0.0, -0.0, 1.5, -3.25e-7, 1e30, f32::NAN, f32::INFINITY];
        for id in ids {
            for title in titles {
                let prefix = json_prefix(id, title).unwrap();
                for score in scores {
                    let item = ScoredItem {
                        item_id: id,
                        title,
                        score,
                        json_prefix: &prefix,
                    };
                    let mut fast = Vec::new();
                    item.write_json(&mut fast).unwrap();
                    let reference = serde_json::to_vec(&item).unwrap();
                    assert_eq!(
                        String::from_utf8(fast).unwrap(),
                        String::from_utf8(reference).unwrap()
                    );
                }
            }
        }
    }
}
