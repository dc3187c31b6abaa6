"""Per-shape speed of the linear layers' GEMM kernels (`gemm_kernels.cc`) against MindSpore's matmul.

    python -m benchmarks.gemm [--rounds 7]

For every linear layer shape of the paper-size UNet at batch 1 (qkv, projection and both FFN layers, at both levels:
rows = T·H·W tokens) and the first FFN layer at the member batch 4, times the three products of y = x·wᵀ + b —
forward, input gradient ∂y·w, weight gradient ∂yᵀ·x — compiled, once with prediff's kernels (`DenseForward`,
`DenseInputGrad`, `DenseWeightGrad`) and once with MindSpore's matmul (`ops.MatMul` with the same transposes; its
forward also adds the bias). The two are interleaved round by round, so a slow period of a shared machine hits
both; each figure is the median of `--rounds` synchronised calls, as GFLOP/s (2·rows·in·out per product). Needs the
kernel library and AVX-512F (`uses_avx512`); prints `{"error": …}` otherwise.
"""
from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.measure import emit

SHAPES = [  # (name, rows, in, out)
    ("level 0 qkv, batch 1", 3328, 256, 768),
    ("level 0 projection, batch 1", 3328, 256, 256),
    ("level 0 FFN 1, batch 1", 3328, 256, 1024),
    ("level 0 FFN 2, batch 1", 3328, 1024, 256),
    ("level 1 qkv, batch 1", 832, 512, 1536),
    ("level 1 projection, batch 1", 832, 512, 512),
    ("level 1 FFN 1, batch 1", 832, 512, 2048),
    ("level 1 FFN 2, batch 1", 832, 2048, 512),
    ("level 0 FFN 1, batch 4", 13312, 256, 1024),
    ("level 1 FFN 2, batch 4", 3328, 2048, 512),
]


def measure(rounds: int) -> dict:
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor, ops

    from prediff_models.kernels.dense import _forward_shape, _input_grad_shape, _weight_grad_shape
    from prediff_models.kernels.library import custom_op, uses_avx512

    if not uses_avx512():
        return {"error": "GEMM kernels unavailable (no kernel library or no AVX-512F)"}
    ours = {"forward": custom_op("DenseForward", out_shape=_forward_shape),
            "input_grad": custom_op("DenseInputGrad", out_shape=_input_grad_shape),
            "weight_grad": custom_op("DenseWeightGrad", out_shape=_weight_grad_shape)}
    theirs = {"forward": ops.MatMul(transpose_b=True), "input_grad": ops.MatMul(),
              "weight_grad": ops.MatMul(transpose_a=True)}

    def compiled(op):
        def call(*args):
            return op(*args)
        return ms.jit(call)

    ours_forward, ours_input_grad, ours_weight_grad = (compiled(ours[p]) for p in ("forward", "input_grad",
                                                                                   "weight_grad"))
    theirs_input_grad, theirs_weight_grad = compiled(theirs["input_grad"]), compiled(theirs["weight_grad"])

    @ms.jit
    def theirs_forward(x, w, b):
        return ops.bias_add(theirs["forward"](x, w), b)

    rng = np.random.default_rng(0)
    rows_out = []
    for name, rows, n_in, n_out in SHAPES:
        x = Tensor(rng.standard_normal((rows, n_in)).astype(np.float32))
        w = Tensor(rng.standard_normal((n_out, n_in)).astype(np.float32))
        b = Tensor(rng.standard_normal(n_out).astype(np.float32))
        dy = Tensor(rng.standard_normal((rows, n_out)).astype(np.float32))
        runs = {"ours_forward": (ours_forward, (x, w, b)), "mindspore_forward": (theirs_forward, (x, w, b)),
                "ours_input_grad": (ours_input_grad, (dy, w)), "mindspore_input_grad": (theirs_input_grad, (dy, w)),
                "ours_weight_grad": (ours_weight_grad, (dy, x)),
                "mindspore_weight_grad": (theirs_weight_grad, (dy, x))}
        for fn, args in runs.values():
            fn(*args).asnumpy()  # compile
        times = {key: [] for key in runs}
        for _ in range(rounds):
            for key, (fn, args) in runs.items():
                start = time.perf_counter()
                fn(*args).asnumpy()
                times[key].append(time.perf_counter() - start)
        gflop = 2.0 * rows * n_in * n_out / 1e9
        rate = {key: round(gflop / statistics.median(ts), 1) for key, ts in times.items()}
        rows_out.append({"shape": name, "rows": rows, "in": n_in, "out": n_out, "gflop": round(gflop, 3),
                         "gflops": rate,
                         "speedup_vs_mindspore": {p: round(rate[f"ours_{p}"] / rate[f"mindspore_{p}"], 3)
                                                  for p in ("forward", "input_grad", "weight_grad")}})
    total = {side: sum(r["gflop"] / r["gflops"][f"{side}_{p}"] for r in rows_out
                       for p in ("forward", "input_grad", "weight_grad"))
             for side in ("ours", "mindspore")}
    return {"rounds": rounds, "shapes": rows_out,
            "seconds_all_shapes": {k: round(v, 4) for k, v in total.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    emit(measure(args.rounds))


if __name__ == "__main__":
    main()
