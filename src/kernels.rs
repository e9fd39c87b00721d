//! Inner-product kernels: the hot loop of training, evaluation and recall.
//!
//! Each kernel has a portable body that LLVM vectorises for the baseline target (SSE2 on x86-64),
//! and on x86-64 the same body compiled with AVX2 + FMA, chosen at run time, so one binary runs
//! everywhere and uses the wide units where they exist.

/// The portable body: 16 independent accumulators so that two 8-wide registers stay busy. `b` is
/// f32, or bytes widened to f32 in registers (the graph's codes).
#[inline(always)]
fn dot_body<T: Copy + Into<f32>>(a: &[f32], b: &[T], fma: bool) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        let y: f32 = (*y).into();
        tail = if fma {
            x.mul_add(y, tail)
        } else {
            tail + x * y
        };
    }
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            let yl: f32 = y[l].into();
            acc[l] = if fma {
                x[l].mul_add(yl, acc[l])
            } else {
                acc[l] + x[l] * yl
            };
        }
    }
    let mut half = [0f32; 8];
    for l in 0..8 {
        half[l] = acc[l] + acc[l + 8];
    }
    ((half[0] + half[4]) + (half[1] + half[5])) + ((half[2] + half[6]) + (half[3] + half[7])) + tail
}

/// ⟨a, b⟩ in integers: a query in i16 against byte codes (graph search on quantised vectors,
/// `graph/codes.rs`). Exact as long as Σ|a_j|·255 < 2³¹, which `Codes::prepare` guarantees.
#[inline(always)]
pub(crate) fn dot_i16_u8_inline(a: &[i16], b: &[u8]) -> i32 {
    a.iter()
        .zip(b)
        .fold(0i32, |s, (&x, &y)| s.wrapping_add(x as i32 * y as i32))
}

#[inline(always)]
fn dot_rows_body(query: &[f32], rows: &[f32], out: &mut [f32], fma: bool) {
    let dim = query.len();
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(dim)) {
        *o = dot_body(query, row, fma);
    }
}

/// Rows requested ahead of the one being scored by [`dot_gather`]: a gathered row is a cache miss,
/// and eight in flight cover the latency of one at this dot product's length (65 floats).
const GATHER_AHEAD: usize = 8;

#[inline(always)]
fn dot_gather_body(query: &[f32], matrix: &[f32], ids: &[u32], out: &mut [f32], fma: bool) {
    let dim = query.len();
    for (j, (o, &id)) in out.iter_mut().zip(ids).enumerate() {
        if let Some(&ahead) = ids.get(j + GATHER_AHEAD) {
            let start = ahead as usize * dim;
            if let Some(row) = matrix.get(start..start + dim) {
                for line in row.chunks(16) {
                    prefetch(line.as_ptr());
                }
                if let Some(last) = row.last() {
                    prefetch(last);
                }
            }
        }
        let start = id as usize * dim;
        *o = dot_body(query, &matrix[start..start + dim], fma);
    }
}

/// Rows of a matrix stored component-major (`data[c * stride + r]`), with the row count padded
/// with zero rows to a multiple of [`Transposed::LANES`]: the layout in which a block of queries
/// scores 16 rows per step with no horizontal sums (a GEMM micro-kernel, as in Goto & van de
/// Geijn, "Anatomy of high-performance matrix multiplication", 2008).
#[derive(Debug, Clone)]
pub struct Transposed {
    dim: usize,
    rows: usize,
    stride: usize,
    data: Vec<f32>,
}

impl Transposed {
    /// Rows scored per step of the micro-kernel.
    pub const LANES: usize = 16;
    /// Queries scored per step of the micro-kernel.
    pub const QUERIES: usize = 4;

    /// The transpose of `rows` (row-major, `dim` wide).
    pub fn new(rows: &[f32], dim: usize) -> Self {
        let n = rows.len().checked_div(dim).unwrap_or(0);
        let stride = n.div_ceil(Self::LANES) * Self::LANES;
        let mut data = vec![0f32; stride * dim];
        for (r, row) in rows.chunks_exact(dim.max(1)).enumerate().take(n) {
            for (c, &x) in row.iter().enumerate() {
                data[c * stride + r] = x;
            }
        }
        Transposed {
            dim,
            rows: n,
            stride,
            data,
        }
    }

    /// Number of (unpadded) rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row count with padding: the distance between two queries' scores in [`score_block`]'s output.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Width of a row.
    pub fn dim(&self) -> usize {
        self.dim
    }
}

