// Direct 3x3(x3) float32 convolution for MindSpore `ops.Custom(func_type="aot")` (see models/kernels/conv.py).
//
// MindSpore's oneDNN convolutions run at 60-85 % of its matmul rate under the ONEDNN_MAX_CPU_ISA=AVX2 cap that
// the AVX-512 CPUs need (docs/performance-history.md), and they are 61 % of the paper-size UNet's FLOPs. This kernel
// computes stride-1, "same"-padded convolutions with 3x3 spatial taps and 3 or 1 temporal taps as an implicit
// GEMM: the input is copied once into a zero-padded buffer, so that every tap of every output position is a
// fixed offset from that position; each micro-tile keeps 6 output channels x 16 output positions (two runs of 8
// consecutive positions along W) in 12 AVX2 registers over the whole reduction (input channels x taps), with the
// weights packed so that the 6 channels of one (input channel, tap) pair are adjacent. The reduction is split in
// chunks of input channels so that the packed weights and the input rows of a chunk stay in L2. On CPUs with
// AVX-512F (checked at run time; PREDIFF_KERNEL_AVX512=0 turns it off) widths that are a multiple of 16 use a
// 12-channel x 32-position micro-tile in 24 of its 32 registers instead; MindSpore's own oneDNN stays capped at
// AVX2. Scratch buffers sit on transparent huge pages (see `Scratch`).
//
// Layouts: x (N, Cin, T, H, W) or (N, Cin, H, W); w (Cout, Cin, KT, 3, 3) or (Cout, Cin, 3, 3); y like x with
// Cout channels. W must be a multiple of 8. `Conv3x3InputGrad` is the same convolution with the weights' two
// channel axes swapped and their taps reversed, which is the gradient with respect to the input.
// `UpsampleConv3x3` is nearest-neighbour x2 upsampling followed by the 2-D convolution, as four 2x2 convolutions.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include <omp.h>
#include <sys/mman.h>

#include "bf16.h"
#include "gemm.h"
#include "kernel_support.h"

namespace {

using prediff_kernels::avx512_wanted;
using prediff_kernels::kKeptScratchFloats;
using prediff_kernels::Scratch;

constexpr int64_t kBlock = 6;        // output channels per micro-tile (AVX2)
constexpr int64_t kBlock512 = 12;    // the same with AVX-512: 24 of its 32 registers hold accumulators
constexpr int64_t kChunk = 64;       // input channels per reduction chunk
constexpr int64_t kTileBlock = 64;       // micro-tiles per parallel work item
constexpr int64_t kSmallTileBlock = 16;  // the same when tile blocks are the outer loop

struct Geometry {
  int64_t n, cin, cout, t, h, w, kt;  // kt: temporal taps (3, or 1 for 2-D)
  int64_t tp, hp, wp;                 // padded extents
  int64_t channel_stride() const { return tp * hp * wp; }
  int64_t taps() const { return kt * 9; }
};

// Width 8 with AVX-512 (the UNet's second level, 8 x 8 latents): a 16-wide run must cover two rows, which the
// zero-padded layout does not hold contiguously (its rows are 10 wide). The input is padded in T and H only and
// stored three times, shifted by one column left, not at all and right (the column that falls off an edge is a
// zero), so each horizontal tap is a copy and every run of 16 outputs - two whole rows - reads 16 contiguous
// inputs per tap. With 12-channel blocks the input is streamed half as often as with the AVX2 tile's 6.
bool uses_shifted_rows(const Geometry &g, bool avx512) {
  return avx512 && g.w == 8 && (g.h * g.w) % 16 == 0;
}

template <int NB, int TAPS>
inline void micro_tile(const float *__restrict x0, const float *__restrict x1, const float *__restrict wp,
                       int64_t channels, int64_t cstride, const int64_t *__restrict offs,
                       const float *__restrict bias, bool first, float *__restrict y0, float *__restrict y1,
                       int64_t ystride) {
  __m256 acc0[NB], acc1[NB];
  if (first) {
    for (int j = 0; j < NB; ++j) acc0[j] = acc1[j] = _mm256_set1_ps(bias ? bias[j] : 0.0f);
  } else {
    for (int j = 0; j < NB; ++j) {
      acc0[j] = _mm256_loadu_ps(y0 + j * ystride);
      acc1[j] = _mm256_loadu_ps(y1 + j * ystride);
    }
  }
  for (int64_t c = 0; c < channels; ++c) {
    const float *p0 = x0 + c * cstride, *p1 = x1 + c * cstride;
#pragma GCC unroll 27
    for (int k = 0; k < TAPS; ++k) {
      const __m256 a0 = _mm256_loadu_ps(p0 + offs[k]);
      const __m256 a1 = _mm256_loadu_ps(p1 + offs[k]);
#pragma GCC unroll 6
      for (int j = 0; j < NB; ++j) {
        const __m256 b = _mm256_broadcast_ss(wp + j);
        acc0[j] = _mm256_fmadd_ps(a0, b, acc0[j]);
        acc1[j] = _mm256_fmadd_ps(a1, b, acc1[j]);
      }
      wp += NB;
    }
  }
  for (int j = 0; j < NB; ++j) {
    _mm256_storeu_ps(y0 + j * ystride, acc0[j]);
    _mm256_storeu_ps(y1 + j * ystride, acc1[j]);
  }
}

using MicroTile = void (*)(const float *, const float *, const float *, int64_t, int64_t, const int64_t *,
                           const float *, bool, float *, float *, int64_t);
// [tap set: 2x2 (one phase of an upsampling convolution), 3x3, 3x3x3][output channels in the block]
constexpr MicroTile kMicroTiles[3][kBlock + 1] = {
    {nullptr, micro_tile<1, 4>, micro_tile<2, 4>, micro_tile<3, 4>, micro_tile<4, 4>, micro_tile<5, 4>,
     micro_tile<6, 4>},
    {nullptr, micro_tile<1, 9>, micro_tile<2, 9>, micro_tile<3, 9>, micro_tile<4, 9>, micro_tile<5, 9>,
     micro_tile<6, 9>},
    {nullptr, micro_tile<1, 27>, micro_tile<2, 27>, micro_tile<3, 27>, micro_tile<4, 27>, micro_tile<5, 27>,
     micro_tile<6, 27>}};

// The AVX-512 micro-tile: 12 output channels x 32 positions (two runs of 16) in 24 registers; same packing with
// 12-channel blocks. Built for AVX-512F alone (the library's flags stay AVX2) and used only where the CPU has it.
// It repeats micro_tile's loop on purpose: one template for both would carry the avx512f target attribute into the
// AVX2 instantiations too, and the compiler could then emit AVX-512 instructions where the CPU has none.
template <int NB, int TAPS>
__attribute__((target("avx512f"))) void micro_tile512(const float *__restrict x0, const float *__restrict x1,
                                                      const float *__restrict wp, int64_t channels, int64_t cstride,
                                                      const int64_t *__restrict offs, const float *__restrict bias,
                                                      bool first, float *__restrict y0, float *__restrict y1,
                                                      int64_t ystride) {
  __m512 acc0[NB], acc1[NB];
  if (first) {
    for (int j = 0; j < NB; ++j) acc0[j] = acc1[j] = _mm512_set1_ps(bias ? bias[j] : 0.0f);
  } else {
    for (int j = 0; j < NB; ++j) {
      acc0[j] = _mm512_loadu_ps(y0 + j * ystride);
      acc1[j] = _mm512_loadu_ps(y1 + j * ystride);
    }
  }
  for (int64_t c = 0; c < channels; ++c) {
    const float *p0 = x0 + c * cstride, *p1 = x1 + c * cstride;
#pragma GCC unroll 27
    for (int k = 0; k < TAPS; ++k) {
      const __m512 a0 = _mm512_loadu_ps(p0 + offs[k]);
      const __m512 a1 = _mm512_loadu_ps(p1 + offs[k]);
#pragma GCC unroll 12
      for (int j = 0; j < NB; ++j) {
        const __m512 b = _mm512_set1_ps(wp[j]);
        acc0[j] = _mm512_fmadd_ps(a0, b, acc0[j]);
        acc1[j] = _mm512_fmadd_ps(a1, b, acc1[j]);
      }
      wp += NB;
    }
  }
  for (int j = 0; j < NB; ++j) {
    _mm512_storeu_ps(y0 + j * ystride, acc0[j]);
    _mm512_storeu_ps(y1 + j * ystride, acc1[j]);
  }
}

template <int TAPS>
constexpr MicroTile kMicroTiles512Row[kBlock512 + 1] = {
    nullptr, micro_tile512<1, TAPS>, micro_tile512<2, TAPS>, micro_tile512<3, TAPS>, micro_tile512<4, TAPS>,
    micro_tile512<5, TAPS>, micro_tile512<6, TAPS>, micro_tile512<7, TAPS>, micro_tile512<8, TAPS>,
    micro_tile512<9, TAPS>, micro_tile512<10, TAPS>, micro_tile512<11, TAPS>, micro_tile512<12, TAPS>};

// How the output is tiled: output channels per block, positions per run (a micro-tile covers two runs), and the
// micro-tile functions by block width.
struct Tiling {
  int64_t block, run;
  const MicroTile *tiles;
};

// The AVX-512 tiling where the CPU has it and the width is a multiple of 16 (or the rows are shifted copies, so
// that a run spans rows), else the AVX2 one.
Tiling tiling_for(int64_t taps, int64_t width, bool shifted_rows = false) {
  const int set = taps == 4 ? 0 : taps == 9 ? 1 : 2;
  if (avx512_wanted() && (width % 16 == 0 || shifted_rows)) {
    static const MicroTile *rows512[3] = {kMicroTiles512Row<4>, kMicroTiles512Row<9>, kMicroTiles512Row<27>};
    return {kBlock512, 16, rows512[set]};
  }
  return {kBlock, 8, kMicroTiles[set]};
}

// Offset of every tap (temporal, row, column) from an output position's top-left neighbour in the padded input;
// `column_step` is the distance from one column tap to the next: 1 in the zero-padded layout, the distance between
// copies in the shifted-rows one (see `uses_shifted_rows`: copy d of the (N, Cin, T+kt-1, H+2, W) buffer holds
// column c + d - 1 of the input at column c).
void tap_offsets(const Geometry &g, int64_t column_step, int64_t *offs) {
  for (int64_t dt = 0; dt < g.kt; ++dt)
    for (int64_t dh = 0; dh < 3; ++dh)
      for (int64_t dw = 0; dw < 3; ++dw) offs[(dt * 3 + dh) * 3 + dw] = (dt * g.hp + dh) * g.wp + dw * column_step;
}

void pad_input_shifted(const float *x, const Geometry &g, int64_t copy_stride, float *xp) {
  const int64_t pt = g.kt / 2, w = g.w;
  std::memset(xp, 0, sizeof(float) * 3 * copy_stride);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t nc = 0; nc < g.n * g.cin; ++nc)
    for (int64_t t = 0; t < g.t; ++t)
      for (int64_t h = 0; h < g.h; ++h) {
        const float *src = x + ((nc * g.t + t) * g.h + h) * w;
        float *dst = xp + nc * g.channel_stride() + ((t + pt) * g.hp + h + 1) * g.wp;
        std::memcpy(dst + 1, src, sizeof(float) * (w - 1));                    // left neighbours
        std::memcpy(dst + copy_stride, src, sizeof(float) * w);                // the row itself
        std::memcpy(dst + 2 * copy_stride, src + 1, sizeof(float) * (w - 1));  // right neighbours
      }
}

