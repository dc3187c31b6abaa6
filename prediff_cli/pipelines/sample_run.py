"""`prediff sample` as one plain function: a radar file and a model in, forecast files out, a small report back.

The forecast's settings are a `Config` (see `config.forecast_settings`): the model's own config, or `config`,
with `sets` and `values` applied. Everything is checked before the first network is built: the output folder,
the input file, the model's checkpoints and the settings.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from prediff.config import write_resolved_config
from prediff.config.forecast_settings import forecast_config
from prediff.data.radar_input import read_radar_input
from prediff.errors import InputError
from prediff.io.atomic import atomic_write_text
from prediff.io.netcdf import write_forecast
from prediff.io.output_dir import check_output_dir
from prediff.runtime import setup_runtime
from prediff.visualization.animation import write_forecast_gif
from prediff.visualization.summary import write_summary_png

from .forecast import AlignmentRequest, check_context, provenance, reference_time_of, run_forecast
from .model import Checkpoints, load_model
from .sampler import solver_timesteps

#: what `prediff sample` writes into --out
OUTPUT_NAMES = ("forecast.nc", "forecast.gif", "forecast.png", "run.json", "config.yaml")


def run_sample(input: Path, out: Path = Path("forecast"), *, model: str = "demo", event: int = 0, start: int = 0,
               config: Optional[str] = None, sets: Sequence[str] = (), values: Optional[Mapping[str, Any]] = None,
               checkpoints: Checkpoints = Checkpoints(), allow_mismatch: bool = False, overwrite: bool = False,
               reference_time: Optional[dt.datetime] = None, variable: str = "vil", grid: Optional[str] = None,
               progress_factory: Optional[Callable[..., Callable]] = None) -> dict:
    """Forecast from frames `start … start+6` of `input` (event `event`; `variable` of an HDF5 or NetCDF file)
    into `out`; `grid` (a `--grid` text) places the input on the map. Frames larger than the model's are
    forecast in overlapping windows (`sample.tile_overlap`). `progress_factory(total, windows=n)` returns the
    callable advanced once per solver step (total over all windows). Returns the run report."""
    check_output_dir(out, OUTPUT_NAMES, overwrite, what="a forecast")
    radar = read_radar_input(input, event, start, variable=variable, grid=grid)
    loaded = load_model(model, vae=checkpoints.vae, unet=checkpoints.unet, align=checkpoints.align,
                        allow_mismatch=allow_mismatch)
    settings = forecast_config(loaded.config, config, sets, values)
    s = settings.sample
    layout = check_context(loaded.config, radar.context, s.tile_overlap, what=f"{input}: the frames")
    if s.align != "none" and not loaded.has_align:
        loaded.network("align")  # raises the one line that says why the model has none
    if s.align_oracle is not None and radar.truth is None:
        raise InputError("--align-oracle needs the truth frames, but the input has none after the context")
    reference = reference_time_of(radar.context_times, reference_time, input)
    setup_runtime(settings.device, settings.seed)
    evaluations = len(solver_timesteps(s.sampler, s.steps, loaded.config.diffusion.timesteps))
    calls = -(-s.samples // (s.member_batch or s.samples))
    progress = None
    if progress_factory:
        progress = progress_factory(evaluations * calls * layout.count, windows=layout.count)
    result = run_forecast(loaded, settings, radar.context, radar.truth, progress)
    attrs = provenance(loaded, settings, result, source=input, event=event, start=start)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    nc = write_forecast(out / "forecast.nc", result.members, reference_time=reference,
                        lead_minutes=result.lead_minutes, context=radar.context, grid=radar.grid, attrs=attrs,
                        thresholds=s.thresholds)
    gif = write_forecast_gif(out / "forecast.gif", radar.context, result.members, lead_minutes=result.lead_minutes,
                             max_members=s.gif_members, truth=radar.truth, reference_time=reference,
                             thresholds=s.thresholds)
    png = write_summary_png(out / "forecast.png", radar.context, result.members, lead_minutes=result.lead_minutes,
                            truth=radar.truth, max_members=s.gif_members, thresholds=s.thresholds)
    write_resolved_config(settings, out)
    report = {
        "netcdf": str(nc), "gif": str(gif), "png": str(png), "members": int(s.samples), "sampler": s.sampler,
        "network_evaluations": result.network_evaluations, "seconds": round(result.seconds, 3),
        "alignment": AlignmentRequest.from_config(s).describe(),
        "alignment_target_vil": None if result.y_hat is None else round(result.y_hat * 255.0, 3),
        "ensemble_mean_vil": round(float(result.members.mean() * 255.0), 3),
        "reference_time": reference.isoformat(), "thresholds": [float(v) for v in s.thresholds],
        "grid": None if radar.grid is None else radar.grid.mapping_name,
        "checkpoints": {k: str(v) for k, v in vars(loaded.paths).items() if v is not None},
        "sha256": loaded.sha256, "seed": settings.seed, "model": loaded.name,
        "windows": layout.count, "tile_overlap": int(s.tile_overlap) if layout.count > 1 else None,
    }
    atomic_write_text(out / "run.json", json.dumps(report, indent=2, sort_keys=True))
    return report
