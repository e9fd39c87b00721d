//! 8-bit scalar quantisation of the vectors the graph walks (one byte per component, per-dimension
//! range), used to steer the beam; the final candidates are re-scored with the f32 vectors, so the
//! scores returned stay exact inner products.
//!
//! Why: a search spends its time waiting for memory. A 65-dim f32 row spans five cache lines, its
//! code two at most, and 200k codes (13 MB) fit in this machine's L3 where the f32 rows (52 MB) do
//! not. The same idea as Faiss's `IndexHNSWSQ` (SQ8) and hnswlib forks with int8 storage.
//!
//! x_j ≈ min_j + step_j · c_j, so ⟨q, x⟩ ≈ Σ q_j min_j + Σ (q_j step_j) c_j: a query is turned once
//! into `(offset, q ∘ step)`, the latter rounded to i16 with one scale, and each code costs one
//! integer dot product (16 components per AVX2 multiply-add). The query's rounding error is a 128th
//! of the codes' own (a half step in 255 against a half unit in 32767).

use std::cell::UnsafeCell;

/// A query prepared by [`Codes::prepare`]: ⟨query, x⟩ ≈ offset + scale · ⟨query_i16, code(x)⟩.
#[derive(Clone, Copy, Debug)]
pub(super) struct CodeQuery<'a> {
    pub query: &'a [i16],
    pub scale: f32,
    pub offset: f32,
}

/// The codes of every row, and the per-dimension ranges to decode them. Room is kept for
/// `capacity` rows: rows appended after the build are encoded in place ([`Codes::encode_row`]) with
/// the build's ranges before any link to them is written, so readers never see a code change.
pub(super) struct Codes {
    dim: usize,
    min: Vec<f32>,
    step: Vec<f32>,
    codes: Box<[UnsafeCell<u8>]>,
    /// Rows `0..in_range` were encoded with the ranges made from them, so [`Codes::error_bound`]
    /// holds for them; a row appended later may have been clamped.
    in_range: usize,
}

// SAFETY: a code is written only by `encode_row`, whose caller guarantees that no reader can reach
// that row yet (see there); every other access reads.
unsafe impl Sync for Codes {}

fn cells(bytes: Vec<u8>) -> Box<[UnsafeCell<u8>]> {
    let mut bytes = std::mem::ManuallyDrop::new(bytes.into_boxed_slice());
    let (ptr, len) = (bytes.as_mut_ptr(), bytes.len());
    // SAFETY: UnsafeCell<u8> has the layout of u8 (repr(transparent)); the allocation is moved and
    // freed with the same layout.
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr.cast(), len)) }
}

/// The code of `row` under the ranges `min`/`step` into `out`; components outside the build's range
/// (a row appended later) are clamped, so they only steer the walk less precisely.
#[inline]
fn encode_into(row: &[f32], min: &[f32], step: &[f32], out: &mut [u8]) {
    for j in 0..row.len() {
        if step[j] > 0.0 {
            out[j] = ((row[j] - min[j]) / step[j]).round().clamp(0.0, 255.0) as u8;
        }
    }
}

impl Codes {
    /// Quantises `data` (row-major, `dim` wide; finite, as every index checks).
    #[cfg(test)]
    pub fn encode(data: &[f32], dim: usize) -> Codes {
        Self::encode_with_capacity(data, dim, data.len() / dim.max(1))
    }

    /// [`Codes::encode`] with room for `capacity` rows in all.
    pub fn encode_with_capacity(data: &[f32], dim: usize, capacity: usize) -> Codes {
        let mut min = vec![f32::INFINITY; dim];
        let mut max = vec![f32::NEG_INFINITY; dim];
        for row in data.chunks_exact(dim) {
            for (j, &x) in row.iter().enumerate() {
                min[j] = min[j].min(x);
                max[j] = max[j].max(x);
            }
        }
        if data.is_empty() {
            min.iter_mut().for_each(|m| *m = 0.0);
            max.iter_mut().for_each(|m| *m = 0.0);
        }
        let step: Vec<f32> = min
            .iter()
            .zip(&max)
            .map(|(lo, hi)| (hi - lo) / 255.0)
            .collect();
        let mut codes = crate::memory::filled_vec(capacity.max(data.len() / dim) * dim, 0u8);
        for (row, out) in data.chunks_exact(dim).zip(codes.chunks_exact_mut(dim)) {
            encode_into(row, &min, &step, out);
        }
        Codes {
            dim,
            min,
            step,
            codes: cells(codes),
            in_range: data.len() / dim.max(1),
        }
    }