// x (N, Cin, T, H, W) into a zeroed (N, Cin, T+kt-1, H+2, W+2) buffer.
void pad_input(const float *x, const Geometry &g, float *xp) {
  const int64_t pt = g.kt / 2;
  std::memset(xp, 0, sizeof(float) * g.n * g.cin * g.channel_stride());
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t nc = 0; nc < g.n * g.cin; ++nc)
    for (int64_t t = 0; t < g.t; ++t)
      for (int64_t h = 0; h < g.h; ++h)
        std::memcpy(xp + nc * g.channel_stride() + ((t + pt) * g.hp + h + 1) * g.wp + 1,
                    x + ((nc * g.t + t) * g.h + h) * g.w, sizeof(float) * g.w);
}

// Packed weights: per block of `block` output channels, [cin][tap][block] (a partial last block packs its width).
// Forward: w is (Cout, Cin, taps). Input gradient: w is (Cin_y, Cout_y, taps) of the forward convolution, read with
// its channel axes swapped and its taps reversed.
void pack_weights(const float *w, const Geometry &g, bool input_grad, int64_t block, float *packed) {
  const int64_t taps = g.taps(), blocks = (g.cout + block - 1) / block;
#pragma omp parallel for schedule(static)
  for (int64_t cb = 0; cb < blocks; ++cb) {
    const int64_t width = std::min(block, g.cout - cb * block);
    float *dst = packed + cb * block * g.cin * taps;
    for (int64_t ci = 0; ci < g.cin; ++ci)
      for (int64_t k = 0; k < taps; ++k)
        for (int64_t j = 0; j < width; ++j) {
          const int64_t co = cb * block + j;
          *dst++ = input_grad ? w[(ci * g.cout + co) * taps + (taps - 1 - k)] : w[(co * g.cin + ci) * taps + k];
        }
  }
}

// y (N, Cout, T, H, W) = the convolution of the padded input `xpd` with `packed` weights ([block][cin][tap][6])
// over `taps` taps at `offs` (offsets from each output position's top-left neighbour in the padded input).
void run_tiles(const float *xpd, const float *packed_weights, const int64_t *offs, int64_t taps, const Tiling &tl,
               const float *bias, const Geometry &g, float *y) {
  const int64_t block = tl.block, cstride = g.channel_stride(), blocks = (g.cout + block - 1) / block;
  const MicroTile *tile_fns = tl.tiles;
  // a run: tl.run consecutive output positions along W; a micro-tile: two runs (which may lie in different rows)
  const int64_t runs_per_plane = g.t * g.h * g.w / tl.run, runs = g.n * runs_per_plane;
  const int64_t tiles = (runs + 1) / 2, tile_blocks = (tiles + kTileBlock - 1) / kTileBlock;
  const int64_t ystride = g.t * g.h * g.w;
  auto locate = [&](int64_t run, const float *&in, float *&out) {
    const int64_t n = run / runs_per_plane, r = (run % runs_per_plane) * tl.run;
    const int64_t t = r / (g.h * g.w), h = (r / g.w) % g.h, w0 = r % g.w;
    in = xpd + n * g.cin * cstride + (t * g.hp + h) * g.wp + w0;
    out = y + n * g.cout * ystride + (t * g.h + h) * g.w + w0;
  };
  // an odd last run is paired with itself (computed twice, stored twice: same values)
  auto work = [&](int64_t cb, int64_t tb, int64_t tiles_per_block) {
    const int64_t width = std::min(block, g.cout - cb * block);
    const MicroTile tile_fn = tile_fns[width];
    for (int64_t c0 = 0; c0 < g.cin; c0 += kChunk) {
      const int64_t channels = std::min(kChunk, g.cin - c0);
      const float *wpb = packed_weights + cb * block * g.cin * taps + c0 * taps * width;
      for (int64_t tile = tb * tiles_per_block; tile < std::min(tiles, (tb + 1) * tiles_per_block); ++tile) {
        const float *x0, *x1;
        float *y0, *y1;
        locate(2 * tile, x0, y0);
        locate(std::min(2 * tile + 1, runs - 1), x1, y1);
        tile_fn(x0 + c0 * cstride, x1 + c0 * cstride, wpb, channels, cstride, offs, bias ? bias + cb * block : nullptr,
                c0 == 0, y0 + cb * block * ystride, y1 + cb * block * ystride, ystride);
      }
    }
  };
  // Which operand a thread sweeps once: when the padded input outweighs the packed weights (the VAE's large
  // frames), tile blocks are the outer loop, so a block's input rows stay in cache while every output-channel block
  // passes over them; otherwise (the UNet) output-channel blocks are, so their weights stay while the tiles pass.
  if (g.n * g.cin * cstride > blocks * block * g.cin * taps) {
    const int64_t small_blocks = (tiles + kSmallTileBlock - 1) / kSmallTileBlock;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t tb = 0; tb < small_blocks; ++tb)
      for (int64_t cb = 0; cb < blocks; ++cb) work(cb, tb, kSmallTileBlock);
  } else {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t cb = 0; cb < blocks; ++cb)
      for (int64_t tb = 0; tb < tile_blocks; ++tb) work(cb, tb, kTileBlock);
  }
}

// Frames per pass when a pass needs `per_frame` scratch floats per frame: as many as keep the scratch within the size
// that is kept between calls (at least one), so that a large batch (the VAE decoding every member's frames) neither
// allocates nor first-touches hundreds of MB per call.
int64_t frames_per_pass(int64_t n, int64_t per_frame) {
  return std::max<int64_t>(1, std::min<int64_t>(n, int64_t(kKeptScratchFloats) / std::max<int64_t>(1, per_frame)));
}

void convolve(const float *x, const float *w, const float *bias, const Geometry &padded, bool input_grad,
              float *y) {
  thread_local Scratch xp_buffer, packed_buffer;
  const bool shifted = uses_shifted_rows(padded, avx512_wanted());
  Geometry g = padded;
  if (shifted) g.wp = g.w;  // no column padding: the three shifted copies stand in for it
  const int64_t copies = shifted ? 3 : 1;
  const int64_t taps = g.taps();
  const Tiling tl = tiling_for(taps, g.w, shifted);
  const int64_t blocks = (g.cout + tl.block - 1) / tl.block;
  const int64_t pass = frames_per_pass(g.n, copies * g.cin * g.channel_stride());
  // the buffers are thread_local: parallel regions must be handed these pointers, not the names
  float *xp = xp_buffer.get(copies * pass * g.cin * g.channel_stride());
  float *packed = packed_buffer.get(blocks * tl.block * g.cin * taps);
  pack_weights(w, g, input_grad, tl.block, packed);
  const int64_t in_frame = g.cin * g.t * g.h * g.w, out_frame = g.cout * g.t * g.h * g.w;
  for (int64_t n0 = 0; n0 < g.n; n0 += pass) {
    Geometry gp = g;
    gp.n = std::min(pass, g.n - n0);
    int64_t offs[27];
    if (shifted) {
      const int64_t copy_stride = gp.n * gp.cin * gp.channel_stride();
      tap_offsets(gp, copy_stride, offs);
      pad_input_shifted(x + n0 * in_frame, gp, copy_stride, xp);
    } else {
      tap_offsets(gp, 1, offs);
      pad_input(x + n0 * in_frame, gp, xp);
    }
    run_tiles(xp, packed, offs, taps, tl, bias, gp, y + n0 * out_frame);
  }
  xp_buffer.release_if_large();
  packed_buffer.release_if_large();
}

// Nearest-neighbour x2 upsampling followed by a 3x3 convolution (stride 1, padding 1), without building the
// upsampled input: output row 2i+a reads upsampled rows 2i+a-1 .. 2i+a+1, which are input rows i-1, i, i (a = 0) or
// i, i, i+1 (a = 1), so each of the four output phases (a, b) is a 2x2 convolution of the input with weights summed
// over the taps that land on the same input pixel: 4 taps per output instead of 9.
// x (N, Cin, H, W), w (Cout, Cin, 3, 3), y (N, Cout, 2H, 2W); g describes x (its H x W) and w.
// The summed weight of output phase (a, b) at input offset (u, v): the original taps (0..2) that fall on input offset u
// for output phase a are kFirst[a][u] .. kLast[a][u]. `k` is one (output, input) channel pair's 3 x 3 taps.
inline float phase_weight(const float *k, int a, int b, int u, int v) {
  constexpr int kFirst[2][2] = {{0, 1}, {0, 2}}, kLast[2][2] = {{0, 2}, {1, 2}};
  float sum = 0.0f;
  for (int dh = kFirst[a][u]; dh <= kLast[a][u]; ++dh)
    for (int dw = kFirst[b][v]; dw <= kLast[b][v]; ++dw) sum += k[dh * 3 + dw];
  return sum;
}

// y[n, c, 2i + a, 2j + b] = phase (a, b)[n, c, i, j] for `rows` = frames x channels x h rows of width w (a multiple
// of 8); phase (a, b) starts at phases + (2a + b) * phase_stride.
void interleave_phases(const float *phases, int64_t phase_stride, int64_t rows, int64_t w, float *yp) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int a = 0; a < 2; ++a) {
      const float *p0 = phases + (a * 2) * phase_stride + r * w, *p1 = p0 + phase_stride;
      float *dst = yp + (2 * r + a) * 2 * w;
      for (int64_t j = 0; j < w; j += 8) {
        const __m256 e = _mm256_loadu_ps(p0 + j), o = _mm256_loadu_ps(p1 + j);
        const __m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o);
        _mm256_storeu_ps(dst + 2 * j, _mm256_permute2f128_ps(lo, hi, 0x20));
        _mm256_storeu_ps(dst + 2 * j + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
      }
    }
}

void upsample_convolve(const float *x, const float *w, const float *bias, const Geometry &g, float *y) {
  thread_local Scratch xp_buffer, packed_buffer, phase_buffer;
  const Tiling tl = tiling_for(4, g.w);
  const int64_t block = tl.block, blocks = (g.cout + block - 1) / block, plane = g.h * g.w;
  const int64_t phase_weights = blocks * block * g.cin * 4;
  const int64_t pass = frames_per_pass(g.n, g.cin * g.channel_stride() + 4 * g.cout * plane);
  float *xp = xp_buffer.get(pass * g.cin * g.channel_stride());
  float *packed = packed_buffer.get(4 * phase_weights);
  float *phases = phase_buffer.get(4 * pass * g.cout * plane);
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) {
#pragma omp parallel for schedule(static)
      for (int64_t cb = 0; cb < blocks; ++cb) {
        const int64_t width = std::min(block, g.cout - cb * block);
        float *dst = packed + (a * 2 + b) * phase_weights + cb * block * g.cin * 4;
        for (int64_t ci = 0; ci < g.cin; ++ci)
          for (int u = 0; u < 2; ++u)
            for (int v = 0; v < 2; ++v)
              for (int64_t j = 0; j < width; ++j)
                *dst++ = phase_weight(w + ((cb * block + j) * g.cin + ci) * 9, a, b, u, v);
      }
    }
  for (int64_t n0 = 0; n0 < g.n; n0 += pass) {
    Geometry gp = g;
    gp.n = std::min(pass, g.n - n0);
    pad_input(x + n0 * g.cin * plane, gp, xp);
    const int64_t phase_stride = gp.n * g.cout * plane;
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 2; ++b) {
        const int64_t offs[4] = {a * g.wp + b, a * g.wp + b + 1, (a + 1) * g.wp + b, (a + 1) * g.wp + b + 1};
        run_tiles(xp, packed + (a * 2 + b) * phase_weights, offs, 4, tl, bias, gp, phases + (a * 2 + b) * phase_stride);
      }
    interleave_phases(phases, phase_stride, gp.n * g.cout * g.h, g.w, y + n0 * g.cout * 4 * plane);
  }
  xp_buffer.release_if_large();
  packed_buffer.release_if_large();
  phase_buffer.release_if_large();
}

// The stride-2 3x3 convolution with one row and column of zeros after the input (the VAE's Downsample2D): output
// (i, j) reads input rows 2i .. 2i+2 and columns 2j .. 2j+2. The input is split into its four (row, column) parity
// planes, each (H/2 + 1) x (W/2 + 1) with a zero last row and column, so that every tap is again a fixed offset
// from the output position (plane (dh % 2, dw % 2), row + dh / 2, column + dw / 2) and the stride-1 tiles apply.
// x (N, Cin, H, W) with H, W even; y (N, Cout, H/2, W/2); g describes y's extent and the planes (see `Conv3x3Stride2`).
void split_phases(const float *x, int64_t in_h, int64_t in_w, const Geometry &g, float *xq) {
  const int64_t cstride = g.channel_stride(), plane = g.hp * g.wp;
  std::memset(xq, 0, sizeof(float) * g.n * g.cin * cstride);
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < g.n * g.cin; ++nc)
    for (int64_t p = 0; p < 2; ++p)
      for (int64_t r = 0; 2 * r + p < in_h; ++r) {
        const float *src = x + (nc * in_h + 2 * r + p) * in_w;
        for (int64_t q = 0; q < 2; ++q) {
          float *dst = xq + nc * cstride + (p * 2 + q) * plane + r * g.wp;
          for (int64_t c = 0; 2 * c + q < in_w; ++c) dst[c] = src[2 * c + q];
        }
      }
}

void convolve_stride2(const float *x, int64_t in_h, int64_t in_w, const float *w, const float *bias, const Geometry &g,
                      float *y) {
  thread_local Scratch xq_buffer, packed_buffer;
  const Tiling tl = tiling_for(9, g.w);
  const int64_t blocks = (g.cout + tl.block - 1) / tl.block;
  const int64_t pass = frames_per_pass(g.n, g.cin * g.channel_stride());
  float *xq = xq_buffer.get(pass * g.cin * g.channel_stride());
  float *packed = packed_buffer.get(blocks * tl.block * g.cin * 9);
  pack_weights(w, g, false, tl.block, packed);
  int64_t offs[9];
  for (int64_t dh = 0; dh < 3; ++dh)
    for (int64_t dw = 0; dw < 3; ++dw)
      offs[dh * 3 + dw] = (((dh % 2) * 2 + dw % 2) * g.hp + dh / 2) * g.wp + dw / 2;
  for (int64_t n0 = 0; n0 < g.n; n0 += pass) {
    Geometry gp = g;
    gp.n = std::min(pass, g.n - n0);
    split_phases(x + n0 * g.cin * in_h * in_w, in_h, in_w, gp, xq);
    run_tiles(xq, packed, offs, 9, tl, bias, gp, y + n0 * g.cout * g.h * g.w);
  }
  xq_buffer.release_if_large();
  packed_buffer.release_if_large();
}

// Reads the geometry from the shapes; false when they do not describe a supported convolution.
bool geometry(int xdim, const int64_t *xs, int wdim, const int64_t *ws, bool input_grad, Geometry *g) {
  if (xdim != wdim || (xdim != 4 && xdim != 5)) return false;
  const bool three_d = xdim == 5;
  g->n = xs[0];
  g->t = three_d ? xs[2] : 1;
  g->h = xs[xdim - 2];
  g->w = xs[xdim - 1];
  g->kt = three_d ? ws[2] : 1;
  g->cin = input_grad ? ws[0] : ws[1];
  g->cout = input_grad ? ws[1] : ws[0];
  if (xs[1] != g->cin || ws[wdim - 1] != 3 || ws[wdim - 2] != 3 || (g->kt != 1 && g->kt != 3)) return false;
  if (g->n <= 0 || g->t <= 0 || g->h <= 0 || g->w <= 0 || g->w % 8 || g->cin <= 0 || g->cout <= 0) return false;
  g->tp = g->t + g->kt - 1;
  g->hp = g->h + 2;
  g->wp = g->w + 2;
  return true;
}


inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// dW for NB output channels x 3 consecutive taps of one input channel: the reduction over every output position
// runs 8 positions per vector (12 accumulators), summed across lanes at the end.
template <int NB>
void weight_grad_tile(const float *__restrict dy, int64_t dy_batch_stride, const float *__restrict xp,
                      int64_t xp_batch_stride, const Geometry &g, const int64_t *__restrict offs,
                      float *__restrict out, int64_t out_channel_stride) {
  __m256 acc[NB][3];
  for (int j = 0; j < NB; ++j) acc[j][0] = acc[j][1] = acc[j][2] = _mm256_setzero_ps();
  const int64_t ystride = g.t * g.h * g.w;
  for (int64_t n = 0; n < g.n; ++n) {
    const float *dyn = dy + n * dy_batch_stride, *xn = xp + n * xp_batch_stride;
    for (int64_t t = 0; t < g.t; ++t)
      for (int64_t h = 0; h < g.h; ++h) {
        const float *drow = dyn + (t * g.h + h) * g.w, *xrow = xn + (t * g.hp + h) * g.wp;
        for (int64_t w0 = 0; w0 < g.w; w0 += 8) {
          const __m256 a0 = _mm256_loadu_ps(xrow + w0 + offs[0]);
          const __m256 a1 = _mm256_loadu_ps(xrow + w0 + offs[1]);
          const __m256 a2 = _mm256_loadu_ps(xrow + w0 + offs[2]);
#pragma GCC unroll 4
          for (int j = 0; j < NB; ++j) {
            const __m256 d = _mm256_loadu_ps(drow + j * ystride + w0);
            acc[j][0] = _mm256_fmadd_ps(d, a0, acc[j][0]);
            acc[j][1] = _mm256_fmadd_ps(d, a1, acc[j][1]);
            acc[j][2] = _mm256_fmadd_ps(d, a2, acc[j][2]);
          }
        }
      }
  }
  for (int j = 0; j < NB; ++j)
    for (int k = 0; k < 3; ++k) out[j * out_channel_stride + k] = horizontal_sum(acc[j][k]);
}

