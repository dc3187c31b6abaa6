// Fused float32 CPU kernels for MindSpore `ops.Custom(func_type="aot")` (see models/kernels/library.py).
//
// MindSpore 2.10's CPU kernels for exact GELU, GroupNorm and LayerNorm run at a small fraction of memory bandwidth
// (GELU ~9 ns per element, mostly in erf). These loops read each input once, keep the per-group statistics in
// double precision, and vectorise (AVX2 + FMA, OpenMP). Every function follows the AOT calling convention:
//   int f(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream, void *extra)
// with the inputs first and the single output last in `params`. A non-zero return tells MindSpore the call failed.
#include <immintrin.h>

#include <algorithm>
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

// Phi(x) and phi(x) (standard normal cdf and pdf) with the same tail formula as gelu_exact: d/dx x Phi(x) needs both.
inline float gelu_derivative(float x) {
  float a = std::fabs(x);
  a = a < 10.0f ? a : 10.0f;
  const float t = 1.0f / std::fma(0.2316419f, a, 1.0f);
  float p = 1.330274429f;
  p = std::fma(p, t, -1.821255978f);
  p = std::fma(p, t, 1.781477937f);
  p = std::fma(p, t, -0.356563782f);
  p = std::fma(p, t, 0.319381530f);
  const float pdf = 0.3989422804014327f * exp_nonpositive(-0.5f * a * a);
  const float tail = pdf * p * t;
  const float cdf = x > 0.0f ? 1.0f - tail : tail;
  return std::fma(x, pdf, cdf);
}

inline float sigmoid(float v) {
  const float e = exp_nonpositive(-std::fabs(v));
  return (v >= 0.0f ? 1.0f : e) / (1.0f + e);
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

// Wellons' "lowbias32", the hash of the keyed dropout (prediff_models/keyed_dropout.py); wraps modulo 2^32.
inline uint32_t mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7FEB352Du;
  h ^= h >> 15;
  h *= 0x846CA68Bu;
  h ^= h >> 16;
  return h;
}

// The attention dropout of one (batch, cuboid, head, query) row: weight j of the row is kept when
// mix32(base + j + offset) >= threshold, base = flat index of the row's first element in the (B, N, heads, V, V)
// weights of the standard path, so both paths drop the same elements; kept weights are scaled by `scale`.
struct RowDropout {
  uint32_t offset, threshold;
  float scale;
  bool active() const { return threshold != 0u; }
  float factor(uint32_t base, int64_t j) const {
    return mix32(base + static_cast<uint32_t>(j) + offset) >= threshold ? scale : 0.0f;
  }
};

RowDropout row_dropout(const void *offset, const void *threshold) {
  RowDropout d;
  d.offset = *static_cast<const uint32_t *>(offset);
  d.threshold = *static_cast<const uint32_t *>(threshold);
  d.scale = static_cast<float>(1.0 / (1.0 - d.threshold / 4294967296.0));
  return d;
}

// Where the tokens of each cuboid are (shared by CuboidAttention and its gradient). qkv (B, T, H, W, 3C), bias
// (heads, V, V), meta as documented at CuboidAttention.
struct CuboidPlan {
  int64_t batch, dims[3], c, heads, hc, vol, cuboids, cub[3], dilated[3], counts[3];
  float scale;
  // rows[j] = flat token index (b, t, h, w) of position j of cuboid `job` = (b, n), or -1 for a padded position
  void cuboid_rows(int64_t job, int64_t *rows) const {
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
  }
  // exp(s_j - max s) for the V keys of query `q` (head h) in the cuboid whose token rows are `rows`, with
  // s_j = q . k_j * scale + bias_row[j] (a padded key scores its bias alone); returns the sum of the V values
  float row_exp_scores(const float *qkv, const float *bias_row, const int64_t *rows, const float *q, int64_t h,
                       float *out) const {
    const int64_t c3 = 3 * c;
    float top = -INFINITY;
    for (int64_t j = 0; j < vol; ++j) {
      float s = 0.0f;
      if (rows[j] >= 0) {
        const float *k = qkv + rows[j] * c3 + c + h * hc;
#pragma omp simd reduction(+ : s)
        for (int64_t d = 0; d < hc; ++d) s += q[d] * k[d];
      }
      s = s * scale + bias_row[j];
      out[j] = s;
      top = s > top ? s : top;
    }
    float total = 0.0f;
    for (int64_t j = 0; j < vol; ++j) {
      out[j] = exp_nonpositive(out[j] - top);
      total += out[j];
    }
    return total;
  }
};

