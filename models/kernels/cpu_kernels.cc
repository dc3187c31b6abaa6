// Fused float32 CPU kernels for MindSpore `ops.Custom(func_type="aot")` (see models/kernels/library.py).
//
// MindSpore 2.10's CPU kernels for exact GELU, GroupNorm and LayerNorm run at a small fraction of memory bandwidth
// (GELU ~9 ns per element, mostly in erf). These loops read each input once, keep the per-group statistics in
// double precision, and vectorise (AVX2 + FMA, OpenMP). Every function follows the AOT calling convention:
//   int f(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream, void *extra)
// with the inputs first and the single output last in `params`. A non-zero return tells MindSpore the call failed.
#include <cmath>
#include <cstdint>

#include <omp.h>

namespace {

int64_t element_count(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

// exp(v) for v in [-88, 0]: v = k ln2 + r, |r| <= ln2/2, e^r by a degree-6 Taylor polynomial (relative error
// below 2e-7), 2^k assembled in the exponent bits. Branch-free so that the loops calling it vectorise.
inline float exp_nonpositive(float v) {
  v = v > -87.0f ? v : -87.0f;  // ternaries, not fmin/fmax: those block vectorisation (NaN rules)
  // round to nearest by adding and removing 1.5 * 2^23 (vectorises, unlike nearbyint)
  const float k = (v * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = std::fma(k, -0.693145751953125f, std::fma(k, -1.428606765330187e-06f, v));
  float p = 1.0f / 720.0f;
  p = std::fma(p, r, 1.0f / 120.0f);
  p = std::fma(p, r, 1.0f / 24.0f);
  p = std::fma(p, r, 1.0f / 6.0f);
  p = std::fma(p, r, 0.5f);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}

// Exact-form GELU, x * Phi(x), with the upper normal tail 1 - Phi(a) = phi(a) * P(t), t = 1 / (1 + 0.2316419 a)
// (Abramowitz & Stegun 26.2.17, absolute error below 7.5e-8, far inside float32 rounding of the product).
// Written as relu(x) - |x| * (1 - Phi(|x|)), which holds for both signs of x.
inline float gelu_exact(float x) {
  float a = std::fabs(x);
  a = a < 10.0f ? a : 10.0f;  // beyond 10 the tail is below 1e-23: clamping keeps exp in range
  const float t = 1.0f / std::fma(0.2316419f, a, 1.0f);
  float p = 1.330274429f;
  p = std::fma(p, t, -1.821255978f);
  p = std::fma(p, t, 1.781477937f);
  p = std::fma(p, t, -0.356563782f);
  p = std::fma(p, t, 0.319381530f);
  const float tail = 0.3989422804014327f * exp_nonpositive(-0.5f * a * a) * p * t;
  return (x > 0.0f ? x : 0.0f) - std::fabs(x) * tail;
}

// v * sigmoid(v) through e = exp(-|v|), so that exp never overflows and the loop stays branch-free.
inline float silu(float v) {
  const float e = exp_nonpositive(-std::fabs(v));
  return v * (v >= 0.0f ? 1.0f : e) / (1.0f + e);
}

void gelu_range(const float *__restrict x, float *__restrict y, int64_t begin, int64_t end) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) y[i] = gelu_exact(x[i]);
}

}  // namespace

extern "C" {

// GELU (erf form). params: x (any shape), y (same shape).
int GeluExact(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[1]);
  const int64_t n = element_count(ndims[0], shapes[0]);
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
    gelu_range(x, y, n * id / threads, n * (id + 1) / threads);
  }
  return 0;
}