using WeightGradTile = void (*)(const float *, int64_t, const float *, int64_t, const Geometry &, const int64_t *,
                                float *, int64_t);
constexpr int64_t kGradBlock = 4;  // output channels per weight-gradient tile
constexpr WeightGradTile kWeightGradTiles[kGradBlock + 1] = {nullptr, weight_grad_tile<1>, weight_grad_tile<2>,
                                                             weight_grad_tile<3>, weight_grad_tile<4>};

// dw (Cout, Cin, taps) = sum over n and positions of dy (N, Cout, positions) x the tap-shifted padded input.
void weight_grad(const float *x, const float *dy, const Geometry &g, float *dw) {
  thread_local Scratch xp_buffer;
  const int64_t cstride = g.channel_stride(), taps = g.taps();
  float *xpd = xp_buffer.get(g.n * g.cin * cstride);
  pad_input(x, g, xpd);
  int64_t offs[27];
  tap_offsets(g, 1, offs);
  // AVX-512: dw = dy . im2col(x)^T on the GEMM kernel, where it pays. Every input value is packed once per tap for
  // the GEMM, work that each packed value repays with 2 x Cout FLOPs: with 128 output channels the packing made the
  // GEMM slower than the AVX2 tile (VAE, 128 channels at 128 x 128: 130 vs 145 GFLOP/s), with 256 about even at
  // batch 1 (183 vs 190) and ahead beyond, with 512 ahead everywhere (192-197 vs 151-172; benchmarks.conv
  // --weight-grad).
  if (prediff_kernels::gemm_wanted() && g.cout > 128) {
    std::vector<int64_t> row_offsets(g.cin * taps);
    for (int64_t ci = 0; ci < g.cin; ++ci)
      for (int64_t k = 0; k < taps; ++k) row_offsets[ci * taps + k] = ci * cstride + offs[k];
    prediff_kernels::conv_weight_grad_gemm(xpd, g.cin * cstride, row_offsets.data(), g.cin * taps, dy, g.n, g.cout,
                                           prediff_kernels::ConvGrid{g.t, g.h, g.w, g.hp, g.wp}, dw);
    xp_buffer.release_if_large();
    return;
  }
  const int64_t blocks = (g.cout + kGradBlock - 1) / kGradBlock, ystride = g.t * g.h * g.w;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t cb = 0; cb < blocks; ++cb)
    for (int64_t ci = 0; ci < g.cin; ++ci) {
      const int64_t width = std::min(kGradBlock, g.cout - cb * kGradBlock);
      for (int64_t k = 0; k < taps; k += 3)
        kWeightGradTiles[width](dy + cb * kGradBlock * ystride, g.cout * ystride, xpd + ci * cstride, g.cin * cstride,
                                g, offs + k, dw + (cb * kGradBlock * g.cin + ci) * taps + k, g.cin * taps);
    }
  xp_buffer.release_if_large();
}


// ---------------------------------------------------------------------------------------------------------------
// bf16 operands (bf16.h; inference): the input is rounded to bf16 as it is padded, two input channels per 32-bit
// word - channel pair c' holds channels 2c' (low half) and 2c' + 1 (high half; zero past an odd last channel) - so
// that the padded buffer has the float32 layout with half the channels, every tap is the same offset as before, and
// `run_tiles` drives the bf16 micro-tiles unchanged: 12 output channels x 32 positions, one VDPBF16PS (two
// multiply-adds per lane: the channel pair) per accumulator, tap and channel pair. Weights are packed as pairs of
// the same two input channels. Only the AVX-512 tiling exists (widths a multiple of 16, or 8 with shifted rows).

using prediff_kernels::bf16_emulated;
using prediff_kernels::bf16_pairs8;
using prediff_kernels::bf16_round;

inline uint32_t bf16_pair(float first, float second) {
  return uint32_t(bf16_round(first)) | (uint32_t(bf16_round(second)) << 16);
}

// Channel pairs of one row: dst[i] = (s0[i], s1[i]) rounded, s1 == nullptr for the zero channel; w a multiple of 8.
inline void pair_row(const float *s0, const float *s1, int64_t w, uint32_t *dst) {
  for (int64_t i = 0; i < w; i += 8) {
    const __m256 a = _mm256_loadu_ps(s0 + i), b = s1 ? _mm256_loadu_ps(s1 + i) : _mm256_setzero_ps();
    _mm256_storeu_si256(reinterpret_cast<__m256i *>(dst + i), bf16_pairs8(a, b));
  }
}

// x (N, cin, T, H, W) float32 into a zeroed (N, g.cin = cin / 2 rounded up, T+kt-1, H+2, W+2) buffer of pairs; with
// `copy_stride` > 0 the shifted-rows layout instead (see `uses_shifted_rows`; g.wp == g.w there).
void pad_pairs(const float *x, const Geometry &g, int64_t cin, int64_t copy_stride, uint32_t *xp) {
  const int64_t pt = g.kt / 2, plane = g.t * g.h * g.w, copies = copy_stride ? 3 : 1;
  std::memset(xp, 0, sizeof(uint32_t) * (copy_stride ? 3 * copy_stride : g.n * g.cin * g.channel_stride()));
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t nc = 0; nc < g.n * g.cin; ++nc)
    for (int64_t t = 0; t < g.t; ++t) {
      const int64_t n = nc / g.cin, c = 2 * (nc % g.cin);
      alignas(32) uint32_t row[8];
      for (int64_t h = 0; h < g.h; ++h) {
        const float *s0 = x + ((n * cin + c) * g.t + t) * g.h * g.w + h * g.w;
        const float *s1 = c + 1 < cin ? s0 + plane : nullptr;
        uint32_t *dst = xp + nc * g.channel_stride() + ((t + pt) * g.hp + h + 1) * g.wp;
        if (copies == 1) {
          pair_row(s0, s1, g.w, dst + 1);
        } else {  // width 8: left neighbours, the row, right neighbours
          pair_row(s0, s1, 8, row);
          std::memcpy(dst + 1, row, sizeof(uint32_t) * 7);
          std::memcpy(dst + copy_stride, row, sizeof(uint32_t) * 8);
          std::memcpy(dst + 2 * copy_stride, row + 1, sizeof(uint32_t) * 7);
        }
      }
    }
}

// The stride-2 convolution's parity planes (`split_phases`) as channel pairs.
void split_phases_pairs(const float *x, int64_t cin, int64_t in_h, int64_t in_w, const Geometry &g, uint32_t *xq) {
  const int64_t cstride = g.channel_stride(), plane = g.hp * g.wp, in_plane = in_h * in_w;
  std::memset(xq, 0, sizeof(uint32_t) * g.n * g.cin * cstride);
#pragma omp parallel for schedule(static)
  for (int64_t nc = 0; nc < g.n * g.cin; ++nc) {
    const int64_t n = nc / g.cin, c = 2 * (nc % g.cin);
    const float *s0 = x + (n * cin + c) * in_plane, *s1 = c + 1 < cin ? s0 + in_plane : nullptr;
    for (int64_t p = 0; p < 2; ++p)
      for (int64_t r = 0; 2 * r + p < in_h; ++r)
        for (int64_t q = 0; q < 2; ++q) {
          uint32_t *dst = xq + nc * cstride + (p * 2 + q) * plane + r * g.wp;
          const int64_t at = (2 * r + p) * in_w;
          for (int64_t col = 0; 2 * col + q < in_w; ++col)
            dst[col] = bf16_pair(s0[at + 2 * col + q], s1 ? s1[at + 2 * col + q] : 0.0f);
        }
  }
}

