"""Where the forecast time goes on CPU: compiled MindSpore kernels on one activation-sized tensor.

    python -m benchmarks.ops [--rows 26624] [--channels 256]

Times forward and gradient of GELU (MindSpore's, and exact and approximate compositions), LayerNorm, softmax,
ReLU, an elementwise multiply and the matmul that follows a GELU in the cuboid FFN (channels → channels/4), all on a
(rows, channels) float32 tensor; the default is the level-0 FFN hidden activation of the demo UNet at batch 8
(8 × 13 × 16 × 16 tokens × 256). Each kernel is `ms.jit`-compiled; times are the minimum of 5 synchronised calls.
`fused` compares prediff's fused CPU kernels (models/kernels, inference forward) with MindSpore's layers on the same
tensor: GELU, LayerNorm over the channels, and GroupNorm(32)+SiLU on the tensor viewed as (rows/256, channels, 256).
"""
from __future__ import annotations

import argparse

from benchmarks.measure import emit


def _summed(fn):
    """v → sum(fn(v)), a scalar loss whose gradient is fn's backward (a closure: jit rejects default arguments)."""
    def total(v):
        return fn(v).sum()
    return total


def measure(rows: int, channels: int) -> dict:
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor, nn, ops

    from benchmarks.measure import timed

    x = Tensor(np.random.default_rng(0).standard_normal((rows, channels), dtype=np.float32))
    w = Tensor(np.random.default_rng(1).standard_normal((channels, channels // 4), dtype=np.float32))
    norm = nn.LayerNorm((channels,))

    def gelu(v):
        return ops.gelu(v)

    def gelu_erf_composed(v):
        return 0.5 * v * (1.0 + ops.erf(v * 0.7071067811865476))

    def gelu_tanh_composed(v):
        return 0.5 * v * (1.0 + ops.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))

    def gelu_sigmoid_approx(v):
        return v * ops.sigmoid(1.702 * v)

    def layer_norm(v):
        return norm(v)

    def softmax(v):
        return ops.softmax(v, -1)

    def relu(v):
        return ops.relu(v)

    def multiply(v):
        return v * 1.5

    def matmul(v):
        return ops.matmul(v, w)

    kernels = {}
    for fn in (gelu, gelu_erf_composed, gelu_tanh_composed, gelu_sigmoid_approx, layer_norm, softmax, relu, multiply,
               matmul):
        forward, grad = ms.jit(fn), ms.jit(ms.grad(_summed(fn)))
        kernels[fn.__name__] = {"forward_ms": round(timed(lambda: forward(x), 5)["min_s"] * 1e3, 2),
                                "grad_ms": round(timed(lambda: grad(x), 5)["min_s"] * 1e3, 2)}
    kernels["fused"] = fused_kernels(x)
    flops = 2.0 * rows * channels * (channels // 4)
    kernels["matmul"]["gflops"] = round(flops / (kernels["matmul"]["forward_ms"] / 1e3) / 1e9, 1)
    return {"rows": rows, "channels": channels, "elements": rows * channels, "kernels": kernels}


def fused_kernels(x) -> dict:
    """Forward ms of the fused kernel and of MindSpore's own layer (the same cell in training mode)."""
    import mindspore as ms
    from mindspore import ops

    from benchmarks.measure import timed
    from prediff_models.kernels import Gelu, GroupNorm, LayerNorm, library_path, unavailable_reason

    if library_path() is None:
        return {"unavailable": unavailable_reason()}
    rows, channels = x.shape
    cells = {"gelu": (Gelu(), x), "layer_norm": (LayerNorm(channels), x),
             "group_norm_silu": (GroupNorm(32, channels, silu=True),
                                 ops.transpose(x.reshape(rows // 256, 256, channels), (0, 2, 1)))}
    out = {}
    for name, (cell, inp) in cells.items():
        times = {}
        for mode, training in (("fused_ms", False), ("mindspore_ms", True)):
            cell.set_train(training)
            fn = ms.jit(cell.construct)
            times[mode] = round(timed(lambda: fn(inp), 5)["min_s"] * 1e3, 2)
        times["speedup"] = round(times["mindspore_ms"] / times["fused_ms"], 1)
        out[name] = times
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8 * 13 * 16 * 16)
    parser.add_argument("--channels", type=int, default=256)
    args = parser.parse_args()
    emit({"benchmark": "ops", **measure(args.rows, args.channels)})


if __name__ == "__main__":
    main()
