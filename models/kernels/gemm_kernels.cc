// float32 matrix products of the linear layers (`kernels.Dense`, models/kernels/dense.py) on AVX-512 CPUs, for
// MindSpore `ops.Custom(func_type="aot")`.
//
// MindSpore's oneDNN matmul has to stay capped at AVX2 on AVX-512 machines (docs/performance-history.md), and at the
// paper-size UNet's shapes it runs at 80-200 GFLOP/s depending on the shape and on which operand is transposed:
// the weight gradient dy^T x of the FFN's widening layer at 80-90 GFLOP/s, the same FLOPs in x w^T at 150-190.
// These kernels compute all three products of a linear layer y = x w^T + b with one blocked GEMM:
//
//   C (m x n) = A (m x k) B (k x n) [+ bias (n), broadcast over rows]
//
// where A and B are read through row and column strides, so that a transposed operand costs nothing but its
// packing. The classic blocking: the reduction in chunks of kKC; per chunk, B is packed into 32-column panels
// (kKC x 32 floats, one micro-panel stays in the first-level cache) shared by the threads, each thread packs a
// block of A rows into 12-row panels (its second-level-cache block) and runs the 12 x 32 micro-tile - 24 of the
// 32 AVX-512 registers hold C - over every (row panel, column panel) pair of its block. Edges are zero-padded in
// the packs and masked in the stores, so any m, n, k >= 1 are computed.
//
// Layouts (row-major): x (rows, in), w (out, in), b (out), y (rows, out).
//   DenseForward / DenseForwardNoBias: y = x w^T (+ b)     A = x, B = w^T
//   DenseInputGrad:                    dx = dy w           A = dy, B = w
//   DenseWeightGrad:                   dw = dy^T x         A = dy^T, B = x
// Every entry point returns 1 on shapes that do not match, 2 if a scratch buffer cannot be allocated and 3 on a
// CPU without AVX-512F (the Python side uses MindSpore's matmul there).

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>

#include <omp.h>

#include "bf16.h"
#include "gemm.h"
#include "kernel_support.h"

namespace {

using prediff_kernels::Scratch;

constexpr int64_t kMR = 12;             // rows of C per micro-tile (broadcast from packed A)
constexpr int64_t kNR = 32;             // columns of C per micro-tile (two 16-float registers)
constexpr int64_t kKC = 512;            // reduction chunk
constexpr int64_t kMaxPanelsPerBlock = 12;  // A row panels per thread work item (12 x 12 x 512 floats = 288 KB)

// Element (r, c) of a matrix operand is p[r * rs + c * cs].
struct Operand {
  const float *p;
  int64_t rs, cs;
};

// Eight consecutive values from each of eight rows, transposed: dst[k * ld + i] = row(i)[k] for i, k < 8, written as
// eight 8-wide stores. `row(i)` gives row i's first value.
template <class Row>
inline void transpose8(const Row &row, float *dst, int64_t ld) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(row(i));
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {  // u[4i + j]: column j (and j + 4 in the upper lane) of rows 4i .. 4i+3
    u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    _mm256_storeu_ps(dst + j * ld, _mm256_permute2f128_ps(u[j], u[4 + j], 0x20));
    _mm256_storeu_ps(dst + (j + 4) * ld, _mm256_permute2f128_ps(u[j], u[4 + j], 0x31));
  }
}

// The same for four rows: dst[k * ld + i] = row(i)[k] for i < 4, k < 8.
template <class Row>
inline void transpose4(const Row &row, float *dst, int64_t ld) {
  __m256 r[4];
  for (int i = 0; i < 4; ++i) r[i] = _mm256_loadu_ps(row(i));
  const __m256 a0 = _mm256_unpacklo_ps(r[0], r[1]), a1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 a2 = _mm256_unpacklo_ps(r[2], r[3]), a3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 c[4] = {_mm256_shuffle_ps(a0, a2, 0x44), _mm256_shuffle_ps(a0, a2, 0xEE),
                       _mm256_shuffle_ps(a1, a3, 0x44), _mm256_shuffle_ps(a1, a3, 0xEE)};
  for (int j = 0; j < 4; ++j) {
    _mm_storeu_ps(dst + j * ld, _mm256_castps256_ps128(c[j]));
    _mm_storeu_ps(dst + (j + 4) * ld, _mm256_extractf128_ps(c[j], 1));
  }
}

