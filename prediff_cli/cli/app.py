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


def _hide_type_column(cls_name: str, marker: str, hidden) -> None:
    """Typer ≥ 0.2x prints a type column (`<bool>`, `<str>`) in --help for every parameter: patch the class's
    `display_type_rich` to show none where `hidden(parameter)`. `marker` keeps a second import from wrapping it
    twice."""
    cls = getattr(typer.core, cls_name, None)
    if not hasattr(cls, "display_type_rich") or getattr(cls.display_type_rich, marker, False):
        return
    display_type_rich = cls.display_type_rich

    @functools.wraps(display_type_rich)
    def display(self, ctx):
        return None if hidden(self) else display_type_rich(self, ctx)

    setattr(display, marker, True)
    cls.display_type_rich = display


# on/off options are shown as flags, not with a `<bool>` type column
_hide_type_column("TyperOption", "_prediff_flags", lambda option: getattr(option, "is_flag", False))
# an argument given a metavar (its choices, or what it names) shows that, without a `<str>` type column
_hide_type_column("TyperArgument", "_prediff_metavar", lambda argument: getattr(argument, "metavar", None))


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
