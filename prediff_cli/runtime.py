"""Process-wide MindSpore setup: device choice, execution mode, seeds.

Only this module (and the networks) touch MindSpore's global context, so every command sets up the
runtime the same way.
"""
from __future__ import annotations

import contextlib
import os
import random
from typing import Optional

import mindspore as ms
import numpy as np

from prediff.errors import PrediffError

DEVICE_CHOICES = ("auto", "cpu", "gpu", "ascend")
_TARGETS = {"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}


@contextlib.contextmanager
def _quiet_fds():
    """Silence C-level stdout/stderr (MindSpore prints library-probe noise when checking backends)."""
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [devnull]:
            os.close(fd)


def device_available(name: str) -> bool:
    """Whether MindSpore can run on `name` ("cpu", "gpu" or "ascend") in this process."""
    if name == "cpu":
        return True
    with _quiet_fds():
        try:
            return bool(ms.hal.is_available(_TARGETS[name]))
        except Exception:
            return False


def resolve_device(device: str) -> str:
    """`auto` → Ascend, then GPU, then CPU; an explicit choice must be available."""
    if device not in DEVICE_CHOICES:
        raise PrediffError(f"unknown device {device!r}; valid: {', '.join(DEVICE_CHOICES)}")
    if device == "auto":
        for name in ("ascend", "gpu"):
            if device_available(name):
                return name
        return "cpu"
    if not device_available(device):
        raise PrediffError(f"device {device!r} is not available to MindSpore here; use --device cpu or auto")
    return device


_current: Optional[str] = None


def setup_runtime(device: str = "auto", seed: Optional[int] = None) -> str:
    """Select the device (once per process), keep PyNative as the global mode (hot paths are compiled
    with `ms.jit`), and seed Python, NumPy and MindSpore. Returns the device in use."""
    global _current
    name = resolve_device(device)
    if _current is None:
        try:
            ms.set_device(_TARGETS[name])
        except RuntimeError:
            # MindSpore fixes the device once a kernel has run (e.g. in a library user's own code); that is fine
            # when it is the one we want
            active = ms.get_context("device_target")
            if active != _TARGETS[name]:
                raise PrediffError(f"MindSpore already runs on {active} in this process; cannot switch to "
                                   f"{name}") from None
        # the paper-size UNet's compiled train step nests deeper than MindSpore's default limit of 1000 calls
        ms.set_context(mode=ms.PYNATIVE_MODE, max_call_depth=10000)
        _current = name
    elif _current != name:
        raise PrediffError(f"device already set to {_current} in this process; cannot switch to {name}")
    if seed is not None:
        seed_everything(seed)
    return name


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    ms.set_seed(seed)


def thread_info() -> dict:
    """CPU threads visible to this process (affinity) and the ones MindSpore and BLAS are told to use."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 1
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }
