//! Items written while the model serves (`PUT /v1/items/{id}`): a new item, or a trained one whose
//! features changed, gets its exported vector [q_i; b_i] from the features the model knows (the
//! same sums as a trained item's, `fm::export`) and a new *slot* after the trained ones: a row
//! appended to the item vectors and inserted into the index while it serves. A published row is
//! never rewritten, so a changed item moves to a new slot and its old slot is *retired* (excluded
//! from every answer, like a deactivated item); a deleted item's slot is retired too.
//!
//! Requests read the slots without locks (`boxcar`'s entries keep their address) and the id → slot
//! overrides under a read lock; writes are serialised by one writer lock. The catalog in the
//! database is the truth: [`ServingModel::apply_catalog`] replays it onto a freshly loaded model and
//! onto other replicas, skipping what is already served, so a restart, a reload or a new model
//! loses nothing written live.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::Serialize;

use super::{json_prefix, ServeError, ServingModel};
use crate::data::{CatalogItem, Entity};
use crate::fm::export::item_vector;
use crate::recall::RecallIndex;
use crate::vectors::ItemVectors;

/// What recall searches: the item vectors, the index over them and the unit directions `similar`
/// compares. Swapped whole when the vectors grow past their capacity.
pub(super) struct Searchable {
    pub items: Arc<ItemVectors>,
    pub index: Arc<dyn RecallIndex>,
    /// q_i scaled to unit length (the bias coordinate left out), for cosine similarity.
    pub directions: Arc<ItemVectors>,
}

/// Room for this many rows beyond the trained items when a model loads: an eighth more, at least
/// 1,024; past it the vectors double (a copy made while the old one serves).
pub(super) fn initial_capacity(trained: usize) -> usize {
    trained + (trained / 8).max(1024)
}

/// An item in a slot after the trained ones.
pub(super) struct LiveEntry {
    pub entity: Entity,
    pub json_prefix: String,
}

/// What a write left an id as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Written {
    /// Served from this slot.
    Slot(u32),
    /// Deleted.
    Deleted,
    /// Stored with no feature this model knows: not recalled.
    NoKnownFeature,
}

/// Where written ids point now, and which slots are no longer served.
#[derive(Default)]
pub(super) struct Overrides {
    /// Ids written since the model loaded.
    current: HashMap<String, Written>,
    /// A trained slot whose item moved → its current slot: the seen lists hold trained slots.
    pub moved: HashMap<u32, u32>,
    /// Superseded and deleted slots, never returned (sorted).
    retired: Vec<u32>,
    /// Those of them the index does not leave out itself ([`RecallIndex::remove`]), which recall
    /// must exclude (sorted).
    retired_in_index: Vec<u32>,
}

/// The written state of a model's catalog.
pub(super) struct LiveItems {
    /// Slot `trained + i` is `entries[i]`.
    entries: boxcar::Vec<LiveEntry>,
    pub overrides: RwLock<Overrides>,
    /// One write at a time (slots are handed out in order).
    writer: Mutex<()>,
}

impl Default for LiveItems {
    fn default() -> Self {
        LiveItems {
            entries: boxcar::Vec::new(),
            overrides: RwLock::new(Overrides::default()),
            writer: Mutex::new(()),
        }
    }
}

/// How much of the catalog was written since training.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LiveCounts {
    /// Items the model did not train on, now served from their features.
    pub added: usize,
    /// Trained items served with changed features (their vector recomputed).
    pub updated: usize,
    /// Items deleted.
    pub deleted: usize,
    /// Items stored with no feature this model knows: kept in the catalog, not recalled.
    pub not_recallable: usize,
    /// Rows appended to the index (every version of every written item).
    pub slots_appended: usize,
}

/// An item as a write gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemWrite {
    /// External id.
    pub id: String,
    /// Title, if any.
    pub title: Option<String>,
    /// Side features (`genre:g3`); a trained item keeps its id feature.
    pub features: Vec<String>,
}

/// What a write did to the serving model.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ItemWritten {
    /// Id.
    pub item_id: String,
    /// Whether recall can return it: false when the model knows none of its features.
    pub recallable: bool,
    /// Whether the model trained on this id (its id feature is kept).
    pub trained: bool,
    /// Given features the model does not know (stored, ignored by this model).
    pub unknown_features: Vec<String>,
}

impl Overrides {
    /// Retires `slot`: left out by the index itself when it can, by the exclusion list otherwise.
    fn retire(&mut self, slot: u32, index: &dyn RecallIndex) {
        self.retired.push(slot);
        if !index.remove(slot) {
            self.retired_in_index.push(slot);
        }
    }

