"""The bf16 number format as the kernels use it: rounding float32 to bf16 bits and back, the CPU's support for
bf16 dot products, and the bf16 weight copy a layer keeps (see `precision` for when bf16 runs)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: `PREDIFF_BF16_EMULATE=1`: run the bf16 path with an AVX2 emulation of the bf16 dot product
EMULATE_ENV = "PREDIFF_BF16_EMULATE"


def bf16_round(values) -> np.ndarray:
    """float32 values → bf16 bits (uint16), round to nearest even; NaN stays NaN, overflow rounds to infinity.
    The same rounding as the kernels' packers."""
    u = np.ascontiguousarray(values, np.float32).view(np.uint32)
    rounded = ((u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), rounded)


def bf16_to_float32(bits) -> np.ndarray:
    """bf16 bits (uint16) → the float32 values they stand for (exact)."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def cpu_has_bf16() -> bool:
    """Whether /proc/cpuinfo reports AVX512_BF16 (with AVX-512F)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return {"avx512f", "avx512_bf16"} <= flags


def emulated() -> bool:
    """Whether `PREDIFF_BF16_EMULATE=1` asks for the emulated bf16 dot product."""
    return os.environ.get(EMULATE_ENV, "") == "1"


def keep_bf16_weight(cell, layout=None) -> None:
    """Give `cell` (or refresh) `weight_bf16`: a non-trainable Parameter with its `weight` rounded to bf16 (uint16
    bits, or `layout(bits)` — a kernel's packed form of them) — the weight conversion done once per
    `set_precision`, not per call."""
    from mindspore import Parameter, Tensor

    bits = bf16_round(cell.weight.asnumpy())
    value = Tensor(bits if layout is None else layout(bits))
    existing = getattr(cell, "weight_bf16", None)
    if existing is not None and existing.shape == value.shape and existing.dtype == value.dtype:
        existing.set_data(value)
    else:
        cell.weight_bf16 = Parameter(value, name=f"{cell.weight.name}_bf16", requires_grad=False)
