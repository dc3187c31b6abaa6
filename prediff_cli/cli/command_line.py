"""The command line as a forecast file's `history` records it: `prediff` and the arguments as typed, without the
paths of the machine (an absolute path is written relative to the working folder when it lies inside it, else
as `.../NAME`)."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence


def _scrub(arg: str, cwd: Path) -> str:
    option, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    if not os.path.isabs(value):
        return arg
    try:
        shown = os.path.relpath(value, cwd) if Path(value).resolve().is_relative_to(cwd.resolve()) else None
    except (OSError, ValueError):
        shown = None
    shown = shown or f".../{Path(value).name}"
    return f"{option}{eq}{shown}" if eq else shown


def command_line(argv: Optional[Sequence[str]] = None) -> str:
    """`prediff <arguments>` of this process (or of `argv`, without the program), quoted for a shell."""
    args = list(sys.argv[1:] if argv is None else argv)
    cwd = Path.cwd()
    return " ".join(["prediff"] + [shlex.quote(_scrub(a, cwd)) for a in args])
