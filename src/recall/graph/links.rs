//! The neighbour lists of every layer, laid out for the search loop (Malkov & Yashunin 2018, §4).
//!
//! Layer 0 is one flat array of fixed-size slots, `[count, id_1, …, id_m0]` per node, so a node's
//! list is found by multiplication and read in one or two cache lines. Upper layers hold few nodes
//! (a share 1/M per layer), so they live in a second flat array addressed through a per-node offset.
//! Entries are `AtomicU32` so that the parallel build and live inserts can rewrite lists while other
//! threads read them without a data race; acquire loads and release stores compile to plain moves
//! on x86-64.
//!
//! Slots exist for every node the item vectors have room for (their capacity), with levels drawn
//! for all of them up front, so a live insert only fills slots and never moves a list.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

/// Marks a node without upper layers in `upper_offset`.
pub(super) const NO_UPPER: u32 = u32::MAX;

/// All neighbour lists and the per-node levels.
pub(super) struct Links {
    /// Capacity of an upper-layer list (M).
    pub m: usize,
    /// Capacity of a layer-0 list (M0 = 2M).
    pub m0: usize,
    /// Top layer of each node.
    pub levels: Vec<u8>,
    /// `n × (1 + m0)`: count then ids.
    pub level0: Box<[AtomicU32]>,
    /// Start in `upper` of a node's layer-1 list, or [`NO_UPPER`].
    pub upper_offset: Vec<u32>,
    /// For a node of level L ≥ 1: L slots of `1 + m`, layers 1..=L in order.
    pub upper: Box<[AtomicU32]>,
    /// How many entries at the tail of each node's layer-0 list are repair links
    /// (`build::link_missed`); written only by the repair and under the node's lock.
    pinned: Box<[AtomicU8]>,
}

fn zeros(len: usize) -> Box<[AtomicU32]> {
    // Huge pages: searches read layer-0 lists at random (see `memory.rs`).
    crate::memory::vec_from_fn(len, |_| AtomicU32::new(0)).into_boxed_slice()
}

impl Links {
    /// Empty lists for nodes of the given levels; `None` when the upper array would not be
    /// addressable with u32 offsets.
    pub fn new(levels: Vec<u8>, m: usize, m0: usize) -> Option<Self> {
        let mut upper_offset = Vec::with_capacity(levels.len());
        let mut total: u64 = 0;
        for &l in &levels {
            if l == 0 {
                upper_offset.push(NO_UPPER);
            } else {
                upper_offset.push(u32::try_from(total).ok().filter(|&o| o != NO_UPPER)?);
                total += l as u64 * (1 + m) as u64;
            }
        }
        let total = usize::try_from(total).ok()?;
        let level0 = zeros(levels.len().checked_mul(1 + m0)?);
        Some(Links {
            pinned: (0..levels.len()).map(|_| AtomicU8::new(0)).collect(),
            m,
            m0,
            level0,
            upper: zeros(total),
            upper_offset,
            levels,
        })
    }

    /// Nodes there are slots for (linked or not yet).
    pub fn capacity(&self) -> usize {
        self.levels.len()
    }

