"""The SEVIR-LR dataset: events cut into sequences, split as the official code does (`sevir_dataloader.py`).

* An event of `raw_seq_len` frames gives `n = 1 + (raw_seq_len − seq_len) // stride` sequences; sequence k covers
  raw frames [k·stride, k·stride + seq_len). With 25 frames, 13-frame sequences and stride 6: 3 per event.
* Test split: events with `time_utc` after the split date (00:00 UTC), in id order, not shuffled.
* Train + validation pool: the other events, shuffled with a seeded permutation (`shuffle_seed`); validation is
  a seeded random `val_ratio` of the pool's *sequences* (`split_seed`), so one event's sequences can sit on both
  sides, as in the official split. The permutations use NumPy's `default_rng`, not pandas/torch, so the exact
  membership differs from the official code's while following the same rules.
* Frames are read on demand from the HDF5 files (only the slice of one event), so memory does not grow with the
  dataset; values are `vil / 255` as float32 (0–1), laid out (T, H, W, 1).

Frame times: SEVIR events span −120 … +120 minutes around `time_utc`; SEVIR-LR keeps every other 5-minute frame,
so raw frame i is at `time_utc − 120 min + 10·i min`.
"""
from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import h5py
import numpy as np

from prediff.config import DataConfig
from prediff.errors import InputError

from .catalog import EventRecord, read_catalog

FRAME_MINUTES = 10
FIRST_FRAME_OFFSET_MINUTES = -120
SPLITS = ("train", "val", "test")


def frame_time(event: EventRecord, raw_frame: int) -> dt.datetime:
    return event.time_utc + dt.timedelta(minutes=FIRST_FRAME_OFFSET_MINUTES + FRAME_MINUTES * raw_frame)


class _FileCache:
    """A few open HDF5 files (LRU), so streaming reads do not reopen a file per item."""

    def __init__(self, size: int = 8):
        self.size = size
        self.files: "OrderedDict[Path, h5py.File]" = OrderedDict()

    def get(self, path: Path) -> h5py.File:
        handle = self.files.pop(path, None)
        if handle is None:
            try:
                handle = h5py.File(path, "r")
            except OSError as exc:
                raise InputError(f"cannot read {path}: {exc}") from None
            while len(self.files) >= self.size:
                _, old = self.files.popitem(last=False)
                old.close()
        self.files[path] = handle
        return handle

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()
        self.files.clear()


@dataclass(frozen=True)
class SequenceInfo:
    event: EventRecord
    first_frame: int  # raw frame index of the sequence's first frame
    length: int

    @property
    def times(self) -> List[dt.datetime]:
        return [frame_time(self.event, self.first_frame + k) for k in range(self.length)]


class SequenceSet:
    """Random access to the sequences of one split: `seqs[i]` → (T, H, W, 1) float32 on 0–1."""

    def __init__(self, root: Path, items: Sequence[SequenceInfo], files: _FileCache, name: str):
        self.root, self.items, self._files, self.name = root, list(items), files, name

    def __len__(self) -> int:
        return len(self.items)

    def info(self, index: int) -> SequenceInfo:
        return self.items[index]

    def frame_keys(self, index: int) -> List[str]:
        """What each frame of sequence `index` is, independent of the sequence and of its position in the split:
        event id, file, row and raw frame (overlapping sequences of one event share keys)."""
        item = self.items[index]
        stem = f"{item.event.id}|{item.event.file_name}|{item.event.file_index}"
        return [f"{stem}|{item.first_frame + k}" for k in range(item.length)]

    def raw(self, index: int) -> np.ndarray:
        """(T, H, W) uint8 digital VIL of sequence `index`."""
        item = self.items[index]
        handle = self._files.get(self.root / "data" / item.event.file_name)
        if "vil" not in handle:
            raise InputError(f"{handle.filename} has no 'vil' dataset")
        vil = handle["vil"]
        frames = vil[item.event.file_index, :, :, item.first_frame:item.first_frame + item.length]
        if frames.shape[-1] != item.length:
            raise InputError(f"{handle.filename}: event {item.event.id} has {vil.shape[-1]} frames, fewer than "
                             f"{item.first_frame + item.length}")
        return np.ascontiguousarray(np.moveaxis(frames, -1, 0))

    def __getitem__(self, index: int) -> np.ndarray:
        return (self.raw(index).astype(np.float32) / 255.0)[..., None]


class SevirLR:
    """A SEVIR-LR tree (`root/CATALOG.csv`, `root/data/vil/YEAR/*.h5`) cut and split per a `DataConfig`."""

    def __init__(self, cfg: DataConfig):
        if cfg.root is None:
            raise InputError("no dataset given: pass --data DIR (make one with `prediff download synthetic "
                             "--dest DIR`, or fetch SEVIR-LR with `prediff download sevir-lr`)")
        self.root = Path(cfg.root)
        catalog = self.root / "CATALOG.csv"
        if not catalog.is_file():
            raise InputError(f"no dataset at {self.root}: CATALOG.csv is missing (make one with "
                             "`prediff download synthetic --dest DIR`)")
        self.cfg = cfg
        self.events = read_catalog(catalog)
        if not self.events:
            raise InputError(f"{catalog} lists no usable VIL events")
        self._files = _FileCache()
        boundary = dt.datetime.combine(dt.date.fromisoformat(cfg.train_test_split_date), dt.time())
        self.test_events = [e for e in self.events if e.time_utc > boundary]
        pool = [e for e in self.events if e.time_utc <= boundary]
        order = np.random.default_rng(cfg.shuffle_seed).permutation(len(pool))
        self.pool_events = [pool[i] for i in order]

    # ------------------------------------------------------------------------------------------------------------
    def _cut(self, events: Sequence[EventRecord], length: int, stride: int) -> List[SequenceInfo]:
        n = 1 + (self.cfg.raw_seq_len - length) // stride
        return [SequenceInfo(e, k * stride, length) for e in events for k in range(n)]

    def split(self, name: str, frames: bool = False) -> SequenceSet:
        """Sequences (or, with `frames=True`, single frames for the VAE) of split `name`."""
        if name not in SPLITS:
            raise InputError(f"unknown split {name!r}; valid: {', '.join(SPLITS)}")
        length, stride = (1, 1) if frames else (self.cfg.seq_len, self.cfg.stride)
        if name == "test":
            return SequenceSet(self.root, self._cut(self.test_events, length, stride), self._files, name)
        pool = self._cut(self.pool_events, length, stride)
        n_val = int(round(self.cfg.val_ratio * len(pool)))
        perm = np.random.default_rng(self.cfg.split_seed).permutation(len(pool))
        chosen = np.sort(perm[:n_val]) if name == "val" else np.sort(perm[n_val:])
        return SequenceSet(self.root, [pool[i] for i in chosen], self._files, name)

    def close(self) -> None:
        self._files.close()


def open_dataset(cfg: DataConfig) -> SevirLR:
    return SevirLR(cfg)
