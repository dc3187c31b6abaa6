"""How far the bf16 path is from float32: RMS relative error of the UNet's ε and of the VAE decode, per preset.

    python -m benchmarks.bf16_accuracy [--presets sevirlr] [--seed 0] [--batch 1]

The networks of the preset with random but non-trivial weights: the constructors' initialisation, then every
floating-point parameter perturbed with seeded Gaussian noise (std 0.3/√fan_in for tensors of ≥ 2 dimensions,
0.1 for vectors), so that zero-initialised output layers and norms are not trivial. The same inputs go through the
networks at `--precision fp32` and `bf16`; bf16 is the real path (AVX512_BF16 where the CPU has it, else the
emulated dot product, `PREDIFF_BF16_EMULATE=1`, set here when needed): every layer that runs prediff's kernels
multiplies bf16-rounded activations by bf16-rounded weights and accumulates in float32. Reported per network: the
RMS of (bf16 − fp32) relative to the RMS of the fp32 output, and the largest absolute difference relative to the
largest fp32 value. Each preset runs in its own process. Prints one JSON document.

UNet: (B, T_out, h, w, L) standard-normal noisy latents at t = 500 with standard-normal context latents → ε.
VAE: (B·6) standard-normal latent frames → decoded frames.
"""
from __future__ import annotations

import argparse
import os

from benchmarks.measure import emit, isolated

PERTURB_REL, PERTURB_ABS_1D = 0.3, 0.1


def perturb_parameters(net, seed: int) -> None:
    """Add seeded N(0, std²) noise to every float parameter: std = 0.3/√fan_in (fan_in: the size of one output
    slice) for ≥ 2-D tensors, 0.1 for 1-D ones."""
    import numpy as np
    from mindspore import Tensor

    rng = np.random.default_rng(seed)
    for p in net.get_parameters():
        value = p.asnumpy()
        if value.dtype != np.float32:
            continue
        std = PERTURB_REL / np.sqrt(value[0].size) if value.ndim >= 2 else PERTURB_ABS_1D
        p.set_data(Tensor((value + rng.standard_normal(value.shape) * std).astype(np.float32)))


def relative_errors(result, reference) -> dict:
    import numpy as np

    result, reference = np.asarray(result, np.float64), np.asarray(reference, np.float64)
    rms = float(np.sqrt(np.mean((result - reference) ** 2)) / np.sqrt(np.mean(reference ** 2)))
    peak = float(np.abs(result - reference).max() / np.abs(reference).max())
    return {"rms_relative": rms, "max_relative": peak}


def compare(preset: str, seed: int = 0, batch: int = 1) -> dict:
    """fp32 and bf16 outputs of the preset's UNet (ε) and VAE decoder on the same inputs (runs in-process; bf16
    as `bf16_support()` allows it: set PREDIFF_BF16_EMULATE=1 first on CPUs without AVX512_BF16)."""
    import numpy as np
    from mindspore import Tensor

    import prediff_models as models
    from prediff.config import load_config
    from prediff.compile import compiled
    from prediff.pipelines.latents import SequenceDecoder
    from prediff_models.kernels import apply_precision
    from prediff_models.kernels import precision as P

    support = P.bf16_support()
    if not support.available:
        return {"preset": preset, "error": f"bf16 cannot run here: {support.reason}"}
    cfg = load_config(preset)
    unet = models.build("unet", cfg.model_kwargs("unet"))
    vae = models.build("vae", cfg.model_kwargs("vae"))
    perturb_parameters(unet, seed + 1)
    perturb_parameters(vae, seed + 2)
    rng = np.random.default_rng(seed + 3)
    t_in = cfg.unet.input_shape[0]
    target = tuple(cfg.unet.target_shape)
    z = Tensor(rng.standard_normal((batch,) + target, dtype=np.float32))
    cond = Tensor(rng.standard_normal((batch, t_in) + target[1:], dtype=np.float32))
    t = Tensor(np.full((batch,), 500, np.int32))
    latents = Tensor(rng.standard_normal((batch,) + target, dtype=np.float32))
    decoder = SequenceDecoder(vae, 1.0)
    out = {}
    for precision in ("fp32", "bf16"):
        apply_precision(precision, unet, vae)

        @compiled  # a new graph per precision, as a Forecaster compiles its own
        def eps(z, t, cond):
            return unet(z, t, cond)

        @compiled
        def decode(x):
            return decoder(x)

        out[precision] = (eps(z, t, cond).asnumpy(), decode(latents).asnumpy())
    return {"preset": preset, "seed": seed, "batch": batch, "bf16": support.reason,
            "unet_eps": relative_errors(out["bf16"][0], out["fp32"][0]),
            "vae_decode": relative_errors(out["bf16"][1], out["fp32"][1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["sevirlr"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    from prediff_models.kernels import precision as P

    if not P.cpu_has_bf16():  # the measuring processes inherit it
        os.environ[P.EMULATE_ENV] = "1"
    emit({"benchmark": "bf16_accuracy",
          "results": [isolated("benchmarks.bf16_accuracy", "compare", preset=p, seed=args.seed, batch=args.batch)
                      for p in args.presets]})


if __name__ == "__main__":
    main()
