"""Check an output folder before any work is done: it must be (or become) a writable folder, and the files a
command is about to write must not replace a user's earlier results unless asked (`--overwrite`).

Checking first matters: a forecast takes minutes, and failing after it on a `--out` that is a file, or silently
replacing yesterday's forecast, are both worse than one line up front.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from prediff.errors import InputError


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_output_dir(out, names: Iterable[str], overwrite: bool = False, what: str = "results",
                     option: str = "--out") -> Path:
    """Raise `InputError` unless `out` can receive the files `names`; returns `out` as a Path.

    * `out` may not exist yet: its nearest existing ancestor must then be a writable folder;
    * `out` must not be a file, and must be writable;
    * none of `names` may exist in `out` unless `overwrite`.
    Nothing is created here.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {out} is a file, not a folder; choose a folder")
    base = _nearest_existing(out)
    if not base.is_dir():
        raise InputError(f"{option} {out} cannot be created: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise InputError(f"{option} {out} is not writable (no write permission on {base})")
    present = [name for name in names if (out / name).exists()]
    if present and not overwrite:
        raise InputError(f"{option} {out} already holds {what} ({', '.join(present)}); pass --overwrite to replace "
                         f"them or choose another {option}")
    return out
