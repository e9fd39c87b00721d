//! Filters on item features and ids, in the shape Qdrant's clients know: `must` (all of),
//! `should` (at least one of, when given) and `must_not` (none of), each a list of conditions
//! `{"key": "genre", "match": {"value": "Comedy"}}`, `{"key": "genre", "match": {"any": [...]}}` or
//! `{"has_id": [...]}`. A feature condition `key`/`value` matches the items with feature
//! `key:value`. Evaluated over per-feature posting lists of slots (`FeaturePostings`), kept right
//! as items are written live.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use serde::Deserialize;
use utoipa::ToSchema;

use super::ServingModel;
use crate::data::Entity;
use crate::recall::{Filter, FilterSet};

/// A filter on the items a query may return.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"must": [{"key": "genre", "match": {"any": ["Comedy", "Drama"]}}],
    "must_not": [{"key": "decade", "match": {"value": "1970s"}}]}))]
pub struct ItemFilter {
    /// Every condition holds.
    #[serde(default)]
    pub must: Vec<Condition>,
    /// At least one condition holds (ignored when empty).
    #[serde(default)]
    pub should: Vec<Condition>,
    /// No condition holds.
    #[serde(default)]
    pub must_not: Vec<Condition>,
}

/// One condition: a feature's value(s), or item ids.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum Condition {
    /// The item has feature `key:value` for the value (or one of the values) given.
    Match {
        /// Feature name, the part before the colon (`genre`).
        key: String,
        /// The value(s).
        #[serde(rename = "match")]
        matches: MatchValue,
    },
    /// The item's id is one of these.
    HasId {
        /// Item ids.
        has_id: Vec<String>,
    },
}

/// `{"value": v}` or `{"any": [v, …]}`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MatchValue {
    /// Exactly this value.
    Value(String),
    /// Any of these values.
    Any(Vec<String>),
}

impl Condition {
    /// The features (`key:value`) or ids it names.
    fn names(&self) -> Vec<String> {
        match self {
            Condition::Match { key, matches } => match matches {
                MatchValue::Value(v) => vec![format!("{key}:{v}")],
                MatchValue::Any(vs) => vs.iter().map(|v| format!("{key}:{v}")).collect(),
            },
            Condition::HasId { has_id } => has_id.clone(),
        }
    }
}

impl ItemFilter {
    /// Every condition with its place (`must[2]`), for validation messages.
    pub fn conditions(&self) -> impl Iterator<Item = (String, &Condition)> {
        self.must
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("must[{i}]"), c))
            .chain(
                self.should
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("should[{i}]"), c)),
            )
            .chain(
                self.must_not
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("must_not[{i}]"), c)),
            )
    }

    /// How many values (features and ids) it names in all.
    pub fn size(&self) -> usize {
        self.conditions().map(|(_, c)| c.names().len()).sum()
    }
}

/// Which slots a filter leaves: exactly these, or all but these (sorted, no duplicates).
#[derive(Debug, Clone, PartialEq)]
pub enum Allowed {
    /// Only these slots.
    Only(Vec<u32>),
    /// Every slot but these.
    AllBut(Vec<u32>),
}

/// Per feature (`genre:Comedy`, and every item's id feature), the sorted slots that have it.
#[derive(Default)]
pub(super) struct FeaturePostings {
    lists: RwLock<HashMap<String, Vec<u32>>>,
}

impl FeaturePostings {
    /// The postings of the trained items (slot = index).
    pub fn new(items: &[Entity]) -> Self {
        let mut lists: HashMap<String, Vec<u32>> = HashMap::new();
        for (slot, item) in items.iter().enumerate() {
            for f in &item.features {
                lists.entry(f.clone()).or_default().push(slot as u32);
            }
        }
        FeaturePostings {
            lists: RwLock::new(lists),
        }
    }

    /// Adds a slot written live (slots only grow, so lists stay sorted).
    pub fn add(&self, slot: u32, features: &[String]) {
        let mut lists = self.lists.write().unwrap_or_else(PoisonError::into_inner);
        for f in features {
            lists.entry(f.clone()).or_default().push(slot);
        }
    }

    /// The union of the lists of `features`; the features no item has are returned apart.
    fn union(&self, features: &[String]) -> (Vec<u32>, Vec<String>) {
        let lists = self.lists.read().unwrap_or_else(PoisonError::into_inner);
        let mut slots = Vec::new();
        let mut unknown = Vec::new();
        for f in features {
            match lists.get(f) {
                Some(list) => slots.extend_from_slice(list),
                None => unknown.push(f.clone()),
            }
        }
        slots.sort_unstable();
        slots.dedup();
        (slots, unknown)
    }
}

