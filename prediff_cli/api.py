"""The Python API that the commands are thin layers over (importable as `prediff`).

    import prediff
    model = prediff.load_model("demo")                       # or a name from `prediff models`, or a folder
    radar = prediff.read_radar("examples/radar.h5")          # 7 context frames (+ 6 truth frames when present)
    fc = model.forecast(radar, samples=8, sampler="dpmpp", align="avg_x", seed=0)   # an xarray.Dataset
    fc["vil"]                                                # (member, time, y, x), digital VIL 0-255
    fc.to_netcdf("forecast.nc")                              # what `prediff sample` writes
    scores = prediff.score(fc, radar)                        # the scores.json dict, with the baselines

Settings follow the rule of `prediff sample`: the model's own config, or `config=` a preset / YAML, then `sets=`
(`section.key=value` strings), then the keyword options, validated once.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable, Optional, Sequence

import numpy as np

from prediff.config import Config
from prediff.config.forecast_settings import forecast_config, sample_values
from prediff.data.radar_input import RadarInput, read_radar_input
from prediff.errors import InputError
from prediff.io.netcdf import forecast_dataset, read_forecast
from prediff.pipelines.evaluate import Evaluation
from prediff.pipelines.forecast import provenance, reference_time_of, run_forecast
from prediff.runtime import setup_runtime


def read_radar(path, event: int = 0, start: int = 0, variable: str = "vil",
               grid: Optional[str] = None) -> RadarInput:
    """Context frames `start … start+6` of event `event` (and the next 6 as truth, when present) of `variable` in
    an HDF5 or CF NetCDF file, on 0–1, with their times and map grid when the file carries them (`grid`: a
    `--grid` text such as "center=35.2,-97.4" places the frames on the map)."""
    return read_radar_input(path, event, start, variable=variable, grid=grid)


def _as_radar(context, truth, reference_time) -> RadarInput:
    if isinstance(context, RadarInput):
        return context
    frames = np.asarray(context, dtype=np.float32)
    if frames.ndim != 3:
        raise InputError(f"context must be (T, H, W) frames on 0-1 or a RadarInput, got shape {frames.shape}")
    times = None
    if reference_time is not None:
        times = [reference_time - dt.timedelta(minutes=10 * k) for k in range(len(frames) - 1, -1, -1)]
    return RadarInput(context=frames, truth=None if truth is None else np.asarray(truth, np.float32),
                      context_times=times, grid=None, source="array", event=0, start=0)


def forecast(model, context, *, samples: Optional[int] = None, sampler: Optional[str] = None,
             steps: Optional[int] = None, eta: Optional[float] = None, align: Optional[str] = None,
             align_target: Optional[float] = None, align_factor: Optional[float] = None,
             align_oracle: Optional[float] = None, guide_scale: Optional[float] = None,
             couple_members: Optional[bool] = None, member_batch: Optional[int] = None, seed: Optional[int] = None,
             thresholds: Optional[Sequence[float]] = None, config: Optional[str] = None, sets: Sequence[str] = (),
             truth=None, tile_overlap: Optional[int] = None,
             reference_time: Optional[dt.datetime] = None, progress: Optional[Callable[[], None]] = None):
    """An ensemble forecast as an `xarray.Dataset` with the variables, coordinates and attributes of the NetCDF
    that `prediff sample` writes. `context`: a `RadarInput` (from `read_radar`) or (T_in, H, W) frames on 0–1 (then
    `reference_time`, the UTC of the last frame, is needed; `truth` only for `align_oracle`). H and W are at least
    the model's 128 pixels; larger frames are forecast in 128 x 128 windows overlapping by at least `tile_overlap`
    pixels (default: the config's sample.tile_overlap) and blended."""
    radar = _as_radar(context, truth, reference_time)
    values = sample_values(samples=samples, sampler=sampler, steps=steps, eta=eta, align=align,
                           align_target=align_target, align_factor=align_factor, align_oracle=align_oracle,
                           guide_scale=guide_scale, couple_members=couple_members)
    values.update({k: v for k, v in (("sample.member_batch", member_batch), ("seed", seed),
                                     ("sample.tile_overlap", tile_overlap)) if v is not None})
    if thresholds is not None:  # digital VIL levels of the exceedance probabilities
        values["sample.thresholds"] = tuple(float(v) for v in thresholds)
    settings = forecast_config(model.config, config, sets, values)
    reference = reference_time_of(radar.context_times, reference_time, radar.source)
    setup_runtime(settings.device, settings.seed)
    result = run_forecast(model, settings, radar.context, radar.truth, progress)
    attrs = provenance(model, settings, result, source=radar.source, event=radar.event, start=radar.start)
    return forecast_dataset(result.members, reference_time=reference, lead_minutes=result.lead_minutes,
                            context=radar.context, grid=radar.grid, attrs=attrs,
                            thresholds=settings.sample.thresholds)


def score(fc, truth, config: Optional[str] = None, sets: Sequence[str] = ()) -> dict:
    """Scores of a forecast (`forecast`'s Dataset, or a path to a forecast NetCDF) against `truth` (a `RadarInput`
    with truth frames, or (T, H, W) frames on 0–1), beside persistence and optical flow: the scores.json dict."""
    settings = forecast_config(Config(), config, sets)
    members, context = _forecast_fields(fc)
    frames = truth.truth if isinstance(truth, RadarInput) else truth
    if frames is None:
        raise InputError("the truth has no frames after the context to score against")
    frames = np.asarray(frames, np.float32)
    if frames.shape != members.shape[1:]:
        raise InputError(f"the truth frames {frames.shape} do not match the forecast's {members.shape[1:]}")
    evaluation = Evaluation(settings.score, settings.seed)
    evaluation.add(context[None], frames[None], members[None])
    return evaluation.scores({"mode": "api", "members": int(members.shape[0])})


def _forecast_fields(fc):
    """(members (M, T, H, W), context (T_in, H, W)) on 0–1 from a forecast Dataset or NetCDF path."""
    if hasattr(fc, "data_vars"):
        if "vil_context" not in fc:
            raise InputError("the forecast has no vil_context (the observed frames), which the baselines need")
        return (np.asarray(fc["vil"].values, np.float32) / 255.0,
                np.asarray(fc["vil_context"].values, np.float32) / 255.0)
    read = read_forecast(fc)
    if read.context is None:
        raise InputError(f"{fc} has no vil_context (the observed frames), which the baselines need")
    return np.clip(read.forecast, 0.0, 1.0), read.context