    /// Rows there is room for.
    pub fn capacity(&self) -> usize {
        self.codes.len() / self.dim.max(1)
    }

    /// The same ranges and the codes of rows `0..rows`, with room for `capacity` rows (growth).
    pub fn grown(&self, rows: usize, capacity: usize) -> Codes {
        let rows = rows.min(self.capacity());
        let mut codes = crate::memory::filled_vec(capacity.max(rows) * self.dim, 0u8);
        for id in 0..rows {
            codes[id * self.dim..(id + 1) * self.dim].copy_from_slice(self.row(id as u32));
        }
        Codes {
            dim: self.dim,
            min: self.min.clone(),
            step: self.step.clone(),
            codes: cells(codes),
            in_range: self.in_range.min(rows),
        }
    }

    /// Rows whose codes [`Codes::error_bound`] holds for: those encoded with the ranges made from
    /// them (the build's), not rows appended later.
    pub fn in_range(&self) -> usize {
        self.in_range
    }

    /// Encodes `row` as row `id` with the build's ranges (clamped). **Panics** if `id` is beyond
    /// the capacity.
    ///
    /// # Safety
    /// No other thread may read row `id` during the call: it must not be reachable yet (no link or
    /// id list names it, and the caller publishes it afterwards with Release ordering), and only
    /// one writer may encode it.
    pub unsafe fn encode_row(&self, id: u32, row: &[f32]) {
        let s = id as usize * self.dim;
        let cells = &self.codes[s..s + self.dim];
        // SAFETY: the caller guarantees exclusive access to this row (see above).
        let out = unsafe {
            std::slice::from_raw_parts_mut(UnsafeCell::raw_get(cells.as_ptr()), self.dim)
        };
        encode_into(row, &self.min, &self.step, out);
    }

    /// The code of row `id`: a row encoded at the build, or by [`Codes::encode_row`] before anything
    /// could reach it. **Panics** beyond the capacity.
    #[inline(always)]
    pub fn row(&self, id: u32) -> &[u8] {
        let s = id as usize * self.dim;
        let cells = &self.codes[s..s + self.dim];
        // SAFETY: a row is read only once it is reachable, after its one write (see `encode_row`);
        // UnsafeCell<u8> has the layout of u8.
        unsafe { std::slice::from_raw_parts(cells.as_ptr().cast(), self.dim) }
    }

