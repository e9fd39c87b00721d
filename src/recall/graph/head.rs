//! Exact search over the largest-norm items first, the length-based pruning of LEMP (Teflioudi,
//! Gemulla & Mykytiuk, "LEMP: Fast Retrieval of Large Entries in a Matrix Product", SIGMOD 2015).
//!
//! By Cauchy–Schwarz ⟨q, x⟩ ≤ ‖q‖·‖x‖: walking items by decreasing norm, once ‖q‖·‖x‖ is below the
//! k-th best score held, no later item can enter the top k, and what is held is the exact answer.
//! Trained FM item vectors carry popularity in their norms (the item-bias dimension, frequent
//! features), so the exact top k of most users lies among a few thousand items: on the 100k-item
//! load-benchmark model the bound stops the walk after a median 225 items at k = 10 and 1,788 at
//! k = 100, where the graph's beam recalled only 0.48 of the exact top 100 at ef = 100 (hnswlib on
//! the same vectors: 0.47). The walk reads at most the `limit` largest; a query whose bound is not
//! reached there goes to the graph, and the two answers are merged.
//!
//! The walk reads the graph's byte codes (`codes.rs`), a quarter of the f32 rows' bytes (the f32
//! walk was bound by memory bandwidth at k = 100), with [`Codes::error_bound`] E: an item is kept
//! as a candidate while its code score is within 2E of the k-th best code score, the walk stops
//! once ‖q‖·‖x‖ < k-th code score − E, and the candidates are re-scored with the f32 rows. Exact
//! still: an unread item scores below every held item's true score (≥ its code score − E), and a
//! dropped one scored below k-th − 2E by code, so below k-th − E truly.
//!
//! **Live inserts.** The bound assumes every item outside the head has a norm at most the head's
//! smallest. An item inserted later with a norm at or above that floor goes into a small
//! append-only list of newcomers ([`NormHead::note`], before the item is linked), which every walk
//! reads after the head: a newcomer whose ‖q‖·‖x‖ could still beat the k-th is scored with its f32
//! row (its code may be clamped outside the build's ranges, where the code error bound fails), so
//! the answer stays exact. Newcomers below the floor are covered by the bound like any item. When
//! the list is full the walk stops claiming exactness (its hits are merged with the graph's) until
//! the head is made again (`GraphIndex::set_norm_scan`, or a regrown index).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use std::collections::BinaryHeap;

use super::codes::Codes;
use super::kernel::Kernel;
use super::order::Far;
use crate::recall::Hit;
use crate::vectors::ItemVectors;

/// Relative slack on the bound: an f32 dot product over d terms can exceed the f32 product of the
/// norms by rounding (~d·2⁻²⁴ relative); 1e-4 covers d up to a thousand and costs nothing.
const BOUND_SLACK: f32 = 1.0 + 1e-4;

/// The `limit` largest-norm items, their codes and f32 rows copied contiguously in decreasing norm
/// order, so that every query streams the same cache-resident prefix.
pub(super) struct NormHead {
    ids: Vec<u32>,
    norms: Vec<f32>,
    codes: Codes,
    rows: Vec<f32>,
    dim: usize,
    /// Whether the head holds every item (the walk is then exact even when the bound never stops it).
    complete: bool,
    /// The `limit` it was made with.
    limit: usize,
    /// Inserted items with a norm at or above the floor.
    newcomers: Newcomers,
}

/// Inserted items the head's bound does not cover: one writer (the inserting caller), read by every
/// walk without locks. A slot's id, norm and row are written before the row store's length
/// publishes it (Release; readers load the length with Acquire).
struct Newcomers {
    /// Their rows; its length is the number of newcomers.
    rows: ItemVectors,
    ids: Box<[AtomicU32]>,
    /// f32 bits.
    norms: Box<[AtomicU32]>,
    /// An item with a norm at or above this must be listed: the head's smallest norm, or −1 for a
    /// complete head (every newcomer is then listed).
    floor: f32,
    /// Set (before the item is linked) when one did not fit: walks are no longer exact.
    overflowed: AtomicBool,
}

