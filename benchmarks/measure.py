"""Benchmark plumbing: time a callable (warm-up excluded) and run a measurement in its own process so that its
peak resident memory is its own.

`isolated(module, function, **kwargs)` runs `module.function(**kwargs)` in a fresh Python and returns its result
(a JSON-ready dict) with `peak_rss_mb` added. Results are synchronised with `.asnumpy()` (MindSpore's CPU backend
has no synchronize()).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict

import prediff  # noqa: F401,E402  (prepares MindSpore's environment before any benchmark imports it)

ROOT = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> Dict[str, float]:
    """First call (compile + run) and the median of `repeats` further calls, in seconds."""
    t0 = time.perf_counter()
    _sync(fn())
    first = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        _sync(fn())
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _sync(fn())
        runs.append(time.perf_counter() - t0)
    runs.sort()
    return {"first_call_s": round(first, 4), "median_s": round(runs[len(runs) // 2], 4),
            "min_s": round(runs[0], 4)}


def _sync(out):
    if isinstance(out, (tuple, list)):
        for o in out:
            _sync(o)
    elif hasattr(out, "asnumpy"):
        out.asnumpy()


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def isolated(module: str, function: str, timeout: float = 3600, **kwargs) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); import {module} as m; "
            f"from benchmarks.measure import peak_rss_mb; r = m.{function}(**json.loads(sys.argv[1])); "
            f"r['peak_rss_mb'] = peak_rss_mb(); print('RESULT ' + json.dumps(r))")
    try:
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", **kwargs}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    if proc.returncode < 0:  # ended by a signal: SIGKILL with nothing printed is how the OOM killer shows
        tail.append(f"killed by signal {-proc.returncode}" + (" (out of memory?)" if proc.returncode == -9 else ""))
    return {"error": " | ".join(tail), **kwargs}


def emit(result) -> None:
    """Print a benchmark's result as JSON, with the machine it ran on first (`machine()`)."""
    if isinstance(result, dict) and "machine" not in result:
        result = {"machine": machine(), **result}
    print(json.dumps(result, indent=2))


def machine() -> dict:
    """The kind of machine a figure was measured on: CPU model, logical cores, the vector ISAs the CPU has, the ISA
    oneDNN is capped at (prediff sets ONEDNN_MAX_CPU_ISA), total memory. Speed ratios only compare within one kind."""
    import platform

    model, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():  # the first core's lines stand for all
            if line.startswith("model name") and model is None:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError):
        mem = None
    return {"cpu": model, "logical_cores": os.cpu_count(),
            "isa": [isa for isa in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if isa in flags],
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
            "memory_gib": round(mem, 1) if mem else None}
