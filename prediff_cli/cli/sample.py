"""`prediff sample`: an ensemble forecast from a radar file, written as CF-NetCDF, animated GIF and PNG."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from prediff.cli.options import forecast_options
from prediff.cli.progress import StepsDisplay
from prediff.cli.reporting import echo, guarded
from prediff.errors import InputError


def _parse_time(text: Optional[str]) -> Optional[dt.datetime]:
    if text is None:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "")).replace(tzinfo=None)
    except ValueError:
        raise InputError(f"--reference-time {text!r} is not a date-time like 2019-07-01T18:00") from None


def register(app: typer.Typer) -> None:
    @app.command("sample")
    @guarded(oom_hint="try fewer --samples or members per call (--set sample.member_batch=N)")
    @forecast_options
    def sample(
        input: Annotated[Path, typer.Option("--input", "-i", help="HDF5 with a 'vil' dataset: SEVIR (N,H,W,T) "
                                                                   "or (T,H,W).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("forecast"),
        event: Annotated[int, typer.Option("--event", min=0, help="Event (first axis of a SEVIR file).")] = 0,
        start: Annotated[int, typer.Option("--start", min=0, help="First context frame.")] = 0,
        reference_time: Annotated[Optional[str], typer.Option(
            "--reference-time", help="UTC of the last context frame, when the input carries no times.")] = None,
        *, forecast: dict,
    ):
        """Forecast the next 6 frames (60 min) as an ensemble: NetCDF + GIF + PNG in --out."""
        from prediff.pipelines.sample_run import run_sample

        with StepsDisplay("denoising") as display:
            report = run_sample(input, out, event=event, start=start, reference_time=_parse_time(reference_time),
                                progress_factory=display.start, **forecast)
        echo(f"wrote {report['netcdf']}, {report['gif']} and {report['png']} "
             f"({report['members']} members, {report['sampler']}-{report['network_evaluations']}, "
             f"{report['seconds']:.1f} s; alignment: {report['alignment']})")
        echo(json.dumps({k: report[k] for k in ("ensemble_mean_vil", "alignment_target_vil")}))
