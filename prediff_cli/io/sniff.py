"""What the first bytes of a body say it is, when a binary file (a zip archive, a PyTorch checkpoint) was expected.

Download hosts answer a missing or protected file with a page instead of an error status: Google Drive's "can't scan
this file for viruses" page, a SharePoint sign-in page, an S3 XML error, a JSON error object. Saved under the file's
name these pass for a download; `markup_kind` recognises them from the first bytes so they are refused before they
are written, and `describe` names what came instead in one line.
"""
from __future__ import annotations

import re
from typing import Optional

#: How many leading bytes `markup_kind` needs to decide (fewer are fine at the end of a body).
SNIFF_BYTES = 512

_BOM = b"\xef\xbb\xbf"
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)


def markup_kind(head: bytes) -> Optional[str]:
    """"an HTML page", "an XML document" or "a JSON document" when `head` (a body's first bytes) starts like one,
    else None. Binary formats never start with `<`, `{` or `[` after optional whitespace: a zip archive starts with
    `PK`, a pickle with 0x80."""
    text = head[len(_BOM):] if head.startswith(_BOM) else head
    text = text.lstrip(b" \t\r\n")
    if text[:1] == b"<":
        lowered = text[:SNIFF_BYTES].lower()
        if lowered.startswith(b"<?xml") and b"<html" not in lowered:
            return "an XML document"
        return "an HTML page"
    if text[:1] in (b"{", b"["):
        return "a JSON document"
    return None


def describe(body: bytes, kind: str, limit: int = 80) -> str:
    """`kind` with the page's title or the document's first characters, on one line: 'an HTML page ("Google Drive -
    Virus scan warning")'."""
    match = _TITLE.search(body[:65536])
    text = match.group(1) if match else (body[:200] if kind != "an HTML page" else b"")
    shown = " ".join(text.decode("utf-8", "replace").split())
    shown = "".join(c if c.isprintable() else "?" for c in shown)
    if len(shown) > limit:
        shown = shown[:limit] + "..."
    return f'{kind} ("{shown}")' if shown else kind
