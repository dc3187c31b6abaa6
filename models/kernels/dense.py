"""`Dense`: `nn.Dense` whose products run prediff's own GEMM kernels on AVX-512 CPUs (and, in inference at bf16
precision, the bf16 GEMM: `precision`), and whose bias gradient is a matmul with a row of ones instead of
MindSpore's `BiasAddGrad`.

On the AVX-512 machines MindSpore's oneDNN is capped at AVX2, and at the paper-size UNet's shapes its matmul runs
at 80-200 GFLOP/s depending on the shape and on which operand is transposed (the weight gradient ∂yᵀ·x of the FFN's
widening layer at 80-90). Where the CPU has AVX-512F (and `PREDIFF_KERNEL_AVX512` is not 0) the layer's three
products — y = x·wᵀ + b, ∂x = ∂y·w, ∂w = ∂yᵀ·x — run `gemm_kernels.cc` (one blocked 12 × 32 AVX-512 GEMM that
reads transposed operands through its packing; 160-205 GFLOP/s on the same shapes, `benchmarks/gemm.py`).
Elsewhere, or with `PREDIFF_KERNEL_GEMM=0`, the products are MindSpore's matmuls.

On the CPU backend MindSpore's `BiasAddGrad` sums the incoming gradient over its rows at a small fraction of memory
bandwidth: 13 ms for the (3328, 1024) gradient of the paper-size UNet's first FFN layer at batch 1, against 0.4 ms
for `ones(1, rows) @ dy` (oneDNN's matmul) — 0.86 s of the UNet's 18.9 s forward + backward. The parameters
(`weight` (out, in), `bias` (out)) and every value are those of `nn.Dense` (to float32 rounding); on other device
targets, with an activation, or without a bias and without the GEMM kernels, it is `nn.Dense` itself.
"""
from __future__ import annotations

import os

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from mindspore.common import dtype as mstype

from .bf16 import keep_bf16_weight
from .library import custom_op, library_path, uses_avx512
from .stash import LOAD, OFF, STORE, store_op, stored


def _forward_shape(x, w, *rest):
    return [x[0], w[0]]


def _input_grad_shape(dy, w):
    return [dy[0], w[1]]


def _weight_grad_shape(dy, x):
    return [dy[1], x[1]]


def _bias_grad(dout):
    """1ᵀ·∂y (see the module docstring)."""
    return ops.matmul(ops.ones((1, dout.shape[0]), dout.dtype), dout).reshape(dout.shape[1:])


def gemm_enabled() -> bool:
    """Whether linear layers run the GEMM kernels here: kernel library, AVX-512F, neither `PREDIFF_KERNEL_AVX512=0`
    nor `PREDIFF_KERNEL_GEMM=0`. The convolution kernel's weight gradient follows the same rule (`gemm_wanted()` in
    kernel_support.h)."""
    return uses_avx512() and os.environ.get("PREDIFF_KERNEL_GEMM", "1")[:1] != "0"


def dense_grads():
    """`grads(x (rows, in), w (out, in), dout (rows, out)) -> (∂x, ∂w, ∂b)` of the linear layer: on the GEMM kernels
    where they run (`gemm_enabled`), else on MindSpore's matmuls; the bias gradient is the ones-row matmul."""
    if gemm_enabled():
        input_grad = custom_op("DenseInputGrad", out_shape=_input_grad_shape)
        weight_grad = custom_op("DenseWeightGrad", out_shape=_weight_grad_shape)
    else:
        matmul, matmul_ta = ops.MatMul(), ops.MatMul(transpose_a=True)

        def input_grad(dout, w):
            return matmul(dout, w)

        def weight_grad(dout, x):
            return matmul_ta(dout, x)

    def grads(x, w, dout):
        return input_grad(dout, w), weight_grad(dout, x), _bias_grad(dout)

    return grads


def _gemm_forward(has_bias: bool):
    """The forward op (`DenseForward`, or `DenseForwardNoBias`) with the GEMM gradients as bprop; None where the
    GEMM kernels do not run."""
    if not gemm_enabled():
        return None
    grads = dense_grads()
    if has_bias:
        def bprop(x, w, b, out, dout):
            return grads(x, w, dout)

        return custom_op("DenseForward", bprop, out_shape=_forward_shape)

    def bprop(x, w, out, dout):  # noqa: F811 (one of the two is built)
        dx, dw, _ = grads(x, w, dout)
        return dx, dw

    return custom_op("DenseForwardNoBias", bprop, out_shape=_forward_shape)


#: output columns per panel of the bf16 GEMM's packed weight (its micro-tile width, kNR in gemm_kernels.cc)
PANEL_COLUMNS = 32


