"""Optical-flow extrapolation baseline: motion from the context frames, then semi-Lagrangian advection of the
last frame (`extrapolation.semi_lagrangian`), no growth or decay.

Motion estimation — a coarse-to-fine (pyramidal) Lucas–Kanade method written with NumPy/SciPy:

1. A Gaussian pyramid of the context frames (halving until the short side would drop below 16 pixels).
2. At each level, from coarsest to finest, a few warping iterations: every frame pair (I_k, I_k+1) of the
   context is compared after warping I_k+1 back by the current flow v; the brightness-constancy residual
   I_t = I_k+1(x + v) − I_k(x) and the gradients of the pair's mean image give, summed over all pairs and
   under a Gaussian window, the 2×2 normal equations A·dv = −b of Lucas–Kanade.
3. A uniform translation g is estimated first the same way with the sums taken over the whole frame. The
   local solve is regularised towards it: (A + λI)·dv = −b + λ(g − v), λ = `regularisation` × the mean of
   tr(A)/2 over the frame. Where there is structure (storm edges) the data dominate; in empty or flat regions
   (no gradient, e.g. clear air ahead of a storm, where the backward trajectories must still find the storm)
   the flow falls back to the domain-wide motion instead of to zero.
4. The flow at each level is upsampled (×2 in size and value) to start the next one.

Using all context pairs at once (one motion assumed constant over the context, 10-minute steps in SEVIR-LR)
averages out the frame-to-frame noise of radar echoes. The result is in pixels per frame interval, (dy, dx).

Why not a library: pysteps (the forecasters' toolkit, used for the STEPS baseline) has a Lucas–Kanade method,
but it needs OpenCV.
OpenCV itself (opencv-python-headless, Farnebäck/DIS flow) is a ~50 MB wheel whose releases from 4.12 on require
NumPy 2, which MindSpore 2.10 cannot use (4.11 would have to be pinned). This estimator needs nothing beyond
SciPy, takes ~0.06 s per 7×128×128 context, and recovers a translation to a few hundredths of a pixel
(tests/verification/test_baselines.py).
"""
from __future__ import annotations

from typing import List

import numpy as np
from scipy import ndimage

from prediff.errors import ConfigError

from .extrapolation import semi_lagrangian
from .inputs import check_context, check_leads

MIN_LEVEL_SIZE = 16


def _pyramid(frames: np.ndarray, min_size: int) -> List[np.ndarray]:
    """[full resolution, 1/2, 1/4, ...] of frames (T, H, W): Gaussian blur (σ = 1) then every second pixel."""
    levels = [ndimage.gaussian_filter(frames, sigma=(0, 1.0, 1.0), mode="nearest")]
    while min(levels[-1].shape[1:]) // 2 >= min_size:
        levels.append(ndimage.gaussian_filter(levels[-1], sigma=(0, 1.0, 1.0), mode="nearest")[:, ::2, ::2])
    return levels


