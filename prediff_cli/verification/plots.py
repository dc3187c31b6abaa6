"""PNG figures of verification results: CSI by threshold, CSI by lead time (model vs baselines), rank histogram,
reliability diagrams of the exceedance probabilities.

Inputs are dicts shaped like `Scorer.compute()` output, keyed by the forecast's label, e.g.
`{"PreDiff": scores, "persistence": baseline_scores, "optical flow": ...}`. matplotlib is used through its
object API (`Figure` + Agg canvas, no pyplot), so nothing global is touched and no display is needed. Files are
written under a temporary name and renamed.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from prediff.errors import InputError
from prediff.io.atomic import atomic_path

from .categorical import threshold_key

STEP_MINUTES = 10  # SEVIR-LR frame interval


def _figure(width: float = 7.0, height: float = 4.2):
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig, fig.add_subplot()


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    return path


def _values(seq) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in seq], np.float64)


def _score_block(scores: Mapping, score: str, label: str) -> Mapping:
    if score not in scores:
        raise InputError(f"results for {label!r} have no {score!r} scores (keys: {', '.join(scores)})")
    return scores[score]


def plot_csi_by_threshold(results: Mapping[str, Mapping], path, *, score: str = "csi",
                          title: Optional[str] = None) -> Path:
    """Grouped bars: one group per threshold (and "avg" = CSI-M), one bar per forecast. `score` may be any
    per-threshold entry of compute(), e.g. "csi_pool16", "pod"."""
    if not results:
        raise InputError("nothing to plot: no results given")
    keys = [k for k in _score_block(next(iter(results.values())), score, next(iter(results))) if k != "avg"]
    keys.append("avg")
    fig, ax = _figure()
    width = 0.8 / len(results)
    x = np.arange(len(keys))
    for i, (label, scores) in enumerate(results.items()):
        block = _score_block(scores, score, label)
        ax.bar(x + (i - (len(results) - 1) / 2) * width, _values(block.get(k) for k in keys), width, label=label)
    ax.set_xticks(x, [f"≥{k}" if k != "avg" else "mean" for k in keys])
    ax.set_xlabel("threshold (digital VIL, 0–255)")
    ax.set_ylabel(score.upper().replace("_", " "))
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    ax.set_title(title or f"{score.upper().replace('_', ' ')} by threshold")
    return _save(fig, path)


def plot_csi_by_lead_time(results: Mapping[str, Mapping], path, *, score: str = "csi", threshold: str = "avg",
                          lead_minutes: Optional[Sequence[float]] = None, title: Optional[str] = None) -> Path:
    """One line per forecast: `score` at `threshold` ("avg" = CSI-M, or e.g. "74") against lead time."""
    if not results:
        raise InputError("nothing to plot: no results given")
    fig, ax = _figure()
    for label, scores in results.items():
        lead = _score_block(scores.get("per_lead_time", {}), score, label)
        if threshold not in lead:
            raise InputError(f"results for {label!r} have no threshold {threshold!r} (have: {', '.join(lead)})")
        values = _values(lead[threshold])
        minutes = (np.arange(1, len(values) + 1) * STEP_MINUTES if lead_minutes is None
                   else np.asarray(lead_minutes, np.float64))
        if len(minutes) != len(values):
            raise InputError(f"{len(minutes)} lead times given for {len(values)} values of {label!r}")
        ax.plot(minutes, values, marker="o", label=label)
    name = score.upper().replace("_", " ")
    ax.set_xlabel("lead time (minutes)")
    ax.set_ylabel(f"{name} ({'mean over thresholds' if threshold == 'avg' else '≥' + threshold})")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or f"{name} by lead time")
    return _save(fig, path)


def plot_rank_histogram(scores: Mapping, path, *, title: Optional[str] = None) -> Path:
    """Relative frequency of each rank of the observation among the M members (M + 1 bars) and the flat
    line 1/(M + 1) of a calibrated ensemble. `scores` is a compute() dict (or {"rank_histogram": [...]})."""
    counts = np.asarray(_score_block(scores, "rank_histogram", "forecast"), np.float64)
    if counts.ndim != 1 or counts.size < 2 or counts.sum() <= 0:
        raise InputError("rank histogram needs at least 2 non-empty bins")
    fig, ax = _figure(6.0, 3.8)
    ranks = np.arange(counts.size)
    ax.bar(ranks, counts / counts.sum(), width=0.9, color="tab:blue")
    ax.axhline(1.0 / counts.size, color="black", linestyle="--", linewidth=1, label="calibrated")
    ax.set_xticks(ranks)
    ax.set_xlabel(f"rank of the observation among {counts.size - 1} members")
    ax.set_ylabel("relative frequency")
    ax.legend()
    ax.set_title(title or "Rank histogram")
    return _save(fig, path)


def plot_reliability(results: Mapping[str, Mapping], path, *, title: Optional[str] = None) -> Path:
    """One reliability diagram per threshold: observed frequency against forecast probability (k/M) for every
    ensemble in `results` (compute() dicts with an "exceedance" block and M > 1), the diagonal of perfect
    reliability, and the Brier score / reliability / resolution / ROC area of each in the legend."""
    ensembles = {k: r["exceedance"] for k, r in results.items() if r.get("n_members", 1) > 1 and r.get("exceedance")}
    if not ensembles:
        raise InputError("no ensemble forecast (M > 1) with exceedance probabilities to plot")
    keys = [threshold_key(t) for t in next(iter(ensembles.values()))["thresholds"]]
    columns = min(3, len(keys))
    rows = -(-len(keys) // columns)
    fig = Figure(figsize=(4.2 * columns, 4.0 * rows), dpi=110, layout="constrained")
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, columns, i + 1)
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1)
        for label, block in ensembles.items():
            entry = block.get(key)
            if not entry:
                continue
            diagram = entry["diagram"]
            p, o = _values(diagram["probability"]), _values(diagram["observed_frequency"])
            ok = np.isfinite(o)
            text = "-" if entry["brier"] is None else (f"BS {entry['brier']:.4f}, REL {entry['reliability']:.4f}, "
                                                        f"RES {entry['resolution']:.4f}")
            if entry.get("roc_area") is not None:
                text += f", ROC {entry['roc_area']:.3f}"
            ax.plot(p[ok], o[ok], marker="o", label=f"{label}: {text}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("forecast probability")
        ax.set_ylabel("observed frequency")
        ax.set_title(f"VIL ≥ {key} (digital), {_kg_m2(key)} kg m-2")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left")
    fig.suptitle(title or "Reliability of the exceedance probabilities")
    return _save(fig, path)


def _kg_m2(key: str) -> str:
    from prediff.vil_scale import digital_to_kg_m2

    return f"{float(digital_to_kg_m2(float(key))):.2g}"


def write_score_plots(results: Mapping[str, Mapping], out_dir, *, rank_histogram_of: Optional[str] = None,
                      lead_minutes: Optional[Sequence[float]] = None) -> List[Path]:
    """The standard set in out_dir: csi_by_threshold.png, csi_pool16_by_threshold.png (if present),
    csi_by_lead_time.png, reliability.png (if any forecast is an ensemble) and, for the forecast
    `rank_histogram_of` (default: the first with M > 1), rank_histogram.png. Returns the paths written."""
    out_dir = Path(out_dir)
    paths = [plot_csi_by_threshold(results, out_dir / "csi_by_threshold.png")]
    if all("csi_pool16" in r for r in results.values()):
        paths.append(plot_csi_by_threshold(results, out_dir / "csi_pool16_by_threshold.png", score="csi_pool16"))
    paths.append(plot_csi_by_lead_time(results, out_dir / "csi_by_lead_time.png", lead_minutes=lead_minutes))
    if any(r.get("n_members", 1) > 1 and r.get("exceedance") for r in results.values()):
        paths.append(plot_reliability(results, out_dir / "reliability.png"))
    if rank_histogram_of is None:
        rank_histogram_of = next((k for k, r in results.items() if r.get("n_members", 1) > 1), None)
    if rank_histogram_of is not None:
        paths.append(plot_rank_histogram(results[rank_histogram_of], out_dir / "rank_histogram.png",
                                         title=f"Rank histogram — {rank_histogram_of}"))
    return paths
