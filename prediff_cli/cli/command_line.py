"""The command line as a forecast file's `history` records it: `prediff` and the arguments as typed, without the
paths of the machine (an absolute path is written relative to the working folder when it lies inside it, else
as `.../NAME`). When the command was not started from a shell (called from Python, or a test runner), the
arguments are rebuilt from the options it was given."""
from __future__ import annotations

import enum
import os
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Sequence


def _scrub(arg: str, cwd: Path) -> str:
    option, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    if not os.path.isabs(value):
        return arg
    try:
        inside = Path(value).resolve().is_relative_to(cwd.resolve())
        shown = os.path.relpath(value, cwd) if inside else None
    except (OSError, ValueError):
        shown = None
    shown = shown or f".../{Path(value).name}"
    return f"{option}{eq}{shown}" if eq else shown


def _given_options(ctx) -> List[str]:
    """The options of a Click context that differ from their defaults, as command-line words."""
    words: List[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default or (value == () and not param.default):
            continue
        if getattr(param, "param_type_name", "") == "argument":
            words += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
            continue
        if getattr(param, "is_flag", False) and isinstance(value, bool):
            names = param.opts if value else param.secondary_opts
            words += names[:1]
            continue
        for item in value if isinstance(value, (list, tuple)) and param.multiple else [value]:
            words += [param.opts[0], str(item.value if isinstance(item, enum.Enum) else item)]
    return words


def command_line(ctx=None, argv: Optional[Sequence[str]] = None) -> str:
    """`prediff <arguments>` of this command, quoted for a shell: `argv` (without the program) when given, else this
    process's arguments — or, when they are not this command's (`ctx`, its Typer context, says which command runs),
    the options it was given."""
    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None and ctx is not None:
        path = ctx.command_path.split()[1:]  # the subcommand's words, e.g. ["sample"]
        if args[:len(path)] != path:  # not this process's command line: rebuilt from the options given
            args = path + _given_options(ctx)
    cwd = Path.cwd()
    return " ".join(["prediff"] + [shlex.quote(_scrub(a, cwd)) for a in args])
