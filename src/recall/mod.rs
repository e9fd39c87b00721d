//! Maximum-inner-product search over the exported item vectors [q_i; b_i].
//!
//! A [`RecallIndex`] answers "the k items with the largest ⟨query, item⟩" for a user query [p_u; 1],
//! optionally under a [`Filter`] applied inside the search. Three implementations: [`ExactIndex`]
//! (brute force; the reference, and the right choice for small catalogs), [`GraphIndex`] (our own
//! HNSW, the default above the small-catalog threshold because it measured fastest, see README) and
//! [`HnswRsIndex`] (hnsw_rs). All return exact inner products, best first, so the caller adds c_u to
//! get exact FM scores.
//!
//! Here: the trait, its errors, settings and the checks every index shares. Building, tuning and
//! checking the served index (the load path) is `build.rs`; the recall measures are `measure.rs`.

pub mod bench;
pub mod bench_filter;
pub mod bench_live;
mod build;
mod exact;
mod graph;
mod hnsw;
mod measure;
mod milvus;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use build::{
    build, build_milvus, build_with_file, FilteredBreadth, IndexQuality, NormScanReport,
    ShareBreadth, EF_LADDER, MIN_NORM_SCAN_SHARE,
};
pub use exact::ExactIndex;
pub use graph::{BuildSpace, GraphFileError, GraphIndex, GraphParams, Metric};
pub use hnsw::{HnswParams, HnswRsIndex};
pub use measure::{measure_recall, recall_at_10_and_100};
pub use milvus::{
    collection_name, default_nprobe, filter_expression, index_spec, nprobe_ladder, reduced_item,
    reduced_query, reduction_radius, search_params, Consistency, IndexSpec, IndexStatus,
    MilvusClient, MilvusError, MilvusIndex, MilvusIndexType, MilvusMetric, MilvusSettings,
    QueryRow, SearchRow, SegmentInfo, MAX_BACKOFF as MILVUS_MAX_BACKOFF,
    MAX_CANDIDATES as MILVUS_MAX_CANDIDATES, MAX_RETRIES as MILVUS_MAX_RETRIES,
};

use crate::vectors::ItemVectors;

/// The work estimate of a search that waits on another process (Milvus) rather than computing:
/// it runs on the blocking pool without a CPU permit (`api::AppState::compute_sized`).
pub const REMOTE_WORK: u64 = u64::MAX;

/// Index errors: bad parameters or vectors, refused builds, bad queries.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A parameter is out of range.
    #[error("{name} should be {allowed}, but is {value}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// The allowed range.
        allowed: &'static str,
        /// What was given.
        value: String,
    },
    /// A vector has a NaN or infinite component.
    #[error("item {item} has a non-finite component; refusing to index it")]
    NonFiniteVector {
        /// The item's index.
        item: usize,
    },
    /// The query's length differs from the items'.
    #[error("query has {got} dimensions, the index has {expected}")]
    DimensionMismatch {
        /// Index dimension.
        expected: usize,
        /// Query dimension.
        got: usize,
    },
    /// The query has a NaN or infinite component.
    #[error("query has a non-finite component")]
    NonFiniteQuery,
    /// The external index (Milvus) did not answer in time, or refused.
    #[error("recall index unavailable: {0}")]
    Unavailable(String),
    /// The built graph does not recall well enough to be served.
    #[error("index refused: {what} {value:.3} is below the floor {floor:.3}")]
    BelowFloor {
        /// Which check.
        what: &'static str,
        /// The measured figure.
        value: f64,
        /// The configured floor.
        floor: f64,
    },
}

/// One search result: an item and its exact inner product with the query.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hit {
    /// Item index.
    pub item: u32,
    /// ⟨query, item vector⟩.
    pub score: f32,
}

