"""The `prediff` command: a Typer app assembled from one module per command."""
from __future__ import annotations

import functools
import sys
from typing import Optional

import typer
import typer.core
from typing_extensions import Annotated

from prediff import __version__
from prediff.cli import (convert_weights, download, export_model, import_mindearth, info, models, sample, score,
                         train, watch)
from prediff.cli.reporting import fail

def _flags_without_type(display_type_rich):
    """On/off options are shown as flags in --help, not with a `<bool>` type column (Typer ≥ 0.2x prints one)."""
    @functools.wraps(display_type_rich)
    def display(self, ctx):
        return None if getattr(self, "is_flag", False) else display_type_rich(self, ctx)

    display._prediff_flags = True
    return display


if hasattr(typer.core, "TyperOption") and hasattr(typer.core.TyperOption, "display_type_rich") and not getattr(
        typer.core.TyperOption.display_type_rich, "_prediff_flags", False):
    typer.core.TyperOption.display_type_rich = _flags_without_type(typer.core.TyperOption.display_type_rich)


def _arguments_named_by_metavar(display_type_rich):
    """An argument given a metavar (its choices, or what it names) shows that, without a `<str>` type column."""
    @functools.wraps(display_type_rich)
    def display(self, ctx):
        return None if getattr(self, "metavar", None) else display_type_rich(self, ctx)

    display._prediff_metavar = True
    return display


if hasattr(typer.core, "TyperArgument") and hasattr(typer.core.TyperArgument, "display_type_rich") and not getattr(
        typer.core.TyperArgument.display_type_rich, "_prediff_metavar", False):
    typer.core.TyperArgument.display_type_rich = _arguments_named_by_metavar(
        typer.core.TyperArgument.display_type_rich)

app = typer.Typer(
    name="prediff",
    help="Probabilistic precipitation nowcasting with PreDiff (latent diffusion + knowledge alignment).",
    no_args_is_help=True,
    add_completion=True,
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


for _module in (info, download, train, sample, watch, score, models, export_model, import_mindearth,
                convert_weights):
    _module.register(app)


def main() -> None:
    """The console entry point. Usage errors (an unknown option, a value outside a choice) become one `error:` line
    with exit code 2, like every other bad input, instead of Click's multi-line panel."""
    try:
        code = app(standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        code = fail("aborted", 1).exit_code
    except Exception as exc:  # Click's usage errors (Typer may vendor Click): they carry a message and a code
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        message, context = exc.format_message().strip(), getattr(exc, "ctx", None)
        if message:  # (a bare `prediff` or `prediff download` has printed the help already)
            fail(message + (f" (see: {context.command_path} --help)" if context is not None else ""))
        code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)
