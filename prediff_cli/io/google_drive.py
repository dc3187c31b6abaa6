"""Google Drive's large-file confirmation page, read rather than guessed.

A public Drive file is fetched from `https://drive.google.com/uc?export=download&id=ID`. For a file too large for
Drive's virus scan (over ~100 MB) the answer is not the file but an HTML page ("Google Drive can't scan this file
for viruses") whose "Download anyway" button submits a form to the download host with the parameters that confirm
the request (today `id`, `export`, `confirm`, `uuid`, as hidden inputs; earlier pages put a `confirm=` token in a
link and a `download_warning` cookie). `confirmation_url` reads whichever the page holds — the form's action with
all its inputs, else a link carrying `confirm=` — so a new version of the page with other parameter names still
works; the caller keeps the page's cookies (`http_fetch.Session`).
"""
from __future__ import annotations

import html.parser
import urllib.parse
from typing import Dict, List, Optional

DEFAULT_ENDPOINT = "https://drive.google.com/uc"
#: Pages followed for one file before giving up (the page, then perhaps one more notice).
MAX_PAGES = 3


def file_url(file_id: str, endpoint: str = DEFAULT_ENDPOINT) -> str:
    """The first URL to ask for Drive file `file_id` (`endpoint`: Drive's `uc` address, or a stand-in)."""
    separator = "&" if "?" in endpoint else "?"
    return f"{endpoint}{separator}{urllib.parse.urlencode({'export': 'download', 'id': file_id})}"


def view_url(file_id: str) -> str:
    """The page a person opens in a browser to download Drive file `file_id` by hand."""
    return f"https://drive.google.com/file/d/{file_id}/view"


class _Forms(html.parser.HTMLParser):
    """Collects every form (attributes and named inputs) and every link of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: List[dict] = []
        self.links: List[str] = []
        self._open: Optional[dict] = None

    def handle_starttag(self, tag, attrs):
        attrs = {k.lower(): (v or "") for k, v in attrs}
        if tag == "form":
            self._open = {"attrs": attrs, "inputs": {}}
            self.forms.append(self._open)
        elif tag == "input" and self._open is not None and attrs.get("name"):
            if attrs.get("type", "text").lower() not in ("submit", "button", "image", "reset"):
                self._open["inputs"][attrs["name"]] = attrs.get("value", "")
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = None


def _with_query(url: str, params: Dict[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def confirmation_url(page: bytes, page_url: str) -> Optional[str]:
    """The download URL that a Drive confirmation page leads to, or None when the page offers none (a quota
    notice, a sign-in page, an error).

    Parameters
    ----------
    page : bytes
        The HTML page (UTF-8).
    page_url : str
        The address that sent it; relative actions and links are resolved against it.
    """
    parser = _Forms()
    try:
        parser.feed(page.decode("utf-8", "replace"))
        parser.close()
    except Exception:  # noqa: BLE001 - html.parser tolerates almost anything; a page it cannot read offers nothing
        return None

    def rank(form: dict) -> int:
        attrs, inputs = form["attrs"], form["inputs"]
        return 2 * (attrs.get("id") == "download-form") + ("confirm" in inputs)

    forms = [f for f in parser.forms if f["attrs"].get("method", "get").lower() == "get" and
             ("confirm" in f["inputs"] or f["attrs"].get("id") == "download-form")]
    if forms:
        form = max(forms, key=rank)
        action = urllib.parse.urljoin(page_url, form["attrs"].get("action") or page_url)
        return _with_query(action, form["inputs"])
    for link in parser.links:
        target = urllib.parse.urljoin(page_url, link)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
        if "confirm" in query:
            return target
    return None
