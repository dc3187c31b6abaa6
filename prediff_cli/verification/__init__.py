"""Forecast verification on the 0–1 VIL scale: streaming scores (init / accumulate / compute) and plots.

Layout everywhere: forecast (B, M, T, H, W) — cases, ensemble members (1 for a deterministic forecast), lead
times, rows, columns — and truth (B, T, H, W). `Scorer` bundles every score into the scores.json layout;
`get_metric(name)` gives a single streaming score; `bootstrap` gives intervals from the per-case totals
(`cases`); `FVD` takes video features (the I3D network that makes them
is in `video_features`, imported on demand: it needs MindSpore); `plots` draws PNG figures of a compute() result
(imported on demand: it needs matplotlib).
"""
from .bootstrap import bootstrap_intervals, paired_difference
from .cases import CaseRecords, CaseTable, load_case_tables
from .categorical import (DEFAULT_THRESHOLDS, Contingency, bias_official, contingency_counts, csi,
                          frequency_bias, pod, sucr, threshold_key)
from .continuous import ContinuousErrors, mae, mse
from .crps import CRPS, crps_ensemble
from .ensemble import RankHistogram, SpreadSkill, observation_ranks
from .fss import DEFAULT_SCALES, FSS, fss_sums
from .fvd import FVD, frechet_distance
from .pooling import max_pool
from .registry import get_metric, metric_names
from .reliability import ExceedanceReliability, brier_decomposition
from .scorer import DEFAULT_POOLS, Scorer
from .ssim import SSIM, ssim_frames

__all__ = [
    "CRPS", "DEFAULT_POOLS", "DEFAULT_SCALES", "DEFAULT_THRESHOLDS", "FSS", "SSIM", "CaseRecords", "CaseTable",
    "Contingency", "ContinuousErrors", "ExceedanceReliability", "FVD", "RankHistogram", "Scorer", "SpreadSkill",
    "bias_official", "bootstrap_intervals", "brier_decomposition", "contingency_counts", "crps_ensemble", "csi",
    "frechet_distance", "frequency_bias", "fss_sums", "get_metric", "load_case_tables", "mae", "max_pool",
    "metric_names", "mse", "observation_ranks", "paired_difference", "pod", "ssim_frames", "sucr",
    "threshold_key",
]
