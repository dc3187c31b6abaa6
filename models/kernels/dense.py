"""`Dense`: `nn.Dense` whose bias gradient is a matmul with a row of ones instead of MindSpore's `BiasAddGrad`.

On the CPU backend MindSpore's `BiasAddGrad` sums the incoming gradient over its rows at a small fraction of memory
bandwidth: 13 ms for the (3328, 1024) gradient of the paper-size UNet's first FFN layer at batch 1, against 0.4 ms
for `ones(1, rows) @ dy` (oneDNN's matmul) — 0.86 s of the UNet's 18.9 s forward + backward. The forward pass, the
parameters (`weight` (out, in), `bias` (out)) and every value are those of `nn.Dense`; on other device targets, or
without a bias, it is `nn.Dense` itself.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops

from .library import library_path
from .stash import LOAD, OFF, STORE, dense_load_op, store_op, stored


class _BiasAdd(nn.Cell):
    """(rows, C) + bias (C), with the bias gradient as a ones-row matmul."""

    def __init__(self):
        super().__init__()
        self.matmul = ops.MatMul()

    def construct(self, x, bias):
        return ops.bias_add(x, bias)

    def bprop(self, x, bias, out, dout):
        ones = ops.ones((1, dout.shape[0]), dout.dtype)
        return dout, self.matmul(ones, dout).reshape(bias.shape)


class Dense(nn.Dense):
    """`nn.Dense` on (..., in) → (..., out). Without activation, on CPU with the kernel library, it can also keep
    its output for a later gradient graph (`stash.ActivationStash`), with or without a bias."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fused = self.has_bias and self.activation is None and ms.get_context("device_target") == "CPU"
        self._bias_add = _BiasAdd() if self.fused else None
        self.stash_mode = OFF
        self._store = self._load = self.stash_slot = None

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
        if not self.fused:
            return super().construct(x)
        shape = x.shape
        y = self._bias_add(self.matmul(x.reshape(-1, shape[-1]), self.weight), self.bias)
        return y.reshape(shape[:-1] + (y.shape[-1],))
