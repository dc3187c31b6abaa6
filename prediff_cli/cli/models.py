"""`prediff models`: the models `--model NAME` accepts, where they live and what they hold."""
from __future__ import annotations

import json

import typer
from rich.table import Table
from rich.text import Text
from typing_extensions import Annotated

from prediff.cli.reporting import console, guarded


def list_models() -> list:
    """One dict per installed model: name, folder, networks present, training steps, the config's preset."""
    from prediff.io.checkpoint import load_checkpoint
    from prediff.pipelines.model import COMPONENT_FILES, installed_models

    rows = []
    for name, folder in installed_models().items():
        present = [c for c, f in COMPONENT_FILES.items() if (folder / f).is_file()]
        unet = load_checkpoint(folder / COMPONENT_FILES["unet"], component="unet")
        rows.append({"name": name, "folder": str(folder), "networks": present, "unet_step": unet.meta.get("step"),
                     "preset": (unet.config or {}).get("preset")})
    return rows


def register(app: typer.Typer) -> None:
    @app.command("models")
    @guarded
    def models(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False):
        """List the models that --model NAME accepts (the bundled demo and those under $PREDIFF_HOME/models)."""
        rows = list_models()
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        table = Table(title="installed models")
        for column in ("name", "networks", "UNet steps", "preset", "folder"):
            table.add_column(column)
        for row in rows:
            table.add_row(Text(row["name"]), ", ".join(row["networks"]), str(row["unet_step"] or "-"),
                          Text(str(row["preset"] or "-")), Text(row["folder"]))
        console.print(table)
