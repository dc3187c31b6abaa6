"""One switch for graph compilation of the hot paths (train steps, EMA, sampling steps, VAE coding).

`compiled(fn)` is `mindspore.jit(fn)` unless the environment sets `PREDIFF_JIT=0`, which runs everything in
PyNative mode (slower; for debugging and for the compiled-vs-PyNative benchmarks).
"""
from __future__ import annotations

import os

import mindspore as ms


def jit_enabled() -> bool:
    return os.environ.get("PREDIFF_JIT", "1") not in ("0", "false", "no")


def compiled(fn):
    return ms.jit(fn) if jit_enabled() else fn
