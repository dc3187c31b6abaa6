"""Dropout whose mask is a pure function of (key, layer, element): the op behind the trainers' resumable dropout.

Element `i` (row-major) of a dropped tensor is kept when `mix32(i + offset) >= threshold`, with offset =
mix32(key + layer·φ) and threshold = round(p·2^32); kept elements are scaled by 1/(1 − p). `mix32` is a bijective
32-bit integer hash (Wellons' "lowbias32"), so each (layer, key) reads its own window of one pseudo-random
sequence. The fused cuboid-attention kernel evaluates the same rule on its (B, N, heads, V, V) weights, so both
attention paths drop the same elements for the same key.
"""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

_U32 = np.uint32
GOLDEN = 0x9E3779B9


def u32(value: int) -> Tensor:
    """A uint32 scalar tensor (MindSpore has no uint32 multiply-by-Python-int kernel)."""
    return Tensor(_U32(value & 0xFFFFFFFF))


_MUL1, _MUL2 = u32(0x7FEB352D), u32(0x846CA68B)
_SHIFT15, _SHIFT16 = u32(15), u32(16)


def mix32(h: Tensor) -> Tensor:
    """lowbias32 on uint32 tensors; the arithmetic wraps modulo 2^32."""
    h = ops.bitwise_xor(h, ops.bitwise_right_shift(h, _SHIFT16))
    h = h * _MUL1
    h = ops.bitwise_xor(h, ops.bitwise_right_shift(h, _SHIFT15))
    h = h * _MUL2
    return ops.bitwise_xor(h, ops.bitwise_right_shift(h, _SHIFT16))


def threshold_of(p: float) -> int:
    """round(p·2^32), capped at 2^32 − 1: elements whose hash is below it are dropped."""
    return min(int(round(float(p) * 2 ** 32)), 2 ** 32 - 1)


class KeyedDropout(nn.Cell):
    """Stands in for the `ops.Dropout` primitive inside an `nn.Dropout`: `construct(x) -> (out, keep)`.

    `key` is a uint32 scalar Parameter written at the start of each compiled step; it is held outside the Cell's
    own parameters (plain attribute) so the network's parameter list, and so its checkpoints, do not change.
    On CPU with the fused kernels (`prediff_models.kernels`) one kernel computes the mask on the fly, forward and
    backward, and `construct`'s second output is the first again, not the mask. Otherwise the mask is built from
    standard ops: about ten integer passes over `x`, and compiled graphs keep many tensor-sized buffers of it.
    """

    def __init__(self, p: float, layer: int, key: Parameter):
        super().__init__()
        from .kernels.fused import keyed_dropout_kernel

        self.scale = 1.0 / (1.0 - float(p))
        self.threshold = u32(threshold_of(p))
        self.layer = u32(layer * GOLDEN)
        object.__setattr__(self, "key", key)
        # the fused CPU kernel computes the mask on the fly in both passes (None: the standard ops below)
        self._kernel = keyed_dropout_kernel()
        self._scale32 = Tensor(np.float32(self.scale))

    def offset(self) -> Tensor:
        """mix32(key + layer·φ): where this layer's window of the sequence starts for the current key."""
        return mix32(self.key + self.layer)

    def construct(self, x):
        if self._kernel is not None and x.dtype == ms.float32:
            # `nn.Dropout` reads only the first output; the mask is not materialised on this path
            out = self._kernel(x, self.offset(), self.threshold, self._scale32)
            return out, out
        index = ops.cast(ops.arange(0, x.size, dtype=ms.int32), ms.uint32).reshape(x.shape)
        keep = ops.stop_gradient(ops.cast(mix32(index + self.offset()) >= self.threshold, x.dtype))
        return x * keep * self.scale, keep