def _warp(frames: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """frames (N, H, W) sampled at x + flow(x) (bilinear, edge values outside): I(x + v)."""
    n, h, w = frames.shape
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    coords = (yy + flow[0], xx + flow[1])
    return np.stack([ndimage.map_coordinates(f, coords, order=1, mode="nearest") for f in frames])


def _normal_equations(frames: np.ndarray, flow: np.ndarray):
    """Per-pixel Lucas–Kanade terms summed over all consecutive pairs: (Axx, Axy, Ayy, bx, by), each (H, W)."""
    first, second = frames[:-1], _warp(frames[1:], flow)
    mean = 0.5 * (first + second)
    gy, gx = np.gradient(mean, axis=(1, 2))
    gt = second - first
    return ((gx * gx).sum(0), (gx * gy).sum(0), (gy * gy).sum(0), (gx * gt).sum(0), (gy * gt).sum(0))


def _solve(axx, axy, ayy, rx, ry, damping):
    """Solve [[axx + d, axy], [axy, ayy + d]]·(dx, dy) = (rx, ry) elementwise; returns (dy, dx)."""
    a, c = axx + damping, ayy + damping
    det = a * c - axy * axy
    det = np.where(np.abs(det) > 1e-12, det, 1e-12)
    return (a * ry - axy * rx) / det, (c * rx - axy * ry) / det


def estimate_motion(frames, *, window_sigma: float = 4.0, iterations: int = 3,
                    regularisation: float = 0.05, min_size: int = MIN_LEVEL_SIZE) -> np.ndarray:
    """Motion of frames (T, H, W), T >= 2, 0–1 VIL: (2, H, W) = (dy, dx) in pixels per frame interval.

    window_sigma: σ of the Gaussian Lucas–Kanade window in pixels of each pyramid level (so the window grows with
    the level); iterations: warping iterations per level; regularisation: pull towards the domain-wide
    translation (0 = plain Lucas–Kanade); min_size: smallest pyramid level side.
    """
    frames = np.asarray(frames, np.float64)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ConfigError(f"motion estimation needs frames (T >= 2, H, W), got shape {frames.shape}")
    if window_sigma <= 0 or iterations < 1 or regularisation < 0:
        raise ConfigError("optical flow needs window_sigma > 0, iterations >= 1 and regularisation >= 0")
    levels = _pyramid(frames, min_size)
    flow = np.zeros((2,) + levels[-1].shape[1:])
    translation = np.zeros(2)
    for depth, level in enumerate(reversed(levels)):
        if depth:
            h, w = level.shape[1:]
            zoom = (h / flow.shape[1], w / flow.shape[2])
            flow = 2.0 * np.stack([ndimage.zoom(f, zoom, order=1, mode="nearest", grid_mode=True) for f in flow])
            translation = 2.0 * translation
        for _ in range(iterations):
            # domain-wide translation: Lucas–Kanade with the sums over the whole frame
            terms = _normal_equations(level, np.broadcast_to(translation[:, None, None], flow.shape))
            sums = [t.sum() for t in terms]
            scale = 1e-3 * (sums[0] + sums[2]) + 1e-12
            step = _solve(sums[0], sums[1], sums[2], -sums[3], -sums[4], scale)
            translation = translation + np.array(step, np.float64)
        for _ in range(iterations):
            axx, axy, ayy, bx, by = (ndimage.gaussian_filter(t, window_sigma, mode="nearest")
                                     for t in _normal_equations(level, flow))
            damping = regularisation * 0.5 * float(np.mean(axx + ayy)) + 1e-12
            rx = -bx + damping * (translation[1] - flow[1])
            ry = -by + damping * (translation[0] - flow[0])
            dy, dx = _solve(axx, axy, ayy, rx, ry, damping)
            flow = flow + np.stack([dy, dx])
    return flow.astype(np.float32)


class OpticalFlow:
    """Lucas–Kanade motion from the context, semi-Lagrangian extrapolation of the last context frame.

    extrapolate(context (T_in, H, W), n_leads) → (n_leads, H, W); forecast(context (B, T_in, H, W), n_leads)
    → (B, n_leads, H, W); 0–1 VIL in, float32 out. `n_frames` limits the motion estimate to the last frames
    of the context (None: all of them).
    """

    name = "optical_flow"

    def __init__(self, n_frames: int = None, window_sigma: float = 4.0, iterations: int = 3,
                 regularisation: float = 0.05) -> None:
        if n_frames is not None and (int(n_frames) != n_frames or n_frames < 2):
            raise ConfigError(f"optical flow n_frames must be an integer >= 2, got {n_frames!r}")
        self.n_frames = None if n_frames is None else int(n_frames)
        self.options = {"window_sigma": float(window_sigma), "iterations": int(iterations),
                        "regularisation": float(regularisation)}

    def settings(self) -> dict:
        return {"n_frames": self.n_frames, **self.options}

    def motion(self, context) -> np.ndarray:
        """(2, H, W) motion (dy, dx) in pixels per frame interval of context (T_in, H, W)."""
        context = check_context(context, batched=False, min_frames=2)
        frames = context if self.n_frames is None else context[-self.n_frames:]
        return estimate_motion(frames, **self.options)

    def extrapolate(self, context, n_leads: int) -> np.ndarray:
        context = check_context(context, batched=False, min_frames=2)
        n_leads = check_leads(n_leads)
        return semi_lagrangian(context[-1], self.motion(context), n_leads)

    def forecast(self, context, n_leads: int) -> np.ndarray:
        context = check_context(context, batched=True, min_frames=2)
        n_leads = check_leads(n_leads)
        return np.stack([self.extrapolate(case, n_leads) for case in context])


def extrapolate(context, n_leads: int, **options) -> np.ndarray:
    """Optical-flow extrapolation of context (T_in, H, W): (n_leads, H, W)."""
    return OpticalFlow(**options).extrapolate(context, n_leads)


def forecast(context, n_leads: int, **options) -> np.ndarray:
    """Batched optical-flow extrapolation: context (B, T_in, H, W) → (B, n_leads, H, W)."""
    return OpticalFlow(**options).forecast(context, n_leads)
