"""Where the published weight files can be fetched, tried in order until one serves the file.

1. A mirror serving the official file names (`--url-base URL`, else `$PREDIFF_WEIGHTS_URL`): first when given.
2. The official SharePoint/OneDrive link of each file, as the authors' download helper lists it. These links have
   answered 404 since November 2025.
3. The Google Drive file of each, from the official repository's history (the helper's Drive ids before the move
   to OneDrive). Drive answers a file this large with a confirmation page; its form is read and followed with the
   page's cookies, and a cut transfer resumes with HTTP Range (`io.google_drive`, `io.http_fetch`).
`--source mirror|official|gdrive` keeps one of them. Each endpoint can be pointed elsewhere (an institution's proxy
or mirror, a test server): `$PREDIFF_SHAREPOINT_URL` replaces the SharePoint folder the share ids are appended to,
`$PREDIFF_GDRIVE_URL` Drive's `uc` address.

Every source's answer meets the same checks before it is used: an HTTP error, a page (HTML/XML/JSON) instead of
the file, a size other than the release's (or far below it), a SHA-256 other than the one expected, or a file that
does not convert, ends that source with one line, and the next is tried. Each source resumes only its own part
file (`downloads/<name>.<source>.part`), so bytes from two hosts are never joined.
"""
from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

from prediff.errors import DownloadError, InputError
from prediff.io import google_drive
from prediff.io.http_fetch import (FetchLimits, PageAnswer, Session, SourceError, TransferCut, check_url, fetch,
                                   one_line, sha256_of)

MIRROR_ENV = "PREDIFF_WEIGHTS_URL"
SHAREPOINT_ENV = "PREDIFF_SHAREPOINT_URL"
GDRIVE_ENV = "PREDIFF_GDRIVE_URL"
SHAREPOINT_DEFAULT = "https://hkustconnect-my.sharepoint.com/:u:/g/personal/zgaoag_connect_ust_hk/"
#: the state of the official links, added to the line of a SharePoint 404
OFFICIAL_GONE = "the official links have been gone since 2025-11"
SOURCE_KINDS = ("mirror", "official", "gdrive")
#: Request and time bounds of one download (tests shorten them).
LIMITS = FetchLimits()

T = TypeVar("T")
Progress = Callable[[str, int, Optional[int]], None]  # (file name, bytes done, total bytes or None)
Notify = Callable[[str], None]


@dataclass(frozen=True)
class PublishedFile:
    """One file of a release: its official name, where the authors put it, and what is known of its bytes.

    Attributes
    ----------
    name : str
        The official file name.
    size : int or None
        Its size in bytes when recorded; any other size is refused unless a SHA-256 is given for it.
    parameters : int
        How many weights it holds (the converted network's parameter count).
    sha256 : str or None
        Its SHA-256 once seen (hex).
    sharepoint : str
        The share id on the authors' OneDrive (appended to the SharePoint folder).
    gdrive : str
        The Google Drive file id of the official repository's history.
    """

    name: str
    size: Optional[int]
    parameters: int
    sha256: Optional[str]
    sharepoint: str
    gdrive: str

    @property
    def min_size(self) -> int:
        """Fewer bytes cannot hold the weights: 2 bytes each, even at half precision."""
        return 2 * self.parameters

    def manual(self) -> str:
        """The file, its size and the link to fetch it by hand, for a message."""
        size = f"{self.size:,} bytes" if self.size is not None else f"about {4 * self.parameters / 1e6:.0f} MB"
        return f"{self.name} ({size}, {google_drive.view_url(self.gdrive)})"


@dataclass(frozen=True)
class Source:
    """A place to fetch published files from: `kind` (mirror, official, gdrive), a label for messages, and the
    endpoint its URLs start with."""

    kind: str
    label: str
    endpoint: str

    def url(self, file: PublishedFile) -> str:
        """The first URL asked for `file` at this source."""
        if self.kind == "mirror":
            return self.endpoint.rstrip("/") + "/" + urllib.parse.quote(file.name)
        if self.kind == "official":
            return self.endpoint + file.sharepoint + "&download=1"
        return google_drive.file_url(file.gdrive, self.endpoint)


class AllSourcesFailed(DownloadError):
    """No source served a file; `summary` lists what each one did."""

    def __init__(self, file: PublishedFile, summary: str):
        super().__init__(f"no source served {file.name} ({summary})")
        self.file, self.summary = file, summary


