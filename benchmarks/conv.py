"""Per-shape speed of prediff's direct 3×3(×3) convolution kernel against MindSpore's convolution and matmul.

    python -m benchmarks.conv [--rounds 7] [--backward]
    python -m benchmarks.conv --weight-grad [--rounds 7]

For each convolution shape of the paper-size networks (the UNet's 3×3×3 convolutions at both levels, at batch 1
and at the member batch 4; the upsampling 3×3; the VAE's 3×3 convolutions at 8 frames) it times, compiled, the
same cell with the kernel (`fused`) and with MindSpore's `nn.Conv3d`/`nn.Conv2d`, and a matmul with the same FLOPs
(rows = output positions, K = C_in·taps, N = C_out). The three are interleaved round by round, so that a slow
period of a shared machine hits all of them; each figure is the median of `--rounds` synchronised calls, reported
as GFLOP/s, with `vs_matmul` = our rate over the matmul's. `--backward` adds the gradients to the input, weight
and bias (our kernels vs MindSpore's) for the UNet shapes; their rate counts the forward's FLOPs twice (input and
weight gradient).

`--weight-grad` times the convolution's weight-gradient op alone (`Conv3x3WeightGrad`) on every shape along both
of its paths — the AVX2 reduction tile (`PREDIFF_KERNEL_GEMM=0`) and, on AVX-512 CPUs, the GEMM kernel — each path
in a process of its own (the path is chosen once per process), alternating the two processes `--rounds` times; the
figure per path is the median over all its calls.
"""
from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.measure import emit

SHAPES = [  # (name, 3-D?, C_in, C_out, input shape)
    ("unet level 0, batch 1", True, 256, 256, (1, 256, 13, 16, 16)),
    ("unet level 1, batch 1", True, 512, 512, (1, 512, 13, 8, 8)),
    ("unet level 0, batch 4", True, 256, 256, (4, 256, 13, 16, 16)),
    ("unet level 1, batch 4", True, 512, 512, (4, 512, 13, 8, 8)),
    ("unet first block (65 channels), batch 1", True, 65, 256, (1, 65, 13, 16, 16)),
    ("unet upsampling 3x3, 13 frames", False, 512, 256, (13, 512, 16, 16)),
    ("vae 128 channels at 128x128, 8 frames", False, 128, 128, (8, 128, 128, 128)),
    ("vae 256 channels at 64x64, 8 frames", False, 256, 256, (8, 256, 64, 64)),
    ("vae 512 channels at 32x32, 8 frames", False, 512, 512, (8, 512, 32, 32)),
    ("vae 512 channels at 16x16, 8 frames", False, 512, 512, (8, 512, 16, 16)),
]


def _call(fn, *args):
    out = fn(*args)
    out = out[0] if isinstance(out, tuple) else out
    out.asnumpy()


def measure(rounds: int, backward: bool) -> dict:
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor, ops

    from prediff_models.kernels import Conv2d, Conv3d, library_path, uses_avx512

    if library_path() is None:
        return {"error": "kernel library unavailable"}

    @ms.jit
    def matmul(a, b):
        return ops.matmul(a, b)

    rng = np.random.default_rng(0)
    rows = []
    for name, three_d, cin, cout, shape in SHAPES:
        cls = Conv3d if three_d else Conv2d
        taps = 27 if three_d else 9
        positions = int(np.prod(shape)) // cin
        gflop = 2.0 * positions * cin * taps * cout / 1e9
        ours = cls(cin, cout, 3, pad_mode="pad", padding=1, has_bias=True)
        theirs = cls(cin, cout, 3, pad_mode="pad", padding=1, has_bias=True)
        theirs.fused = False
        x = Tensor(rng.standard_normal(shape).astype(np.float32))
        a = Tensor(rng.standard_normal((positions, cin * taps)).astype(np.float32))
        b = Tensor(rng.standard_normal((cin * taps, cout)).astype(np.float32))
        runs = {"ours": (ms.jit(ours.construct), (x,)), "mindspore": (ms.jit(theirs.construct), (x,)),
                "matmul": (matmul, (a, b))}
        if backward and three_d:
            for key, cell in (("ours_grads", ours), ("mindspore_grads", theirs)):
                runs[key] = (ms.jit(ms.grad(cell, grad_position=0, weights=cell.trainable_params())), (x,))
        times = {key: [] for key in runs}
        for fn, args in runs.values():
            _call(fn, *args)  # compile
        for _ in range(rounds):
            for key, (fn, args) in runs.items():
                start = time.perf_counter()
                _call(fn, *args)
                times[key].append(time.perf_counter() - start)
        work = {key: gflop * (2 if key.endswith("_grads") else 1) for key in runs}
        rate = {key: round(work[key] / statistics.median(ts), 1) for key, ts in times.items()}
        row = {"shape": name, "input": list(shape), "c_out": cout, "gflop": round(gflop, 2),
               "gflops": rate, "median_ms": {k: round(1e3 * statistics.median(ts), 2) for k, ts in times.items()},
               "ours_vs_matmul": round(rate["ours"] / rate["matmul"], 3),
               "mindspore_vs_matmul": round(rate["mindspore"] / rate["matmul"], 3),
               "speedup_vs_mindspore": round(rate["ours"] / rate["mindspore"], 3)}
        rows.append(row)
    return {"rounds": rounds, "avx512_tiles": uses_avx512(), "shapes": rows}


