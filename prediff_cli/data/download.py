"""Fetch and install the SEVIR-LR archive: resumable, verified, never half-extracted.

1. Only http and https URLs are accepted, and a redirect may not lead elsewhere (file://, ftp://).
2. The archive downloads to `<dest>.zip.part` next to the destination. If that file exists (an earlier transfer
   was cut), the request asks for the rest with an HTTP `Range` header. A 206 answer is trusted only when its
   `Content-Range` starts exactly where the part file ends; one that starts at 0 (a server that ignores the range)
   rewrites the file from the start, any other answer to a range (200, a 206 without or with a different
   `Content-Range`) restarts the file from zero. A 416 whose `bytes */TOTAL` equals the part's size means the
   part is already complete; a TOTAL smaller than the part means the part is not this file, so it restarts. The
   `Content-Range` TOTAL (else `Content-Length`) drives the progress bar and the completeness check; a server
   that sends more than it announced has its bytes deleted.
3. A cut transfer (short body, a chunked body cut mid-way, a reset, a timeout) keeps every byte that arrived in
   the part file, so that the next run resumes it.
4. The finished archive is checked: no absolute, `..` or symlink entries (nothing may land outside the staging
   folder), zip integrity (`testzip`) and, when known, its SHA-256.
5. It is extracted into a temporary folder beside the destination, once the declared uncompressed size is known
   to fit in the free space there; an archive that wraps everything in one top-level folder (the official
   `sevir_lr/`) is unwrapped; the layout (CATALOG.csv, data/vil/YEAR/*.h5 with a `vil` dataset) is checked; then
   the folder is renamed into place in one step.
Every failure raises `DownloadError` with one line; the temporary folder is removed and no destination folder is
created. The `.part` file is kept when a transfer was interrupted (the next run resumes it) or when the local disk
was the problem (full, not writable); a complete archive that is corrupt or has the wrong layout is deleted, since
it cannot be resumed into a good one.
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import h5py

from prediff.errors import DownloadError
from prediff.io.atomic import fsync_dir, fsync_file

DEFAULT_URL = "https://deep-earth.s3.amazonaws.com/datasets/sevir_lr.zip"
URL_ENV = "PREDIFF_SEVIR_LR_URL"
#: SHA-256 of published archives, by URL. None are published by the dataset's authors yet.
KNOWN_SHA256: dict = {}
CHUNK = 1 << 20
ALLOWED_SCHEMES = ("http", "https")
#: How often a download may start over from zero because the server mishandled a range, before giving up.
MAX_RESTARTS = 3

Progress = Callable[[int, Optional[int]], None]  # (bytes done, total bytes or None)

# Everything the network side can raise while opening or reading a response. http.client's own errors
# (IncompleteRead, BadStatusLine, LineTooLong, ...) are not OSErrors; timeouts and resets are.
_NETWORK_ERRORS = (OSError, http.client.HTTPException)
# What zipfile and the decompressors raise on archives they cannot read (besides BadZipFile): encrypted members
# (RuntimeError), unknown compression (NotImplementedError), broken deflate/bz2/lzma streams.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError, RuntimeError,
               NotImplementedError)
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", re.IGNORECASE)


class _LocalError(DownloadError):
    """The local disk, not the archive, is at fault: the complete `.part` file is kept for the next run."""


class _Overrun(DownloadError):
    """The server sent more bytes than it announced: the part file cannot be trusted and is deleted."""


def resolve_url(url: Optional[str]) -> str:
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _shown(name) -> str:
    """An archive-supplied name, verbatim unless it holds control characters (then escaped, to stay one line)."""
    name = str(name)
    return name if name.isprintable() else ascii(name)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed mid-transfer"
    if isinstance(exc, TimeoutError):
        return "timed out"
    reason = getattr(exc, "reason", None) or exc
    return _one_line(reason) or type(exc).__name__


def _disk_error(exc: OSError, where: Path) -> DownloadError:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return _LocalError(f"disk full while writing {where}; free space and run the command again to resume")
    return _LocalError(f"cannot write {where}: {_one_line(exc.strerror or exc)}")


def check_url(url: str) -> None:
    """Raise unless `url` is an http(s) URL with a host; file://, ftp:// and bare paths are refused."""
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise DownloadError(f"invalid URL {url!r}: it contains control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise DownloadError(f"invalid URL {url} ({_one_line(exc)})") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise DownloadError(f"unsupported URL {url}: only http and https URLs are allowed")
    if not host:
        raise DownloadError(f"invalid URL {url}: it names no host")


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    # urllib follows redirects to ftp:// by default; the scheme rule must hold for the final URL as well.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ALLOWED_SCHEMES:
            fp.close()
            raise DownloadError(f"{req.full_url} redirects to {newurl}; only http and https URLs are allowed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Range(NamedTuple):
    start: Optional[int]  # None for `bytes */TOTAL`
    end: Optional[int]    # exclusive
    total: Optional[int]  # None for `/*`


def _content_range(headers) -> Optional[_Range]:
    """Parse `Content-Range: bytes START-END/TOTAL` (or `bytes */TOTAL`); None when absent or inconsistent."""
    match = _CONTENT_RANGE.match(headers.get("Content-Range") or "") if headers is not None else None
    if not match:
        return None
    first, last, total = match.groups()
    total = None if total == "*" else int(total)
    if first is None:
        return _Range(None, None, total)
    start, end = int(first), int(last) + 1
    if end <= start or (total is not None and end > total):
        return None
    return _Range(start, end, total)


def _content_length(headers) -> Optional[int]:
    try:
        length = int(headers.get("Content-Length"))
    except (TypeError, ValueError):
        return None
    return length if length >= 0 else None


def _open(url: str, start: int, timeout: float):
    """The response to GET `url` (from byte `start` when > 0), or the HTTPError of a 416 to a range request."""
    request = urllib.request.Request(url, headers={"User-Agent": "prediff"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and start:
            return exc
        raise DownloadError(f"download failed: HTTP {exc.code} {_one_line(exc.reason)} for {url}") from None
    except http.client.InvalidURL as exc:
        raise DownloadError(f"invalid URL {url} ({_one_line(exc)})") from None
    except ValueError as exc:  # urllib's "unknown url type" and malformed hosts
        raise DownloadError(f"invalid URL {url} ({_one_line(exc)})") from None
    except _NETWORK_ERRORS as exc:
        raise DownloadError(f"download failed: cannot reach {url} ({_reason(exc)})") from None


def _receive(response, url: str, part: Path, offset: int, end: Optional[int], total: Optional[int],
             progress: Optional[Progress]) -> int:
    """Write the body to `part` from byte `offset` (truncating there); returns the size reached. Every byte that
    arrives is written before an interruption is reported, so the next run resumes after it."""
    done, cut = offset, None
    # read1 returns what has arrived instead of waiting for a full CHUNK, so a timeout or reset loses nothing that
    # was already received (read() would drop a partly filled buffer along with the exception).
    read = getattr(response, "read1", response.read)
    try:
        with open(part, "r+b" if offset else "wb") as fh:
            fh.truncate(offset)
            fh.seek(offset)
            while cut is None:
                try:
                    block = read(CHUNK)
                except http.client.IncompleteRead as exc:
                    # A chunked body cut mid-way: `partial` holds body bytes that arrived but were not returned yet.
                    block, cut = exc.partial or b"", exc
                except _NETWORK_ERRORS as exc:
                    block, cut = b"", exc
                if end is not None and done + len(block) > end:
                    raise _Overrun(f"the server sent more bytes than it announced for "
                                   f"{url}; the partial download was deleted")
                if not block:
                    break
                fh.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
    except OSError as exc:
        raise _disk_error(exc, part) from None
    if cut is not None or (end is not None and done < end):
        of = f" of {total}" if total is not None else ""
        why = f" ({_reason(cut)})" if cut is not None else ""
        raise DownloadError(f"download interrupted at {done}{of} bytes{why}; run the command again to resume")
    return done


def fetch(url: str, part: Path, progress: Optional[Progress] = None, timeout: float = 60.0) -> Path:
    """Download `url` into `part`, resuming from its current size; returns `part` once complete."""
    check_url(url)
    resume, restarts = True, 0
    while True:
        if not resume:
            restarts += 1
            if restarts > MAX_RESTARTS:
                raise DownloadError(f"the server at {url} keeps answering range requests inconsistently; "
                                    f"delete {part} and run the command again")
        have = part.stat().st_size if resume and part.exists() else 0
        response = _open(url, have, timeout)
        if isinstance(response, urllib.error.HTTPError):  # 416: nothing to send from `have` on
            known = _content_range(response.headers)
            total = known.total if known is not None else None
            if total is None or total == have:  # the part is complete; verification judges its bytes
                break
            resume = False  # the part is longer (or, oddly, shorter) than the file: start over
            continue
        with response:
            status = getattr(response, "status", 200)
            known = _content_range(response.headers) if status == 206 else None
            if known is not None and known.start is None:
                known = None  # `bytes */TOTAL` says nothing about where this body starts
            length = _content_length(response.headers)
            if status == 206 and known is not None and known.start in (have, 0):
                offset, end, total = known.start, known.end, known.total
            elif status == 206 and have:
                resume = False  # a range we did not ask for, or none stated: ask for the whole file instead
                continue
            elif status == 206 and known is not None:
                raise DownloadError(f"the server at {url} answered a request for the whole file with bytes "
                                    f"{known.start}-{known.end - 1} only")
            else:  # 200 (the range was ignored or not asked for), or a 206 to a plain request: the whole file
                offset, total = 0, length
                end = total
            if progress:
                progress(offset, total)
            try:
                done = _receive(response, url, part, offset, end, total, progress)
            except _Overrun:
                part.unlink(missing_ok=True)
                raise
        if total is None or done == total:
            break
        # A server may answer an open range with a shorter one: ask again for what follows.
        resume = True
    try:
        fsync_file(part)  # the bytes verified next are the bytes on disk, even after a crash
    except OSError as exc:
        raise _disk_error(exc, part) from None
    return part


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


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
        raise DownloadError(f"{path.name} is not a valid zip archive ({_one_line(exc)})") from None
    except _ZIP_ERRORS as exc:
        raise DownloadError(f"{path.name} is not a usable zip archive ({_one_line(exc)})") from None
    except OSError as exc:
        raise DownloadError(f"cannot read {path}: {_one_line(exc.strerror or exc)}") from None
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
            raise DownloadError(f"{shown} is not a readable HDF5 file ({_one_line(exc)})") from None
    return len(files)


def extract(archive: Path, dest: Path) -> int:
    """Extract into a temporary sibling of `dest`, unwrap a single top-level folder, check, rename."""
    try:
        with zipfile.ZipFile(archive) as z:
            # zipfile never writes more than a member's declared size, so the sum bounds what lands on disk.
            need = sum(info.file_size for info in z.infolist())
    except _ZIP_ERRORS as exc:
        raise DownloadError(f"{archive.name} is not a valid zip archive ({_one_line(exc)})") from None
    try:
        free = shutil.disk_usage(dest.parent).free
    except OSError as exc:
        raise _LocalError(f"cannot check the free space in {dest.parent}: {_one_line(exc.strerror or exc)}") \
            from None
    if need > free:
        raise _LocalError(f"the archive unpacks to {need} bytes but only {free} bytes are free in {dest.parent}; "
                          "free space and run the command again")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract.", dir=dest.parent))
    except OSError as exc:
        raise _disk_error(exc, dest.parent) from None
    try:
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(staging)
        except OSError as exc:
            raise _disk_error(exc, staging) from None
        except _ZIP_ERRORS as exc:
            raise DownloadError(f"{archive.name} is not a usable zip archive ({_one_line(exc)})") from None
        entries = [p for p in staging.iterdir() if not p.name.startswith("__MACOSX")]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        count = check_layout(root)
        try:
            os.replace(root, dest)
        except OSError as exc:
            raise _LocalError(f"cannot move the dataset into {dest}: {_one_line(exc.strerror or exc)}") from None
        fsync_dir(dest.parent)
        return count
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _make_parents(folder: Path) -> list:
    """Create `folder` and its missing ancestors; returns the ones created, deepest first."""
    made = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        made.append(probe)
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _disk_error(exc, folder) from None
    return made


def download_sevir_lr(dest, url: Optional[str] = None, sha256: Optional[str] = None,
                      progress: Optional[Progress] = None) -> int:
    """Download, verify and install SEVIR-LR at `dest`; returns the number of VIL files."""
    dest = Path(dest)
    if os.path.lexists(dest):
        raise DownloadError(f"destination {dest} already exists; remove it or choose another --dest")
    url = resolve_url(url)
    check_url(url)
    made = _make_parents(dest.parent)
    part = dest.with_name(dest.name + ".zip.part")
    try:
        fetch(url, part, progress)
        try:
            verify_archive(part, sha256 or KNOWN_SHA256.get(url))
            count = extract(part, dest)
        except _LocalError:
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
