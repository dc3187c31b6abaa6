"""Training micro-batches as the frozen VAE's encodings, served from a `LatentCache` where it has them.

`CachedLatentBatches.batch(i)` is global micro-batch `i` of an `EpochBatches` — the same items and the same
augmentation draws — already encoded: a sequence whose frames the cache holds in the drawn orientation is read
back; the others are read from the dataset, augmented, encoded (one compiled call for all of them) and stored. The
trainers' noise draws do not depend on where the moments came from, so a run with the cache computes what the run
without it does (up to the encoder's own floating-point differences between batch sizes) and resumes exactly as it
does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np
from mindspore import Tensor

from prediff.data.batches import ORIENTATIONS, EpochBatches
from prediff.io.latent_cache import CacheShape, LatentCache, fingerprint


@dataclass
class EncodedBatch:
    """One micro-batch, encoded: moments (B, T, h, w, 2L) float32 (channels [:L] posterior mean, [L:] log-variance,
    as `SequenceEncoder` returns them), intensity (B, T, 1) float32 (each frame's mean pixel on 0–1); `cached`: how
    many of the B sequences came from the cache."""

    moments: np.ndarray
    intensity: np.ndarray
    cached: int = 0

    def __len__(self) -> int:
        return len(self.moments)


def average_intensity(frames: np.ndarray) -> np.ndarray:
    """(B, T, H, W, C) on 0–1 → per-frame mean (B, T, 1), the alignment target."""
    return frames.mean(axis=(2, 3, 4), dtype=np.float64).astype(np.float32)[..., None]


class CachedLatentBatches:
    """A `BatchSource` of `EncodedBatch`es over `batches`, backed by `cache`; `frames[i]`: the cache's frame slots of
    item i (T,); `encode`: pixels Tensor (n, T, H, W, C) → moments Tensor (n, T, h, w, 2L) (a compiled
    `SequenceEncoder`)."""

    def __init__(self, batches: EpochBatches, cache: LatentCache, frames: np.ndarray, encode: Callable):
        self.batches, self.cache, self.frames, self.encode = batches, cache, frames, encode
        self.batches_per_epoch = batches.batches_per_epoch

    def batch(self, index: int) -> EncodedBatch:
        draws = self.batches.draws(index)
        found: List[Optional[Tuple[np.ndarray, np.ndarray]]] = [
            self.cache.get(self.frames[item], transform.orientation) for item, transform in draws]
        missing = [j for j, slot in enumerate(found) if slot is None]
        if missing:
            pixels = np.stack([self.batches.sequence(*draws[j]) for j in missing]).astype(np.float32, copy=False)
            moments = self.encode(Tensor(pixels)).asnumpy()
            intensity = average_intensity(pixels)[..., 0]
            for k, j in enumerate(missing):
                item, transform = draws[j]
                self.cache.put(self.frames[item], transform.orientation, moments[k], intensity[k])
                found[j] = (moments[k], intensity[k])
        return EncodedBatch(np.stack([slot[0] for slot in found]),
                            np.stack([slot[1] for slot in found])[..., None], cached=len(draws) - len(missing))


def frame_table(items) -> Tuple[List[str], np.ndarray]:
    """The distinct frames of a `SequenceSet` (keys in first-seen order) and each item's frame slots (items, T)."""
    slots, keys, rows = {}, [], []
    for i in range(len(items)):
        row = []
        for key in items.frame_keys(i):
            if key not in slots:
                slots[key] = len(keys)
                keys.append(key)
            row.append(slots[key])
        rows.append(row)
    return keys, np.asarray(rows, dtype=np.int64)


def cached_batches(batches: EpochBatches, root, *, encode: Callable, vae_weights_sha256: str, img_size: int,
                   vae_kwargs: dict, description: Optional[dict] = None) -> CachedLatentBatches:
    """`batches` served encoded through the cache under `root` for its items' frames and this VAE (created if
    absent). Its augmentation must have finitely many orientations ("0" or "2"; the trainer's config check says so
    first)."""
    if ORIENTATIONS.get(batches.aug_mode) is None:
        raise ValueError(f"aug_mode {batches.aug_mode!r} has unboundedly many orientations: nothing can be cached")
    keys, frames = frame_table(batches.items)
    size = img_size // 2 ** (len(vae_kwargs["block_out_channels"]) - 1)  # the VAE's downscale, as it computes it
    # room for all 8 orientations whatever the mode (the files are sparse): runs with aug_mode "0" and "2" share it
    shape = CacheShape(frames=len(keys), orientations=ORIENTATIONS["2"],
                       moments=(size, size, 2 * int(vae_kwargs["latent_channels"])))
    fp = fingerprint(vae_weights_sha256, keys, (img_size, img_size, 1))
    return CachedLatentBatches(batches, LatentCache.open(root, fp, shape, description), frames, encode)
