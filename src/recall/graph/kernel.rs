//! The dot-product kernel a walk is compiled for, shared by the layer searches (`search.rs`), the
//! build (`build.rs`) and the norm walk (`head.rs`).

use crate::kernels::{dot_i16_u8_inline, dot_inline};

/// A dot-product kernel chosen once per search or insertion, so that the whole loop is compiled for
/// one instruction set and the dot inlines into it.
pub(super) trait Kernel {
    /// ⟨a, b⟩.
    fn dot(a: &[f32], b: &[f32]) -> f32;
    /// ⟨a, b⟩ in integers, an i16 query against byte codes `b`.
    fn dot_i16_u8(a: &[i16], b: &[u8]) -> i32;
}

/// Baseline instructions (SSE2 on x86-64), any CPU.
pub(super) struct Portable;

impl Kernel for Portable {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot_inline(a, b, false)
    }
    #[inline(always)]
    fn dot_i16_u8(a: &[i16], b: &[u8]) -> i32 {
        dot_i16_u8_inline(a, b)
    }
}

/// AVX2 + FMA: only inline it into `#[target_feature(enable = "avx2,fma")]` functions (elsewhere it
/// would still be correct, but with software FMA).
#[cfg(target_arch = "x86_64")]
pub(super) struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Kernel for Avx2 {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot_inline(a, b, true)
    }
    #[inline(always)]
    fn dot_i16_u8(a: &[i16], b: &[u8]) -> i32 {
        // SAFETY: `Avx2` is only used inside functions compiled for AVX2 + FMA, which the caller
        // checked the CPU has (`kernels::has_avx2`).
        unsafe { crate::kernels::avx2::dot_i16_u8(a, b) }
    }
}
