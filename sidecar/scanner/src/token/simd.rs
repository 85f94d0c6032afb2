//! AVX2 byte-class helpers shared by the tokenizer's window and the blob finder.

use std::arch::x86_64::{
    __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_cmpgt_epi8, _mm256_set1_epi8,
};

/// Bytes of `x` in `lo..=hi` (ASCII bounds). Signed compares: bytes >= 0x80 are negative, so
/// below every bound.
#[target_feature(enable = "avx2")]
pub(super) fn within(x: __m256i, lo: u8, hi: u8) -> __m256i {
    _mm256_and_si256(
        _mm256_cmpgt_epi8(x, _mm256_set1_epi8(lo as i8 - 1)),
        _mm256_cmpgt_epi8(_mm256_set1_epi8(hi as i8 + 1), x),
    )
}

/// Bytes of `x` equal to `b`.
#[target_feature(enable = "avx2")]
pub(super) fn eq(x: __m256i, b: u8) -> __m256i {
    _mm256_cmpeq_epi8(x, _mm256_set1_epi8(b as i8))
}
