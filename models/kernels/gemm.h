// What gemm_kernels.cc offers the convolution source (conv_kernels.cc): the convolution's weight gradient as one
// blocked AVX-512 GEMM, dw = dy . im2col(x)^T, with the im2col matrix never built (its columns are packed straight
// from the zero-padded input).
#pragma once

#include <cstdint>

namespace prediff_kernels {

// Output positions of a 3x3(x3) convolution (t x h x w, w a multiple of 8) and the extent of its zero-padded input
// rows and planes (hp x wp per frame).
struct ConvGrid {
  int64_t t, h, w, hp, wp;
};

// dw (cout, rows) = sum over samples and output positions p of dy (batch, cout, positions)[p] times
// xpd[sample * xbs + row_offsets[r] + offset(p)], offset(p) = (t * hp + h) * wp + w: row r of dw is one (input
// channel, tap) pair, row_offsets[r] its channel's plane plus its tap's shift. Throws std::bad_alloc when scratch
// cannot be had. Needs AVX-512F (callers check `gemm_wanted()`).
void conv_weight_grad_gemm(const float *xpd, int64_t xbs, const int64_t *row_offsets, int64_t rows, const float *dy,
                           int64_t batch, int64_t cout, const ConvGrid &grid, float *dw);

}  // namespace prediff_kernels
