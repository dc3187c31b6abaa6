"""`prediff convert-weights SRC --component vae|unet|align --out DST.ckpt`."""
from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from typing_extensions import Annotated

from prediff.cli.options import ConfigOpt, SetOpt, resolve_config
from prediff.cli.reporting import echo, guarded


class Component(str, Enum):
    vae = "vae"
    unet = "unet"
    align = "align"


def register(app: typer.Typer) -> None:
    @app.command("convert-weights")
    @guarded
    def convert_weights_cmd(
        src: Annotated[Path, typer.Argument(metavar="FILE", help="Official PyTorch state dict (.pt) or .npz with the "
                                                                 "same keys.")],
        component: Annotated[Component, typer.Option("--component", help="Which network the weights belong to.")],
        out: Annotated[Path, typer.Option("--out", help="Destination MindSpore checkpoint (.ckpt).")],
        config: ConfigOpt = "sevirlr",
        sets: SetOpt = None,
    ):
        """Convert published PyTorch weights into a prediff checkpoint (exact key and shape check)."""
        from prediff.pipelines.convert_weights import convert_weights

        cfg = resolve_config(config, sets)
        report = convert_weights(src, component.value, cfg, out)
        echo(f"wrote {report.output}: {report.component}, {report.tensors} tensors, "
             f"{report.parameters:,} parameters (source sha256 {report.source_sha256[:12]}…)")