/// Which items a search may return. Lists are sorted and free of duplicates.
#[derive(Debug, Clone, Copy, Default)]
pub enum Filter<'a> {
    /// Every item.
    #[default]
    All,
    /// Every item except these.
    Exclude(&'a [u32]),
    /// Only these items.
    Only(&'a [u32]),
    /// The items of a bitmap: the form of a filter allowing (or removing) many items, where a
    /// lookup in a list would be a binary search with a cache miss at each of its last steps
    /// (a walk under a list of 900k of 1M items spent most of its time there).
    Bits(&'a AllowedBits),
}

/// A filter that owns its items: what a caller builds once and searches with.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterSet {
    /// Only these items (sorted, no duplicates).
    Only(Vec<u32>),
    /// Every item except these (sorted, no duplicates).
    Exclude(Vec<u32>),
    /// The items of a bitmap.
    Bits(AllowedBits),
}

impl FilterSet {
    /// The search's view of it.
    pub fn as_filter(&self) -> Filter<'_> {
        match self {
            FilterSet::Only(list) => Filter::Only(list),
            FilterSet::Exclude(list) => Filter::Exclude(list),
            FilterSet::Bits(bits) => Filter::Bits(bits),
        }
    }

    /// The same items of `n` in the form a search looks up fastest: a long list (allowed or
    /// removed) as a bitmap ([`AllowedBits::pays`]), which a filtered walk asks in one read.
    pub fn for_search(self, n: usize) -> FilterSet {
        match self {
            FilterSet::Only(list) if AllowedBits::pays(list.len(), n) => {
                FilterSet::Bits(AllowedBits::only(&list, n))
            }
            FilterSet::Exclude(list) if AllowedBits::pays(list.len(), n) => {
                FilterSet::Bits(AllowedBits::all_but(&list, n))
            }
            other => other,
        }
    }
}

/// A set of items as one bit each, for [`Filter::Bits`]; items at or past the `n` it was made
/// for (written live since) are allowed when it was made from an exclusion list.
#[derive(Debug, Clone, PartialEq)]
pub struct AllowedBits {
    words: Vec<u64>,
    n: usize,
    count: usize,
    later_allowed: bool,
}

impl AllowedBits {
    /// Whether a list of `len` of `n` items is better searched as bits: once it is longer than
    /// n / 32, its bitmap is no larger than the list and a lookup costs one read, not a search.
    pub fn pays(len: usize, n: usize) -> bool {
        len > n / 32
    }

    /// Only the items of `list` (sorted or not) below `n`.
    pub fn only(list: &[u32], n: usize) -> Self {
        let mut words = vec![0u64; n.div_ceil(64)];
        for &i in list.iter().filter(|&&i| (i as usize) < n) {
            words[i as usize >> 6] |= 1 << (i & 63);
        }
        let count = words.iter().map(|w| w.count_ones() as usize).sum();
        AllowedBits {
            words,
            n,
            count,
            later_allowed: false,
        }
    }

    /// Every item except those of `list`: the `n` items now, and any written later.
    pub fn all_but(list: &[u32], n: usize) -> Self {
        let mut words = vec![u64::MAX; n.div_ceil(64)];
        if n % 64 != 0 {
            if let Some(last) = words.last_mut() {
                *last = (1u64 << (n % 64)) - 1;
            }
        }
        for &i in list.iter().filter(|&&i| (i as usize) < n) {
            words[i as usize >> 6] &= !(1 << (i & 63));
        }
        let count = words.iter().map(|w| w.count_ones() as usize).sum();
        AllowedBits {
            words,
            n,
            count,
            later_allowed: true,
        }
    }

    /// Whether `item` is in the set.
    #[inline]
    pub fn contains(&self, item: u32) -> bool {
        if item as usize >= self.n {
            return self.later_allowed;
        }
        self.words
            .get(item as usize >> 6)
            .is_some_and(|w| w & (1 << (item & 63)) != 0)
    }

    /// How many of the first `n` items are in the set.
    pub fn count_below(&self, n: usize) -> usize {
        if n >= self.n {
            let later = if self.later_allowed { n - self.n } else { 0 };
            return self.count + later;
        }
        let whole = n / 64;
        let partial = match n % 64 {
            0 => 0,
            r => (self.words[whole] & ((1u64 << r) - 1)).count_ones() as usize,
        };
        self.words[..whole]
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum::<usize>()
            + partial
    }
}

impl Filter<'_> {
    /// Whether `item` may be returned.
    #[inline]
    pub fn allows(&self, item: u32) -> bool {
        match self {
            Filter::All => true,
            Filter::Exclude(list) => list.binary_search(&item).is_err(),
            Filter::Only(list) => list.binary_search(&item).is_ok(),
            Filter::Bits(bits) => bits.contains(item),
        }
    }

    /// How many of `n` items the filter allows (lists may name items beyond `n`).
    pub fn allowed_count(&self, n: usize) -> usize {
        match self {
            Filter::All => n,
            // Sorted lists: the items at or past n are their tail.
            Filter::Exclude(list) => n - list.partition_point(|&i| (i as usize) < n),
            Filter::Only(list) => list.partition_point(|&i| (i as usize) < n),
            Filter::Bits(bits) => bits.count_below(n),
        }
    }
}

