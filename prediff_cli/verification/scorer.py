"""The aggregate streaming scorer behind `prediff score`: every verification score of an evaluation in one object.

    scorer = Scorer()                       # thresholds 16..219, pools (4, 16), FSS scales, eps, seed
    for forecast, truth in cases:           # forecast (B, M, T, H, W), truth (B, T, H, W), VIL on 0–1
        scorer.accumulate(forecast, truth)
    scores = scorer.compute()               # JSON-ready dict (layout below)
    scorer.cases.table()                    # per-case totals (`cases`), for paired comparisons
    scorer.save_state("state.npz")           # resumable: Scorer(same settings).load_state("state.npz")

Every member of an ensemble counts as one forecast for the deterministic scores (official accumulation: the
counts of all members add up against the same truth); the same scores of the member mean are reported
separately under "ensemble_mean". For M = 1 the two coincide (computed once).

compute() layout (threshold keys are strings such as "16"; "avg" is the mean over thresholds):

    n_cases, n_members, n_leads
    csi, pod, sucr, bias, bias_official      {"16": v, ..., "avg": v}   (bias = (h+f)/(h+m+eps); see categorical)
    csi_pool4, csi_pool16                    same, after 4×4 / 16×16 max pooling (one key per entry of `pools`)
    counts                                   {"pool1"|"pool4"|...: {"hits"|"misses"|"fas": [per threshold]}}
    mse, mae, rmse, ssim                     floats (0–1 scale)
    crps, crps_standard                      {"pool1": v, "pool4": v, "pool16": v} (fair / M²-normalised)
    fss                                      {threshold: {scale in pixels: v}}
    spread_skill                             {"spread", "rmse", "ratio", "members"} (null spread/ratio for M = 1)
    rank_histogram                           [M + 1 counts] (pixels where the observation and all members are
                                             below `rank_min` left out)
    exceedance                               per threshold: Brier score, reliability, resolution, uncertainty,
                                             Brier skill, ROC area and the reliability diagram of the exceedance
                                             probabilities (`reliability`)
    intervals                                bootstrap-over-events intervals of CSI per threshold, CSI-M and CRPS
                                             (`bootstrap`; null with cases from fewer than 2 events)
    notes                                    why something is null (no event observed at a threshold, ...)
    fvd                                      Fréchet video distance of the members against the truth (I3D
                                             features fed by `accumulate_fvd`; null without them or with
                                             fewer than 2 sequences per set)
    per_lead_time                            the same quantities as lists over lead index 0..T−1
    ensemble_mean                            csi … fss and its own per_lead_time, scores of the member mean
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Mapping, Sequence

import numpy as np

from prediff.errors import ConfigError, InputError
from prediff.io.atomic import atomic_path

from .bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, NOT_ENOUGH_EVENTS, bootstrap_intervals, check_bootstrap
from .cases import CaseRecords
from .categorical import (DEFAULT_EPS, DEFAULT_THRESHOLDS, SCORES, Contingency, check_thresholds,
                          plain_thresholds, undefined_scores)
from .continuous import ContinuousErrors
from .crps import CRPS
from .ensemble import RankHistogram, SpreadSkill
from .fss import DEFAULT_SCALES, FSS
from .fvd import FVD
from .inputs import check_pair, check_scale, to_digital
from .pooling import check_pool, max_pool
from .reliability import ExceedanceReliability
from .ssim import SSIM
from .streaming import SETTINGS_KEY, StreamingScore

DEFAULT_POOLS = (4, 16)
DEFAULT_RANK_MIN = 16.0


def check_pools(pools) -> tuple:
    """Sorted distinct pooling sizes > 1 (a 1 is dropped: the unpooled scores are always computed)."""
    try:
        values = sorted({check_pool(p) for p in pools} - {1})
    except TypeError:
        raise ConfigError(f"pools must be a list of positive integers, got {pools!r}") from None
    return tuple(values)


class DeterministicScores:
    """Contingency scores (pooled too), MSE/MAE, SSIM and FSS of forecasts against truth: one block of compute().

    Not a StreamingScore itself but a group of them sharing the 0–255 conversion and the pooling."""

    def __init__(self, thresholds, pools, fss_thresholds, fss_scales, eps) -> None:
        self.pools = (1,) + tuple(pools)
        self.scores: Dict[str, StreamingScore] = {f"contingency_pool{p}": Contingency(thresholds, p, eps)
                                                  for p in self.pools}
        self.scores["continuous"] = ContinuousErrors()
        self.scores["ssim"] = SSIM()
        self.scores["fss"] = FSS(fss_thresholds, fss_scales)

    def accumulate_pooled(self, pooled: Mapping[int, tuple]) -> None:
        """pooled: {pool size: (forecast (B, M, T, h, w), truth (B, T, h, w))} on 0–1, validated, for 1 and
        every pool of this block. Max pooling commutes with the (monotone) float32 rescaling to 0–255, so the
        0–1 pooled fields serve both the contingency table and the CRPS."""
        forecast, truth = pooled[1]
        forecast255, truth255 = to_digital(forecast), to_digital(truth)
        self.scores["contingency_pool1"].accumulate_digital(forecast255, truth255)
        for p in self.pools[1:]:
            self.scores[f"contingency_pool{p}"].accumulate_digital(*(to_digital(a) for a in pooled[p]))
        self.scores["continuous"].accumulate_checked(forecast, truth)
        self.scores["ssim"].accumulate_checked(forecast, truth)
        self.scores["fss"].accumulate_digital(forecast255, truth255)

    def compute(self) -> dict:
        out, lead = {}, {}
        base = self.scores["contingency_pool1"].compute()
        for name in SCORES:
            out[name], lead[name] = base[name], base["per_lead_time"][name]
        counts = {"pool1": base["counts"]}
        for p in self.pools[1:]:
            pooled = self.scores[f"contingency_pool{p}"].compute()
            out[f"csi_pool{p}"], lead[f"csi_pool{p}"] = pooled["csi"], pooled["per_lead_time"]["csi"]
            counts[f"pool{p}"] = pooled["counts"]
        out["counts"] = counts
        for key in ("continuous", "ssim", "fss"):
            part = self.scores[key].compute()
            lead.update(part.pop("per_lead_time"))
            out.update(part)
        out["per_lead_time"] = lead
        return out


class Scorer:
    """All verification scores of an evaluation, streamed (see the module docstring for the output layout).

    thresholds: CSI/POD/SUCR/bias thresholds on the 0–255 scale (event = value·255 >= τ).
    pools: max-pooling sizes for csi_pool{s} and CRPS (the unpooled scores are always included).
    fss_scales: FSS neighbourhood widths in pixels; fss_thresholds: FSS thresholds (default: `thresholds`).
    eps: added to the contingency-score denominators (official 1e-4). seed: rank-histogram tie-breaking and the
    bootstrap draws. rank_min: digital VIL below which pixels whose observation and members all lie are left out
    of the rank histogram (0: none). resamples, level: the bootstrap's draws and interval level.
    """

    def __init__(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, pools: Sequence[int] = DEFAULT_POOLS,
                 fss_scales: Sequence[int] = DEFAULT_SCALES, fss_thresholds: Sequence[float] = None,
                 eps: float = DEFAULT_EPS, seed: int = 0, rank_min: float = DEFAULT_RANK_MIN,
                 resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL) -> None:
        self.thresholds = check_thresholds(thresholds)
        self.pools = check_pools(pools)
        self.fss_thresholds = check_thresholds(self.thresholds if fss_thresholds is None else fss_thresholds)
        self.fss_scales = tuple(FSS(self.fss_thresholds, fss_scales).scales)
        self.eps = float(eps)
        self.seed = int(seed)
        self.rank_min = RankHistogram(rank_min=rank_min).rank_min
        self.resamples, self.level = check_bootstrap(resamples, level)
        self.reset()

    def settings(self) -> dict:
        """The constructor settings as plain JSON values (for the `settings` block of scores.json)."""
        return {"thresholds": plain_thresholds(self.thresholds), "pools": list(self.pools),
                "fss_scales": list(self.fss_scales), "fss_thresholds": plain_thresholds(self.fss_thresholds),
                "eps": self.eps, "seed": self.seed, "rank_min": self.rank_min,
                "bootstrap": {"resamples": self.resamples, "level": self.level, "unit": "event"}}

    def reset(self) -> None:
        """Forget everything accumulated."""
        block = (self.thresholds, self.pools, self.fss_thresholds, self.fss_scales, self.eps)
        self.members = DeterministicScores(*block)
        self.ensemble_mean = DeterministicScores(*block)
        self.crps = {p: CRPS(p) for p in (1,) + self.pools}
        self.spread_skill = SpreadSkill()
        self.rank_histogram = RankHistogram(self.seed, self.rank_min)
        self.exceedance = ExceedanceReliability(self.thresholds)
        self.cases = CaseRecords(self.thresholds, self.eps)
        self.fvd = FVD()
        self.n_cases = 0
        self.n_members = 0
        self.n_leads = 0

    def accumulate(self, forecast, truth, events: Sequence[str] = None) -> None:
        """Add cases. forecast: (B, M, T, H, W) (or (B, T, H, W) for M = 1), truth: (B, T, H, W); 0–1 VIL.
        events: the storm event of each case (B labels; cases of one event are resampled together for the
        intervals); None: each case is an event of its own.

        M and T must stay the same for the whole evaluation; B, and the split of cases into calls, are free
        (the result does not depend on them)."""
        forecast, truth = check_pair(forecast, truth)
        check_scale(truth)
        b, m, t = forecast.shape[:3]
        if self.n_cases and (m, t) != (self.n_members, self.n_leads):
            raise InputError(f"this batch has {m} members and {t} lead times, earlier batches had "
                             f"{self.n_members} and {self.n_leads}")
        pools = (1,) + self.pools
        pooled = {p: (max_pool(forecast, p), max_pool(truth, p)) for p in pools}
        self.members.accumulate_pooled(pooled)
        mean = forecast.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32) if m > 1 else forecast
        if m > 1:
            self.ensemble_mean.accumulate_pooled({p: (max_pool(mean, p), pooled[p][1]) for p in pools})
        for p, score in self.crps.items():
            score.accumulate_pooled(*pooled[p])
        self.spread_skill.accumulate_checked(forecast, truth, mean)
        self.rank_histogram.accumulate_checked(forecast, truth)
        self.exceedance.accumulate_digital(to_digital(forecast), to_digital(truth))
        self.cases.accumulate_checked(forecast, truth, events)
        self.n_cases += b
        self.n_members, self.n_leads = m, t

    def accumulate_fvd(self, real=None, fake=None) -> None:
        """Add video features (n, 400) of observed (`real`) and forecast (`fake`, one row per member) sequences;
        the video network runs outside the scorer (`video_features.VideoFeatures`)."""
        self.fvd.accumulate_features(real=real, fake=fake)

    def compute(self) -> dict:
        """The scores of everything accumulated so far as a JSON-ready dict (module docstring)."""
        if not self.n_cases:
            raise InputError("no cases accumulated: nothing to score")
        out = {"n_cases": self.n_cases, "n_members": self.n_members, "n_leads": self.n_leads}
        members = self.members.compute()
        lead = members.pop("per_lead_time")
        out.update(members)
        crps = {f"pool{p}": score.compute() for p, score in self.crps.items()}
        out["crps"] = {key: c["crps"] for key, c in crps.items()}
        out["crps_standard"] = {key: c["crps_standard"] for key, c in crps.items()}
        lead["crps"] = {key: c["per_lead_time"]["crps"] for key, c in crps.items()}
        lead["crps_standard"] = {key: c["per_lead_time"]["crps_standard"] for key, c in crps.items()}
        spread = self.spread_skill.compute()
        lead["spread_skill"] = spread.pop("per_lead_time")
        out["spread_skill"] = spread
        ranks = self.rank_histogram.compute()
        out["rank_histogram"] = ranks["rank_histogram"]
        lead["rank_histogram"] = ranks["per_lead_time"]["rank_histogram"]
        out["exceedance"] = self.exceedance.compute()
        out["fvd"] = self.fvd.value()
        out["intervals"] = bootstrap_intervals(self.cases.table(), resamples=self.resamples, seed=self.seed,
                                               level=self.level)
        out["per_lead_time"] = lead
        out["ensemble_mean"] = self.ensemble_mean.compute() if self.n_members > 1 else _copy(members, lead)
        out["notes"] = self._notes(out)
        return out

    def _notes(self, out: dict) -> list:
        notes = []
        counts = out["counts"]["pool1"]
        missing = undefined_scores(counts["hits"], counts["misses"], self.thresholds)
        if missing:
            notes.append(f"POD and bias are null at >= {', '.join(missing)}: no event was observed there (their "
                         "'avg' is the mean over the other thresholds)")
        if out["intervals"] is None:
            notes.append(NOT_ENOUGH_EVENTS)
        return notes

    # -- resumable state -------------------------------------------------------------------------------------

    def _components(self) -> Dict[str, StreamingScore]:
        parts = {f"members/{k}": v for k, v in self.members.scores.items()}
        parts.update({f"ensemble_mean/{k}": v for k, v in self.ensemble_mean.scores.items()})
        parts.update({f"crps_pool{p}": v for p, v in self.crps.items()})
        parts["spread_skill"] = self.spread_skill
        parts["rank_histogram"] = self.rank_histogram
        parts["exceedance"] = self.exceedance
        parts["cases"] = self.cases
        parts["fvd"] = self.fvd
        return parts

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Flat {name: NumPy array} (no objects; `np.savez(path, **state)` and `np.load(path)` round-trip it)."""
        state = {SETTINGS_KEY: np.array(json.dumps(self.settings(), sort_keys=True)),
                 "n_cases": np.array(self.n_cases, np.int64), "n_members": np.array(self.n_members, np.int64),
                 "n_leads": np.array(self.n_leads, np.int64)}
        for prefix, score in self._components().items():
            if not score.empty:
                state.update({f"{prefix}/{k}": v for k, v in score.state_dict().items()})
        return state

    def save_state(self, path) -> Path:
        """Write `state_dict()` to an .npz file (temporary name, then renamed: never half-written)."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **self.state_dict())
        return path

    def load_state(self, path) -> None:
        """Continue from a file written by `save_state`; InputError if unreadable or made with other settings."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                state = {key: saved[key] for key in saved.files}
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read scorer state {str(path)!r}: {exc}") from None
        self.load_state_dict(state)

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Continue from a `state_dict()` (e.g. `np.load(path)`); InputError if it was made with other settings."""
        if SETTINGS_KEY not in state:
            raise InputError("not a scorer state: no 'settings_json' entry")
        saved = json.loads(str(np.asarray(state[SETTINGS_KEY])))
        if saved != json.loads(json.dumps(self.settings(), sort_keys=True)):
            raise InputError(f"scorer state was made with settings {saved}, this scorer has {self.settings()}")
        self.reset()
        for prefix, score in self._components().items():
            part = {k[len(prefix) + 1:]: state[k] for k in state if k.startswith(prefix + "/")}
            if part:
                score.load_state_dict(part)
        self.n_cases = int(state["n_cases"])
        self.n_members = int(state["n_members"])
        self.n_leads = int(state["n_leads"])


def _copy(block: dict, lead: dict) -> dict:
    """The member scores as the ensemble-mean block (M = 1: the mean is the single member)."""
    out = json.loads(json.dumps(block))
    out["per_lead_time"] = {k: json.loads(json.dumps(v)) for k, v in lead.items()
                            if k not in ("crps", "crps_standard", "spread_skill", "rank_histogram")}
    return out
