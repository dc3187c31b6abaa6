"""Categorical (yes/no) scores of VIL exceedance: hits, misses, false alarms → CSI, POD, SUCR, bias.

Same definitions as the official PreDiff metric `SEVIRSkillScore` (`datasets/sevir/evaluation.py`), mode "0":

* both fields are brought to the 0–255 digital scale (`x * 255` in float32, not clipped) and, for the pooled
  variants, max-pooled with kernel = stride = s (see `pooling`);
* per threshold τ an event is `value >= τ`; where either field is NaN neither counts;
* hits h, misses m and false alarms f are summed over **every** case, member, lead time and pixel of the whole
  evaluation (not averaged per batch); for an ensemble each member is one forecast scored against the same truth;
* from the totals, with eps = 1e-4: POD = h/(h+m+eps), SUCR = h/(h+f+eps), CSI = h/(h+m+f+eps),
  frequency bias = (h+f)/(h+m+eps), and the official "bias" ((h+f)/(h+m+eps) / ln 2)², reported here as
  `bias_official`; "avg" is the plain mean over thresholds (for CSI: CSI-M).

One departure: POD and both biases divide by the observed events h + m; where no event was observed at a threshold
(h + m = 0) they are undefined and reported as null (the official code's eps would turn a handful of false alarms
into a bias of ~10⁴), and their "avg" is the mean over the thresholds where they are defined (`undefined_scores`
names the thresholds left out, for a note).

The counts are also kept per lead time (axis T), which gives every score per lead for free.
"""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import numpy as np

from prediff.errors import ConfigError

from .inputs import check_pair, to_digital
from .pooling import check_pool, max_pool
from .streaming import StreamingScore, ratio, to_json

DEFAULT_THRESHOLDS = (16, 74, 133, 160, 181, 219)
DEFAULT_EPS = 1e-4
SCORES = ("csi", "pod", "sucr", "bias", "bias_official")


