"""Reading Google Drive's confirmation page: the form (whatever its parameters), the older link, or nothing."""
import urllib.parse

from prediff.io.google_drive import confirmation_url, file_url, view_url

PAGE = "https://drive.google.com/uc?export=download&id=ABC"


def _query(url):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def test_the_form_with_all_its_inputs():
    page = (b'<html><head><title>Google Drive - Virus scan warning</title></head><body><form id="download-form" '
            b'action="https://drive.usercontent.google.com/download" method="get"><input type="submit" '
            b'value="Download anyway"/><input type="hidden" name="id" value="ABC"><input type="hidden" '
            b'name="export" value="download"><input type="hidden" name="confirm" value="t"><input type="hidden" '
            b'name="uuid" value="1f2e&amp;3d"><input type="hidden" name="at" value="new-token"></form></body></html>')
    url = confirmation_url(page, PAGE)
    assert url.startswith("https://drive.usercontent.google.com/download?")
    assert _query(url) == {"id": "ABC", "export": "download", "confirm": "t", "uuid": "1f2e&3d", "at": "new-token"}


def test_a_relative_action_and_another_form_on_the_page():
    page = (b'<form action="/search" method="get"><input name="q"></form>'
            b'<form action="download" method="GET"><input type="hidden" name="confirm" value="xyz">'
            b'<input type="hidden" name="id" value="ABC"></form>')
    assert confirmation_url(page, "http://127.0.0.1:8/drive/uc?id=ABC") == \
        "http://127.0.0.1:8/drive/download?confirm=xyz&id=ABC"


def test_the_older_page_with_a_confirm_link():
    page = (b'<a id="uc-download-link" href="/uc?export=download&amp;confirm=Zx_9&amp;id=ABC">Download anyway</a>')
    assert confirmation_url(page, PAGE) == "https://drive.google.com/uc?export=download&confirm=Zx_9&id=ABC"


def test_pages_without_a_way_on():
    quota = (b"<html><head><title>Google Drive - Quota exceeded</title></head><body>Too many users have viewed or "
             b"downloaded this file recently.</body></html>")
    assert confirmation_url(quota, PAGE) is None
    assert confirmation_url(b"<form action='/x' method='post'><input name='confirm' value='t'></form>", PAGE) is None
    assert confirmation_url(b"\xff\xfe<<<not html", PAGE) is None


def test_urls():
    assert file_url("A B") == "https://drive.google.com/uc?export=download&id=A+B"
    assert file_url("X", "http://127.0.0.1:9/drive/uc") == "http://127.0.0.1:9/drive/uc?export=download&id=X"
    assert view_url("X") == "https://drive.google.com/file/d/X/view"
