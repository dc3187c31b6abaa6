"""Training throughput: steps/s and peak RSS of each trainer at each preset, compiled vs PyNative.

    python -m benchmarks.train [--presets tiny small sevirlr] [--modes jit pynative] [--steps 6]
                               [--micro-batches 1] [--recompute LEVEL ...] [--latent-cache off warm]

Each (preset, trainer, mode, micro-batch, recompute level) runs `run_training` in its own process (total batch =
micro-batch, so no accumulation) on a small
synthetic dataset; the latent trainers get a randomly initialised VAE of the same preset. Steps/s is the median
of the per-step rates after the first two steps (which include graph compilation); `first_steps_s` is the
wall time of those two. PyNative is `PREDIFF_JIT=0`. Without `--recompute` every trainer keeps its preset's
recompute level (the `sevirlr` UNet trainer: 3, block by block, keeping the linear layers' outputs); `recompute` and
`keep_linear_outputs` in the JSON are what ran. `--latent-cache warm` (latent trainers) first fills a latent cache
with every micro-batch the run will take, in a process of its own, then trains from it (`cached_share_min`: 1.0 when
no step encoded anything).
"""
from __future__ import annotations

import argparse

from benchmarks.measure import emit, isolated


def prefill(preset: str, component: str, values: dict, vae_ckpt: str, batches: int) -> dict:
    """Fill a latent cache with the first `batches` training micro-batches (what `measure` will train on)."""
    from pathlib import Path

    from prediff.config import load_config
    from prediff.pipelines.latents import frozen, jit_encoder
    from prediff.pipelines.training.run import (Distributed, FrozenVAE, _training_data, cached_training_data,
                                                train_section)
    from prediff.runtime import setup_runtime

    cfg = load_config(preset, values=values)
    setup_runtime(cfg.device, cfg.seed)
    vae = FrozenVAE.read(Path(vae_ckpt), cfg)
    train_data, _, _ = _training_data(cfg, component, Distributed())
    source = cached_training_data(train_data, cfg, train_section(cfg, component), jit_encoder(frozen(vae.network())),
                                  vae)
    for index in range(batches):
        source.batch(index)
    return {"slots": source.cache.filled()}


def measure(preset: str, component: str, mode: str, steps: int, data: str, micro_batch: int = 1,
            recompute=None, latent_cache: str = "off") -> dict:
    import json
    import os
    import shutil
    import tempfile
    import time
    from pathlib import Path

    os.environ["PREDIFF_JIT"] = "1" if mode == "jit" else "0"
    import prediff_models as models
    from prediff.config import load_config
    from prediff.config.schema import to_plain
    from prediff.io.checkpoint import Checkpoint, net_weights, save_checkpoint
    from prediff.pipelines.training.run import TrainRequest, run_training

    section = {"vae": "train_vae", "unet": "train_diffusion", "align": "train_align"}[component]
    values = {"data.root": data, f"{section}.micro_batch_size": micro_batch,
              f"{section}.total_batch_size": micro_batch,
              f"{section}.log_every": 1, f"{section}.val_every": 10**6, f"{section}.ckpt_every": 10**6}
    if recompute is not None:
        values[f"{section}.recompute"] = recompute
    cfg = load_config(preset, values=values)
    recompute = getattr(cfg, section).recompute
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:  # the run's checkpoints are GBs at `sevirlr`: never leave them behind
        vae_ckpt = None
        if component != "vae":
            vae = models.build("vae", cfg.model_kwargs("vae"))
            vae_ckpt = save_checkpoint(work / "vae.ckpt", Checkpoint(component="vae",
                                                                      model_kwargs=cfg.model_kwargs("vae"),
                                                                      model=net_weights(vae), config=to_plain(cfg)))
            del vae
        if latent_cache == "warm":  # every micro-batch of the run already encoded, as in the epochs after the first
            values[f"{section}.latent_cache"] = str(work / "latents")
            filled = isolated("benchmarks.train", "prefill", preset=preset, component=component, values=values,
                              vae_ckpt=str(vae_ckpt), batches=steps)
            if "error" in filled:
                raise RuntimeError(f"prefilling the latent cache failed: {filled['error']}")
            cfg = load_config(preset, values=values)
        start = time.perf_counter()
        run_training(TrainRequest(component=component, config=cfg, run_dir=work / "run", steps=steps,
                                  vae_checkpoint=vae_ckpt))
        total = time.perf_counter() - start
        records = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rates = sorted(r["it_s"] for r in records if "it_s" in r and r["step"] > 2)
    steady = rates[len(rates) // 2] if rates else None
    cached = [r["cached"] for r in records if "cached" in r]
    return {"preset": preset, "trainer": component, "mode": mode, "micro_batch": micro_batch,
            "recompute": recompute, "keep_linear_outputs": getattr(cfg, section).keep_linear_outputs,
            "latent_cache": latent_cache, "cached_share_min": min(cached) if cached else None, "steps": steps,
            "steps_per_s": steady, "s_per_step": round(1.0 / steady, 3) if steady else None,
            "first_steps_s": round(total - (steps - 2) / steady, 2) if steady else None,
            "wall_s_incl_setup_and_final_checkpoint": round(total, 2)}


def main() -> None:
    import shutil
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "sevirlr"])
    parser.add_argument("--modes", nargs="+", default=["jit", "pynative"])
    parser.add_argument("--trainers", nargs="+", default=["vae", "unet", "align"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[1])
    parser.add_argument("--recompute", type=int, nargs="+", default=[None], choices=[0, 1, 2, 3],
                        help="activation recomputation levels to measure (train_*.recompute; default: the preset's)")
    parser.add_argument("--latent-cache", nargs="+", default=["off"], choices=["off", "warm"],
                        help="latent trainers: 'warm' trains from a latent cache already holding every micro-batch "
                             "(the steady state of train_*.latent_cache after the first epochs)")
    args = parser.parse_args()

    from prediff.data.synthetic import write_synthetic_dataset

    scratch = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        data = write_synthetic_dataset(scratch / "synthetic", events=12, seed=0)
        results = [isolated("benchmarks.train", "measure", preset=preset, component=component, mode=mode,
                            steps=args.steps, data=str(data), micro_batch=micro, recompute=level, latent_cache=cache)
                   for preset in args.presets for component in args.trainers for mode in args.modes
                   for micro in args.micro_batches for level in args.recompute
                   for cache in (args.latent_cache if component != "vae" else ["off"])]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    emit({"benchmark": "train", "results": results})


if __name__ == "__main__":
    main()