def check_thresholds(thresholds) -> Tuple[float, ...]:
    """Sorted, de-duplicated thresholds on the 0–255 scale; ConfigError if empty or not finite numbers."""
    try:
        values = sorted({float(t) for t in thresholds})
    except (TypeError, ValueError):
        raise ConfigError(f"thresholds must be numbers on the 0–255 scale, got {thresholds!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"thresholds must be a non-empty list of finite numbers, got {thresholds!r}")
    return tuple(values)


def plain_thresholds(thresholds) -> list:
    """Thresholds for JSON: 16 rather than 16.0 where a threshold is a whole number."""
    return [int(t) if float(t).is_integer() else float(t) for t in thresholds]


def threshold_key(threshold: float) -> str:
    """"16" for 16.0, "16.5" for 16.5: the key of a threshold in the score dicts."""
    return str(int(threshold)) if float(threshold).is_integer() else f"{threshold:g}"


def exceedance_levels(values255: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Number of thresholds each value reaches (`value >= τ`), 0..L, as a small unsigned int array; NaN → 0.

    Comparing against each threshold is several times faster than `np.searchsorted` for the few thresholds
    used here, and gives the official `>=` exactly (float32 values against float32 thresholds)."""
    dtype = np.uint8 if len(thresholds) < 255 else np.uint16
    levels = np.zeros(values255.shape, dtype)
    for threshold in np.asarray(thresholds, values255.dtype):
        levels += values255 >= threshold
    return levels


def contingency_counts(forecast255: np.ndarray, truth255: np.ndarray,
                       thresholds: Sequence[float]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hits, misses and false alarms per threshold and lead time.

    forecast255: (B, M, T, H, W), truth255: (B, T, H, W), digital VIL (0–255). thresholds ascending (L,).
    Returns three int64 arrays (L, T), summed over cases, members and pixels.

    All thresholds are counted in one pass: each value is replaced by its level (the number of thresholds it
    reaches), the joint histogram of (lead, forecast level, truth level) is built with one bincount, and the
    counts for τ_j are tail sums of that histogram.
    """
    n_levels = len(thresholds) + 1
    t_len = forecast255.shape[2]
    n_bins = t_len * n_levels * n_levels
    index_dtype = np.uint16 if n_bins <= np.iinfo(np.uint16).max else np.int64
    level_f = exceedance_levels(forecast255, thresholds).astype(index_dtype)
    level_t = exceedance_levels(truth255, thresholds).astype(index_dtype)[:, None]
    # the official code counts neither field where one of them is NaN (a NaN already has level 0 on its side)
    nan_t = np.isnan(truth255)
    if nan_t.any():
        level_f[np.broadcast_to(nan_t[:, None], level_f.shape)] = 0
    nan_f = np.isnan(forecast255)
    if nan_f.any():
        level_t = np.where(nan_f, 0, level_t).astype(index_dtype)
    lead = (np.arange(t_len) * n_levels * n_levels).astype(index_dtype).reshape(1, 1, t_len, 1, 1)
    joint = level_f * index_dtype(n_levels)
    joint += lead
    joint += level_t
    hist = np.bincount(joint.ravel(), minlength=n_bins).reshape(t_len, n_levels, n_levels)
    # tail[t, a, b] = number of pixels with forecast level >= a and truth level >= b
    tail = hist[:, ::-1, ::-1].cumsum(axis=1).cumsum(axis=2)[:, ::-1, ::-1]
    j = np.arange(1, n_levels)
    hits = tail[:, j, j]
    forecast_yes = tail[:, j, 0]
    truth_yes = tail[:, 0, j]
    return (hits.T.astype(np.int64), (truth_yes - hits).T.astype(np.int64),
            (forecast_yes - hits).T.astype(np.int64))


def csi(hits, misses, fas, eps: float = DEFAULT_EPS):
    """Critical success index h / (h + m + f + eps)."""
    hits = np.asarray(hits, np.float64)
    return hits / (hits + misses + fas + eps)


def pod(hits, misses, fas, eps: float = DEFAULT_EPS):
    """Probability of detection h / (h + m + eps)."""
    hits = np.asarray(hits, np.float64)
    return hits / (hits + misses + eps)


def sucr(hits, misses, fas, eps: float = DEFAULT_EPS):
    """Success ratio (1 − false-alarm ratio) h / (h + f + eps)."""
    hits = np.asarray(hits, np.float64)
    return hits / (hits + fas + eps)


def frequency_bias(hits, misses, fas, eps: float = DEFAULT_EPS):
    """Standard frequency bias (h + f) / (h + m + eps): forecast events per observed event (1 = unbiased)."""
    hits = np.asarray(hits, np.float64)
    return (hits + fas) / (hits + misses + eps)


def bias_official(hits, misses, fas, eps: float = DEFAULT_EPS):
    """The official code's "bias": (frequency bias / ln 2)² (not 1 for an unbiased forecast)."""
    return (frequency_bias(hits, misses, fas, eps) / math.log(2.0)) ** 2


SCORE_FUNCTIONS = {"csi": csi, "pod": pod, "sucr": sucr, "bias": frequency_bias, "bias_official": bias_official}
#: scores whose denominator is the number of observed events: undefined (null) where none was observed
PER_OBSERVED_EVENT = ("pod", "bias", "bias_official")


def scores_from_counts(hits, misses, fas, thresholds: Sequence[float], eps: float = DEFAULT_EPS,
                       names: Sequence[str] = SCORES) -> Dict[str, dict]:
    """{score: {threshold key: value, "avg": mean over thresholds}} from counts of shape (L,) or (L, T);
    with (L, T) counts every value is a list over lead times. POD and the biases are null where no event was
    observed (h + m = 0); their "avg" is the mean over the thresholds where they are defined (null if none)."""
    observed = np.asarray(hits) + np.asarray(misses)
    out = {}
    for name in names:
        values = SCORE_FUNCTIONS[name](hits, misses, fas, eps)
        if name in PER_OBSERVED_EVENT:
            values = np.where(observed > 0, values, np.nan)
        entry = {threshold_key(t): to_json(v) for t, v in zip(thresholds, values)}
        defined = np.isfinite(values)
        total = np.where(defined, values, 0.0).sum(axis=0)
        entry["avg"] = to_json(ratio(total, defined.sum(axis=0)))
        out[name] = entry
    return out


def undefined_scores(hits, misses, thresholds: Sequence[float]) -> list:
    """Threshold keys at which no event was observed (POD and bias null there); counts of shape (L,)."""
    observed = np.asarray(hits) + np.asarray(misses)
    return [threshold_key(t) for t, n in zip(thresholds, observed) if n == 0]


class Contingency(StreamingScore):
    """Streaming contingency table at several thresholds, optionally after s×s max pooling.

    accumulate(forecast (B, M, T, H, W) or (B, T, H, W), truth (B, T, H, W)), both on 0–1.
    compute() → {"csi"|"pod"|"sucr"|"bias"|"bias_official": {"16": v, ..., "avg": v},
                 "counts": {"hits"|"misses"|"fas": [per threshold]},
                 "per_lead_time": {score: {"16": [per lead], ..., "avg": [per lead]}}}.
    """

    name = "contingency"

    def __init__(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, pool: int = 1,
                 eps: float = DEFAULT_EPS) -> None:
        super().__init__()
        self.thresholds = check_thresholds(thresholds)
        self.pool = check_pool(pool)
        self.eps = float(eps)

    def settings(self) -> dict:
        return {"thresholds": plain_thresholds(self.thresholds), "pool": self.pool, "eps": self.eps}

    def accumulate(self, forecast, truth) -> None:
        forecast, truth = check_pair(forecast, truth, allow_nan=True)
        self.accumulate_digital(max_pool(to_digital(forecast), self.pool), max_pool(to_digital(truth), self.pool))

    def accumulate_digital(self, forecast255: np.ndarray, truth255: np.ndarray) -> None:
        """Accumulate fields already on the 0–255 scale and already pooled (the Scorer shares that work)."""
        shape = (len(self.thresholds), forecast255.shape[2])
        self._allocate({"hits": shape, "misses": shape, "fas": shape}, np.int64)
        hits, misses, fas = contingency_counts(forecast255, truth255, self.thresholds)
        self._state["hits"] += hits
        self._state["misses"] += misses
        self._state["fas"] += fas

    def counts(self, per_lead: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hits, misses, fas), each (L,) or, with per_lead, (L, T); copies of the totals."""
        self._require_data()
        arrays = tuple(self._state[k] for k in ("hits", "misses", "fas"))
        return tuple(a.copy() for a in arrays) if per_lead else tuple(a.sum(axis=1) for a in arrays)

    def compute(self) -> dict:
        hits, misses, fas = self.counts()
        out = scores_from_counts(hits, misses, fas, self.thresholds, self.eps)
        out["counts"] = {"hits": hits.tolist(), "misses": misses.tolist(), "fas": fas.tolist()}
        out["per_lead_time"] = scores_from_counts(*self.counts(per_lead=True), self.thresholds, self.eps)
        return out
