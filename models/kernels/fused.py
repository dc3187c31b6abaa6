"""Drop-in GELU, GroupNorm(+SiLU), LayerNorm, channels-first/last transpose and cuboid-attention cells that run the
fused CPU kernels, forward and backward.

Each cell keeps the parameter names of the MindSpore layer it replaces (`gamma`, `beta`), so the official
parameter tree and the weight conversion are unchanged. Every kernel has a gradient kernel (the norms recompute
their statistics from the input, the attention its probabilities), attached as the op's bprop, so training and
the knowledge-alignment guidance (which differentiates the alignment network in inference) run on them as well.
When the kernel library is unavailable (`library.library_path()` is None), or a cell's `fused` is set False, or
the dtype is not float32, a cell runs MindSpore's own ops: the same function, which tests compare against.
"""
from __future__ import annotations

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore.common import dtype as mstype

from .library import custom_op


def _keyed_dropout_bprop(same_map):
    def bprop(x, offset, threshold, scale, out, dout):
        # the map is linear in x and keeps the same elements: its gradient is the map of dout
        return (same_map(dout, offset, threshold, scale), ops.zeros_like(offset), ops.zeros_like(threshold),
                ops.zeros_like(scale))

    return bprop


def keyed_dropout_kernel():
    """The op `(x, offset, threshold, scale) → x·scale where mix32(i + offset) ≥ threshold, else 0` of
    `prediff_models.keyed_dropout`, with the same map as its gradient; None without the kernel library."""
    same_map = custom_op("KeyedDropoutApply")
    return None if same_map is None else custom_op("KeyedDropoutApply", _keyed_dropout_bprop(same_map))


def _gelu_bprop(grad):
    def bprop(x, out, dout):
        return (grad(x, dout),)

    return bprop


class Gelu(nn.Cell):
    """Exact (erf) GELU, any shape."""

    def __init__(self):
        super().__init__()
        grad = custom_op("GeluExactGrad")
        self._kernel = None if grad is None else custom_op("GeluExact", _gelu_bprop(grad))
        self.fused = self._kernel is not None

    def construct(self, x):
        if not self.fused or x.dtype != mstype.float32:
            return ops.gelu(x, approximate="none")
        return self._kernel(x)


class _GroupNormKernel(nn.Cell):
    """The fused kernel with its gradient kernel as a Cell `bprop`: the constants live on the instance, so two
    norms with different groups/eps/SiLU never share a compiled gradient."""

    def __init__(self, kernel, grad, groups: int, eps: float, silu: bool):
        super().__init__()
        self.kernel, self.grad = kernel, grad
        self.options = Tensor(np.array([groups, eps, float(silu)], np.float32))

    def construct(self, x, gamma, beta):
        return self.kernel(x, gamma, beta, self.options)

    def bprop(self, x, gamma, beta, out, dout):
        return self.grad(x, gamma, beta, self.options, dout)


class GroupNorm(nn.GroupNorm):
    """`nn.GroupNorm` on (B, C, *spatial), optionally followed by SiLU in the same pass (`silu=True`)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, silu: bool = False):
        super().__init__(num_groups, num_channels, eps=eps)
        self.silu = silu
        kernel = custom_op("GroupNormSilu")
        grad = custom_op("GroupNormSiluGrad", out_shape=_with_affine_grads, out_dtype=_with_affine_grads)
        self.fused = kernel is not None and grad is not None
        self._fused_norm = _GroupNormKernel(kernel, grad, int(num_groups), float(eps), bool(silu)) \
            if self.fused else None

    def construct(self, x):
        if not self.fused or x.dtype != mstype.float32:
            out = super().construct(x)
            return ops.silu(out) if self.silu else out
        return self._fused_norm(x, self.gamma, self.beta)


class _LayerNormKernel(nn.Cell):
    def __init__(self, kernel, grad, eps: float):
        super().__init__()
        self.kernel, self.grad = kernel, grad
        self.options = Tensor(np.array([eps], np.float32))

    def construct(self, x, gamma, beta):
        return self.kernel(x, gamma, beta, self.options)

    def bprop(self, x, gamma, beta, out, dout):
        return self.grad(x, gamma, self.options, dout)


def _with_affine_grads(x, gamma, *rest):
    """Shapes (or dtypes) of a norm's gradient kernel outputs: dx like x, dgamma and dbeta like gamma."""
    return x, gamma, gamma


class LayerNorm(nn.LayerNorm):
    """`nn.LayerNorm` over the last axis only."""

    def __init__(self, channels: int, epsilon: float = 1e-5):
        super().__init__((channels,), epsilon=epsilon)
        kernel = custom_op("LayerNormLast")
        grad = custom_op("LayerNormLastGrad", out_shape=_with_affine_grads, out_dtype=_with_affine_grads)
        self.fused = kernel is not None and grad is not None
        self._fused_norm = _LayerNormKernel(kernel, grad, float(epsilon)) if self.fused else None

    def construct(self, x):
        if not self.fused or x.dtype != mstype.float32:
            return super().construct(x)
        return self._fused_norm(x, self.gamma, self.beta)


def _first_perm(ndim: int):
    return (0, ndim - 1) + tuple(range(1, ndim - 1))


def _last_perm(ndim: int):
    return (0,) + tuple(range(2, ndim)) + (1,)


def _to_first_shape(s):
    return [s[0], s[-1]] + list(s[1:-1])


def _to_last_shape(s):
    return [s[0]] + list(s[2:]) + [s[1]]


def _inverse_bprop(inverse):
    """The gradient of a layout change is the inverse layout change of the incoming gradient."""
    def bprop(x, out, dout):
        return (inverse(dout),)

    return bprop


class _ChannelMove(nn.Cell):
    """Moves the channel axis between position 1 and the end (`to_last`: 1 → end) with the tiled kernel, whose
    gradient is the opposite move; ChannelsFirst and ChannelsLast are the two directions of this one cell."""

    _KERNELS = {False: ("ToChannelsFirst", _to_first_shape), True: ("ToChannelsLast", _to_last_shape)}

    def __init__(self, to_last: bool):
        super().__init__()
        (name, shape), (inverse_name, inverse_shape) = self._KERNELS[to_last], self._KERNELS[not to_last]
        inverse = custom_op(inverse_name, out_shape=inverse_shape)
        self._kernel = None if inverse is None else custom_op(name, _inverse_bprop(inverse), out_shape=shape)
        self.fused = self._kernel is not None
        self.to_last = to_last

    def construct(self, x):
        if not self.fused or x.dtype != mstype.float32:
            perm = _last_perm(len(x.shape)) if self.to_last else _first_perm(len(x.shape))
            return ops.transpose(x, perm)
        return self._kernel(x)


class ChannelsFirst(_ChannelMove):
    """(B, d1, …, dk, C) → (B, C, d1, …, dk); MindSpore's 5-D transpose moves ~0.5 GB/s on this CPU, the tiled
    kernel ~10× more."""

    def __init__(self):
        super().__init__(to_last=False)


class ChannelsLast(_ChannelMove):
    """(B, C, d1, …, dk) → (B, d1, …, dk, C)."""

    def __init__(self):
        super().__init__(to_last=True)


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
        grad = custom_op("CuboidAttentionGrad", out_shape=lambda s, b, *rest: (s, b),
                       out_dtype=lambda s, b, *rest: (s, b))
        self._kernel = custom_op("CuboidAttention", out_shape=lambda s, *rest: list(s[:-1]) + [s[-1] // 3],
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
