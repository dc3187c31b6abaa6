"""Checks and layout of the arrays handed to the streaming scores.

Every streaming score takes `forecast` (B, M, T, H, W) — cases, ensemble members (M = 1 for a deterministic
forecast), lead times, rows, columns — and `truth` (B, T, H, W), both VIL on the 0–1 scale (digital VIL / 255).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from prediff.errors import InputError

VIL_SCALE = 255.0


def check_pair(forecast, truth, *, allow_nan: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Validate and return (forecast, truth) as float32 arrays.

    A 4-D forecast (B, T, H, W) is taken as deterministic and gets a member axis of length 1. Raises InputError
    (one line) on wrong ranks, mismatched shapes, empty arrays or non-finite values (unless allow_nan).
    """
    forecast = np.asarray(forecast)
    truth = np.asarray(truth)
    if forecast.ndim == 4:
        forecast = forecast[:, None]
    if forecast.ndim != 5:
        raise InputError(f"forecast must be (B, M, T, H, W) or (B, T, H, W), got shape {forecast.shape}")
    if truth.ndim != 4:
        raise InputError(f"truth must be (B, T, H, W), got shape {truth.shape}")
    b, m, t, h, w = forecast.shape
    if truth.shape != (b, t, h, w):
        raise InputError(f"forecast {forecast.shape} (B, M, T, H, W) and truth {truth.shape} (B, T, H, W) "
                         "disagree on B, T, H or W")
    if forecast.size == 0:
        raise InputError(f"empty forecast of shape {forecast.shape}")
    for name, arr in (("forecast", forecast), ("truth", truth)):
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputError(f"{name} must be floating-point VIL on the 0–1 scale (digital VIL / 255), "
                             f"got dtype {arr.dtype}")
    forecast = forecast.astype(np.float32, copy=False)
    truth = truth.astype(np.float32, copy=False)
    if not allow_nan:
        for name, arr in (("forecast", forecast), ("truth", truth)):
            if not np.isfinite(arr).all():
                raise InputError(f"{name} contains NaN or infinite values; scores need finite VIL on the 0–1 scale")
    return forecast, truth


def check_scale(truth: np.ndarray) -> None:
    """InputError if the observations are clearly not on the 0–1 scale (e.g. digital 0–255 values passed as is).
    Forecasts are not checked: a model may overshoot slightly and is scored as is (not clipped)."""
    low, high = float(truth.min()), float(truth.max())
    if low < -0.5 or high > 1.5:
        raise InputError(f"truth ranges over [{low:g}, {high:g}]; expected VIL on the 0–1 scale "
                         "(divide digital VIL by 255)")


def to_digital(x01: np.ndarray) -> np.ndarray:
    """0–1 VIL → 0–255 digital VIL in float32, not clipped (the official `x * 255` in float32)."""
    return np.asarray(x01, dtype=np.float32) * np.float32(VIL_SCALE)