// Fills `plan` from the shapes and meta; non-zero (the kernel's error code) when they do not fit together.
int plan_cuboids(const int64_t *qkv_shape, const int64_t *bias_shape, const float *meta, CuboidPlan *plan) {
  plan->batch = qkv_shape[0];
  const int64_t c3 = qkv_shape[4];
  plan->c = c3 / 3;
  plan->heads = static_cast<int64_t>(meta[0]);
  plan->scale = meta[1];
  for (int a = 0; a < 3; ++a) {
    plan->dims[a] = qkv_shape[1 + a];
    plan->cub[a] = static_cast<int64_t>(meta[2 + a]);
    plan->dilated[a] = meta[5 + a] != 0.0f;
    const int64_t padded = static_cast<int64_t>(meta[8 + a]);
    if (plan->cub[a] <= 0 || padded < plan->dims[a] || padded % plan->cub[a]) return 2;
    plan->counts[a] = padded / plan->cub[a];
  }
  if (c3 % 3 || plan->heads <= 0 || plan->c % plan->heads) return 3;
  plan->hc = plan->c / plan->heads;
  plan->vol = plan->cub[0] * plan->cub[1] * plan->cub[2];
  plan->cuboids = plan->counts[0] * plan->counts[1] * plan->counts[2];
  if (bias_shape[0] != plan->heads || bias_shape[1] != plan->vol || bias_shape[2] != plan->vol) return 4;
  return 0;
}

}  // namespace

extern "C" {

// The trainers' keyed dropout (prediff_models/keyed_dropout.py) on any float32 tensor: element i (row-major) is
// kept, times `scale`, when mix32(i + offset) >= threshold, else 0. Its gradient is the same map applied to the
// incoming gradient, so no mask is stored between the passes (MindSpore's compiled graphs kept about fifteen
// tensor-sized buffers per dropout of the standard formulation).
// params: x, offset (uint32 scalar), threshold (uint32 scalar), scale (float32 scalar), y (like x).
int KeyedDropoutApply(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 5) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const uint32_t offset = *static_cast<const uint32_t *>(params[1]);
  const uint32_t threshold = *static_cast<const uint32_t *>(params[2]);
  const float scale = *static_cast<const float *>(params[3]);
  float *y = static_cast<float *>(params[4]);
  const int64_t n = element_count(ndims[0], shapes[0]);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    y[i] = mix32(static_cast<uint32_t>(i) + offset) >= threshold ? x[i] * scale : 0.0f;
  }
  return 0;
}

// The sum of squares of every element, accumulated in double per block of 4096 floats. params: x (any shape),
// y (1). The optimizer's global gradient norm: MindSpore's square + reduce_sum took 0.59 s over the paper-size UNet's
// 137 M gradient values, a pass that memory bandwidth allows in a tenth of that.
int SumOfSquares(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const int64_t n = element_count(ndims[0], shapes[0]);
  constexpr int64_t kBlockFloats = 4096;
  const int64_t blocks = (n + kBlockFloats - 1) / kBlockFloats;
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * kBlockFloats, hi = std::min(n, lo + kBlockFloats);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = lo;
    for (; i + 16 <= hi; i += 16) {
      const __m256 a = _mm256_loadu_ps(x + i), c = _mm256_loadu_ps(x + i + 8);
      acc0 = _mm256_fmadd_ps(a, a, acc0);
      acc1 = _mm256_fmadd_ps(c, c, acc1);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_add_ps(acc0, acc1));
    double sum = 0.0;
    for (float v : lanes) sum += v;
    for (; i < hi; ++i) sum += double(x[i]) * x[i];
    total += sum;
  }
  static_cast<float *>(params[1])[0] = static_cast<float>(total);
  return 0;
}

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

