"""Structural similarity (SSIM) of forecast and observed frames, per frame, averaged.

Settings of the official evaluation (torchmetrics 1.2.0 `StructuralSimilarityIndexMeasure` with its
defaults): Gaussian window 11×11 with σ = 1.5, k1 = 0.01, k2 = 0.03. torchmetrics 1.2.0 reflect-pads by 5 pixels,
filters, then crops those 5 pixels again, so its SSIM map covers exactly the pixels whose whole window lies inside
the frame ("valid" region, 118×118 of 128×128; the MindSpore port's OpenCV version does the same); the map is
averaged per frame, then over all frames. Here the same valid region is computed directly. (Later torchmetrics
releases average the reflect-padded full map instead and clamp negative variances; those differ slightly.)

Data range: fixed to 1 (the 0–1 VIL scale), i.e. C1 = (0.01·1)², C2 = (0.03·1)². torchmetrics with
`data_range=None` instead infers the range from each update batch (max of the forecast and truth value ranges),
which makes a score depend on how cases are batched; with a fixed range the score is a property of each frame
pair and streams exactly. The inferred range equals 1 only for batches whose values span the whole 0–1 scale
(intense echoes near digital 255 plus clear air); for weaker batches it is smaller and torchmetrics' SSIM usually lower.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from prediff.errors import ConfigError, InputError

from .inputs import check_pair
from .streaming import StreamingScore, ratio, to_json

WINDOW, SIGMA, K1, K2, DATA_RANGE = 11, 1.5, 0.01, 0.03, 1.0


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps (size,), centred; the 2-D window is its outer product."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    return taps / taps.sum()


def _filter_valid(frames: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter of (..., H, W), keeping only the (H−n+1, W−n+1) pixels with a full window."""
    half = len(taps) // 2
    out = ndimage.correlate1d(frames, taps, axis=-1, mode="constant")[..., half:-half or None]
    out = ndimage.correlate1d(out, taps, axis=-2, mode="constant")[..., half:-half or None, :]
    return out


def ssim_frames(forecast: np.ndarray, truth: np.ndarray, *, data_range: float = DATA_RANGE,
                window: int = WINDOW, sigma: float = SIGMA, k1: float = K1, k2: float = K2) -> np.ndarray:
    """Mean SSIM of each frame pair.

    forecast: (B, M, T, H, W); truth: (B, T, H, W) (shared by the members); 0–1 scale. Returns (B, M, T) float64.
    Frames must be at least `window` pixels on each side. The truth's local moments are computed once and reused
    for every member.
    """
    if window % 2 != 1:
        raise ConfigError(f"SSIM needs an odd window size, got {window}")
    if min(forecast.shape[-2:]) < window:
        raise InputError(f"SSIM needs frames of at least {window}×{window} pixels, got {forecast.shape[-2:]}")
    taps = gaussian_window(window, sigma).astype(np.float32)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    x = np.asarray(forecast, np.float32)
    y = np.asarray(truth, np.float32)
    mu_y = _filter_valid(y, taps)[:, None]
    e_yy = _filter_valid(y * y, taps)[:, None]
    mu_x = _filter_valid(x, taps)
    e_xx = _filter_valid(x * x, taps)
    e_xy = _filter_valid(x * y[:, None], taps)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x, var_y, cov = e_xx - mu_xx, e_yy - mu_yy, e_xy - mu_xy
    numerator = (2 * mu_xy + c1) * (2 * cov + c2)
    denominator = (mu_xx + mu_yy + c1) * (var_x + var_y + c2)
    return (numerator / denominator).mean(axis=(-2, -1), dtype=np.float64)


class SSIM(StreamingScore):
    """Streaming mean SSIM over frames (every member's frame counts), overall and per lead time.

    compute() → {"ssim": v, "per_lead_time": {"ssim": [T]}}.
    """

    name = "ssim"

    def accumulate(self, forecast, truth) -> None:
        forecast, truth = check_pair(forecast, truth)
        self.accumulate_checked(forecast, truth)

    def accumulate_checked(self, forecast: np.ndarray, truth: np.ndarray) -> None:
        t = forecast.shape[2]
        self._allocate({"sum_ssim": (t,)})
        self._allocate({"frames": (t,)}, np.int64)
        values = ssim_frames(forecast, truth)
        self._state["sum_ssim"] += values.sum(axis=(0, 1))
        self._state["frames"] += values.shape[0] * values.shape[1]

    def compute(self) -> dict:
        self._require_data()
        s = self._state
        return {"ssim": to_json(s["sum_ssim"].sum() / s["frames"].sum()),
                "per_lead_time": {"ssim": to_json(ratio(s["sum_ssim"], s["frames"]))}}
