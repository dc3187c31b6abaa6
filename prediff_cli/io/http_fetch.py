"""Resumable HTTP(S) downloads in which every loop is bounded, whatever the server answers.

`fetch(url, part)` downloads `url` into the file `part`:
1. Only http and https URLs are accepted, and a redirect may not lead elsewhere (file://, ftp://); urllib follows at
   most 10 redirects per request.
2. If `part` exists (an earlier transfer was cut), the request asks for the rest with an HTTP `Range` header. A 206
   answer is appended only when its `Content-Range` starts exactly where the part file ends; one that starts at 0 (a
   server that ignores the range) rewrites the file from the start, and any other answer to a range (200, a 206
   without or with another `Content-Range`) restarts the file from zero. A 416 whose `bytes */TOTAL` equals the
   part's size means the part is already complete; a TOTAL smaller than the part restarts it.
3. Bounds, whatever the server says (`FetchLimits`): at most `max_requests` requests and `max_restarts` answers that
   throw received bytes away; each socket wait at most `timeout` seconds; every `window` seconds at least
   `min_rate` bytes per second must arrive; the whole fetch ends after `max_seconds` (a watchdog closes the
   connection, so a server that trickles its headers cannot hold it either). A transfer stopped by a time bound
   keeps its bytes for the next run.
4. What the server announces is checked before the body is read: a known `size` (Content-Length, or the
   `Content-Range` total) that differs, or a size below `min_size`, is refused; a body that ends at another size,
   or runs past what was announced, is refused and its bytes deleted.
5. A body that starts like an HTML/XML/JSON page (or, for a resumed range, is labelled as one) is never written:
   `PageAnswer` carries up to `PAGE_LIMIT` bytes of it, for callers that follow a confirmation form.
6. A cut transfer (short body, a chunked body cut mid-way, a reset, a timeout) keeps every byte that arrived in the
   part file, so that the next run resumes it.

Errors (one line each, all `DownloadError`): `SourceError` — the server did not serve the file (an HTTP error
status in `.status`, unreachable, a page, a wrong size; nothing of it is kept); `TransferCut` — interrupted, the part
keeps what arrived; `LocalError` — the local disk failed, the part is kept.
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import http.cookiejar
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional

from prediff.errors import DownloadError

from .atomic import fsync_file
from .sniff import SNIFF_BYTES, describe, markup_kind

CHUNK = 1 << 20
ALLOWED_SCHEMES = ("http", "https")
#: The most of a page answer (HTML, JSON) that is read, for a caller that parses it.
PAGE_LIMIT = 1 << 20
USER_AGENT = "prediff"

Progress = Callable[[int, Optional[int]], None]  # (bytes done, total bytes or None)

# Everything the network side can raise while opening or reading a response. http.client's own errors
# (IncompleteRead, BadStatusLine, LineTooLong, ...) are not OSErrors; timeouts and resets are.
NETWORK_ERRORS = (OSError, http.client.HTTPException)
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", re.IGNORECASE)
_PAGE_TYPES = ("text/html", "application/xhtml", "application/json", "text/xml", "application/xml")


@dataclass(frozen=True)
class FetchLimits:
    """How long and how often one `fetch` may go on, whatever the server answers.

    Attributes
    ----------
    max_requests : int
        Requests in one fetch (a server may legitimately answer a range with a shorter one, so a few are needed).
    max_restarts : int
        Answers that throw away bytes already received (a range ignored, a part longer than the file).
    timeout : float
        Seconds one connect or socket read may wait.
    min_rate : float
        Bytes per second that must arrive on average over each `window`; slower transfers stop (resumable).
    window : float
        Seconds over which `min_rate` is measured.
    max_seconds : float
        Wall-clock seconds for the whole fetch; then it stops (resumable).
    """

    max_requests: int = 32
    max_restarts: int = 3
    timeout: float = 60.0
    min_rate: float = 1024.0
    window: float = 120.0
    max_seconds: float = 24 * 3600.0


class SourceError(DownloadError):
    """The server did not serve the file: an HTTP error status (`status`), no answer, a page, a wrong size."""

    def __init__(self, message: str, status: Optional[int] = None, reason: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.reason = reason or message  # the short form, for a line that names the source itself


class PageAnswer(SourceError):
    """The server answered with a page (HTML, XML, JSON) instead of the file; `page` holds its first bytes and
    `url` the address that sent it (after redirects)."""

    def __init__(self, message: str, page: bytes, url: str, reason: str):
        super().__init__(message, reason=reason)
        self.page, self.url = page, url


class TransferCut(DownloadError):
    """The transfer stopped part-way; the part file keeps every byte that arrived, for the next run."""


class LocalError(DownloadError):
    """The local disk, not the server, is at fault: what was downloaded is kept for the next run."""


def one_line(text) -> str:
    return " ".join(str(text).split())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed mid-transfer"
    if isinstance(exc, TimeoutError):
        return "timed out"
    reason = getattr(exc, "reason", None) or exc
    return one_line(reason) or type(exc).__name__


def disk_error(exc: OSError, where: Path) -> LocalError:
    """The one line for a failed local write: disk full, or not writable."""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return LocalError(f"disk full while writing {where}; free space and run the command again to resume")
    return LocalError(f"cannot write {where}: {one_line(exc.strerror or exc)}")


def make_parents(folder: Path) -> list:
    """Create `folder` and its missing ancestors for a download; returns the ones created, deepest first (what
    to remove when the download fails). A failed creation raises `disk_error`'s LocalError."""
    made = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        made.append(probe)
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(exc, folder) from None
    return made