// Gradient of GeluExact. params: x, dout (like x); output dx = dout * (Phi(x) + x phi(x)).
int GeluExactGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 3) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *dout = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[2]);
  const int64_t n = element_count(ndims[0], shapes[0]);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] = dout[i] * gelu_derivative(x[i]);
  return 0;
}

// Gradient of LayerNormLast. params: x (..., C), gamma (C), options (1: eps), dout (like x); outputs dx (like x),
// dgamma (C), dbeta (C). The row statistics are recomputed as the forward takes them. With xhat the normalised
// row and g = dout * gamma: dx = rstd (g - mean(g) - xhat mean(g xhat)); dgamma = sum dout xhat; dbeta = sum dout.
int LayerNormLastGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 7 || ndims[0] < 1) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]);
  const float eps = static_cast<const float *>(params[2])[0];
  const float *dout = static_cast<const float *>(params[3]);
  float *dx = static_cast<float *>(params[4]);
  float *dgamma = static_cast<float *>(params[5]);
  float *dbeta = static_cast<float *>(params[6]);
  const int64_t channels = shapes[0][ndims[0] - 1];
  const int64_t rows = element_count(ndims[0], shapes[0]) / channels;
  const int threads = omp_get_max_threads();  // per-thread partials, summed in thread order: deterministic
  float *partials = new float[2 * threads * channels]();
#pragma omp parallel num_threads(threads)
  {
    float *sum_gamma = partials + 2 * omp_get_thread_num() * channels;
    float *sum_beta = sum_gamma + channels;
    float *xhat = new float[channels];
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float *row = x + r * channels;
      const float *go = dout + r * channels;
      float *out = dx + r * channels;
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < channels; ++i) s += row[i];
      const float mean = s / channels;
      float s2 = 0.0f;
#pragma omp simd reduction(+ : s2)
      for (int64_t i = 0; i < channels; ++i) { const float d = row[i] - mean; s2 += d * d; }
      const float rstd = 1.0f / std::sqrt(s2 / channels + eps);
      float mean_g = 0.0f, mean_gx = 0.0f;
#pragma omp simd reduction(+ : mean_g, mean_gx)
      for (int64_t i = 0; i < channels; ++i) {
        xhat[i] = (row[i] - mean) * rstd;
        const float g = go[i] * gamma[i];
        mean_g += g;
        mean_gx += g * xhat[i];
        sum_gamma[i] += go[i] * xhat[i];
        sum_beta[i] += go[i];
      }
      mean_g /= channels;
      mean_gx /= channels;
#pragma omp simd
      for (int64_t i = 0; i < channels; ++i) out[i] = rstd * (go[i] * gamma[i] - mean_g - xhat[i] * mean_gx);
    }
    delete[] xhat;
  }
  for (int64_t i = 0; i < channels; ++i) {
    float g = 0.0f, b = 0.0f;
    for (int t = 0; t < threads; ++t) {
      g += partials[2 * t * channels + i];
      b += partials[(2 * t + 1) * channels + i];
    }
    dgamma[i] = g;
    dbeta[i] = b;
  }
  delete[] partials;
  return 0;
}

// Gradient of GroupNormSilu. params: x (B, C, ...), gamma (C), beta (C), options (as the forward), dout (like x);
// outputs dx (like x), dgamma (C), dbeta (C). Per (batch, group) the statistics are recomputed as the forward takes
// them; with SiLU, dout is first multiplied by silu'(pre) = s (1 + pre (1 - s)), s = sigmoid(pre), pre the affine
// output. Then as LayerNormLastGrad over the group: dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dout' gamma.
int GroupNormSiluGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 8 || ndims[0] < 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]);
  const float *beta = static_cast<const float *>(params[2]);
  const float *options = static_cast<const float *>(params[3]);
  const float *dout = static_cast<const float *>(params[4]);
  float *dx = static_cast<float *>(params[5]);
  float *dgamma = static_cast<float *>(params[6]);
  float *dbeta = static_cast<float *>(params[7]);
  const int64_t batch = shapes[0][0], channels = shapes[0][1];
  const int64_t spatial = element_count(ndims[0], shapes[0]) / (batch * channels);
  const int64_t groups = static_cast<int64_t>(options[0]);
  const double eps = options[1];
  const bool apply_silu = options[2] != 0.0f;
  if (groups <= 0 || channels % groups) return 2;
  const int64_t per_group = channels / groups;
  const int threads = omp_get_max_threads();  // per-thread partials, summed in thread order: deterministic
  double *partials = new double[2 * threads * channels]();