def _weight_shape(x, dy, w):
    return w


def weight_grad_times(repeats: int) -> dict:
    """Seconds of each call of the weight-gradient op, per shape, on the path this process runs."""
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor

    from prediff_models.kernels.library import custom_op

    op = custom_op("Conv3x3WeightGrad", out_shape=_weight_shape)
    if op is None:
        return {"error": "kernel library unavailable"}

    @ms.jit
    def run(x, dy, w):
        return op(x, dy, w)

    rng = np.random.default_rng(0)
    out = {}
    for name, three_d, cin, cout, shape in SHAPES:
        x = Tensor(rng.standard_normal(shape).astype(np.float32))
        dy = Tensor(rng.standard_normal((shape[0], cout) + tuple(shape[2:])).astype(np.float32))
        w = Tensor(np.zeros((cout, cin) + ((3, 3, 3) if three_d else (3, 3)), np.float32))
        _call(run, x, dy, w)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            _call(run, x, dy, w)
            times.append(time.perf_counter() - start)
        out[name] = {"times": times, "gflop": 2.0 * int(np.prod(shape)) * cout * (27 if three_d else 9) / 1e9}
    from prediff_models.kernels import uses_avx512

    return {"shapes": out, "avx512": uses_avx512()}


def weight_grad(rounds: int) -> dict:
    import os

    from benchmarks.measure import isolated

    # MindSpore is loaded only in the measuring processes: its idle runtime threads here would take a core from them
    paths = {"avx2_tile": "0", "gemm": "1"}
    times: dict = {path: {} for path in paths}
    gflop, avx512 = {}, True
    for _ in range(rounds):
        for path, env in paths.items():
            if path == "gemm" and not avx512:
                continue
            os.environ["PREDIFF_KERNEL_GEMM"] = env  # inherited by the measuring process
            result = isolated("benchmarks.conv", "weight_grad_times", repeats=3)
            if "error" in result:
                return result
            avx512 = result["avx512"]
            for name, row in result["shapes"].items():
                times[path].setdefault(name, []).extend(row["times"])
                gflop[name] = row["gflop"]
    if not avx512:  # no AVX-512 here: the tile is the only path
        del paths["gemm"]
    rows = []
    for name in gflop:
        rate = {path: round(gflop[name] / statistics.median(times[path][name]), 1) for path in paths}
        row = {"shape": name, "gflop": round(gflop[name], 2), "gflops": rate}
        if "gemm" in rate:
            row["gemm_vs_avx2_tile"] = round(rate["gemm"] / rate["avx2_tile"], 3)
        rows.append(row)
    return {"rounds": rounds, "benchmark": "conv_weight_grad", "shapes": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backward", action="store_true")
    parser.add_argument("--weight-grad", action="store_true",
                        help="time the weight-gradient op alone, AVX2 tile vs AVX-512 GEMM")
    args = parser.parse_args()
    emit(weight_grad(args.rounds) if args.weight_grad else measure(args.rounds, args.backward))


if __name__ == "__main__":
    main()
