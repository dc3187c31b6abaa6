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

from typing import Optional, Sequence

import numpy as np

from prediff.config import Config
from prediff.config.forecast_settings import forecast_config
from prediff.data.radar_input import RadarInput, read_radar_input
from prediff.errors import InputError
from prediff.io.netcdf import read_forecast
from prediff.io.orientation import Orientation
from prediff.pipelines.evaluate import Evaluation
from prediff.pipelines.forecast import forecast

__all__ = ["forecast", "read_radar", "score"]

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