// Eight reduction indices of a full 12-row panel: rows 0-7 by an 8 x 8 transpose, rows 8-11 by a 4 x 8 one, so that
// dst[k][0..11] are written as one 8-wide and one 4-wide store. Scalar packing cost 6-12 % of the products whose C
// has few columns (each A value meets only n of them).
template <class Row>
inline void pack_a_panel8(const Row &row, float *dst) {
  transpose8(row, dst, kMR);
  transpose4([&](int i) { return row(8 + i); }, dst + 8, kMR);
}

// Rows m0 .. m0+mr-1, reduction columns k0 .. k0+kc-1 of A into dst[k][kMR] (rows past mr are zeros).
void pack_a(const Operand &a, int64_t m0, int64_t mr, int64_t k0, int64_t kc, float *dst) {
  if (mr < kMR) std::memset(dst, 0, sizeof(float) * kc * kMR);
  if (a.cs == 1) {  // rows contiguous along the reduction
    const float *src = a.p + m0 * a.rs + k0;
    int64_t k = 0;
    if (mr == kMR)
      for (; k + 8 <= kc; k += 8) pack_a_panel8([&](int i) { return src + i * a.rs + k; }, dst + k * kMR);
    for (int64_t i = 0; i < mr; ++i)
      for (int64_t kk = k; kk < kc; ++kk) dst[kk * kMR + i] = src[i * a.rs + kk];
  } else {  // the transposed operand (dy^T): the mr values of one reduction index are contiguous when rs == 1
    for (int64_t k = 0; k < kc; ++k) {
      const float *src = a.p + (k0 + k) * a.cs + m0 * a.rs;
      if (a.rs == 1)
        std::memcpy(dst + k * kMR, src, sizeof(float) * mr);
      else
        for (int64_t i = 0; i < mr; ++i) dst[k * kMR + i] = src[i * a.rs];
    }
  }
}

// Reduction rows k0 .. k0+kc-1, columns n0 .. n0+nr-1 of B into dst[k][kNR] (columns past nr are zeros).
void pack_b(const Operand &b, int64_t k0, int64_t kc, int64_t n0, int64_t nr, float *dst) {
  if (nr < kNR) std::memset(dst, 0, sizeof(float) * kc * kNR);
  if (b.cs == 1) {
    for (int64_t k = 0; k < kc; ++k) std::memcpy(dst + k * kNR, b.p + (k0 + k) * b.rs + n0, sizeof(float) * nr);
  } else {  // w^T in the forward product: each column is a contiguous weight row
    for (int64_t j = 0; j < nr; ++j) {
      const float *src = b.p + (n0 + j) * b.cs + k0 * b.rs;
      for (int64_t k = 0; k < kc; ++k) dst[k * kNR + j] = src[k * b.rs];
    }
  }
}

inline __mmask16 column_mask(int64_t columns) {
  return columns >= 16 ? __mmask16(0xFFFF) : columns <= 0 ? __mmask16(0) : __mmask16((1u << columns) - 1);
}

