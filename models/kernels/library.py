"""Build (once) and locate the fused CPU kernels in `cpu_kernels.cc`, `conv_kernels.cc`, `gemm_kernels.cc` and
`stash_kernels.cc` (one library; `kernel_support.h` is shared by the convolution and GEMM sources, `gemm.h` declares
the GEMM source's convolution weight gradient for the convolution source).

The shared object is compiled with the system C++ compiler on first use and cached under
`$PREDIFF_KERNEL_DIR`, else `$XDG_CACHE_HOME/prediff/kernels`, else `~/.cache/prediff/kernels`, named by a hash of
the sources, the flags and the compiler, so an edited source or another compiler builds a new file. The build
writes to a temporary name and renames, so concurrent processes never load a half-written library.

`library_path()` returns None — and the networks keep MindSpore's own kernels — when any of these holds:
`PREDIFF_KERNELS=0`; the device target is not CPU; the CPU lacks AVX2/FMA (the kernels are built for them);
no compiler is found or the build fails (the reason is kept in `unavailable_reason()`).
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import mindspore as ms

SOURCES = tuple(Path(__file__).with_name(name)
                for name in ("cpu_kernels.cc", "conv_kernels.cc", "gemm_kernels.cc", "stash_kernels.cc"))
HEADERS = tuple(Path(__file__).with_name(name) for name in ("kernel_support.h", "gemm.h", "bf16.h"))
FLAGS = ("-O3", "-mavx2", "-mfma", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC",
         "-std=c++17")
_reason: Optional[str] = None


def cache_dir() -> Path:
    if os.environ.get("PREDIFF_KERNEL_DIR"):
        return Path(os.environ["PREDIFF_KERNEL_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prediff" / "kernels"


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> str:
    """/proc/cpuinfo's text ("" where it cannot be read)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpu_has_avx2_fma() -> bool:
    flags = _cpu_flags()
    return " avx2" in flags and " fma" in flags


def _device_is_cpu() -> bool:
    return ms.get_context("device_target") == "CPU"


def _compiler() -> Optional[str]:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def _build(compiler: str) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256(b"".join(src.read_bytes() for src in SOURCES + HEADERS) + " ".join(FLAGS).encode()
                            + version.encode()).hexdigest()[:16]
    target = cache_dir() / f"cpu_kernels-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".so.tmp", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run([compiler, *FLAGS, *map(str, SOURCES), "-o", tmp], capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{compiler} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else ''}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@functools.lru_cache(maxsize=None)
def library_path() -> Optional[str]:
    """Absolute path of the compiled kernel library, or None when the fused kernels are not to be used."""
    global _reason
    if os.environ.get("PREDIFF_KERNELS", "1") == "0":
        _reason = "disabled by PREDIFF_KERNELS=0"
    elif not _device_is_cpu():
        _reason = "device target is not CPU"
    elif not _cpu_has_avx2_fma():
        _reason = "CPU lacks AVX2/FMA"
    elif _compiler() is None:
        _reason = "no C++ compiler found (set CXX or install g++)"
    else:
        try:
            return str(_build(_compiler()))
        except (OSError, RuntimeError, subprocess.SubprocessError) as err:
            _reason = f"kernel build failed: {err}"
    return None


def uses_avx512() -> bool:
    """Whether the convolution kernel runs its AVX-512 micro-tile (widths that are a multiple of 16) and the linear
    layers the GEMM kernels on this CPU: the CPU has AVX-512F and `PREDIFF_KERNEL_AVX512` is not 0 — the same test the library makes when it loads."""
    return (library_path() is not None and " avx512f" in _cpu_flags()
            and os.environ.get("PREDIFF_KERNEL_AVX512", "1")[:1] != "0")


def unavailable_reason() -> Optional[str]:
    """Why `library_path()` is None (None while the kernels are in use or not yet looked up)."""
    library_path()
    return _reason


def custom_op(function: str, bprop=None, out_shape=lambda x, *rest: x, out_dtype=lambda x, *rest: x):
    """`ops.Custom` for the library's AOT function `function` (output shaped and typed like the first input unless
    given), or None when the kernels are not to be used."""
    from mindspore import ops

    path = library_path()
    if path is None:
        return None
    return ops.Custom(f"{path}:{function}", out_shape=out_shape, out_dtype=out_dtype, func_type="aot", bprop=bprop)
