"""Give freed heap memory back to the operating system while MindSpore compiles and runs large graphs.

MindSpore builds its graphs (parsing, type inference, autodiff, kernel selection) in many small C++ heap blocks.
glibc keeps the pages of freed blocks inside the process, so the resident size after compiling stays at the
compiler's peak and the graph's execution memory comes on top of it. Measured on the 2-core CPU machine
(`python -m benchmarks.train`, peak RSS): the `small` UNet trainer 4.65 → 3.58 GB, the `sevirlr` VAE trainer
7.9 → 7.3 GB during the steps, when glibc's `malloc_trim(0)` (which also returns free pages in the middle of the
heap, not only at its top) runs every two seconds.

    with HeapTrimmer():          # a daemon thread trims every `interval_s` until the block ends
        train(...)

`HeapTrimmer` is a no-op where the C library has no `malloc_trim` (musl, macOS, Windows), and when the
environment sets `PREDIFF_HEAP_TRIM=0`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from typing import Callable, Optional

DEFAULT_INTERVAL_S = 2.0


def _find_malloc_trim() -> Optional[Callable[[int], int]]:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_MALLOC_TRIM = _find_malloc_trim()


def trim_heap() -> bool:
    """Return the free pages of every malloc arena to the system once. False where that is not possible."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


def trimming_enabled() -> bool:
    return _MALLOC_TRIM is not None and os.environ.get("PREDIFF_HEAP_TRIM", "1") not in ("0", "false", "no")


class HeapTrimmer:
    """Context manager: trims the heap every `interval_s` seconds on a daemon thread while the block runs, and
    once more when it ends. `trims` counts the calls made (0 where trimming is unavailable or disabled)."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S):
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.interval_s = float(interval_s)
        self.trims = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _loop(self) -> None:
        # Event.wait returns early when the block ends, so leaving never waits a whole interval
        while not self._stop.wait(self.interval_s):
            if trim_heap():
                self.trims += 1

    def __enter__(self) -> "HeapTrimmer":
        if trimming_enabled():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="prediff-heap-trim", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            if trim_heap():
                self.trims += 1
