"""Video features for the Fréchet video distance: the official FVD preprocessing (NumPy) and the I3D network.

Preprocessing, as `FrechetVideoDistance(layout="NTCHW", normalize=False, auto_t=True)` of gaozhihan/PreDiff does
it to sequences (B, T, C, H, W) on the 0–1 scale:
1. fewer than 9 frames → every frame twice (repeat-interleave along time: 6 → 12);
2. one channel → the same channel three times (here: the network's first kernel is summed over its input
   channels instead, the same numbers up to float rounding, a third of the work);
3. each frame resized bilinearly (align_corners=False: half-pixel centres, source coordinates clamped at 0) so
   that the short side is 224 (the long side becomes ceil(long · 224 / short)), then centre-cropped to 224 × 224;
4. mapped to [-1, 1] by (x − 0.5) · 2.
The I3D logits (400 Kinetics classes) averaged over time are the features of a sequence.

The resize is separable, so it runs as two small matrix products per frame (float32), built once per size.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np

from prediff.errors import InputError

RESOLUTION = 224
MIN_FRAMES = 9
NUM_FEATURES = 400
CHUNK = 4  # sequences per network call (a fixed size: one compiled graph; the last chunk is zero-padded)


@lru_cache(maxsize=16)
def resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) float32 weights of 1-D bilinear resampling with align_corners=False.

    Output pixel j reads source coordinate max((j + 0.5) · size_in / size_out − 0.5, 0) (float32 arithmetic as in
    PyTorch's CPU kernel), the two neighbouring pixels weighted by their distance, the upper index clamped."""
    scale = np.float32(size_in / size_out)
    src = np.maximum(scale * (np.arange(size_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5),
                     np.float32(0))
    low = src.astype(np.int64)
    frac = src - low.astype(np.float32)
    high = np.minimum(low + 1, size_in - 1)
    out = np.zeros((size_out, size_in), np.float32)
    rows = np.arange(size_out)
    np.add.at(out, (rows, low), np.float32(1) - frac)
    np.add.at(out, (rows, high), frac)
    return out


def crop_matrices(height: int, width: int, resolution: int = RESOLUTION):
    """Row and column resampling matrices (resolution × height, resolution × width): resize so the short side is
    `resolution`, then keep the centre `resolution` rows and columns (official rounding of both steps)."""
    scale = resolution / min(height, width)
    if height < width:
        size = (resolution, math.ceil(width * scale))
    else:
        size = (math.ceil(height * scale), resolution)
    rows, cols = resize_matrix(height, size[0]), resize_matrix(width, size[1])
    top, left = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    return rows[top:top + resolution], cols[left:left + resolution]


def check_videos(videos) -> np.ndarray:
    """(B, T, C, H, W) finite float data with C in (1, 3) → float32; one line of InputError otherwise."""
    arr = np.asarray(videos)
    if arr.ndim != 5 or arr.shape[2] not in (1, 3) or min(arr.shape) < 1:
        raise InputError(f"FVD needs videos shaped (B, T, C, H, W) with C = 1 or 3, got {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise InputError(f"FVD needs numeric videos, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise InputError("FVD input contains NaN or infinite values")
    return arr


def preprocess(videos, resolution: int = RESOLUTION) -> np.ndarray:
    """(B, T, C, H, W) on 0–1 → the network input (B, C, T', resolution, resolution) float32 in [-1, 1]
    (T' = 2T if T < 9, else T; C stays 1 for single-channel videos)."""
    arr = check_videos(videos)
    b, t, c, h, w = arr.shape
    if (2 * t if t < MIN_FRAMES else t) < MIN_FRAMES:
        raise InputError(f"FVD needs sequences of at least {(MIN_FRAMES + 1) // 2} frames (the I3D sees at least "
                         f"{MIN_FRAMES} after doubling short ones), got {t}")
    rows, cols = crop_matrices(h, w, resolution)
    frames = arr.reshape(b * t * c, h, w)
    out = np.matmul(np.matmul(rows, frames), cols.T)  # (B·T·C, res, res)
    out = out.reshape(b, t, c, resolution, resolution).transpose(0, 2, 1, 3, 4)
    if t < MIN_FRAMES:
        out = np.repeat(out, 2, axis=2)
    return np.ascontiguousarray((out - np.float32(0.5)) * np.float32(2))


class VideoFeatures:
    """The I3D feature extractor: `features(videos)` → (B, 400) float64 for (B, T, C, H, W) videos on 0–1.

    `net` is a loaded `prediff_models.i3d.InceptionI3d`; the network runs compiled (one graph per input shape)
    in chunks of `chunk` sequences."""

    def __init__(self, net, chunk: int = CHUNK, source: Optional[str] = None):
        from prediff.compile import compiled

        self.net, self.chunk, self.source = net, int(chunk), source
        net.set_train(False)

        @compiled
        def forward(x):
            return net(x)

        self._forward = forward

    def features(self, videos) -> np.ndarray:
        import mindspore as ms

        x = preprocess(videos)
        out = np.empty((x.shape[0], NUM_FEATURES), np.float64)
        for start in range(0, x.shape[0], self.chunk):
            part = x[start:start + self.chunk]
            n = part.shape[0]
            if n < self.chunk:
                part = np.concatenate([part, np.zeros((self.chunk - n,) + part.shape[1:], np.float32)])
            logits = self._forward(ms.Tensor(part))[0].asnumpy()
            out[start:start + n] = logits[:n]
        return out


def load_video_features(path: Path, chunk: int = CHUNK) -> VideoFeatures:
    """The extractor with the I3D weights of a converted checkpoint (`prediff download weights i3d`)."""
    from prediff.io.checkpoint import load_checkpoint, load_weights
    from prediff_models.i3d import InceptionI3d

    ckpt = load_checkpoint(path, component="i3d")
    try:
        net = InceptionI3d(**ckpt.model_kwargs)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: unusable I3D settings {ckpt.model_kwargs} ({exc})") from None
    load_weights(net, ckpt.weights(prefer_ema=False), source=str(path))
    return VideoFeatures(net, chunk, source=str(path))
