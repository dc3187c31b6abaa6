"""The output folder of a running nowcast: one folder per forecast cycle, a stable `latest` link, the last N kept.

    OUT/20190701T1910Z/      forecast.nc, forecast.gif, forecast.png, run.json, config.yaml (a whole forecast)
    OUT/20190701T1920Z/
    OUT/latest -> 20190701T1920Z   a relative symlink; where links cannot be made, OUT/latest.json names it
    OUT/watch.log.jsonl      one JSON line per cycle, skipped file, refusal, start and stop

A cycle folder is named for the forecast's reference time (the newest context frame, UTC, `YYYYMMDDTHHMMZ`, with
seconds only when the time has them). It is written under a hidden temporary name beside its final one and
renamed into place when complete, so a folder with a cycle's name is always a whole forecast and the folders
present are the cycles done; `latest` is replaced by renaming a new link over it, so a reader following it never
finds it missing or pointing at a half-written folder. A cycle is pruned by renaming it to a hidden name first,
then deleting it. Only one process may write into a folder at a time (`exclusive`, where the system has
`fcntl`).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from prediff.errors import InputError

from .atomic import atomic_write_text, fsync_dir

LATEST = "latest"
LATEST_JSON = "latest.json"
LOCK = ".watch.lock"
#: the file whose presence marks a folder as a complete cycle (the last one `prediff sample` writes)
COMPLETE_MARKER = "run.json"

_CYCLE = re.compile(r"^(\d{8}T\d{4})(\d{2})?Z$")
_LEFTOVER = re.compile(r"^\.(\d{8}T\d{4}(\d{2})?Z\.\d+\.tmp|pruned-.+|latest\.\d+\.tmp)$")


def cycle_name(time: dt.datetime) -> str:
    """The folder name of the cycle whose newest context frame is valid at `time` (UTC)."""
    return time.strftime("%Y%m%dT%H%M%SZ" if time.second else "%Y%m%dT%H%MZ")


def cycle_time(name: str) -> Optional[dt.datetime]:
    """The reference time a cycle folder's name says, or None when `name` is not a cycle's name."""
    match = _CYCLE.match(name)
    if match is None:
        return None
    try:
        return dt.datetime.strptime(match.group(1) + (match.group(2) or "00"), "%Y%m%dT%H%M%S")
    except ValueError:
        return None


def done_cycles(out) -> List[Tuple[dt.datetime, str]]:
    """The complete cycles in `out`, oldest first: (reference time, folder name)."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = []
    for entry in out.iterdir():
        when = cycle_time(entry.name)
        if when is not None and entry.is_dir() and not entry.is_symlink() and (entry / COMPLETE_MARKER).is_file():
            found.append((when, entry.name))
    return sorted(found)


def staging_dir(out, name: str) -> Path:
    """The hidden temporary folder a cycle is written into before it is renamed to `out/name`."""
    return Path(out) / f".{name}.{os.getpid()}.tmp"


def publish(staging, out, name: str) -> Path:
    """Rename the complete `staging` folder to `out/name` (refused when a cycle of that name exists)."""
    final = Path(out) / name
    if final.exists() or final.is_symlink():
        raise InputError(f"{final} exists already; a cycle is never written twice")
    os.rename(staging, final)
    fsync_dir(out)
    return final


def point_latest(out, name: str, reference_time: dt.datetime) -> str:
    """Make `out/latest` point to the cycle folder `name`, atomically; returns "link", or "json" where the system
    cannot make symlinks (then `out/latest.json` names the folder)."""
    out = Path(out)
    link = out / LATEST
    tmp = out / f".latest.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    try:
        os.symlink(name, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):
        atomic_write_text(out / LATEST_JSON, json.dumps(
            {"cycle": name, "folder": name, "reference_time": reference_time.isoformat() + "Z"}, indent=2) + "\n")
        return "json"
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink()
        raise
    fsync_dir(out)
    if (out / LATEST_JSON).is_file():  # left by a run on a system without links: it would now be stale
        (out / LATEST_JSON).unlink()
    return "link"


def check_latest(out) -> None:
    """Refuse an `out/latest` that is not a link (a folder or file of the user's: it is never replaced)."""
    link = Path(out) / LATEST
    if (link.exists() or link.is_symlink()) and not link.is_symlink():
        raise InputError(f"{link} exists and is not a link; it would be replaced by the link to the newest forecast "
                         "(move it away or choose another --out)")


def prune(out, keep: int) -> List[str]:
    """Delete all but the newest `keep` complete cycles of `out` (none when `keep` is 0); returns their names."""
    cycles = done_cycles(out)
    if keep <= 0 or len(cycles) <= keep:
        return []
    removed = []
    for _, name in cycles[:-keep]:
        doomed = Path(out) / f".pruned-{name}"
        if doomed.exists():
            shutil.rmtree(doomed, ignore_errors=True)
        os.rename(Path(out) / name, doomed)  # gone from the cycles at once; then deleted
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(name)
    fsync_dir(out)
    return removed


def remove_leftovers(out) -> List[str]:
    """Delete what an interrupted run left: temporary cycle folders, half-pruned cycles, temporary links."""
    out = Path(out)
    removed = []
    for entry in list(out.iterdir()) if out.is_dir() else []:
        if _LEFTOVER.match(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
            removed.append(entry.name)
    return removed


@contextlib.contextmanager
def exclusive(out) -> Iterator[None]:
    """Hold `out/.watch.lock` while the block runs; a second process on the same folder is refused in one line.
    Where the system has no `fcntl` (Windows), nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(out) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise InputError(f"--out {out} is in use by another `prediff watch`"
                             f"{f' (process {holder})' if holder.isdigit() else ''}; run one per output folder")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