// C[0:mr, 0:nr] (row stride ldc) = (first ? bias : C) + ap (kc x 12) . bp (kc x 32). `bias` points at the tile's
// first column (nullptr: none).
__attribute__((target("avx512f"))) void micro_tile(const float *__restrict ap, const float *__restrict bp,
                                                   int64_t kc, float *__restrict c, int64_t ldc, int64_t mr,
                                                   int64_t nr, const float *__restrict bias, bool first) {
  __m512 acc0[kMR], acc1[kMR];
#pragma GCC unroll 12
  for (int i = 0; i < kMR; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
#pragma GCC unroll 12
    for (int i = 0; i < kMR; ++i) {
      const __m512 a = _mm512_set1_ps(ap[i]);
      acc0[i] = _mm512_fmadd_ps(a, b0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(a, b1, acc1[i]);
    }
    ap += kMR;
    bp += kNR;
  }
  const __mmask16 m0 = column_mask(nr), m1 = column_mask(nr - 16);
  __m512 base0 = _mm512_setzero_ps(), base1 = _mm512_setzero_ps();
  if (first && bias) {
    base0 = _mm512_maskz_loadu_ps(m0, bias);
    base1 = _mm512_maskz_loadu_ps(m1, bias + 16);
  }
#pragma GCC unroll 12
  for (int i = 0; i < kMR; ++i) {
    if (i >= mr) break;
    float *row = c + i * ldc;
    const __m512 c0 = first ? base0 : _mm512_maskz_loadu_ps(m0, row);
    const __m512 c1 = first ? base1 : _mm512_maskz_loadu_ps(m1, row + 16);
    _mm512_mask_storeu_ps(row, m0, _mm512_add_ps(c0, acc0[i]));
    _mm512_mask_storeu_ps(row + 16, m1, _mm512_add_ps(c1, acc1[i]));
  }
}

// C (m x n, row-major, contiguous) = (accumulate ? C : 0) + A B (+ bias), with A and B delivered by packers:
// pack_a(m0, mr, k0, kc, dst) writes rows m0 .. m0+mr-1, reduction indices k0 .. k0+kc-1 as dst[k][kMR] (rows past mr
// zero); pack_b(k0, kc, n0, nr, dst) writes dst[k][kNR] likewise. k0 is always a multiple of kKC. kPerWord reduction
// indices share one 32-bit word of a pack (2 for bf16 pairs: dst[k / 2][...], an odd last index paired with zero),
// and `tile(ap, bp, words, c, ldc, mr, nr, bias, first)` is the micro-tile (`micro_tile` for float32).
//
// `prepacked_b`, when given, holds every column panel of B already in that layout for the whole reduction -
// prepacked_b[(q * prepacked_words + word) * kNR + j] for column panel q - and `pack_b` is not called: the weights of
// a layer in inference are packed once (for the bf16 forward, on the Python side) instead of on every call.
template <int64_t kPerWord, class PackA, class PackB, class Tile>
void gemm_blocked(const PackA &pack_a, const PackB &pack_b, int64_t m, int64_t n, int64_t k, const float *bias,
                  float *c, bool accumulate, const Tile &tile, const float *prepacked_b = nullptr,
                  int64_t prepacked_words = 0) {
  thread_local Scratch b_buffer;
  const int64_t col_panels = (n + kNR - 1) / kNR, row_panels = (m + kMR - 1) / kMR;
  const int64_t threads = std::max(1, omp_get_max_threads());
  // work items: blocks of row panels, at least one per thread (the weight gradient's C has only 256-2048 rows)
  int64_t blocks = std::max((row_panels + kMaxPanelsPerBlock - 1) / kMaxPanelsPerBlock, threads);
  blocks = std::min(row_panels, (blocks + threads - 1) / threads * threads);
  const int64_t panels_per_block = (row_panels + blocks - 1) / blocks;
  blocks = (row_panels + panels_per_block - 1) / panels_per_block;
  float *packed = prepacked_b ? nullptr : b_buffer.get(size_t(col_panels) * kKC * kNR);
  bool failed = false;
  for (int64_t k0 = 0; k0 < k; k0 += kKC) {
    const int64_t kc = std::min(kKC, k - k0), words = (kc + kPerWord - 1) / kPerWord;
    const bool first = k0 == 0 && !accumulate;
    // column panel q of this chunk starts at bp + q * b_stride
    const float *bp = prepacked_b ? prepacked_b + (k0 / kPerWord) * kNR : packed;
    const int64_t b_stride = prepacked_b ? prepacked_words * kNR : words * kNR;
#pragma omp parallel
    {
      if (!prepacked_b) {
#pragma omp for schedule(static)
        for (int64_t q = 0; q < col_panels; ++q)
          pack_b(k0, kc, q * kNR, std::min(kNR, n - q * kNR), packed + q * words * kNR);
      }
      thread_local Scratch a_buffer;
      float *ap = nullptr;
      try {
        ap = a_buffer.get(size_t(panels_per_block) * kKC * kMR);
      } catch (const std::bad_alloc &) {
#pragma omp atomic write
        failed = true;
      }
#pragma omp for schedule(static)
      for (int64_t blk = 0; blk < blocks; ++blk) {
        if (ap == nullptr) continue;
        const int64_t p0 = blk * panels_per_block, p1 = std::min(row_panels, p0 + panels_per_block);
        for (int64_t p = p0; p < p1; ++p)
          pack_a(p * kMR, std::min(kMR, m - p * kMR), k0, kc, ap + (p - p0) * words * kMR);
        for (int64_t q = 0; q < col_panels; ++q) {
          const int64_t nr = std::min(kNR, n - q * kNR);
          for (int64_t p = p0; p < p1; ++p)
            tile(ap + (p - p0) * words * kMR, bp + q * b_stride, words, c + p * kMR * n + q * kNR, n,
                 std::min(kMR, m - p * kMR), nr, bias ? bias + q * kNR : nullptr, first);
        }
      }
    }
    if (failed) throw std::bad_alloc();
  }
}

// C (m x n, row-major, contiguous) = A B (+ bias) for strided operands.
void gemm(const Operand &a, const Operand &b, int64_t m, int64_t n, int64_t k, const float *bias, float *c) {
  gemm_blocked<1>([&](int64_t m0, int64_t mr, int64_t k0, int64_t kc, float *dst) { pack_a(a, m0, mr, k0, kc, dst); },
                  [&](int64_t k0, int64_t kc, int64_t n0, int64_t nr, float *dst) { pack_b(b, k0, kc, n0, nr, dst); },
                  m, n, k, bias, c, false, micro_tile);
}

// ---------------------------------------------------------------------------------------------------------------
// bf16 operands (bf16.h): the forward product of a linear layer, y = x w^T + b, with x rounded to bf16 as it is
// packed, w already bf16 and packed (once per layer), and float32 accumulation. Packs hold pairs of reduction indices
// per 32-bit word.

// Rows m0 .. m0+mr-1 of x (rows contiguous along the reduction, row stride ld), reduction indices k0 .. k0+kc-1,
// rounded to bf16 into dst[k / 2][kMR] pairs (rows past mr and an odd last index are zeros).
void pack_x_bf16(const float *x, int64_t ld, int64_t m0, int64_t mr, int64_t k0, int64_t kc, uint32_t *dst) {
  const int64_t words = (kc + 1) / 2;
  alignas(64) uint16_t rows[kMR][kKC + 2];  // the panel's rows in bf16: rows[i] read as 32-bit words are the pairs
  for (int64_t i = 0; i < kMR; ++i) {
    if (i < mr) {
      prediff_kernels::bf16_round_row(x + (m0 + i) * ld + k0, kc, rows[i]);
      rows[i][kc] = 0;  // the odd last index's partner
    } else {
      std::memset(rows[i], 0, sizeof(uint16_t) * 2 * words);
    }
  }
  auto row = [&](int i) { return reinterpret_cast<const float *>(rows[i]); };  // 32-bit words, moved bit for bit
  float *out = reinterpret_cast<float *>(dst);
  int64_t w = 0;
  for (; w + 8 <= words; w += 8) pack_a_panel8([&](int i) { return row(i) + w; }, out + w * kMR);
  for (; w < words; ++w)
    for (int64_t i = 0; i < kMR; ++i) std::memcpy(dst + w * kMR + i, rows[i] + 2 * w, 4);
}

// C[0:mr, 0:nr] (row stride ldc) = (first ? bias : C) + acc, from a 12 x 32 float32 tile held in memory.
void store_tile(const float (*acc)[kNR], float *c, int64_t ldc, int64_t mr, int64_t nr, const float *bias,
                bool first) {
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t j = 0; j < nr; ++j) {
      const float base = first ? (bias ? bias[j] : 0.0f) : c[i * ldc + j];
      c[i * ldc + j] = base + acc[i][j];
    }
}

