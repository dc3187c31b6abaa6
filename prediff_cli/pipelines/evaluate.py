"""`prediff score` as plain functions: score a written forecast, or run the model over a whole split.

Both modes stream the same cases through one `Scorer` for the model and one per baseline (persistence, optical
flow, STEPS), so every number in scores.json is computed on identical cases. STEPS is an ensemble of as many
members as the model's, seeded per case like the model (seed + case index).

Each scorer also keeps per-case totals (`verification.cases`), written to cases.npz beside scores.json; from
them come the bootstrap intervals over events of every forecast and of the paired differences model − baseline
(`verification.bootstrap`, `differences` in scores.json). The whole-split mode works in batches of
`score.batch_size` sequences × N members, samples each case exactly as `prediff sample` would with the same config
(case i with seed `seed + i`) and saves the scorer states after every batch, so an interrupted evaluation resumes
where it stopped and gives the same scores.

FVD (Fréchet video distance, `verification.fvd`) needs the I3D network (`prediff download weights i3d`): with it
installed, the split mode feeds every observed sequence once as "real" and every forecast sequence (each member,
each baseline forecast) as "fake" to the scorer of its forecast, as the official evaluation does; without it, or
with a single case (mode 1), every `fvd` is null and `scores["notes"]` says why.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from prediff import __version__
from prediff.baselines import get_baseline
from prediff.config import Config, ScoreConfig, write_resolved_config
from prediff.data import open_dataset
from prediff.data.radar_input import read_radar_input
from prediff.errors import InputError
from prediff.io.atomic import atomic_write_text
from prediff.io.netcdf import read_forecast
from prediff.verification import Scorer
from prediff.verification.bootstrap import paired_difference
from prediff.verification.cases import CaseTable, save_case_tables
from prediff.verification.plots import write_score_plots

from .forecast import AlignmentRequest, Forecaster, alignment_target

LEAD_STEP_MINUTES = 10
FVD_NOT_INSTALLED = "FVD skipped: the I3D weights are not installed; run `prediff download weights i3d`"
FVD_ONE_CASE = ("FVD skipped: it compares distributions of sequences and needs at least 2 cases; score a split "
                "(--data DIR --split test) for it")
FVD_TOO_FEW = "FVD not computed: it needs at least 2 cases (and 2 forecast sequences)"


def make_scorer(cfg: ScoreConfig, seed: int):
    return Scorer(thresholds=cfg.thresholds, pools=cfg.pools, fss_scales=cfg.fss_scales,
                  fss_thresholds=cfg.fss_thresholds, eps=cfg.eps, seed=seed, rank_min=cfg.rank_min,
                  resamples=cfg.resamples, level=cfg.interval)


def fvd_features():
    """(the I3D feature extractor, its settings entry) if the I3D weights are installed, else (None, None)."""
    from prediff.io.checkpoint import file_sha256
    from prediff.verification.video_features import load_video_features

    from .published_weights import installed_feature_network

    path = installed_feature_network("i3d")
    if path is None:
        return None, None
    return load_video_features(path), {"network": "i3d-400", "sha256": file_sha256(path)}


class Evaluation:
    """Streaming scores of the model (label "model") and of each baseline on the same cases.

    `features`: a `video_features.VideoFeatures` for the FVD (None: FVD skipped, `fvd_note` says why)."""

    def __init__(self, cfg: ScoreConfig, seed: int = 0, features=None, fvd_note: Optional[str] = None):
        self.cfg, self.seed = cfg, int(seed)
        self.features, self.fvd_note = features, fvd_note
        self.scorers = {"model": make_scorer(cfg, seed)}
        self.baselines = {name: get_baseline(name) for name in cfg.baselines}
        for name in self.baselines:
            self.scorers[name] = make_scorer(cfg, seed)
        self.n_leads: Optional[int] = None

    def add(self, contexts: np.ndarray, truths: np.ndarray, members: np.ndarray, *,
            events: Optional[Sequence[str]] = None, seeds: Optional[Sequence[int]] = None) -> None:
        """contexts (B, T_in, H, W), truths (B, T, H, W), members (B, M, T, H, W) — all on 0–1. events: the storm
        event of each case (the bootstrap keeps them together; None: each case its own); seeds: each case's seed
        (the ensemble baselines use it; None: seed + running case index)."""
        self.n_leads = truths.shape[1]
        if seeds is None:
            done = self.scorers["model"].n_cases
            seeds = [(self.seed + done + i) % 2 ** 32 for i in range(len(contexts))]
        self.scorers["model"].accumulate(members, truths, events)
        forecasts = {}
        for name, baseline in self.baselines.items():
            if getattr(baseline, "ensemble", False):
                forecasts[name] = baseline.forecast(contexts, truths.shape[1], members=members.shape[1], seeds=seeds)
            else:
                forecasts[name] = baseline.forecast(contexts, truths.shape[1])
        for name, forecast in forecasts.items():
            self.scorers[name].accumulate(forecast, truths, events)
        if self.features is not None:
            self._add_fvd(truths, {"model": members, **forecasts})

    def _add_fvd(self, truths: np.ndarray, forecasts: Dict[str, np.ndarray]) -> None:
        """One I3D pass over the truth and every forecast sequence; real features shared by all scorers."""
        b, t, h, w = truths.shape
        parts = {"truth": np.asarray(truths, np.float32).reshape(b, t, 1, h, w)}
        for label, forecast in forecasts.items():
            parts[label] = np.asarray(forecast, np.float32).reshape(-1, t, 1, h, w)  # (B·M, T, 1, H, W)
        features = self.features.features(np.concatenate(list(parts.values())))
        bounds = np.cumsum([0] + [len(p) for p in parts.values()])
        split = {label: features[bounds[i]:bounds[i + 1]] for i, label in enumerate(parts)}
        for label in forecasts:
            self.scorers[label].accumulate_fvd(real=split["truth"], fake=split[label])

    def scores(self, settings: Dict[str, object]) -> dict:
        """scores.json: the model's scores at the top level, `baselines` and `settings` beside them."""
        out = self.scorers["model"].compute()
        out["baselines"] = {name: self.scorers[name].compute() for name in self.baselines}
        tables = self.case_tables()
        options = dict(resamples=self.cfg.resamples, seed=self.seed, level=self.cfg.interval)
        out["differences"] = {name: paired_difference(tables["model"], tables[name], **options)
                              for name in self.baselines}
        out["settings"] = {**self.scorers["model"].settings(), "baselines": self.baseline_settings(), **settings}
        notes = list(out.get("notes", []))
        fallbacks = {name: b.fallbacks for name, b in self.baselines.items() if getattr(b, "fallbacks", 0)}
        for name, count in fallbacks.items():
            notes.append(f"{name}: {count} case(s) whose context it cannot model (constant in time or space) got "
                         "the optical-flow extrapolation as every member")
        if out.get("fvd") is None:
            notes.append(self.fvd_note or (FVD_TOO_FEW if self.features is not None else FVD_ONE_CASE))
        out["notes"] = notes
        return out

    def baseline_settings(self) -> Dict[str, dict]:
        return {name: baseline.settings() for name, baseline in self.baselines.items()}

    def case_tables(self) -> Dict[str, CaseTable]:
        """The per-case totals of the model ("model") and of each baseline."""
        return {label: scorer.cases.table() for label, scorer in self.scorers.items()}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for label, scorer in self.scorers.items():
            scorer.save_state(directory / f"{label}.npz")
        states = {name: b.state() for name, b in self.baselines.items() if hasattr(b, "state")}
        atomic_write_text(directory / "baselines.json", json.dumps(states))

    def load(self, directory: Path) -> None:
        for label, scorer in self.scorers.items():
            scorer.load_state(directory / f"{label}.npz")
        path = directory / "baselines.json"
        try:
            states = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the saved baseline state {str(path)!r}: {exc}") from None
        states = states if isinstance(states, dict) else {}
        for name, baseline in self.baselines.items():
            if hasattr(baseline, "load_state") and isinstance(states.get(name), dict):
                baseline.load_state(states[name])


