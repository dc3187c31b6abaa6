"""Inflated Inception-v1 (I3D, Carreira & Zisserman 2017) with the parameter tree of the official PyTorch port
used by PreDiff's FVD (`InceptionI3d(400, in_channels=3)` of gaozhihan/PreDiff); inference only.

Input (N, C, T, H, W) float32 in [-1, 1] (C = `in_channels`, or 1: a single channel stands for that channel
repeated `in_channels` times, computed by summing the first kernel over its input channels, equal up to float
rounding), T >= 9 and H = W = 224 (the sizes the official average pooling turns into one spatial cell).
Output: a 1-tuple with the logits averaged over time, (N, num_classes).
"""
from __future__ import annotations

from typing import Sequence, Tuple

from mindspore import Tensor, nn, ops

from .units import Logits, MaxPoolSame, Unit3D, as_float32

#: (end point, input channels, branch widths [b0, b1a, b1b, b2a, b2b, b3b]) of the nine inception modules
MIXED = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)
FEATURE_CHANNELS = 1024
MIN_FRAMES = 9  # fewer frames leave less than the 2 time steps the official average pooling needs


class InceptionModule(nn.Cell):
    """Four parallel branches concatenated along channels: 1×1×1 | 1×1×1 → 3×3×3 | 1×1×1 → 3×3×3 |
    3×3×3 max pool → 1×1×1. The three 1×1×1 convolutions that read the input run as one convolution."""

    def __init__(self, in_channels: int, widths: Sequence[int]):
        super().__init__()
        w = [int(v) for v in widths]
        self.b0 = Unit3D(in_channels, w[0])
        self.b1a = Unit3D(in_channels, w[1])
        self.b1b = Unit3D(w[1], w[2], kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, w[3])
        self.b2b = Unit3D(w[3], w[4], kernel=(3, 3, 3))
        self.b3a = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w[5])
        self.split = (w[0], w[0] + w[1], w[0] + w[1] + w[3])
        self.pointwise = ops.Conv3D(out_channel=self.split[2], kernel_size=(1, 1, 1), pad_mode="valid")

    def construct(self, x: Tensor) -> Tensor:
        w0, s0 = self.b0.folded()
        w1, s1 = self.b1a.folded()
        w2, s2 = self.b2a.folded()
        shift = ops.concat((s0, s1, s2), 0).reshape((1, -1, 1, 1, 1))
        y = ops.relu(self.pointwise(x, ops.concat((w0, w1, w2), 0)) + shift)
        a, b, c = self.split
        branch1 = self.b1b(y[:, a:b])
        branch2 = self.b2b(y[:, b:c])
        branch3 = self.b3b(self.b3a(x))
        return ops.concat((y[:, :a], branch1, branch2, branch3), 1)


class InceptionI3d(nn.Cell):
    """The official end points up to the logits; constructor arguments as in the official class (only
    `final_endpoint="Logits"` and `spatial_squeeze=True`, the FVD configuration, are provided)."""

    def __init__(self, num_classes: int = 400, spatial_squeeze: bool = True, final_endpoint: str = "Logits",
                 name: str = "inception_i3d", in_channels: int = 3, dropout_keep_prob: float = 0.5):
        super().__init__()
        if final_endpoint != "Logits" or not spatial_squeeze:
            raise ValueError("only the logits of the full network (final_endpoint='Logits', spatial_squeeze=True) "
                             "are provided")
        self.num_classes, self.in_channels = int(num_classes), int(in_channels)
        self.name = name  # kept for signature compatibility; dropout is inactive at inference
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, kernel=(7, 7, 7), stride=(2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=(3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        for end_point, channels, widths in MIXED:
            setattr(self, end_point, InceptionModule(channels, widths))
        self.logits = Logits(FEATURE_CHANNELS, num_classes)
        self.stem = ops.Conv3D(out_channel=64, kernel_size=(7, 7, 7), stride=(2, 2, 2), pad_mode="same")

    def _stem(self, x: Tensor) -> Tensor:
        weight, shift = self.Conv3d_1a_7x7.folded()
        if x.shape[1] == 1 and self.in_channels != 1:
            weight = weight.sum(axis=1, keepdims=True)
        return ops.relu(self.stem(x, weight) + shift.reshape((1, -1, 1, 1, 1)))

    def construct(self, x: Tensor) -> Tuple[Tensor]:
        x = self._stem(as_float32(x))
        x = self.MaxPool3d_2a_3x3(x)
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = self.MaxPool3d_3a_3x3(x)
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = self.MaxPool3d_4a_3x3(x)
        x = self.Mixed_4f(self.Mixed_4e(self.Mixed_4d(self.Mixed_4c(self.Mixed_4b(x)))))
        x = self.MaxPool3d_5a_2x2(x)
        x = self.Mixed_5c(self.Mixed_5b(x))  # (N, 1024, T', 7, 7)
        cells = x.mean(axis=(3, 4))  # the (2, 7, 7) average pooling: 224-pixel frames end as 7 × 7 cells
        pairs = (cells[:, :, :-1] + cells[:, :, 1:]) * 0.5  # its 2-frame window, stride 1
        return (self.logits(pairs).mean(axis=1),)

