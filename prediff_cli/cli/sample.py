"""`prediff sample`: an ensemble forecast from a radar file, written as CF-NetCDF, animated GIF and PNG."""
from __future__ import annotations

import datetime as dt
import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from prediff_cli.cli.options import Device, DeviceOpt, SeedOpt, SetOpt
from prediff_cli.cli.reporting import echo, guarded
from prediff_cli.errors import InputError


class Sampler(str, Enum):
    ddim = "ddim"
    ddpm = "ddpm"
    dpmpp = "dpmpp"


class Align(str, Enum):
    none = "none"
    avg_x = "avg_x"


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
    def sample(
        input: Annotated[Path, typer.Option("--input", "-i", help="HDF5 with a 'vil' dataset: SEVIR (N,H,W,T) "
                                                                   "or (T,H,W).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("forecast"),
        event: Annotated[int, typer.Option("--event", min=0, help="Event (first axis of a SEVIR file).")] = 0,
        start: Annotated[int, typer.Option("--start", min=0, help="First context frame.")] = 0,
        samples: Annotated[Optional[int], typer.Option("--samples", "-n", min=1, help="Ensemble members.")] = None,
        sampler: Annotated[Optional[Sampler], typer.Option(
            "--sampler", help="ddim (fast), dpmpp (fastest, 20 steps), ddpm (faithful, 1000 steps).")] = None,
        steps: Annotated[Optional[int], typer.Option(
            "--steps", min=1,
            help="Solver steps (ddim/dpmpp; default: the config's, or 50 / 20 when --sampler changes it).")] = None,
        eta: Annotated[Optional[float], typer.Option(
            "--eta", min=0.0, max=1.0,
            help="Solver noise for ddim/dpmpp: 0 deterministic (ODE), 1 stochastic (SDE).")] = None,
        align: Annotated[Optional[Align], typer.Option(
            "--align", help="Knowledge alignment toward an anticipated mean intensity.")] = None,
        align_target: Annotated[Optional[float], typer.Option(
            "--align-target", help="Anticipated mean VIL of the forecast frames (digital 0-255).")] = None,
        align_factor: Annotated[Optional[float], typer.Option(
            "--align-factor", help="Anticipated mean = factor x mean of the last context frame (default 1).")] = None,
        align_oracle: Annotated[Optional[float], typer.Option(
            "--align-oracle", help="EVALUATION ONLY: anticipated mean = factor x the true future mean "
                                   "(the paper uses 2); needs truth frames in the input.")] = None,
        guide_scale: Annotated[Optional[float], typer.Option("--guide-scale", help="Alignment strength.")] = None,
        couple_members: Annotated[bool, typer.Option(
            "--couple-members", help="Official coupling of members through one norm (default: per member).")] = False,
        vae: Annotated[Optional[Path], typer.Option("--vae", help="VAE checkpoint (default: demo model).")] = None,
        unet: Annotated[Optional[Path], typer.Option("--unet", help="UNet checkpoint (default: demo model).")] = None,
        align_net: Annotated[Optional[Path], typer.Option(
            "--align-net", help="Alignment checkpoint (default: demo model).")] = None,
        overwrite: Annotated[bool, typer.Option(
            "--overwrite", help="Replace a forecast already in --out (default: refuse).")] = False,
        allow_mismatch: Annotated[bool, typer.Option(
            "--allow-mismatch", help="Sample even when the UNet or alignment network was trained on another VAE.")
        ] = False,
        reference_time: Annotated[Optional[str], typer.Option(
            "--reference-time", help="UTC of the last context frame, when the input carries no times.")] = None,
        config: Annotated[Optional[str], typer.Option(
            "--config", "-c", metavar="PRESET|PATH", help="Take the sample.* defaults from this config instead of "
                                                          "the UNet checkpoint's.")] = None,
        sets: SetOpt = None,
        device: DeviceOpt = Device.auto,
        seed: SeedOpt = None,
    ):
        """Forecast the next 6 frames (60 min) as an ensemble: NetCDF + GIF + PNG in --out."""
        from prediff_cli.cli.progress import StepsDisplay
        from prediff_cli.pipelines.sample_run import SampleOptions, run_sample

        if sum(v is not None for v in (align_target, align_factor, align_oracle)) > 1:
            raise InputError("give at most one of --align-target, --align-factor, --align-oracle")
        options = SampleOptions(input=input, out=out, event=event, start=start, samples=samples,
                                sampler=sampler.value if sampler else None, steps=steps, eta=eta,
                                align=align.value if align else None, align_target=align_target,
                                align_factor=align_factor, align_oracle=align_oracle, guide_scale=guide_scale,
                                couple_members=couple_members, vae=vae, unet=unet, align_net=align_net,
                                reference_time=_parse_time(reference_time), config=config, sets=list(sets or []),
                                device=device.value, seed=seed, overwrite=overwrite,
                                allow_mismatch=allow_mismatch)
        display = None

        def progress(total: int):
            nonlocal display
            display = StepsDisplay("denoising", total)
            display.__enter__()
            return display.advance

        try:
            report = run_sample(options, progress_factory=progress)
        finally:
            if display is not None:
                display.__exit__(None, None, None)
        echo(f"wrote {report['netcdf']}, {report['gif']} and {report['png']} "
             f"({report['members']} members, {report['sampler']}-{report['network_evaluations']}, "
             f"{report['seconds']:.1f} s; alignment: {report['alignment']})")
        echo(json.dumps({k: report[k] for k in ("ensemble_mean_vil", "alignment_target_vil")}))
