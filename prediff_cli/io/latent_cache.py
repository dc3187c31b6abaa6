"""A disk cache of the frozen VAE's encodings of training sequences, filled as training meets them.

The latent trainers (train-diffusion, train-align) encode every micro-batch's 13 frames with a VAE that never
changes; at the paper size that is a quarter of a UNet train step. Under augmentation "0" or "2" a sequence only
ever appears in finitely many orientations (1 or the square's 8 symmetries), so each (sequence, orientation) needs
encoding once per VAE. This store keeps, per slot, the posterior moments the encoder returned and, per sequence,
the frames' mean intensity (the alignment target, unchanged by flips and quarter turns).

Layout of one cache (a folder `<root>/<fingerprint[:16]>/`, so one root serves many VAEs and datasets):

* `meta.json` — format, version, the full fingerprint and the shapes below;
* `moments.f32` — float32 (items, orientations, frames, h, w, 2L), little-endian, C order; a sparse file whose
  untouched slots read as zeros;
* `intensity.f32` — float32 (items, frames): per-frame mean of the 0–1 pixels;
* `filled.u8` — uint8 (items, orientations): 1 once the slot's moments (and the item's intensity) are on disk.

A slot is written data first (fdatasync), flag last, so a crash leaves at worst an unflagged slot, encoded again
later. Everything read back is checked: file sizes against the shapes `meta.json` declares and the caller expects,
flags 0/1, values finite; a cache that fails is refused with one line (delete the folder to rebuild it), a non-finite
slot is treated as missing.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from prediff.errors import InputError, PrediffError

from .atomic import fsync_dir

FORMAT = "prediff-latent-cache"
VERSION = 1
MAX_META_BYTES = 1 << 16
FILES = ("moments.f32", "intensity.f32", "filled.u8")
_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def fingerprint(vae_weights_sha256: str, item_keys: Sequence[str], frame_shape: Tuple[int, ...]) -> str:
    """sha256 naming what a cache holds: the VAE's weights, the sequences (in split order) and the frame shape."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "version": VERSION, "vae": vae_weights_sha256,
                         "frame_shape": list(frame_shape), "items": len(item_keys)}).encode())
    for key in item_keys:
        h.update(key.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class CacheShape:
    items: int
    orientations: int
    frames: int
    moments: Tuple[int, int, int]  # (h, w, 2L) of one frame's posterior moments

    def sizes(self) -> dict:
        """Bytes of each file."""
        slot = self.frames * int(np.prod(self.moments))
        return {"moments.f32": 4 * self.items * self.orientations * slot, "intensity.f32": 4 * self.items * self.frames,
                "filled.u8": self.items * self.orientations}

    def as_meta(self) -> dict:
        return {"items": self.items, "orientations": self.orientations, "frames": self.frames,
                "moments": list(self.moments)}


class LatentCache:
    """One opened cache. `get(item, orientation)` → (moments (frames, h, w, 2L), intensity (frames,)) or None;
    `put(...)` stores a slot. Not thread-safe; several processes may share a cache (a slot written twice holds the
    same values, and the flag goes last)."""

    def __init__(self, folder: Path, shape: CacheShape):
        self.folder, self.shape = folder, shape
        self._slot = shape.frames * int(np.prod(shape.moments))
        self._fds = {}
        try:
            for name in FILES:
                self._fds[name] = os.open(folder / name, os.O_RDWR)
        except OSError as exc:
            self.close()
            raise InputError(f"cannot open the latent cache {folder}: {exc.strerror}") from None
        self.hits = self.misses = 0

    # ---------------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path, fp: str, shape: CacheShape, description: Optional[dict] = None) -> "LatentCache":
        """The cache of fingerprint `fp` under `root`, created (empty, sparse) if absent. `description`: extra
        provenance written into a new cache's meta.json (e.g. the VAE checkpoint path)."""
        root = Path(root)
        folder = root / fp[:16]
        if not folder.exists():
            cls._create(root, folder, fp, shape, description or {})
        cls._check(folder, fp, shape)
        return cls(folder, shape)

    @staticmethod
    def _create(root: Path, folder: Path, fp: str, shape: CacheShape, description: dict) -> None:
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = root / f".{fp[:16]}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for name, size in shape.sizes().items():
                with open(tmp / name, "wb") as f:
                    f.truncate(size)  # sparse: disk is used only by the slots written
            meta = {"format": FORMAT, "version": VERSION, "fingerprint": fp, **shape.as_meta(), **description}
            with open(tmp / "meta.json", "w") as f:
                json.dump(meta, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.rename(tmp, folder)
            except OSError:
                if not folder.is_dir():  # not a lost race with another process creating the same cache
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
            fsync_dir(root)
        except OSError as exc:
            raise PrediffError(f"cannot create a latent cache under {root}: {exc.strerror or exc}") from None

    @staticmethod
    def _check(folder: Path, fp: str, shape: CacheShape) -> None:
        def damaged(why: str) -> InputError:
            return InputError(f"the latent cache {folder} is unusable ({why}); delete that folder to rebuild it, "
                              "or set latent_cache to another directory")

        meta_path = folder / "meta.json"
        try:
            if meta_path.stat().st_size > MAX_META_BYTES:
                raise damaged(f"meta.json is over {MAX_META_BYTES} bytes")
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise damaged(f"meta.json: {getattr(exc, 'strerror', None) or exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise damaged("meta.json does not describe a prediff latent cache")
        if meta.get("version") != VERSION:
            raise damaged(f"format version {meta.get('version')!r}, this prediff reads {VERSION}")
        if meta.get("fingerprint") != fp:
            raise damaged("it was made for another VAE or other sequences")
        declared = {k: meta.get(k) for k in shape.as_meta()}
        if declared != shape.as_meta():
            raise damaged(f"it declares {declared}, expected {shape.as_meta()}")
        for name, size in shape.sizes().items():
            try:
                actual = (folder / name).stat().st_size
            except OSError:
                raise damaged(f"{name} is missing") from None
            if actual != size:
                raise damaged(f"{name} holds {actual} bytes, expected {size}")

    # ---------------------------------------------------------------------------------------------------------
    def _index(self, item: int, orientation: int) -> int:
        if not (0 <= item < self.shape.items and 0 <= orientation < self.shape.orientations):
            raise IndexError(f"slot ({item}, {orientation}) outside {self.shape.items} × {self.shape.orientations}")
        return item * self.shape.orientations + orientation

    def _read(self, name: str, offset: int, count: int, dtype) -> np.ndarray:
        nbytes = count * np.dtype(dtype).itemsize
        data = os.pread(self._fds[name], nbytes, offset)
        if len(data) != nbytes:
            raise InputError(f"the latent cache {self.folder}: {name} is shorter than declared; delete that folder "
                             "to rebuild it")
        return np.frombuffer(data, dtype=dtype)

    def get(self, item: int, orientation: int) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(moments (frames, h, w, 2L), intensity (frames,)) of a filled slot, else None."""
        index = self._index(item, orientation)
        flag = int(self._read("filled.u8", index, 1, np.uint8)[0])
        if flag not in (0, 1):
            raise InputError(f"the latent cache {self.folder} is unusable (slot flag {flag}); delete that folder "
                             "to rebuild it")
        if flag == 0:
            self.misses += 1
            return None
        moments = self._read("moments.f32", 4 * index * self._slot, self._slot, "<f4")
        intensity = self._read("intensity.f32", 4 * item * self.shape.frames, self.shape.frames, "<f4")
        if not (np.isfinite(moments).all() and np.isfinite(intensity).all()):
            self.misses += 1
            return None
        self.hits += 1
        return (moments.reshape((self.shape.frames,) + self.shape.moments).astype(np.float32),
                intensity.astype(np.float32))

    def put(self, item: int, orientation: int, moments: np.ndarray, intensity: np.ndarray) -> None:
        """Store slot (item, orientation): moments (frames, h, w, 2L), intensity (frames,)."""
        index = self._index(item, orientation)
        expected = (self.shape.frames,) + self.shape.moments
        if moments.shape != expected or intensity.shape != (self.shape.frames,):
            raise ValueError(f"slot shapes {moments.shape}, {intensity.shape}; the cache holds {expected}, "
                             f"({self.shape.frames},)")
        try:
            self._write("moments.f32", 4 * index * self._slot, np.ascontiguousarray(moments, "<f4"))
            self._write("intensity.f32", 4 * item * self.shape.frames, np.ascontiguousarray(intensity, "<f4"))
            _datasync(self._fds["moments.f32"])
            _datasync(self._fds["intensity.f32"])
            self._write("filled.u8", index, np.ones(1, np.uint8))
        except OSError as exc:
            raise PrediffError(f"cannot write the latent cache {self.folder}: {exc.strerror or exc}; free space "
                               "there or set latent_cache to another directory (or off)") from None

    def _write(self, name: str, offset: int, array: np.ndarray) -> None:
        data = array.tobytes()
        written = os.pwrite(self._fds[name], data, offset)
        if written != len(data):
            raise OSError(0, f"short write to {name}")

    def filled(self) -> int:
        """Slots filled so far."""
        flags = self._read("filled.u8", 0, self.shape.items * self.shape.orientations, np.uint8)
        return int(np.count_nonzero(flags == 1))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