// GroupNorm over (B, C, *spatial) with per-channel affine and an optional SiLU after it.
// params: x (B, C, ...), gamma (C), beta (C), options (3: groups, eps, apply_silu as float), y (like x).
int GroupNormSilu(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 5 || ndims[0] < 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]);
  const float *beta = static_cast<const float *>(params[2]);
  const float *options = static_cast<const float *>(params[3]);
  float *y = static_cast<float *>(params[4]);
  const int64_t batch = shapes[0][0], channels = shapes[0][1];
  const int64_t spatial = element_count(ndims[0], shapes[0]) / (batch * channels);
  const int64_t groups = static_cast<int64_t>(options[0]);
  const double eps = options[1];
  const bool apply_silu = options[2] != 0.0f;
  if (groups <= 0 || channels % groups) return 2;
  const int64_t per_group = channels / groups;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t bg = 0; bg < batch * groups; ++bg) {
    const int64_t b = bg / groups, g = bg % groups;
    const int64_t offset = (b * channels + g * per_group) * spatial;
    const int64_t count = per_group * spatial;
    const float *xs = x + offset;
    // two passes (mean, then squared deviations): E[x^2] - mean^2 loses the variance when |mean| >> std;
    // float partial sums per channel row vectorise, their totals are combined in double
    double sum = 0.0;
    for (int64_t c = 0; c < per_group; ++c) {
      float s = 0.0f;
      const float *row = xs + c * spatial;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < spatial; ++i) s += row[i];
      sum += s;
    }
    const double mean = sum / count;
    const float mean_f = static_cast<float>(mean);
    double sum_sq = 0.0;
    for (int64_t c = 0; c < per_group; ++c) {
      float s2 = 0.0f;
      const float *row = xs + c * spatial;
#pragma omp simd reduction(+ : s2)
      for (int64_t i = 0; i < spatial; ++i) { const float d = row[i] - mean_f; s2 += d * d; }
      sum_sq += s2;
    }
    const double rstd = 1.0 / std::sqrt(sum_sq / count + eps);
    for (int64_t c = 0; c < per_group; ++c) {
      const int64_t ch = g * per_group + c;
      const float scale = static_cast<float>(gamma[ch] * rstd);
      const float shift = static_cast<float>(beta[ch] - mean * gamma[ch] * rstd);
      const float *row = xs + c * spatial;
      float *out = y + offset + c * spatial;
      if (apply_silu) {
#pragma omp simd
        for (int64_t i = 0; i < spatial; ++i) {
          out[i] = silu(std::fma(row[i], scale, shift));
        }
      } else {
#pragma omp simd
        for (int64_t i = 0; i < spatial; ++i) out[i] = std::fma(row[i], scale, shift);
      }
    }
  }
  return 0;
}

// LayerNorm over the last axis with affine. params: x (..., C), gamma (C), beta (C), options (1: eps), y (like x).
int LayerNormLast(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 5 || ndims[0] < 1) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]);
  const float *beta = static_cast<const float *>(params[2]);
  const float eps = static_cast<const float *>(params[3])[0];
  float *y = static_cast<float *>(params[4]);
  const int64_t channels = shapes[0][ndims[0] - 1];
  const int64_t rows = element_count(ndims[0], shapes[0]) / channels;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float *row = x + r * channels;
    float *out = y + r * channels;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < channels; ++i) s += row[i];
    const float mean = s / channels;
    float s2 = 0.0f;
#pragma omp simd reduction(+ : s2)
    for (int64_t i = 0; i < channels; ++i) { const float d = row[i] - mean; s2 += d * d; }
    const float rstd = 1.0f / std::sqrt(s2 / channels + eps);
#pragma omp simd
    for (int64_t i = 0; i < channels; ++i) out[i] = std::fma((row[i] - mean) * rstd, gamma[i], beta[i]);
  }
  return 0;
}

// Batched 2-D transpose through 32 x 32 tiles: x (B, M, N) -> y (B, N, M).
static void transpose_batched(const float *__restrict x, float *__restrict y, int64_t batch, int64_t m, int64_t n) {
  constexpr int64_t tile = 32;
  const int64_t tiles_m = (m + tile - 1) / tile, tiles_n = (n + tile - 1) / tile;
#pragma omp parallel for schedule(static)
  for (int64_t job = 0; job < batch * tiles_m * tiles_n; ++job) {
    const int64_t b = job / (tiles_m * tiles_n), rest = job % (tiles_m * tiles_n);
    const int64_t i0 = (rest / tiles_n) * tile, j0 = (rest % tiles_n) * tile;
    const int64_t i1 = i0 + tile < m ? i0 + tile : m, j1 = j0 + tile < n ? j0 + tile : n;
    const float *xb = x + b * m * n;
    float *yb = y + b * m * n;
    for (int64_t j = j0; j < j1; ++j)
      for (int64_t i = i0; i < i1; ++i) yb[j * m + i] = xb[i * n + j];
  }
}

// (B, d1, ..., dk, C) -> (B, C, d1, ..., dk). params: x, y.
int ToChannelsFirst(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 2 || ndims[0] < 3) return 1;
  const int64_t batch = shapes[0][0], channels = shapes[0][ndims[0] - 1];
  const int64_t inner = element_count(ndims[0], shapes[0]) / (batch * channels);
  transpose_batched(static_cast<const float *>(params[0]), static_cast<float *>(params[1]), batch, inner, channels);
  return 0;
}

// (B, C, d1, ..., dk) -> (B, d1, ..., dk, C). params: x, y.
int ToChannelsLast(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 2 || ndims[0] < 3) return 1;
  const int64_t batch = shapes[0][0], channels = shapes[0][1];
  const int64_t inner = element_count(ndims[0], shapes[0]) / (batch * channels);
  transpose_batched(static_cast<const float *>(params[0]), static_cast<float *>(params[1]), batch, channels, inner);
  return 0;
}