#pragma omp parallel num_threads(threads)
  {
    double *sum_gamma = partials + 2 * omp_get_thread_num() * channels;
    double *sum_beta = sum_gamma + channels;
#pragma omp for schedule(static)
    for (int64_t bg = 0; bg < batch * groups; ++bg) {
      const int64_t b = bg / groups, g = bg % groups;
      const int64_t offset = (b * channels + g * per_group) * spatial;
      const int64_t count = per_group * spatial;
      const float *xs = x + offset;
      double sum = 0.0;
      for (int64_t c = 0; c < per_group; ++c) {
        float s = 0.0f;
        const float *row = xs + c * spatial;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < spatial; ++i) s += row[i];
        sum += s;
      }
      const float mean = static_cast<float>(sum / count);
      double sum_sq = 0.0;
      for (int64_t c = 0; c < per_group; ++c) {
        float s2 = 0.0f;
        const float *row = xs + c * spatial;
#pragma omp simd reduction(+ : s2)
        for (int64_t i = 0; i < spatial; ++i) { const float d = row[i] - mean; s2 += d * d; }
        sum_sq += s2;
      }
      const float rstd = static_cast<float>(1.0 / std::sqrt(sum_sq / count + eps));
      // pass 1: g = dout' * gamma into dx, and the group's sums
      double total_g = 0.0, total_gx = 0.0;
      for (int64_t c = 0; c < per_group; ++c) {
        const int64_t ch = g * per_group + c;
        const float *row = xs + c * spatial;
        const float *go = dout + offset + c * spatial;
        float *gd = dx + offset + c * spatial;
        const float gm = gamma[ch], bt = beta[ch];
        float sg = 0.0f, sb = 0.0f, sgx = 0.0f;
#pragma omp simd reduction(+ : sg, sb, sgx)
        for (int64_t i = 0; i < spatial; ++i) {
          const float xhat = (row[i] - mean) * rstd;
          float d = go[i];
          if (apply_silu) {
            const float pre = std::fma(xhat, gm, bt);
            const float sig = sigmoid(pre);
            d *= sig * std::fma(pre, 1.0f - sig, 1.0f);
          }
          sg += d * xhat;
          sb += d;
          sgx += d * gm * xhat;
          gd[i] = d * gm;
        }
        sum_gamma[ch] += sg;
        sum_beta[ch] += sb;
        total_g += static_cast<double>(sb) * gm;
        total_gx += sgx;
      }
      const float mean_g = static_cast<float>(total_g / count), mean_gx = static_cast<float>(total_gx / count);
      // pass 2: dx = rstd (g - mean(g) - xhat mean(g xhat))
      for (int64_t c = 0; c < per_group; ++c) {
        const float *row = xs + c * spatial;
        float *gd = dx + offset + c * spatial;
#pragma omp simd
        for (int64_t i = 0; i < spatial; ++i) {
          const float xhat = (row[i] - mean) * rstd;
          gd[i] = rstd * (gd[i] - mean_g - xhat * mean_gx);
        }
      }
    }
  }
  for (int64_t i = 0; i < channels; ++i) {
    double g = 0.0, b = 0.0;
    for (int t = 0; t < threads; ++t) {
      g += partials[2 * t * channels + i];
      b += partials[(2 * t + 1) * channels + i];
    }
    dgamma[i] = static_cast<float>(g);
    dbeta[i] = static_cast<float>(b);
  }
  delete[] partials;
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
// token, and none of the reordered copies of q, k, v or of the output, is ever stored. offset and threshold
// (uint32 scalars) key the attention dropout (RowDropout); threshold 0 is no dropout.
int CuboidAttention(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 6 || ndims[0] != 5 || ndims[1] != 3) return 1;
  const float *qkv = static_cast<const float *>(params[0]);
  const float *bias = static_cast<const float *>(params[1]);
  const float *meta = static_cast<const float *>(params[2]);
  const RowDropout drop = row_dropout(params[3], params[4]);
  float *out = static_cast<float *>(params[5]);
  CuboidPlan plan;
  const int status = plan_cuboids(shapes[0], shapes[1], meta, &plan);
  if (status) return status;
  const int64_t c = plan.c, c3 = 3 * c, hc = plan.hc, vol = plan.vol, heads = plan.heads;
