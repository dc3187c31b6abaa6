"""The `prediff` command: a Typer app assembled from one module per command."""
from __future__ import annotations

from typing import Optional

import typer
from typing_extensions import Annotated

from prediff import __version__
from prediff.cli import convert_weights, download, export_model, info, models, sample, score, train

app = typer.Typer(
    name="prediff",
    help="Probabilistic precipitation nowcasting with PreDiff (latent diffusion + knowledge alignment).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"prediff {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None) -> None:
    """Probabilistic precipitation nowcasting with PreDiff."""


for _module in (info, download, train, sample, score, models, export_model, convert_weights):
    _module.register(app)


def main() -> None:
    app()