// The bf16 micro-tile: 12 x 32 outputs in 24 AVX-512 registers, one VDPBF16PS per register and pair of reduction
// indices (two multiply-adds per lane). ap: words x 12 pairs, bp: words x 32 pairs.
__attribute__((target("avx512f,avx512bf16"))) void micro_tile_bf16(const float *ap_, const float *bp_, int64_t words,
                                                                 float *c, int64_t ldc, int64_t mr, int64_t nr,
                                                                 const float *bias, bool first) {
  const uint32_t *ap = reinterpret_cast<const uint32_t *>(ap_);
  const uint32_t *bp = reinterpret_cast<const uint32_t *>(bp_);
  __m512 acc0[kMR], acc1[kMR];
#pragma GCC unroll 12
  for (int i = 0; i < kMR; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (int64_t q = 0; q < words; ++q) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp), b1 = (__m512bh)_mm512_loadu_si512(bp + 16);
#pragma GCC unroll 12
    for (int i = 0; i < kMR; ++i) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(int(ap[i]));
      acc0[i] = _mm512_dpbf16_ps(acc0[i], a, b0);
      acc1[i] = _mm512_dpbf16_ps(acc1[i], a, b1);
    }
    ap += kMR;
    bp += kNR;
  }
  const __mmask16 m0 = column_mask(nr), m1 = column_mask(nr - 16);
  __m512 base0 = _mm512_setzero_ps(), base1 = _mm512_setzero_ps();
  if (first && bias) {
    base0 = _mm512_maskz_loadu_ps(m0, bias);
    base1 = _mm512_maskz_loadu_ps(m1, bias + 16);
  }