impl<'a> Filter<'a> {
    /// The allowed items below `n`, in increasing order: what an exact scan reads. An exclusion
    /// list is walked alongside the items instead of searched per item.
    pub fn rows(self, n: usize) -> AllowedRows<'a> {
        match self {
            Filter::All => AllowedRows::Range(0..n as u32, [].iter()),
            Filter::Exclude(list) => AllowedRows::Range(0..n as u32, list.iter()),
            Filter::Only(list) => AllowedRows::Only(list.iter(), n),
            Filter::Bits(bits) => AllowedRows::Bits {
                bits,
                word: 0,
                pending: bits.words.first().copied().unwrap_or(0),
                n: n as u32,
            },
        }
    }
}

/// The iterator of [`Filter::rows`].
#[derive(Debug, Clone)]
pub enum AllowedRows<'a> {
    /// Items of a range, skipping a sorted exclusion list.
    Range(std::ops::Range<u32>, std::slice::Iter<'a, u32>),
    /// Items of a sorted list, below a bound.
    Only(std::slice::Iter<'a, u32>, usize),
    /// Set bits of a bitmap (then the items past it, when it allows them), below a bound `n`.
    Bits {
        /// The bitmap.
        bits: &'a AllowedBits,
        /// Index of the word being read (the word count once past the bitmap).
        word: usize,
        /// The unread bits of that word; past the bitmap, the next later item to return.
        pending: u64,
        /// Items at or past this are not returned.
        n: u32,
    },
}

impl Iterator for AllowedRows<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        match self {
            AllowedRows::Range(range, excluded) => loop {
                let i = range.next()?;
                while excluded.as_slice().first().is_some_and(|&e| e < i) {
                    excluded.next();
                }
                if excluded.as_slice().first() != Some(&i) {
                    return Some(i);
                }
            },
            AllowedRows::Only(list, n) => list.next().copied().filter(|&i| (i as usize) < *n),
            AllowedRows::Bits {
                bits,
                word,
                pending,
                n,
            } => {
                let words = bits.words.len();
                while *word < words {
                    if *pending != 0 {
                        let i = (*word * 64) as u32 + pending.trailing_zeros();
                        *pending &= *pending - 1;
                        return (i < *n).then_some(i);
                    }
                    *word += 1;
                    // Past the last word, `pending` holds the next later item.
                    *pending = match bits.words.get(*word) {
                        Some(&w) => w,
                        None => bits.n as u64,
                    };
                }
                if !bits.later_allowed || *pending >= *n as u64 {
                    return None;
                }
                *pending += 1;
                Some(*pending as u32 - 1)
            }
        }
    }
}

/// What an index reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexInfo {
    /// `exact` or `hnsw_rs`.
    pub kind: &'static str,
    /// Number of items.
    pub items: usize,
    /// Vector length.
    pub dim: usize,
    /// Kind-specific parameters.
    pub params: serde_json::Value,
    /// Estimated bytes held by the index.
    pub memory_bytes: usize,
    /// Seconds the build took.
    pub build_seconds: f64,
}

