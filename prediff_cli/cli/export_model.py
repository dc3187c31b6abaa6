"""`prediff export-model RUN_DIR… --out DIR`: training runs → a model folder that `--model DIR` loads."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from prediff.cli.options import OverwriteOpt
from prediff.cli.reporting import echo, guarded


def register(app: typer.Typer) -> None:
    @app.command("export-model")
    @guarded
    def export_model_cmd(
        runs: Annotated[List[Path], typer.Argument(metavar="RUN", help="Run folders of train-vae, train-diffusion "
                                                   "and (optionally) train-align, or their .ckpt files.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write (vae.ckpt, unet.ckpt, "
                                                              "align.ckpt).")],
        overwrite: OverwriteOpt = False,
        sets: Annotated[Optional[List[str]], typer.Option(
            "--set", metavar="sample.KEY=VALUE",
            help="Change a default forecast setting of the model (sampler, steps, eta, samples, align, ...); "
                 "repeatable. (default: the settings the UNet was trained with)")] = None,
    ):
        """Write a model folder with the inference weights (EMA when trained with it) and the configs of training
        runs; `prediff sample --model DIR` loads it (put it in $PREDIFF_HOME/models/NAME to use --model NAME)."""
        from prediff.pipelines.model import export_model, run_checkpoints

        written = export_model(run_checkpoints(runs), out, overwrite=overwrite, sample_sets=sets or ())
        echo(f"wrote {', '.join(str(p) for p in written.values())}")