#pragma GCC unroll 12
  for (int i = 0; i < kMR; ++i) {
    if (i >= mr) break;
    float *row = c + i * ldc;
    const __m512 c0 = first ? base0 : _mm512_maskz_loadu_ps(m0, row);
    const __m512 c1 = first ? base1 : _mm512_maskz_loadu_ps(m1, row + 16);
    _mm512_mask_storeu_ps(row, m0, _mm512_add_ps(c0, acc0[i]));
    _mm512_mask_storeu_ps(row + 16, m1, _mm512_add_ps(c1, acc1[i]));
  }
}

// The same tile on AVX2 with the emulated dot product (PREDIFF_BF16_EMULATE=1), 8 columns at a time.
void micro_tile_bf16_emulated(const float *ap_, const float *bp_, int64_t words, float *c, int64_t ldc, int64_t mr,
                              int64_t nr, const float *bias, bool first) {
  const uint32_t *ap = reinterpret_cast<const uint32_t *>(ap_);
  const uint32_t *bp = reinterpret_cast<const uint32_t *>(bp_);
  alignas(32) float out[kMR][kNR];
  for (int64_t g = 0; g < kNR; g += 8) {
    __m256 acc[kMR];
    for (int i = 0; i < kMR; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t q = 0; q < words; ++q) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(bp + q * kNR + g));
      for (int i = 0; i < kMR; ++i)
        acc[i] = prediff_kernels::bf16_dot_emulated(acc[i], _mm256_set1_epi32(int(ap[q * kMR + i])), b);
    }
    for (int i = 0; i < kMR; ++i) _mm256_store_ps(out[i] + g, acc[i]);
  }
  store_tile(out, c, ldc, mr, nr, bias, first);
}

// y (rows x out) = x (rows x in, float32) w^T (+ bias), with w^T given as bf16 column panels (`panels`: for column
// panel q of 32 output columns, word r, column j: w[32q + j][2r] | w[32q + j][2r + 1] << 16, zero beyond out and in -
// the layout `pack_b` would write for the whole reduction; packed once per layer by prediff_models.kernels.dense).
void gemm_x_wt_bf16(const float *x, const uint32_t *panels, int64_t rows, int64_t out, int64_t in, const float *bias,
                    float *y) {
  auto pack_a = [&](int64_t m0, int64_t mr, int64_t k0, int64_t kc, float *dst) {
    pack_x_bf16(x, in, m0, mr, k0, kc, reinterpret_cast<uint32_t *>(dst));
  };
  auto no_pack_b = [](int64_t, int64_t, int64_t, int64_t, float *) {};
  const float *bp = reinterpret_cast<const float *>(panels);  // 32-bit words, moved bit for bit
  const int64_t words = (in + 1) / 2;
  if (prediff_kernels::bf16_emulated())
    gemm_blocked<2>(pack_a, no_pack_b, rows, out, in, bias, y, false, micro_tile_bf16_emulated, bp, words);
  else
    gemm_blocked<2>(pack_a, no_pack_b, rows, out, in, bias, y, false, micro_tile_bf16, bp, words);
}

}  // namespace

