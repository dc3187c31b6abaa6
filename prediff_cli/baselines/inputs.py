"""Checks of the context frames handed to a baseline."""
from __future__ import annotations

import numpy as np

from prediff.errors import InputError


def check_context(context, *, batched: bool, min_frames: int = 1) -> np.ndarray:
    """context (T_in, H, W) — or (B, T_in, H, W) when batched — of finite VIL on 0–1, as float32."""
    context = np.asarray(context)
    rank, layout = (4, "(B, T_in, H, W)") if batched else (3, "(T_in, H, W)")
    if context.ndim != rank:
        raise InputError(f"context must be {layout}, got shape {context.shape}")
    if context.shape[-3] < min_frames or context.size == 0:
        raise InputError(f"context needs at least {min_frames} frame(s) with pixels, got shape {context.shape}")
    context = context.astype(np.float32, copy=False)
    if not np.isfinite(context).all():
        raise InputError("context contains NaN or infinite values")
    return context


def check_leads(n_leads) -> int:
    if isinstance(n_leads, bool) or int(n_leads) != n_leads or int(n_leads) < 1:
        raise InputError(f"n_leads must be a positive integer, got {n_leads!r}")
    return int(n_leads)
