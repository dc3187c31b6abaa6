"""`prediff convert-weights SRC --component vae|unet|align --out DST.ckpt`."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from prediff.cli.options import SetOpt, resolve_config
from prediff.cli.reporting import echo, guarded


class Component(str, Enum):
    vae = "vae"
    unet = "unet"
    align = "align"


def register(app: typer.Typer) -> None:
    @app.command("convert-weights")
    @guarded
    def convert_weights_cmd(
        src: Annotated[Path, typer.Argument(metavar="FILE", help="Official PyTorch state dict (.pt, or .npz with the "
                                                                 "same keys), or a MindEarth PreDiff checkpoint "
                                                                 "(.ckpt).")],
        component: Annotated[Component, typer.Option("--component", help="Which network the weights belong to.")],
        out: Annotated[Path, typer.Option("--out", help="Destination prediff checkpoint (.ckpt); not replaced "
                                                        "without --overwrite, never the input itself.")],
        config: Annotated[Optional[str], typer.Option(
            "--config", "-c", metavar="PRESET|PATH",
            help="Preset, prediff YAML or MindEarth YAML (configs/diffusion.yaml) with the network's arguments "
                 "(default: sevirlr for PyTorch files; for a MindEarth file the preset whose shapes it fits).")] = None,
        sets: SetOpt = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
    ):
        """Convert published weights into a prediff checkpoint (exact key and shape check)."""
        from prediff.pipelines.convert_weights import OFFICIAL_PRESET, convert_weights

        # --set alone starts from the paper's preset; with neither, the pipeline picks the config by the file's kind
        cfg = resolve_config(config or OFFICIAL_PRESET, sets) if (config is not None or sets) else None
        report = convert_weights(src, component.value, cfg, out, overwrite=overwrite)
        extra = ""
        if report.source_format == "mindearth":
            extra = f"; MindEarth checkpoint, key prefix {report.prefix!r}" if report.prefix else \
                "; MindEarth checkpoint"
            if report.dropped:
                extra += f", {len(report.dropped)} tensors MindEarth never uses left out"
        echo(f"wrote {report.output}: {report.component} of config '{report.preset}', {report.tensors} tensors, "
             f"{report.parameters:,} parameters (source sha256 {report.source_sha256[:12]}…){extra}")