    /// Turns `query` into `query ∘ step` rounded to i16 (in `out`), its scale and the offset
    /// Σ query_j min_j. The largest component maps to ±32767, or less when 255 · Σ|out_j| could
    /// pass 2³¹ (more than 257 dimensions), so the integer dot product cannot overflow.
    pub fn prepare<'a>(&self, query: &[f32], out: &'a mut Vec<i16>) -> CodeQuery<'a> {
        let largest = query
            .iter()
            .zip(&self.step)
            .map(|(q, s)| (q * s).abs())
            .fold(0f32, f32::max);
        // An integer limit, rounded down, and every component clamped to it: 255 · dim · limit
        // then stays below 2³¹ (a float limit rounded up had let 300 dimensions overflow).
        let limit = (i32::MAX / (255 * self.dim.clamp(1, 1 << 20) as i32) - 1).clamp(0, 32767);
        let to_int = if largest > 0.0 && largest.is_finite() {
            limit as f32 / largest
        } else {
            0.0
        };
        out.clear();
        // Adding ±0.5 and truncating rounds to nearest (|x| ≤ 32767 fits i32), as `f32::round`
        // does but for the odd x whose x ± 0.5 itself rounds: no matter for a quantiser, and
        // `round` without SSE4.1 is a libm call per component (2% of a served recall).
        out.extend(query.iter().zip(&self.step).map(|(q, s)| {
            let x = q * s * to_int;
            ((x + 0.5f32.copysign(x)) as i32).clamp(-limit, limit) as i16
        }));
        CodeQuery {
            query: out,
            scale: if to_int > 0.0 { 1.0 / to_int } else { 0.0 },
            offset: query.iter().zip(&self.min).map(|(q, m)| q * m).sum(),
        }
    }

    /// The codes of rows `ids`, in that order, with the same ranges (so a prepared query scores
    /// them alike), and no spare room.
    pub fn gather(&self, ids: &[u32]) -> Codes {
        let mut codes = Vec::with_capacity(ids.len() * self.dim);
        for &id in ids {
            codes.extend_from_slice(self.row(id));
        }
        let in_range = ids.iter().all(|&id| (id as usize) < self.in_range);
        Codes {
            dim: self.dim,
            min: self.min.clone(),
            step: self.step.clone(),
            codes: cells(codes),
            in_range: if in_range { ids.len() } else { 0 },
        }
    }

    /// The codes of rows `0..rows` in order, for a code set whose rows below `rows` are all
    /// written (the norm head's, which is never written after [`Codes::gather`]).
    pub fn rows(&self, rows: usize) -> std::slice::ChunksExact<'_, u8> {
        let n = rows.min(self.capacity()) * self.dim;
        // SAFETY: rows below `rows` are written and never written again (see above).
        let bytes: &[u8] = unsafe { std::slice::from_raw_parts(self.codes.as_ptr().cast(), n) };
        bytes.chunks_exact(self.dim.max(1))
    }

    /// A bound on |⟨query, x⟩ − (offset + scale · ⟨query_i16, code(x)⟩)| for every encoded row x:
    /// half a step per component (Σ |q_j| step_j / 2), the query's rounding to i16 (half a unit
    /// times a code of at most 255, per component), the i32 → f32 conversion of the integer dot
    /// (2⁻²⁴ of at most 2³¹ units), and 1% + (2d + 32) f32 epsilons of the terms' magnitude for
    /// the f32 sums of the offset and the score (error growing with d) and of this bound itself.
    pub fn error_bound(&self, query: &[f32], prepared: &CodeQuery<'_>) -> f32 {
        let (mut steps, mut magnitude) = (0f32, 0f32);
        for ((q, s), m) in query.iter().zip(&self.step).zip(&self.min) {
            steps += q.abs() * s;
            magnitude += q.abs() * (m.abs() + 255.0 * s);
        }
        let rounding = (self.dim as f32 * 127.5 + 128.0) * prepared.scale;
        let sums = (2.0 * self.dim as f32 + 32.0) * f32::EPSILON * magnitude;
        (steps / 2.0 + rounding) * 1.01 + sums
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.codes.len() + 8 * self.dim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_inner_products_are_within_the_quantisation_error() {
        let dim = 9;
        let data: Vec<f32> = (0..dim * 50)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let codes = Codes::encode(&data, dim);
        let query: Vec<f32> = (0..dim).map(|j| (j as f32 - 4.0) / 3.0).collect();
        let mut prepared = Vec::new();
        let cq = codes.prepare(&query, &mut prepared);
        for (i, row) in data.chunks_exact(dim).enumerate() {
            let exact: f32 = row.iter().zip(&query).map(|(a, b)| a * b).sum();
            let approx = cq.offset
                + cq.scale
                    * codes
                        .row(i as u32)
                        .iter()
                        .zip(cq.query)
                        .map(|(&c, &q)| c as f32 * q as f32)
                        .sum::<f32>();
            // Each component is off by at most half a step, plus the query's rounding to i16.
            let bound: f32 = query
                .iter()
                .zip(&codes.step)
                .map(|(q, s)| q.abs() * s / 2.0 + 255.0 * cq.scale / 2.0)
                .sum();
            assert!(
                (exact - approx).abs() <= bound + 1e-4,
                "{exact} vs {approx}"
            );
        }
    }

    #[test]
    fn the_integer_dot_product_cannot_overflow_in_any_dimension() {
        for dim in [1, 65, 257, 258, 300, 1000, 4096] {
            let data: Vec<f32> = (0..dim * 2)
                .map(|i| if i < dim { -1.0 } else { 1.0 })
                .collect();
            let codes = Codes::encode(&data, dim);
            let query = vec![1e6f32; dim];
            let mut prepared = Vec::new();
            codes.prepare(&query, &mut prepared);
            let worst: i64 = prepared.iter().map(|&q| 255 * i64::from(q).abs()).sum();
            assert!(worst <= i64::from(i32::MAX), "dim {dim}: {worst}");
            assert!(
                prepared.iter().all(|&q| q > 0),
                "dim {dim}: the query kept its values"
            );
        }
    }

    #[test]
    fn a_constant_dimension_decodes_exactly() {
        let data = vec![3.0, 1.0, 3.0, 2.0, 3.0, 5.0];
        let codes = Codes::encode(&data, 2);
        let mut prepared = Vec::new();
        let cq = codes.prepare(&[1.0, 0.0], &mut prepared);
        assert_eq!(cq.offset, 3.0);
        assert_eq!(cq.query[0], 0);
    }
}
