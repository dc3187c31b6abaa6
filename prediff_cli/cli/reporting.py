"""Console output and the error guard shared by every command."""
from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console

from prediff_cli.errors import PrediffError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print one `error: ...` line on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def guarded(func):
    """Turn a `PrediffError` (or Ctrl-C) raised by a command into one line and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except PrediffError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except MemoryError:
            raise fail("out of memory; try fewer --samples or a smaller config", 1) from None

    return wrapper


def echo(message: str = "") -> None:
    console.print(message, soft_wrap=True)


def is_tty() -> bool:
    return sys.stdout.isatty()
