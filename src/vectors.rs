//! The vectors recall searches: one row per item in a contiguous row-major f32 matrix. Kept beside
//! the kernels and apart from the model, so that the index depends on vectors and kernels only;
//! `fm::export` makes them from a trained model (rows [q_i; b_i]).
//!
//! The matrix grows while it is read: rows are appended ([`ItemVectors::push`]) into capacity
//! reserved up front and published by one atomic length, so searches never wait for an insert.
//! A published row is never written again (an item whose vector changes gets a new row), which is
//! what makes reading rows without locks sound. When the capacity is used up the owner makes a
//! larger copy ([`ItemVectors::with_capacity`]) and swaps it in, so growth doubles, as a `Vec` does,
//! without stopping readers of the old copy.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// All items as rows of one contiguous row-major matrix (n_items × dim), in a huge-page buffer
/// (see `memory.rs`), with room reserved for rows appended later.
pub struct ItemVectors {
    dim: usize,
    /// `capacity × dim` cells; rows below `len` are published and read-only from then on.
    cells: Box<[UnsafeCell<f32>]>,
    /// Published rows (Release on push, Acquire on read).
    len: AtomicUsize,
    /// One appender at a time.
    append: Mutex<()>,
}

// SAFETY: rows are written only by `push`, under `append`, and only beyond the published length;
// readers build slices over published rows only (`as_slice`, `row`), which are never written again.
unsafe impl Sync for ItemVectors {}

impl std::fmt::Debug for ItemVectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemVectors")
            .field("dim", &self.dim)
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Clone for ItemVectors {
    /// The published rows, with the same spare capacity.
    fn clone(&self) -> Self {
        self.with_capacity(self.capacity())
    }
}

impl PartialEq for ItemVectors {
    /// Same width and the same published rows (capacity aside).
    fn eq(&self, other: &Self) -> bool {
        self.dim == other.dim && self.as_slice() == other.as_slice()
    }
}

fn into_cells(data: Vec<f32>) -> Box<[UnsafeCell<f32>]> {
    let mut data = std::mem::ManuallyDrop::new(data.into_boxed_slice());
    let (ptr, len) = (data.as_mut_ptr(), data.len());
    // SAFETY: UnsafeCell<f32> has the layout of f32 (repr(transparent)); the allocation is moved,
    // not copied, and freed with the same layout.
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr.cast(), len)) }
}

impl ItemVectors {
    fn from_buffer(dim: usize, data: Vec<f32>, len: usize) -> Self {
        ItemVectors {
            dim,
            cells: into_cells(data),
            len: AtomicUsize::new(len),
            append: Mutex::new(()),
        }
    }

    /// `n` rows `dim` long, each written in place by `fill(i, row)` (no copy of the matrix).
    /// **Panics** if `dim` is 0.
    pub fn from_fn(n: usize, dim: usize, mut fill: impl FnMut(usize, &mut [f32])) -> Self {
        assert!(dim > 0, "item vectors need at least one dimension");
        let mut data = crate::memory::filled_vec(n * dim, 0f32);
        for (i, row) in data.chunks_exact_mut(dim).enumerate() {
            fill(i, row);
        }
        Self::from_buffer(dim, data, n)
    }

    /// Builds from raw rows (each `dim` long), copied into a huge-page buffer (see `memory.rs`).
    /// **Panics** if `dim` is 0 or `data` is not a whole number of rows.
    pub fn from_raw(dim: usize, data: Vec<f32>) -> Self {
        assert!(dim > 0 && data.len() % dim == 0, "ragged item vectors");
        Self::from_buffer(dim, crate::memory::copied_vec(&data), data.len() / dim)
    }

    /// A copy of the published rows with room for `capacity` rows in all (at least the rows held).
    pub fn with_capacity(&self, capacity: usize) -> Self {
        let rows = self.as_slice();
        let capacity = capacity.max(self.len());
        let mut data = crate::memory::filled_vec(capacity * self.dim, 0f32);
        data[..rows.len()].copy_from_slice(rows);
        Self::from_buffer(self.dim, data, rows.len() / self.dim)
    }

