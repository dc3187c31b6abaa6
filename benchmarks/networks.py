"""Forward and forward+backward time and peak RSS of each network at each preset, compiled vs PyNative.

    python -m benchmarks.networks [--presets tiny small sevirlr] [--modes jit pynative] [--batch N]

`sevirlr` runs at batch 1 (the paper configuration: 136.8 M-parameter UNet, 84.5 M VAE, 8.9 M alignment net).
The VAE is timed on one 128×128 frame per batch element (encode + decode); the UNet on (B, 6, 16, 16, C) noisy
latents with (B, 7, …) context; the alignment net on (B, 6, …) latents. Each configuration runs in its own process.
"""
from __future__ import annotations

import argparse

from benchmarks.measure import emit, isolated, timed


def measure(preset: str, component: str, mode: str, batch: int, repeats: int = 3) -> dict:
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor, ops

    import prediff_models as models
    from prediff.config import load_config

    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = load_config(preset)
    net = models.build(component, cfg.model_kwargs(component))
    rng = np.random.default_rng(0)
    if component == "vae":
        x = Tensor(rng.random((batch, 1, 128, 128), dtype=np.float32))
        inputs = (x,)

        def forward(x):
            rec, _ = net(x)
            return rec
    elif component == "unet":
        t_in, h, w, c = cfg.unet.input_shape
        t_out = cfg.unet.target_shape[0]
        inputs = (Tensor(rng.standard_normal((batch, t_out, h, w, c), dtype=np.float32)),
                  Tensor(np.full((batch,), 500, np.int32)),
                  Tensor(rng.standard_normal((batch, t_in, h, w, c), dtype=np.float32)))

        def forward(x, t, cond):
            return net(x, t, cond)
    else:
        t, h, w, c = cfg.align.input_shape
        inputs = (Tensor(rng.standard_normal((batch, t, h, w, c), dtype=np.float32)),
                  Tensor(np.full((batch,), 500, np.int32)))

        def forward(z, t):
            return net(z, t)

    def loss(*args):
        return ops.mean(ops.square(forward(*args)))

    grad = ms.value_and_grad(loss, None, net.trainable_params())
    if mode == "jit":
        forward, grad = ms.jit(forward), ms.jit(grad)
    net.set_train(False)
    fwd = timed(lambda: forward(*inputs), repeats)
    net.set_train(True)
    fb = timed(lambda: grad(*inputs), repeats)
    return {"preset": preset, "component": component, "mode": mode, "batch": batch,
            "parameters": models.count_parameters(net), "forward": fwd, "forward_backward": fb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "sevirlr"])
    parser.add_argument("--modes", nargs="+", default=["jit", "pynative"])
    parser.add_argument("--components", nargs="+", default=["vae", "unet", "align"])
    parser.add_argument("--batch", type=int, default=4, help="batch for tiny/small (sevirlr uses 1)")
    args = parser.parse_args()
    results = []
    for preset in args.presets:
        for component in args.components:
            for mode in args.modes:
                batch = 1 if preset == "sevirlr" else args.batch
                results.append(isolated("benchmarks.networks", "measure", preset=preset, component=component,
                                        mode=mode, batch=batch))
    emit({"benchmark": "networks", "results": results})


if __name__ == "__main__":
    main()
