"""`prediff import-mindearth --vae VAE.ckpt --unet DIFFUSION.ckpt [--align ALIGN.ckpt] --config diffusion.yaml
--out DIR`: MindEarth's PreDiff checkpoints → a model folder that `--model DIR` loads."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from prediff.cli.options import OverwriteOpt
from prediff.cli.reporting import echo, guarded


def register(app: typer.Typer) -> None:
    @app.command("import-mindearth")
    @guarded
    def import_mindearth_cmd(
        vae: Annotated[Path, typer.Option("--vae", metavar="CKPT", help="MindEarth's VAE checkpoint (vae.ckpt).")],
        unet: Annotated[Path, typer.Option("--unet", metavar="CKPT", help="MindEarth's diffusion checkpoint "
                                                                          "(diffusion.ckpt, diffusion_epochN.ckpt).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write (vae.ckpt, unet.ckpt, "
                                                              "align.ckpt, model.json).")],
        align: Annotated[Optional[Path], typer.Option(
            "--align", metavar="CKPT", help="MindEarth's alignment checkpoint (align.ckpt).")] = None,
        config: Annotated[Optional[str], typer.Option(
            "--config", "-c", metavar="PATH|PRESET",
            help="The MindEarth YAML the networks were built with (configs/diffusion.yaml) (default: the preset "
                 "whose shapes the files fit).")] = None,
        overwrite: OverwriteOpt = False,
        sets: Annotated[Optional[List[str]], typer.Option(
            "--set", metavar="sample.KEY=VALUE",
            help="Change a default forecast setting of the model (sampler, steps, eta, samples, align, ...); "
                 "repeatable.")] = None,
    ):
        """Build a model folder from MindEarth's PreDiff checkpoints and YAML; `prediff sample --model DIR` loads it
        (put it in $PREDIFF_HOME/models/NAME to use --model NAME)."""
        from prediff.pipelines.mindearth import import_mindearth_model

        written = import_mindearth_model(vae, unet, out, align=align, config=config, overwrite=overwrite,
                                         sample_sets=sets or ())
        echo(f"wrote {', '.join(str(p) for p in written.values())}")
