"""Fetch and install the SEVIR-LR archive: resumable, verified, never half-extracted.

1. The archive downloads to `<dest>.zip.part` next to the destination. If that file exists (an earlier transfer
   was cut), the request asks for the rest with an HTTP `Range` header; a server that ignores it (200 instead of
   206) restarts the file from zero.
2. The finished archive is checked: zip integrity (`testzip`) and, when known, its SHA-256.
3. It is extracted into a temporary folder beside the destination; an archive that wraps everything in one
   top-level folder (the official `sevir_lr/`) is unwrapped; the layout (CATALOG.csv, data/vil/YEAR/*.h5 with a
   `vil` dataset) is checked; then the folder is renamed into place in one step.
Every failure raises `DownloadError` with one line; the temporary folder is removed, and the `.part` file is kept
only when a transfer was interrupted (so the next run resumes it).
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable, Optional

import h5py

from prediff_cli.errors import DownloadError

DEFAULT_URL = "https://deep-earth.s3.amazonaws.com/datasets/sevir_lr.zip"
URL_ENV = "PREDIFF_SEVIR_LR_URL"
#: SHA-256 of published archives, by URL. None are published by the dataset's authors yet.
KNOWN_SHA256: dict = {}
CHUNK = 1 << 20

Progress = Callable[[int, Optional[int]], None]  # (bytes done, total bytes or None)


def resolve_url(url: Optional[str]) -> str:
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


def _disk_error(exc: OSError, where: Path) -> DownloadError:
    if exc.errno == errno.ENOSPC:
        return DownloadError(f"disk full while writing {where}; free space and run the command again to resume")
    return DownloadError(f"cannot write {where}: {exc.strerror or exc}")


def fetch(url: str, part: Path, progress: Optional[Progress] = None, timeout: float = 60.0) -> Path:
    """Download `url` into `part`, resuming from its current size; returns `part` once complete."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "prediff"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the part file is already complete
            return part
        raise DownloadError(f"download failed: HTTP {exc.code} {exc.reason} for {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"download failed: cannot reach {url} ({reason})") from None
    with response:
        status = getattr(response, "status", 200)
        if status == 206:
            mode = "ab"
        else:
            mode, have = "wb", 0  # the server sent the whole file
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        done = have
        try:
            with open(part, mode) as fh:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (OSError, urllib.error.URLError) as exc:
                        raise DownloadError(f"download interrupted at {done} bytes ({exc}); run the command "
                                            "again to resume") from None
                    if not block:
                        break
                    fh.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
        except OSError as exc:
            raise _disk_error(exc, part) from None
    if total is not None and done < total:
        raise DownloadError(f"download interrupted at {done} of {total} bytes; run the command again to resume")
    return part


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_archive(path: Path, sha256: Optional[str] = None) -> None:
    if sha256 is not None:
        actual = sha256_of(path)
        if actual.lower() != sha256.lower():
            raise DownloadError(f"{path.name} has SHA-256 {actual}, expected {sha256}; the archive is corrupt "
                                "(delete it and download again)")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{path.name} is not a valid zip archive ({exc}); delete it and download again") \
            from None
    if bad is not None:
        raise DownloadError(f"{path.name} is corrupt (bad CRC in {bad}); delete it and download again")


def check_layout(root: Path) -> int:
    """Raise unless `root` looks like SEVIR-LR; returns the number of VIL files."""
    if not (root / "CATALOG.csv").is_file():
        raise DownloadError("the archive does not contain CATALOG.csv at its top level")
    files = sorted((root / "data" / "vil").glob("*/*.h5"))
    if not files:
        raise DownloadError("the archive does not contain data/vil/YEAR/*.h5 files")
    for path in files[:3] + files[-1:]:
        try:
            with h5py.File(path, "r") as h5:
                if "vil" not in h5:
                    raise DownloadError(f"{path.relative_to(root)} has no 'vil' dataset")
        except OSError as exc:
            raise DownloadError(f"{path.relative_to(root)} is not a readable HDF5 file ({exc})") from None
    return len(files)


def extract(archive: Path, dest: Path) -> int:
    """Extract into a temporary sibling of `dest`, unwrap a single top-level folder, check, rename."""
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract.", dir=dest.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(staging)
        except OSError as exc:
            raise _disk_error(exc, staging) from None
        entries = [p for p in staging.iterdir() if not p.name.startswith("__MACOSX")]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        count = check_layout(root)
        os.replace(root, dest)
        return count
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_sevir_lr(dest, url: Optional[str] = None, sha256: Optional[str] = None,
                      progress: Optional[Progress] = None) -> int:
    """Download, verify and install SEVIR-LR at `dest`; returns the number of VIL files."""
    dest = Path(dest)
    if dest.exists():
        raise DownloadError(f"destination {dest} already exists; remove it or choose another --dest")
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = resolve_url(url)
    part = dest.with_name(dest.name + ".zip.part")
    fetch(url, part, progress)
    try:
        verify_archive(part, sha256 or KNOWN_SHA256.get(url))
    except DownloadError:
        part.unlink(missing_ok=True)  # a complete but corrupt archive cannot be resumed
        raise
    count = extract(part, dest)
    part.unlink(missing_ok=True)
    return count