namespace prediff_kernels {

void conv_weight_grad_gemm(const float *xpd, int64_t xbs, const int64_t *row_offsets, int64_t rows, const float *dy,
                           int64_t batch, int64_t cout, const ConvGrid &grid, float *dw) {
  const int64_t positions = grid.t * grid.h * grid.w, plane = grid.h * grid.w;
  // reduction index k = (sample, output position); every run of 8 starts at a multiple of 8, so (w being a multiple
  // of 8) it lies in one sample and one output row, contiguous in dy and in every tap-shifted input row
  auto input_offset = [&](int64_t k) {
    const int64_t s = k / positions, p = k % positions;
    const int64_t t = p / plane, h = (p / grid.w) % grid.h, w = p % grid.w;
    return s * xbs + (t * grid.hp + h) * grid.wp + w;
  };
  auto pack_dy = [&](int64_t m0, int64_t mr, int64_t k0, int64_t kc, float *dst) {
    if (mr < kMR) std::memset(dst, 0, sizeof(float) * kc * kMR);
    for (int64_t k = 0; k < kc; k += 8) {
      const int64_t s = (k0 + k) / positions, p = (k0 + k) % positions;
      const float *src = dy + (s * cout + m0) * positions + p;
      if (mr == kMR) {
        pack_a_panel8([&](int i) { return src + i * positions; }, dst + k * kMR);
      } else {
        for (int64_t i = 0; i < mr; ++i)
          for (int e = 0; e < 8; ++e) dst[(k + e) * kMR + i] = src[i * positions + e];
      }
    }
  };
  auto pack_columns = [&](int64_t k0, int64_t kc, int64_t n0, int64_t nr, float *dst) {
    if (nr < kNR) std::memset(dst, 0, sizeof(float) * kc * kNR);
    for (int64_t k = 0; k < kc; k += 8) {
      const float *base = xpd + input_offset(k0 + k);
      const int64_t *offs = row_offsets + n0;
      int64_t j = 0;
      for (; j + 8 <= nr; j += 8) transpose8([&](int i) { return base + offs[j + i]; }, dst + k * kNR + j, kNR);
      for (; j < nr; ++j)
        for (int e = 0; e < 8; ++e) dst[(k + e) * kNR + j] = base[offs[j] + e];
    }
  };
  gemm_blocked<1>(pack_dy, pack_columns, cout, rows, batch * positions, nullptr, dw, false, micro_tile);
}

}  // namespace prediff_kernels

