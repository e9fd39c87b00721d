//! The (user, item) pairs of the train split, as the WARP and BPR loops ask "has this user seen
//! this item?" for a sampled negative.
//!
//! A sorted list per user answers by binary search: ~log2(n) dependent loads, each a likely cache
//! miss since the user changes with every positive (45% of a WARP epoch at 19M interactions). An
//! open-addressing hash set of u64 keys answers with one load, which the trainer can start early
//! ([`SeenPairs::prefetch`]) for the negative it will score next.

/// A set of (user, item) pairs: linear probing over a power-of-two table at most half full.
#[derive(Debug, Clone)]
pub struct SeenPairs {
    slots: Vec<u64>,
    /// log2 of the table size, for Fibonacci hashing (the product's high bits).
    bits: u32,
}

/// No pair maps here: user and item indexes are below `u32::MAX`.
const EMPTY: u64 = u64::MAX;

fn key(user: u32, item: u32) -> u64 {
    (u64::from(user) << 32) | u64::from(item)
}

impl SeenPairs {
    /// The pairs (u, i) for every user u and every item i of `items_by_user[u]`.
    pub fn new(items_by_user: &[Vec<u32>]) -> SeenPairs {
        let pairs: usize = items_by_user.iter().map(Vec::len).sum();
        let bits = (pairs.max(1) * 2)
            .next_power_of_two()
            .trailing_zeros()
            .max(4);
        let mut set = SeenPairs {
            slots: vec![EMPTY; 1 << bits],
            bits,
        };
        for (user, items) in items_by_user.iter().enumerate() {
            for &item in items {
                set.insert(key(user as u32, item));
            }
        }
        set
    }

    fn home(&self, key: u64) -> usize {
        // Fibonacci hashing: multiply by 2^64/φ, keep the high bits (Knuth, TAOCP 6.4).
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.bits)) as usize
    }

    fn insert(&mut self, key: u64) {
        let mask = self.slots.len() - 1;
        let mut at = self.home(key);
        while self.slots[at] != EMPTY {
            if self.slots[at] == key {
                return;
            }
            at = (at + 1) & mask;
        }
        self.slots[at] = key;
    }

    /// Whether `user` has seen `item`.
    #[inline]
    pub fn contains(&self, user: u32, item: u32) -> bool {
        let key = key(user, item);
        let mask = self.slots.len() - 1;
        let mut at = self.home(key);
        loop {
            match self.slots[at] {
                EMPTY => return false,
                k if k == key => return true,
                _ => at = (at + 1) & mask,
            }
        }
    }

    /// Starts loading the slot where `contains(user, item)` looks first.
    #[inline]
    pub fn prefetch(&self, user: u32, item: u32) {
        let at = self.home(key(user, item));
        crate::kernels::prefetch(self.slots[at..].as_ptr().cast());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_exactly_the_pairs_given() {
        let mut rng = crate::rng::Rng::new(3);
        let lists: Vec<Vec<u32>> = (0..300)
            .map(|_| {
                let mut items: Vec<u32> =
                    (0..rng.below(60)).map(|_| rng.below(500) as u32).collect();
                items.sort_unstable();
                items.dedup();
                items
            })
            .collect();
        let set = SeenPairs::new(&lists);
        for (user, items) in lists.iter().enumerate() {
            for item in 0..500u32 {
                assert_eq!(
                    set.contains(user as u32, item),
                    items.binary_search(&item).is_ok(),
                    "user {user} item {item}"
                );
            }
        }
        // Users beyond the lists have seen nothing; the table is at most half full.
        assert!(!set.contains(300, 0));
        let pairs: usize = lists.iter().map(Vec::len).sum();
        assert!(set.slots.len() >= 2 * pairs);
    }

    #[test]
    fn an_empty_set_contains_nothing() {
        let set = SeenPairs::new(&[]);
        assert!(!set.contains(0, 0));
        assert!(!set.contains(u32::MAX - 1, 7));
    }
}
