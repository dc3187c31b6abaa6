"""Ensemble calibration: spread–skill ratio and rank (Talagrand) histogram, on the 0–1 scale.

Spread–skill (Fortin et al. 2014, "Why should ensemble spread match the RMSE of the ensemble mean?"):

    spread = sqrt(mean over pixels of the unbiased member variance  s² = Σ_m (x_m − x̄)² / (M − 1))
    rmse   = sqrt(mean over pixels of (x̄ − y)²)                      (error of the ensemble mean)
    ratio  = sqrt((M + 1) / M) · spread / rmse

For a calibrated ensemble (truth and members exchangeable draws of one distribution with variance σ²),
E[s²] = σ² and E[(x̄ − y)²] = σ²·(M + 1)/M, so the (M + 1)/M factor makes the expected ratio 1 for any
ensemble size; < 1 means under-dispersive (over-confident), > 1 over-dispersive. Needs M ≥ 2 (null otherwise).
Means are taken over all pixels, lead times and cases before the square roots.

Rank histogram: the rank of the observation among the M members (0 = below all, M = above all), M + 1 bins,
counted over every pixel. Ties (frequent: dry pixels where truth and several members are 0) are broken at
random — the rank is uniform over the tied positions — with a generator seeded by (seed, case index), so the
histogram does not depend on how cases are split into batches. A flat histogram indicates calibration; a U
shape under-dispersion; a dome over-dispersion.

Dry pixels dominate radar fields: where the observation and every member are near zero, the rank is a pure
tie-break draw and says nothing about calibration. `rank_min` (digital VIL, 0–255) leaves out the pixels where the
observation and all members are below it (the same idea as pysteps' `X_min`); 0 counts every pixel.
"""
from __future__ import annotations

import numpy as np

from prediff.errors import ConfigError, InputError

from .inputs import check_pair, to_digital
from .streaming import StreamingScore, ratio, to_json


class EnsembleScore(StreamingScore):
    """Streaming score of an ensemble forecast. `accumulate` validates the pair with `check_pair` and hands it to
    `accumulate_checked`, which subclasses implement; the ensemble size M is kept in the state ("members") and
    must stay the same across batches (`_check_members`).

    Constructor settings are passed to `__init__` by keyword (already checked); each is kept as an attribute of
    the same name and together they make up `settings()`."""

    def __init__(self, **settings) -> None:
        super().__init__()
        for key, value in settings.items():
            setattr(self, key, value)
        self._setting_names = tuple(settings)

    def settings(self) -> dict:
        return {key: getattr(self, key) for key in self._setting_names}

    def accumulate(self, forecast, truth) -> None:
        self.accumulate_checked(*check_pair(forecast, truth))

    def accumulate_checked(self, forecast: np.ndarray, truth: np.ndarray) -> None:
        """Accumulate arrays already validated by `check_pair` (float32 (B, M, T, H, W) and (B, T, H, W))."""
        raise NotImplementedError

    def _check_members(self, m: int) -> None:
        self._allocate({"members": ()}, np.int64)
        if self._state["members"] == 0:
            self._state["members"][...] = m
        elif self._state["members"] != m:
            raise InputError(f"{self.name}: this batch has {m} members, earlier batches had "
                             f"{int(self._state['members'])}")