/// Sorted intersection.
fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Sorted `a` without the elements of sorted `b`.
pub(super) fn subtract(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut j = 0;
    a.iter()
        .copied()
        .filter(|&x| {
            while j < b.len() && b[j] < x {
                j += 1;
            }
            j >= b.len() || b[j] != x
        })
        .collect()
}

/// Sorted union.
pub(super) fn union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out.sort_unstable();
    out.dedup();
    out
}

impl ServingModel {
    /// The slots one condition matches (current versions only), and the features or ids in it
    /// that match no item.
    fn matching(&self, condition: &Condition) -> (Vec<u32>, Vec<String>) {
        match condition {
            Condition::HasId { has_id } => {
                let mut slots: Vec<u32> = Vec::new();
                let mut unknown = Vec::new();
                for id in has_id {
                    match self.slot_of(id) {
                        Some(s) => slots.push(s),
                        None => unknown.push(id.clone()),
                    }
                }
                slots.sort_unstable();
                slots.dedup();
                (slots, unknown)
            }
            Condition::Match { .. } => self.postings.union(&condition.names()),
        }
    }

    /// The slots `filter` allows, and the features and ids it names that match no item (they
    /// match nothing, as an unknown user feature counts for nothing). Retired slots may be in an
    /// `Only` list: the caller's exclusions remove them.
    pub fn allowed(&self, filter: &ItemFilter) -> (Allowed, Vec<String>) {
        let mut unknown = Vec::new();
        let mut eval = |c: &Condition| {
            let (slots, missing) = self.matching(c);
            unknown.extend(missing);
            slots
        };
        let mut only: Option<Vec<u32>> = None;
        for c in &filter.must {
            let slots = eval(c);
            only = Some(match only {
                None => slots,
                Some(prev) => intersect(&prev, &slots),
            });
        }
        if !filter.should.is_empty() {
            let any = filter
                .should
                .iter()
                .fold(Vec::new(), |acc, c| union(&acc, &eval(c)));
            only = Some(match only {
                None => any,
                Some(prev) => intersect(&prev, &any),
            });
        }
        let not = filter
            .must_not
            .iter()
            .fold(Vec::new(), |acc, c| union(&acc, &eval(c)));
        let allowed = match only {
            Some(list) => Allowed::Only(subtract(&list, &not)),
            None => Allowed::AllBut(not),
        };
        (allowed, unknown)
    }

    /// [`ServingModel::allowed`] with the request's `excluded` slots (sorted) taken out.
    pub fn allowed_except(&self, filter: &ItemFilter, excluded: &[u32]) -> (Allowed, Vec<String>) {
        let (allowed, unknown) = self.allowed(filter);
        let allowed = match allowed {
            Allowed::Only(list) => Allowed::Only(subtract(&list, excluded)),
            Allowed::AllBut(not) => Allowed::AllBut(union(excluded, &not)),
        };
        (allowed, unknown)
    }
}

impl Allowed {
    /// The index's view of these slots.
    pub fn as_filter(&self) -> Filter<'_> {
        match self {
            Allowed::Only(list) => Filter::Only(list),
            Allowed::AllBut(list) => Filter::Exclude(list),
        }
    }

    /// The same slots of `n` in the form the index looks up fastest ([`FilterSet::for_search`]).
    pub fn for_search(self, n: usize) -> FilterSet {
        match self {
            Allowed::Only(list) => FilterSet::Only(list),
            Allowed::AllBut(list) => FilterSet::Exclude(list),
        }
        .for_search(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_set_operations() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[3, 4, 5]), vec![3, 5]);
        assert_eq!(subtract(&[1, 3, 5, 7], &[0, 3, 7, 9]), vec![1, 5]);
        assert_eq!(union(&[1, 5], &[3, 5]), vec![1, 3, 5]);
    }

    #[test]
    fn conditions_parse_in_qdrant_shape() {
        let f: ItemFilter = serde_json::from_value(serde_json::json!({
            "must": [{"key": "genre", "match": {"any": ["a", "b"]}}],
            "must_not": [{"has_id": ["7"]}, {"key": "decade", "match": {"value": "1990s"}}]
        }))
        .unwrap();
        assert_eq!(f.size(), 4);
        assert_eq!(f.must[0].names(), vec!["genre:a", "genre:b"]);
        assert!(
            serde_json::from_value::<ItemFilter>(serde_json::json!({"must": [{"key": "g"}]}))
                .is_err()
        );
    }
}
