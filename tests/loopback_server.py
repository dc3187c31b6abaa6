"""A loopback HTTP server for the download tests: serves files from memory on 127.0.0.1 with HTTP Range support and
once-only faults, and imitates the hosts of the published weights (`FakeDrive`, a SharePoint that lost its files,
hosts that answer pages or lie about ranges). It stops with the test session (daemon threads) or on `close()`."""
import contextlib
import http.server
import secrets
import sys
import threading
import time
import urllib.parse


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # a client that stops reading (a refused size, a page) breaks the pipe: that is the test, not an error
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class Server:
    """Serves `files` (name → bytes) with Range support. Once-only faults: `cut_after` bytes of a response are sent
    and then the connection is closed; `chunk_cut` sends that many bytes as one whole chunk of a chunked body, then
    part of the next chunk, then closes; `stall` sends that many bytes and then goes quiet for a second.

    `routes` maps a path prefix to `handler(request, parsed_url)`, which answers the request itself (see
    `FakeDrive`, `page_route`, `lying_range_route`); other paths are `/<quirk>/<file>` as before."""

    def __init__(self, files, routes=None):
        self.files, self.cut_after, self.chunk_cut, self.stall, self.requests = files, None, None, None, []
        self.routes = dict(routes or {})
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _close(self):
                self.wfile.flush()
                self.connection.shutdown(2)

            def send_page(self, status, html, headers=()):
                body = html.encode() if isinstance(html, str) else html
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                server.requests.append({**dict(self.headers), "path": self.path})
                parsed = urllib.parse.urlsplit(self.path)
                for prefix, route in server.routes.items():
                    if parsed.path.startswith(prefix):
                        route(self, parsed)
                        return
                quirk, _, name = self.path.lstrip("/").rpartition("/")
                if quirk == "garbage":
                    self.wfile.write(b"HELLO THERE\r\n\r\n")
                    self._close()
                    return
                if quirk == "redirect-ftp":
                    self.send_response(302)
                    self.send_header("Location", f"ftp://127.0.0.1:1/{name}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.serve_body(body, quirk)

            def serve_body(self, body, quirk=""):
                """`body` with Range support and the once-only faults."""
                if server.chunk_cut is not None:
                    cut, server.chunk_cut = server.chunk_cut, None
                    rest = len(body) - cut
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                    self.wfile.write(b"%x\r\n" % cut + body[:cut] + b"\r\n")
                    self.wfile.write(b"%x\r\n" % rest + body[cut:cut + min(10, rest - 1)])
                    self._close()
                    return
                start = 0
                if "Range" in self.headers:
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    payload = body[start:]
                    self.send_response(206)
                    if quirk == "whole206":  # ignores the range, but says so
                        payload = body
                        self.send_header("Content-Range", f"bytes 0-{len(body) - 1}/{len(body)}")
                    elif quirk == "bare206":  # ignores the range and says nothing
                        payload = body
                    elif quirk == "shifted206":  # answers a range that starts elsewhere
                        payload = body[start - 5:]
                        self.send_header("Content-Range", f"bytes {start - 5}-{len(body) - 1}/{len(body)}")
                    elif quirk == "overrun206":  # sends more than its Content-Range announces
                        payload = body[start:] + b"EXTRA BYTES"
                        self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                    else:
                        self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    payload = body
                    self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if server.cut_after is not None:
                    payload, server.cut_after = payload[:server.cut_after], None
                    self.wfile.write(payload)
                    self._close()
                    return
                if server.stall is not None:
                    stall, server.stall = server.stall, None
                    self.wfile.write(payload[:stall])
                    self.wfile.flush()
                    time.sleep(1.0)  # longer than the client's timeout in the test
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = _HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def page_route(html, status=200):
    """A route that answers every request with the page `html` (a host's error page served with 200)."""

    def route(request, parsed):
        request.send_page(status, html)

    return route


def lying_range_route(body, total=999_999_999_999):
    """A route that answers every request with 206, `Content-Range: bytes 0-N/total` and the whole body, whatever
    range was asked for."""

    def route(request, parsed):
        request.send_response(206)
        request.send_header("Content-Range", f"bytes 0-{len(body) - 1}/{total}")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return route


def trickle_route(body, delay, header_delay=0.0):
    """A route that sends its status line after `header_delay` seconds, then `body` one byte every `delay`
    seconds (a server that never quite stops)."""

    def route(request, parsed):
        time.sleep(header_delay)
        request.send_response(200)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        try:
            for i in range(len(body)):
                request.wfile.write(body[i:i + 1])
                request.wfile.flush()
                time.sleep(delay)
        except OSError:
            pass

    return route


_DRIVE_PAGE = """<!DOCTYPE html><html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"/>
<title>Google Drive - Virus scan warning</title><style>.uc-main{{padding-top:50px}}</style></head>
<body><div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive can't scan this file for
viruses.</p><p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id={id}">{name}</a>
({size})</span> is too large for Google to scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="{action}" method="get"><input type="submit" id="uc-download-link"
class="goog-inline-block jfk-button jfk-button-action" value="Download anyway"/><input type="hidden" name="id"
value="{id}"><input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t">
<input type="hidden" name="uuid" value="{uuid}"></form></div></div></body></html>"""


class FakeDrive:
    """Google Drive's large-file download on the loopback server (mount with `routes`):
    `GET {prefix}uc?export=download&id=ID` answers 200 with the "can't scan this file for viruses" page, whose form
    points to `{prefix}download` with hidden `id`, `export`, `confirm`, `uuid` (a fresh uuid each time), and sets a
    cookie. `{prefix}download` serves the file (Range, once-only faults of the server) only with the form's
    parameters of a page it issued and that page's cookie; otherwise it answers the page again."""

    def __init__(self, files_by_id, prefix="/drive/"):
        self.files, self.prefix = files_by_id, prefix  # id → (name, bytes)
        self.issued = {}  # uuid → (id, cookie value)
        self.served = []  # (id, Range header or None) of every file response

    def routes(self):
        return {self.prefix + "uc": self._page, self.prefix + "download": self._download}

    def _interstitial(self, request, file_id):
        name, body = self.files[file_id]
        uuid, token = secrets.token_hex(8), secrets.token_hex(6)
        self.issued[uuid] = (file_id, token)
        html = _DRIVE_PAGE.format(id=file_id, name=name, size=f"{len(body) // 1000}k", uuid=uuid,
                                  action=self.prefix + "download")
        request.send_page(200, html, [("Set-Cookie", f"download_warning_{file_id}={token}; Path=/; HttpOnly")])

    def _page(self, request, parsed):
        query = dict(urllib.parse.parse_qsl(parsed.query))
        if query.get("export") != "download" or query.get("id") not in self.files:
            request.send_page(404, "<html><head><title>Not Found</title></head><body>404</body></html>")
            return
        self._interstitial(request, query["id"])

    def _download(self, request, parsed):
        query = dict(urllib.parse.parse_qsl(parsed.query))
        file_id, uuid = query.get("id"), query.get("uuid")
        issued = self.issued.get(uuid)
        cookie = request.headers.get("Cookie") or ""
        confirmed = (issued is not None and issued[0] == file_id and query.get("confirm") == "t"
                     and query.get("export") == "download"
                     and f"download_warning_{file_id}={issued[1]}" in cookie)
        if not confirmed or file_id not in self.files:
            self._interstitial(request, file_id) if file_id in self.files else request.send_page(
                404, "<html><head><title>Not Found</title></head></html>")
            return
        self.served.append((file_id, request.headers.get("Range")))
        request.serve_body(self.files[file_id][1])


@contextlib.contextmanager
def weight_hosts(files, monkeypatch, home, routes=None):
    """The default sources of `prediff download weights` on 127.0.0.1, as every download test meets them: SharePoint
    (`/sharepoint/`, every link 404), Google Drive (`/drive/`, with its confirmation page; `server.drive`) and the
    files themselves under any other folder (`/mirror/<name>`). `files`: name → (Drive id, bytes); `routes` are
    added; `$PREDIFF_HOME` is `home` and no `$PREDIFF_WEIGHTS_URL` mirror is configured. Yields the server."""
    drive = FakeDrive({file_id: (name, body) for name, (file_id, body) in files.items()})
    server = Server({name: body for name, (_, body) in files.items()}, routes={**drive.routes(), **(routes or {})})
    server.drive = drive
    monkeypatch.setenv("PREDIFF_HOME", str(home))
    monkeypatch.delenv("PREDIFF_WEIGHTS_URL", raising=False)
    monkeypatch.setenv("PREDIFF_SHAREPOINT_URL", server.url + "sharepoint/")
    monkeypatch.setenv("PREDIFF_GDRIVE_URL", server.url + "drive/uc")
    try:
        yield server
    finally:
        server.close()