class SpreadSkill(EnsembleScore):
    """Streaming spread–skill ratio, overall and per lead time.

    compute() → {"spread": v, "rmse": v, "ratio": v, "members": M,
                 "per_lead_time": {"spread": [T], "rmse": [T], "ratio": [T]}}; spread/ratio null for M = 1.
    """

    name = "spread_skill"

    def __init__(self) -> None:  # no settings: options are refused (TypeError) rather than kept
        super().__init__()

    def accumulate_checked(self, forecast: np.ndarray, truth: np.ndarray, mean: np.ndarray = None) -> None:
        """`mean` (B, 1, T, H, W): the member mean if the caller already has it."""
        b, m, t, h, w = forecast.shape
        self._check_members(m)
        self._allocate({"sum_variance": (t,), "sum_squared_error": (t,)})
        self._allocate({"count": (t,)}, np.int64)
        if mean is None:
            mean = forecast.mean(axis=1, keepdims=True)
        axes = (0, 1, 3, 4)
        if m > 1:
            deviation = forecast - mean
            np.square(deviation, out=deviation)
            self._state["sum_variance"] += deviation.sum(axis=axes, dtype=np.float64) / (m - 1)
        error = mean - truth[:, None]
        self._state["sum_squared_error"] += np.square(error).sum(axis=axes, dtype=np.float64)
        self._state["count"] += b * h * w

    def compute(self) -> dict:
        self._require_data()
        s = self._state
        m = int(s["members"])
        count = s["count"]

        def triple(variance_sum, error_sum, n):
            rmse = np.sqrt(ratio(error_sum, n))
            if m < 2:
                nan = np.full_like(rmse, np.nan)
                return nan, rmse, nan
            spread = np.sqrt(ratio(variance_sum, n))
            return spread, rmse, np.sqrt((m + 1) / m) * ratio(spread, rmse)

        spread, rmse, rat = triple(s["sum_variance"].sum(), s["sum_squared_error"].sum(), count.sum())
        lead_spread, lead_rmse, lead_ratio = triple(s["sum_variance"], s["sum_squared_error"], count)
        return {"spread": to_json(spread), "rmse": to_json(rmse), "ratio": to_json(rat), "members": m,
                "per_lead_time": {"spread": to_json(lead_spread), "rmse": to_json(lead_rmse),
                                  "ratio": to_json(lead_ratio)}}


def observation_ranks(forecast: np.ndarray, truth: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Rank of the truth among the members, ties broken by `uniform` draws in [0, 1).

    forecast (B, M, T, H, W), truth and uniform (B, T, H, W). Returns int64 ranks 0..M of shape (B, T, H, W):
    (number of members below the truth) + floor(u · (number of members equal to it + 1)).
    """
    y = truth[:, None]
    below = (forecast < y).sum(axis=1)
    ties = (forecast == y).sum(axis=1)
    return below + (uniform * (ties + 1)).astype(np.int64)


class RankHistogram(EnsembleScore):
    """Streaming rank histogram with seeded random tie-breaking, overall and per lead time.

    seed: tie-breaking draws; rank_min: digital VIL (0–255) below which a pixel whose observation and members all
    lie is left out (0: every pixel counts).
    compute() → {"rank_histogram": [M + 1 counts], "members": M, "rank_min": v,
                 "per_lead_time": {"rank_histogram": [T][M + 1]}}.
    """

    name = "rank_histogram"
    seed: int
    rank_min: float

    def __init__(self, seed: int = 0, rank_min: float = 0.0) -> None:
        rank_min = float(rank_min)
        if not np.isfinite(rank_min) or rank_min < 0:
            raise ConfigError(f"rank_min must be a digital VIL value >= 0, got {rank_min!r}")
        super().__init__(seed=int(seed), rank_min=rank_min)

    def accumulate_checked(self, forecast: np.ndarray, truth: np.ndarray) -> None:
        b, m, t = forecast.shape[:3]
        self._check_members(m)
        self._allocate({"counts": (t, m + 1)}, np.int64)
        self._allocate({"cases": ()}, np.int64)
        first = int(self._state["cases"])
        uniform = np.stack([np.random.default_rng([self.seed, first + i]).random(truth.shape[1:])
                            for i in range(b)])
        ranks = observation_ranks(forecast, truth, uniform)
        index = ranks + np.arange(t, dtype=np.int64).reshape(1, t, 1, 1) * (m + 1)
        if self.rank_min > 0:
            # the same float32 `x · 255 >= τ` comparison as the contingency table (`inputs.to_digital`)
            level = np.float32(self.rank_min)
            wet = (to_digital(truth) >= level) | (to_digital(forecast) >= level).any(axis=1)
            index = index[wet]
        self._state["counts"] += np.bincount(index.ravel(), minlength=t * (m + 1)).reshape(t, m + 1)
        self._state["cases"] += b

    def compute(self) -> dict:
        self._require_data()
        counts = self._state["counts"]
        return {"rank_histogram": counts.sum(axis=0).tolist(), "members": int(self._state["members"]),
                "rank_min": self.rank_min, "per_lead_time": {"rank_histogram": counts.tolist()}}
