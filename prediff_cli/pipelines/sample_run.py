"""`prediff sample` as a plain function: options in, files out, a small report back."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

from prediff_cli.config import load_config, override_config, write_resolved_config
from prediff_cli.config.schema import DEFAULT_SOLVER_STEPS
from prediff_cli.errors import InputError
from prediff_cli.io.atomic import atomic_write_text
from prediff_cli.io.output_dir import check_output_dir

#: what `prediff sample` writes into --out
OUTPUT_NAMES = ("forecast.nc", "forecast.gif", "forecast.png", "run.json", "config.yaml")


@dataclass
class SampleOptions:
    input: Path
    out: Path = Path("forecast")
    event: int = 0
    start: int = 0
    samples: Optional[int] = None
    sampler: Optional[str] = None
    steps: Optional[int] = None
    eta: Optional[float] = None
    align: Optional[str] = None
    align_target: Optional[float] = None
    align_factor: Optional[float] = None
    align_oracle: Optional[float] = None
    guide_scale: Optional[float] = None
    couple_members: bool = False
    vae: Optional[Path] = None
    unet: Optional[Path] = None
    align_net: Optional[Path] = None
    reference_time: Optional[dt.datetime] = None
    config: Optional[str] = None
    sets: List[str] = field(default_factory=list)
    device: str = "auto"
    seed: Optional[int] = None
    overwrite: bool = False  # replace a forecast already in `out`
    allow_mismatch: bool = False  # sample with a UNet / alignment network trained on another VAE


def _sample_settings(options: SampleOptions, checkpoint_config):
    """The effective config: --config (else the UNet checkpoint's), then --set, then the dedicated options."""
    base = load_config(options.config) if options.config else checkpoint_config
    values = {f"sample.{k}": v for k, v in dict(samples=options.samples, sampler=options.sampler, steps=options.steps,
                                                  eta=options.eta, align=options.align,
                                                  guide_scale=options.guide_scale).items() if v is not None}
    if options.sampler is not None and options.steps is None and options.sampler != base.sample.sampler:
        values["sample.steps"] = DEFAULT_SOLVER_STEPS[options.sampler]  # e.g. --sampler dpmpp → 20 steps
    if options.couple_members:
        values["sample.couple_members"] = True
    if options.align_target is not None or options.align_factor is not None or options.align_oracle is not None:
        values.setdefault("sample.align", "avg_x")
        values["sample.align_target"] = options.align_target
        values["sample.align_factor"] = options.align_factor
    values["device"] = options.device
    if options.seed is not None:
        values["seed"] = options.seed
    return override_config(base, options.sets, values)


def run_sample(options: SampleOptions, progress_factory: Optional[Callable[[int], Callable]] = None) -> dict:
    from prediff_cli.data.radar_input import read_radar_input
    from prediff_cli.io.netcdf import write_forecast
    from prediff_cli.runtime import setup_runtime
    from prediff_cli.visualization.animation import write_forecast_gif
    from prediff_cli.visualization.summary import write_summary_png

    from .forecast import (AlignmentRequest, Checkpoints, load_networks, provenance, reference_time_of,
                           resolve_checkpoints, run_forecast)

    check_output_dir(options.out, OUTPUT_NAMES, options.overwrite, what="a forecast")
    radar = read_radar_input(options.input, options.event, options.start)
    if options.align == "none" and any(v is not None for v in (options.align_target, options.align_factor,
                                                                 options.align_oracle)):
        raise InputError("--align none contradicts --align-target/--align-factor/--align-oracle")
    want_align = options.align == "avg_x" or any(v is not None for v in (options.align_target,
                                                                           options.align_factor,
                                                                           options.align_oracle))
    paths = resolve_checkpoints(Checkpoints(options.vae, options.unet, options.align_net), need_align=want_align)
    setup_runtime(options.device, options.seed)
    nets = load_networks(paths, need_align=want_align, allow_mismatch=options.allow_mismatch)
    config = _sample_settings(options, nets.config)
    s = config.sample
    if s.align == "avg_x" and nets.align is None:
        paths = resolve_checkpoints(Checkpoints(options.vae, options.unet, options.align_net), need_align=True)
        nets = load_networks(paths, need_align=True, allow_mismatch=options.allow_mismatch)
    t_in = nets.config.unet.input_shape[0]
    if radar.context.shape[0] != t_in or radar.context.shape[1:] != (nets.config.data.img_size,) * 2:
        raise InputError(f"the model expects {t_in} context frames of {nets.config.data.img_size}x"
                         f"{nets.config.data.img_size}; the input gives {radar.context.shape}")
    reference = reference_time_of(radar.context_times, options.reference_time, options.input)
    alignment = AlignmentRequest(mode=s.align, target=s.align_target, factor=s.align_factor,
                                 oracle_factor=options.align_oracle)
    from .sampler import solver_timesteps

    evaluations = len(solver_timesteps(s.sampler, s.steps, nets.config.diffusion.timesteps))
    chunks = -(-s.samples // (s.member_batch or s.samples))
    progress = progress_factory(evaluations * chunks) if progress_factory else None
    result = run_forecast(nets, radar.context, radar.truth, samples=s.samples, sampler=s.sampler, steps=s.steps,
                          eta=s.eta, alignment=alignment, guide_scale=s.guide_scale,
                          couple_members=s.couple_members, seed=config.seed, member_batch=s.member_batch,
                          progress=progress)
    attrs = provenance(nets, paths, sampler=s.sampler, steps=s.steps, eta=s.eta, alignment=alignment,
                       y_hat=result.y_hat, guide_scale=s.guide_scale, couple_members=s.couple_members,
                       seed=config.seed, source=options.input, event=options.event, start=options.start,
                       evaluations=result.network_evaluations)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    nc = write_forecast(out / "forecast.nc", result.members, reference_time=reference,
                        lead_minutes=result.lead_minutes, context=radar.context, grid=radar.grid, attrs=attrs)
    gif = write_forecast_gif(out / "forecast.gif", radar.context, result.members, lead_minutes=result.lead_minutes,
                             max_members=s.gif_members, truth=radar.truth, reference_time=reference)
    png = write_summary_png(out / "forecast.png", radar.context, result.members, lead_minutes=result.lead_minutes,
                            truth=radar.truth, max_members=s.gif_members)
    write_resolved_config(config, out)
    report = {
        "netcdf": str(nc), "gif": str(gif), "png": str(png), "members": int(s.samples), "sampler": s.sampler,
        "network_evaluations": result.network_evaluations, "seconds": round(result.seconds, 3),
        "alignment": alignment.describe(),
        "alignment_target_vil": None if result.y_hat is None else round(result.y_hat * 255.0, 3),
        "ensemble_mean_vil": round(float(result.members.mean() * 255.0), 3),
        "reference_time": reference.isoformat(), "checkpoints": {k: str(v) for k, v in vars(paths).items()},
        "sha256": nets.hashes, "seed": config.seed,
    }
    atomic_write_text(out / "run.json", json.dumps(report, indent=2, sort_keys=True))
    return report