namespace {

bool is_2d(const int *ndims, int64_t **shapes, int i, int64_t rows, int64_t cols) {
  return ndims[i] == 2 && shapes[i][0] == rows && shapes[i][1] == cols && rows > 0 && cols > 0;
}

template <typename Fn>
int guarded(Fn fn) {
  if (!prediff_kernels::avx512_wanted()) return 3;
  try {  // the scratch buffers can fail to allocate: report it to MindSpore instead of terminating
    fn();
  } catch (const std::bad_alloc &) {
    return 2;
  }
  return 0;
}

// The bf16 forward: params x (rows, in) float32, w^T as bf16 column panels (ceil(out / 32), ceil(in / 2), 32)
// uint32 (see gemm_x_wt_bf16), [b (out) float32], y (rows, out).
int dense_forward_bf16(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool with_bias) {
  if (nparam != (with_bias ? 4 : 3) || ndims[0] != 2 || ndims[1] != 3) return 1;
  if (dtypes == nullptr || std::strcmp(dtypes[0], "float32") != 0 || std::strcmp(dtypes[1], "uint32") != 0) return 1;
  const int y = with_bias ? 3 : 2;
  if (ndims[y] != 2) return 1;
  const int64_t rows = shapes[0][0], in = shapes[0][1], out = shapes[y][1];
  if (rows <= 0 || in <= 0 || out <= 0 || shapes[y][0] != rows) return 1;
  if (shapes[1][0] != (out + kNR - 1) / kNR || shapes[1][1] != (in + 1) / 2 || shapes[1][2] != kNR) return 1;
  if (with_bias && (ndims[2] != 1 || shapes[2][0] != out)) return 1;
  if (!prediff_kernels::bf16_wanted()) return 3;
  const float *x = static_cast<const float *>(params[0]);
  const uint32_t *w = static_cast<const uint32_t *>(params[1]);
  const float *bias = with_bias ? static_cast<const float *>(params[2]) : nullptr;
  try {
    gemm_x_wt_bf16(x, w, rows, out, in, bias, static_cast<float *>(params[y]));
  } catch (const std::bad_alloc &) {
    return 2;
  }
  return 0;
}

int dense_forward(int nparam, void **params, int *ndims, int64_t **shapes, bool with_bias) {
  if (nparam != (with_bias ? 4 : 3) || ndims[0] != 2 || ndims[1] != 2) return 1;
  const int64_t rows = shapes[0][0], in = shapes[0][1], out = shapes[1][0];
  const int y = with_bias ? 3 : 2;
  if (!is_2d(ndims, shapes, 1, out, in) || !is_2d(ndims, shapes, y, rows, out)) return 1;
  if (with_bias && (ndims[2] != 1 || shapes[2][0] != out)) return 1;
  const float *x = static_cast<const float *>(params[0]), *w = static_cast<const float *>(params[1]);
  const float *bias = with_bias ? static_cast<const float *>(params[2]) : nullptr;
  return guarded([&] { gemm({x, in, 1}, {w, 1, in}, rows, out, in, bias, static_cast<float *>(params[y])); });
}

}  // namespace

extern "C" {

// params: x (rows, in), w (out, in), b (out), y (rows, out).
int DenseForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  return dense_forward(nparam, params, ndims, shapes, true);
}

// params: x (rows, in), w (out, in), y (rows, out).
int DenseForwardNoBias(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  return dense_forward(nparam, params, ndims, shapes, false);
}

// y = x w^T + b with bf16 operands and float32 accumulation (bf16.h). params: x (rows, in) float32, w^T as bf16
// column panels (ceil(out / 32), ceil(in / 2), 32) uint32, b (out) float32, y (rows, out) float32. Returns 3 where
// the bf16 kernels do not run.
int DenseForwardBF16(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  return dense_forward_bf16(nparam, params, ndims, shapes, dtypes, true);
}

// The same without bias. params: x, w, y.
int DenseForwardBF16NoBias(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                           void *) {
  return dense_forward_bf16(nparam, params, ndims, shapes, dtypes, false);
}

// dx = dy w. params: dy (rows, out), w (out, in), dx (rows, in).
int DenseInputGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 3 || ndims[0] != 2 || ndims[1] != 2) return 1;
  const int64_t rows = shapes[0][0], out = shapes[0][1], in = shapes[1][1];
  if (!is_2d(ndims, shapes, 0, rows, out) || !is_2d(ndims, shapes, 1, out, in) || !is_2d(ndims, shapes, 2, rows, in))
    return 1;
  const float *dy = static_cast<const float *>(params[0]), *w = static_cast<const float *>(params[1]);
  return guarded([&] { gemm({dy, out, 1}, {w, in, 1}, rows, in, out, nullptr, static_cast<float *>(params[2])); });
}

// dw = dy^T x. params: dy (rows, out), x (rows, in), dw (out, in).
int DenseWeightGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 3 || ndims[0] != 2 || ndims[1] != 2) return 1;
  const int64_t rows = shapes[0][0], out = shapes[0][1], in = shapes[1][1];
  if (!is_2d(ndims, shapes, 0, rows, out) || !is_2d(ndims, shapes, 1, rows, in) || !is_2d(ndims, shapes, 2, out, in))
    return 1;
  const float *dy = static_cast<const float *>(params[0]), *x = static_cast<const float *>(params[1]);
  return guarded([&] { gemm({dy, 1, out}, {x, in, 1}, out, in, rows, nullptr, static_cast<float *>(params[2])); });
}

}  // extern "C"