impl Newcomers {
    fn new(dim: usize, capacity: usize, floor: f32) -> Self {
        let atomics = |_| AtomicU32::new(0);
        Newcomers {
            rows: ItemVectors::from_raw(dim, Vec::new()).with_capacity(capacity),
            ids: (0..capacity).map(atomics).collect(),
            norms: (0..capacity).map(atomics).collect(),
            floor,
            overflowed: AtomicBool::new(false),
        }
    }
}

/// Room for newcomers: a head of `limit` items lists up to half as many (at least 1024) before
/// it overflows. On the bench-index vectors (norms drawn alike for old and new items) 100k inserts
/// into 900k items put about 900 of them above the 8192-item head's floor.
fn newcomer_room(limit: usize) -> usize {
    (limit / 2).max(1024)
}

/// What a walk found.
pub(super) struct HeadScan {
    /// The best k allowed items among those read, best first, exact scores.
    pub hits: Vec<Hit>,
    /// Whether they are the exact top k of the whole index.
    pub exact: bool,
}

/// A walk's reusable buffers (kept in the search scratch space, so a walk allocates only its answer).
#[derive(Default)]
pub(super) struct HeadScratch {
    top: BinaryHeap<Far>,
    candidates: Vec<Far>,
    prepared: Vec<i16>,
}

impl NormHead {
    /// The head of the first `n` rows of `space` (at most `limit` rows), coded like `codes` (the
    /// graph's codes of `space`).
    pub fn new(space: &ItemVectors, codes: &Codes, n: usize, limit: usize) -> Self {
        let n = n.min(space.len());
        let dim = space.dim();
        let head_limit = limit;
        let mut order: Vec<(f32, u32)> = (0..n)
            .map(|i| {
                let row = space.row(i);
                (crate::kernels::dot(row, row).sqrt(), i as u32)
            })
            .collect();
        let by_norm = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        let limit = limit.min(n);
        if limit < n {
            order.select_nth_unstable_by(limit, by_norm);
            order.truncate(limit);
        }
        order.sort_unstable_by(by_norm);
        let ids: Vec<u32> = order.iter().map(|o| o.1).collect();
        let mut rows = Vec::with_capacity(limit * dim);
        for &id in &ids {
            rows.extend_from_slice(space.row(id as usize));
        }
        let complete = limit == n;
        let floor = match order.last() {
            Some(&(smallest, _)) if !complete => smallest,
            _ => -1.0,
        };
        NormHead {
            codes: codes.gather(&ids),
            norms: order.iter().map(|o| o.0).collect(),
            ids,
            rows,
            dim,
            complete,
            limit: head_limit,
            newcomers: Newcomers::new(dim, newcomer_room(head_limit), floor),
        }
    }

    /// Rows held (the head proper, newcomers aside).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The `limit` it was made with.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Newcomers listed, and whether one did not fit.
    pub fn newcomers(&self) -> (usize, bool) {
        let c = &self.newcomers;
        (c.rows.len(), c.overflowed.load(Ordering::Acquire))
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        let c = &self.newcomers;
        self.rows.len() * 4
            + self.ids.len() * 8
            + self.codes.memory_bytes()
            + c.rows.capacity() * (4 * self.dim + 8)
    }

    /// Records inserted item `id` (its walked row `row`) if its norm is at or above the head's
    /// floor. Call it before the item is linked, from the one inserting caller.
    pub fn note(&self, id: u32, row: &[f32]) {
        let c = &self.newcomers;
        let norm = crate::kernels::dot(row, row).sqrt();
        if norm < c.floor {
            return;
        }
        let slot = c.rows.len();
        if slot >= c.rows.capacity() {
            c.overflowed.store(true, Ordering::Release);
            return;
        }
        c.ids[slot].store(id, Ordering::Relaxed);
        c.norms[slot].store(norm.to_bits(), Ordering::Relaxed);
        // Publishes the slot (Release), after its id and norm.
        let _ = c.rows.push(row);
    }

