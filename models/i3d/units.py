"""Building blocks of the Inflated Inception-v1 (I3D) video classifier, inference only.

The official PyTorch port (gaozhihan/PreDiff `prediff.evaluation.fvd.pytorch_i3d`) pads every convolution and max
pooling dynamically so that the output length along each axis is ceil(size / stride), with the odd extra pixel at
the end ("SAME" padding of TensorFlow); MindSpore's `pad_mode="same"` is that rule. The pooling pads with zeros in
the official code; every pooling there follows a ReLU (values >= 0), where a zero pad and MindSpore's -inf pad give
the same maxima.

Parameter names are the official ones (`conv3d.weight`, `bn.weight`, `bn.bias`, `bn.running_mean`,
`bn.running_var`, and `conv3d.bias` for the logits layer), so the official state dict loads key for key. Batch
normalisation runs with its stored statistics (eval mode, eps 1e-5) folded into the convolution on every call.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dtype as mstype

BN_EPS = 1e-5


def _triple(value) -> Tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    out = tuple(int(v) for v in value)
    if len(out) != 3:
        raise ValueError(f"expected 3 sizes (time, height, width), got {value!r}")
    return out


def _zeros(shape) -> Parameter:
    return Parameter(Tensor(np.zeros(shape, np.float32)), requires_grad=False)


def _ones(shape) -> Parameter:
    return Parameter(Tensor(np.ones(shape, np.float32)), requires_grad=False)


class ConvWeights(nn.Cell):
    """Holds a 3-D convolution kernel (out, in, kt, kh, kw) and optionally its bias; the owner convolves."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int], bias: bool = False):
        super().__init__()
        self.weight = _zeros((out_channels, in_channels) + _triple(kernel))
        self.bias = _zeros((out_channels,)) if bias else None


class BatchNormStats(nn.Cell):
    """The four tensors of an eval-mode BatchNorm3d; `fold()` gives its per-channel scale and shift."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = _ones((channels,))
        self.bias = _zeros((channels,))
        self.running_mean = _zeros((channels,))
        self.running_var = _ones((channels,))

    def fold(self) -> Tuple[Tensor, Tensor]:
        scale = self.weight / ops.sqrt(self.running_var + BN_EPS)
        return scale, self.bias - self.running_mean * scale


class Unit3D(nn.Cell):
    """Conv3d (no bias, SAME padding) → BatchNorm (eval) → ReLU; (N, C_in, T, H, W) → (N, C_out, T', H', W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int] = (1, 1, 1),
                 stride: Sequence[int] = (1, 1, 1)):
        super().__init__()
        self.out_channels = int(out_channels)
        self.conv3d = ConvWeights(in_channels, out_channels, kernel)
        self.bn = BatchNormStats(out_channels)
        self.conv = ops.Conv3D(out_channel=self.out_channels, kernel_size=_triple(kernel), stride=_triple(stride),
                               pad_mode="same")

    def folded(self) -> Tuple[Tensor, Tensor]:
        """Kernel with the BatchNorm scale folded in, and the per-channel shift."""
        scale, shift = self.bn.fold()
        return self.conv3d.weight * scale.reshape((-1, 1, 1, 1, 1)), shift

    def construct(self, x: Tensor) -> Tensor:
        weight, shift = self.folded()
        return ops.relu(self.conv(x, weight) + shift.reshape((1, -1, 1, 1, 1)))


class MaxPoolSame(nn.Cell):
    """3-D max pooling with SAME padding (output ceil(size / stride) per axis)."""

    def __init__(self, kernel: Sequence[int], stride: Sequence[int]):
        super().__init__()
        self.pool = ops.MaxPool3D(kernel_size=_triple(kernel), strides=_triple(stride), pad_mode="SAME")

    def construct(self, x: Tensor) -> Tensor:
        return self.pool(x)


class Logits(nn.Cell):
    """The classifier: a 1×1×1 convolution with bias (official `logits.conv3d`), applied to (N, C, T) features."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv3d = ConvWeights(in_channels, num_classes, (1, 1, 1), bias=True)
        self.num_classes = int(num_classes)

    def construct(self, x: Tensor) -> Tensor:
        """x (N, C, T) → (N, T, num_classes)."""
        weight = self.conv3d.weight.reshape((self.num_classes, -1))
        return ops.matmul(x.transpose(0, 2, 1), weight.T) + self.conv3d.bias


def as_float32(x: Tensor) -> Tensor:
    return x if x.dtype == mstype.float32 else x.astype(mstype.float32)
