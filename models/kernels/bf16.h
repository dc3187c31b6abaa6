// bf16 operands for the GEMM and convolution kernels (gemm_kernels.cc, conv_kernels.cc): rounding float32 to
// bfloat16, the packed operand format of the AVX512_BF16 dot product, and whether the bf16 kernels run here.
//
// `_mm512_dpbf16_ps(acc, a, b)` adds a[2i] b[2i] + a[2i+1] b[2i+1] to the float32 lane acc[i]: the operands come as
// *pairs* of bf16 values along the reduction, one pair per 32-bit word (the first in the low half). The packers
// below round float32 activations to bf16 (round to nearest, ties to even - the rounding of VCVTNE2PS2BF16 - done
// with integer AVX2 instructions, so that the packing is the same code, and testable, on every CPU) and write such
// pairs; weights arrive already rounded (converted once, on the Python side).
//
// Where they run: CPUs with AVX512_BF16 (and AVX-512F), unless PREDIFF_KERNEL_BF16=0; or anywhere with
// PREDIFF_BF16_EMULATE=1, which replaces the AVX512_BF16 dot product by an AVX2 emulation (the same products of bf16
// values, accumulated in float32; several times slower) so that the bf16 path can be run and tested on CPUs without
// the instruction. Both variables are read on every call.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace prediff_kernels {

inline bool bf16_emulated() {
  const char *env = std::getenv("PREDIFF_BF16_EMULATE");
  return env && env[0] == '1';
}

// Whether the bf16 entry points compute (they return 3 otherwise).
inline bool bf16_wanted() {
  const char *off = std::getenv("PREDIFF_KERNEL_BF16");
  if (off && off[0] == '0') return false;
  if (bf16_emulated()) return true;
  static const bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
  return cpu;
}

// float32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN, overflow rounds to infinity.
inline uint16_t bf16_round(float value) {
  uint32_t u;
  std::memcpy(&u, &value, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// The same for eight values: each result in the low 16 bits of its 32-bit lane (high bits zero).
inline __m256i bf16_round8(__m256 value) {
  const __m256i u = _mm256_castps_si256(value);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
  const __m256i magnitude = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
  const __m256i nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7F800000));
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  return _mm256_blendv_epi8(rounded, quiet, nan);
}

// Eight pairs (first[i], second[i]) rounded to bf16, as eight 32-bit words.
inline __m256i bf16_pairs8(__m256 first, __m256 second) {
  return _mm256_or_si256(bf16_round8(first), _mm256_slli_epi32(bf16_round8(second), 16));
}

// n float32 values rounded to bf16 into dst (n bf16 values).
inline void bf16_round_row(const float *src, int64_t n, uint16_t *dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i r = bf16_round8(_mm256_loadu_ps(src + i));  // 16-bit values in 32-bit lanes
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);  // qwords 0 and 2
    _mm_storeu_si128(reinterpret_cast<__m128i *>(dst + i), _mm256_castsi256_si128(packed));
  }
  for (; i < n; ++i) dst[i] = bf16_round(src[i]);
}

// The two bf16 halves of packed pairs as float32 (exact): (low halves, high halves).
inline __m256 bf16_low_halves(__m256i pairs) { return _mm256_castsi256_ps(_mm256_slli_epi32(pairs, 16)); }
inline __m256 bf16_high_halves(__m256i pairs) {
  return _mm256_castsi256_ps(_mm256_and_si256(pairs, _mm256_set1_epi32(int(0xFFFF0000u))));
}

// acc += (the emulated dot product of the pairs in a and b): the same products the AVX512_BF16 instruction forms,
// accumulated with float32 FMAs (the instruction's own rounding of the two additions is not specified bit for bit).
inline __m256 bf16_dot_emulated(__m256 acc, __m256i a, __m256i b) {
  acc = _mm256_fmadd_ps(bf16_low_halves(a), bf16_low_halves(b), acc);
  return _mm256_fmadd_ps(bf16_high_halves(a), bf16_high_halves(b), acc);
}

}  // namespace prediff_kernels
