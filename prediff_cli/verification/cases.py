"""Per-case totals of an evaluation, kept for the confidence intervals (`bootstrap`).

For every case (one forecast sequence against its truth) the score keeps the event it belongs to, its contingency
counts per threshold (hits, misses, false alarms over members, lead times and pixels; `value · 255 >= τ`, no
pooling) and its fair-CRPS sum with the number of pixels it was taken over (0–1 scale, no pooling). Pooled over
all cases these give exactly the CSI and the CRPS ("pool1") of the `Scorer`; resampled by event they give the
intervals. The arrays grow by one row per case; a state round-trips through `np.savez` without pickling (the
event names are a unicode array).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from prediff.errors import InputError

from .categorical import DEFAULT_EPS, DEFAULT_THRESHOLDS, check_thresholds, contingency_counts, plain_thresholds
from .crps import crps_ensemble
from .ensemble import EnsembleScore
from .inputs import check_pair, to_digital

COUNT_KEYS = ("hits", "misses", "fas")


@dataclass(frozen=True)
class CaseTable:
    """The per-case totals of one forecast: events (n,) str; hits, misses, fas (n, L) int64 at `thresholds`
    (digital VIL); crps_sum (n,) float64 (fair CRPS summed over the case's lead times and pixels, 0–1 scale);
    pixels (n,) int64; members: M; eps: the contingency-score eps."""

    events: np.ndarray
    hits: np.ndarray
    misses: np.ndarray
    fas: np.ndarray
    crps_sum: np.ndarray
    pixels: np.ndarray
    thresholds: tuple
    members: int
    eps: float = DEFAULT_EPS

    def __len__(self) -> int:
        return len(self.events)


class CaseRecords(EnsembleScore):
    """Streaming per-case totals (module docstring); `accumulate(forecast, truth, events)` with `events` one
    label per case (None: every case is its own event); `table()` gives them as a `CaseTable`."""

    name = "cases"
    thresholds: list
    eps: float

    def __init__(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, eps: float = DEFAULT_EPS) -> None:
        super().__init__(thresholds=plain_thresholds(check_thresholds(thresholds)), eps=float(eps))

    def accumulate(self, forecast, truth, events: Optional[Sequence[str]] = None) -> None:
        self.accumulate_checked(*check_pair(forecast, truth), events=events)

    def accumulate_checked(self, forecast: np.ndarray, truth: np.ndarray,
                           events: Optional[Sequence[str]] = None) -> None:
        b, m = forecast.shape[:2]
        done = 0 if self.empty else len(self._state["events"])
        names = [f"case {done + i}" for i in range(b)] if events is None else [str(e) for e in events]
        if len(names) != b:
            raise InputError(f"{len(names)} event labels given for {b} cases")
        self._check_members(m)
        counts = [contingency_counts(to_digital(forecast[i:i + 1]), to_digital(truth[i:i + 1]), self.thresholds)
                  for i in range(b)]
        crps = crps_ensemble(forecast, truth, fair=True).sum(axis=(1, 2, 3))
        rows = {key: np.stack([c[k].sum(axis=1) for c in counts]) for k, key in enumerate(COUNT_KEYS)}
        rows["crps_sum"] = crps.astype(np.float64)
        rows["pixels"] = np.full(b, int(np.prod(truth.shape[1:])), np.int64)
        rows["events"] = np.array(names)
        for key, value in rows.items():
            old = self._state.get(key)
            self._state[key] = value if old is None else np.concatenate([old, value])

    def table(self) -> CaseTable:
        self._require_data()
        s = self._state
        return CaseTable(events=s["events"].astype(str), hits=s["hits"].copy(), misses=s["misses"].copy(),
                         fas=s["fas"].copy(), crps_sum=s["crps_sum"].copy(), pixels=s["pixels"].copy(),
                         thresholds=tuple(self.thresholds), members=int(s["members"]), eps=self.eps)

    def compute(self) -> dict:
        table = self.table()
        return {"cases": len(table), "events": len(set(table.events.tolist()))}


# ---------------------------------------------------------------------------------------------------------------
# the tables of an evaluation on disk (cases.npz beside scores.json)


def save_case_tables(path, tables: Mapping[str, CaseTable]) -> Path:
    """Write {label: CaseTable} to an .npz (arrays "label/field"); atomically."""
    from prediff.io.atomic import atomic_path

    arrays = {}
    for label, table in tables.items():
        arrays[f"{label}/events"] = np.asarray(table.events, str)
        for key in COUNT_KEYS + ("crps_sum", "pixels"):
            arrays[f"{label}/{key}"] = getattr(table, key)
        arrays[f"{label}/thresholds"] = np.asarray(table.thresholds, np.float64)
        arrays[f"{label}/members"] = np.array(table.members, np.int64)
        arrays[f"{label}/eps"] = np.array(table.eps, np.float64)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def load_case_tables(path) -> Dict[str, CaseTable]:
    """{label: CaseTable} from a file written by `save_case_tables` (the cases.npz of `prediff score`); labels are
    "model" and the baselines' names. InputError if it cannot be read or is inconsistent."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {key: saved[key] for key in saved.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read per-case scores {str(path)!r}: {exc}") from None
    labels = sorted({key.rsplit("/", 1)[0] for key in arrays})
    tables = {}
    for label in labels:
        try:
            part = {key: arrays[f"{label}/{key}"] for key in COUNT_KEYS + ("events", "crps_sum", "pixels",
                                                                            "thresholds", "members", "eps")}
        except KeyError as exc:
            raise InputError(f"{path}: per-case scores of {label!r} lack {exc.args[0]}") from None
        n, levels = len(part["events"]), len(part["thresholds"])
        if any(part[k].shape != (n, levels) for k in COUNT_KEYS) or part["crps_sum"].shape != (n,) or \
                part["pixels"].shape != (n,):
            raise InputError(f"{path}: per-case scores of {label!r} have inconsistent shapes")
        tables[label] = CaseTable(events=part["events"].astype(str), hits=part["hits"].astype(np.int64),
                                  misses=part["misses"].astype(np.int64), fas=part["fas"].astype(np.int64),
                                  crps_sum=part["crps_sum"].astype(np.float64),
                                  pixels=part["pixels"].astype(np.int64),
                                  thresholds=tuple(float(t) for t in part["thresholds"]),
                                  members=int(part["members"]), eps=float(part["eps"]))
    return tables