#[inline(always)]
fn score_block_body(
    queries: &[f32],
    t: &Transposed,
    tile: std::ops::Range<usize>,
    out: &mut [f32],
    fma: bool,
) {
    const L: usize = Transposed::LANES;
    const Q: usize = Transposed::QUERIES;
    let (dim, stride) = (t.dim, t.stride);
    let mut r = tile.start;
    while r < tile.end {
        let mut acc = [[0f32; L]; Q];
        for c in 0..dim {
            let col: &[f32; L] = t.data[c * stride + r..][..L]
                .try_into()
                .expect("stride is a multiple of LANES");
            for (q, acc) in acc.iter_mut().enumerate() {
                let x = queries[q * dim + c];
                for l in 0..L {
                    acc[l] = if fma {
                        x.mul_add(col[l], acc[l])
                    } else {
                        acc[l] + x * col[l]
                    };
                }
            }
        }
        for (q, acc) in acc.iter().enumerate() {
            out[q * stride + r..][..L].copy_from_slice(acc);
        }
        r += L;
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::dot_body(a, b, true)
    }

    /// ⟨a, b⟩ with an i16 query and byte codes, 16 lanes at a time: codes widened to i16
    /// (`vpmovzxbw`) and multiplied in pairs into i32 (`vpmaddwd`), three instructions per 16
    /// components where widening to f32 took three per 8 (see [`super::dot_i16_u8_inline`]).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) unsafe fn dot_i16_u8(a: &[i16], b: &[u8]) -> i32 {
        use std::arch::x86_64::*;
        let n = a.len().min(b.len());
        let (mut acc0, mut acc1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: i + 32 <= n bounds both reads (16 bytes / 16 i16 at i and at i + 16).
            unsafe {
                let c0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(b.as_ptr().add(i).cast()));
                let c1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(b.as_ptr().add(i + 16).cast()));
                let q0 = _mm256_loadu_si256(a.as_ptr().add(i).cast());
                let q1 = _mm256_loadu_si256(a.as_ptr().add(i + 16).cast());
                acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(c0, q0));
                acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(c1, q1));
            }
            i += 32;
        }
        if i + 16 <= n {
            // SAFETY: i + 16 <= n bounds both reads.
            unsafe {
                let c0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(b.as_ptr().add(i).cast()));
                let q0 = _mm256_loadu_si256(a.as_ptr().add(i).cast());
                acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(c0, q0));
            }
            i += 16;
        }
        let acc = _mm256_add_epi32(acc0, acc1);
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256::<1>(acc),
        );
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        let mut sum = _mm_cvtsi128_si32(s);
        while i < n {
            sum = sum.wrapping_add(a[i] as i32 * b[i] as i32);
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn score_block(
        queries: &[f32],
        t: &super::Transposed,
        tile: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        super::score_block_body(queries, t, tile, out, true)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_rows(query: &[f32], rows: &[f32], out: &mut [f32]) {
        super::dot_rows_body(query, rows, out, true)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_gather(query: &[f32], matrix: &[f32], ids: &[u32], out: &mut [f32]) {
        super::dot_gather_body(query, matrix, ids, out, true)
    }
}

/// Whether the AVX2 + FMA kernels can run here (cached by the standard library).
#[inline]
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The dot body for callers that compile a whole loop for one instruction set (graph search):
/// inlined into a `#[target_feature(enable = "avx2,fma")]` function with `fma = true` it becomes
/// the AVX2 kernel without a call per vector; anywhere else pass `fma = false`.
#[inline(always)]
pub(crate) fn dot_inline(a: &[f32], b: &[f32], fma: bool) -> f32 {
    dot_body(a, b, fma)
}

/// Hints the CPU to start loading the cache line at `p`; graph search issues it for the vectors it
/// is about to score, so their loads overlap (a no-op off x86-64).
#[inline(always)]
pub(crate) fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch never faults, whatever the address; SSE is part of the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// ⟨a, b⟩ over the common length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { avx2::dot(a, b) };
    }
    dot_body(a, b, false)
}

