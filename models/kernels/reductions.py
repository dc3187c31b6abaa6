"""`SquareSum`: Σ x² over every element of a float32 tensor, on the kernel library's `SumOfSquares` where it is
available (one pass, double accumulation per 4096-element block), else MindSpore's `reduce_sum(square(x))`.

For the trainers' global gradient norm: on the CPU backend MindSpore's square + reduce_sum took 0.59 s over the
paper-size UNet's 137 M gradient values. No gradient is defined (it runs in the optimizer step, outside autodiff).
"""
from __future__ import annotations

from mindspore import nn, ops
from mindspore.common import dtype as mstype

from .library import custom_op


class SquareSum(nn.Cell):
    """x (any shape) → Σ x² as a 0-d tensor of x's dtype."""

    def __init__(self):
        super().__init__()
        self._kernel = custom_op("SumOfSquares", out_shape=lambda x: [1])
        self.fused = self._kernel is not None

    def construct(self, x):
        if not self.fused or x.dtype != mstype.float32:
            return ops.reduce_sum(ops.square(x))
        return self._kernel(x).reshape(())
