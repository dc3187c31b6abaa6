"""The common options, spelled the same on every command that takes them.

`--config PRESET|PATH`, repeatable `--set section.key=value`, `--data DIR`, `--device`, `--seed`.
`resolve_config` folds them into one `Config` through the shared loader.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from prediff_cli.config import Config, load_config
from prediff_cli.config.schema import ALIGN_MODES, SAMPLERS


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"
    ascend = "ascend"


ConfigOpt = Annotated[str, typer.Option(
    "--config", "-c", metavar="PRESET|PATH",
    help="Preset (tiny, small, demo, sevirlr) or a YAML file; a YAML may start from a preset with 'base:'.")]
SetOpt = Annotated[Optional[List[str]], typer.Option(
    "--set", metavar="SECTION.KEY=VALUE", help="Override one config value; repeatable.")]
DataOpt = Annotated[Optional[Path], typer.Option(
    "--data", metavar="DIR", help="Dataset root holding CATALOG.csv and data/vil/YEAR/*.h5.")]
DeviceOpt = Annotated[Device, typer.Option(
    "--device", case_sensitive=False, help="Where MindSpore runs; auto tries Ascend, then GPU, then CPU.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed (overrides the config's seed).")]


def resolve_config(config: str, sets: Optional[List[str]] = None, data: Optional[Path] = None,
                   device: Optional[Device] = None, seed: Optional[int] = None) -> Config:
    """Load `config` with the `--set` overrides, then the dedicated options (which win)."""
    values = {}
    if data is not None:
        values["data.root"] = str(data)
    if device is not None:
        values["device"] = Device(device).value
    if seed is not None:
        values["seed"] = int(seed)
    return load_config(config, list(sets or []), values)


# ------------------------------------------------------------------------------------------------------------------
# the forecast settings, spelled the same on `sample` and `score`: each becomes a `sample.*` config override


Sampler = Enum("Sampler", {name: name for name in SAMPLERS}, type=str)
Align = Enum("Align", {name: name for name in ALIGN_MODES}, type=str)

ModelOpt = Annotated[str, typer.Option(
    "--model", "-m", metavar="NAME|DIR",
    help="Model to forecast with: an installed name (see `prediff models`) or a folder holding vae.ckpt, unet.ckpt "
         "and align.ckpt.")]
ForecastConfigOpt = Annotated[Optional[str], typer.Option(
    "--config", "-c", metavar="PRESET|PATH",
    help="Start the settings from this preset or YAML instead of the model's own config.")]
SamplesOpt = Annotated[Optional[int], typer.Option(
    "--samples", "-n", min=1, help="Ensemble members (default: the config's sample.samples).")]
SamplerOpt = Annotated[Optional[Sampler], typer.Option(
    "--sampler", help="ddim (fast), dpmpp (fastest, 20 steps), ddpm (faithful, 1000 steps) "
                      "(default: the config's).")]
SolverStepsOpt = Annotated[Optional[int], typer.Option(
    "--steps", min=1, help="Solver steps of ddim/dpmpp (default: the config's, or 50 / 20 when --sampler "
                           "changes the sampler).")]
EtaOpt = Annotated[Optional[float], typer.Option(
    "--eta", min=0.0, max=1.0, help="Solver noise of ddim/dpmpp: 0 deterministic (ODE), 1 stochastic (SDE) "
                                    "(default: the config's).")]
AlignOpt = Annotated[Optional[Align], typer.Option(
    "--align", help="Knowledge alignment toward an anticipated mean intensity (default: the config's).")]
AlignTargetOpt = Annotated[Optional[float], typer.Option(
    "--align-target", help="Anticipated mean VIL of the forecast frames (digital 0-255); implies --align avg_x.")]
AlignFactorOpt = Annotated[Optional[float], typer.Option(
    "--align-factor", help="Anticipated mean = factor x mean of the last context frame (default 1); implies "
                           "--align avg_x.")]
AlignOracleOpt = Annotated[Optional[float], typer.Option(
    "--align-oracle", help="EVALUATION ONLY: anticipated mean = factor x the true future mean (the paper used 2); "
                           "needs the truth frames.")]
GuideScaleOpt = Annotated[Optional[float], typer.Option(
    "--guide-scale", help="Alignment strength (default: the config's sample.guide_scale).")]
CoupleOpt = Annotated[Optional[bool], typer.Option(
    "--couple-members/--per-member", help="Official coupling of the members' guidance through one norm, or "
                                          "guidance per member (default: the config's).")]
VaeCkptOpt = Annotated[Optional[Path], typer.Option(
    "--vae", metavar="CKPT", help="Use this VAE checkpoint instead of the model's.")]
UnetCkptOpt = Annotated[Optional[Path], typer.Option(
    "--unet", metavar="CKPT", help="Use this UNet checkpoint instead of the model's.")]
AlignNetCkptOpt = Annotated[Optional[Path], typer.Option(
    "--align-net", metavar="CKPT", help="Use this alignment checkpoint instead of the model's.")]
AllowMismatchOpt = Annotated[bool, typer.Option(
    "--allow-mismatch", help="Use a UNet or alignment network trained on another VAE (refused by default).")]
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", help="Replace earlier results in --out (refused by default).")]
