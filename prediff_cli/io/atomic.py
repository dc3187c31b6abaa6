"""Write a file under a temporary name in its destination folder, then rename it into place.

An interrupted or failed write leaves nothing under the final name (and no temporary file behind). The
temporary file and then its folder are fsync'ed around the rename, so that after a power loss or a kill the final
name holds either the old complete file or the new complete file, never a truncated one.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


def fsync_file(path) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path) -> None:
    """Flush a folder's entries (a rename inside it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_sibling(path) -> Path:
    """A hidden name beside `path`, unique to this process, keeping the suffix (some writers insist on it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def commit(tmp, path) -> Path:
    """fsync `tmp`, rename it to `path`, fsync the folder."""
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)
    return Path(path)


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yields a temporary path beside `path`; on success it is renamed to `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        commit(tmp, path)
    except OSError as exc:
        # the user named `path`, not the temporary name: a failure to write is reported under the name they gave
        if exc.filename is not None and os.fsdecode(exc.filename) == str(tmp):
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path, text: str) -> Path:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)
