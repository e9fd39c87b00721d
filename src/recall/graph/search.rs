//! The search routines shared by queries and the build: greedy descent through the upper layers,
//! beam search with `ef` on one layer (Malkov & Yashunin 2018, Alg. 2 and 5), and the
//! neighbour-selection heuristic (Alg. 4), over a reusable per-thread scratch space.
//!
//! Distances here are "smaller is closer": −⟨a, b⟩ (see `graph/mod.rs` for why).

use std::cell::RefCell;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering as AtomicOrdering;

use super::codes::{CodeQuery, Codes};
use super::head::HeadScratch;
use super::kernel::Kernel;
use super::links::Links;
use super::order::{Far, Near};
use super::scan::ScanScratch;
use crate::kernels::prefetch;
use crate::vectors::ItemVectors;

/// In the mixed build, e is pruned only when r is clearly nearer to it than the base is
/// (1.2 ‖e − r‖² < ‖e − base‖²), as DiskANN's α (Subramanya et al. 2019) relaxes the paper's rule:
/// on 20k × 32 at ef 64, self-recall 0.987 → 0.998 against 1.0; 1.5 was worse and slower.
const PRUNE_SLACK: f32 = 1.2;

/// Nodes a filtered walk scores before it compares the share allowed among them with the filter's
/// overall share (see [`View::search_layer`]): under half that share, it gives up. A random filter
/// allowing 10% shows about 26 allowed in 256 and gives up (then scans) about one query in 300;
/// at 3%, about one in 20.
pub(super) const PROBE: usize = 256;

/// When a filtered walk gives up for an exact scan (see [`View::search_layer`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Nodes it may score: about what scanning the allowed items costs.
    pub budget: usize,
    /// Share of the items the filter allows.
    pub selectivity: f32,
}

/// Per-thread working memory: the visited set, the two heaps and small buffers. Reused across
/// queries, so a query allocates only its result.
#[derive(Default)]
pub(super) struct Scratch {
    /// One bit per node: 12.5 KiB at 100k items, so that its random reads stay in L1/L2 (a u16
    /// generation stamp per node, as hnswlib keeps, is 16x larger: its misses were a tenth of a
    /// served query's time). Cleared through `touched`, the words set since `begin`.
    visited: Vec<u64>,
    touched: Vec<u32>,
    pub candidates: BinaryHeap<Near>,
    pub results: BinaryHeap<Far>,
    /// Unvisited neighbours of the node being expanded.
    pending: Vec<u32>,
    /// The allowed items of a large `Only` filter, one bit each, for filtered walks.
    pub allowed_bits: Vec<u64>,
    /// The normalised query of a cosine search.
    pub query: Vec<f32>,
    /// The query prepared for the byte codes (`codes.rs`).
    pub prepared: Vec<i16>,
    /// A query's final candidates, the nearest re-scored exactly after a walk on byte codes.
    pub rescored: Vec<Far>,
    /// The norm walk's buffers (`head.rs`).
    pub head: HeadScratch,
    /// The exact scan's buffers (`scan.rs`).
    pub scan: ScanScratch,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch space.
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        // Only reachable if `f` re-entered a search on this thread; a fresh scratch keeps it correct.
        Err(_) => f(&mut Scratch::default()),
    })
}

impl Scratch {
    /// Starts a new search over node ids below `n` (the graph's capacity, so that a node linked
    /// while the search runs has a bit): an empty visited set, cleared in the words the last search
    /// set (a few hundred, whatever `n` is).
    #[inline]
    pub fn begin(&mut self, n: usize) {
        for &w in &self.touched {
            self.visited[w as usize] = 0;
        }
        self.touched.clear();
        let words = n.div_ceil(64);
        if self.visited.len() < words {
            self.visited.resize(words, 0);
        }
        self.candidates.clear();
        self.results.clear();
    }

    /// Marks `id` visited; true the first time since `begin`.
    #[inline(always)]
    fn visit(&mut self, id: u32) -> bool {
        let (w, bit) = (id >> 6, 1u64 << (id & 63));
        let word = &mut self.visited[w as usize];
        if *word & bit != 0 {
            return false;
        }
        if *word == 0 {
            self.touched.push(w);
        }
        *word |= bit;
        true
    }
}

/// What a layer search reads: the vectors, the lists, and for builds the squared norms (empty when
/// searching) and which distance links and prunes (see [`super::BuildSpace`]).
///
/// Rows are read one at a time ([`ItemVectors::linked_row`]), never as one slice over the matrix:
/// live inserts append rows while searches run, and a walk may step onto a node linked after it
/// started, whose row a slice taken at the start would not cover (and a slice must never cover a
/// row still being written). Only ids read from the lists (or below the published length) reach
/// `row`, and a node is linked only after its row is published.
pub(super) struct View<'a> {
    pub vectors: &'a ItemVectors,
    pub links: &'a Links,
    pub norms: &'a [f32],
    /// Distance is ‖a − b‖² instead of −⟨a, b⟩.
    pub l2: bool,
    /// The heuristic's domination test uses ‖a − b‖² while candidates are ranked by −⟨a, b⟩.
    pub prune_l2: bool,
    /// Score nodes by their byte codes instead of `data`, against the query as [`Codes::prepare`]
    /// turned it (searches only, never builds); the `q` and `qn` handed to the methods are then
    /// not read.
    pub codes: Option<(&'a Codes, CodeQuery<'a>)>,
}

