"""Opening files that come from outside (inputs, checkpoints, caches, downloads) without trusting what they are.

The one rule every reader follows: a file from outside is read only when it is a *regular* file (after following
symlinks) — never a device (`/dev/zero` reports size 0 and never ends), a FIFO (blocks forever), a socket or a
`/proc` pseudo-file (sizes that lie) — and never more than a stated number of bytes, with a file that ends early
reported as such. Each function raises `InputError` with one line naming the path.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO, Optional

from prediff.errors import InputError

# /proc and /sys files report sizes that are not their contents (0, or 4096) and some never end; refused whatever
# their mode says (devices are refused by their mode; /dev/shm holds regular files and stays usable)
_PSEUDO_ROOTS = ("/proc/", "/sys/")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular_file(path, what: str = "file", follow_symlinks: bool = True, dir_fd: Optional[int] = None) -> int:
    """Refuse anything but an existing regular file; return its size in bytes.

    Parameters
    ----------
    path : str or os.PathLike
        The file; symlinks are followed (a link to a regular file is fine, a link to `/dev/zero` is not) unless
        `follow_symlinks` is False, when a symlink is refused whatever it points to.
    what : str
        What the file is, for the message ("input file", "checkpoint", ...).
    dir_fd : int, optional
        A directory descriptor that a relative `path` is taken in (as `os.stat` takes it).
    """
    path = Path(path)
    try:
        info = os.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot access {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode):
        raise InputError(f"{what} {path} is a symbolic link; expected a regular file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} {path} is {_kind(info.st_mode)}; expected a regular file")
    if dir_fd is None:
        real = os.path.realpath(path)
        if any(real.startswith(root) for root in _PSEUDO_ROOTS):
            raise InputError(f"{what} {path} is a system pseudo-file ({real}); expected a regular file")
    return info.st_size


def open_regular_fd(path, flags: int = os.O_RDONLY, what: str = "file", follow_symlinks: bool = True,
                    dir_fd: Optional[int] = None) -> int:
    """`os.open(path, flags)` of a regular file, checking the opened descriptor itself (so a path swapped for a FIFO
    between the check and the open is still refused; `O_NONBLOCK` keeps that open from hanging). With
    `follow_symlinks` False the open itself refuses a symlink (`O_NOFOLLOW`), so nothing is read or written
    through one. Returns the descriptor (blocking), which the caller closes."""
    check_regular_file(path, what, follow_symlinks, dir_fd)
    extra = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        extra |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | extra, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise InputError(f"{what} {path} is a symbolic link; expected a regular file") from None
        raise InputError(f"cannot open {what} {path}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"{what} {path} is {_kind(mode)}; expected a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_regular(path, what: str = "file", follow_symlinks: bool = True, dir_fd: Optional[int] = None) -> BinaryIO:
    """Open a regular file for binary reading (see `open_regular_fd`)."""
    return os.fdopen(open_regular_fd(path, os.O_RDONLY, what, follow_symlinks, dir_fd), "rb")


def read_bounded(path, limit: int, what: str = "file", expected: Optional[int] = None,
                 follow_symlinks: bool = True, dir_fd: Optional[int] = None) -> bytes:
    """The whole content of a regular file of at most `limit` bytes.

    Parameters
    ----------
    limit : int
        Largest size accepted; a larger file is refused before anything is read.
    expected : int, optional
        The exact size the caller knows the file must have; a file that ends early (or runs on) is refused.
    follow_symlinks, dir_fd
        As for `open_regular_fd`.
    """
    with open_regular(path, what, follow_symlinks, dir_fd) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise InputError(f"{what} {path} is {size:,} bytes; at most {limit:,} expected")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"{what} {path} holds more than {limit:,} bytes")
    if expected is not None and len(data) != expected:
        raise InputError(f"{what} {path} holds {len(data):,} bytes; {expected:,} expected (truncated or damaged)")
    return data