def _json_value(value):
    """NumPy scalars and arrays (e.g. NetCDF attributes) as plain JSON values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_outputs(out: Path, scores: dict, config: Optional[Config] = None,
                  cases: Optional[Dict[str, CaseTable]] = None) -> List[Path]:
    """scores.json (atomically), cases.npz (the per-case totals, when given), the PNG plots and the resolved
    config."""
    atomic_write_text(out / "scores.json", json.dumps(scores, indent=2, allow_nan=False, default=_json_value))
    paths = [out / "scores.json"]
    if cases is not None:
        paths.append(save_case_tables(out / "cases.npz", cases))
    results = {"PreDiff": scores, **scores["baselines"]}
    leads = [LEAD_STEP_MINUTES * (k + 1) for k in range(scores.get("n_leads") or 0)] or None
    paths += write_score_plots(results, out, rank_histogram_of="PreDiff", lead_minutes=leads)
    if config is not None:
        paths.append(write_resolved_config(config, out))
    return paths


# ------------------------------------------------------------------------------------------------------------------
# mode 1: a written forecast against the truth frames of the input file


def _recorded(fc, key: str, given: Optional[int], option: str) -> int:
    """`given`, else the frame index the forecast file records under `key` (0 when it records none)."""
    if given is not None:
        return int(given)
    value = fc.attrs.get(key, 0)
    try:
        number = int(np.asarray(value).ravel()[0])
    except (TypeError, ValueError, IndexError):
        raise InputError(f"the forecast's {key} attribute {value!r} is not a frame index; give {option}") from None
    if number < 0 or number != float(np.asarray(value).ravel()[0]):
        raise InputError(f"the forecast's {key} attribute {value!r} is not a frame index; give {option}")
    return number


def score_forecast_file(forecast_path: Path, truth_path: Path, event: Optional[int], start: Optional[int],
                        config: Config, variable: str = "vil") -> Tuple[dict, Dict[str, CaseTable]]:
    """Mode 1: a forecast NetCDF against the frames that follow its context in `truth_path` (`variable` of it);
    `event` and `start`, when None, are those the forecast file records (`input_event`, `input_start_frame`).
    Returns (scores, per-case totals)."""
    fc = read_forecast(forecast_path)
    m, t, h, w = fc.forecast.shape
    event = _recorded(fc, "input_event", event, "--event")
    start = _recorded(fc, "input_start_frame", start, "--start")
    in_len = fc.context.shape[0] if fc.context is not None else config.data.in_len
    radar = _on_grid_of(read_radar_input(truth_path, event, start, in_len=in_len, out_len=t, variable=variable),
                        fc.grid)
    if radar.truth is None:
        raise InputError(f"{truth_path} has no frames {start + in_len}..{start + in_len + t - 1} to score against "
                         f"(event {event}, --start {start})")
    if fc.grid is None:  # without a map grid the forecast's rows run as the input's did: compare them that way
        radar.context, radar.truth = radar.orientation.apply(radar.context), radar.orientation.apply(radar.truth)
    _check_same_case(fc, radar, truth_path, event, start)
    evaluation = Evaluation(config.score, config.seed, fvd_note=FVD_ONE_CASE)
    evaluation.add(radar.context[None], radar.truth[None], fc.forecast[None], events=[f"{truth_path}#{event}"],
                   seeds=[config.seed])
    settings = {"mode": "forecast", "forecast": str(forecast_path), "truth": str(truth_path), "event": event,
                "start": start, "members": m, "sampler": fc.attrs.get("sampler"),
                "solver_steps": fc.attrs.get("solver_steps"), "alignment": fc.attrs.get("alignment"),
                "precision": fc.attrs.get("precision"),
                "prediff_version": __version__}
    return evaluation.scores(settings), evaluation.case_tables()


def _on_grid_of(radar, grid):
    """`radar` with the frames as read from the file when the forecast was written on the input's own grid
    (`--output-grid input`), else as it is (on the model's grid)."""
    placement = radar.placement
    if placement is None or grid is None or not placement.input_grid.same_as(grid):
        return radar
    return dataclasses.replace(radar, context=placement.input_context, truth=placement.input_truth,
                               grid=placement.input_grid, placement=None)


def _check_same_case(fc, radar, truth_path: Path, event: int, start: int) -> None:
    """Refuse a forecast that was not made for these truth frames (grid, leads, context, times)."""
    _, t, h, w = fc.forecast.shape
    if radar.truth.shape[1:] != (h, w):
        raise InputError(f"grid sizes differ: the forecast is {h}x{w}, the truth is "
                         f"{radar.truth.shape[1]}x{radar.truth.shape[2]}")
    expected = [LEAD_STEP_MINUTES * (k + 1) for k in range(t)]
    if [float(v) for v in fc.lead_minutes] != [float(v) for v in expected]:
        raise InputError(f"lead times differ: the forecast has {list(map(float, fc.lead_minutes))} minutes, the "
                         f"truth frames are {expected}")
    if fc.grid is not None and radar.grid is not None and not fc.grid.same_as(radar.grid, tolerance_m=100.0):
        a = np.array([fc.grid.llcrnrlat, fc.grid.llcrnrlon, fc.grid.urcrnrlat, fc.grid.urcrnrlon])
        b = np.array([radar.grid.llcrnrlat, radar.grid.llcrnrlon, radar.grid.urcrnrlat, radar.grid.urcrnrlon])
        raise InputError(f"the forecast's grid {tuple(np.round(a, 3))} is not the truth's {tuple(np.round(b, 3))}")
    if fc.context is not None and fc.context.shape == radar.context.shape and \
            np.abs(np.clip(radar.context, 0, 1) - fc.context).max() > 1.0 / 255:
        last = start + len(radar.context) - 1
        raise InputError(f"the forecast was made from other frames than frames {start}..{last} of event {event} in "
                         f"{truth_path}; check --event and --start")
    if radar.reference_time is not None and radar.reference_time != fc.reference_time:
        raise InputError(f"times differ: the forecast's reference time is {fc.reference_time:%Y-%m-%d %H:%M}, the "
                         f"truth's last context frame is at {radar.reference_time:%Y-%m-%d %H:%M}")


# ------------------------------------------------------------------------------------------------------------------
# mode 2: the model over a whole split


def split_settings(model, config: Config, split: str, cases: int,
                   fvd: Optional[dict] = None, precision: str = "fp32") -> Dict[str, object]:
    """What an evaluation depends on, recorded in scores.json and compared on --resume (`fvd`: the I3D weights
    used, None without them; `precision`: the one the forecasts run at)."""
    s = config.sample
    return {"mode": "split", "data": str(config.data.root), "split": split, "cases": cases, "members": s.samples,
            "fvd": fvd, "sampler": s.sampler, "steps": s.steps, "eta": s.eta, "precision": precision,
            "alignment": AlignmentRequest.from_config(s).describe(), "guide_scale": s.guide_scale,
            "members_coupled": s.couple_members, "member_batch": s.member_batch, "seed": config.seed,
            "case_seeds": "seed + case index", "batch_size": config.score.batch_size,
            "prediff_version": __version__, "model": model.name,
            "checkpoints": {k: str(v) for k, v in vars(model.paths).items() if v is not None},
            "sha256": model.sha256}


def _resume_state(out: Path, settings: dict, evaluation: "Evaluation", resume: bool) -> int:
    """Cases already scored in `out` (0 for a new evaluation); loads the saved scorer states."""
    state_dir, progress_file = out / ".evaluation", out / ".evaluation" / "progress.json"
    if not progress_file.is_file():
        return 0
    if not resume:
        raise InputError(f"{out} holds an unfinished evaluation; continue it with --resume or choose another --out")
    saved = json.loads(progress_file.read_text())
    if saved["settings"] != json.loads(json.dumps(settings, default=_json_value)):
        raise InputError(f"{out} holds an evaluation with other settings; resume with the same options or "
                         "choose another --out")
    evaluation.load(state_dir)
    return int(saved["done"])


def score_split(model, config: Config, split: str, out: Path, *, limit: Optional[int] = None, resume: bool = False,
                progress: Optional[Callable[[int, int], None]] = None) -> Tuple[dict, Dict[str, CaseTable]]:
    """Forecast every sequence of the split (up to `limit`) exactly as `prediff sample` would with `config` (case i
    with seed `config.seed + i`), score it beside the baselines; resumable. Returns (scores, per-case totals)."""
    seqs = open_dataset(config.data).split(split)
    n = len(seqs) if limit is None else min(limit, len(seqs))
    if n == 0:
        raise InputError(f"the {split} split of {config.data.root} is empty")
    t_in, alignment = model.config.unet.input_shape[0], AlignmentRequest.from_config(config.sample)
    features, fvd = fvd_features()
    forecaster = Forecaster(model, config.sample)
    settings = split_settings(model, config, split, n, fvd, forecaster.precision)
    evaluation = Evaluation(config.score, config.seed, features, None if features else FVD_NOT_INSTALLED)
    settings["baselines"] = evaluation.baseline_settings()
    done = _resume_state(out, settings, evaluation, resume)
    if progress:
        progress(done, n)
    while done < n:
        idx = range(done, min(done + config.score.batch_size, n))
        seq = np.stack([seqs[i][..., 0] for i in idx])  # (B, T_in + T_out, H, W)
        contexts, truths = seq[:, :t_in], seq[:, t_in:]
        y_hat = None
        if alignment.mode != "none":
            y_hat = np.array([alignment_target(alignment, c, tr) for c, tr in zip(contexts, truths)], np.float32)
        seeds = [case_seed(config.seed, i) for i in idx]
        members = forecaster.run(contexts, y_hat, seeds)
        evaluation.add(contexts, truths, members, events=[seqs.info(i).event.id for i in idx], seeds=seeds)
        done = idx[-1] + 1
        evaluation.save(out / ".evaluation")
        atomic_write_text(out / ".evaluation" / "progress.json",
                          json.dumps({"done": done, "settings": settings}, default=_json_value))
        if progress:
            progress(done, n)
    return evaluation.scores(settings), evaluation.case_tables()


def case_seed(seed: int, case: int) -> int:
    """The seed of case `case` of an evaluation: `prediff sample --seed <this>` on that case gives its members."""
    return (int(seed) + int(case)) % 2 ** 32


def finish_split(out: Path) -> None:
    """Remove the resume state once scores.json is written."""
    shutil.rmtree(out / ".evaluation", ignore_errors=True)