impl View<'_> {
    /// The row of a node reached through the lists (or published before the walk started).
    #[inline(always)]
    pub fn row(&self, id: u32) -> &[f32] {
        self.vectors.linked_row(id as usize)
    }

    /// Distance from a query `q` (squared norm `qn`, used only for L2) to node `id`.
    #[inline(always)]
    pub fn dist<K: Kernel>(&self, q: &[f32], qn: f32, id: u32) -> f32 {
        if let Some((codes, cq)) = self.codes {
            return -(cq.offset + cq.scale * K::dot_i16_u8(cq.query, codes.row(id)) as f32);
        }
        let dot = K::dot(q, self.row(id));
        if !self.l2 {
            -dot
        } else {
            qn + self.norms[id as usize] - 2.0 * dot
        }
    }

    /// Starts loading every cache line that scoring `id` will read.
    #[inline(always)]
    fn prefetch_node(&self, id: u32) {
        if let Some((codes, _)) = self.codes {
            let code = codes.row(id);
            prefetch(code.as_ptr().cast());
            if let Some(last) = code.last() {
                prefetch((last as *const u8).cast());
            }
            return;
        }
        // Every cache line of the row (16 floats each, plus the one holding the last).
        let row = self.row(id);
        for line in row.chunks(16) {
            prefetch(line.as_ptr());
        }
        if let Some(last) = row.last() {
            prefetch(last);
        }
    }

    /// Distance between two nodes.
    #[inline(always)]
    pub fn pair<K: Kernel>(&self, a: u32, b: u32) -> f32 {
        let qn = self.norms.get(a as usize).copied().unwrap_or(0.0);
        self.dist::<K>(self.row(a), qn, b)
    }

    /// Greedy descent (ef = 1) from `(dist, node)` through layers `top` down to `bottom + 1`; returns
    /// the closest node found, the entry for layer `bottom`.
    #[inline(always)]
    pub fn descend<K: Kernel>(
        &self,
        q: &[f32],
        qn: f32,
        mut best: (f32, u32),
        top: usize,
        bottom: usize,
    ) -> (f32, u32) {
        for level in (bottom + 1..=top).rev() {
            loop {
                let mut changed = false;
                let list = self.links.neighbours(best.1, level);
                // Loads overlap: every neighbour's row is requested before the first is scored.
                for nb in list {
                    self.prefetch_node(nb.load(AtomicOrdering::Acquire));
                }
                for nb in list {
                    let nb = nb.load(AtomicOrdering::Acquire);
                    let d = self.dist::<K>(q, qn, nb);
                    if d < best.0 {
                        best = (d, nb);
                        changed = true;
                    }
                }
                if !changed {
                    break;
                }
            }
        }
        best
    }

    /// Beam search on `level` from `entry` keeping the `ef` nearest allowed nodes in
    /// `scratch.results` (Alg. 2). Disallowed nodes are still walked through, so the filter is
    /// applied inside the beam without cutting the graph; while fewer than `ef` allowed nodes are
    /// held the search keeps expanding (as hnswlib does).
    ///
    /// With `limits` (selective filters) it returns the nodes scored, or `Err` with the nodes
    /// scored so far when the walk gives up for an exact scan of the allowed items: once it has scored more than `limits.budget`
    /// nodes, or when the first [`PROBE`] nodes it scored hold under half the allowed share
    /// `limits.selectivity` (a filter anti-correlated with the query, which removes the
    /// items around it, sends the beam through a region with nothing to return; no estimate from
    /// the allowed count sees that), or when the nodes that beat the bound so far do (tested
    /// every [`PROBE`] nodes and at the end).
    // Flat arguments on purpose: this is the hot loop, inlined into each kernel's root function.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn search_layer<K: Kernel>(
        &self,
        q: &[f32],
        qn: f32,
        entry: (f32, u32),
        ef: usize,
        level: usize,
        s: &mut Scratch,
        filtered: bool,
        limits: Option<Limits>,
        allow: impl Fn(u32) -> bool,
    ) -> Result<usize, usize> {
        s.visit(entry.1);
        s.candidates.push(Near(entry.0, entry.1));
        let mut bound = f32::INFINITY;
        if allow(entry.1) {
            s.results.push(Far(entry.0, entry.1));
            bound = entry.0;
        }
        let (mut scored, mut scored_allowed, mut probing) = (0usize, 0usize, limits.is_some());
        // Where the walk next compares the share allowed among the nodes that beat the bound.
        let mut next_check = 2 * PROBE;
        // Nodes that beat the bound when scored, and how many of them the filter allowed.
        let (mut passed, mut passed_allowed) = (0usize, 0usize);
        while let Some(Near(cd, c)) = s.candidates.pop() {
            if cd > bound && (s.results.len() >= ef || !filtered) {
                break;
            }
            // The next node to expand is most likely the next candidate: load its list while this
            // one's neighbours are scored (hnswlib gets this from storing lists beside vectors).
            if let Some(next) = s.candidates.peek() {
                self.links.prefetch(next.1, level);
            }
            // Mark and prefetch all fresh neighbours first, then score them: their loads overlap.
            let mut pending = std::mem::take(&mut s.pending);
            pending.clear();
            self.links.for_each(c, level, |nb| {
                if s.visit(nb) {
                    self.prefetch_node(nb);
                    pending.push(nb);
                }
            });
            for &nb in &pending {
                let d = self.dist::<K>(q, qn, nb);
                let pass = s.results.len() < ef || d < bound;
                // The filter is asked only of nodes that may enter the results, and of every
                // node while the probe counts.
                let allowed = (pass || probing) && allow(nb);
                scored_allowed += usize::from(probing && allowed);
                passed += usize::from(pass);
                passed_allowed += usize::from(pass && allowed);
                if pass {
                    s.candidates.push(Near(d, nb));
                    if allowed {
                        if s.results.len() < ef {
                            s.results.push(Far(d, nb));
                        } else if let Some(mut farthest) = s.results.peek_mut() {
                            // Full, and d < bound: the newcomer replaces the farthest in one
                            // sift-down (push + pop cost two sifts and a sift-up; heap pops were
                            // a fifth of a served query's instructions).
                            *farthest = Far(d, nb);
                        }
                    }
                    if let Some(top) = s.results.peek() {
                        bound = top.0;
                    }
                }
            }
            scored += pending.len();
            s.pending = pending;
            if let Some(limits) = limits {
                if probing && scored >= PROBE {
                    probing = false;
                    if (scored_allowed as f32) < 0.5 * limits.selectivity * scored as f32 {
                        return Err(scored);
                    }
                }
                if scored > limits.budget {
                    return Err(scored);
                }
                // The final test below, every PROBE nodes: a walk that passed the probe and then
                // entered the removed region around the query gives up there, not after
                // crossing it (at 90% allowed, removing the query's best 10%, a walk scored
                // several thousand nodes before it found ef allowed ones past the region).
                if scored >= next_check {
                    next_check = scored + PROBE;
                    if (passed_allowed as f32) < 0.5 * limits.selectivity * passed as f32 {
                        return Err(scored);
                    }
                }
            }
        }
        // The probe's test once more over the whole walk, on the nodes that beat the bound: under
        // a filter unrelated to the query about the allowed share of them is allowed, while a walk
        // that passed the probe far from the query and then met the removed region around it saw
        // mostly disallowed nodes there (its answer is the region's border as it found it, not
        // the best allowed items: recall 0.7 on such queries).
        if let Some(limits) = limits {
            if (passed_allowed as f32) < 0.5 * limits.selectivity * passed as f32 {
                return Err(scored);
            }
        }
        Ok(scored)
    }

    /// The neighbour-selection heuristic (Alg. 4, as in hnswlib: no candidate extension, pruned
    /// candidates not kept): walking candidates nearest-first, keep one only if it is closer to the
    /// base than to every neighbour kept so far, so links spread over directions instead of piling
    /// into one cluster. `cands` holds (distance to base, id) sorted nearest-first; keeps ≤ `m`.
    #[inline(always)]
    pub fn select<K: Kernel>(
        &self,
        base: u32,
        cands: &[(f32, u32)],
        m: usize,
        out: &mut Vec<(f32, u32)>,
    ) {
        out.clear();
        if cands.len() <= m {
            out.extend_from_slice(cands);
            return;
        }
        let mixed = self.prune_l2 && !self.l2;
        for &(d, e) in cands {
            if out.len() >= m {
                break;
            }
            // Plain loops, not `Iterator::all`: a closure handed to a library function that is not
            // inlined is compiled without AVX2/FMA, and its `mul_add` became a call to software
            // `fmaf` (a third of the build time in a profile).
            let mut good = true;
            if mixed {
                // d = −⟨e, base⟩, so ‖e − base‖² = ‖e‖² + ‖base‖² + 2d.
                let ne = self.norms[e as usize];
                let to_base = ne + self.norms[base as usize] + 2.0 * d;
                for &(_, r) in out.iter() {
                    let to_r = ne + self.norms[r as usize] - 2.0 * K::dot(self.row(e), self.row(r));
                    if PRUNE_SLACK * to_r < to_base {
                        good = false;
                        break;
                    }
                }
            } else {
                for &(_, r) in out.iter() {
                    if self.pair::<K>(e, r) < d {
                        good = false;
                        break;
                    }
                }
            }
            if good {
                out.push((d, e));
            }
        }
    }
}
