"""`prediff models`: the models `--model NAME` accepts, where they live and what they hold."""
from __future__ import annotations

import json

import typer
from rich.table import Table
from rich.text import Text
from typing_extensions import Annotated

from prediff.cli.reporting import console, err_console, guarded


def register(app: typer.Typer) -> None:
    @app.command("models")
    @guarded
    def models(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False):
        """List the models that --model NAME accepts (the bundled demo and those under $PREDIFF_HOME/models);
        folders there that are not complete models are named on stderr with the reason."""
        from prediff.pipelines.model_store import list_models

        rows, skipped = list_models()
        for folder, why in skipped:
            err_console.print(Text(f"skipped {folder}: {why}"), soft_wrap=True)
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