// Cuboid self-attention core (Earthformer), inference, on the natural token layout.
// params: qkv (B, T, H, W, 3C) = [q | k | v] per token, each C = heads x hc, from one projection of the normalised
// tokens (no bias, q not yet scaled); bias (heads, V, V) relative-position bias; meta (11 floats: heads, scale,
// cuboid t/h/w, strategy t/h/w (0 local, 1 dilated), padded T/H/W); out (B, T, H, W, C).
// The tokens are cut into cuboids of V = ct*ch*cw positions of the zero-padded (T', H', W') grid; along an axis of
// padded length L and cuboid size b, local puts offset o of cuboid i at i*b + o and dilated at o*(L/b) + i. Padded
// positions stand for zero tokens: their q, k, v are 0, so as keys they score only their bias and add nothing.
// Each (batch, cuboid, head) is one softmax(q k^T * scale + bias) v over its V tokens; nothing of size V x V per
// token, and none of the reordered copies of q, k, v or of the output, is ever stored.
int CuboidAttention(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 4 || ndims[0] != 5 || ndims[1] != 3) return 1;
  const float *qkv = static_cast<const float *>(params[0]);
  const float *bias = static_cast<const float *>(params[1]);
  const float *meta = static_cast<const float *>(params[2]);
  float *out = static_cast<float *>(params[3]);
  const int64_t batch = shapes[0][0], dims[3] = {shapes[0][1], shapes[0][2], shapes[0][3]};
  const int64_t c3 = shapes[0][4], c = c3 / 3;
  const int64_t heads = static_cast<int64_t>(meta[0]);
  const float scale = meta[1];
  int64_t cub[3], dilated[3], padded[3], counts[3];
  for (int a = 0; a < 3; ++a) {
    cub[a] = static_cast<int64_t>(meta[2 + a]);
    dilated[a] = meta[5 + a] != 0.0f;
    padded[a] = static_cast<int64_t>(meta[8 + a]);
    if (cub[a] <= 0 || padded[a] < dims[a] || padded[a] % cub[a]) return 2;
    counts[a] = padded[a] / cub[a];
  }
  if (c3 % 3 || heads <= 0 || c % heads) return 3;
  const int64_t hc = c / heads, vol = cub[0] * cub[1] * cub[2];
  const int64_t cuboids = counts[0] * counts[1] * counts[2];
  if (shapes[1][0] != heads || shapes[1][1] != vol || shapes[1][2] != vol) return 4;
#pragma omp parallel
  {
    // per thread: the token rows of one cuboid (-1 = padding) and one row of scores
    int64_t *rows = new int64_t[vol];
    float *score = new float[vol];
    float *acc = new float[hc];
#pragma omp for schedule(dynamic, 1)
    for (int64_t job = 0; job < batch * cuboids; ++job) {
      const int64_t b = job / cuboids, n = job % cuboids;
      const int64_t idx[3] = {n / (counts[1] * counts[2]), (n / counts[2]) % counts[1], n % counts[2]};
      for (int64_t j = 0; j < vol; ++j) {
        const int64_t off[3] = {j / (cub[1] * cub[2]), (j / cub[2]) % cub[1], j % cub[2]};
        int64_t pos[3];
        bool real = true;
        for (int a = 0; a < 3; ++a) {
          pos[a] = dilated[a] ? off[a] * counts[a] + idx[a] : idx[a] * cub[a] + off[a];
          real = real && pos[a] < dims[a];
        }
        rows[j] = real ? ((b * dims[0] + pos[0]) * dims[1] + pos[1]) * dims[2] + pos[2] : -1;
      }
      for (int64_t h = 0; h < heads; ++h) {
        const float *bias_h = bias + h * vol * vol;
        for (int64_t i = 0; i < vol; ++i) {
          if (rows[i] < 0) continue;  // a padded query's output is cut away
          const float *q = qkv + rows[i] * c3 + h * hc;
          float top = -INFINITY;
          for (int64_t j = 0; j < vol; ++j) {
            float s = 0.0f;
            if (rows[j] >= 0) {
              const float *k = qkv + rows[j] * c3 + c + h * hc;
#pragma omp simd reduction(+ : s)
              for (int64_t d = 0; d < hc; ++d) s += q[d] * k[d];
            }
            s = s * scale + bias_h[i * vol + j];
            score[j] = s;
            top = s > top ? s : top;
          }
          float total = 0.0f;
          for (int64_t j = 0; j < vol; ++j) {
            score[j] = exp_nonpositive(score[j] - top);
            total += score[j];
          }
          for (int64_t d = 0; d < hc; ++d) acc[d] = 0.0f;
          for (int64_t j = 0; j < vol; ++j) {
            if (rows[j] < 0) continue;
            const float p = score[j];
            const float *v = qkv + rows[j] * c3 + 2 * c + h * hc;
#pragma omp simd
            for (int64_t d = 0; d < hc; ++d) acc[d] = std::fma(p, v[d], acc[d]);
          }
          float *o = out + rows[i] * c + h * hc;
          const float inv = 1.0f / total;
#pragma omp simd
          for (int64_t d = 0; d < hc; ++d) o[d] = acc[d] * inv;
        }
      }
    }
    delete[] rows;
    delete[] score;
    delete[] acc;
  }
  return 0;
}

}  // extern "C"
