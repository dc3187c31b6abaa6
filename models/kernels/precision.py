"""The compute precision of the networks' linear layers and 3×3 convolutions in inference: float32, or bf16
operands with float32 accumulation on CPUs that have AVX512_BF16.

In bf16, the layers that run prediff's own kernels (`kernels.Dense`, `Conv3d`, `Conv2d`, `UpsampleConv2d`) round
their input activations to bf16 (round to nearest even) while packing them for the product, multiply by a bf16
copy of their weight made once when the precision is set, and accumulate in float32 (`_mm512_dpbf16_ps`). Their
outputs, the normalisations, softmax and attention, the activations, the solver state and everything else stay
float32. Training never uses bf16 (a layer in training mode computes in float32).

Where bf16 may run is decided at run time, like the AVX-512 tiles: the kernel library is built, the CPU reports
`avx512_bf16` (in /proc/cpuinfo), `PREDIFF_KERNEL_BF16` is not 0 — and a first-use self-check passes: the bf16 GEMM
and convolution are run on small problems and compared with float32; if they disagree beyond what bf16 rounding
explains, bf16 is disabled with one warning (logger `prediff_models.kernels`) and `bf16_support()` says why.
`PREDIFF_BF16_EMULATE=1` runs the same bf16 path with an AVX2 emulation of the bf16 dot product on any CPU (slower;
for testing the path, and for measuring bf16's accuracy on CPUs without the instruction).

`resolve_precision("auto" | "fp32" | "bf16")` gives the precision to run; `apply_precision(precision, *networks)`
switches every eligible layer.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import numpy as np

from .bf16 import EMULATE_ENV, bf16_round, bf16_to_float32, cpu_has_bf16, emulated, keep_bf16_weight  # noqa: F401
from .conv import bf16_conv_op
from .dense import bf16_dense_op, pack_bf16_panels
from .library import library_path, unavailable_reason

PRECISIONS = ("auto", "fp32", "bf16")
DISABLE_ENV = "PREDIFF_KERNEL_BF16"
#: the self-check's bar: RMS of (bf16 − float32) relative to the RMS of the float32 result. bf16 rounding of both
#: operands gives about 3e-3 on its problems; a broken kernel gives O(1).
SELF_CHECK_TOLERANCE = 2e-2

logger = logging.getLogger("prediff_models.kernels")


@dataclass(frozen=True)
class Bf16Support:
    available: bool
    reason: str  # why not, or how it runs
    cpu_lacks: bool = False  # unavailable because of the CPU (rather than a failed self-check or a setting)


@dataclass(frozen=True)
class SelfCheck:
    passed: bool
    detail: str


def _relative_rms(result: np.ndarray, reference: np.ndarray) -> float:
    return float(np.sqrt(np.mean((result - reference) ** 2)) / max(np.sqrt(np.mean(reference ** 2)), 1e-30))


def _dense_problem(rng):
    """A linear layer whose reduction spans two of the GEMM's chunks and ends on an odd index, rows and columns
    that leave partial tiles."""
    x = rng.standard_normal((29, 601)).astype(np.float32)
    w = (rng.standard_normal((45, 601)) / np.sqrt(601)).astype(np.float32)
    b = rng.standard_normal(45).astype(np.float32)
    return x, w, b, x @ w.T + b


def _conv_problem(rng):
    """A 3×3×3 convolution with an odd number of input channels and a partial output-channel block."""
    x = rng.standard_normal((1, 5, 3, 4, 16)).astype(np.float32)
    w = (rng.standard_normal((13, 5, 3, 3, 3)) / np.sqrt(135)).astype(np.float32)
    b = rng.standard_normal(13).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1), (1, 1)))
    y = np.zeros((1, 13, 3, 4, 16), np.float64)
    for dt in range(3):
        for dh in range(3):
            for dw in range(3):
                patch = xp[:, :, dt:dt + 3, dh:dh + 4, dw:dw + 16]
                y += np.einsum("ncthw,oc->nothw", patch, w[:, :, dt, dh, dw])
    return x, w, b, (y + b[None, :, None, None, None]).astype(np.float32)


def run_self_check() -> SelfCheck:
    """Run the bf16 GEMM and convolution kernels on small problems and compare them with float32 (see module)."""
    from mindspore import Tensor


    rng = np.random.default_rng(20240611)
    try:
        x, w, b, reference = _dense_problem(rng)
        result = bf16_dense_op(True, w.shape[0])(Tensor(x), Tensor(pack_bf16_panels(bf16_round(w))), Tensor(b)).asnumpy()
        dense = _relative_rms(result, reference)
        x, w, b, reference = _conv_problem(rng)
        result = bf16_conv_op()(Tensor(x), Tensor(bf16_round(w)), Tensor(b)).asnumpy()
        conv = _relative_rms(result, reference)
    except Exception as err:  # noqa: BLE001 - whatever the kernel did, bf16 is not to be used
        return SelfCheck(False, f"the bf16 kernels failed to run ({type(err).__name__}: {err})")
    worst = max(dense, conv)
    if not np.isfinite(worst) or worst > SELF_CHECK_TOLERANCE:
        return SelfCheck(False, f"bf16 results differ from float32 by {worst:.3g} relative RMS (GEMM {dense:.3g}, "
                                f"convolution {conv:.3g}; at most {SELF_CHECK_TOLERANCE:g} expected)")
    return SelfCheck(True, f"relative RMS error {worst:.2g}")


@functools.lru_cache(maxsize=None)
def _self_check(emulation: bool) -> SelfCheck:
    """The self-check, once per process (and per emulation setting); a failure is logged once."""
    result = run_self_check()
    if not result.passed:
        logger.warning("bf16 compute disabled: its self-check on this CPU failed: %s; running float32",
                       result.detail)
    return result


def bf16_support() -> Bf16Support:
    """Whether bf16 can run here, and why not (runs the self-check on first call where the rest allows bf16)."""
    if os.environ.get(DISABLE_ENV, "1")[:1] == "0":
        return Bf16Support(False, f"disabled by {DISABLE_ENV}=0")
    if library_path() is None:
        return Bf16Support(False, f"the fused CPU kernels are off ({unavailable_reason()})")
    emulation = emulated()
    if not emulation and not cpu_has_bf16():
        return Bf16Support(False, "this CPU lacks AVX512_BF16", cpu_lacks=True)
    check = _self_check(emulation)
    if not check.passed:
        return Bf16Support(False, f"its self-check failed: {check.detail}")
    how = f"emulated ({EMULATE_ENV}=1)" if emulation else "AVX512_BF16"
    return Bf16Support(True, f"{how}; self-check passed ({check.detail})")


class Bf16Unavailable(RuntimeError):
    """bf16 was asked for where it cannot run; `support` says why."""

    def __init__(self, support: Bf16Support):
        super().__init__(support.reason)
        self.support = support


def resolve_precision(requested: str) -> str:
    """"fp32" or "bf16" for a requested "auto", "fp32" or "bf16": auto is bf16 where `bf16_support()` allows it;
    an explicit bf16 that cannot run raises `Bf16Unavailable`."""
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; valid: {', '.join(PRECISIONS)}")
    if requested == "fp32":
        return "fp32"
    support = bf16_support()
    if support.available:
        return "bf16"
    if requested == "bf16":
        raise Bf16Unavailable(support)
    return "fp32"


def apply_precision(precision: str, *networks) -> int:
    """Switch every layer of `networks` that has a bf16 path to `precision` ("fp32" or "bf16"; bf16 copies of the
    weights are made from their current values). Returns the number of layers switched to bf16."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
    switched = 0
    for network in networks:
        for _, cell in network.cells_and_names():
            if hasattr(cell, "set_precision"):
                switched += int(cell.set_precision(precision))
    return switched
