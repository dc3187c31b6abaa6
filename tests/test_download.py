"""`prediff download sevir-lr` against an HTTP server on 127.0.0.1 that the test starts itself."""
import http.server
import io
import shutil
import threading
import zipfile

import pytest
from typer.testing import CliRunner

from prediff_cli.cli.app import app
from prediff_cli.data.download import download_sevir_lr
from prediff_cli.errors import DownloadError


def _zip_tree(root, wrap="sevir_lr"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                z.write(path, f"{wrap}/{path.relative_to(root)}" if wrap else str(path.relative_to(root)))
    return buf.getvalue()


class Server:
    """Serves `files` (name → bytes) with Range support; `cut_after` bytes of a full response are sent and then
    the connection is closed, once."""

    def __init__(self, files):
        self.files, self.cut_after, self.requests = files, None, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(dict(self.headers))
                body = server.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if "Range" in self.headers:
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if server.cut_after is not None:
                    payload, server.cut_after = payload[:server.cut_after], None
                    self.wfile.write(payload)
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory, synthetic_root):
    small = tmp_path_factory.mktemp("zip") / "small"
    shutil.copytree(synthetic_root, small)
    good = _zip_tree(small)
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF  # flips a byte inside a stored member: its CRC no longer matches
    srv = Server({"sevir_lr.zip": good, "flat.zip": _zip_tree(small, wrap=None), "corrupt.zip": bytes(corrupt),
                  "junk.zip": b"not a zip at all"})
    yield srv
    srv.close()


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir())


def test_complete_download(tmp_path, server):
    dest = tmp_path / "sevirlr"
    count = download_sevir_lr(dest, url=server.url + "sevir_lr.zip")
    assert count > 0 and (dest / "CATALOG.csv").is_file() and list((dest / "data" / "vil").glob("*/*.h5"))
    assert _leftovers(tmp_path) == ["sevirlr"]  # no .part, no staging folder


def test_flat_archive_and_env_url(tmp_path, server, monkeypatch):
    monkeypatch.setenv("PREDIFF_SEVIR_LR_URL", server.url + "flat.zip")
    download_sevir_lr(tmp_path / "d")
    assert (tmp_path / "d" / "CATALOG.csv").is_file()


def test_cut_transfer_resumes(tmp_path, server):
    dest = tmp_path / "sevirlr"
    size = len(server.files["sevir_lr.zip"])
    server.cut_after = size // 3
    with pytest.raises(DownloadError, match="interrupted"):
        download_sevir_lr(dest, url=server.url + "sevir_lr.zip")
    part = tmp_path / "sevirlr.zip.part"
    assert not dest.exists() and part.stat().st_size == size // 3
    server.requests.clear()
    download_sevir_lr(dest, url=server.url + "sevir_lr.zip")
    assert server.requests[0].get("Range") == f"bytes={size // 3}-"
    assert (dest / "CATALOG.csv").is_file() and _leftovers(tmp_path) == ["sevirlr"]


@pytest.mark.parametrize("name, message", [("corrupt.zip", "corrupt"), ("junk.zip", "not a valid zip"),
                                           ("missing.zip", "HTTP 404")])
def test_failures_leave_nothing(tmp_path, server, name, message):
    dest = tmp_path / "sevirlr"
    with pytest.raises(DownloadError, match=message) as info:
        download_sevir_lr(dest, url=server.url + name)
    assert "\n" not in str(info.value)
    assert _leftovers(tmp_path) == []


def test_checksum_and_existing_destination(tmp_path, server):
    with pytest.raises(DownloadError, match="SHA-256"):
        download_sevir_lr(tmp_path / "a", url=server.url + "sevir_lr.zip", sha256="0" * 64)
    assert _leftovers(tmp_path) == []
    (tmp_path / "b").mkdir()
    with pytest.raises(DownloadError, match="already exists"):
        download_sevir_lr(tmp_path / "b", url=server.url + "sevir_lr.zip")


def test_unreachable_server(tmp_path):
    with pytest.raises(DownloadError, match="cannot reach"):
        download_sevir_lr(tmp_path / "x", url="http://127.0.0.1:9/sevir_lr.zip")


def test_cli(tmp_path, server):
    runner = CliRunner()
    ok = runner.invoke(app, ["download", "sevir-lr", "--dest", str(tmp_path / "d"), "--url",
                             server.url + "sevir_lr.zip"])
    assert ok.exit_code == 0, ok.output
    assert "installed SEVIR-LR" in ok.output
    bad = runner.invoke(app, ["download", "sevir-lr", "--dest", str(tmp_path / "e"), "--url",
                              server.url + "missing.zip"])
    assert bad.exit_code == 1 and "HTTP 404" in bad.output and "Traceback" not in bad.output
    syn = runner.invoke(app, ["download", "synthetic", "--dest", str(tmp_path / "s"), "--events", "2", "--seed", "4"])
    assert syn.exit_code == 0 and (tmp_path / "s" / "CATALOG.csv").is_file()
    again = runner.invoke(app, ["download", "synthetic", "--dest", str(tmp_path / "s")])
    assert again.exit_code == 1 and "already exists" in again.output
