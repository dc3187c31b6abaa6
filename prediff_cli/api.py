"""The Python API that the commands are thin layers over (importable as `prediff`).

    import prediff
    model = prediff.load_model("demo")                       # or a name from `prediff models`, or a folder
    radar = prediff.read_radar("examples/radar.h5")          # 7 context frames (+ 6 truth frames when present)
    # or: a NetCDF file, a folder of one file per time, an xarray DataArray/Dataset with units, or a NumPy array
    # with its scale said: model.forecast(frames, scale="kg m-2", reference_time=...)
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
from prediff.data.model_placement import OUTPUT_GRIDS, output_fields, written_orientation
from prediff.data.radar_input import RadarInput, read_radar_input
from prediff.vil_scale import ARRAY_SCALES, to_model_scale
from prediff.errors import InputError
from prediff.io.orientation import Orientation
from prediff.io.netcdf import forecast_dataset, read_forecast
from prediff.pipelines.evaluate import Evaluation
from prediff.pipelines.forecast import provenance, reference_time_of, run_forecast
from prediff.runtime import setup_runtime


def read_radar(source, event: int = 0, start: int = 0, variable: str = "vil",
               grid: Optional[str] = None) -> RadarInput:
    """Context frames `start … start+6` of the 10-minute series of event `event` (and the next 6 as truth, when
    present) of `variable`, on 0–1 and north-up, with their times and map grid when the input carries them.
    Frames on a map grid come resampled onto the model's 3 km grid (`radar.grid`); `radar.placement` keeps the
    input's own grid and frames.

    Parameters
    ----------
    source : path, folder, glob pattern, list of paths, xarray.DataArray or xarray.Dataset
        An HDF5 or CF NetCDF file; a folder, glob or list of files holding one time each (the newest complete
        context);
        or an xarray object, read as a NetCDF file is: dimensions told by their coordinates, scale by the `units`
        attribute ("kg m-2", or "1" / none for digital 0–255 or 0–1).
    grid : str, optional
        A `--grid` text such as "center=35.2,-97.4" that places the frames on the map.
    """
    return read_radar_input(source, event, start, variable=variable, grid=grid)


def _as_radar(context, truth, reference_time, scale: Optional[str], variable: str) -> RadarInput:
    if isinstance(context, RadarInput):
        return context
    if hasattr(context, "dims") and hasattr(context, "attrs"):  # an xarray DataArray or Dataset
        return read_radar_input(context, variable=variable)
    if scale not in ARRAY_SCALES:
        raise InputError(f"a NumPy array carries no units: give its scale, scale='0-1', 'digital' (SEVIR 0-255) or "
                         f"'kg m-2' (got {scale!r}); or pass an xarray DataArray with a units attribute")
    frames = np.asarray(context)
    if frames.ndim != 3 or frames.dtype.kind not in "uif":
        raise InputError(f"context must be (T, H, W) numbers (frames oldest first, row 0 north), got shape "
                         f"{frames.shape} of {frames.dtype}")
    kind = ARRAY_SCALES[scale]
    context = to_model_scale(frames, kind, "the context array", hint=f" with scale={scale!r}")
    if truth is not None:
        truth = to_model_scale(np.asarray(truth), kind, "the truth array", hint=f" with scale={scale!r}")
    times = None
    if reference_time is not None:
        times = [reference_time - dt.timedelta(minutes=10 * k) for k in range(len(frames) - 1, -1, -1)]
    return RadarInput(context=context, truth=truth, context_times=times, grid=None, source="array", event=0,
                      start=0)


def forecast(model, context, *, samples: Optional[int] = None, sampler: Optional[str] = None,
             steps: Optional[int] = None, eta: Optional[float] = None, align: Optional[str] = None,
             align_target: Optional[float] = None, align_factor: Optional[float] = None,
             align_oracle: Optional[float] = None, guide_scale: Optional[float] = None,
             couple_members: Optional[bool] = None, member_batch: Optional[int] = None, seed: Optional[int] = None,
             precision: Optional[str] = None,
             thresholds: Optional[Sequence[float]] = None, config: Optional[str] = None, sets: Sequence[str] = (),
             truth=None, scale: Optional[str] = None, variable: str = "vil", tile_overlap: Optional[int] = None,
             reference_time: Optional[dt.datetime] = None, output_grid: str = "model",
             progress: Optional[Callable[[], None]] = None):
    """An ensemble forecast as an `xarray.Dataset` with the variables, coordinates and attributes of the NetCDF
    that `prediff sample` writes.

    `context` is a `RadarInput` (from `read_radar`); an xarray DataArray or Dataset (`variable` in it), read as a
    NetCDF file is (units, dimensions, times and map grid from its metadata); or a NumPy array (T_in, H, W), oldest
    frame first, row 0 north, 10 minutes apart, whose `scale` must be said: "0-1", "digital" (SEVIR 0–255) or
    "kg m-2" (values outside it are refused). Without times in the input, `reference_time` (UTC of the last frame)
    is needed; `truth` (same scale) only for `align_oracle`. `output_grid`: "model" (the model's 3 km grid,
    north-up) or "input" (resampled back onto the input's own map grid, rows running as the input's). Frames
    larger than the model's 128 pixels (on the model's grid) are forecast in 128 x 128 windows overlapping by at
    least `tile_overlap` pixels (default: the config's sample.tile_overlap) and blended."""
    if output_grid not in OUTPUT_GRIDS:
        raise InputError(f"unknown output grid {output_grid!r}; valid output grids: {', '.join(OUTPUT_GRIDS)}")
    radar = _as_radar(context, truth, reference_time, scale, variable)
    values = sample_values(samples=samples, sampler=sampler, steps=steps, eta=eta, align=align,
                           align_target=align_target, align_factor=align_factor, align_oracle=align_oracle,
                           guide_scale=guide_scale, couple_members=couple_members, precision=precision)
    values.update({k: v for k, v in (("sample.member_batch", member_batch), ("seed", seed),
                                     ("sample.tile_overlap", tile_overlap)) if v is not None})
    if thresholds is not None:  # digital VIL levels of the exceedance probabilities
        values["sample.thresholds"] = tuple(float(v) for v in thresholds)
    settings = forecast_config(model.config, config, sets, values)
    reference = reference_time_of(radar.context_times, reference_time, radar.source)
    setup_runtime(settings.device, settings.seed)
    result = run_forecast(model, settings, radar.context, radar.truth, progress)
    attrs = provenance(model, settings, result, source=radar.source, event=radar.event, start=radar.start)
    members, context, _, grid = output_fields(result.members, radar.context, radar.truth, radar.grid,
                                              radar.placement, output_grid)
    return forecast_dataset(members, reference_time=reference, lead_minutes=result.lead_minutes,
                            context=context, grid=grid, attrs=attrs, thresholds=settings.sample.thresholds,
                            orientation=written_orientation(radar.orientation, radar.grid, output_grid))


def score(fc, truth, config: Optional[str] = None, sets: Sequence[str] = ()) -> dict:
    """Scores of a forecast (`forecast`'s Dataset, or a path to a forecast NetCDF) against `truth` (a `RadarInput`
    with truth frames, or (T, H, W) frames on 0–1), beside persistence, optical flow and STEPS: the scores.json
    dict."""
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
        coords = [(fc[n].values, dict(fc[n].attrs)) if n in fc.variables else (None, {}) for n in ("x", "y")]
        turn = Orientation.of(*coords[0], *coords[1], what="the forecast")  # its rows as the input's ran
        return (turn.apply(np.asarray(fc["vil"].values, np.float32) / 255.0),
                turn.apply(np.asarray(fc["vil_context"].values, np.float32) / 255.0))
    read = read_forecast(fc)
    if read.context is None:
        raise InputError(f"{fc} has no vil_context (the observed frames), which the baselines need")
    return np.clip(read.forecast, 0.0, 1.0), read.context
