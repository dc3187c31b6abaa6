"""Drop-in GELU, GroupNorm(+SiLU), LayerNorm and channels-first/last transpose cells that run the fused CPU kernels
in inference, and the cuboid-attention core (`CuboidAttentionCore`, in inference and training, with a gradient
kernel).

Each cell keeps the parameter names of the MindSpore layer it replaces (`gamma`, `beta`), so the official
parameter tree and the weight conversion are unchanged. While a cell is in training mode, or when the kernel
library is unavailable (`library.library_path()` is None), it runs MindSpore's own ops, so training and the
gradients it needs are exactly those of the standard layers. In inference the fused kernel runs; its gradient
(needed for knowledge-alignment guidance, which differentiates the alignment network in eval mode) is the
analytic one written below with standard ops, recomputing the statistics from the input. The kernels are float32
only; other dtypes take the standard path.
"""
from __future__ import annotations

import math

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore.common import dtype as mstype

from .library import library_path

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _custom(function: str, bprop=None, out_shape=lambda x, *rest: x, out_dtype=lambda x, *rest: x):
    path = library_path()
    if path is None:
        return None
    return ops.Custom(f"{path}:{function}", out_shape=out_shape, out_dtype=out_dtype, func_type="aot", bprop=bprop)


def _gelu_bprop(x, out, dout):
    """d/dx x·Φ(x) = Φ(x) + x·φ(x)."""
    cdf = 0.5 * (1.0 + ops.erf(x * _INV_SQRT2))
    pdf = ops.exp(-0.5 * x * x) * _INV_SQRT_2PI
    return (dout * (cdf + x * pdf),)


def _standardized(x, axis, eps):
    """(x̂, rstd): x normalised to zero mean and unit variance over `axis`, and 1/sqrt(var + eps) (kept dims)."""
    centred = x - x.mean(axis=axis, keep_dims=True)
    rstd = ops.rsqrt((centred * centred).mean(axis=axis, keep_dims=True) + eps)
    return centred * rstd, rstd


def _normalized_grad(xhat, rstd, g, axes):
    """Input gradient of y = x̂·γ + β given g = dy·γ, with x̂ = (x − μ)·rstd normalised over `axes`."""
    mean_g = g.mean(axis=axes, keep_dims=True)
    mean_gx = (g * xhat).mean(axis=axes, keep_dims=True)
    return rstd * (g - mean_g - xhat * mean_gx)


class Gelu(nn.Cell):
    """Exact (erf) GELU, any shape."""

    def __init__(self):
        super().__init__()
        self._kernel = _custom("GeluExact", _gelu_bprop)
        self.fused = self._kernel is not None

    def construct(self, x):
        if self.training or not self.fused or x.dtype != mstype.float32:
            return ops.gelu(x, approximate="none")
        return self._kernel(x)


class _GroupNormKernel(nn.Cell):
    """The fused kernel with its analytic gradient as a Cell `bprop`: the constants live on the instance, so two
    norms with different groups/eps/SiLU never share a compiled gradient."""

    def __init__(self, kernel, groups: int, eps: float, silu: bool):
        super().__init__()
        self.kernel, self.groups, self.eps, self.silu = kernel, groups, eps, silu
        self.options = Tensor(np.array([groups, eps, float(silu)], np.float32))

    def construct(self, x, gamma, beta):
        return self.kernel(x, gamma, beta, self.options)

    def bprop(self, x, gamma, beta, out, dout):
        shape = x.shape
        xhat_g, rstd = _standardized(x.reshape(shape[0], self.groups, -1), 2, self.eps)
        xhat = xhat_g.reshape(shape)
        channel = (1, -1) + (1,) * (len(shape) - 2)
        if self.silu:
            pre = xhat * gamma.reshape(channel) + beta.reshape(channel)
            sig = ops.sigmoid(pre)
            dout = dout * sig * (1.0 + pre * (1.0 - sig))
        reduce_axes = (0,) + tuple(range(2, len(shape)))
        dgamma = (dout * xhat).sum(axis=reduce_axes)
        dbeta = dout.sum(axis=reduce_axes)
        g = (dout * gamma.reshape(channel)).reshape(shape[0], self.groups, -1)
        dx = _normalized_grad(xhat_g, rstd, g, 2).reshape(shape)
        return dx, dgamma, dbeta


