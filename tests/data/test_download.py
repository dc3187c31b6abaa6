"""`prediff download sevir-lr` against an HTTP server on 127.0.0.1 that the test starts itself.

Besides a well-behaved server with Range support, the server can misbehave per URL prefix (`/<quirk>/<file>`):
cut a chunked body, answer a range with the whole file, with a shifted range or with more than it announced,
redirect to ftp://, or answer garbage instead of HTTP.
"""
import io
import shutil
import zipfile

import pytest
from loopback_server import Server
from typer.testing import CliRunner

from prediff.cli.app import app
from prediff.data.download import download_sevir_lr
from prediff.errors import DownloadError
from prediff.io.http_fetch import fetch


def _zip_tree(root, wrap="sevir_lr"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                z.write(path, f"{wrap}/{path.relative_to(root)}" if wrap else str(path.relative_to(root)))
    return buf.getvalue()


def _zip_entries(entries):
    """A tiny zip from (name or ZipInfo, bytes) pairs, names kept verbatim (`..`, absolute, symlinks)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


def _symlink(name, target):
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16  # S_IFLNK: unzip would create a link to `target`
    return info, target


@pytest.fixture(scope="module")
def server(tmp_path_factory, synthetic_root):
    small = tmp_path_factory.mktemp("zip") / "small"
    shutil.copytree(synthetic_root, small)
    good = _zip_tree(small)
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF  # flips a byte inside a stored member: its CRC no longer matches
    catalog = (small / "CATALOG.csv").read_bytes()[:200]
    srv = Server({"sevir_lr.zip": good, "flat.zip": _zip_tree(small, wrap=None), "corrupt.zip": bytes(corrupt),
                  "junk.zip": b"not a zip at all",
                  # valid zips with the wrong layout
                  "nocatalog.zip": _zip_entries([("sevir_lr/README.txt", b"hello")]),
                  "noh5.zip": _zip_entries([("sevir_lr/CATALOG.csv", catalog)]),
                  # entries that would land outside the extraction folder
                  "slip.zip": _zip_entries([("CATALOG.csv", catalog), ("../evil.txt", b"pwned")]),
                  "absolute.zip": _zip_entries([("CATALOG.csv", catalog), ("/tmp/prediff-evil.txt", b"pwned")]),
                  "link.zip": _zip_entries([("CATALOG.csv", catalog), _symlink("data", "/etc")])})
    srv.tree = small
    yield srv
    srv.close()


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir())


def _same_tree(got, want):
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return files(got) == files(want)


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
                                           ("missing.zip", "HTTP 404"), ("garbage/sevir_lr.zip", "cannot reach"),
                                           ("nocatalog.zip", "CATALOG.csv"), ("noh5.zip", "data/vil"),
                                           ("slip.zip", r"unsafe entry \.\./evil\.txt"),
                                           ("absolute.zip", "unsafe entry /tmp/prediff-evil.txt"),
                                           ("link.zip", "symbolic link"),
                                           ("overrun206/sevir_lr.zip", "more bytes than it announced")])
def test_failures_leave_nothing(tmp_path, server, name, message):
    """A complete archive that cannot be used leaves no .part (it cannot be resumed into a good one), no staging
    folder, no destination, and nothing outside the staging folder."""
    dest = tmp_path / "sevirlr"
    if name.startswith("overrun206/"):  # a resumed transfer, so that the server is asked for a range
        (tmp_path / "sevirlr.zip.part").write_bytes(server.files["sevir_lr.zip"][:1000])
    with pytest.raises(DownloadError, match=message) as info:
        download_sevir_lr(dest, url=server.url + name)
    assert "\n" not in str(info.value)
    assert _leftovers(tmp_path) == []
    assert not (tmp_path.parent / "evil.txt").exists()


def test_chunked_transfer_cut_keeps_what_arrived(tmp_path, server):
    """A chunked body cut mid-way is one line, keeps every body byte that arrived and resumes after them."""
    dest, good = tmp_path / "sevirlr", server.files["sevir_lr.zip"]
    server.chunk_cut = len(good) // 3
    with pytest.raises(DownloadError, match="interrupted at") as info:
        download_sevir_lr(dest, url=server.url + "sevir_lr.zip")
    assert "\n" not in str(info.value) and "run the command again to resume" in str(info.value)
    part = tmp_path / "sevirlr.zip.part"
    got = len(good) // 3 + 10  # the first chunk and 10 bytes of the second
    assert not dest.exists() and part.read_bytes() == good[:got]
    server.requests.clear()
    download_sevir_lr(dest, url=server.url + "sevir_lr.zip")
    assert server.requests[0].get("Range") == f"bytes={got}-"
    assert _same_tree(dest, server.tree) and _leftovers(tmp_path) == ["sevirlr"]


def test_timeout_mid_body_keeps_what_arrived(tmp_path, server):
    good = server.files["sevir_lr.zip"]
    part = tmp_path / "x.zip.part"
    server.stall = 1000
    with pytest.raises(DownloadError, match="interrupted at 1000 of .*timed out"):
        fetch(server.url + "sevir_lr.zip", part, timeout=0.3)
    assert part.read_bytes() == good[:1000]


@pytest.mark.parametrize("quirk", ["whole206", "bare206", "shifted206"])
def test_range_answered_wrongly_restarts(tmp_path, server, quirk):
    """A 206 whose body does not start where the part file ends (the whole file again, with or without a
    Content-Range; a shifted range) must not be appended: the file is rewritten from byte 0."""
    dest, good = tmp_path / "sevirlr", server.files["sevir_lr.zip"]
    (tmp_path / "sevirlr.zip.part").write_bytes(good[:len(good) // 3])
    server.requests.clear()
    seen = []
    download_sevir_lr(dest, url=server.url + f"{quirk}/sevir_lr.zip", progress=lambda done, total: seen.append(total))
    assert server.requests[0].get("Range") == f"bytes={len(good) // 3}-"
    if quirk != "whole206":  # the body could not be placed: the whole file was asked for again
        assert len(server.requests) == 2 and "Range" not in server.requests[1]
    assert set(seen) == {len(good)}  # the progress total is the file's size, not old + body
    assert _same_tree(dest, server.tree) and _leftovers(tmp_path) == ["sevirlr"]


def test_part_longer_than_the_file_restarts(tmp_path, server):
    """416 with `bytes */TOTAL` smaller than the part: the part is not this file, so it starts over."""
    dest = tmp_path / "sevirlr"
    (tmp_path / "sevirlr.zip.part").write_bytes(b"x" * (len(server.files["sevir_lr.zip"]) + 1000))
    download_sevir_lr(dest, url=server.url + "sevir_lr.zip")
    assert _same_tree(dest, server.tree) and _leftovers(tmp_path) == ["sevirlr"]


def test_not_enough_space_keeps_the_archive(tmp_path, server, monkeypatch):
    """An archive larger than the free space is refused before extraction; the complete archive is kept, and the
    next run (a 416 for the complete part) installs it without downloading again."""
    dest, good = tmp_path / "sevirlr", server.files["sevir_lr.zip"]
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=10))
    with pytest.raises(DownloadError, match="only 10 bytes are free") as info:
        download_sevir_lr(dest, url=server.url + "sevir_lr.zip")
    assert "\n" not in str(info.value)
    assert _leftovers(tmp_path) == ["sevirlr.zip.part"] and (tmp_path / "sevirlr.zip.part").read_bytes() == good
    monkeypatch.undo()
    server.requests.clear()
    download_sevir_lr(dest, url=server.url + "sevir_lr.zip")
    assert len(server.requests) == 1 and server.requests[0].get("Range") == f"bytes={len(good)}-"
    assert _same_tree(dest, server.tree) and _leftovers(tmp_path) == ["sevirlr"]


@pytest.mark.parametrize("kind", ["file", "ftp", "redirect-ftp", "no-scheme"])
def test_only_http_urls(tmp_path, tmp_path_factory, server, kind):
    local = tmp_path_factory.mktemp("local") / "sevir_lr.zip"
    local.write_bytes(server.files["sevir_lr.zip"])
    url = {"file": local.as_uri(), "ftp": "ftp://127.0.0.1:1/sevir_lr.zip",
           "redirect-ftp": server.url + "redirect-ftp/sevir_lr.zip", "no-scheme": str(local)}[kind]
    with pytest.raises(DownloadError, match="only http and https URLs are allowed") as info:
        download_sevir_lr(tmp_path / "new" / "sevirlr", url=url)
    assert "\n" not in str(info.value) and url in str(info.value)
    assert _leftovers(tmp_path) == []  # not even the parent folder was created


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
