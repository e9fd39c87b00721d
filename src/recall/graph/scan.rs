//! The exact plan of a filtered search (an exact scan, or the scan after a walk gave up): every
//! allowed row scored by its byte code (`codes.rs`), then only those whose code score could still
//! reach the top k re-scored with their f32 rows.
//!
//! Why: a scan over a filter's allowed rows is bound by memory, and a code is 65 bytes where the
//! f32 row is 260; an allowed list's rows are also scattered, so each row read is a miss that a
//! code makes one or two cache lines instead of five.
//!
//! Why it is exact: with E the code error bound ([`Codes::error_bound`], |approx − score| ≤ E for
//! rows encoded with the build's ranges) and a the k-th largest code score once every row is read,
//! the k rows with code scores ≥ a score ≥ a − E, so the true k-th score T ≥ a − E; an item of the
//! true top k then has approx ≥ T − E ≥ a − 2E ≥ (the k-th code score when it was read) − 2E. Rows
//! appended after the build may have been clamped into the ranges, so they are scored with their
//! f32 rows (an exact score is within E of itself). The same argument as the norm walk's (`head.rs`),
//! without its bound on norms.

use std::collections::BinaryHeap;

use super::codes::{CodeQuery, Codes};
use super::kernel::Kernel;
use super::order::Far;
use crate::recall::{Hit, TopK};
use crate::vectors::ItemVectors;

/// Ids gathered before their rows are read, so that rows a few places ahead can be prefetched.
const BLOCK: usize = 256;
/// How many rows ahead a row is requested (a scattered row is a cache miss).
const AHEAD: usize = 8;
/// Below this many allowed rows the scan reads f32 rows only: the code pass and the query's
/// preparation would cost more than they save.
pub(super) const CODES_FROM: usize = 2048;
/// After this many rows by code, a scan still holding more than a quarter of them as candidates
/// (the k-th falls where scores are dense, as under a filter that removed the best items) reads
/// the rest as f32 rows: every candidate is read twice, so codes no longer save anything.
const DENSE_AFTER: usize = 1024;

/// A scan's buffers, kept per thread.
#[derive(Default)]
pub(super) struct ScanScratch {
    block: Vec<u32>,
    /// The k best code scores as (−score, id), worst on top.
    top: BinaryHeap<Far>,
    /// (code score, id) of every row that could reach the top k when it was read.
    candidates: Vec<(f32, u32)>,
}

/// The exact top `k` of `q` over `rows` (allowed ids, increasing, each published in `space`):
/// scored by `codes` and re-scored with `space`'s rows when `by_codes`, else (or once the code
/// scores turn out dense) read as f32 rows. Both parts meet exactly: the candidates kept from the
/// code part hold its own top k (see the module documentation), so every item of the overall top
/// k that it read.
// No closures in here: a closure is not compiled for the caller's target features, and `K::dot`
// in a closure lost AVX2/FMA (software FMA, 8x slower).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn exact_scan<K: Kernel>(
    codes: &Codes,
    space: &ItemVectors,
    q: &[f32],
    k: usize,
    rows: impl Iterator<Item = u32>,
    by_codes: bool,
    prepared: &mut Vec<i16>,
    s: &mut ScanScratch,
) -> Vec<Hit> {
    // A scan of f32 rows never reads the codes: no query to prepare for them.
    let (cq, error) = if by_codes {
        let cq = codes.prepare(q, prepared);
        (cq, codes.error_bound(q, &cq))
    } else {
        let unused = CodeQuery {
            query: &[],
            scale: 0.0,
            offset: 0.0,
        };
        (unused, 0.0)
    };
    let mut state = Scan {
        codes,
        space,
        q,
        cq,
        error,
        in_range: codes.in_range() as u32,
        k,
        kth: f32::NEG_INFINITY,
        by_codes,
        read: 0,
        best: TopK::new(k),
    };
    let mut block = std::mem::take(&mut s.block);
    s.top.clear();
    s.candidates.clear();
    block.clear();
    for id in rows {
        block.push(id);
        if block.len() == BLOCK {
            state.read_block::<K>(&block, s);
            block.clear();
        }
    }
    state.read_block::<K>(&block, s);
    s.block = block;
    let cut = state.kth - 2.0 * state.error;
    for &(approx, id) in s.candidates.iter() {
        if approx >= cut {
            state.offer::<K>(id);
        }
    }
    state.best.into_sorted()
}

/// One scan's state (see [`exact_scan`]).
struct Scan<'a> {
    codes: &'a Codes,
    space: &'a ItemVectors,
    q: &'a [f32],
    cq: CodeQuery<'a>,
    error: f32,
    in_range: u32,
    k: usize,
    /// The k-th best code score so far.
    kth: f32,
    by_codes: bool,
    /// Rows read by code.
    read: usize,
    /// The exact answer: f32-scored rows and re-scored candidates.
    best: TopK,
}

