"""Streaming scores by name: `get_metric("csi")` → a fresh score object (init / accumulate / compute).

Names of single scores map to the streaming object that computes them ("csi", "pod", "sucr", "bias" and
"bias_official" share the contingency table; "mse" and "mae" share the error sums). Options are passed to the
constructor, e.g. `get_metric("csi", thresholds=(74,), pool=4)`.
"""
from __future__ import annotations

from typing import Callable, Dict

from prediff.lookup import build_by_name

from .categorical import Contingency
from .continuous import ContinuousErrors
from .crps import CRPS
from .ensemble import RankHistogram, SpreadSkill
from .fss import FSS
from .fvd import FVD
from .reliability import ExceedanceReliability
from .ssim import SSIM
from .streaming import StreamingScore

METRICS: Dict[str, Callable[..., StreamingScore]] = {
    "contingency": Contingency,
    "csi": Contingency,
    "pod": Contingency,
    "sucr": Contingency,
    "bias": Contingency,
    "bias_official": Contingency,
    "continuous": ContinuousErrors,
    "mse": ContinuousErrors,
    "mae": ContinuousErrors,
    "ssim": SSIM,
    "crps": CRPS,
    "fss": FSS,
    "spread_skill": SpreadSkill,
    "rank_histogram": RankHistogram,
    "reliability": ExceedanceReliability,
    "brier": ExceedanceReliability,
    "fvd": FVD,
}


def metric_names() -> tuple:
    return tuple(METRICS)


def get_metric(name: str, **options) -> StreamingScore:
    """A new streaming score for `name`; ConfigError listing the valid names if unknown."""
    return build_by_name(METRICS, name, "metric", "metrics", **options)
