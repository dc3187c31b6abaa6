"""Which precision a forecast runs at: `sample.precision` ("auto", "fp32" or "bf16") resolved on this machine.

bf16 (the UNet's and the VAE's linear layers and convolutions with bf16 operands, float32 accumulation;
`prediff_models.kernels.precision`) needs a CPU with AVX512_BF16 and a passed self-check of the bf16 kernels. An
explicit `bf16` that cannot run is refused in one line: exit 2 when the CPU lacks the instruction (the request does
not fit the machine), 1 when the kernels failed their self-check.
"""
from __future__ import annotations

from prediff.errors import InputError, PrediffError


def check_precision_request(requested: str) -> None:
    """Refuse `bf16` on a CPU without AVX512_BF16 before anything is loaded (cheap: no kernel runs)."""
    from prediff_models.kernels.precision import cpu_has_bf16, emulated

    if requested == "bf16" and not (cpu_has_bf16() or emulated()):
        raise InputError("--precision bf16 needs a CPU with AVX512_BF16, which this one lacks; use --precision "
                         "fp32 or auto")


def forecast_precision(requested: str) -> str:
    """"fp32" or "bf16" for the requested precision (auto: bf16 where it can run)."""
    from prediff_models.kernels.precision import Bf16Unavailable, resolve_precision

    try:
        return resolve_precision(requested)
    except Bf16Unavailable as err:
        if err.support.cpu_lacks:
            raise InputError(f"--precision bf16 cannot run here: {err.support.reason}; use --precision fp32 or "
                             "auto") from None
        raise PrediffError(f"--precision bf16 cannot run here: {err.support.reason}; use --precision fp32 or "
                           "auto") from None
