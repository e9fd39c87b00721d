//! The feature vocabulary (feature name → column of the FM) and sparse feature rows.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Dataset, Entity};

/// Maps feature names (`user:196`, `genre:Drama`) to dense indices of the model's parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct FeatureVocabulary {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl From<Vec<String>> for FeatureVocabulary {
    fn from(names: Vec<String>) -> Self {
        let mut v = FeatureVocabulary::default();
        for n in names {
            v.insert(&n);
        }
        v
    }
}

impl From<FeatureVocabulary> for Vec<String> {
    fn from(v: FeatureVocabulary) -> Self {
        v.names
    }
}

impl FeatureVocabulary {
    /// The vocabulary a model trained on `dataset` knows: every feature of every item of the
    /// catalog except the held-out ones, and every feature of the users that have at least one
    /// train interaction. Users seen only in the test part (held-out users among them) and held-out
    /// items stay unknown, as they would be to a model in production: they are ranked from the
    /// features they share with the others.
    pub fn from_train(dataset: &Dataset) -> Self {
        let in_train = dataset.users_in_train();
        let mut v = FeatureVocabulary::default();
        for (u, _) in in_train.iter().enumerate().filter(|(_, &t)| t) {
            for f in &dataset.users[u].features {
                v.insert(f);
            }
        }
        for (i, item) in dataset.items.iter().enumerate() {
            if dataset.held_out.item(i as u32) {
                continue;
            }
            for f in &item.features {
                v.insert(f);
            }
        }
        v
    }

    /// The same vocabulary with these features added after the others (present ones are kept).
    pub fn with_features<S: AsRef<str>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        for name in names {
            self.insert(name.as_ref());
        }
        self
    }

    fn insert(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        i
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no features.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The index of a feature name.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// The name of feature `index`.
    pub fn name(&self, index: u32) -> &str {
        &self.names[index as usize]
    }

    /// Encodes feature names as (index, value 1) pairs; returns the names the vocabulary does not
    /// know, which are ignored.
    pub fn encode<'a, S: AsRef<str> + 'a>(
        &self,
        features: impl IntoIterator<Item = &'a S>,
    ) -> (Vec<(u32, f32)>, Vec<String>) {
        let mut row: Vec<(u32, f32)> = Vec::new();
        let mut unknown = Vec::new();
        for f in features {
            match self.get(f.as_ref()) {
                Some(i) if !row.iter().any(|&(j, _)| j == i) => row.push((i, 1.0)),
                Some(_) => {}
                None => unknown.push(f.as_ref().to_string()),
            }
        }
        (row, unknown)
    }
}

/// Sparse feature rows in compressed-row form: row `r` is `indices[offsets[r]..offsets[r+1]]` with
/// the matching `values`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureRows {
    offsets: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
    /// Whether some row is not exactly one feature of value 1. While none is (ids-only models),
    /// row `r` is `indices[r]` and [`FeatureRows::row`] reads that one array: the trainer's
    /// random rows cost one cache miss instead of three dependent ones (offsets, indices,
    /// values) before the factor row.
    general: bool,
}

/// The value of every feature of a row in unit form.
static UNIT: [f32; 1] = [1.0];

impl FeatureRows {
    /// Encodes each entity's features with the vocabulary (unknown features are dropped).
    pub fn encode(vocab: &FeatureVocabulary, entities: &[Entity]) -> Self {
        let mut rows = FeatureRows {
            offsets: vec![0],
            ..Default::default()
        };
        for e in entities {
            let (row, _) = vocab.encode(&e.features);
            rows.push(&row);
        }
        rows
    }

    /// Encodes each entity's features, leaving out the id feature (`features[0]`) of every entity
    /// `e` for which `drop_id(e)` holds: how held-out users and items are seen (from their side
    /// features alone), and how id dropout sees everyone.
    pub fn encode_dropping_ids(
        vocab: &FeatureVocabulary,
        entities: &[Entity],
        drop_id: impl Fn(u32) -> bool,
    ) -> Self {
        let mut rows = FeatureRows {
            offsets: vec![0],
            ..Default::default()
        };
        for (e, entity) in entities.iter().enumerate() {
            let skip = usize::from(drop_id(e as u32));
            let (row, _) = vocab.encode(entity.features.iter().skip(skip));
            rows.push(&row);
        }
        rows
    }

    /// Appends one row.
    pub fn push(&mut self, row: &[(u32, f32)]) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        if !matches!(row, [(_, x)] if *x == 1.0) {
            self.general = true;
        }
        for &(i, x) in row {
            self.indices.push(i);
            self.values.push(x);
        }
        self.offsets.push(self.indices.len());
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same rows, each followed by the history features of `histories[r]` (vocabulary
    /// indices) weighted 1/√n (`fm::history`).
    pub fn with_histories(&self, histories: &[Vec<u32>]) -> FeatureRows {
        let mut out = FeatureRows {
            offsets: vec![0],
            ..Default::default()
        };
        for (r, history) in histories.iter().enumerate().take(self.len()) {
            let (idx, val) = crate::fm::history::with_history(self.row(r), history);
            let row: Vec<(u32, f32)> = idx.into_iter().zip(val).collect();
            out.push(&row);
        }
        out
    }

    /// Feature indices and values of row `r`. **Panics** if `r` is out of range.
    #[inline]
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        if !self.general {
            return (std::slice::from_ref(&self.indices[r]), &UNIT);
        }
        let (a, b) = (self.offsets[r], self.offsets[r + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_as_pushed_in_unit_and_general_form() {
        let unit_rows = [vec![(4, 1.0)], vec![(0, 1.0)], vec![(9, 1.0)]];
        let mut rows = FeatureRows::default();
        for row in &unit_rows {
            rows.push(row);
        }
        assert!(!rows.general);
        // A row of two features, an empty row and a weighted one turn the general form on.
        let general_rows = [vec![(1, 1.0), (2, 1.0)], vec![], vec![(3, 0.5)]];
        let mut mixed = rows.clone();
        for row in &general_rows {
            mixed.push(row);
        }
        assert!(mixed.general);
        for (r, row) in unit_rows.iter().chain(&general_rows).enumerate() {
            let (idx, val) = mixed.row(r);
            let read: Vec<(u32, f32)> = idx.iter().copied().zip(val.iter().copied()).collect();
            assert_eq!(&read, row, "row {r}");
            if r < unit_rows.len() {
                assert_eq!(rows.row(r), mixed.row(r));
            }
        }
        assert_eq!((rows.len(), mixed.len()), (3, 6));
    }
}
