"""A disk cache of the frozen VAE's encodings of training frames, filled as training meets them.

The latent trainers (train-diffusion, train-align) encode every micro-batch's 13 frames with a VAE that never
changes; at the paper size that is a quarter of a UNet train step. The VAE codes frames one at a time, and under
augmentation "0" or "2" a sequence only ever appears in finitely many orientations (1, or the square's 8 symmetries)
applied to all its frames alike, so each (frame, orientation) needs encoding once per VAE — and a frame shared by
overlapping sequences of one event (a 25-frame event gives three 13-frame sequences, 39 frames for 25) once in all.
This store keeps, per (frame, orientation), the posterior moments the encoder returned and, per frame, its mean
intensity (the alignment target, unchanged by flips and quarter turns).

Layout of one cache (a folder `<root>/<fingerprint[:16]>/`, so one root serves many VAEs and datasets):

* `meta.json` — format, version, the full fingerprint and the shapes below;
* `moments.f32` — float32 (frames, orientations, h, w, 2L), little-endian, C order; a sparse file whose untouched
  slots read as zeros;
* `intensity.f32` — float32 (frames,): the frame's mean pixel on 0–1;
* `filled.u8` — uint8 (frames, orientations): 1 once the slot's moments (and the frame's intensity) are on disk.

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
VERSION = 2
MAX_META_BYTES = 1 << 16
FILES = ("moments.f32", "intensity.f32", "filled.u8")
_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def fingerprint(vae_weights_sha256: str, frame_keys: Sequence[str], frame_shape: Tuple[int, ...]) -> str:
    """sha256 naming what a cache holds: the VAE's weights, the frames (in slot order) and the frame shape."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "version": VERSION, "vae": vae_weights_sha256,
                         "frame_shape": list(frame_shape), "frames": len(frame_keys)}).encode())
    for key in frame_keys:
        h.update(key.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class CacheShape:
    frames: int
    orientations: int
    moments: Tuple[int, int, int]  # (h, w, 2L) of one frame's posterior moments

    @property
    def slot(self) -> int:
        """float32 values per (frame, orientation)."""
        return int(np.prod(self.moments))

    def sizes(self) -> dict:
        """Bytes of each file."""
        return {"moments.f32": 4 * self.frames * self.orientations * self.slot, "intensity.f32": 4 * self.frames,
                "filled.u8": self.frames * self.orientations}

    def as_meta(self) -> dict:
        return {"frames": self.frames, "orientations": self.orientations, "moments": list(self.moments)}


class LatentCache:
    """One opened cache. `get(frames, orientation)` → (moments (T, h, w, 2L), intensity (T,)) of a sequence's frame
    slots, or None unless all are filled; `put(...)` stores them. Not thread-safe; several processes may share a
    cache (a slot written twice holds the same values, and the flag goes last)."""

    def __init__(self, folder: Path, shape: CacheShape):
        self.folder, self.shape = folder, shape
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
            meta = {"format": FORMAT, "version": VERSION, "fingerprint": fp, **shape.as_meta(),
                    "full_size_bytes": sum(shape.sizes().values()), **description}
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
            raise damaged("it was made for another VAE or other frames")
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
    def _slots(self, frames: Sequence[int], orientation: int) -> np.ndarray:
        frames = np.asarray(frames, dtype=np.int64)
        if frames.ndim != 1 or not (0 <= orientation < self.shape.orientations) or \
                (frames.size and not (0 <= frames.min() and frames.max() < self.shape.frames)):
            raise IndexError(f"slots of frames {frames.tolist()} × orientation {orientation} outside "
                             f"{self.shape.frames} × {self.shape.orientations}")
        return frames * self.shape.orientations + orientation

    def _read(self, name: str, offset: int, count: int, dtype) -> np.ndarray:
        nbytes = count * np.dtype(dtype).itemsize
        data = os.pread(self._fds[name], nbytes, offset)
        if len(data) != nbytes:
            raise InputError(f"the latent cache {self.folder}: {name} is shorter than declared; delete that folder "
                             "to rebuild it")
        return np.frombuffer(data, dtype=dtype)

    def _flag(self, slot: int) -> int:
        flag = int(self._read("filled.u8", slot, 1, np.uint8)[0])
        if flag not in (0, 1):
            raise InputError(f"the latent cache {self.folder} is unusable (slot flag {flag}); delete that folder "
                             "to rebuild it")
        return flag

    def get(self, frames: Sequence[int], orientation: int) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(moments (T, h, w, 2L), intensity (T,)) of `frames` in `orientation` if every slot is filled and finite,
        else None."""
        slots = self._slots(frames, orientation)
        if not all(self._flag(int(s)) for s in slots):
            self.misses += 1
            return None
        size = self.shape.slot
        moments = np.stack([self._read("moments.f32", 4 * int(s) * size, size, "<f4") for s in slots])
        intensity = np.array([self._read("intensity.f32", 4 * int(f), 1, "<f4")[0] for f in frames], np.float32)
        if not (np.isfinite(moments).all() and np.isfinite(intensity).all()):
            self.misses += 1
            return None
        self.hits += 1
        return moments.reshape((len(slots),) + self.shape.moments).astype(np.float32), intensity

    def put(self, frames: Sequence[int], orientation: int, moments: np.ndarray, intensity: np.ndarray) -> None:
        """Store `frames` in `orientation`: moments (T, h, w, 2L), intensity (T,)."""
        slots = self._slots(frames, orientation)
        expected = (len(slots),) + self.shape.moments
        if moments.shape != expected or intensity.shape != (len(slots),):
            raise ValueError(f"slot shapes {moments.shape}, {intensity.shape}; expected {expected}, ({len(slots)},)")
        moments = np.ascontiguousarray(moments, "<f4")
        intensity = np.ascontiguousarray(intensity, "<f4")
        size = self.shape.slot
        try:
            for i, (slot, frame) in enumerate(zip(slots, frames)):
                self._write("moments.f32", 4 * int(slot) * size, moments[i])
                self._write("intensity.f32", 4 * int(frame), intensity[i:i + 1])
            _datasync(self._fds["moments.f32"])
            _datasync(self._fds["intensity.f32"])
            for slot in slots:
                self._write("filled.u8", int(slot), np.ones(1, np.uint8))
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
        flags = self._read("filled.u8", 0, self.shape.frames * self.shape.orientations, np.uint8)
        return int(np.count_nonzero(flags == 1))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