def check_url(url: str) -> None:
    """Raise unless `url` is an http(s) URL with a host; file://, ftp:// and bare paths are refused."""
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise DownloadError(f"invalid URL {url!r}: it contains control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise DownloadError(f"invalid URL {url} ({one_line(exc)})") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise DownloadError(f"unsupported URL {url}: only http and https URLs are allowed")
    if not host:
        raise DownloadError(f"invalid URL {url}: it names no host")


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    # urllib follows redirects to ftp:// by default; the scheme rule must hold for the final URL as well.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ALLOWED_SCHEMES:
            fp.close()
            raise SourceError(f"{req.full_url} redirects to {newurl}; only http and https URLs are allowed",
                              reason="redirected to a URL that is not http(s)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _tracked(base, registry: "weakref.WeakSet"):
    """`base` (an http.client connection class) that registers each connected instance in `registry`."""

    class Connection(base):
        def connect(self):
            super().connect()
            registry.add(self)

    return Connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, registry):
        super().__init__()
        self._connection = _tracked(http.client.HTTPConnection, registry)

    def http_open(self, req):
        return self.do_open(self._connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, registry):
        super().__init__()
        self._connection = _tracked(http.client.HTTPSConnection, registry)

    def https_open(self, req):
        options = {"context": self._context}
        if hasattr(self, "_check_hostname"):  # Python < 3.12
            options["check_hostname"] = self._check_hostname
        return self.do_open(self._connection, req, **options)


class Session:
    """Requests that share cookies (a host that sets one on a confirmation page wants it back with the download)
    and whose open connections a watchdog can close."""

    def __init__(self):
        self.cookies = http.cookiejar.CookieJar()
        self._connections: "weakref.WeakSet" = weakref.WeakSet()
        self._opener = urllib.request.build_opener(
            _HttpOnlyRedirects, urllib.request.HTTPCookieProcessor(self.cookies),
            _HTTPHandler(self._connections), _HTTPSHandler(self._connections))

    def close_connections(self) -> None:
        """Shut every open connection down (from another thread: a blocked read then returns at once)."""
        for connection in list(self._connections):
            sock = getattr(connection, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def open(self, url: str, start: int, timeout: float):
        """The response to GET `url` (from byte `start` when > 0), or the HTTPError of a 416 to a range request."""
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        if start:
            request.add_header("Range", f"bytes={start}-")
        try:
            return self._opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and start:
                return exc
            raise SourceError(f"download failed: HTTP {exc.code} {one_line(exc.reason)} for {url}", status=exc.code,
                              reason=f"answered {exc.code}") from None
        except http.client.InvalidURL as exc:
            raise DownloadError(f"invalid URL {url} ({one_line(exc)})") from None
        except ValueError as exc:  # urllib's "unknown url type" and malformed hosts
            raise DownloadError(f"invalid URL {url} ({one_line(exc)})") from None
        except NETWORK_ERRORS as exc:
            raise SourceError(f"download failed: cannot reach {url} ({_reason(exc)})",
                              reason=f"could not be reached ({_reason(exc)})") from None


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


class _Clock:
    """The time bounds of one fetch: its deadline, and the bytes counted in the current rate window."""

    def __init__(self, limits: FetchLimits):
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds
        self.window_start, self.window_bytes = time.monotonic(), 0
        self.expired = False

    def count(self, received: int) -> Optional[str]:
        """Add `received` bytes; the reason to stop when a time bound is broken, else None."""
        now = time.monotonic()
        if self.expired or now >= self.deadline:
            return f"it took longer than {self.limits.max_seconds:g} s"
        self.window_bytes += received
        elapsed = now - self.window_start
        if elapsed >= self.limits.window:
            if self.window_bytes < self.limits.min_rate * elapsed:
                return (f"it slowed to {self.window_bytes / elapsed:.0f} bytes/s, below {self.limits.min_rate:g} "
                        f"bytes/s over {self.limits.window:g} s")
            self.window_start, self.window_bytes = now, 0
        return None


class _Overrun(SourceError):
    """The server sent more bytes than it announced: the part file cannot be trusted and is deleted."""


def _is_page_type(headers) -> bool:
    kind = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    return kind.startswith(_PAGE_TYPES)


def _page(response, head: bytes, url: str) -> PageAnswer:
    """The page answer whose first bytes are `head`, read on up to PAGE_LIMIT."""
    body = bytearray(head)
    try:
        while len(body) < PAGE_LIMIT:
            block = response.read(min(CHUNK, PAGE_LIMIT - len(body)))
            if not block:
                break
            body += block
    except NETWORK_ERRORS:
        pass  # what arrived is enough to name the page
    kind = markup_kind(bytes(body)) or "a web page"
    shown = describe(bytes(body), kind)
    final = getattr(response, "url", None) or url
    return PageAnswer(f"{url} sent {shown} instead of the file", bytes(body), final, reason=f"sent {shown}")


def _receive(response, url: str, part: Path, offset: int, end: Optional[int], total: Optional[int],
             progress: Optional[Progress], clock: _Clock, check: Callable[[], None]) -> int:
    """Write the body to `part` from byte `offset` (truncating there); returns the size reached. A body that starts
    like a page is refused, and then `check` (of the announced size) runs, before the part is touched; every byte
    that arrives is written before an interruption is reported, so the next run resumes after it."""
    done, cut, stopped = offset, None, None
    # read1 returns what has arrived instead of waiting for a full CHUNK, so a timeout or reset loses nothing that
    # was already received (read() would drop a partly filled buffer along with the exception).
    read = getattr(response, "read1", response.read)

    def next_block() -> bytes:
        nonlocal cut
        try:
            return read(CHUNK)
        except http.client.IncompleteRead as exc:
            # A chunked body cut mid-way: `partial` holds body bytes that arrived but were not returned yet.
            cut = exc
            return exc.partial or b""
        except NETWORK_ERRORS as exc:
            cut = exc
            return b""

    pending = b""
    if offset == 0:  # the start of the body says what it is: nothing is written before it has been looked at
        while len(pending) < SNIFF_BYTES and cut is None and stopped is None:
            block = next_block()
            if not block:
                break
            pending += block
            stopped = clock.count(len(block))
        if markup_kind(pending[:SNIFF_BYTES]) is not None:
            raise _page(response, pending, url)
    elif _is_page_type(response.headers):
        raise _page(response, b"", url)
    check()
    if progress:
        progress(offset, total)
    try:
        with open(part, "r+b" if offset else "wb") as fh:
            fh.truncate(offset)
            fh.seek(offset)
            while True:
                if pending:
                    block, pending = pending, b""
                elif cut is None and stopped is None:
                    block = next_block()
                    stopped = clock.count(len(block))
                else:
                    block = b""
                if end is not None and done + len(block) > end:
                    raise _Overrun(f"the server sent more bytes than it announced for {url}; the partial download "
                                   "was deleted", reason="sent more bytes than it announced")
                if not block:
                    break
                fh.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
    except OSError as exc:
        raise disk_error(exc, part) from None
    if stopped is not None or cut is not None or (end is not None and done < end):
        of = f" of {total}" if total is not None else ""
        why = f" ({stopped})" if stopped is not None else (
            f" ({'it took too long' if clock.expired else _reason(cut)})" if cut is not None else "")
        raise TransferCut(f"download interrupted at {done}{of} bytes{why}; run the command again to resume")
    return done


def _check_announced(url: str, announced: Optional[int], size: Optional[int], min_size: int) -> None:
    if announced is None:
        return
    if size is not None and announced != size:
        raise SourceError(f"{url} announces {announced:,} bytes; the file is {size:,} bytes",
                          reason=f"announced {announced:,} bytes instead of {size:,}")
    if announced < min_size:
        raise SourceError(f"{url} announces {announced:,} bytes; the file is at least {min_size:,} bytes",
                          reason=f"announced only {announced:,} bytes")


def fetch(url: str, part: Path, progress: Optional[Progress] = None, timeout: Optional[float] = None, *,
          size: Optional[int] = None, min_size: int = 0, limits: FetchLimits = FetchLimits(),
          session: Optional[Session] = None) -> Path:
    """Download `url` into `part`, resuming from its current size; returns `part` once complete.

    Parameters
    ----------
    url : str
        http(s) URL.
    part : Path
        The file written; an existing one is resumed.
    progress : callable, optional
        Called as `progress(bytes done, total bytes or None)`.
    timeout : float, optional
        Seconds one socket wait may take (overrides `limits.timeout`).
    size : int, optional
        The file's exact size in bytes when known: another announced or received size is refused.
    min_size : int
        Fewer bytes than this cannot be the file: refused.
    limits : FetchLimits
        The request and time bounds.
    session : Session, optional
        Shares cookies with earlier requests (a confirmation page's).
    """
    check_url(url)
    session = session or Session()
    wait = limits.timeout if timeout is None else timeout
    clock = _Clock(limits)

    def expire():
        clock.expired = True
        session.close_connections()

    watchdog = threading.Timer(limits.max_seconds, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        _fetch(url, Path(part), progress, wait, size, min_size, limits, session, clock)
    finally:
        watchdog.cancel()
    try:
        fsync_file(part)  # the bytes verified next are the bytes on disk, even after a crash
    except OSError as exc:
        raise disk_error(exc, part) from None
    return part


def _fetch(url, part, progress, wait, size, min_size, limits, session, clock) -> None:
    resume, restarts, requests = True, 0, 0
    while True:
        if not resume:
            restarts += 1
        if restarts > limits.max_restarts or requests >= limits.max_requests:
            part.unlink(missing_ok=True)
            raise SourceError(f"the server at {url} keeps answering range requests inconsistently ({requests} "
                              "requests); run the command again", reason="answered range requests inconsistently")
        if clock.expired or time.monotonic() >= clock.deadline:
            raise TransferCut(f"download of {url} stopped after {limits.max_seconds:g} s; run the command again to "
                              "resume")
        have = part.stat().st_size if resume and part.exists() else 0
        requests += 1
        try:
            response = session.open(url, have, wait)
        except SourceError:
            if clock.expired:
                raise TransferCut(f"download of {url} stopped after {limits.max_seconds:g} s; run the command "
                                  "again to resume") from None
            raise
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
                if have and offset == 0:
                    restarts += 1  # the range was ignored: the bytes already here are rewritten
            elif status == 206 and have:
                resume = False  # a range we did not ask for, or none stated: ask for the whole file instead
                continue
            elif status == 206 and known is not None:
                raise SourceError(f"the server at {url} answered a request for the whole file with bytes "
                                  f"{known.start}-{known.end - 1} only", reason="answered with part of the file")
            else:  # 200 (the range was ignored or not asked for), or a 206 to a plain request: the whole file
                offset, total = 0, length
                end = total
                if have:
                    restarts += 1
            if restarts > limits.max_restarts:
                continue  # refused at the top of the loop
            try:
                done = _receive(response, url, part, offset, end, total, progress, clock,
                                lambda: _check_announced(url, total, size, min_size))
            except _Overrun:
                part.unlink(missing_ok=True)
                raise
        if total is None or done == total:
            break
        # A server may answer an open range with a shorter one: ask again for what follows.
        resume = True
    done = part.stat().st_size
    if (size is not None and done != size) or done < min_size:
        part.unlink(missing_ok=True)
        want = f"{size:,}" if size is not None else f"at least {min_size:,}"
        raise SourceError(f"{url} sent {done:,} bytes; the file is {want} bytes",
                          reason=f"sent {done:,} bytes instead of {want}")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
