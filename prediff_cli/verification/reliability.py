"""Verification of the exceedance probabilities: Brier score with its decomposition, reliability diagram, ROC area.

The probability that a pixel reaches threshold τ is the fraction of members at or above it, p = k/M (`exceedance`;
the same `value · 255 >= τ` event as the CSI), so it takes only the M + 1 values k/M. The score keeps, per
threshold and per value k, the number of pixels N_k that got p = k/M and the number O_k of them where the event
was observed (summed over cases, lead times and pixels). From these, with N = Σ N_k, ō_k = O_k / N_k and
ō = Σ O_k / N:

    Brier score   BS  = (1/N) Σ_k [N_k p_k² − 2 p_k O_k + O_k]          (mean of (p − o)²)
    reliability   REL = (1/N) Σ_k N_k (p_k − ō_k)²                        (0 = reliable)
    resolution    RES = (1/N) Σ_k N_k (ō_k − ō)²                          (larger = better)
    uncertainty   UNC = ō (1 − ō)                                          (of the observations alone)

and BS = REL − RES + UNC holds exactly (Murphy 1973), because every forecast in a bin has the same value. The
Brier skill score against climatology (the sample frequency ō) is 1 − BS / UNC.

The ROC curve takes "p ≥ k/M" as the yes forecast for k = M … 1: hit rate Σ_{j≥k} O_j / Σ O against false-alarm
rate Σ_{j≥k} (N_j − O_j) / Σ (N − O), from (0, 0) to (1, 1); its area (trapezoids) is 0.5 for no skill and 1 for
a perfect separation. Values that need an event (or a non-event) that never occurred are null.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .categorical import DEFAULT_THRESHOLDS, check_thresholds, exceedance_levels, plain_thresholds, threshold_key
from .ensemble import EnsembleScore
from .inputs import to_digital
from .streaming import ratio, to_json


def brier_decomposition(count, events) -> dict:
    """Brier score and its parts from the bin counts of one threshold: count N_k and observed events O_k, each
    (M + 1,) for the probabilities k/M. Returns {"brier", "reliability", "resolution", "uncertainty",
    "brier_skill", "roc_area", "event_frequency"} (floats, null where undefined)."""
    count = np.asarray(count, np.float64)
    events = np.asarray(events, np.float64)
    p = np.linspace(0.0, 1.0, count.size)
    n = count.sum()
    if n == 0:
        keys = ("brier", "reliability", "resolution", "uncertainty", "brier_skill", "roc_area", "event_frequency")
        return {key: None for key in keys}
    base = events.sum() / n
    observed = ratio(events, count)  # ō_k, NaN for empty bins (they carry no weight below)
    filled = count > 0
    brier = float((count * p * p - 2.0 * p * events + events).sum() / n)
    reliability = float((count[filled] * (p[filled] - observed[filled]) ** 2).sum() / n)
    resolution = float((count[filled] * (observed[filled] - base) ** 2).sum() / n)
    uncertainty = float(base * (1.0 - base))
    return {"brier": brier, "reliability": reliability, "resolution": resolution, "uncertainty": uncertainty,
            "brier_skill": to_json(1.0 - brier / uncertainty) if uncertainty > 0 else None,
            "roc_area": roc_area(count, events), "event_frequency": float(base)}


def roc_points(count, events):
    """(false-alarm rates, hit rates) of the decisions "p ≥ k/M", k = M … 0 (ending at (1, 1)), from (0, 0);
    None where the events or non-events never occurred."""
    count = np.asarray(count, np.float64)
    events = np.asarray(events, np.float64)
    non_events = count - events
    if events.sum() == 0 or non_events.sum() == 0:
        return None
    hit = np.concatenate([[0.0], np.cumsum(events[::-1]) / events.sum()])
    false_alarm = np.concatenate([[0.0], np.cumsum(non_events[::-1]) / non_events.sum()])
    return false_alarm, hit


def roc_area(count, events):
    """Area under the ROC curve of `roc_points` (trapezoids); None where it is undefined."""
    points = roc_points(count, events)
    if points is None:
        return None
    x, y = points
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


class ExceedanceReliability(EnsembleScore):
    """Streaming Brier score, reliability diagram and ROC area of the exceedance probabilities, per threshold.

    accumulate(forecast (B, M, T, H, W), truth (B, T, H, W)), 0–1 VIL; thresholds on the 0–255 scale.
    compute() → {"members": M, "thresholds": [...], "16": {"brier", "reliability", "resolution", "uncertainty",
    "brier_skill", "roc_area", "event_frequency", "diagram": {"probability": [M + 1], "observed_frequency":
    [M + 1] (null for empty bins), "count": [M + 1]}}, ...}.
    """

    name = "reliability"
    thresholds: tuple

    def __init__(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> None:
        super().__init__(thresholds=plain_thresholds(check_thresholds(thresholds)))

    def accumulate_checked(self, forecast: np.ndarray, truth: np.ndarray) -> None:
        self.accumulate_digital(to_digital(forecast), to_digital(truth))

    def accumulate_digital(self, forecast255: np.ndarray, truth255: np.ndarray) -> None:
        """Fields already on the 0–255 scale (the Scorer shares the conversion), validated."""
        m = forecast255.shape[1]
        levels = len(self.thresholds)
        self._check_members(m)
        self._allocate({"count": (levels, m + 1), "events": (levels, m + 1)}, np.int64)
        member_levels = exceedance_levels(forecast255, self.thresholds)  # (B, M, T, H, W): thresholds reached
        truth_levels = exceedance_levels(truth255, self.thresholds)
        for j in range(levels):
            k = (member_levels > j).sum(axis=1).ravel()  # members at or above threshold j, per pixel
            observed = (truth_levels > j).ravel()
            self._state["count"][j] += np.bincount(k, minlength=m + 1)
            self._state["events"][j] += np.bincount(k[observed], minlength=m + 1)

    def compute(self) -> dict:
        self._require_data()
        m = int(self._state["members"])
        out = {"members": m, "thresholds": list(self.thresholds)}
        p = np.linspace(0.0, 1.0, m + 1)
        for j, threshold in enumerate(self.thresholds):
            count, events = self._state["count"][j], self._state["events"][j]
            entry = brier_decomposition(count, events)
            entry["diagram"] = {"probability": to_json(p), "observed_frequency": to_json(ratio(events, count)),
                                "count": count.tolist()}
            out[threshold_key(threshold)] = entry
        return out