/// A searchable set of item vectors. Searching is safe from many threads at once.
pub trait RecallIndex: Send + Sync {
    /// The `k` allowed items with the largest inner product with `query`, best first; `ef` is the
    /// search breadth of graph indexes (ignored by exact search).
    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Filter<'_>,
    ) -> Result<Vec<Hit>, IndexError>;

    /// Kind, size and parameters.
    fn info(&self) -> IndexInfo;

    /// Roughly how many multiply-adds an unfiltered search for `k` items at `ef` costs: what the
    /// service uses to decide whether a request may run on an async worker (see `api::compute`).
    fn work_estimate(&self, k: usize, ef: Option<usize>) -> u64;

    /// Makes rows `first..first + count` of the index's item vectors findable: rows appended to the
    /// shared [`ItemVectors`] (and published) since the index was built, in order. Safe while other
    /// threads search; one caller at a time. **Errors** if those rows are not published.
    fn insert(&self, first: u32, count: usize) -> Result<(), IndexError>;

    /// This index over `vectors`, a larger copy of its own vectors (same rows first), for growth
    /// past the capacity: the structure is copied, not rebuilt.
    fn regrown(&self, vectors: Arc<ItemVectors>) -> Result<Arc<dyn RecallIndex>, IndexError>;

    /// Leaves `item` out of every search from now on (a superseded or deleted item), if this index
    /// keeps its own removals (our graph's tombstones: a bit test instead of a filter list merged
    /// into every query); false when it does not, and the caller must exclude the item itself.
    fn remove(&self, _item: u32) -> bool {
        false
    }

    /// `Ok` when the index can answer now: in-process indexes always can; an external one
    /// (Milvus) is asked (what `/readyz` reports).
    fn health(&self) -> Result<(), IndexError> {
        Ok(())
    }

    /// The model serving this index was swapped in: an external index points its shared name at
    /// what this index holds (Milvus's alias). Blocking (a network call).
    fn activated(&self) -> Result<(), IndexError> {
        Ok(())
    }

    /// The model serving this index was swapped out: an external index schedules the release
    /// of what it holds (Milvus drops the collection after a grace period).
    fn retire(&self) {}
}

/// `Ok` when rows `first..first + count` are published in `vectors`: what every index checks
/// before [`RecallIndex::insert`].
pub(crate) fn check_appended(
    vectors: &ItemVectors,
    first: u32,
    count: usize,
) -> Result<(), IndexError> {
    if first as usize + count <= vectors.len() {
        Ok(())
    } else {
        Err(IndexError::InvalidParameter {
            name: "inserted rows",
            allowed: "published in the item vectors",
            value: format!("{first}..{}", first as usize + count),
        })
    }
}

/// Which index to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    /// Exact below `IndexSettings::exact_below` items, our graph ([`GraphIndex`]) above.
    Auto,
    /// Brute force.
    Exact,
    /// hnsw_rs.
    HnswRs,
    /// Our own HNSW ([`GraphIndex`]).
    Graph,
    /// A Milvus collection per model version ([`MilvusIndex`], `[index.milvus]`).
    Milvus,
}

/// `[index]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexSettings {
    /// Which index.
    pub kind: IndexKind,
    /// `auto` uses exact search below this many items.
    pub exact_below: usize,
    /// A filtered search that allows at most this many items scans them exactly instead.
    pub exact_filter_below: usize,
    /// Graph parameters.
    pub hnsw: HnswParams,
    /// Refuse a graph whose recall@10 against brute force on sample queries is below this.
    pub min_recall: f64,
    /// Choose the graph's default search breadth at load: the smallest of [`EF_LADDER`] whose
    /// recall@10 against brute force on the sample queries reaches this; 0 keeps `hnsw.ef_search`.
    pub target_recall: f64,
    /// Choose our graph's default breadth for walks under a selective filter at load: the
    /// smallest whose filtered recall@10 reaches this on the sample queries under seeded random
    /// filters (`build::tune_filtered_ef`); 0 uses the unfiltered breadth.
    #[serde(default = "default_target_filtered_recall")]
    pub target_filtered_recall: f64,
    /// Sample queries for that check.
    pub check_queries: usize,
    /// Before walking our graph, walk up to this many largest-norm items exactly, stopping when
    /// the Cauchy–Schwarz bound proves the top k found (`graph/head.rs`); kept only when that
    /// settles at least half of the sample queries at k = 10. 0 turns it off.
    #[serde(default = "default_norm_scan_items")]
    pub norm_scan_items: usize,
    /// Milvus's address, collections and timeouts (`kind = "milvus"`).
    #[serde(default)]
    pub milvus: MilvusSettings,
}

fn default_target_filtered_recall() -> f64 {
    IndexSettings::default().target_filtered_recall
}

fn default_norm_scan_items() -> usize {
    IndexSettings::default().norm_scan_items
}

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            kind: IndexKind::Auto,
            exact_below: 10_000,
            exact_filter_below: 2_000,
            hnsw: HnswParams::default(),
            min_recall: 0.9,
            target_recall: 0.98,
            target_filtered_recall: 0.995,
            check_queries: 200,
            norm_scan_items: 8192,
            milvus: MilvusSettings::default(),
        }
    }
}

/// `Ok` when `value` is in `range`, else the error naming the parameter and its allowed range;
/// shared by every index's parameter check.
pub(crate) fn check_range(
    name: &'static str,
    value: usize,
    range: std::ops::RangeInclusive<usize>,
    allowed: &'static str,
) -> Result<(), IndexError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(IndexError::InvalidParameter {
            name,
            allowed,
            value: value.to_string(),
        })
    }
}

