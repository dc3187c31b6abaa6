"""prediff.heap: returning freed heap pages to the system while graphs compile."""
import threading
import time

import numpy as np
import pytest

from prediff import heap

needs_trim = pytest.mark.skipif(heap._MALLOC_TRIM is None, reason="the C library has no malloc_trim")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@needs_trim
def test_trim_heap_returns_freed_blocks_to_the_system():
    # 2000 blocks of 100 KB stay below glibc's mmap threshold, so they live in the heap; a block allocated after
    # them keeps free() from shrinking the heap's top, so freeing them leaves the pages resident until a trim
    heap.trim_heap()
    blocks = [np.ones(25_000, np.float32) for _ in range(2000)]
    pin = np.ones(25_000, np.float32)
    del blocks
    before = _rss_mb()
    assert heap.trim_heap() is True
    assert before - _rss_mb() > 50
    del pin


@needs_trim
def test_trimmer_trims_while_the_block_runs_and_stops_after(monkeypatch):
    monkeypatch.delenv("PREDIFF_HEAP_TRIM", raising=False)
    calls = []
    monkeypatch.setattr(heap, "trim_heap", lambda: calls.append(time.monotonic()) or True)
    with heap.HeapTrimmer(interval_s=0.02) as trimmer:
        time.sleep(0.3)
        assert any(t.name == "prediff-heap-trim" for t in threading.enumerate())
    during = len(calls)
    assert during >= 3 and trimmer.trims == during  # periodic trims plus the one at the end
    time.sleep(0.1)
    assert len(calls) == during
    assert not any(t.name == "prediff-heap-trim" for t in threading.enumerate())


def test_trimmer_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("PREDIFF_HEAP_TRIM", "0")
    calls = []
    monkeypatch.setattr(heap, "trim_heap", lambda: calls.append(1) or True)
    with heap.HeapTrimmer(interval_s=0.01) as trimmer:
        time.sleep(0.1)
    assert calls == [] and trimmer.trims == 0


def test_trimmer_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        heap.HeapTrimmer(interval_s=0)