impl Scan<'_> {
    /// Scores row `id` exactly into the answer.
    #[inline(always)]
    fn offer<K: Kernel>(&mut self, id: u32) {
        let score = K::dot(self.q, self.space.linked_row(id as usize));
        if score >= self.best.threshold() {
            self.best.push(id, score);
        }
    }

    #[inline(always)]
    fn read_block<K: Kernel>(&mut self, ids: &[u32], s: &mut ScanScratch) {
        if !self.by_codes {
            // The brute-force scan's own gathered kernel (`ExactIndex`), prefetching ahead.
            let mut scores = [0f32; BLOCK];
            let scores = &mut scores[..ids.len()];
            crate::kernels::dot_gather(self.q, self.space.as_slice(), ids, scores);
            for (&id, &score) in ids.iter().zip(scores.iter()) {
                if score >= self.best.threshold() {
                    self.best.push(id, score);
                }
            }
            return;
        }
        let (cq, codes) = (self.cq, self.codes);
        for (j, &id) in ids.iter().enumerate() {
            if let Some(&ahead) = ids.get(j + AHEAD).filter(|&&a| a < self.in_range) {
                crate::kernels::prefetch(codes.row(ahead).as_ptr().cast());
            }
            let approx = if id < self.in_range {
                cq.offset + cq.scale * K::dot_i16_u8(cq.query, codes.row(id)) as f32
            } else {
                K::dot(self.q, self.space.linked_row(id as usize))
            };
            if approx < self.kth - 2.0 * self.error {
                continue;
            }
            s.candidates.push((approx, id));
            let key = Far(-approx, id);
            if s.top.len() < self.k {
                s.top.push(key);
            } else if let Some(mut worst) = s.top.peek_mut() {
                if key < *worst {
                    *worst = key;
                }
            }
            if s.top.len() == self.k {
                self.kth = s.top.peek().map_or(f32::NEG_INFINITY, |w| -w.0);
            }
        }
        self.read += ids.len();
        if self.read >= DENSE_AFTER && s.candidates.len() * 4 > self.read {
            self.by_codes = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recall::exact::exact_top_k;
    use crate::recall::graph::kernel::Portable;
    use crate::recall::Filter;
    use crate::rng::Rng;

    /// Rows whose norms vary over two orders of magnitude, as trained item vectors' do.
    fn skewed_rows(rng: &mut Rng, n: usize, dim: usize, spread: f64) -> Vec<f32> {
        let mut data = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let scale = (rng.uniform() * spread).exp() as f32 * 0.05;
            data.extend((0..dim).map(|_| (rng.uniform() as f32 - 0.5) * scale));
        }
        data
    }

    fn ids(hits: &[Hit]) -> Vec<u32> {
        hits.iter().map(|h| h.item).collect()
    }

    #[test]
    fn the_scan_is_the_exact_top_k_under_every_filter_with_appended_rows_out_of_range() {
        let (dim, built, appended) = (17, 3000, 400);
        let mut rng = Rng::new(11);
        let mut data = skewed_rows(&mut rng, built, dim, 4.0);
        let codes = Codes::encode_with_capacity(&data, dim, built + appended);
        // Appended rows are larger than anything the ranges were made from: their codes clamp.
        data.extend(skewed_rows(&mut rng, appended, dim, 6.0));
        let space = ItemVectors::from_raw(dim, data);
        for id in built..built + appended {
            // SAFETY: nothing reads these codes yet, and this is the one writer.
            unsafe { codes.encode_row(id as u32, space.row(id)) };
        }
        assert_eq!(codes.in_range(), built);
        let (mut prepared, mut scratch) = (Vec::new(), ScanScratch::default());
        for trial in 0..40 {
            let q: Vec<f32> = (0..dim).map(|_| rng.uniform() as f32 - 0.5).collect();
            let share = [0.001, 0.01, 0.1, 0.5, 0.9, 1.0][trial % 6];
            let list: Vec<u32> = (0..space.len() as u32)
                .filter(|_| rng.uniform() < share)
                .collect();
            let k = [1, 10, 100][trial % 3];
            for filter in [Filter::Only(&list), Filter::Exclude(&list), Filter::All] {
                let want = exact_top_k(&space, &q, k, filter);
                for by_codes in [true, false] {
                    let got = exact_scan::<Portable>(
                        &codes,
                        &space,
                        &q,
                        k,
                        filter.rows(space.len()),
                        by_codes,
                        &mut prepared,
                        &mut scratch,
                    );
                    assert_eq!(
                        ids(&got),
                        ids(&want),
                        "trial {trial}, {filter:?}, {by_codes}"
                    );
                }
            }
        }
    }
}
