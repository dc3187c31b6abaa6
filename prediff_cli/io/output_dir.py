"""Check an output folder before any work is done: it must be (or become) a writable folder, and the files a
command is about to write must not replace a user's earlier results unless asked (`--overwrite`).

Checking first matters: a forecast takes minutes, and failing after it on a `--out` that is a file, or silently
replacing yesterday's forecast, are both worse than one line up front.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from prediff.errors import InputError


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_target(target: Path, option: str, inputs: Sequence[Path]) -> None:
    """A path about to be written: not a link (the link's target would be replaced or left inconsistent), not a
    folder, and not one of the command's inputs."""
    if target.is_symlink():
        raise InputError(f"{option} {target} is a symbolic link; prediff does not write through links — remove it or "
                         "choose another name")
    if target.is_dir():
        raise InputError(f"{option} {target} is a folder; it cannot be replaced by a file")
    for source in inputs:
        if target.exists() and _same_file(target, Path(source)):
            raise InputError(f"{option} {target} is the input {source}; writing it would destroy the input — choose "
                             "another name")


def check_output_dir(out, names: Iterable[str], overwrite: bool = False, what: str = "results",
                     option: str = "--out", inputs: Sequence = ()) -> Path:
    """Raise `InputError` unless `out` can receive the files `names`; returns `out` as a Path.

    * `out` may not exist yet: its nearest existing ancestor must then be a writable folder;
    * `out` must not be a file, and must be writable;
    * none of `names` may exist in `out` unless `overwrite`; none may be a link or a folder, or one of `inputs`
      (even with `overwrite`).
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
    names = list(names)
    for name in names:
        _check_target(out / name, option, inputs)
    present = [name for name in names if (out / name).exists()]
    if present and not overwrite:
        raise InputError(f"{option} {out} already holds {what} ({', '.join(present)}); pass --overwrite to replace "
                         f"them or choose another {option}")
    return out


def check_output_file(out, overwrite: bool = False, inputs: Sequence = (), option: str = "--out",
                      suffix: str = "") -> Path:
    """Raise `InputError` unless the file `out` may be written: its folder exists (or can be created) and is
    writable; `out` is not a link, a folder or one of `inputs`; it does not exist unless `overwrite`. Nothing is
    created here; returns `out` as a Path."""
    out = Path(out)
    if suffix and out.suffix != suffix:
        raise InputError(f"{option} must name a {suffix} file, got {out}")
    _check_target(out, option, inputs)
    base = _nearest_existing(out.parent)
    if not base.is_dir():
        raise InputError(f"{option} {out} cannot be created: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise InputError(f"{option} {out} is not writable (no write permission on {base})")
    if out.exists() and not overwrite:
        raise InputError(f"{option} {out} already exists; pass --overwrite to replace it or choose another name")
    return out