    /// Appends a row and publishes it; returns its index, or `None` when the capacity is used up
    /// (make a larger copy with [`ItemVectors::with_capacity`]). **Panics** if `row` is not `dim`
    /// long (callers build rows of the model's width).
    pub fn push(&self, row: &[f32]) -> Option<u32> {
        assert_eq!(row.len(), self.dim, "row width");
        let _one = self.append.lock().unwrap_or_else(PoisonError::into_inner);
        let i = self.len.load(Ordering::Relaxed);
        if i >= self.capacity() || i >= u32::MAX as usize {
            return None;
        }
        for (cell, &x) in self.cells[i * self.dim..(i + 1) * self.dim].iter().zip(row) {
            // SAFETY: row i is beyond the published length, so no reader has a reference to it,
            // and `append` keeps other appenders out.
            unsafe { *cell.get() = x };
        }
        self.len.store(i + 1, Ordering::Release);
        Some(i as u32)
    }

    /// Vector length (k + 1 for an FM's items).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of published rows.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Rows the buffer holds before it must be copied to grow.
    pub fn capacity(&self) -> usize {
        self.cells.len() / self.dim
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item i's vector. **Panics** if row i is not published.
    #[inline]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.as_slice()[i * self.dim..(i + 1) * self.dim]
    }

    /// Item i's vector, for an index that reached `i` through its own links: only published rows
    /// are ever linked, so this skips the length check's atomic load. **Panics** beyond the capacity.
    #[inline(always)]
    pub fn linked_row(&self, i: usize) -> &[f32] {
        let cells = &self.cells[i * self.dim..(i + 1) * self.dim];
        // SAFETY: a linked row was published before any link to it was written, and is never
        // written again; UnsafeCell<f32> has the layout of f32.
        unsafe { std::slice::from_raw_parts(cells.as_ptr().cast(), self.dim) }
    }

    /// All published vectors, row-major.
    pub fn as_slice(&self) -> &[f32] {
        let n = self.len() * self.dim;
        // SAFETY: published rows are never written again (see the type's documentation).
        unsafe { std::slice::from_raw_parts(self.cells.as_ptr().cast(), n) }
    }

    /// ⟨query, item_i⟩ for every item, into `out` (length `len()`).
    pub fn scores_into(&self, query: &[f32], out: &mut [f32]) {
        crate::kernels::dot_rows(&query[..self.dim.min(query.len())], self.as_slice(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_rows_are_read_back_and_a_full_buffer_says_so() {
        let v = ItemVectors::from_raw(2, vec![1.0, 2.0]).with_capacity(3);
        assert_eq!(v.push(&[3.0, 4.0]), Some(1));
        assert_eq!(v.push(&[5.0, 6.0]), Some(2));
        assert_eq!(v.push(&[7.0, 8.0]), None);
        assert_eq!(v.as_slice(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(v.row(2), &[5.0, 6.0]);
        let grown = v.with_capacity(6);
        assert_eq!((grown.len(), grown.capacity()), (3, 6));
        assert_eq!(grown, v);
    }

    #[test]
    fn readers_see_whole_rows_while_another_thread_appends() {
        let v = std::sync::Arc::new(ItemVectors::from_raw(4, vec![0.0; 4]).with_capacity(20_001));
        std::thread::scope(|s| {
            let writer = v.clone();
            s.spawn(move || {
                for i in 1..=20_000u32 {
                    writer.push(&[i as f32; 4]).unwrap();
                }
            });
            for _ in 0..200 {
                let rows = v.as_slice();
                for (i, row) in rows.chunks_exact(4).enumerate() {
                    assert!(row.iter().all(|&x| x == i as f32), "row {i} torn: {row:?}");
                }
            }
        });
        assert_eq!(v.len(), 20_001);
    }
}
