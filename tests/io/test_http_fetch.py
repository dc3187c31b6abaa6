"""The resumable fetcher against hostile servers on 127.0.0.1: every loop over network answers ends, in requests and
in time, whatever the server says; pages and wrong sizes are refused before they are written."""
import time

import pytest
from loopback_server import Server, lying_range_route, page_route, trickle_route

from prediff.io.http_fetch import FetchLimits, PageAnswer, SourceError, TransferCut, fetch


@pytest.fixture
def server():
    body = bytes(range(256)) * 20  # 5,120 bytes, starts with 0x00: no page
    srv = Server({"file.bin": body}, routes={
        "/lying/": lying_range_route(body[:5056]),
        "/error-page/": page_route("<!DOCTYPE html><html><head><title>Sign in to your account</title></head>"
                                   "<body>Sorry, something went wrong.</body></html>"),
        "/json/": page_route('{"error": {"code": 404, "message": "itemNotFound"}}'),
        "/trickle/": trickle_route(b"\x01" * 200, delay=0.05),
        "/slow-headers/": trickle_route(b"\x01" * 10, delay=0.0, header_delay=3.0),
    })
    srv.body = body
    yield srv
    srv.close()


def test_a_lying_content_range_ends_in_bounded_requests_and_time(tmp_path, server):
    """206 with `bytes 0-5055/999999999999` and the whole body to every request: before, 2,720 requests in 15 s and
    no end (only restarts from zero were counted); now the answers that rewrite received bytes are counted too."""
    part = tmp_path / "x.part"
    start = time.monotonic()
    with pytest.raises(SourceError, match="inconsistently") as info:
        fetch(server.url + "lying/file.bin", part, limits=FetchLimits(max_seconds=30))
    assert "\n" not in str(info.value)
    assert len(server.requests) <= 8 and time.monotonic() - start < 10
    assert not part.exists()


def test_a_lying_total_is_refused_at_once_when_the_size_is_known(tmp_path, server):
    with pytest.raises(SourceError, match="announces 999,999,999,999 bytes; the file is 5,056 bytes"):
        fetch(server.url + "lying/file.bin", tmp_path / "x.part", size=5056)
    assert len(server.requests) == 1 and not (tmp_path / "x.part").exists()


def test_request_bound_holds_even_for_consistent_short_ranges(tmp_path, server):
    """A server that answers each range with a short, correct piece still gets at most `max_requests` requests."""
    from loopback_server import Server as _Server

    body = bytes(1000)

    def piece(request, parsed):
        start = int((request.headers.get("Range") or "bytes=0-").split("=")[1].split("-")[0])
        request.send_response(206)
        request.send_header("Content-Range", f"bytes {start}-{start}/{len(body) * 1000}")
        request.send_header("Content-Length", "1")
        request.end_headers()
        request.wfile.write(b"\x01")

    srv = _Server({}, routes={"/piece/": piece})
    try:
        with pytest.raises(SourceError, match="inconsistently"):
            fetch(srv.url + "piece/f", tmp_path / "p.part", limits=FetchLimits(max_requests=5))
        assert len(srv.requests) == 5
    finally:
        srv.close()


def test_a_trickling_body_stops_at_the_rate_floor_and_keeps_its_bytes(tmp_path, server):
    part = tmp_path / "t.part"
    start = time.monotonic()
    with pytest.raises(TransferCut, match="bytes/s") as info:
        fetch(server.url + "trickle/f", part, limits=FetchLimits(min_rate=1000, window=0.5))
    assert time.monotonic() - start < 5 and "run the command again to resume" in str(info.value)
    assert 0 < part.stat().st_size < 200


def test_the_whole_fetch_has_a_deadline_even_while_headers_trickle(tmp_path, server):
    """A server that sits on its headers is cut by the watchdog at `max_seconds`, not after its own delay."""
    start = time.monotonic()
    with pytest.raises(TransferCut, match="stopped after 0.5 s"):
        fetch(server.url + "slow-headers/f", tmp_path / "h.part", limits=FetchLimits(max_seconds=0.5, timeout=30))
    assert time.monotonic() - start < 2.5


@pytest.mark.parametrize("route, shown", [("error-page", 'an HTML page ("Sign in to your account")'),
                                          ("json", 'a JSON document ("{"error": {"code": 404')])
def test_pages_are_never_written(tmp_path, server, route, shown):
    part = tmp_path / "p.part"
    with pytest.raises(PageAnswer) as info:
        fetch(server.url + f"{route}/file.bin", part)
    assert shown in str(info.value) and "\n" not in str(info.value)
    assert not part.exists()


def test_a_page_answer_to_a_resumed_range_leaves_the_part_alone(tmp_path, server):
    part = tmp_path / "p.part"
    part.write_bytes(b"\x00" * 100)
    with pytest.raises(PageAnswer):
        fetch(server.url + "error-page/file.bin", part)
    assert part.read_bytes() == b"\x00" * 100


def test_sizes_known_to_the_caller(tmp_path, server):
    with pytest.raises(SourceError, match="announces 5,120 bytes; the file is at least 10,000 bytes"):
        fetch(server.url + "file.bin", tmp_path / "a.part", min_size=10_000)
    with pytest.raises(SourceError, match="announces 5,120 bytes; the file is 5,121 bytes"):
        fetch(server.url + "file.bin", tmp_path / "b.part", size=5121)
    assert not list(tmp_path.iterdir())
    fetch(server.url + "file.bin", tmp_path / "c.part", size=5120, min_size=5000)
    assert (tmp_path / "c.part").read_bytes() == server.body
