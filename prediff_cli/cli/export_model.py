"""`prediff export-model RUN_DIR… --out DIR`: training runs → a model folder that `--model DIR` loads."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer
from typing_extensions import Annotated

from prediff.cli.options import OverwriteOpt
from prediff.cli.reporting import echo, guarded
from prediff.errors import InputError


def run_checkpoints(run_dirs: List[Path]) -> dict:
    """component → checkpoint to export: each run folder's best.ckpt, else its last.ckpt (a .ckpt file is taken
    as it is); the component is read from the checkpoint itself."""
    from prediff.io.checkpoint import load_checkpoint

    found = {}
    for run in run_dirs:
        run = Path(run)
        path = run if run.is_file() else next((run / n for n in ("best.ckpt", "last.ckpt") if (run / n).is_file()),
                                             None)
        if path is None:
            raise InputError(f"{run} holds no best.ckpt or last.ckpt (give training run folders or .ckpt files)")
        component = load_checkpoint(path).component
        if component in found:
            raise InputError(f"two {component} checkpoints given: {found[component]} and {path}")
        found[component] = path
    return found


def register(app: typer.Typer) -> None:
    @app.command("export-model")
    @guarded
    def export_model_cmd(
        runs: Annotated[List[Path], typer.Argument(help="Run folders of train-vae, train-diffusion and (optionally) "
                                                        "train-align, or their .ckpt files.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write (vae.ckpt, unet.ckpt, "
                                                              "align.ckpt).")],
        overwrite: OverwriteOpt = False,
    ):
        """Write a model folder with the inference weights (EMA when trained with it) and the configs of training
        runs; `prediff sample --model DIR` loads it (put it in $PREDIFF_HOME/models/NAME to use --model NAME)."""
        from prediff.pipelines.model import export_model

        written = export_model(run_checkpoints(runs), out, overwrite=overwrite)
        echo(f"wrote {', '.join(str(p) for p in written.values())}")
