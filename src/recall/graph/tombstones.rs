//! Deactivated items: an atomic bitset that search honours like a filter, so a catalog change (an
//! item withdrawn or restored) is one bit flip instead of a rebuild. The item stays in the graph as
//! a waypoint, so the graph's connectivity is untouched.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One bit per item, set when the item is deactivated.
pub(super) struct Tombstones {
    bits: Box<[AtomicU64]>,
    count: AtomicUsize,
}

impl Tombstones {
    /// Every one of `n` items active.
    pub fn new(n: usize) -> Self {
        Tombstones {
            bits: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicUsize::new(0),
        }
    }

    /// A copy with room for `n` items (growth past the capacity).
    pub fn grown(&self, n: usize) -> Self {
        let bits: Box<[AtomicU64]> = (0..n.div_ceil(64).max(self.bits.len()))
            .map(|w| AtomicU64::new(self.bits.get(w).map_or(0, |b| b.load(Ordering::Acquire))))
            .collect();
        let count = bits
            .iter()
            .map(|b| b.load(Ordering::Relaxed).count_ones() as usize)
            .sum();
        Tombstones {
            bits,
            count: AtomicUsize::new(count),
        }
    }

    /// Whether `item` is deactivated (items beyond the set are reported as not deactivated; the
    /// caller checks ranges).
    #[inline(always)]
    pub fn is_dead(&self, item: u32) -> bool {
        self.bits
            .get(item as usize / 64)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (item % 64)) != 0)
    }

    /// Sets `item`'s state; returns whether it changed. The caller checks `item` is in range.
    pub fn set_dead(&self, item: u32, dead: bool) -> bool {
        let Some(word) = self.bits.get(item as usize / 64) else {
            return false;
        };
        let bit = 1u64 << (item % 64);
        let old = if dead {
            word.fetch_or(bit, Ordering::AcqRel)
        } else {
            word.fetch_and(!bit, Ordering::AcqRel)
        };
        let changed = (old & bit != 0) != dead;
        if changed {
            if dead {
                self.count.fetch_add(1, Ordering::AcqRel);
            } else {
                self.count.fetch_sub(1, Ordering::AcqRel);
            }
        }
        changed
    }

    /// How many items are deactivated.
    #[inline]
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        8 * self.bits.len()
    }
}
