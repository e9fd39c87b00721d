//! What users did since the model was trained (`POST /v1/events`), as serving uses it: per user,
//! the items of their stored events that the model did not train on as theirs, in the order they
//! arrived. Recall leaves them out like train items (`exclude_seen`).
//!
//! The catalog's `events` table is the truth: a model swapped in is filled from every stored event
//! before it serves (an event whose item is already among the user's train items adds nothing, so
//! a table that also holds the training data costs a read, not memory); each registry poll adds the
//! rows stored since (with a window behind, `LiveModel`); the write route adds its events at once.
//! Adding a pair twice changes nothing, so the three paths may overlap freely.
//!
//! With history features (`fm::history`) these items, in this order, follow the user's train
//! history in their vector. An event on an item the model already counts as the user's (their
//! `seen` list) adds nothing, so re-watching an old film does not make it recent again: the price
//! of not replaying imported training data as if it were new.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use super::ServingModel;
use crate::store::EventPair;

/// Per user id, the item ids of their events beyond their train items, oldest first, each once.
#[derive(Default)]
pub(super) struct UserEvents {
    by_user: RwLock<HashMap<String, Items>>,
}

/// One user's items: in arrival order, and as a set (every poll re-reads a window of rows).
#[derive(Default)]
struct Items {
    order: Vec<String>,
    set: HashSet<String>,
}

impl ServingModel {
    /// Adds stored events; returns how many (user, item) pairs were new to this model. Pairs whose
    /// item is among the user's train items are already excluded and add nothing.
    pub fn add_events(&self, events: &[EventPair]) -> usize {
        let mut added = 0;
        let mut by_user = self
            .events
            .by_user
            .write()
            .unwrap_or_else(|e| e.into_inner());
        for e in events {
            if self.trained_on(&e.user_id, &e.item_id) {
                continue;
            }
            let items = by_user.entry(e.user_id.clone()).or_default();
            if items.set.insert(e.item_id.clone()) {
                items.order.push(e.item_id.clone());
                added += 1;
            }
        }
        added
    }

    /// The item ids of a user's events beyond their train items, oldest first.
    pub fn events_of(&self, user_id: &str) -> Vec<String> {
        self.events
            .by_user
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(user_id)
            .map(|items| items.order.clone())
            .unwrap_or_default()
    }

    /// Whether the catalog holds events of this user id that this model serves from.
    pub fn has_events(&self, user_id: &str) -> bool {
        self.events
            .by_user
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(user_id)
    }

    /// Users with events beyond their train items, and those events (for `/v1/model`).
    pub fn event_counts(&self) -> (usize, usize) {
        let by_user = self
            .events
            .by_user
            .read()
            .unwrap_or_else(|e| e.into_inner());
        (by_user.len(), by_user.values().map(|i| i.order.len()).sum())
    }

    /// Whether the model trained on this interaction as the user's (their `seen` list).
    fn trained_on(&self, user_id: &str, item_id: &str) -> bool {
        match (self.user_index.get(user_id), self.item_index.get(item_id)) {
            (Some(&u), Some(&i)) => self.artifact.meta.seen[u as usize]
                .binary_search(&i)
                .is_ok(),
            _ => false,
        }
    }
}
