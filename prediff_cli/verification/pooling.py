"""Spatial max pooling of frames, as used for the pooled CSI of the PreDiff paper (kernel = stride).

Pooled scores look at the largest value in each s×s block, so a forecast that puts a storm a few pixels off still
gets credit at the coarser scale. The official metric (`SEVIRSkillScore`, preprocess "sevir_pool{s}") max-pools
the 0–255 frames with `torch.nn.functional.max_pool2d(kernel_size=s, stride=s)`; this module does the same with
NumPy. Like PyTorch (no padding, floor mode), rows/columns that do not fill a whole block are dropped.
"""
from __future__ import annotations

import numpy as np

from prediff.errors import ConfigError


def check_pool(size) -> int:
    """The pooling size as a positive int (1 means no pooling); ConfigError otherwise."""
    if isinstance(size, bool) or int(size) != size or int(size) < 1:
        raise ConfigError(f"pooling size must be a positive integer, got {size!r}")
    return int(size)


def max_pool(frames: np.ndarray, size: int) -> np.ndarray:
    """Max over non-overlapping `size`×`size` blocks of the last two axes.

    frames: (..., H, W), any real dtype, any scale (max commutes with the monotone 0–1 → 0–255 rescaling).
    Returns (..., H // size, W // size) of the same dtype; `size` 1 returns `frames` itself. A NaN in a block
    makes the block NaN (as PyTorch's max_pool2d).
    """
    size = check_pool(size)
    if size == 1:
        return frames
    h, w = frames.shape[-2:]
    hp, wp = h // size, w // size
    if hp == 0 or wp == 0:
        raise ConfigError(f"pooling size {size} is larger than the frame ({h}×{w})")
    cropped = frames[..., : hp * size, : wp * size]
    blocks = cropped.reshape(frames.shape[:-2] + (hp, size, wp, size))
    return blocks.max(axis=(-3, -1))
