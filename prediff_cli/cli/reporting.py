"""Console output and the error guard shared by every command.

Messages carry user data (paths, URLs, names read from files), so they are printed verbatim: never parsed as
rich markup (a path like `runs/[red]x` must print as it is) and never soft-wrapped into several lines.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
from typing import Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.text import Text

from prediff.errors import PrediffError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

DEBUG_ENV = "PREDIFF_DEBUG"


def _one_line(message: str) -> str:
    return " ".join(str(message).split()) or "unknown error"


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print one `error: ...` line on stderr (the message verbatim) and return the Exit to raise."""
    line = Text("error:", style="bold red")
    line.append(" " + _one_line(message))
    err_console.print(line, soft_wrap=True)
    return typer.Exit(code)


def _os_error_message(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    return f"cannot access{where}: {exc.strerror or exc}"


def guarded(func: Optional[Callable] = None, *, oom_hint: str = "") -> Callable:
    """Turn whatever a command raises into one line on stderr and a non-zero exit: a `PrediffError` as its message,
    Ctrl-C as "interrupted", running out of memory with `oom_hint`, an unexpected error as "internal error" (the
    traceback only with PREDIFF_DEBUG=1). Use as `@guarded` or `@guarded(oom_hint="...")`."""
    if func is None:
        return functools.partial(guarded, oom_hint=oom_hint)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except PrediffError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except MemoryError:
            raise fail("out of memory" + (f"; {oom_hint}" if oom_hint else ""), 1) from None
        except OSError as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            raise fail(_os_error_message(exc), 1) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback for the user
            if os.environ.get(DEBUG_ENV):
                raise
            raise fail(f"internal error ({type(exc).__name__}: {exc}); please report it — set {DEBUG_ENV}=1 to "
                       "see the traceback", 3) from None

    return wrapper


def echo(message: str = "") -> None:
    """Print one message verbatim (no markup) on stdout."""
    console.print(Text(str(message)), soft_wrap=True)


@contextlib.contextmanager
def json_output(enabled: bool) -> Iterator[None]:
    """With `enabled` (a command's --json): every human message and progress display goes to stderr, so that stdout
    carries only the JSON that `emit_json` prints. Restored on exit."""
    before = console.stderr
    console.stderr = bool(enabled) or before
    try:
        yield
    finally:
        console.stderr = before


def emit_json(payload) -> None:
    """One JSON document on stdout (machine-readable output of --json), nothing else."""
    typer.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))

