"""Fractions skill score (FSS, Roberts & Lean 2008) at several thresholds and neighbourhood sizes.

For a threshold τ (0–255 digital scale, event = `x·255 >= τ`, as the CSI) and a neighbourhood width s (pixels),
each field is replaced by the fraction of event pixels in the s×s window around every pixel (zero outside the
frame, i.e. the window keeps s² pixels at the border — the convention of pysteps and of
`scipy.ndimage.uniform_filter(mode="constant")`). With forecast fractions P_f and observed fractions P_o,

    FSS = 1 − Σ (P_f − P_o)² / (Σ P_f² + Σ P_o²),

the sums running over all pixels, lead times, cases and (for an ensemble) members of the evaluation — the
accumulated form, not a mean of per-case FSS. FSS is 1 for a perfect forecast, 0 for no overlap at any scale;
it is undefined (reported as null) when neither field has any event.

An odd s centres the window on the pixel; an even s reaches one pixel further down/right than up/left (the
scipy convention). Window sums are exact integers from one integral image per field and threshold (kept in
uint16, whose wrap-around cancels in the four-corner difference as long as s² < 2¹⁵), so the score streams
exactly.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from prediff.errors import ConfigError

from .categorical import DEFAULT_THRESHOLDS, check_thresholds, plain_thresholds, threshold_key
from .inputs import check_pair, to_digital
from .streaming import StreamingScore, ratio, to_json

# The canonical default is `ScoreConfig.fss_scales` (prediff_cli/config/schema.py); verification does not import
# the config, so the same numbers stand here. Change both together.
DEFAULT_SCALES = (1, 4, 16)
MAX_SCALE = 181  # s² must fit in int16 for the exact integer arithmetic


def check_scales(scales) -> Tuple[int, ...]:
    """Sorted distinct neighbourhood widths in pixels (1..181); ConfigError otherwise."""
    try:
        values = sorted({int(s) for s in scales if int(s) == s})
        valid = len(values) == len(set(scales)) and all(1 <= s <= MAX_SCALE for s in values)
    except (TypeError, ValueError):
        valid = False
    if not valid or not values:
        raise ConfigError(f"FSS scales must be distinct integers between 1 and {MAX_SCALE} pixels, got {scales!r}")
    return tuple(values)


def _integral_image(events: np.ndarray, pad: int) -> np.ndarray:
    """Zero-padded integral image of events (N, H, W) bool, **transposed**: (N, W + 2·pad + 1, H + 2·pad + 1)
    uint16 with out[:, j, i] = number of events in padded rows < i and columns < j (mod 2¹⁶).

    The sums over pixels that FSS needs do not care about the orientation, and leaving the result transposed
    saves a copy."""
    n, h, w = events.shape
    out = np.zeros((n, h + 2 * pad + 1, w + 2 * pad + 1), np.uint16)
    out[:, pad + 1: pad + 1 + h, pad + 1: pad + 1 + w] = events
    # a Python loop adding whole contiguous row slabs is several times faster than np.cumsum here
    for i in range(pad + 2, out.shape[1]):
        out[:, i] += out[:, i - 1]
    out = np.ascontiguousarray(out.transpose(0, 2, 1))
    for j in range(pad + 2, out.shape[1]):
        out[:, j] += out[:, j - 1]
    return out


def window_counts(integral: np.ndarray, pad: int, scale: int) -> np.ndarray:
    """Number of events in the scale×scale window of every pixel, (N, W, H) int16 (transposed like the input),
    from `_integral_image`."""
    a, b = integral.shape[1] - 2 * pad - 1, integral.shape[2] - 2 * pad - 1
    before = scale // 2
    after = scale - 1 - before
    r0, r1 = pad - before, pad + after + 1
    counts = integral[:, r1: r1 + a, r1: r1 + b] - integral[:, r0: r0 + a, r1: r1 + b]
    counts -= integral[:, r1: r1 + a, r0: r0 + b]
    counts += integral[:, r0: r0 + a, r0: r0 + b]
    return counts.view(np.int16)


def fss_sums(forecast255: np.ndarray, truth255: np.ndarray, threshold: float,
             scales: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Numerator Σ(n_f − n_o)² and denominator Σn_f² + Σn_o² of FSS in window counts (fractions × s²).

    forecast255 (B, M, T, H, W), truth255 (B, T, H, W) on 0–255. Returns two int64 arrays (S, T), one row per
    scale; FSS = 1 − numerator / denominator (the s⁴ factors cancel).
    """
    b, m, t, h, w = forecast255.shape
    pad = max(scales)
    thr = np.float32(threshold)
    integral_f = _integral_image((forecast255 >= thr).reshape(b * m * t, h, w), pad)
    integral_o = _integral_image((truth255 >= thr).reshape(b * t, h, w), pad)
    numerator = np.zeros((len(scales), t), np.int64)
    denominator = np.zeros((len(scales), t), np.int64)
    for k, scale in enumerate(scales):
        n_f = window_counts(integral_f, pad, scale).astype(np.int32).reshape(b, m, t, w, h)
        n_o = window_counts(integral_o, pad, scale).astype(np.int32).reshape(b, 1, t, w, h)
        sq_o = np.square(n_o).sum(axis=(0, 1, 3, 4), dtype=np.int64)
        diff = n_f - n_o
        numerator[k] = np.square(diff, out=diff).sum(axis=(0, 1, 3, 4), dtype=np.int64)
        denominator[k] = np.square(n_f, out=n_f).sum(axis=(0, 1, 3, 4), dtype=np.int64) + m * sq_o
    return numerator, denominator


class FSS(StreamingScore):
    """Streaming FSS for every (threshold, scale), overall and per lead time.

    compute() → {"fss": {"16": {"1": v, "4": v, ...}, ...}, "per_lead_time": {"fss": {"16": {"1": [T], ...}}}}.
    """

    name = "fss"

    def __init__(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                 scales: Sequence[int] = DEFAULT_SCALES) -> None:
        super().__init__()
        self.thresholds = check_thresholds(thresholds)
        self.scales = check_scales(scales)

    def settings(self) -> dict:
        return {"thresholds": plain_thresholds(self.thresholds), "scales": list(self.scales)}

    def accumulate(self, forecast, truth) -> None:
        forecast, truth = check_pair(forecast, truth)
        self.accumulate_digital(to_digital(forecast), to_digital(truth))

    def accumulate_digital(self, forecast255: np.ndarray, truth255: np.ndarray) -> None:
        """Accumulate finite fields already on the 0–255 scale (the Scorer shares the conversion)."""
        shape = (len(self.thresholds), len(self.scales), forecast255.shape[2])
        self._allocate({"numerator": shape, "denominator": shape}, np.int64)
        for i, threshold in enumerate(self.thresholds):
            numerator, denominator = fss_sums(forecast255, truth255, threshold, self.scales)
            self._state["numerator"][i] += numerator
            self._state["denominator"][i] += denominator

    def _table(self, numerator, denominator):
        values = 1.0 - ratio(numerator, denominator)
        return {threshold_key(t): {str(s): to_json(values[i, k]) for k, s in enumerate(self.scales)}
                for i, t in enumerate(self.thresholds)}

    def compute(self) -> dict:
        self._require_data()
        num, den = self._state["numerator"], self._state["denominator"]
        return {"fss": self._table(num.sum(axis=-1), den.sum(axis=-1)),
                "per_lead_time": {"fss": self._table(num, den)}}
