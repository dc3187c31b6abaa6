"""Probability of exceedance of an ensemble: the fraction of members at or above each threshold, per pixel.

The same rule as pysteps' `ensemblestats.excprob(X, thr, ignore_nan=False)` except that a pixel counts at
value ≥ threshold (pysteps uses >), so that the probability matches the CSI's event definition here
(`categorical.py`: forecast ≥ threshold).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def exceedance_probability(members: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """members (M, T, H, W) on any scale, thresholds (K,) on the same scale → (K, T, H, W) float32 in [0, 1]:
    the fraction of the M members whose value is ≥ the threshold (NaN members count as below)."""
    members = np.asarray(members)
    if members.ndim != 4 or members.shape[0] < 1:
        raise ValueError(f"members must be (M, T, H, W) with M >= 1, got {members.shape}")
    out = np.empty((len(thresholds),) + members.shape[1:], np.float32)
    for k, threshold in enumerate(thresholds):
        out[k] = np.count_nonzero(members >= threshold, axis=0) / members.shape[0]
    return out