#pragma omp parallel
  {
    // per thread: the token rows of one cuboid (-1 = padding) and one row of scores
    int64_t *rows = new int64_t[vol];
    float *score = new float[vol];
    float *acc = new float[hc];
#pragma omp for schedule(dynamic, 1)
    for (int64_t job = 0; job < plan.batch * plan.cuboids; ++job) {
      plan.cuboid_rows(job, rows);
      for (int64_t h = 0; h < heads; ++h) {
        const float *bias_h = bias + h * vol * vol;
        for (int64_t i = 0; i < vol; ++i) {
          if (rows[i] < 0) continue;  // a padded query's output is cut away
          const float *q = qkv + rows[i] * c3 + h * hc;
          const float total = plan.row_exp_scores(qkv, bias_h + i * vol, rows, q, h, score);
          for (int64_t d = 0; d < hc; ++d) acc[d] = 0.0f;
          const uint32_t base = static_cast<uint32_t>(((job * heads + h) * vol + i) * vol);
          for (int64_t j = 0; j < vol; ++j) {
            if (rows[j] < 0) continue;
            const float p = drop.active() ? score[j] * drop.factor(base, j) : score[j];
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


// Gradient of CuboidAttention. params: qkv, bias, meta, offset, threshold (as the forward), dout (like its output);
// outputs dqkv (like qkv) and dbias (heads, V, V). Per (batch, cuboid, head) the probabilities P of every real query
// are recomputed from q, k and the bias (nothing of size V x V was kept by the forward). With M the dropout factors
// (0 or 1/(1-p); all 1 without dropout) and G_ij = M_ij (dout_i . v_j):  D_i = sum_j P_ij G_ij;
// dS_ij = P_ij (G_ij - D_i);  dq_i = scale sum_j dS_ij k_j;  dk_j = scale sum_i dS_ij q_i;
// dv_j = sum_i P_ij M_ij dout_i;  dbias[h, i, j] = sum over batch and cuboids of dS_ij.
// Padded keys (zero tokens) still take part in the softmax through their bias, so dbias sees them; they have no
// q, k, v of their own to receive a gradient. Every real token lies in exactly one cuboid, so the rows of dqkv a
// job writes belong to it alone; dbias is summed per thread and then across threads.
int CuboidAttentionGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 8 || ndims[0] != 5 || ndims[1] != 3 || ndims[5] != 5) return 1;
  const float *qkv = static_cast<const float *>(params[0]);
  const float *bias = static_cast<const float *>(params[1]);
  const float *meta = static_cast<const float *>(params[2]);
  const RowDropout drop = row_dropout(params[3], params[4]);
  const float *dout = static_cast<const float *>(params[5]);
  float *dqkv = static_cast<float *>(params[6]);
  float *dbias = static_cast<float *>(params[7]);
  CuboidPlan plan;
  const int status = plan_cuboids(shapes[0], shapes[1], meta, &plan);
  if (status) return status;
  for (int a = 0; a < 5; ++a)
    if (shapes[5][a] != shapes[0][a] - (a == 4 ? 2 * plan.c : 0)) return 5;
  const int64_t c = plan.c, c3 = 3 * c, hc = plan.hc, vol = plan.vol, heads = plan.heads;
  const float scale = plan.scale;
  const int64_t bias_size = heads * vol * vol;
  // per-thread partial sums of dbias, added in thread order afterwards: with a static schedule the sum is the same
  // in every run (a resumed training run repeats the uninterrupted one bit for bit)
  const int threads = omp_get_max_threads();
  float *partials = new float[threads * bias_size]();
#pragma omp parallel num_threads(threads)
  {
    int64_t *rows = new int64_t[vol];
    float *prob = new float[vol * vol];
    float *dscore = new float[vol * vol];
    float *mask = new float[vol * vol];
    float *local_dbias = partials + omp_get_thread_num() * bias_size;
#pragma omp for schedule(static)
    for (int64_t job = 0; job < plan.batch * plan.cuboids; ++job) {
      plan.cuboid_rows(job, rows);
      for (int64_t j = 0; j < vol; ++j) {  // this cuboid's dk and dv rows start at zero; dq is written whole
        if (rows[j] < 0) continue;
        float *g = dqkv + rows[j] * c3;
        for (int64_t d = c; d < c3; ++d) g[d] = 0.0f;
      }
      for (int64_t h = 0; h < heads; ++h) {
        const float *bias_h = bias + h * vol * vol;
        float *dbias_h = local_dbias + h * vol * vol;
        for (int64_t i = 0; i < vol; ++i) {
          if (rows[i] < 0) continue;
          const float *q = qkv + rows[i] * c3 + h * hc;
          const float *go = dout + rows[i] * c + h * hc;
          const uint32_t base = static_cast<uint32_t>(((job * heads + h) * vol + i) * vol);
          float *p = prob + i * vol;
          float *m = mask + i * vol;
          const float total = plan.row_exp_scores(qkv, bias_h + i * vol, rows, q, h, p);
          const float inv = 1.0f / total;
          float *ds = dscore + i * vol;
          float dot = 0.0f;
          for (int64_t j = 0; j < vol; ++j) {
            p[j] *= inv;
            m[j] = drop.active() ? drop.factor(base, j) : 1.0f;
            float dp = 0.0f;
            if (rows[j] >= 0 && m[j] != 0.0f) {
              const float *v = qkv + rows[j] * c3 + 2 * c + h * hc;
#pragma omp simd reduction(+ : dp)
              for (int64_t d = 0; d < hc; ++d) dp += go[d] * v[d];
            }
            ds[j] = dp * m[j];
            dot += p[j] * ds[j];
          }
          for (int64_t j = 0; j < vol; ++j) {
            ds[j] = p[j] * (ds[j] - dot);
            dbias_h[i * vol + j] += ds[j];
          }
          // dq_i
          float *gq = dqkv + rows[i] * c3 + h * hc;
          for (int64_t d = 0; d < hc; ++d) gq[d] = 0.0f;
          for (int64_t j = 0; j < vol; ++j) {
            if (rows[j] < 0) continue;
            const float w = ds[j] * scale;
            const float *k = qkv + rows[j] * c3 + c + h * hc;
#pragma omp simd
            for (int64_t d = 0; d < hc; ++d) gq[d] = std::fma(w, k[d], gq[d]);
          }
        }
        // dk_j and dv_j, key by key
        for (int64_t j = 0; j < vol; ++j) {
          if (rows[j] < 0) continue;
          float *gk = dqkv + rows[j] * c3 + c + h * hc;
          float *gv = dqkv + rows[j] * c3 + 2 * c + h * hc;
          for (int64_t i = 0; i < vol; ++i) {
            if (rows[i] < 0) continue;
            const float w = dscore[i * vol + j] * scale, pij = prob[i * vol + j] * mask[i * vol + j];
            const float *q = qkv + rows[i] * c3 + h * hc;
            const float *go = dout + rows[i] * c + h * hc;
#pragma omp simd
            for (int64_t d = 0; d < hc; ++d) {
              gk[d] = std::fma(w, q[d], gk[d]);
              gv[d] = std::fma(pij, go[d], gv[d]);
            }
          }
        }
      }
    }
    delete[] rows;
    delete[] prob;
    delete[] dscore;
    delete[] mask;
  }
  for (int64_t i = 0; i < bias_size; ++i) {
    float total = 0.0f;
    for (int t = 0; t < threads; ++t) total += partials[t * bias_size + i];
    dbias[i] = total;
  }
  delete[] partials;
  return 0;
}

}  // extern "C"