    /// Walks the head for the `k` allowed items with the largest ⟨q, x⟩ until the bound stops it.
    pub fn scan<K: Kernel>(&self, q: &[f32], k: usize, allow: impl Fn(u32) -> bool) -> HeadScan {
        self.scan_with::<K>(q, k, allow, &mut HeadScratch::default())
    }

    /// [`NormHead::scan`] with the caller's buffers. `allow` is asked only of items whose code
    /// score could put them in the top k.
    #[inline(always)]
    pub fn scan_with<K: Kernel>(
        &self,
        q: &[f32],
        k: usize,
        allow: impl Fn(u32) -> bool,
        s: &mut HeadScratch,
    ) -> HeadScan {
        if k == 0 {
            return HeadScan {
                hits: Vec::new(),
                exact: true,
            };
        }
        let cq = self.codes.prepare(q, &mut s.prepared);
        let error = self.codes.error_bound(q, &cq);
        let q_norm = K::dot(q, q).sqrt() * BOUND_SLACK;
        // The k best code scores as (−score, position) keys, worst on top: one integer compare each.
        let (top, candidates) = (&mut s.top, &mut s.candidates);
        top.clear();
        candidates.clear();
        let mut kth = f32::NEG_INFINITY;
        let mut stopped = false;
        for (pos, (code, &norm)) in self.codes.rows(self.ids.len()).zip(&self.norms).enumerate() {
            // Strict: an item whose bound equals the cut could still tie the k-th and win on id.
            if q_norm * norm < kth - error {
                stopped = true;
                break;
            }
            let approx = cq.offset + cq.scale * K::dot_i16_u8(cq.query, code) as f32;
            if approx >= kth - 2.0 * error && allow(self.ids[pos]) {
                let key = Far(-approx, pos as u32);
                candidates.push(key);
                if top.len() < k {
                    top.push(key);
                } else if let Some(mut worst) = top.peek_mut() {
                    if key < *worst {
                        *worst = key;
                    }
                }
                if top.len() == k {
                    kth = top.peek().map_or(f32::NEG_INFINITY, |w| -w.0);
                }
            }
        }
        // Newcomers above the floor, scored exactly (an exact score is within E of itself, so they
        // join the candidates like code-scored items); positions past the head name them. Their
        // bound is checked against a k-th that only grew since the walk stopped, so what the
        // walk left unread stays below the k-th.
        let c = &self.newcomers;
        let listed = c.rows.len();
        let head_len = self.ids.len();
        for slot in 0..listed {
            let norm = f32::from_bits(c.norms[slot].load(Ordering::Relaxed));
            if q_norm * norm < kth - error {
                continue;
            }
            let score = K::dot(q, c.rows.row(slot));
            if score >= kth - 2.0 * error && allow(c.ids[slot].load(Ordering::Relaxed)) {
                let key = Far(-score, (head_len + slot) as u32);
                candidates.push(key);
                if top.len() < k {
                    top.push(key);
                } else if let Some(mut worst) = top.peek_mut() {
                    if key < *worst {
                        *worst = key;
                    }
                }
                if top.len() == k {
                    kth = top.peek().map_or(f32::NEG_INFINITY, |w| -w.0);
                }
            }
        }
        // Re-score exactly those that can still be in the top k; they are few and their rows hot.
        let floor = kth - 2.0 * error;
        candidates.retain(|c| -c.0 >= floor);
        for cand in candidates.iter_mut() {
            let pos = cand.1 as usize;
            *cand = if pos < head_len {
                Far(
                    -K::dot(q, &self.rows[pos * self.dim..(pos + 1) * self.dim]),
                    self.ids[pos],
                )
            } else {
                let slot = pos - head_len;
                Far(cand.0, c.ids[slot].load(Ordering::Relaxed))
            };
        }
        if candidates.len() > k {
            candidates.select_nth_unstable(k - 1);
            candidates.truncate(k);
        }
        candidates.sort_unstable();
        HeadScan {
            hits: candidates
                .iter()
                .map(|&Far(d, item)| Hit { item, score: -d })
                .collect(),
            exact: (stopped || self.complete) && !c.overflowed.load(Ordering::Acquire),
        }
    }
}

