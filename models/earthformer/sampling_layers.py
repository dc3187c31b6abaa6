"""Patch merging (down) and nearest + conv (up) between the UNet levels (`PatchMerging3D`, `merging_levels`,
`Upsample3DLayer`)."""
from __future__ import annotations

from typing import List, Sequence, Tuple

from mindspore import nn, ops

from ..kernels import Conv2d, LayerNorm
from .init import init_linear


class PatchMerging3D(nn.Cell):
    """(B, T, H, W, C) → (B, T/dt, H/dh, W/dw, out_dim): each dt×dh×dw neighbourhood is flattened in
    [dt, dh, dw, C] order (C fastest), layer-normalised and projected without bias. Odd H/W are zero-padded first
    (like the official code, which checks the H and W padding but not T)."""

    def __init__(self, dim: int, out_dim: int, downsample: Sequence[int] = (1, 2, 2), linear_init_mode: str = "0"):
        super().__init__()
        self.downsample = tuple(int(d) for d in downsample)
        merged = self.downsample[0] * self.downsample[1] * self.downsample[2] * dim
        self.reduction = init_linear(nn.Dense(merged, out_dim, has_bias=False), linear_init_mode)
        self.norm = LayerNorm(merged, epsilon=1e-5)
        self.out_dim = out_dim

    def out_shape(self, shape: Sequence[int]) -> Tuple[int, int, int, int]:
        """(T, H, W, C) → output (T', H', W', out_dim)."""
        return tuple(-(-int(s) // f) for s, f in zip(shape[:3], self.downsample)) + (self.out_dim,)

    def construct(self, x):
        b, t, h, w, c = x.shape
        dt, dh, dw = self.downsample
        ph, pw = (dh - h % dh) % dh, (dw - w % dw) % dw
        if ph or pw:
            pt = (dt - t % dt) % dt
            x = ops.pad(x, (0, 0, 0, pw, 0, ph, 0, pt))
            t, h, w = t + pt, h + ph, w + pw
        x = x.reshape(b, t // dt, dt, h // dh, dh, w // dw, dw, c)
        x = ops.transpose(x, (0, 1, 3, 5, 2, 4, 6, 7)).reshape(b, t // dt, h // dh, w // dw, dt * dh * dw * c)
        return self.reduction(self.norm(x))


def merging_levels(block_units: Sequence[int], first_shape: Tuple[int, int, int, int], downsample: Sequence[int],
                   linear_init_mode: str) -> Tuple[List[PatchMerging3D], List[Tuple[int, int, int, int]]]:
    """The encoder's way down, which the UNet and the alignment encoder share: the patch merging from each level of
    widths `block_units` to the next, and the memory shape (T, H, W, C) of every level, the first one's given."""
    layers, shapes = [], [first_shape]
    for i in range(len(block_units) - 1):
        layer = PatchMerging3D(block_units[i], block_units[i + 1], downsample, linear_init_mode)
        layers.append(layer)
        shapes.append(layer.out_shape(shapes[-1]))
    return layers, shapes


class Upsample3DLayer(nn.Cell):
    """(B, T, H, W, C) → (B, T, H', W', out_dim): per-frame nearest resize to `target_size` (T, H', W') then a
    k×k convolution (the temporal axis is not upsampled)."""

    def __init__(self, dim: int, out_dim: int, target_size: Sequence[int], kernel_size: int = 3):
        super().__init__()
        self.target_size = tuple(int(s) for s in target_size)
        self.out_dim = out_dim
        self.conv = Conv2d(dim, out_dim, kernel_size, pad_mode="pad", padding=kernel_size // 2, has_bias=True)

    def construct(self, x):
        b, t, h, w, c = x.shape
        x = ops.transpose(x.reshape(b * t, h, w, c), (0, 3, 1, 2))
        x = ops.interpolate(x, size=self.target_size[1:], mode="nearest")
        x = self.conv(x)
        return ops.transpose(x, (0, 2, 3, 1)).reshape(b, t, self.target_size[1], self.target_size[2], self.out_dim)
