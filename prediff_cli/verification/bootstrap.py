"""Confidence intervals of the pooled scores: a bootstrap over events, paired between forecasts.

The cases of one evaluation are not independent: the sequences cut from one storm event share its weather, so a
resample of single cases would understate the uncertainty. Here the *events* are resampled: each of `resamples`
draws picks E events with replacement out of the E events scored (all cases of a picked event come along, as many
times as it was picked), the contingency counts and CRPS sums of the picked cases are added up and the scores
recomputed exactly as for the whole evaluation (CSI per threshold = h / (h + m + f + eps), CSI-M their mean, CRPS
= Σ CRPS / Σ pixels). The 95 % interval is the 2.5th–97.5th percentile of the draws (percentile bootstrap).

Differences are paired: the same draws are applied to both forecasts (they were scored on the same cases), and
the interval is that of the per-draw difference, which removes the case-mix variation both share. A difference
whose interval excludes 0 is unlikely to come from the case mix alone.

The draws come from `numpy.random.default_rng(seed)`, so the intervals are reproducible; with fewer than 2 events
there is nothing to resample and no interval is given.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from prediff.errors import ConfigError, InputError

from .cases import COUNT_KEYS, CaseTable
from .categorical import threshold_key

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
MAX_RESAMPLES = 100_000
CHUNK = 500  # draws per block: bounds the (draws × events) weight matrix
NOT_ENOUGH_EVENTS = ("no confidence intervals: they resample events and the cases come from fewer than 2 events "
                     "(score a split, --data DIR --split test, for them)")


def check_bootstrap(resamples: int, level: float) -> Tuple[int, float]:
    """ConfigError unless 1 ≤ resamples ≤ 100000 and 0 < level < 1."""
    if isinstance(resamples, bool) or int(resamples) != resamples or not 1 <= int(resamples) <= MAX_RESAMPLES:
        raise ConfigError(f"bootstrap resamples must be an integer from 1 to {MAX_RESAMPLES}, got {resamples!r}")
    if not 0.0 < float(level) < 1.0:
        raise ConfigError(f"the interval level must lie between 0 and 1 (e.g. 0.95), got {level!r}")
    return int(resamples), float(level)


def _by_event(table: CaseTable):
    """Event names in order of first appearance and the per-event sums: counts (3, E, L), crps (E,), pixels (E,)."""
    names, index = np.unique(table.events, return_inverse=True)
    first = np.array([np.flatnonzero(index == e)[0] for e in range(len(names))])
    order = np.argsort(first)
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    index = remap[index]
    n_events = len(names)
    counts = np.stack([np.stack([np.bincount(index, weights=getattr(table, k)[:, j], minlength=n_events)
                                 for j in range(len(table.thresholds))], axis=1) for k in COUNT_KEYS])
    crps = np.bincount(index, weights=table.crps_sum, minlength=n_events)
    pixels = np.bincount(index, weights=table.pixels.astype(np.float64), minlength=n_events)
    return names[order], counts, crps, pixels


def _statistics(counts: np.ndarray, crps: np.ndarray, pixels: np.ndarray, eps: float) -> Dict[str, np.ndarray]:
    """counts (3, ..., L), crps and pixels (...) summed → {"csi": (..., L), "avg": (...), "crps": (...)}."""
    hits, misses, fas = counts
    csi = hits / (hits + misses + fas + eps)
    return {"csi": csi, "avg": csi.mean(axis=-1), "crps": crps / pixels}


def _draws(tables, resamples: int, seed: int):
    """Per-draw statistics of each table, on shared event draws: [{"csi": (R, L), "avg": (R,), "crps": (R,)}]."""
    per_event = [_by_event(t) for t in tables]
    n_events = len(per_event[0][0])
    rng = np.random.default_rng(seed)
    out = [{"csi": [], "avg": [], "crps": []} for _ in tables]
    for start in range(0, resamples, CHUNK):
        r = min(CHUNK, resamples - start)
        picks = rng.integers(0, n_events, size=(r, n_events))
        weights = np.bincount((picks + np.arange(r)[:, None] * n_events).ravel(),
                              minlength=r * n_events).reshape(r, n_events).astype(np.float64)
        for stats, (_, counts, crps, pixels), table in zip(out, per_event, tables):
            drawn = _statistics(np.einsum("re,kel->krl", weights, counts), weights @ crps, weights @ pixels,
                                table.eps)
            for key, value in drawn.items():
                stats[key].append(value)
    return [{key: np.concatenate(value) for key, value in stats.items()} for stats in out]


def _bounds(samples: np.ndarray, level: float) -> np.ndarray:
    tail = (1.0 - level) / 2.0
    return np.quantile(samples, [tail, 1.0 - tail], axis=0)


def _events(table: CaseTable) -> int:
    return len(set(np.asarray(table.events).tolist()))


def bootstrap_intervals(table: CaseTable, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                        level: float = DEFAULT_LEVEL) -> Optional[dict]:
    """Intervals of one forecast's CSI per threshold, CSI-M and CRPS; None with fewer than 2 events.

    Returns {"level", "resamples", "seed", "events", "cases", "csi": {"16": [lo, hi], ..., "avg": [lo, hi]},
    "crps": [lo, hi]}."""
    resamples, level = check_bootstrap(resamples, level)
    if _events(table) < 2:
        return None
    (draws,) = _draws([table], resamples, seed)
    csi = _bounds(draws["csi"], level)
    out = {"level": level, "resamples": resamples, "seed": int(seed), "events": _events(table),
           "cases": len(table), "csi": {}}
    for j, threshold in enumerate(table.thresholds):
        out["csi"][threshold_key(threshold)] = [float(csi[0, j]), float(csi[1, j])]
    out["csi"]["avg"] = [float(v) for v in _bounds(draws["avg"], level)]
    out["crps"] = [float(v) for v in _bounds(draws["crps"], level)]
    return out


def _check_paired(a: CaseTable, b: CaseTable) -> None:
    if len(a) != len(b) or not np.array_equal(np.asarray(a.events, str), np.asarray(b.events, str)):
        raise InputError("the two evaluations were not made on the same cases (events and case order differ); a "
                         "paired comparison needs the same --data, --split and --limit")
    if tuple(a.thresholds) != tuple(b.thresholds) or a.eps != b.eps:
        raise InputError(f"the two evaluations used other thresholds or eps ({list(a.thresholds)}, {a.eps} vs "
                         f"{list(b.thresholds)}, {b.eps})")
    if not np.array_equal(a.pixels, b.pixels):
        raise InputError("the two evaluations scored cases of other sizes")


def _difference_entry(value: float, samples: np.ndarray, level: float) -> dict:
    lo, hi = (float(v) for v in _bounds(samples, level))
    return {"value": float(value), "interval": [lo, hi], "excludes_zero": bool(lo > 0.0 or hi < 0.0)}


def paired_difference(a: CaseTable, b: CaseTable, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                      level: float = DEFAULT_LEVEL) -> Optional[dict]:
    """The difference a − b of CSI per threshold, CSI-M and CRPS with its paired bootstrap interval.

    `a` and `b` are the per-case results of two forecasts on the same cases (e.g. `load_case_tables` of two
    `prediff score` outputs, or the model and a baseline of one). Positive CSI and negative CRPS differences
    favour `a`. Returns None with fewer than 2 events, else {"level", "resamples", "seed", "events",
    "csi": {"16": {"value", "interval": [lo, hi], "excludes_zero"}, ..., "avg": {...}}, "crps": {...}}.
    InputError if the two were not scored on the same cases."""
    resamples, level = check_bootstrap(resamples, level)
    _check_paired(a, b)
    if _events(a) < 2:
        return None
    draws_a, draws_b = _draws([a, b], resamples, seed)
    whole = [_statistics(np.stack([getattr(t, k).sum(axis=0) for k in COUNT_KEYS]).astype(np.float64),
                         t.crps_sum.sum(), float(t.pixels.sum()), t.eps) for t in (a, b)]
    out = {"level": level, "resamples": resamples, "seed": int(seed), "events": _events(a), "csi": {}}
    for j, threshold in enumerate(a.thresholds):
        out["csi"][threshold_key(threshold)] = _difference_entry(
            whole[0]["csi"][j] - whole[1]["csi"][j], draws_a["csi"][:, j] - draws_b["csi"][:, j], level)
    out["csi"]["avg"] = _difference_entry(whole[0]["avg"] - whole[1]["avg"], draws_a["avg"] - draws_b["avg"], level)
    out["crps"] = _difference_entry(whole[0]["crps"] - whole[1]["crps"], draws_a["crps"] - draws_b["crps"], level)
    return out
