"""`prediff sample` as one plain function: a radar file and a model in, forecast files out, a small report back.

The forecast's settings are a `Config` (see `config.forecast_settings`): the model's own config, or `config`,
with `sets` and `values` applied. Everything is checked before the first network is built: the output folder,
the input file, the model's checkpoints and the settings.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from prediff.config import write_resolved_config
from prediff.config.forecast_settings import forecast_config
from prediff.data.radar_input import read_radar_input
from prediff.io.atomic import atomic_write_text
from prediff.io.netcdf import write_forecast
from prediff.io.output_dir import check_output_dir
from prediff.visualization.animation import write_forecast_gif
from prediff.visualization.summary import write_summary_png

from .forecast import AlignmentRequest, forecast_radar, model_label
from .model import Checkpoints, Model, load_model

#: what `prediff sample` writes into --out
OUTPUT_NAMES = ("forecast.nc", "forecast.gif", "forecast.png", "run.json", "config.yaml")


def run_sample(input: Union[Path, Sequence[Path]], out: Path = Path("forecast"), *,
               model: Union[str, Model] = "demo", event: int = 0, start: int = 0,
               config: Optional[str] = None, sets: Sequence[str] = (), values: Optional[Mapping[str, Any]] = None,
               checkpoints: Checkpoints = Checkpoints(), allow_mismatch: bool = False, overwrite: bool = False,
               reference_time: Optional[dt.datetime] = None, variable: str = "vil", grid: Optional[str] = None,
               output_grid: str = "model", progress_factory: Optional[Callable[..., Callable]] = None,
               notify: Optional[Callable[[str], None]] = None, command: str = "prediff sample") -> dict:
    """Forecast from frames `start … start+6` of `input` (event `event`; `variable` of an HDF5 or NetCDF file; or
    the newest frames of a folder, glob or list of files holding one time each) into `out`; `grid` (a `--grid`
    text) places the input on the map; `output_grid` ("model" or "input") is the grid the forecast is written on.
    `model` is a model's name or folder, or a `Model` already loaded (then `checkpoints` and `allow_mismatch` are
    not used, and its compiled networks are reused across calls). `notify` receives the lines to show before
    sampling (how the input was read, the model); `command` is recorded in the file's history. Frames larger than
    the model's (on the model's grid) are forecast in overlapping windows (`sample.tile_overlap`);
    `progress_factory(total, windows=n)` returns the callable advanced once per solver step (total over all
    windows). Returns the run report."""
    check_output_dir(out, OUTPUT_NAMES, overwrite, what="a forecast")
    radar = read_radar_input(input, event, start, variable=variable, grid=grid)
    loaded = model if isinstance(model, Model) else load_model(
        model, vae=checkpoints.vae, unet=checkpoints.unet, align=checkpoints.align, allow_mismatch=allow_mismatch)
    settings = forecast_config(loaded.config, config, sets, values)
    s = settings.sample
    product = forecast_radar(loaded, radar, settings, reference_time=reference_time, output_grid=output_grid,
                             progress_factory=progress_factory, notify=notify, command=command)
    result, reference, members, context, truth, out_grid = (product.result, product.reference_time, product.members,
                                                            product.context, product.truth, product.grid)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    nc = write_forecast(out / "forecast.nc", members, reference_time=reference, lead_minutes=result.lead_minutes,
                        context=context, grid=out_grid, attrs=product.attrs, thresholds=s.thresholds,
                        orientation=product.orientation)
    pictures = dict(lead_minutes=result.lead_minutes, max_members=s.gif_members, truth=truth,
                    reference_time=reference, thresholds=s.thresholds, model_name=model_label(loaded), grid=out_grid)
    gif = write_forecast_gif(out / "forecast.gif", context, members, **pictures)
    png = write_summary_png(out / "forecast.png", context, members, **pictures)
    write_resolved_config(settings, out)
    report = {
        "netcdf": str(nc), "gif": str(gif), "png": str(png), "members": int(s.samples), "sampler": s.sampler,
        "network_evaluations": result.network_evaluations, "seconds": round(result.seconds, 3),
        "precision": result.precision,
        "alignment": AlignmentRequest.from_config(s).describe(),
        "alignment_target_vil": None if result.y_hat is None else round(result.y_hat * 255.0, 3),
        "ensemble_mean_vil": round(float(result.members.mean() * 255.0), 3),
        "reference_time": reference.isoformat(), "thresholds": [float(v) for v in s.thresholds],
        "grid": None if out_grid is None else out_grid.mapping_name, "output_grid": output_grid,
        "input_coverage": None if radar.placement is None else round(radar.placement.coverage, 4),
        "checkpoints": {k: str(v) for k, v in vars(loaded.paths).items() if v is not None},
        "sha256": loaded.sha256, "seed": settings.seed, "model": loaded.name, "input_notes": radar.notes,
        "windows": product.windows, "tile_overlap": int(s.tile_overlap) if product.windows > 1 else None,
    }
    atomic_write_text(out / "run.json", json.dumps(report, indent=2, sort_keys=True))
    return report