class GroupNorm(nn.GroupNorm):
    """`nn.GroupNorm` on (B, C, *spatial), optionally followed by SiLU in the same pass (`silu=True`)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, silu: bool = False):
        super().__init__(num_groups, num_channels, eps=eps)
        self.silu = silu
        kernel = _custom("GroupNormSilu")
        self.fused = kernel is not None
        self._fused_norm = _GroupNormKernel(kernel, int(num_groups), float(eps), bool(silu)) if self.fused else None

    def construct(self, x):
        if self.training or not self.fused or x.dtype != mstype.float32:
            out = super().construct(x)
            return ops.silu(out) if self.silu else out
        return self._fused_norm(x, self.gamma, self.beta)


class _LayerNormKernel(nn.Cell):
    def __init__(self, kernel, eps: float):
        super().__init__()
        self.kernel, self.eps = kernel, eps
        self.options = Tensor(np.array([eps], np.float32))

    def construct(self, x, gamma, beta):
        return self.kernel(x, gamma, beta, self.options)

    def bprop(self, x, gamma, beta, out, dout):
        xhat, rstd = _standardized(x, -1, self.eps)
        rows = (-1, x.shape[-1])
        dgamma = (dout * xhat).reshape(rows).sum(axis=0)
        dbeta = dout.reshape(rows).sum(axis=0)
        return _normalized_grad(xhat, rstd, dout * gamma, -1), dgamma, dbeta


class LayerNorm(nn.LayerNorm):
    """`nn.LayerNorm` over the last axis only."""

    def __init__(self, channels: int, epsilon: float = 1e-5):
        super().__init__((channels,), epsilon=epsilon)
        kernel = _custom("LayerNormLast")
        self.fused = kernel is not None
        self._fused_norm = _LayerNormKernel(kernel, float(epsilon)) if self.fused else None

    def construct(self, x):
        if self.training or not self.fused or x.dtype != mstype.float32:
            return super().construct(x)
        return self._fused_norm(x, self.gamma, self.beta)


def _first_perm(ndim: int):
    return (0, ndim - 1) + tuple(range(1, ndim - 1))


def _last_perm(ndim: int):
    return (0,) + tuple(range(2, ndim)) + (1,)


def _to_first_bprop(x, out, dout):
    return (ops.transpose(dout, _last_perm(len(dout.shape))),)


def _to_last_bprop(x, out, dout):
    return (ops.transpose(dout, _first_perm(len(dout.shape))),)


class ChannelsFirst(nn.Cell):
    """(B, d1, …, dk, C) → (B, C, d1, …, dk); MindSpore's 5-D transpose moves ~0.5 GB/s on this CPU, the tiled
    kernel ~10× more."""

    def __init__(self):
        super().__init__()
        self._kernel = _custom("ToChannelsFirst", _to_first_bprop,
                               out_shape=lambda s: [s[0], s[-1]] + list(s[1:-1]))
        self.fused = self._kernel is not None

    def construct(self, x):
        if self.training or not self.fused or x.dtype != mstype.float32:
            return ops.transpose(x, _first_perm(len(x.shape)))
        return self._kernel(x)


class ChannelsLast(nn.Cell):
    """(B, C, d1, …, dk) → (B, d1, …, dk, C)."""

    def __init__(self):
        super().__init__()
        self._kernel = _custom("ToChannelsLast", _to_last_bprop, out_shape=lambda s: [s[0]] + list(s[2:]) + [s[1]])
        self.fused = self._kernel is not None

    def construct(self, x):
        if self.training or not self.fused or x.dtype != mstype.float32:
            return ops.transpose(x, _last_perm(len(x.shape)))
        return self._kernel(x)


class CuboidAttentionCore(nn.Cell):
    """dropout(softmax(q·kᵀ·scale + bias))·v within every cuboid, on the natural token layout, with its gradient.

    `construct(qkv, bias, offset, threshold)`: qkv (B, T, H, W, 3C) — q, k, v of every token side by side, each
    C = heads × hc, q not yet scaled — and bias (heads, V, V) → (B, T, H, W, C), the heads' outputs side by side.
    The cuboids of V = ∏cuboid positions tile the zero-padded grid `padded` (T', H', W'), local ("l") or dilated
    ("d") per axis; padded positions are zero tokens. `offset` and `threshold` (uint32 scalars) are the keyed
    attention dropout of `prediff_models.keyed_dropout` on the (B, N, heads, V, V) weights (threshold 0: none).
    Against the reorder / batched-matmul formulation it stores no reordered copy of q, k, v or of the output and
    no V×V score tensor: about a fifth of the memory, in one pass over qkv. The gradient (to qkv and bias) is a
    second kernel that recomputes the attention probabilities from qkv, so training and guidance keep only qkv
    per layer. `fused` is False when the kernel library is unavailable.
    """

    def __init__(self, heads: int, scale: float, cuboid, strategy, padded):
        super().__init__()
        grad = _custom("CuboidAttentionGrad", out_shape=lambda s, b, *rest: (s, b),
                       out_dtype=lambda s, b, *rest: (s, b))
        self._kernel = _custom("CuboidAttention", out_shape=lambda s, *rest: list(s[:-1]) + [s[-1] // 3],
                               bprop=None if grad is None else _attention_bprop(grad))
        self.fused = self._kernel is not None
        self.meta = Tensor(np.array([heads, scale, *cuboid, *(0.0 if m == "l" else 1.0 for m in strategy), *padded],
                                    np.float32))

    def construct(self, qkv, bias, offset, threshold):
        return self._kernel(qkv, bias, self.meta, offset, threshold)


def _attention_bprop(grad):
    def bprop(qkv, bias, meta, offset, threshold, out, dout):
        dqkv, dbias = grad(qkv, bias, meta, offset, threshold, dout)
        return dqkv, dbias, ops.zeros_like(meta), ops.zeros_like(offset), ops.zeros_like(threshold)

    return bprop
