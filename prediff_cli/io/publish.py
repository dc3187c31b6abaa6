"""Publish a set of files into a folder whole or not at all.

A command that writes several files that belong together (a model folder: vae.ckpt, unet.ckpt, align.ckpt and its
card) first writes them all into a hidden staging folder beside the destination, then publishes them: a new
destination is the staging folder renamed; an existing one has its old files moved aside, the new ones moved in,
and the old ones deleted only once every new file is in place. A failure at any point puts the old files back, so
the destination never mixes old and new files, and the staging folder is always removed.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

from prediff.errors import PrediffError
from prediff.io.atomic import fsync_dir


@contextlib.contextmanager
def staging_folder(out) -> Iterator[Path]:
    """A new hidden folder beside `out` (same file system, so its files can be renamed into `out`), removed on exit
    whatever happens (unless `publish_folder` renamed it to `out`). The folder that holds `out` is created if
    needed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{os.getpid()}.staging"
    if staging.is_symlink() or staging.exists():
        _remove(staging)
    staging.mkdir()
    try:
        yield staging
    finally:
        _remove(staging)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def publish_folder(staging: Path, out: Path, names: Sequence[str]) -> List[Path]:
    """Make `out` hold the staged files `names`: each name found in `staging` replaces (or creates) `out/name`, each
    name absent from `staging` is removed from `out`; other files in `out` are left alone. All or nothing: on any
    error the old files are restored and `PrediffError` names what failed. Returns the published paths.

    The caller has checked the names beforehand (no folders or links among them, `--overwrite` given for existing
    ones, see `io.output_dir`)."""
    staging, out = Path(staging), Path(out)
    new = [name for name in names if (staging / name).is_file()]
    if not os.path.lexists(out):
        os.rename(staging, out)  # a new folder appears whole (the staging folder's cleanup then finds nothing)
        fsync_dir(out.parent)
        return [out / name for name in new]
    aside = staging / ".replaced"
    aside.mkdir()
    moved_aside: List[str] = []
    moved_in: List[Tuple[str, Path]] = []
    try:
        for name in names:
            if os.path.lexists(out / name):
                os.replace(out / name, aside / name)
                moved_aside.append(name)
        for name in new:
            os.replace(staging / name, out / name)
            moved_in.append((name, out / name))
    except OSError as exc:
        for name, path in reversed(moved_in):
            with contextlib.suppress(OSError):
                path.unlink()
        for name in reversed(moved_aside):
            with contextlib.suppress(OSError):
                os.replace(aside / name, out / name)
        raise PrediffError(f"could not publish {', '.join(new)} into {out} ({exc.strerror or exc}); its earlier "
                           "files are unchanged") from None
    fsync_dir(out)
    return [path for _, path in moved_in]
