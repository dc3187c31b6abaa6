"""`prediff score` as plain functions: score a written forecast, or run the model over a whole split.

Both modes stream the same cases through one `Scorer` for the model and one per baseline (persistence, optical
flow), so every number in scores.json is computed on identical cases. The whole-split mode works in batches of
`score.batch_size` sequences × N members, draws each batch's noise from (seed, batch index) and saves the scorer
states after every batch, so an interrupted evaluation resumes where it stopped and gives the same scores.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from prediff_cli import __version__
from prediff_cli.config import Config, ScoreConfig, to_plain, write_resolved_config
from prediff_cli.errors import InputError
from prediff_cli.io.atomic import atomic_write_text

LEAD_STEP_MINUTES = 10


def make_scorer(cfg: ScoreConfig, seed: int):
    from prediff_cli.verification import Scorer

    return Scorer(thresholds=cfg.thresholds, pools=cfg.pools, fss_scales=cfg.fss_scales,
                  fss_thresholds=cfg.fss_thresholds, eps=cfg.eps, seed=seed)


class Evaluation:
    """Streaming scores of the model (label "model") and of each baseline on the same cases."""

    def __init__(self, cfg: ScoreConfig, seed: int = 0):
        from prediff_cli.baselines import get_baseline

        self.cfg = cfg
        self.scorers = {"model": make_scorer(cfg, seed)}
        self.baselines = {name: get_baseline(name) for name in cfg.baselines}
        for name in self.baselines:
            self.scorers[name] = make_scorer(cfg, seed)
        self.n_leads: Optional[int] = None

    def add(self, contexts: np.ndarray, truths: np.ndarray, members: np.ndarray) -> None:
        """contexts (B, T_in, H, W), truths (B, T, H, W), members (B, M, T, H, W) — all on 0–1."""
        self.n_leads = truths.shape[1]
        self.scorers["model"].accumulate(members, truths)
        for name, baseline in self.baselines.items():
            self.scorers[name].accumulate(baseline.forecast(contexts, truths.shape[1]), truths)

    def scores(self, settings: Dict[str, object]) -> dict:
        """scores.json: the model's scores at the top level, `baselines` and `settings` beside them."""
        out = self.scorers["model"].compute()
        out["baselines"] = {name: self.scorers[name].compute() for name in self.baselines}
        out["settings"] = {**self.scorers["model"].settings(), **settings}
        return out

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for label, scorer in self.scorers.items():
            scorer.save_state(directory / f"{label}.npz")

    def load(self, directory: Path) -> None:
        for label, scorer in self.scorers.items():
            scorer.load_state(directory / f"{label}.npz")