// Packed bf16 weights: per block of `block` output channels, [channel pair][tap][block] words. `weight(co, ci, k)`
// gives the bf16 bits of tap k between output co and input ci (< cin); g.cin is the number of pairs.
template <class Weight>
void pack_weight_pairs(const Weight &weight, const Geometry &g, int64_t cin, int64_t taps, int64_t block,
                       uint32_t *packed) {
  const int64_t blocks = (g.cout + block - 1) / block;
#pragma omp parallel for schedule(static)
  for (int64_t cb = 0; cb < blocks; ++cb) {
    const int64_t width = std::min(block, g.cout - cb * block);
    uint32_t *dst = packed + cb * block * g.cin * taps;
    for (int64_t cp = 0; cp < g.cin; ++cp)
      for (int64_t k = 0; k < taps; ++k)
        for (int64_t j = 0; j < width; ++j) {
          const int64_t co = cb * block + j, ci = 2 * cp;
          const uint32_t lo = weight(co, ci, k), hi = ci + 1 < cin ? weight(co, ci + 1, k) : 0u;
          *dst++ = lo | (hi << 16);
        }
  }
}

template <int NB, int TAPS>
__attribute__((target("avx512f,avx512bf16"))) void micro_tile_bf16(const float *x0_, const float *x1_,
                                                                 const float *wp_, int64_t channels, int64_t cstride,
                                                                 const int64_t *__restrict offs,
                                                                 const float *__restrict bias, bool first,
                                                                 float *__restrict y0, float *__restrict y1,
                                                                 int64_t ystride) {
  const uint32_t *x0 = reinterpret_cast<const uint32_t *>(x0_), *x1 = reinterpret_cast<const uint32_t *>(x1_);
  const uint32_t *wp = reinterpret_cast<const uint32_t *>(wp_);
  __m512 acc0[NB], acc1[NB];
  if (first) {
    for (int j = 0; j < NB; ++j) acc0[j] = acc1[j] = _mm512_set1_ps(bias ? bias[j] : 0.0f);
  } else {
    for (int j = 0; j < NB; ++j) {
      acc0[j] = _mm512_loadu_ps(y0 + j * ystride);
      acc1[j] = _mm512_loadu_ps(y1 + j * ystride);
    }
  }
  for (int64_t c = 0; c < channels; ++c) {
    const uint32_t *p0 = x0 + c * cstride, *p1 = x1 + c * cstride;
#pragma GCC unroll 27
    for (int k = 0; k < TAPS; ++k) {
      const __m512bh a0 = (__m512bh)_mm512_loadu_si512(p0 + offs[k]);
      const __m512bh a1 = (__m512bh)_mm512_loadu_si512(p1 + offs[k]);
#pragma GCC unroll 12
      for (int j = 0; j < NB; ++j) {
        const __m512bh b = (__m512bh)_mm512_set1_epi32(int(wp[j]));
        acc0[j] = _mm512_dpbf16_ps(acc0[j], a0, b);
        acc1[j] = _mm512_dpbf16_ps(acc1[j], a1, b);
      }
      wp += NB;
    }
  }
  for (int j = 0; j < NB; ++j) {
    _mm512_storeu_ps(y0 + j * ystride, acc0[j]);
    _mm512_storeu_ps(y1 + j * ystride, acc1[j]);
  }
}

// The same on AVX2 with the emulated dot product (PREDIFF_BF16_EMULATE=1): each 16-position run as two halves.
template <int NB, int TAPS>
void micro_tile_bf16_emulated(const float *x0_, const float *x1_, const float *wp_, int64_t channels,
                              int64_t cstride, const int64_t *offs, const float *bias, bool first, float *y0,
                              float *y1, int64_t ystride) {
  const uint32_t *x[2] = {reinterpret_cast<const uint32_t *>(x0_), reinterpret_cast<const uint32_t *>(x1_)};
  float *y[2] = {y0, y1};
  // both runs' starting values are read before either is stored (an odd last run is its own partner: x1 == x0)
  __m256 start[2][2][NB];
  for (int r = 0; r < 2; ++r)
    for (int half = 0; half < 2; ++half)
      for (int j = 0; j < NB; ++j)
        start[r][half][j] = first ? _mm256_set1_ps(bias ? bias[j] : 0.0f)
                                  : _mm256_loadu_ps(y[r] + j * ystride + 8 * half);
  for (int r = 0; r < 2; ++r)
    for (int half = 0; half < 2; ++half) {
      __m256 acc[NB];
      for (int j = 0; j < NB; ++j) acc[j] = start[r][half][j];
      const uint32_t *wp = reinterpret_cast<const uint32_t *>(wp_);
      for (int64_t c = 0; c < channels; ++c) {
        const uint32_t *p = x[r] + c * cstride + 8 * half;
        for (int k = 0; k < TAPS; ++k) {
          const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p + offs[k]));
          for (int j = 0; j < NB; ++j)
            acc[j] = prediff_kernels::bf16_dot_emulated(acc[j], a, _mm256_set1_epi32(int(wp[j])));
          wp += NB;
        }
      }
      for (int j = 0; j < NB; ++j) _mm256_storeu_ps(y[r] + j * ystride + 8 * half, acc[j]);
    }
}

template <int TAPS>
constexpr MicroTile kBf16Tiles[kBlock512 + 1] = {
    nullptr, micro_tile_bf16<1, TAPS>, micro_tile_bf16<2, TAPS>, micro_tile_bf16<3, TAPS>, micro_tile_bf16<4, TAPS>,
    micro_tile_bf16<5, TAPS>, micro_tile_bf16<6, TAPS>, micro_tile_bf16<7, TAPS>, micro_tile_bf16<8, TAPS>,
    micro_tile_bf16<9, TAPS>, micro_tile_bf16<10, TAPS>, micro_tile_bf16<11, TAPS>, micro_tile_bf16<12, TAPS>};

template <int TAPS>
constexpr MicroTile kBf16EmulatedTiles[kBlock512 + 1] = {
    nullptr, micro_tile_bf16_emulated<1, TAPS>, micro_tile_bf16_emulated<2, TAPS>,
    micro_tile_bf16_emulated<3, TAPS>, micro_tile_bf16_emulated<4, TAPS>, micro_tile_bf16_emulated<5, TAPS>,
    micro_tile_bf16_emulated<6, TAPS>, micro_tile_bf16_emulated<7, TAPS>, micro_tile_bf16_emulated<8, TAPS>,
    micro_tile_bf16_emulated<9, TAPS>, micro_tile_bf16_emulated<10, TAPS>, micro_tile_bf16_emulated<11, TAPS>,
    micro_tile_bf16_emulated<12, TAPS>};