def select_sources(choice: Optional[str] = None, url_base: Optional[str] = None) -> List[Source]:
    """The sources to try, in order: the mirror (when `url_base` or $PREDIFF_WEIGHTS_URL names one), SharePoint,
    Google Drive; only `choice` when given."""
    if choice is not None and choice not in SOURCE_KINDS:
        raise InputError(f"unknown source {choice!r}; valid: {', '.join(SOURCE_KINDS)}")
    mirror = url_base or os.environ.get(MIRROR_ENV) or None
    found = []
    if mirror:
        found.append(Source("mirror", "the mirror", mirror))
    found.append(Source("official", "SharePoint", os.environ.get(SHAREPOINT_ENV) or SHAREPOINT_DEFAULT))
    found.append(Source("gdrive", "Google Drive", os.environ.get(GDRIVE_ENV) or google_drive.DEFAULT_ENDPOINT))
    if choice == "mirror" and not mirror:
        raise InputError(f"--source mirror needs a mirror: --url-base URL or ${MIRROR_ENV}")
    settings = {"mirror": f"--url-base / ${MIRROR_ENV}", "official": f"${SHAREPOINT_ENV}", "gdrive": f"${GDRIVE_ENV}"}
    chosen = [s for s in found if choice is None or s.kind == choice]
    for source in chosen:
        try:
            check_url(source.endpoint)
        except DownloadError as exc:
            raise InputError(f"{settings[source.kind]}: {exc}") from None
    return chosen


def part_path(downloads: Path, file: PublishedFile, source: Source) -> Path:
    """Where `source`'s transfer of `file` is kept until it is complete and checked."""
    return downloads / f"{file.name}.{source.kind}.part"


def _download(source: Source, file: PublishedFile, part: Path, size: Optional[int], progress, session: Session,
              limits: FetchLimits) -> None:
    report = None if progress is None else (lambda done, total: progress(file.name, done, total))
    url = source.url(file)
    for _ in range(google_drive.MAX_PAGES if source.kind == "gdrive" else 1):
        try:
            fetch(url, part, report, size=size, min_size=file.min_size, limits=limits, session=session)
            return
        except PageAnswer as page:
            following = google_drive.confirmation_url(page.page, page.url) if source.kind == "gdrive" else None
            if following is None:
                raise
            try:
                check_url(following)
            except DownloadError as exc:
                raise SourceError(str(exc), reason="offered a download link that is not an http(s) URL") from None
            url = following
    raise SourceError(f"{source.label} kept answering confirmation pages for {file.name}",
                      reason="kept answering confirmation pages")


def fetch_file(file: PublishedFile, downloads: Path, sources: Sequence[Source], accept: Callable[[Path], T], *,
               size: Optional[int], sha256: Optional[str], progress: Optional[Progress] = None,
               notify: Optional[Notify] = None, limits: Optional[FetchLimits] = None) -> Tuple[Path, dict, T]:
    """Fetch `file` from the first source that serves it; returns (the checked file, its card entry, what
    `accept` returned for it).

    Parameters
    ----------
    accept : callable
        Called with the complete, size- and digest-checked file (still under its part name); an `InputError`
        from it (the file does not convert) ends this source like any other failure, and the file is deleted.
    size, sha256 :
        The exact size and digest required (either may be None).
    notify : callable
        Receives one line per source that failed before the next is tried.
    """
    limits = limits or LIMITS
    failures = []
    for i, source in enumerate(sources):
        part = part_path(downloads, file, source)
        url = source.url(file)
        try:
            try:
                _download(source, file, part, size, progress, Session(), limits)
            except TransferCut as exc:
                raise TransferCut(f"{file.name} from {source.label}: {exc}") from None
            digest = sha256_of(part)
            if sha256 is not None and digest != sha256:
                part.unlink(missing_ok=True)
                raise SourceError(f"{file.name} from {url} has SHA-256 {digest}, expected {sha256}",
                                  reason=f"sent a file with SHA-256 {digest}, not {sha256}")
            try:
                result = accept(part)
            except InputError as exc:
                part.unlink(missing_ok=True)  # complete but not these weights: it cannot be resumed into good ones
                raise SourceError(str(exc), reason=f"sent a file that is not the published network "
                                                   f"({one_line(exc)})") from None
        except SourceError as exc:
            gone = f" ({OFFICIAL_GONE})" if source.kind == "official" and exc.status == 404 else ""
            failures.append(f"{source.label} {exc.reason}{gone}")
            if notify is not None and i + 1 < len(sources):
                notify(f"{source.label} {exc.reason} for {file.name}{gone}; trying {sources[i + 1].label}…")
            continue
        for other in sources:  # a cut transfer from another host is of no use now
            if other is not source:
                part_path(downloads, file, other).unlink(missing_ok=True)
        entry = {"file": file.name, "url": url, "source": source.kind, "sha256": digest,
                 "bytes": part.stat().st_size}
        return part, entry, result
    raise AllSourcesFailed(file, "; ".join(failures))
