"""Learning rate as a pure function of the optimizer step (docs/training.md).

Linear warm-up over `round(warmup_ratio · total)` steps from `warmup_min_lr_ratio · lr` to `lr`, then cosine
annealing to `min_lr_ratio · lr` over the remaining steps. Because it depends on nothing but the step, a resumed
run follows exactly the same schedule.
"""
from __future__ import annotations

import math

import numpy as np


def lr_at(step: int, total_steps: int, lr: float, warmup_ratio: float = 0.1, warmup_min_lr_ratio: float = 0.1,
          min_lr_ratio: float = 1e-3) -> float:
    """Learning rate used by optimizer step `step` (0-based) of a run of `total_steps` steps."""
    warmup = int(round(warmup_ratio * total_steps))
    if step < warmup:
        start = warmup_min_lr_ratio * lr
        return start + (lr - start) * step / warmup
    decay_steps = max(total_steps - warmup, 1)
    progress = min(max(step - warmup, 0), decay_steps) / decay_steps
    floor = min_lr_ratio * lr
    return floor + 0.5 * (lr - floor) * (1.0 + math.cos(math.pi * progress))


def lr_table(total_steps: int, lr: float, warmup_ratio: float = 0.1, warmup_min_lr_ratio: float = 0.1,
             min_lr_ratio: float = 1e-3) -> np.ndarray:
    """`lr_at` for every step, float32 (the optimizer indexes it with its own step counter)."""
    return np.array([lr_at(s, total_steps, lr, warmup_ratio, warmup_min_lr_ratio, min_lr_ratio)
                     for s in range(total_steps)], dtype=np.float32)