/// The best `k` of two answers with exact scores, best first (ties: lower id), each item once.
pub(super) fn merge(mut a: Vec<Hit>, b: Vec<Hit>, k: usize) -> Vec<Hit> {
    a.extend(b);
    a.sort_unstable_by(|x, y| y.score.total_cmp(&x.score).then(x.item.cmp(&y.item)));
    // Both sides scored an item with the same kernel, so its copies are equal and adjacent.
    a.dedup_by_key(|h| h.item);
    a.truncate(k);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recall::exact::exact_top_k;
    use crate::recall::graph::kernel::Portable;
    use crate::recall::Filter;
    use crate::rng::Rng;

    /// Vectors whose norms vary over two orders of magnitude, as trained item vectors' do.
    fn skewed(n: usize, dim: usize) -> ItemVectors {
        let mut rng = Rng::new(7);
        let mut data = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let scale = (rng.uniform() * 4.0).exp() as f32 * 0.05;
            data.extend((0..dim).map(|_| (rng.uniform() as f32 - 0.5) * scale));
        }
        ItemVectors::from_raw(dim, data)
    }

    fn head_of(space: &ItemVectors, limit: usize) -> NormHead {
        NormHead::new(
            space,
            &Codes::encode(space.as_slice(), space.dim()),
            space.len(),
            limit,
        )
    }

    /// Item ids, best first (scores come from another dot kernel there, equal to rounding).
    fn ids(hits: &[Hit]) -> Vec<u32> {
        hits.iter().map(|h| h.item).collect()
    }

    #[test]
    fn a_stopped_walk_is_the_exact_top_k() {
        let space = skewed(5000, 16);
        let head = head_of(&space, 5000);
        let none = head.scan::<Portable>(&[1.0; 16], 0, |_| true);
        assert!(none.exact && none.hits.is_empty());
        let mut rng = Rng::new(11);
        let mut stopped_early = 0;
        for _ in 0..50 {
            let q: Vec<f32> = (0..16).map(|_| rng.uniform() as f32 - 0.5).collect();
            for k in [1, 10, 100] {
                let scan = head.scan::<Portable>(&q, k, |_| true);
                assert!(scan.exact);
                assert_eq!(
                    ids(&scan.hits),
                    ids(&exact_top_k(&space, &q, k, Filter::All))
                );
            }
            let partial = head_of(&space, 2500).scan::<Portable>(&q, 10, |_| true);
            if partial.exact {
                stopped_early += 1;
                assert_eq!(
                    ids(&partial.hits),
                    ids(&exact_top_k(&space, &q, 10, Filter::All))
                );
            }
        }
        // The bound must actually prune on skewed norms, or the head would be pointless.
        assert!(stopped_early > 25, "stopped early {stopped_early} of 50");
    }

    #[test]
    fn items_closer_than_a_code_step_are_still_told_apart_exactly() {
        // A tight bundle of near-copies (differences far below a code step, which the two
        // outliers make coarse): the codes cannot order them, the re-scoring must.
        let mut rng = Rng::new(5);
        let dim = 8;
        let mut data = vec![40.0f32; dim];
        data.extend(vec![-40.0f32; dim]);
        for i in 0..3000 {
            let scale = 1.0 + (i % 97) as f32 * 1e-3;
            data.extend((0..dim).map(|j| (j as f32 * 0.1 + 1e-4 * rng.uniform() as f32) * scale));
        }
        let space = ItemVectors::from_raw(dim, data);
        let head = head_of(&space, 3002);
        for _ in 0..20 {
            let q: Vec<f32> = (0..dim).map(|_| rng.uniform() as f32).collect();
            for k in [1, 10, 50] {
                let scan = head.scan::<Portable>(&q, k, |id| id > 1);
                let only: Vec<u32> = (2..3002).collect();
                let want = exact_top_k(&space, &q, k, Filter::Only(&only));
                let floor = want[k - 1].score;
                assert!(scan.exact);
                // Equal scores may come in either order; every returned item must reach the k-th.
                for h in &scan.hits {
                    assert!(
                        h.score >= floor - 1e-4 * floor.abs(),
                        "{} < {floor}",
                        h.score
                    );
                }
                assert_eq!(scan.hits.len(), k);
            }
        }
    }

    #[test]
    fn the_walk_skips_items_that_are_not_allowed() {
        let space = skewed(3000, 8);
        let head = head_of(&space, 3000);
        let q = vec![0.3f32; 8];
        let excluded: Vec<u32> = exact_top_k(&space, &q, 5, Filter::All)
            .iter()
            .map(|h| h.item)
            .collect();
        let mut sorted = excluded.clone();
        sorted.sort_unstable();
        let filter = Filter::Exclude(&sorted);
        let scan = head.scan::<Portable>(&q, 10, |id| filter.allows(id));
        assert_eq!(ids(&scan.hits), ids(&exact_top_k(&space, &q, 10, filter)));
        assert!(scan.hits.iter().all(|h| !excluded.contains(&h.item)));
    }

    #[test]
    fn a_head_too_short_for_the_bound_says_so() {
        // Equal norms: the bound never drops below the k-th score before the head ends.
        let space = ItemVectors::from_raw(2, vec![1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, -1.0]);
        let scan = head_of(&space, 2).scan::<Portable>(&[1.0, 0.5], 1, |_| true);
        assert!(!scan.exact);
        assert_eq!(scan.hits[0].item, 0);
    }

    #[test]
    fn a_newcomer_above_the_floor_is_in_the_exact_answer_and_an_overflow_drops_exactness() {
        // The head holds the 2500 largest of 5000; newcomers (ids past the head's rows, as a live
        // insert appends them) far above every norm must come out of a walk that says exact.
        let space = skewed(5000, 16);
        let head = head_of(&space, 2500);
        let mut rng = Rng::new(13);
        let mut all = space.as_slice().to_vec();
        let mut queries = Vec::new();
        for i in 0..20u32 {
            let q: Vec<f32> = (0..16).map(|_| rng.uniform() as f32 - 0.5).collect();
            let row: Vec<f32> = q.iter().map(|x| x * 100.0).collect();
            head.note(5000 + i, &row);
            all.extend_from_slice(&row);
            queries.push(q);
        }
        // A newcomer below the floor is left to the bound.
        head.note(6000, &[1e-6; 16]);
        assert_eq!(head.newcomers(), (20, false));
        let grown = ItemVectors::from_raw(16, all);
        let mut exact_answers = 0;
        for (i, q) in queries.iter().enumerate() {
            let scan = head.scan::<Portable>(q, 10, |_| true);
            assert!(ids(&scan.hits).contains(&(5000 + i as u32)), "query {i}");
            if scan.exact {
                exact_answers += 1;
                assert_eq!(
                    ids(&scan.hits),
                    ids(&exact_top_k(&grown, q, 10, Filter::All))
                );
            }
        }
        // As often as without newcomers (a_stopped_walk_is_the_exact_top_k: over half).
        assert!(exact_answers >= 8, "{exact_answers} of 20 exact");
        // Filling the list past its room: walks stop claiming exactness.
        for i in 0..newcomer_room(2500) as u32 {
            head.note(7000 + i, &[10.0; 16]);
        }
        assert!(head.newcomers().1);
        assert!(!head.scan::<Portable>(&queries[0], 10, |_| true).exact);
    }

    #[test]
    fn merging_keeps_each_item_once_best_first() {
        let a = vec![
            Hit {
                item: 3,
                score: 2.0,
            },
            Hit {
                item: 1,
                score: 1.0,
            },
        ];
        let b = vec![
            Hit {
                item: 1,
                score: 1.0,
            },
            Hit {
                item: 7,
                score: 1.5,
            },
        ];
        let merged = merge(a, b, 3);
        let ids: Vec<u32> = merged.iter().map(|h| h.item).collect();
        assert_eq!(ids, [3, 7, 1]);
    }
}