    /// Empty lists for the nodes of `levels` (which extend this graph's levels), holding a copy of
    /// this graph's lists: growth past the capacity. Node offsets depend only on the levels before
    /// them, so the old arrays are a prefix of the new ones. `None` as [`Links::new`].
    pub fn grown(&self, levels: Vec<u8>) -> Option<Self> {
        if levels.len() < self.levels.len() || levels[..self.levels.len()] != self.levels[..] {
            return None;
        }
        let out = Links::new(levels, self.m, self.m0)?;
        for (to, from) in out.level0.iter().zip(self.level0.iter()) {
            to.store(from.load(Ordering::Acquire), Ordering::Relaxed);
        }
        for (to, from) in out.upper.iter().zip(self.upper.iter()) {
            to.store(from.load(Ordering::Acquire), Ordering::Relaxed);
        }
        for (to, from) in out.pinned.iter().zip(self.pinned.iter()) {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        Some(out)
    }

    /// Length of the upper array used by nodes `0..n` (what a file of n nodes holds).
    pub fn upper_len(&self, n: usize) -> usize {
        self.levels[..n.min(self.levels.len())]
            .iter()
            .map(|&l| l as usize * (1 + self.m))
            .sum()
    }

    /// Capacity of a list on `level`.
    #[inline]
    pub fn cap(&self, level: usize) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.m
        }
    }

    /// The slot `[count, ids…]` of `node` on `level`. **Panics** if the node has no such layer
    /// (callers only walk layers a node was built with).
    #[inline]
    pub fn slot(&self, node: u32, level: usize) -> &[AtomicU32] {
        let node = node as usize;
        if level == 0 {
            let w = 1 + self.m0;
            &self.level0[node * w..(node + 1) * w]
        } else {
            let w = 1 + self.m;
            let start = self.upper_offset[node] as usize + (level - 1) * w;
            &self.upper[start..start + w]
        }
    }

    /// Starts loading the list of `node` on `level` (its first cache line, which holds the count
    /// and the first ids).
    #[inline(always)]
    pub fn prefetch(&self, node: u32, level: usize) {
        if level == 0 {
            let at = node as usize * (1 + self.m0);
            if let Some(first) = self.level0.get(at) {
                crate::kernels::prefetch(first.as_ptr().cast());
            }
        }
    }

    /// Calls `f` on each neighbour of `node` on `level`. The count is read with Acquire, after the
    /// writer stored the ids, so every id seen was a valid neighbour on this layer at some point.
    /// Ids are read with Acquire too: a writer stores them with Release after the node's row and
    /// code were written, so whatever is read about a node reached here is complete (a list being
    /// rewritten may show a new id before its new count).
    #[inline(always)]
    pub fn for_each(&self, node: u32, level: usize, mut f: impl FnMut(u32)) {
        for a in self.neighbours(node, level) {
            f(a.load(Ordering::Acquire));
        }
    }

    /// The neighbours of `node` on `level` (count read with Acquire; load the ids with Acquire, see
    /// [`Links::for_each`]).
    /// For loops that score them: a loop body is compiled with its function's instruction set,
    /// where a closure handed to `for_each` from an `#[inline(always)]` helper was not, and called
    /// the AVX2 kernel out of line (a twentieth of a served query).
    #[inline(always)]
    pub fn neighbours(&self, node: u32, level: usize) -> &[AtomicU32] {
        let slot = self.slot(node, level);
        let count = (slot[0].load(Ordering::Acquire) as usize).min(slot.len() - 1);
        &slot[1..=count]
    }

    /// Repair links at the tail of `node`'s layer-0 list.
    pub fn pinned(&self, node: u32) -> usize {
        self.pinned[node as usize].load(Ordering::Relaxed) as usize
    }

    /// Records `count` repair links at the tail of `node`'s layer-0 list.
    pub fn set_pinned(&self, node: u32, count: usize) {
        let count = count.min(self.m0).min(u8::MAX as usize) as u8;
        self.pinned[node as usize].store(count, Ordering::Relaxed);
    }

    /// The tail entries of `node`'s layer-0 list that pruning keeps: its repair links, at most
    /// half the list (so pruning can still shape the rest).
    pub fn protected(&self, node: u32) -> usize {
        self.pinned(node).min(self.m0 / 2)
    }

    /// Number of neighbours of `node` on `level`.
    pub fn count(&self, node: u32, level: usize) -> usize {
        self.neighbours(node, level).len()
    }

    /// Whether `other` is a neighbour of `node` on `level`.
    pub fn contains(&self, node: u32, level: usize, other: u32) -> bool {
        let mut found = false;
        self.for_each(node, level, |x| found |= x == other);
        found
    }

    /// Replaces the list of `node` on `level` (the caller holds the node's build lock).
    pub fn set(&self, node: u32, level: usize, ids: &[u32]) {
        let slot = self.slot(node, level);
        let count = ids.len().min(slot.len() - 1);
        for (a, &id) in slot[1..=count].iter().zip(ids) {
            // Release: a reader that sees this id (even before the count) sees its row and code.
            a.store(id, Ordering::Release);
        }
        slot[0].store(count as u32, Ordering::Release);
    }

    /// Bytes held by the lists and levels.
    pub fn memory_bytes(&self) -> usize {
        4 * (self.level0.len() + self.upper.len() + self.upper_offset.len())
            + self.levels.len()
            + self.pinned.len()
    }
}
