"""Where one block-by-block UNet train step (`train_diffusion.recompute: 3`) spends its time.

    python -m benchmarks.train_step_parts [--preset sevirlr] [--micro-batch 1] [--steps 3] [--keep-linear-outputs]

Builds the diffusion trainer of the preset (randomly initialised UNet and frozen VAE, dropout keyed as in training),
runs `--steps` optimizer steps on random sequences and times every graph launch of the last ones, synchronised
(each launch's outputs are read back before the clock stops, which adds a little to every part):

- `vae_encode`: the frozen VAE encoding the micro-batch's 13 frames (not part of the network's forward + backward
  that a timing of the official PyTorch code measures);
- `stem_forward`, `blocks_forward`, `head` (loss + its gradient), `blocks_backward` (each block recomputed and
  differentiated), `stem_backward`: the blockwise gradient (`prediff.pipelines.training.blockwise`), with the
  block parts also split by UNet level;
- `optimizer`: clipping and AdamW (one compiled graph);
- with `--keep-linear-outputs` (`train_diffusion.keep_linear_outputs`) the block backward graphs load the
  convolutions' and linear layers' outputs kept by the forward ones; `stash_mb` is what that kept;
- `host`: the rest of the step (noise drawing, gradient sums on the host, Python).

Prints JSON: seconds per part (median over the timed steps), the step's total and the machine.

`--optimizer` times the optimizer graph's parts alone instead, on gradients shaped like the preset UNet's
parameters: the global norm, clipping (norm included), AdamW (`nn.AdamWeightDecay`), and all three in one graph as
`TrainStep` ran them (`norm`, `clip`, `adamw`, `norm_clip_adamw`), and as it runs them now, the norm computed once
for the log and the clipping (`shared_norm_clip_adamw`).
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

from benchmarks.measure import _sync, emit, isolated


class _Clock:
    """Accumulates synchronised wall time per part name."""

    def __init__(self):
        self.parts = defaultdict(float)

    def wrap(self, name, fn):
        def timed_fn(*args):
            t0 = time.perf_counter()
            out = fn(*args)
            _sync(out)
            self.parts[name] += time.perf_counter() - t0
            return out
        return timed_fn


def measure(preset: str, micro_batch: int, steps: int, keep_linear_outputs: bool = False) -> dict:
    import numpy as np

    import prediff_models as models
    from prediff.config import load_config
    from prediff.pipelines.training.diffusion_task import DiffusionTask

    cfg = load_config(preset, values={"train_diffusion.recompute": 3,
                                      "train_diffusion.micro_batch_size": micro_batch,
                                      "train_diffusion.total_batch_size": micro_batch,
                                      "train_diffusion.keep_linear_outputs": keep_linear_outputs})
    vae = models.build("vae", cfg.model_kwargs("vae"))
    unet = models.build("unet", cfg.model_kwargs("unet"))
    task = DiffusionTask(cfg, unet, vae, accum_steps=1, total_steps=steps + 1)
    step = task.train_steps[0]
    grad = step._gradient
    clock = _Clock()
    task.encode = clock.wrap("vae_encode", task.encode)
    grad._stem_fwd = clock.wrap("stem_forward", grad._stem_fwd)
    grad._stem_bwd = clock.wrap("stem_backward", grad._stem_bwd)
    grad._head = clock.wrap("head", grad._head)
    grad.steps = [(kind, level,
                   clock.wrap(f"blocks_forward.{kind}{level}", fwd) if fwd is not None else None,
                   clock.wrap(f"blocks_backward.{kind}{level}", bwd) if bwd is not None else None, ps)
                  for kind, level, fwd, bwd, ps in grad.steps]
    step._apply_given = clock.wrap("optimizer", step._apply_given)

    d = cfg.data
    rng = np.random.default_rng(0)
    shape = (micro_batch, d.in_len + d.out_len, d.img_size, d.img_size, 1)
    records = []
    for i in range(steps):
        clock.parts.clear()
        batch = rng.random(shape, dtype=np.float32)
        t0 = time.perf_counter()
        task.optimizer_step(i, [batch], rng)
        total = time.perf_counter() - t0
        parts = dict(clock.parts)
        parts["host"] = total - sum(parts.values())
        records.append((total, parts))
    timed = records[1:] if len(records) > 1 else records  # the first step compiles ~40 graphs
    totals = sorted(r[0] for r in timed)
    names = sorted(set().union(*(r[1] for r in timed)))
    median = {n: round(float(np.median([r[1].get(n, 0.0) for r in timed])), 3) for n in names}
    grouped = defaultdict(float)
    for n, v in median.items():
        grouped[n.split(".")[0]] += v
    from prediff_models.kernels.stash import stash_bytes

    return {"preset": preset, "micro_batch": micro_batch, "keep_linear_outputs": keep_linear_outputs,
            "stash_mb": round(stash_bytes() / 2**20, 1), "timed_steps": len(timed),
            "first_step_s": round(records[0][0], 2), "step_s": round(totals[len(totals) // 2], 3),
            "parts_s": {k: round(v, 3) for k, v in sorted(grouped.items(), key=lambda kv: -kv[1])},
            "by_level_s": {n: v for n, v in median.items() if "." in n}}


def optimizer(preset: str, repeats: int = 3) -> dict:
    import mindspore as ms
    import numpy as np
    from mindspore import ParameterTuple, Tensor, nn, ops

    import prediff_models as models
    from prediff.config import load_config
    from prediff.pipelines.training.train_step import global_norm_and_clip
    from prediff_models.kernels import SquareSum
    from benchmarks.measure import timed

    cfg = load_config(preset)
    params = ParameterTuple(models.build("unet", cfg.model_kwargs("unet")).trainable_params())
    rng = np.random.default_rng(0)
    grads = ms.mutable(tuple(Tensor(rng.standard_normal(p.shape).astype(np.float32)) for p in params))
    opt = nn.AdamWeightDecay(params, learning_rate=1e-6, weight_decay=0.01)
    ms.set_recursion_limit(8 * len(params) + 1000)

    def norm(g):
        return ops.sqrt(ops.addn([ops.reduce_sum(ops.square(x)) for x in g]))

    def clip(g):
        return ops.clip_by_global_norm(g, 1.0)

    def adamw(g):
        return opt(g)

    def norm_clip_adamw(g):  # what TrainStep's compiled optimizer step ran before global_norm_and_clip
        n = norm(g)
        opt(clip(g))
        return n

    square_sum = SquareSum()

    def shared_norm_clip_adamw(g):  # what TrainStep runs now: one norm for the log and the clipping
        n, clipped = global_norm_and_clip(g, 1.0, square_sum)
        opt(clipped)
        return n

    graphs = {f.__name__: ms.jit(f) for f in (norm, clip, adamw, norm_clip_adamw, shared_norm_clip_adamw)}
    out = {name: timed(lambda f=f: f(grads), repeats)["min_s"] for name, f in graphs.items()}
    return {"preset": preset, "tensors": len(params), "parameters": int(sum(p.size for p in params)),
            "seconds": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sevirlr")
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--keep-linear-outputs", action="store_true",
                        help="train_diffusion.keep_linear_outputs: load kept outputs instead of recomputing them")
    parser.add_argument("--optimizer", action="store_true", help="time the optimizer graph's parts alone")
    args = parser.parse_args()
    if args.optimizer:
        emit(isolated("benchmarks.train_step_parts", "optimizer", preset=args.preset))
        return
    emit(isolated("benchmarks.train_step_parts", "measure", preset=args.preset, micro_batch=args.micro_batch,
                  steps=args.steps, keep_linear_outputs=args.keep_linear_outputs))


if __name__ == "__main__":
    main()
