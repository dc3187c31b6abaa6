"""Fréchet video distance (FVD) between forecast and observed sequences, streamed over an evaluation.

As the official PreDiff evaluation computes it (`prediff.evaluation.fvd.FrechetVideoDistance`, after
torchmetrics' FID): every observed sequence is one "real" sample and every forecast sequence (each ensemble
member) one "fake" sample; a sample is the 400 I3D logits of the sequence (`video_features`). Only sums are kept,
in float64: Σx and Σxxᵀ and the count per set. At the end, with means μ and unbiased covariances Σ (n − 1),

    FVD = ‖μ_r − μ_f‖² + tr Σ_r + tr Σ_f − 2 Σ_i Re √λ_i(Σ_r Σ_f)

(λ_i the eigenvalues of the product, square roots taken in the complex plane). Lower is better; it needs at least
two sequences in each set. The score takes features, not videos, so it stays NumPy-only and resumable.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from prediff.errors import InputError

from .streaming import StreamingScore, to_json
from .video_features import NUM_FEATURES

SETS = ("real", "fake")


def frechet_distance(mean_a, cov_a, mean_b, cov_b) -> float:
    """Fréchet distance of two Gaussians (float64; torchmetrics' `_compute_fid` formula)."""
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    eig = np.linalg.eigvals(cov_a @ cov_b).astype(np.complex128)
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(eig).real.sum())


def gaussian(total, cross, count: int):
    """Mean and unbiased covariance from Σx, Σxxᵀ and n (the official streaming form)."""
    mean = total / count
    return mean, (cross - count * np.outer(mean, mean)) / (count - 1)


class FVD(StreamingScore):
    """Streaming FVD of features: `accumulate_features(real=(n, F), fake=(m, F))`, either side optional.

    compute() → {"fvd": float or None (fewer than 2 sequences in a set), "n_real": n, "n_fake": m}."""

    name = "fvd"

    def __init__(self, num_features: int = NUM_FEATURES) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def settings(self) -> dict:
        return {"num_features": self.num_features}

    def _check(self, features, label: str) -> np.ndarray:
        arr = np.asarray(features, np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.num_features:
            raise InputError(f"FVD {label} features must be (n, {self.num_features}), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise InputError(f"FVD {label} features contain NaN or infinite values")
        return arr

    def accumulate_features(self, real=None, fake=None) -> None:
        f = self.num_features
        for label, features in zip(SETS, (real, fake)):
            if features is None:
                continue
            arr = self._check(features, label)
            self._allocate({f"{label}_sum": (f,), f"{label}_cross": (f, f)})
            self._allocate({f"{label}_count": ()}, np.int64)
            self._state[f"{label}_sum"] += arr.sum(axis=0)
            self._state[f"{label}_cross"] += arr.T @ arr
            self._state[f"{label}_count"] += arr.shape[0]

    def count(self, label: str) -> int:
        value = self._state.get(f"{label}_count")
        return 0 if value is None else int(value)

    def value(self) -> Optional[float]:
        """The FVD, or None while a set holds fewer than two sequences."""
        if min(self.count(label) for label in SETS) < 2:
            return None
        s = self._state
        mean_r, cov_r = gaussian(s["real_sum"], s["real_cross"], self.count("real"))
        mean_f, cov_f = gaussian(s["fake_sum"], s["fake_cross"], self.count("fake"))
        return frechet_distance(mean_r, cov_r, mean_f, cov_f)

    def compute(self) -> dict:
        value = self.value()
        return {"fvd": None if value is None else to_json(value), "n_real": self.count("real"),
                "n_fake": self.count("fake")}