def _json_value(value):
    """NumPy scalars and arrays (e.g. NetCDF attributes) as plain JSON values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_outputs(out: Path, scores: dict, config: Optional[Config] = None) -> List[Path]:
    """scores.json (atomically), the PNG plots and the resolved config."""
    from prediff_cli.verification.plots import write_score_plots

    atomic_write_text(out / "scores.json", json.dumps(scores, indent=2, allow_nan=False, default=_json_value))
    results = {"PreDiff": scores, **scores["baselines"]}
    leads = [LEAD_STEP_MINUTES * (k + 1) for k in range(scores.get("n_leads") or 0)] or None
    paths = [out / "scores.json"] + write_score_plots(results, out, rank_histogram_of="PreDiff", lead_minutes=leads)
    if config is not None:
        paths.append(write_resolved_config(config, out))
    return paths


# ------------------------------------------------------------------------------------------------------------------
# mode 1: a written forecast against the truth frames of the input file


def score_forecast_file(forecast_path: Path, truth_path: Path, event: int, start: int, cfg: ScoreConfig,
                        seed: int = 0) -> dict:
    from prediff_cli.data.radar_input import read_radar_input
    from prediff_cli.io.netcdf import read_forecast

    fc = read_forecast(forecast_path)
    m, t, h, w = fc.forecast.shape
    radar = read_radar_input(truth_path, event, start, in_len=7, out_len=t)
    if radar.truth is None:
        raise InputError(f"{truth_path} has no frames {start + 7}..{start + 6 + t} to score against "
                         f"(event {event}, --start {start})")
    if radar.truth.shape[1:] != (h, w):
        raise InputError(f"grid sizes differ: the forecast is {h}x{w}, the truth is "
                         f"{radar.truth.shape[1]}x{radar.truth.shape[2]}")
    expected = [LEAD_STEP_MINUTES * (k + 1) for k in range(t)]
    if [float(v) for v in fc.lead_minutes] != [float(v) for v in expected]:
        raise InputError(f"lead times differ: the forecast has {list(map(float, fc.lead_minutes))} minutes, the "
                         f"truth frames are {expected}")
    if fc.grid is not None and radar.grid is not None:
        a = np.array([fc.grid.llcrnrlat, fc.grid.llcrnrlon, fc.grid.urcrnrlat, fc.grid.urcrnrlon])
        b = np.array([radar.grid.llcrnrlat, radar.grid.llcrnrlon, radar.grid.urcrnrlat, radar.grid.urcrnrlon])
        if np.abs(a - b).max() > 1e-3:
            raise InputError(f"the forecast's grid {tuple(np.round(a, 3))} is not the truth's {tuple(np.round(b, 3))}")
    if fc.context is not None and fc.context.shape == radar.context.shape and \
            np.abs(np.clip(radar.context, 0, 1) - fc.context).max() > 1.0 / 255:
        raise InputError(f"the forecast was made from other frames than frames {start}..{start + 6} of event "
                         f"{event} in {truth_path}; check --event and --start")
    if radar.reference_time is not None and radar.reference_time != fc.reference_time:
        raise InputError(f"times differ: the forecast's reference time is {fc.reference_time:%Y-%m-%d %H:%M}, the "
                         f"truth's last context frame is at {radar.reference_time:%Y-%m-%d %H:%M}")
    evaluation = Evaluation(cfg, seed)
    evaluation.add(radar.context[None], radar.truth[None], fc.forecast[None])
    settings = {"mode": "forecast", "forecast": str(forecast_path), "truth": str(truth_path), "event": event,
                "start": start, "members": m, "sampler": fc.attrs.get("sampler"),
                "solver_steps": fc.attrs.get("solver_steps"), "alignment": fc.attrs.get("alignment"),
                "prediff_version": __version__}
    return evaluation.scores(settings)


# ------------------------------------------------------------------------------------------------------------------
# mode 2: the model over a whole split


@dataclass
class SplitRequest:
    split: str = "test"
    limit: Optional[int] = None
    samples: int = 8
    sampler: str = "ddim"
    steps: int = 50
    eta: float = 0.0
    alignment: object = None  # forecast.AlignmentRequest
    guide_scale: float = 50.0
    couple_members: bool = False
    resume: bool = False
    extra_settings: Dict[str, object] = field(default_factory=dict)


def score_split(nets, data_config, score_cfg: ScoreConfig, request: SplitRequest, out: Path, seed: int,
                progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """Forecast every sequence of the split (up to `limit`) and score it with the baselines; resumable."""
    from prediff_cli.data import open_dataset

    from .forecast import AlignmentRequest, Forecaster, alignment_target

    alignment = request.alignment or AlignmentRequest()
    seqs = open_dataset(data_config).split(request.split)
    n = len(seqs) if request.limit is None else min(request.limit, len(seqs))
    if n == 0:
        raise InputError(f"the {request.split} split of {data_config.root} is empty")
    t_in = nets.config.unet.input_shape[0]
    settings = {"mode": "split", "data": str(data_config.root), "split": request.split, "cases": n,
                "members": request.samples, "sampler": request.sampler, "steps": request.steps, "eta": request.eta,
                "alignment": alignment.describe(), "guide_scale": request.guide_scale,
                "members_coupled": request.couple_members, "seed": seed, "batch_size": score_cfg.batch_size,
                "prediff_version": __version__, **request.extra_settings}
    state_dir, progress_file = out / ".evaluation", out / ".evaluation" / "progress.json"
    evaluation = Evaluation(score_cfg, seed)
    done = 0
    if request.resume and progress_file.is_file():
        saved = json.loads(progress_file.read_text())
        if saved["settings"] != json.loads(json.dumps(settings, default=_json_value)):
            raise InputError(f"{out} holds an evaluation with other settings; resume with the same options or "
                             "choose another --out")
        evaluation.load(state_dir)
        done = saved["done"]
    elif progress_file.is_file():
        raise InputError(f"{out} holds an unfinished evaluation; continue it with --resume or choose another --out")
    forecaster = Forecaster(nets, sampler=request.sampler, steps=request.steps, eta=request.eta,
                            aligned=alignment.mode != "none", guide_scale=request.guide_scale,
                            couple_members=request.couple_members)
    batch = score_cfg.batch_size
    if progress:
        progress(done, n)
    while done < n:
        idx = range(done, min(done + batch, n))
        seq = np.stack([seqs[i][..., 0] for i in idx])  # (B, 13, H, W)
        contexts, truths = seq[:, :t_in], seq[:, t_in:]
        y_hat = None
        if alignment.mode != "none":
            y_hat = np.array([alignment_target(alignment, c, tr) for c, tr in zip(contexts, truths)], np.float32)
        rng = np.random.default_rng([seed, done // batch])
        members = forecaster.run(contexts, request.samples, y_hat, rng)
        evaluation.add(contexts, truths, members)
        done = idx[-1] + 1
        evaluation.save(state_dir)
        atomic_write_text(progress_file, json.dumps({"done": done, "settings": settings}, default=_json_value))
        if progress:
            progress(done, n)
    return evaluation.scores(settings)


def finish_split(out: Path) -> None:
    """Remove the resume state once scores.json is written."""
    import shutil

    shutil.rmtree(out / ".evaluation", ignore_errors=True)