/// `out[r] = ⟨query, row r⟩` for the rows of `rows` (row-major, `query.len()` wide); one dispatch for
/// the whole block.
pub fn dot_rows(query: &[f32], rows: &[f32], out: &mut [f32]) {
    if query.is_empty() {
        out.iter_mut().for_each(|o| *o = 0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { avx2::dot_rows(query, rows, out) };
        return;
    }
    dot_rows_body(query, rows, out, false)
}

/// `out[j] = ⟨query, row ids[j]⟩` for rows picked out of a row-major `matrix` (`query.len()` wide):
/// the exact scan over a filter's allowed list. Rows a few places ahead are prefetched so that
/// their misses overlap, and the whole block takes one dispatch. **Panics** if an id is beyond
/// the matrix (callers pass published rows).
pub fn dot_gather(query: &[f32], matrix: &[f32], ids: &[u32], out: &mut [f32]) {
    if query.is_empty() {
        out.iter_mut().for_each(|o| *o = 0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { avx2::dot_gather(query, matrix, ids, out) };
        return;
    }
    dot_gather_body(query, matrix, ids, out, false)
}

/// Scores [`Transposed::QUERIES`] queries (row-major, `t.dim()` wide, in `queries`) against the
/// rows `tile` of `t` (bounds multiples of [`Transposed::LANES`], the end at most `t.stride()`):
/// `out[q * t.stride() + r] = ⟨query q, row r⟩`. Tiles that fit in L2 keep the rows there while
/// every query block of a thread passes over them.
///
/// **Panics** if the slices are shorter than that or the tile is not aligned.
pub fn score_block(queries: &[f32], t: &Transposed, tile: std::ops::Range<usize>, out: &mut [f32]) {
    const L: usize = Transposed::LANES;
    const Q: usize = Transposed::QUERIES;
    assert!(tile.start % L == 0 && tile.end % L == 0 && tile.end <= t.stride);
    assert!(queries.len() >= Q * t.dim && out.len() >= (Q - 1) * t.stride + tile.end);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { avx2::score_block(queries, t, tile, out) };
        return;
    }
    score_block_body(queries, t, tile, out, false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_block_of_queries_scores_every_row_as_dot_does() {
        let (n, dim) = (37, 5);
        let rows: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 7919) % 23) as f32 - 11.0)
            .collect();
        let t = Transposed::new(&rows, dim);
        assert_eq!((t.rows(), t.stride()), (37, 48));
        let queries: Vec<f32> = (0..4 * dim).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
        let mut out = vec![f32::NAN; 4 * t.stride()];
        score_block(&queries, &t, 0..16, &mut out);
        score_block(&queries, &t, 16..48, &mut out);
        for q in 0..4 {
            for r in 0..n {
                let expected = dot(&queries[q * dim..][..dim], &rows[r * dim..][..dim]);
                assert_eq!(out[q * t.stride() + r], expected, "query {q} row {r}");
            }
        }
    }

    use super::*;

    #[test]
    fn both_bodies_agree_with_a_plain_sum_at_every_length() {
        for n in [0, 1, 7, 15, 16, 17, 64, 65, 130] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64) * (*y as f64))
                .sum();
            for got in [dot(&a, &b), dot_body(&a, &b, false), dot_body(&a, &b, true)] {
                assert!((got as f64 - plain).abs() < 1e-4, "n {n}: {got} vs {plain}");
            }
        }
    }

    #[test]
    fn the_integer_code_kernels_agree_with_a_plain_sum_at_every_length() {
        for n in [0, 1, 15, 16, 17, 31, 32, 33, 48, 64, 65, 130] {
            // In i32: i × 7919 overflows i16 (a panic in debug builds) from i = 5 on.
            let a: Vec<i16> = (0..n)
                .map(|i| ((i * 7919) % 32767 - 16000) as i16)
                .collect();
            let b: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let plain: i64 = a.iter().zip(&b).map(|(x, y)| *x as i64 * *y as i64).sum();
            assert_eq!(dot_i16_u8_inline(&a, &b) as i64, plain, "portable, n {n}");
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                let got = unsafe { avx2::dot_i16_u8(&a, &b) };
                assert_eq!(got as i64, plain, "avx2, n {n}");
            }
        }
    }

    #[test]
    fn dot_rows_scores_every_row() {
        let q = [1.0, 2.0, 3.0];
        let rows = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0];
        let mut out = [0.0; 2];
        dot_rows(&q, &rows, &mut out);
        assert_eq!(out, [1.0, 5.0]);
    }

    #[test]
    fn dot_gather_scores_the_picked_rows_in_the_given_order() {
        let q = [1.0, 2.0, 3.0];
        let matrix: Vec<f32> = (0..30).map(|x| x as f32).collect();
        let ids: Vec<u32> = vec![9, 0, 4, 4, 7, 1, 2, 3, 5, 6, 8, 9];
        let mut out = vec![0.0; ids.len()];
        dot_gather(&q, &matrix, &ids, &mut out);
        for (&id, &got) in ids.iter().zip(&out) {
            let row = &matrix[id as usize * 3..id as usize * 3 + 3];
            assert_eq!(got, row[0] + 2.0 * row[1] + 3.0 * row[2], "row {id}");
        }
    }
}
