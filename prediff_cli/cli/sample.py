"""`prediff sample`: an ensemble forecast from a radar file, written as CF-NetCDF, animated GIF and PNG."""
from __future__ import annotations

import datetime as dt
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from prediff.cli.options import DEFAULT_MODEL, JsonOpt, forecast_options, model_default
from prediff.cli.progress import StepsDisplay
from prediff.config import load_config
from prediff.cli.reporting import echo, emit_json, guarded, json_output
from prediff.errors import InputError
from prediff.io.grid import GRID_SPEC_HELP


#: the default model's forecast settings (its config's), for the help
_DEFAULTS = load_config(DEFAULT_MODEL).sample


def _parse_time(text: Optional[str]) -> Optional[dt.datetime]:
    if text is None:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "")).replace(tzinfo=None)
    except ValueError:
        raise InputError(f"--reference-time {text!r} is not a date-time like 2019-07-01T18:00") from None


def parse_thresholds(text: Optional[str]) -> Optional[tuple]:
    """'16,74,133' → (16.0, 74.0, 133.0) (digital VIL); None stays None (the model's sample.thresholds)."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise InputError(f"--thresholds {text!r}: expected digital VIL values 0-255 separated by commas, like "
                         "16,74,133") from None
    if not values or len(values) > 64 or len(set(values)) != len(values):
        raise InputError(f"--thresholds {text!r}: expected 1 to 64 distinct values, like 16,74,133")
    return tuple(sorted(values))


class OutputGrid(str, Enum):
    model = "model"
    input = "input"


def register(app: typer.Typer) -> None:
    @app.command("sample")
    @guarded(oom_hint="try fewer --samples or members per call (--set sample.member_batch=N)")
    @forecast_options
    def sample(
        ctx: typer.Context,
        input: Annotated[Path, typer.Option(
            "--input", "-i", metavar="FILE|DIR|GLOB", help="Radar file: HDF5 with a 'vil' dataset, SEVIR (N,H,W,T) or "
            "(T,H,W); or CF NetCDF (netCDF-3/4) whose variable has time, y and x dimensions (in any order, told by "
            "their coordinates), digital (units '1') or physical VIL (units 'kg m-2'). Or a folder, or a quoted glob "
            "such as 'radar/*.nc', of files holding one time each: the newest frames 10 minutes apart are used. "
            "5- and 2.5-minute series are thinned to 10 minutes.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("forecast"),
        variable: Annotated[str, typer.Option("--variable", metavar="NAME",
                                              help="Variable (NetCDF) or dataset (HDF5) holding the VIL.")] = "vil",
        event: Annotated[int, typer.Option("--event", min=0, help="Event (first axis of a SEVIR file).")] = 0,
        start: Annotated[int, typer.Option("--start", min=0, help="First context frame (index along the 10-minute "
                                           "series of a file).")] = 0,
        reference_time: Annotated[Optional[str], typer.Option(
            "--reference-time", metavar="YYYY-MM-DDTHH:MM", help="UTC of the last context frame, when the input "
            "carries no times (SEVIR catalog, time_utc or a NetCDF time coordinate). (default: from the input)")
        ] = None,
        grid: Annotated[Optional[str], typer.Option(
            "--grid", metavar="SPEC", help=f"Place the input on the map (LAEA grid): {GRID_SPEC_HELP}. Replaces "
            "the input's own grid. (default: the input's grid: SEVIR catalog, NetCDF grid mapping or lat/lon, "
            "else none: the input's pixels are taken as the model's 3 km pixels)")
        ] = None,
        output_grid: Annotated[OutputGrid, typer.Option(
            "--output-grid", case_sensitive=False, help="Grid of the written forecast: 'model' (the model's 3 km "
            "LAEA grid that the input was resampled onto, north-up) or 'input' (resampled back onto the input's own "
            "grid, with its grid mapping, rows and columns running as in the input).")] = OutputGrid.model,
        thresholds: Annotated[Optional[str], typer.Option(
            "--thresholds", metavar="V1,V2,...", help="Digital VIL thresholds of the exceedance probabilities "
            f"(a pixel counts at >= threshold). {model_default(_DEFAULTS.thresholds)}")
        ] = None,
        tile_overlap: Annotated[Optional[int], typer.Option(
            "--tile-overlap", metavar="PIXELS", min=0, help="Frames larger than the model's 128 x 128 are forecast "
            "in 128 x 128 windows that overlap by at least this many pixels (a multiple of 8, at most 64), blended "
            f"smoothly. {model_default(_DEFAULTS.tile_overlap)}")] = None,
        json_: JsonOpt = False,
        *, forecast: dict,
    ):
        """Forecast the next 6 frames (60 min) as an ensemble: NetCDF + GIF + PNG in --out."""
        from prediff.cli.command_line import command_line
        from prediff.pipelines.sample_run import run_sample

        levels = parse_thresholds(thresholds)
        if levels is not None:
            forecast["values"]["sample.thresholds"] = levels
        if tile_overlap is not None:
            forecast["values"]["sample.tile_overlap"] = tile_overlap
        with json_output(json_):
            with StepsDisplay("denoising") as display:
                report = run_sample(input, out, event=event, start=start, reference_time=_parse_time(reference_time),
                                    variable=variable, grid=grid, output_grid=OutputGrid(output_grid).value,
                                    progress_factory=display.start, notify=echo, command=command_line(ctx),
                                    **forecast)
            coverage = report.get("input_coverage")
            if coverage is not None and coverage < 0.995:
                echo(f"note: the input covers {coverage:.0%} of the model's grid; no echo was assumed beyond it")
            echo(f"wrote {report['netcdf']}, {report['gif']} and {report['png']} "
                 f"({report['members']} members, {report['sampler']}-{report['network_evaluations']}, "
                 f"{report['precision']}, {report['seconds']:.1f} s; alignment: {report['alignment']})")
        if json_:
            emit_json(report)
