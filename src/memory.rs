//! Large buffers backed by transparent huge pages.
//!
//! Recall reads the item vectors (52 MB at 200k × 65 f32) and the graph's links either in one
//! stream (exact search) or at random (graph search). With 4 KiB pages every few rows cost a TLB
//! miss and the hardware prefetcher stops at each page boundary; 2 MiB pages remove both. Linux
//! grants them to a mapping only on request when `transparent_hugepage/enabled` is `madvise` (the
//! common default, and this machine's), so large buffers ask with `madvise(MADV_HUGEPAGE)` before
//! their pages are first touched. NumPy does the same for its arrays. Elsewhere this is a no-op.

/// Buffers smaller than this stay on ordinary pages (a huge page would be mostly empty).
const HUGE_PAGE: usize = 2 << 20;

/// A vector of `len` copies of `value`, whose pages the kernel is asked to back with huge pages
/// before they are written.
pub fn filled_vec<T: Clone>(len: usize, value: T) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(len);
    advise_huge_pages(v.as_mut_ptr().cast(), len * std::mem::size_of::<T>());
    v.resize(len, value);
    v
}

/// A copy of `items` in a buffer from [`filled_vec`].
pub fn copied_vec<T: Copy + Default>(items: &[T]) -> Vec<T> {
    let mut v = filled_vec(items.len(), T::default());
    v.copy_from_slice(items);
    v
}

/// A vector of `f(i)` for `i` in `0..len`, in a buffer advised like [`filled_vec`]'s.
pub fn vec_from_fn<T>(len: usize, f: impl FnMut(usize) -> T) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(len);
    advise_huge_pages(v.as_mut_ptr().cast(), len * std::mem::size_of::<T>());
    v.extend((0..len).map(f));
    v
}

/// Asks for huge pages over the whole 2 MiB-aligned part of `[ptr, ptr + bytes)`; best effort
/// (an error only means ordinary pages).
fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
    if bytes < HUGE_PAGE {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize + bytes) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: the range lies inside an allocation we own; MADV_HUGEPAGE only changes how
            // the kernel backs it, never its contents or validity.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = ptr;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_hold_what_was_asked() {
        let big = filled_vec(3 << 20, 1.5f32);
        assert_eq!(big.len(), 3 << 20);
        assert!(big.iter().all(|&x| x == 1.5));
        let copy = copied_vec(&[1u32, 2, 3]);
        assert_eq!(copy, [1, 2, 3]);
        let squares = vec_from_fn(1 << 20, |i| (i * i) as u64);
        assert_eq!(squares[1000], 1_000_000);
    }
}
