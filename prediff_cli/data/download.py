"""Fetch and install the SEVIR-LR archive: resumable, verified, never half-extracted.

1. The archive downloads to `<dest>.zip.part` next to the destination with the resumable fetcher of
   `prediff.io.http_fetch` (http/https only, HTTP Range resume, every loop bounded in requests and time, a page
   answered instead of the archive refused before it is written).
2. The finished archive is checked: no absolute, `..` or symlink entries (nothing may land outside the staging
   folder), zip integrity (`testzip`) and, when known, its SHA-256.
3. It is extracted into a temporary folder beside the destination, once the declared uncompressed size is known
   to fit in the free space there; an archive that wraps everything in one top-level folder (the official
   `sevir_lr/`) is unwrapped; the layout (CATALOG.csv, data/vil/YEAR/*.h5 with a `vil` dataset) is checked; then
   the folder is renamed into place in one step.
Every failure raises `DownloadError` with one line; the temporary folder is removed and no destination folder is
created. The `.part` file is kept when a transfer was interrupted (the next run resumes it) or when the local disk
was the problem (full, not writable); a complete archive that is corrupt or has the wrong layout is deleted, since
it cannot be resumed into a good one.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Optional

import h5py

from prediff.errors import DownloadError
from prediff.io.atomic import fsync_dir
from prediff.io.http_fetch import (LocalError, Progress, check_url, disk_error, fetch, make_parents, one_line,
                                   sha256_of)

DEFAULT_URL = "https://deep-earth.s3.amazonaws.com/datasets/sevir_lr.zip"
URL_ENV = "PREDIFF_SEVIR_LR_URL"
#: SHA-256 of published archives, by URL. None are published by the dataset's authors yet.
KNOWN_SHA256: dict = {}

# What zipfile and the decompressors raise on archives they cannot read (besides BadZipFile): encrypted members
# (RuntimeError), unknown compression (NotImplementedError), broken deflate/bz2/lzma streams.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError, RuntimeError,
               NotImplementedError)


def resolve_url(url: Optional[str]) -> str:
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


def _shown(name) -> str:
    """An archive-supplied name, verbatim unless it holds control characters (then escaped, to stay one line)."""
    name = str(name)
    return name if name.isprintable() else ascii(name)


def _unsafe_entry(info: zipfile.ZipInfo) -> Optional[str]:
    """Why an entry could land outside the extraction folder (or point there), else None."""
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "a '..' path"
    return None


def verify_archive(path: Path, sha256: Optional[str] = None) -> None:
    if sha256 is not None:
        actual = sha256_of(path)
        if actual.lower() != sha256.lower():
            raise DownloadError(f"{path.name} has SHA-256 {actual}, expected {sha256}; the archive is corrupt")
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                why = _unsafe_entry(info)
                if why is not None:
                    raise DownloadError(f"{path.name} has an unsafe entry {_shown(info.filename)} ({why}); "
                                        "refusing to extract it")
            bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{path.name} is not a valid zip archive ({one_line(exc)})") from None
    except _ZIP_ERRORS as exc:
        raise DownloadError(f"{path.name} is not a usable zip archive ({one_line(exc)})") from None
    except OSError as exc:
        raise DownloadError(f"cannot read {path}: {one_line(exc.strerror or exc)}") from None
    if bad is not None:
        raise DownloadError(f"{path.name} is corrupt (bad CRC in {_shown(bad)})")


def check_layout(root: Path) -> int:
    """Raise unless `root` looks like SEVIR-LR; returns the number of VIL files."""
    if not (root / "CATALOG.csv").is_file():
        raise DownloadError("the archive does not contain CATALOG.csv at its top level")
    files = sorted((root / "data" / "vil").glob("*/*.h5"))
    if not files:
        raise DownloadError("the archive does not contain data/vil/YEAR/*.h5 files")
    for path in files[:3] + files[-1:]:
        shown = _shown(path.relative_to(root))
        try:
            with h5py.File(path, "r") as h5:
                if "vil" not in h5:
                    raise DownloadError(f"{shown} has no 'vil' dataset")
        except OSError as exc:
            raise DownloadError(f"{shown} is not a readable HDF5 file ({one_line(exc)})") from None
    return len(files)


def extract(archive: Path, dest: Path) -> int:
    """Extract into a temporary sibling of `dest`, unwrap a single top-level folder, check, rename."""
    try:
        with zipfile.ZipFile(archive) as z:
            # zipfile never writes more than a member's declared size, so the sum bounds what lands on disk.
            need = sum(info.file_size for info in z.infolist())
    except _ZIP_ERRORS as exc:
        raise DownloadError(f"{archive.name} is not a valid zip archive ({one_line(exc)})") from None
    try:
        free = shutil.disk_usage(dest.parent).free
    except OSError as exc:
        raise LocalError(f"cannot check the free space in {dest.parent}: {one_line(exc.strerror or exc)}") \
            from None
    if need > free:
        raise LocalError(f"the archive unpacks to {need} bytes but only {free} bytes are free in {dest.parent}; "
                          "free space and run the command again")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract.", dir=dest.parent))
    except OSError as exc:
        raise disk_error(exc, dest.parent) from None
    try:
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(staging)
        except OSError as exc:
            raise disk_error(exc, staging) from None
        except _ZIP_ERRORS as exc:
            raise DownloadError(f"{archive.name} is not a usable zip archive ({one_line(exc)})") from None
        entries = [p for p in staging.iterdir() if not p.name.startswith("__MACOSX")]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        count = check_layout(root)
        try:
            os.replace(root, dest)
        except OSError as exc:
            raise LocalError(f"cannot move the dataset into {dest}: {one_line(exc.strerror or exc)}") from None
        fsync_dir(dest.parent)
        return count
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_sevir_lr(dest, url: Optional[str] = None, sha256: Optional[str] = None,
                      progress: Optional[Progress] = None) -> int:
    """Download, verify and install SEVIR-LR at `dest`; returns the number of VIL files."""
    dest = Path(dest)
    if os.path.lexists(dest):
        raise DownloadError(f"destination {dest} already exists; remove it or choose another --dest")
    url = resolve_url(url)
    check_url(url)
    made = make_parents(dest.parent)
    part = dest.with_name(dest.name + ".zip.part")
    try:
        fetch(url, part, progress)
        try:
            verify_archive(part, sha256 or KNOWN_SHA256.get(url))
            count = extract(part, dest)
        except LocalError:
            raise  # the archive itself is fine: keep it for the next run
        except DownloadError:
            part.unlink(missing_ok=True)  # complete but corrupt or unusable: it cannot be resumed into a good one
            raise
    except DownloadError:
        for folder in made:  # folders this call created for nothing; a kept .part keeps them (rmdir fails)
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    part.unlink(missing_ok=True)
    return count
