"""`prediff score` as a plain function: options in, scores.json + plots out."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from prediff_cli.config import Config
from prediff_cli.config.schema import DEFAULT_SOLVER_STEPS
from prediff_cli.errors import InputError
from prediff_cli.io.output_dir import check_output_dir


@dataclass
class ScoreOptions:
    out: Path
    forecast: Optional[Path] = None
    truth: Optional[Path] = None
    event: int = 0
    start: int = 0
    split: Optional[str] = None
    limit: Optional[int] = None
    samples: int = 8
    sampler: str = "ddim"
    steps: Optional[int] = None  # None: the sampler's default (ddim 50, dpmpp 20)
    eta: float = 0.0
    align: str = "none"
    align_target: Optional[float] = None
    align_factor: Optional[float] = None
    align_oracle: Optional[float] = None
    guide_scale: float = 50.0
    vae: Optional[Path] = None
    unet: Optional[Path] = None
    align_net: Optional[Path] = None
    resume: bool = False
    overwrite: bool = False  # replace scores already in `out`
    allow_mismatch: bool = False  # score a UNet / alignment network trained on another VAE


def run_score(config: Config, options: ScoreOptions,
              progress: Optional[Callable[[int, int], None]] = None) -> Tuple[dict, List[Path]]:
    from .evaluate import SplitRequest, finish_split, score_forecast_file, score_split, write_outputs

    out = check_output_dir(options.out, () if options.resume else ("scores.json",), options.overwrite,
                           what="scores")
    if options.forecast is not None:
        scores = score_forecast_file(options.forecast, options.truth, options.event, options.start, config.score,
                                     config.seed)
        return scores, write_outputs(out, scores, config)

    from prediff_cli.runtime import setup_runtime

    from .forecast import AlignmentRequest, Checkpoints, load_networks, resolve_checkpoints
    from .sampler import SAMPLERS

    if options.split not in ("test", "val"):
        raise InputError(f"--split {options.split!r} is not valid; choose test or val")
    if options.sampler not in SAMPLERS:
        raise InputError(f"--sampler {options.sampler!r} is not valid; choose one of {', '.join(SAMPLERS)}")
    if options.align not in ("none", "avg_x"):
        raise InputError(f"--align {options.align!r} is not valid; choose none or avg_x")
    if config.data.root is None:
        raise InputError("--split needs --data DIR (a SEVIR-LR tree)")
    chosen = [v for v in (options.align_target, options.align_factor, options.align_oracle) if v is not None]
    if len(chosen) > 1:
        raise InputError("give at most one of --align-target, --align-factor, --align-oracle")
    mode = "avg_x" if (options.align == "avg_x" or chosen) else "none"
    alignment = AlignmentRequest(mode=mode, target=options.align_target, factor=options.align_factor,
                                 oracle_factor=options.align_oracle)
    paths = resolve_checkpoints(Checkpoints(options.vae, options.unet, options.align_net), need_align=mode != "none")
    setup_runtime(config.device, config.seed)
    nets = load_networks(paths, need_align=mode != "none", allow_mismatch=options.allow_mismatch)
    request = SplitRequest(split=options.split, limit=options.limit, samples=options.samples,
                           sampler=options.sampler,
                           steps=options.steps or DEFAULT_SOLVER_STEPS.get(options.sampler, 50),
                           eta=options.eta, alignment=alignment,
                           guide_scale=options.guide_scale, resume=options.resume,
                           extra_settings={"checkpoints": {k: str(getattr(paths, k)) for k in nets.hashes},
                                           "sha256": nets.hashes})
    scores = score_split(nets, config.data, config.score, request, out, config.seed, progress)
    written = write_outputs(out, scores, config)
    finish_split(out)
    return scores, written
