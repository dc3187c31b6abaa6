"""Batches in NTHWC float32 on 0–1, as pure functions of (seed, batch index).

`EpochBatches.batch(i)` is global micro-batch `i` of an endless sequence of epochs: epoch `i // per_epoch` visits
the items in a permutation seeded by (seed, epoch); data-parallel rank r takes every world_size-th batch of that
order, so ranks see disjoint items and the same number of batches. Augmentation draws come from a generator
seeded by (seed, epoch, item), so any batch can be rebuilt exactly — this is what makes a resumed run see the
same data as an uninterrupted one.

Augmentation (official `sevir_torch_wrap.py`), one transform per sequence applied to all its frames:
"0" none; "1" horizontal and vertical flips (p = ½ each) and a rotation by a uniform angle in [−180°, 180°]
(nearest neighbour, zero fill); "2" the flips and a rotation by a multiple of 90°.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import numpy as np
from scipy import ndimage

AUG_MODES = ("0", "1", "2")


@dataclass(frozen=True)
class Transform:
    """One augmentation draw: mirror the columns, then the rows, then turn (by quarter turns or a free angle)."""

    flip_columns: bool = False  # reverse W
    flip_rows: bool = False  # reverse H
    quarter_turns: int = 0  # np.rot90 over (H, W), counter-clockwise
    angle: Optional[float] = None  # degrees, free rotation (mode "1"); None: none

    @property
    def orientation(self) -> Optional[int]:
        """Which of the square's 8 symmetries this is (0 = identity; 4 + k = a mirror image turned k quarters), or
        None for a free-angle rotation. Mirroring rows equals mirroring columns then turning half a turn, so the 16
        (flip, flip, turns) draws of mode "2" give these 8 distinct images."""
        if self.angle is not None:
            return None
        turns = (self.quarter_turns + 2 * self.flip_rows) % 4
        return 4 * (self.flip_columns != self.flip_rows) + turns


IDENTITY = Transform()
#: distinct images per sequence under each augmentation mode (None: unbounded)
ORIENTATIONS = {"0": 1, "1": None, "2": 8}


def draw_transform(mode: str, rng: np.random.Generator) -> Transform:
    """The transform of augmentation `mode` for one sequence, drawn from `rng`."""
    if mode == "0":
        return IDENTITY
    if mode not in AUG_MODES:
        raise ValueError(f"unknown aug_mode {mode!r}; valid: {', '.join(AUG_MODES)}")
    flip_columns = bool(rng.random() < 0.5)
    flip_rows = bool(rng.random() < 0.5)
    if mode == "2":
        return Transform(flip_columns, flip_rows, quarter_turns=int(rng.integers(0, 4)))
    return Transform(flip_columns, flip_rows, angle=float(rng.uniform(-180.0, 180.0)))


def apply_transform(seq: np.ndarray, transform: Transform) -> np.ndarray:
    """`transform` applied to every frame of one sequence (T, H, W, C)."""
    if transform == IDENTITY:
        return seq
    out = seq
    if transform.flip_columns:
        out = out[:, :, ::-1]
    if transform.flip_rows:
        out = out[:, ::-1]
    if transform.angle is None:
        out = np.rot90(out, k=transform.quarter_turns, axes=(1, 2))
    else:
        out = ndimage.rotate(out, transform.angle, axes=(2, 1), reshape=False, order=0, mode="constant", cval=0.0)
    return np.ascontiguousarray(out)


def augment(seq: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    """Apply augmentation `mode` to one sequence (T, H, W, C)."""
    return apply_transform(seq, draw_transform(mode, rng))


class EpochBatches:
    """Random-access training batches (B, T, H, W, C) over a `SequenceSet`."""

    def __init__(self, items, batch_size: int, *, seed: int, aug_mode: str = "0", rank: int = 0,
                 world_size: int = 1, drop_last: bool = True):
        if aug_mode not in AUG_MODES:
            raise ValueError(f"unknown aug_mode {aug_mode!r}; valid: {', '.join(AUG_MODES)}")
        self.items, self.batch_size, self.seed, self.aug_mode = items, int(batch_size), int(seed), aug_mode
        self.rank, self.world_size = int(rank), int(world_size)
        per_epoch_all = len(items) // (self.batch_size * self.world_size) if drop_last else \
            -(-len(items) // (self.batch_size * self.world_size))
        if per_epoch_all < 1:
            raise ValueError(f"{len(items)} items cannot fill one batch of {self.batch_size} on "
                             f"{self.world_size} worker(s)")
        self.batches_per_epoch = per_epoch_all

    def indices(self, index: int) -> np.ndarray:
        """Item indices of global micro-batch `index` for this rank."""
        epoch, position = divmod(int(index), self.batches_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.items))
        start = (position * self.world_size + self.rank) * self.batch_size
        chosen = order[start:start + self.batch_size]
        if len(chosen) < self.batch_size:  # only without drop_last: wrap around to keep the batch full
            chosen = np.concatenate([chosen, order[:self.batch_size - len(chosen)]])
        return chosen

    def draws(self, index: int) -> List[Tuple[int, Transform]]:
        """(item index, augmentation) of each sequence of global micro-batch `index`, without reading any data."""
        epoch = int(index) // self.batches_per_epoch
        return [(int(item), draw_transform(self.aug_mode, np.random.default_rng([self.seed, epoch, int(item)])))
                for item in self.indices(index)]

    def sequence(self, item: int, transform: Transform) -> np.ndarray:
        """Item `item` (T, H, W, C) under `transform`."""
        return apply_transform(self.items[int(item)], transform)

    def batch(self, index: int) -> np.ndarray:
        out = [self.sequence(item, transform) for item, transform in self.draws(index)]
        return np.stack(out).astype(np.float32, copy=False)


def iterate_batches(items, batch_size: int, limit: Optional[int] = None) -> Iterator[np.ndarray]:
    """Items in order, unaugmented, `batch_size` at a time (last batch may be short); at most `limit` batches."""
    count = 0
    for start in range(0, len(items), batch_size):
        if limit is not None and count >= limit:
            return
        yield np.stack([items[i] for i in range(start, min(start + batch_size, len(items)))])
        count += 1
