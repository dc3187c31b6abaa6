"""Where the forecast time goes on CPU: compiled MindSpore kernels on one activation-sized tensor.

    python -m benchmarks.ops [--rows 26624] [--channels 256]

Times forward and gradient of GELU (MindSpore's, and exact and approximate compositions), LayerNorm, softmax,
ReLU, an elementwise multiply and the matmul that follows a GELU in the cuboid FFN (channels → channels/4), all on a
(rows, channels) float32 tensor; the default is the level-0 FFN hidden activation of the demo UNet at batch 8
(8 × 13 × 16 × 16 tokens × 256). Each kernel is `ms.jit`-compiled; times are the minimum of 5 synchronised calls.
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
    flops = 2.0 * rows * channels * (channels // 4)
    kernels["matmul"]["gflops"] = round(flops / (kernels["matmul"]["forward_ms"] / 1e3) / 1e9, 1)
    return {"rows": rows, "channels": channels, "elements": rows * channels, "kernels": kernels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8 * 13 * 16 * 16)
    parser.add_argument("--channels", type=int, default=256)
    args = parser.parse_args()
    emit({"benchmark": "ops", **measure(args.rows, args.channels)})


if __name__ == "__main__":
    main()
