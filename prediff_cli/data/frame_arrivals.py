"""Frames arriving in a folder, one file per time (how operational radar is delivered), looked at again and again.

Each `scan` lists the folder's radar files (as a folder `--input` reads them: `frame_folder.radar_files_in`)
and reads the times of files that are new or have changed (size or modification time) from their metadata, by
the same readers as a folder input (`frame_folder.file_frame_times`, which applies the untrusted-input checks).
A file is never trusted because of its name.

* A file that reads is used at once (a complete radar file reads; one still being written does not).
* A file that does not read is *pending* while it is still changing (its size or modification time differs from
  the previous scan) or was modified less than `settle` seconds ago: a transfer in progress. It is read again at
  the next scan.
* Otherwise it is *refused*: reported once, with the reason, and not read again until it changes. `refused`
  maps file names to (size, modification time in ns, reason) and can be kept across runs, so a crafted file is
  not retried by every run of a cron job.
* Two files holding the same time: the one that arrived first (older modification time) is used, the other is
  refused.

Only the newest `WATCH_FILES` files (by modification time) are read and remembered: a nowcast needs the recent
frames, and what is kept between scans must not grow with a folder that keeps every frame of a year.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from prediff.errors import InputError

from .frame_folder import file_frame_times, newest_context, radar_files_in

#: how many of a folder's newest files are looked at
WATCH_FILES = 256


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    times: Optional[List[dt.datetime]]  # None: not read (pending)


@dataclass
class Context:
    """A complete context: its frame times (oldest first) and the files holding them (one per time)."""

    times: List[dt.datetime]
    files: List[Path]
    arrived: float  # the newest modification time among the files (seconds since the epoch)
    signature: List[Tuple[str, int, int]]  # (name, size, mtime in ns) of each file: tells a changed file


@dataclass
class Scan:
    """What one scan found that is worth telling: newly refused files (path, reason), files still pending."""

    refused: List[Tuple[Path, str]] = field(default_factory=list)
    pending: List[Path] = field(default_factory=list)


def _read_problem(path: Path, variable: str) -> Tuple[Optional[List[dt.datetime]], Optional[str]]:
    """(times, None) of a readable radar file, else (None, why not)."""
    try:
        return file_frame_times(path, variable), None
    except InputError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    except MemoryError:
        return None, f"{path}: out of memory while reading it"
    except Exception as exc:  # noqa: BLE001 - a service skips a file any reader fails on and goes on
        return None, f"{path}: unreadable ({type(exc).__name__}: {exc})"


class FrameArrivals:
    """The frames of the radar files in `folder` (variable `variable`), kept up to date by `scan`."""

    def __init__(self, folder, variable: str = "vil", settle: float = 30.0,
                 refused: Optional[Dict[str, Tuple[int, int, str]]] = None):
        self.folder = Path(folder)
        self.variable = variable
        self.settle = float(settle)
        self.refused: Dict[str, Tuple[int, int, str]] = dict(refused or {})
        self._seen: Dict[str, _Seen] = {}
        self._previous: Dict[str, Tuple[int, int]] = {}  # name → (size, mtime) at the previous scan
        self.frames: Dict[dt.datetime, Path] = {}

    def _listing(self) -> Dict[str, Tuple[Path, int, int]]:
        entries = []
        try:
            candidates = list(radar_files_in(self.folder))
        except FileNotFoundError:
            raise InputError(f"the watched folder {self.folder} no longer exists") from None
        except OSError as exc:
            raise InputError(f"cannot list the watched folder {self.folder}: {exc.strerror or exc}") from None
        for path in candidates:
            try:
                info = os.stat(path)
            except OSError:  # removed since the listing
                continue
            entries.append((info.st_mtime_ns, path.name, path, info.st_size))
        entries.sort()
        return {name: (path, size, mtime) for mtime, name, path, size in entries[-WATCH_FILES:]}

    def scan(self, now: Optional[float] = None) -> Scan:
        """Look at the folder again; returns the files newly refused and those still pending."""
        now = time.time() if now is None else now
        listing = self._listing()
        found = Scan()
        for name, (path, size, mtime) in listing.items():
            seen = self._seen.get(name)
            if seen is not None and (seen.size, seen.mtime_ns) == (size, mtime) and seen.times is not None:
                continue
            if name in self.refused and tuple(self.refused[name][:2]) == (size, mtime):
                continue
            self.refused.pop(name, None)
            times, problem = _read_problem(path, self.variable)
            if times is not None:
                self._seen[name] = _Seen(size, mtime, times)
                continue
            changing = self._previous.get(name, (size, mtime)) != (size, mtime)
            if changing or now - mtime / 1e9 < self.settle:
                self._seen[name] = _Seen(size, mtime, None)
                found.pending.append(path)
            else:
                self._seen.pop(name, None)
                self.refused[name] = (size, mtime, problem)
                found.refused.append((path, problem))
        for name in set(self._seen) - set(listing):
            del self._seen[name]
        for name in set(self.refused) - set(listing):
            del self.refused[name]
        self._previous = {name: (size, mtime) for name, (_, size, mtime) in listing.items()}
        found.refused += self._index(listing)
        return found

    def _index(self, listing) -> List[Tuple[Path, str]]:
        """Rebuild time → file from the files read, oldest arrival first; a second file for a time is refused."""
        self.frames = {}
        refused = []
        for name, (path, size, mtime) in listing.items():  # in order of arrival
            seen = self._seen.get(name)
            if seen is None or seen.times is None:
                continue
            clash = next((t for t in seen.times if t in self.frames), None)
            if clash is not None:
                why = f"{path} holds the frame of {clash:%Y-%m-%d %H:%M:%S}, which {self.frames[clash].name} holds " \
                      "already"
                del self._seen[name]
                self.refused[name] = (size, mtime, why)
                refused.append((path, why))
                continue
            for t in seen.times:
                self.frames[t] = path
        return refused

    def context(self, in_len: int) -> Optional[Context]:
        """The newest complete context of `in_len` frames 10 minutes apart among the frames read, or None."""
        times = newest_context(self.frames, in_len)
        if times is None:
            return None
        files = list(dict.fromkeys(self.frames[t] for t in times))  # a NetCDF file may hold several of them
        signature = [(p.name, self._seen[p.name].size, self._seen[p.name].mtime_ns) for p in files]
        return Context(times=times, files=files, arrived=max(s[2] for s in signature) / 1e9, signature=signature)

    @property
    def newest_frame(self) -> Optional[dt.datetime]:
        return max(self.frames) if self.frames else None
