//! The walks' heap keys, ordered by (distance, id) in one integer compare: shared by the layer
//! searches (`search.rs`), the build (`build.rs`) and the norm walk (`head.rs`).

use std::cmp::Ordering;

/// A candidate ordered nearest-first in a max-heap.
#[derive(Clone, Copy, Debug)]
pub(super) struct Near(pub f32, pub u32);
/// A result ordered farthest-first in a max-heap (its top is the one to evict).
#[derive(Clone, Copy, Debug)]
pub(super) struct Far(pub f32, pub u32);

impl PartialEq for Near {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Near {}
impl PartialOrd for Near {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Near {
    #[inline(always)]
    fn cmp(&self, o: &Self) -> Ordering {
        order_key(o.0, o.1).cmp(&order_key(self.0, self.1))
    }
}
impl PartialEq for Far {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Far {}
impl PartialOrd for Far {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Far {
    // Ties broken by id so that results are deterministic.
    #[inline(always)]
    fn cmp(&self, o: &Self) -> Ordering {
        order_key(self.0, self.1).cmp(&order_key(o.0, o.1))
    }
}

/// `(distance, id)` as one integer whose order is `f32::total_cmp` on the distance, then the id:
/// the heaps compare it in one instruction instead of two branches (the heaps and the final sort
/// were a fifth of a k = 100 search's instructions).
#[inline(always)]
fn order_key(distance: f32, id: u32) -> u64 {
    // total_cmp's own mapping: flip the magnitude bits of negatives, then make it unsigned.
    let bits = distance.to_bits() as i32;
    let ordered = (bits ^ ((((bits >> 31) as u32) >> 1) as i32)) as u32 ^ 0x8000_0000;
    (u64::from(ordered) << 32) | u64::from(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_order_is_total_cmp_on_the_distance_then_the_id() {
        let distances = [
            f32::NEG_INFINITY,
            -3.5,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            2.0,
            f32::MAX,
            f32::INFINITY,
            f32::NAN,
            -f32::NAN,
        ];
        for &a in &distances {
            for &b in &distances {
                for (i, j) in [(0, 0), (1, 2), (7, 3), (u32::MAX, 0)] {
                    let reference = a.total_cmp(&b).then(i.cmp(&j));
                    assert_eq!(Far(a, i).cmp(&Far(b, j)), reference, "{a} {i} vs {b} {j}");
                    assert_eq!(Near(a, i).cmp(&Near(b, j)), reference.reverse());
                }
            }
        }
    }
}