Tiling bf16_tiling(int64_t taps) {
  const int set = taps == 4 ? 0 : taps == 9 ? 1 : 2;
  static const MicroTile *real[3] = {kBf16Tiles<4>, kBf16Tiles<9>, kBf16Tiles<27>};
  static const MicroTile *emulated[3] = {kBf16EmulatedTiles<4>, kBf16EmulatedTiles<9>, kBf16EmulatedTiles<27>};
  return {kBlock512, 16, bf16_emulated() ? emulated[set] : real[set]};
}

// Whether the bf16 tiles cover an output of width w and height h: runs of 16 along W, or two whole rows of 8.
bool bf16_width_ok(int64_t h, int64_t w) { return w % 16 == 0 || (w == 8 && (h * w) % 16 == 0); }

// Conv3x3 with bf16 operands: x float32, w the bf16 bits of (Cout, Cin, taps), y float32. g as from `geometry`.
void convolve_bf16(const float *x, const uint16_t *w, const float *bias, const Geometry &padded, float *y) {
  thread_local Scratch xp_buffer, packed_buffer;
  const int64_t cin = padded.cin, taps = padded.taps();
  Geometry g = padded;
  g.cin = (cin + 1) / 2;
  const bool shifted = g.w == 8;
  if (shifted) g.wp = g.w;
  const int64_t copies = shifted ? 3 : 1;
  const Tiling tl = bf16_tiling(taps);
  const int64_t blocks = (g.cout + tl.block - 1) / tl.block;
  const int64_t pass = frames_per_pass(g.n, copies * g.cin * g.channel_stride());
  uint32_t *xp = reinterpret_cast<uint32_t *>(xp_buffer.get(copies * pass * g.cin * g.channel_stride()));
  uint32_t *packed = reinterpret_cast<uint32_t *>(packed_buffer.get(blocks * tl.block * g.cin * taps));
  pack_weight_pairs([&](int64_t co, int64_t ci, int64_t k) { return uint32_t(w[(co * cin + ci) * taps + k]); }, g,
                    cin, taps, tl.block, packed);
  const int64_t in_frame = cin * g.t * g.h * g.w, out_frame = g.cout * g.t * g.h * g.w;
  for (int64_t n0 = 0; n0 < g.n; n0 += pass) {
    Geometry gp = g;
    gp.n = std::min(pass, g.n - n0);
    const int64_t copy_stride = shifted ? gp.n * gp.cin * gp.channel_stride() : 0;
    int64_t offs[27];
    tap_offsets(gp, shifted ? copy_stride : 1, offs);
    pad_pairs(x + n0 * in_frame, gp, cin, copy_stride, xp);
    run_tiles(reinterpret_cast<const float *>(xp), reinterpret_cast<const float *>(packed), offs, taps, tl, bias, gp,
              y + n0 * out_frame);
  }
  xp_buffer.release_if_large();
  packed_buffer.release_if_large();
}

// UpsampleConv3x3 with bf16 operands: the phase weights are summed in float32 from the float32 weights w and
// rounded once.
void upsample_convolve_bf16(const float *x, const float *w, const float *bias, const Geometry &real, float *y) {
  thread_local Scratch xp_buffer, packed_buffer, phase_buffer;
  const int64_t cin = real.cin;
  Geometry g = real;
  g.cin = (cin + 1) / 2;
  const Tiling tl = bf16_tiling(4);
  const int64_t block = tl.block, blocks = (g.cout + block - 1) / block, plane = g.h * g.w;
  const int64_t phase_weights = blocks * block * g.cin * 4;
  const int64_t pass = frames_per_pass(g.n, g.cin * g.channel_stride() + 4 * g.cout * plane);
  uint32_t *xp = reinterpret_cast<uint32_t *>(xp_buffer.get(pass * g.cin * g.channel_stride()));
  uint32_t *packed = reinterpret_cast<uint32_t *>(packed_buffer.get(4 * phase_weights));
  float *phases = phase_buffer.get(4 * pass * g.cout * plane);
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b)
      pack_weight_pairs([&](int64_t co, int64_t ci, int64_t k) {
        return uint32_t(bf16_round(phase_weight(w + (co * cin + ci) * 9, a, b, int(k / 2), int(k % 2))));
      }, g, cin, 4, block, packed + (a * 2 + b) * phase_weights);
  for (int64_t n0 = 0; n0 < g.n; n0 += pass) {
    Geometry gp = g;
    gp.n = std::min(pass, g.n - n0);
    pad_pairs(x + n0 * cin * plane, gp, cin, 0, xp);
    const int64_t phase_stride = gp.n * g.cout * plane;
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 2; ++b) {
        const int64_t offs[4] = {a * g.wp + b, a * g.wp + b + 1, (a + 1) * g.wp + b, (a + 1) * g.wp + b + 1};
        run_tiles(reinterpret_cast<const float *>(xp), reinterpret_cast<const float *>(packed + (a * 2 + b) *
                  phase_weights), offs, 4, tl, bias, gp, phases + (a * 2 + b) * phase_stride);
      }
    interleave_phases(phases, phase_stride, gp.n * g.cout * g.h, g.w, y + n0 * g.cout * 4 * plane);
  }
  xp_buffer.release_if_large();
  packed_buffer.release_if_large();
  phase_buffer.release_if_large();
}

// Conv3x3Stride2 with bf16 operands (w: bf16 bits of (Cout, Cin, 3, 3)).
void convolve_stride2_bf16(const float *x, int64_t in_h, int64_t in_w, const uint16_t *w, const float *bias,
                           const Geometry &real, float *y) {
  thread_local Scratch xq_buffer, packed_buffer;
  const int64_t cin = real.cin;
  Geometry g = real;
  g.cin = (cin + 1) / 2;
  const Tiling tl = bf16_tiling(9);
  const int64_t blocks = (g.cout + tl.block - 1) / tl.block;
  const int64_t pass = frames_per_pass(g.n, g.cin * g.channel_stride());
  uint32_t *xq = reinterpret_cast<uint32_t *>(xq_buffer.get(pass * g.cin * g.channel_stride()));
  uint32_t *packed = reinterpret_cast<uint32_t *>(packed_buffer.get(blocks * tl.block * g.cin * 9));
  pack_weight_pairs([&](int64_t co, int64_t ci, int64_t k) { return uint32_t(w[(co * cin + ci) * 9 + k]); }, g, cin,
                    9, tl.block, packed);
  int64_t offs[9];
  for (int64_t dh = 0; dh < 3; ++dh)
    for (int64_t dw = 0; dw < 3; ++dw)
      offs[dh * 3 + dw] = (((dh % 2) * 2 + dw % 2) * g.hp + dh / 2) * g.wp + dw / 2;
  for (int64_t n0 = 0; n0 < g.n; n0 += pass) {
    Geometry gp = g;
    gp.n = std::min(pass, g.n - n0);
    split_phases_pairs(x + n0 * cin * in_h * in_w, cin, in_h, in_w, gp, xq);
    run_tiles(reinterpret_cast<const float *>(xq), reinterpret_cast<const float *>(packed), offs, 9, tl, bias, gp,
              y + n0 * g.cout * g.h * g.w);
  }
  xq_buffer.release_if_large();
  packed_buffer.release_if_large();
}

bool is_dtype(const char **dtypes, int i, const char *name) {
  return dtypes != nullptr && std::strcmp(dtypes[i], name) == 0;
}

}  // namespace

