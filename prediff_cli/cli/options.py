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