/// Refuses vectors with NaN or infinite components.
pub fn check_finite(vectors: &ItemVectors) -> Result<(), IndexError> {
    check_finite_rows(vectors, 0..vectors.len())
}

/// Refuses rows in `range` with NaN or infinite components (rows appended after a build).
pub(crate) fn check_finite_rows(
    vectors: &ItemVectors,
    range: std::ops::Range<usize>,
) -> Result<(), IndexError> {
    match range
        .into_iter()
        .find(|&i| vectors.row(i).iter().any(|x| !x.is_finite()))
    {
        Some(item) => Err(IndexError::NonFiniteVector { item }),
        None => Ok(()),
    }
}

/// Checks a query's length and values against the index.
pub(crate) fn check_query(query: &[f32], dim: usize) -> Result<(), IndexError> {
    if query.len() != dim {
        return Err(IndexError::DimensionMismatch {
            expected: dim,
            got: query.len(),
        });
    }
    if query.iter().any(|x| !x.is_finite()) {
        return Err(IndexError::NonFiniteQuery);
    }
    Ok(())
}

/// Keeps the k best hits seen so far; `push` is O(log k).
pub(crate) struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<HeapHit>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct HeapHit(Hit);

impl Eq for HeapHit {}

impl PartialOrd for HeapHit {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HeapHit {
    // Higher score first; among equal scores the lower item id wins, so results are deterministic.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .score
            .total_cmp(&other.0.score)
            .then(other.0.item.cmp(&self.0.item))
    }
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: std::collections::BinaryHeap::with_capacity(k + 1),
        }
    }

    /// The score an item must beat to enter (−∞ until k items are held).
    #[inline]
    pub(crate) fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0.score)
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, item: u32, score: f32) {
        if self.k == 0 {
            return;
        }
        let hit = HeapHit(Hit { item, score });
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(hit));
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if hit > worst.0 {
                *worst = std::cmp::Reverse(hit);
            }
        }
    }

    /// The held hits, best first.
    pub(crate) fn into_sorted(self) -> Vec<Hit> {
        let mut v: Vec<HeapHit> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v.into_iter().map(|h| h.0).collect()
    }
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    #[test]
    fn a_bitmap_allows_what_its_list_allows_and_counts_and_lists_it_alike() {
        let n = 200;
        let list: Vec<u32> = (0..n as u32).filter(|i| i % 7 == 3 || *i == 199).collect();
        let only = AllowedBits::only(&list, n);
        let all_but = AllowedBits::all_but(&list, n);
        for i in 0..n as u32 {
            assert_eq!(Filter::Bits(&only).allows(i), Filter::Only(&list).allows(i));
            assert_eq!(
                Filter::Bits(&all_but).allows(i),
                Filter::Exclude(&list).allows(i)
            );
        }
        for m in [0, 1, 63, 64, 65, 150, 200, 260] {
            for (bits, as_list) in [
                (Filter::Bits(&only), Filter::Only(&list)),
                (Filter::Bits(&all_but), Filter::Exclude(&list)),
            ] {
                assert_eq!(bits.allowed_count(m), as_list.allowed_count(m), "below {m}");
                let by_bits: Vec<u32> = bits.rows(m).collect();
                let by_list: Vec<u32> = as_list.rows(m).collect();
                assert_eq!(by_bits, by_list, "rows below {m}");
            }
        }
        // Items written after the bitmap was made: allowed by an exclusion, not by a list.
        assert!(Filter::Bits(&all_but).allows(230));
        assert!(!Filter::Bits(&only).allows(230));
        let empty = AllowedBits::all_but(&[], 0);
        assert_eq!(
            Filter::Bits(&empty).rows(3).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn long_lists_are_searched_as_bitmaps_and_short_ones_stay_lists() {
        let n = 3200;
        let short = FilterSet::Only((0..100).collect()).for_search(n);
        assert!(matches!(short, FilterSet::Only(_)));
        let long: Vec<u32> = (0..1000).map(|i| i * 3).collect();
        let as_bits = FilterSet::Exclude(long.clone()).for_search(n);
        assert_eq!(as_bits, FilterSet::Bits(AllowedBits::all_but(&long, n)));
    }
}