extern "C" {

// params: x (N, Cin, [T,] H, W), w (Cout, Cin, [KT,] 3, 3), b (Cout), y (N, Cout, [T,] H, W).
int Conv3x3(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  Geometry g;
  if (nparam != 4 || !geometry(ndims[0], shapes[0], ndims[1], shapes[1], false, &g)) return 1;
  try {  // the scratch buffers can fail to allocate: report it to MindSpore instead of terminating
    convolve(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
             static_cast<const float *>(params[2]), g, false, static_cast<float *>(params[3]));
  } catch (const std::bad_alloc &) {
    return 2;
  }
  return 0;
}

// The gradient of Conv3x3 with respect to x. params: dy (N, Cout, [T,] H, W), w (Cout, Cin, [KT,] 3, 3),
// dx (N, Cin, [T,] H, W).
int Conv3x3InputGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  Geometry g;
  if (nparam != 3 || !geometry(ndims[0], shapes[0], ndims[1], shapes[1], true, &g)) return 1;
  try {
    convolve(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]), nullptr, g, true,
             static_cast<float *>(params[2]));
  } catch (const std::bad_alloc &) {
    return 2;
  }
  return 0;
}

// The gradient of Conv3x3 with respect to w. params: x (N, Cin, [T,] H, W), dy (N, Cout, [T,] H, W),
// w (Cout, Cin, [KT,] 3, 3; only its shape is read), dw (like w).
int Conv3x3WeightGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  Geometry g;
  if (nparam != 4 || !geometry(ndims[0], shapes[0], ndims[2], shapes[2], false, &g)) return 1;
  if (ndims[1] != ndims[0] || shapes[1][0] != g.n || shapes[1][1] != g.cout) return 1;
  for (int i = 2; i < ndims[0]; ++i)
    if (shapes[1][i] != shapes[0][i]) return 1;
  try {
    weight_grad(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]), g,
                static_cast<float *>(params[3]));
  } catch (const std::bad_alloc &) {
    return 2;
  }
  return 0;
}

// Nearest-neighbour x2 upsampling, then Conv3x3. params: x (N, Cin, H, W), w (Cout, Cin, 3, 3), b (Cout),
// y (N, Cout, 2H, 2W).
int UpsampleConv3x3(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  Geometry g;
  if (nparam != 4 || ndims[0] != 4 || !geometry(ndims[0], shapes[0], ndims[1], shapes[1], false, &g)) return 1;
  try {
    upsample_convolve(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                      static_cast<const float *>(params[2]), g, static_cast<float *>(params[3]));
  } catch (const std::bad_alloc &) {
    return 2;
  }
  return 0;
}

// Stride-2 3x3 convolution, input padded by one zero row at the bottom and one zero column on the right.
// params: x (N, Cin, H, W) with H and W even and W/2 a multiple of 8, w (Cout, Cin, 3, 3), b (Cout),
// y (N, Cout, H/2, W/2).
int Conv3x3Stride2(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 4 || ndims[0] != 4 || ndims[1] != 4) return 1;
  const int64_t *xs = shapes[0], *ws = shapes[1];
  if (xs[0] <= 0 || xs[1] <= 0 || xs[2] <= 0 || xs[3] <= 0 || xs[2] % 2 || xs[3] % 2 || (xs[3] / 2) % 8) return 1;
  if (ws[0] <= 0 || ws[1] != xs[1] || ws[2] != 3 || ws[3] != 3) return 1;
  Geometry g{xs[0], xs[1], ws[0], 1, xs[2] / 2, xs[3] / 2, 1, 4, xs[2] / 2 + 1, xs[3] / 2 + 1};
  try {
    convolve_stride2(static_cast<const float *>(params[0]), xs[2], xs[3], static_cast<const float *>(params[1]),
                     static_cast<const float *>(params[2]), g, static_cast<float *>(params[3]));
  } catch (const std::bad_alloc &) {
    return 2;
  }
  return 0;
}

// Conv3x3 with bf16 operands and float32 accumulation (bf16.h; forward only). params: x (N, Cin, [T,] H, W) float32,
// w (Cout, Cin, [KT,] 3, 3) uint16 (bf16 bits), b (Cout) float32, y float32; W a multiple of 16, or 8 with H x W a
// multiple of 16. Returns 3 where the bf16 kernels do not run.
int Conv3x3BF16(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  Geometry g;
  if (nparam != 4 || !geometry(ndims[0], shapes[0], ndims[1], shapes[1], false, &g)) return 1;
  if (!is_dtype(dtypes, 0, "float32") || !is_dtype(dtypes, 1, "uint16") || !bf16_width_ok(g.h, g.w)) return 1;
  if (!prediff_kernels::bf16_wanted()) return 3;
  try {
    convolve_bf16(static_cast<const float *>(params[0]), static_cast<const uint16_t *>(params[1]),
                  static_cast<const float *>(params[2]), g, static_cast<float *>(params[3]));
  } catch (const std::bad_alloc &) {
    return 2;
  }
  return 0;
}

// UpsampleConv3x3 with bf16 operands. params: x (N, Cin, H, W) float32 with W a multiple of 16, w (Cout, Cin, 3, 3)
// float32 (rounded after the phases' sums), b (Cout), y (N, Cout, 2H, 2W).
int UpsampleConv3x3BF16(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                        void *) {
  Geometry g;
  if (nparam != 4 || ndims[0] != 4 || !geometry(ndims[0], shapes[0], ndims[1], shapes[1], false, &g)) return 1;
  if (!is_dtype(dtypes, 0, "float32") || !is_dtype(dtypes, 1, "float32") || g.w % 16) return 1;
  if (!prediff_kernels::bf16_wanted()) return 3;
  try {
    upsample_convolve_bf16(static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                           static_cast<const float *>(params[2]), g, static_cast<float *>(params[3]));
  } catch (const std::bad_alloc &) {
    return 2;
  }
  return 0;
}

// Conv3x3Stride2 with bf16 operands. params: x (N, Cin, H, W) float32 with H, W even and W/2 a multiple of 16,
// w (Cout, Cin, 3, 3) uint16 (bf16 bits), b (Cout), y (N, Cout, H/2, W/2).
int Conv3x3Stride2BF16(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                       void *) {
  if (nparam != 4 || ndims[0] != 4 || ndims[1] != 4) return 1;
  if (!is_dtype(dtypes, 0, "float32") || !is_dtype(dtypes, 1, "uint16")) return 1;
  const int64_t *xs = shapes[0], *ws = shapes[1];
  if (xs[0] <= 0 || xs[1] <= 0 || xs[2] <= 0 || xs[3] <= 0 || xs[2] % 2 || xs[3] % 2 || (xs[3] / 2) % 16) return 1;
  if (ws[0] <= 0 || ws[1] != xs[1] || ws[2] != 3 || ws[3] != 3) return 1;
  if (!prediff_kernels::bf16_wanted()) return 3;
  Geometry g{xs[0], xs[1], ws[0], 1, xs[2] / 2, xs[3] / 2, 1, 4, xs[2] / 2 + 1, xs[3] / 2 + 1};
  try {
    convolve_stride2_bf16(static_cast<const float *>(params[0]), xs[2], xs[3],
                          static_cast<const uint16_t *>(params[1]), static_cast<const float *>(params[2]), g,
                          static_cast<float *>(params[3]));
  } catch (const std::bad_alloc &) {
    return 2;
  }
  return 0;
}

}  // extern "C"