    fn sort(&mut self) {
        for list in [&mut self.retired, &mut self.retired_in_index] {
            list.sort_unstable();
            list.dedup();
        }
    }

    /// The slot serving `id` now (`trained`: its trained slot, if any).
    fn served_slot(&self, id: &str, trained: Option<u32>) -> Option<u32> {
        match self.current.get(id) {
            Some(Written::Slot(slot)) => Some(*slot),
            Some(_) => None,
            None => trained,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read(o: &RwLock<Overrides>) -> std::sync::RwLockReadGuard<'_, Overrides> {
    o.read().unwrap_or_else(PoisonError::into_inner)
}

fn unit(q: &[f32]) -> Vec<f32> {
    let norm = crate::kernels::dot(q, q).sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    q.iter().map(|x| x * scale).collect()
}

/// A planned change to one id.
enum Change {
    /// Served as it is (same features and title): nothing to do.
    Same,
    /// A new slot with this vector.
    Slot(Entity, Vec<f32>),
    /// No known feature: retire whatever it had.
    Unservable,
}

impl ServingModel {
    /// Number of trained items (slots below it are the artifact's items).
    fn trained(&self) -> u32 {
        self.artifact.meta.items.len() as u32
    }

    /// The item in `slot` (trained or written live).
    pub(super) fn entity(&self, slot: u32) -> &Entity {
        match slot.checked_sub(self.trained()) {
            None => &self.artifact.meta.items[slot as usize],
            Some(i) => &self.live_entry(i).entity,
        }
    }

    pub(super) fn prefix(&self, slot: u32) -> &str {
        match slot.checked_sub(self.trained()) {
            None => self.item_json.prefix(slot),
            Some(i) => &self.live_entry(i).json_prefix,
        }
    }

    fn live_entry(&self, i: u32) -> &LiveEntry {
        // Every slot an index or a list returns was pushed before it was published.
        &self.live.entries[i as usize]
    }

    /// The current slot of an item id: its live slot when it was written, else its trained slot;
    /// `None` when unknown, deleted or not recallable.
    pub(super) fn slot_of(&self, id: &str) -> Option<u32> {
        match read(&self.live.overrides).current.get(id) {
            Some(Written::Slot(slot)) => Some(*slot),
            Some(_) => None,
            None => self.item_index.get(id).copied(),
        }
    }

    /// What was written since training.
    pub fn live_counts(&self) -> LiveCounts {
        let o = read(&self.live.overrides);
        let mut counts = LiveCounts {
            slots_appended: self.live.entries.count(),
            ..LiveCounts::default()
        };
        for (id, written) in &o.current {
            match written {
                Written::Slot(_) if self.item_index.contains_key(id) => counts.updated += 1,
                Written::Slot(_) => counts.added += 1,
                Written::Deleted => counts.deleted += 1,
                Written::NoKnownFeature => counts.not_recallable += 1,
            }
        }
        counts
    }

    /// The slot of every item served now: trained items in catalog order (at their current slot),
    /// then the items added live, oldest first.
    pub(super) fn served_slots(&self) -> Vec<u32> {
        let o = read(&self.live.overrides);
        let items = &self.artifact.meta.items;
        let mut slots: Vec<u32> = items
            .iter()
            .enumerate()
            .filter_map(|(i, e)| o.served_slot(&e.id, Some(i as u32)))
            .collect();
        let mut added: Vec<u32> = o
            .current
            .iter()
            .filter(|(id, _)| !self.item_index.contains_key(id.as_str()))
            .filter_map(|(_, w)| match w {
                Written::Slot(s) => Some(*s),
                _ => None,
            })
            .collect();
        added.sort_unstable();
        slots.extend(added);
        slots
    }

    /// Where a trained slot's item is served now (itself unless its features were changed).
    pub(super) fn moved_to(&self, slot: u32) -> u32 {
        read(&self.live.overrides)
            .moved
            .get(&slot)
            .copied()
            .unwrap_or(slot)
    }

    /// Whether `slot` holds an item written live (not a trained one).
    pub(super) fn is_live(&self, slot: u32) -> bool {
        slot >= self.trained()
    }

    /// The slots of the items written live that are served now, newest first.
    pub(super) fn live_slots(&self) -> Vec<u32> {
        let mut slots: Vec<u32> = read(&self.live.overrides)
            .current
            .values()
            .filter_map(|w| match w {
                Written::Slot(s) => Some(*s),
                _ => None,
            })
            .collect();
        slots.sort_unstable_by(|a, b| b.cmp(a));
        slots
    }

    /// Creates or replaces items from their features. Each gets the vector the model computes
    /// from the features it knows (a trained item keeps its id feature), is inserted into the
    /// index and is recallable when this returns; an item whose features all are unknown is not
    /// recalled (a zero vector would rank by the user's terms alone, above every item the model
    /// scores below zero). Unchanged items are left as they are. Runs the index insert: call it
    /// off the async workers for large batches.
    pub fn upsert_items(&self, writes: &[ItemWrite]) -> Result<Vec<ItemWritten>, ServeError> {
        let _one_writer = lock(&self.live.writer);
        let meta = &self.artifact.meta;
        let mut plans = Vec::with_capacity(writes.len());
        let mut answers = Vec::with_capacity(writes.len());
        for w in writes {
            let trained = self.item_index.get(&w.id).copied();
            let id_feature = trained.map(|t| meta.items[t as usize].features[0].clone());
            let mut features: Vec<String> = id_feature.iter().cloned().collect();
            features.extend(
                w.features
                    .iter()
                    .filter(|f| id_feature.as_ref() != Some(f))
                    .cloned(),
            );
            // The id feature (first, as training encoded it) is never reported unknown.
            let (row, mut unknown) = meta.vocabulary.encode(&features);
            unknown.retain(|f| w.features.contains(f));
            let entity = Entity {
                id: w.id.clone(),
                title: w.title.clone(),
                features,
            };
            let change = if row.is_empty() {
                Change::Unservable
            } else if self.serves_unchanged(trained, &entity, &row) {
                Change::Same
            } else {
                let (idx, val): (Vec<u32>, Vec<f32>) = row.into_iter().unzip();
                let vector = item_vector(&self.artifact.model, (&idx, &val));
                // A non-finite row would be refused by the index after it was appended, and
                // every later row with it (rows are linked in order): never append one.
                if vector.iter().all(|x| x.is_finite()) {
                    Change::Slot(entity, vector)
                } else {
                    tracing::warn!(item = %entity.id, "the item's vector is not finite; not recalled");
                    Change::Unservable
                }
            };
            answers.push(ItemWritten {
                item_id: w.id.clone(),
                recallable: !matches!(change, Change::Unservable),
                trained: trained.is_some(),
                unknown_features: unknown,
            });
            plans.push((w.id.clone(), trained, change));
        }
        self.apply_plans(plans)?;
        Ok(answers)
    }

    /// Whether the model serves `entity`'s id now with the same title and the same known
    /// features (`row`): then its vector would not change.
    fn serves_unchanged(&self, trained: Option<u32>, entity: &Entity, row: &[(u32, f32)]) -> bool {
        let current = read(&self.live.overrides).current.get(&entity.id).copied();
        let served = match (current, trained) {
            (Some(Written::Slot(slot)), _) => self.entity(slot),
            (Some(_), _) | (None, None) => return false,
            (None, Some(t)) => &self.artifact.meta.items[t as usize],
        };
        let known = |row: &[(u32, f32)]| {
            let mut ids: Vec<u32> = row.iter().map(|&(j, _)| j).collect();
            ids.sort_unstable();
            ids
        };
        served.title == entity.title
            && known(&self.artifact.meta.vocabulary.encode(&served.features).0) == known(row)
    }

    /// Removes items from every answer; returns, per id, whether this model served it.
    pub fn delete_items(&self, ids: &[String]) -> Vec<bool> {
        let _one_writer = lock(&self.live.writer);
        let index = self.searchable.load().index.clone();
        let mut existed = Vec::with_capacity(ids.len());
        {
            let mut o = self
                .live
                .overrides
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for id in ids {
                let trained = self.item_index.get(id).copied();
                let old = o.served_slot(id, trained);
                existed.push(old.is_some() || o.current.get(id) == Some(&Written::NoKnownFeature));
                if let Some(slot) = old {
                    o.retire(slot, &*index);
                }
                if let Some(t) = trained {
                    o.moved.remove(&t);
                }
                if old.is_some() || o.current.contains_key(id) {
                    o.current.insert(id.clone(), Written::Deleted);
                }
            }
            o.sort();
        }
        self.refresh_excluded();
        existed
    }

    fn apply_plans(&self, plans: Vec<(String, Option<u32>, Change)>) -> Result<(), ServeError> {
        // A replay of rows already served (every poll re-reads a window of the change log)
        // changes nothing: no exclusion lists to rebuild.
        if plans.iter().all(|(_, _, c)| matches!(c, Change::Same)) {
            return Ok(());
        }
        let (first, index) = {
            let searchable = self.searchable.load();
            (searchable.items.len() as u32, searchable.index.clone())
        };
        let mut rows: Vec<Vec<f32>> = Vec::new();
        {
            let mut o = self
                .live
                .overrides
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for (id, trained, change) in plans {
                let old = o.served_slot(&id, trained);
                let new = match change {
                    Change::Same => continue,
                    Change::Unservable => Written::NoKnownFeature,
                    Change::Slot(entity, vector) => {
                        let slot = first + rows.len() as u32;
                        let json = json_prefix(&entity.id, entity.title.as_deref())
                            .map_err(ServeError::Render)?;
                        self.postings.add(slot, &entity.features);
                        // The entry exists before its row is published, so any slot a search
                        // can return has one.
                        let at = self.live.entries.push(LiveEntry {
                            entity,
                            json_prefix: json,
                        });
                        debug_assert_eq!(at as u32 + self.trained(), slot);
                        rows.push(vector);
                        Written::Slot(slot)
                    }
                };
                if let Some(slot) = old {
                    o.retire(slot, &*index);
                }
                if let Some(t) = trained {
                    match new {
                        Written::Slot(slot) => o.moved.insert(t, slot),
                        _ => o.moved.remove(&t),
                    };
                }
                o.current.insert(id, new);
            }
            o.sort();
        }
        // Old versions leave the answers before the new rows can enter them.
        self.refresh_excluded();
        self.append_rows(first, &rows)
    }

    /// Publishes `rows` as slots `first..` and inserts them into the index, growing the vectors
    /// (a doubled copy swapped in while the old one serves) when their capacity is used up.
    fn append_rows(&self, first: u32, rows: &[Vec<f32>]) -> Result<(), ServeError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut current = self.searchable.load_full();
        if current.items.len() + rows.len() > current.items.capacity() {
            let capacity = (current.items.len() + rows.len()).max(2 * current.items.capacity());
            let items = Arc::new(current.items.with_capacity(capacity));
            let directions = Arc::new(current.directions.with_capacity(capacity));
            let index = current.index.regrown(items.clone())?;
            current = Arc::new(Searchable {
                items,
                index,
                directions,
            });
            self.searchable.store(current.clone());
            tracing::info!(capacity, "item vectors grown");
        }
        let k = current.items.dim() - 1;
        for row in rows {
            // Capacity was planned above, and the writer lock keeps other appenders out.
            let pushed = current.items.push(row);
            current.directions.push(&unit(&row[..k]));
            debug_assert!(pushed.is_some());
        }
        current.index.insert(first, rows.len())?;
        Ok(())
    }

    /// Recomputes the excluded slots: deactivated ids (at their current slots) and retired slots
    /// (for recall, those the index does not leave out itself).
    pub(super) fn refresh_excluded(&self) {
        let ids = self.inactive_ids.load();
        let deactivated: Vec<u32> = ids.iter().filter_map(|id| self.slot_of(id)).collect();
        let o = read(&self.live.overrides);
        let merged = |retired: &[u32]| {
            let mut slots = deactivated.clone();
            slots.extend_from_slice(retired);
            slots.sort_unstable();
            slots.dedup();
            Arc::new(slots)
        };
        self.inactive.store(merged(&o.retired));
        self.recall_excluded.store(merged(&o.retired_in_index));
    }

    /// Replays the catalog's items onto this model: every row is upserted (unchanged ones are
    /// skipped) and every deleted id deleted. What a freshly loaded model and a replica that saw
    /// changes in the database run; returns how many rows it applied.
    pub fn apply_catalog(&self, rows: &[CatalogItem]) -> Result<usize, ServeError> {
        let (deleted, kept): (Vec<&CatalogItem>, Vec<&CatalogItem>) =
            rows.iter().partition(|r| r.deleted);
        let gone: Vec<String> = deleted
            .into_iter()
            .filter(|r| self.slot_of(&r.id).is_some())
            .map(|r| r.id.clone())
            .collect();
        if !gone.is_empty() {
            self.delete_items(&gone);
        }
        let writes: Vec<ItemWrite> = kept
            .into_iter()
            .map(|r| ItemWrite {
                id: r.id.clone(),
                title: r.title.clone(),
                features: r.features.clone(),
            })
            .collect();
        for chunk in writes.chunks(1024) {
            self.upsert_items(chunk)?;
        }
        Ok(rows.len())
    }
}