def pack_bf16_panels(bits: np.ndarray) -> np.ndarray:
    """A linear layer's bf16 weight (out, in) uint16 → wᵀ as the bf16 GEMM's column panels, (⌈out/32⌉, ⌈in/2⌉, 32)
    uint32: word [q, r, j] holds w[32q + j, 2r] in its low half and w[32q + j, 2r + 1] in its high half (zeros
    beyond out and in) — the layout the kernel's micro-tile reads, made once per layer instead of on every call."""
    out, k = bits.shape
    panels, words = -(-out // PANEL_COLUMNS), -(-k // 2)
    padded = np.zeros((panels * PANEL_COLUMNS, 2 * words), np.uint32)
    padded[:out, :k] = bits
    pairs = padded[:, 0::2] | (padded[:, 1::2] << 16)  # (out', words)
    return np.ascontiguousarray(pairs.reshape(panels, PANEL_COLUMNS, words).transpose(0, 2, 1))


def bf16_dense_op(has_bias: bool, out_features: int):
    """The bf16 forward (`DenseForwardBF16`, or `DenseForwardBF16NoBias`): x (rows, in) float32, the weight as
    `pack_bf16_panels` gives it, [b], → (rows, out_features) float32; inference only (no gradient). None without
    the kernel library."""
    def shape(x, *rest):
        return [x[0], out_features]

    return custom_op("DenseForwardBF16" if has_bias else "DenseForwardBF16NoBias", out_shape=shape)


def _dense_shape(x, w, *rest):
    return [x[0], w[0]]


def dense_load_op(has_bias: bool):
    """`StashLoadDense[Bias](x (rows, in), w (out, in), [b (out)], slot)` → the stored (rows, out) output, with the
    linear layer's gradients: ∂x = ∂y·w, ∂w = ∂yᵀ·x, ∂b = 1ᵀ·∂y (as `kernels.Dense`: on its GEMM kernels where they
    run, else MindSpore's matmuls)."""
    grads = dense_grads()
    if has_bias:
        def bprop(x, w, b, slot, out, dout):
            dx, dw, db = grads(x, w, dout)
            return dx, dw, db, ops.zeros_like(slot)

        return custom_op("StashLoadDenseBias", bprop, out_shape=_dense_shape)

    def bprop(x, w, slot, out, dout):  # noqa: F811 (one of the two is built)
        dx, dw, _ = grads(x, w, dout)
        return dx, dw, ops.zeros_like(slot)

    return custom_op("StashLoadDense", bprop, out_shape=_dense_shape)


class _BiasAdd(nn.Cell):
    """(rows, C) + bias (C), with the bias gradient as a ones-row matmul."""

    def construct(self, x, bias):
        return ops.bias_add(x, bias)

    def bprop(self, x, bias, out, dout):
        return dout, _bias_grad(dout)


class Dense(nn.Dense):
    """`nn.Dense` on (..., in) → (..., out). Without activation, on CPU with the kernel library, it can also keep
    its output for a later gradient graph (`stash.ActivationStash`), with or without a bias."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        plain = self.activation is None and ms.get_context("device_target") == "CPU"
        self._gemm = _gemm_forward(self.has_bias) if plain else None
        self.fused = plain and (self.has_bias or self._gemm is not None)
        self._bias_add = _BiasAdd() if self.fused and self.has_bias else None
        self.stash_mode = OFF
        self._store = self._load = self.stash_slot = None
        self.bf16, self._bf16_op = False, None

    def set_precision(self, precision: str) -> bool:
        """"bf16": in inference, the product runs the bf16 GEMM on a bf16 copy of the weight made now (see
        `precision`); "fp32": float32 again. Returns whether the layer now computes in bf16."""
        self.bf16 = False
        if precision == "bf16" and self.activation is None and ms.get_context("device_target") == "CPU":
            self._bf16_op = self._bf16_op or bf16_dense_op(self.has_bias, self.out_channels)
            if self._bf16_op is not None:
                keep_bf16_weight(self, pack_bf16_panels)
                self.bf16 = True
        return self.bf16

    def can_stash(self) -> bool:
        return self.activation is None and library_path() is not None

    def enable_stash(self) -> None:
        if self._store is None:
            self._store, self._load = store_op(), dense_load_op(self.has_bias)

    def construct(self, x):
        if self.stash_mode == LOAD:
            shape = x.shape
            rows = x.reshape(-1, shape[-1])
            if self.has_bias:
                y = self._load(rows, self.weight, self.bias, self.stash_slot)
            else:
                y = self._load(rows, self.weight, self.stash_slot)
            return y.reshape(shape[:-1] + (y.shape[-1],))
        y = self._plain(x)
        if self.stash_mode == STORE:
            y = stored(self._store, y, self.stash_slot)
        return y

    def _plain(self, x):
        if self.bf16 and not self.training and x.dtype == mstype.float32:
            shape = x.shape
            rows = x.reshape(-1, shape[-1])
            if self.has_bias:
                y = self._bf16_op(rows, self.weight_bf16, self.bias)
            else:
                y = self._bf16_op(rows, self.weight_bf16)
            return y.reshape(shape[:-1] + (y.shape[-1],))
        if not self.fused:
            return super().construct(x)
        shape = x.shape
        rows = x.reshape(-1, shape[-1])
        if self._gemm is not None and x.dtype == mstype.float32:
            y = self._gemm(rows, self.weight, self.bias) if self.has_bias else self._gemm(rows, self.weight)
        elif not self.has_bias:
            return super().construct(x)
        else:
            y = self._bias_add(self.matmul(rows, self.weight), self.bias)
        return y.reshape(shape[:-1] + (y.shape[-1],))
