"""Forecast cost: seconds per N-member forecast and peak RSS, by preset, ensemble size and solver.

    python -m benchmarks.sample [--presets tiny small sevirlr] [--members 1 8] [--solvers ddim-50 ddpm-1000 dpmpp-20]
                                [--align] [--max-steps 20]

One forecast = encode 7 context frames → N members denoised together as one batch (one compiled step per solver
step, guidance included when --align) → decode N × 6 frames, with randomly initialised networks of the preset
(the cost does not depend on the weights). Runs that would take more than --max-steps solver steps time the first
--max-steps steps and extrapolate linearly (`extrapolated: true`); `sequential_official_s` is what the official
sampler's shape of work (members one at a time, DDPM-1000) costs, extrapolated from one timed member the same way.
Each configuration runs in its own process so its peak RSS is its own.
"""
from __future__ import annotations

import argparse

from benchmarks.measure import emit, isolated


def build_forecaster(preset: str, solver: str, aligned: bool, precision: str = "fp32"):
    """Random-weight networks of `preset` behind prediff's Forecaster (the path `prediff sample` runs), at
    `precision` ("fp32" or "bf16"; explicit, so that a CPU with AVX512_BF16 does not switch the figures to bf16)."""
    import prediff_models as models
    from prediff.config import load_config
    from prediff.config import SampleConfig
    from prediff.pipelines.forecast import Forecaster
    from prediff.pipelines.model import Model

    cfg = load_config(preset)
    build = {name: (lambda name=name: models.build(name, cfg.model_kwargs(name))) for name in ("vae", "unet", "align")}
    nets = Model.from_networks(cfg, build["vae"](), build["unet"](), build["align"]() if aligned else None)
    for net in (nets.vae, nets.unet, nets.align):
        if net is not None:
            net.set_train(False)
    name, steps = solver.split("-")
    settings = SampleConfig(sampler=name, steps=int(steps), eta=0.0, align="avg_x" if aligned else "none",
                            guide_scale=50.0, precision=precision)
    return Forecaster(nets, settings), cfg


def timed_forecast(forecaster, cfg, members: int, max_steps: int, seed: int = 0) -> dict:
    """Warm (compiled) cost of one forecast: context encoding, the solver loop (cut to `max_steps` and
    extrapolated when longer) and decoding, each timed on its own (min of two runs for the coding parts)."""
    import time

    import numpy as np
    from mindspore import Tensor

    size = cfg.data.img_size
    t_in = cfg.unet.input_shape[0]
    rng = np.random.default_rng(seed)
    contexts = rng.random((1, t_in, size, size), dtype=np.float32)
    y_hat = np.full((members, 1), 0.1, np.float32) if forecaster.aligned else None
    sampler = forecaster.sampler
    full = sampler.timesteps
    total_steps, timed_steps = len(full), min(len(full), max_steps)

    def clock(fn, repeats=1):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return best

    start = time.perf_counter()
    latents = forecaster.context_latents(contexts)  # compiles the encoder
    cond = np.repeat(latents, members, axis=0)
    sampler.timesteps = full[:2]
    z = sampler.sample(cond, rng, y_hat, forecaster.target_shape)  # compiles the solver step
    forecaster.decode(Tensor(z)).asnumpy()  # compiles the decoder
    compile_s = time.perf_counter() - start
    encode = clock(lambda: forecaster.context_latents(contexts), 2)
    decode = clock(lambda: forecaster.decode(Tensor(z)).asnumpy(), 2)
    sampler.timesteps = full[:timed_steps]
    # a loop of another length can compile another graph (the last step's): run the timed length once untimed
    sampler.sample(cond, rng, y_hat, forecaster.target_shape)
    loop = clock(lambda: sampler.sample(cond, rng, y_hat, forecaster.target_shape))
    sampler.timesteps = full
    per_step = loop / timed_steps
    return {"seconds": round(encode + decode + per_step * total_steps, 3), "per_step_s": round(per_step, 4),
            "encode_s": round(encode, 3), "decode_s": round(decode, 3), "encode_decode_s": round(encode + decode, 3),
            "solver_steps": total_steps, "timed_steps": timed_steps, "extrapolated": timed_steps < total_steps,
            "first_run_incl_compile_s": round(compile_s, 2)}


def measure(preset: str, members: int, solver: str, aligned: bool, max_steps: int) -> dict:
    forecaster, cfg = build_forecaster(preset, solver, aligned)
    out = {"preset": preset, "members": members, "solver": solver, "aligned": aligned,
           **timed_forecast(forecaster, cfg, members, max_steps)}
    if solver.startswith("ddpm"):
        one = timed_forecast(forecaster, cfg, 1, max_steps)
        out["sequential_official_s"] = round(one["seconds"] * members, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "sevirlr"])
    parser.add_argument("--members", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--solvers", nargs="+", default=["ddim-50", "ddpm-1000", "dpmpp-20"])
    parser.add_argument("--align", action="store_true", help="knowledge-alignment guidance at every step")
    parser.add_argument("--max-steps", type=int, default=20, help="time at most this many steps, extrapolate the rest")
    args = parser.parse_args()
    results = [isolated("benchmarks.sample", "measure", preset=p, members=m, solver=s, aligned=args.align,
                        max_steps=args.max_steps)
               for p in args.presets for m in args.members for s in args.solvers]
    summary = {}
    for p in args.presets:
        rows = {(r.get("members"), r.get("solver")): r for r in results if r.get("preset") == p and "error" not in r}
        for m in args.members:
            fast, official = rows.get((m, "ddim-50")), rows.get((m, "ddpm-1000"))
            if fast and official:
                summary[f"{p}/{m}_members_ddim50_speedup_vs_sequential_ddpm1000"] = round(
                    official["sequential_official_s"] / fast["seconds"], 1)
    emit({"benchmark": "sample", "aligned": args.align, "results": results, "summary": summary})


if __name__ == "__main__":
    main()
