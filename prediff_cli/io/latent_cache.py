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
later. The cache is a file from outside like any other, and is checked when it is opened, before a trainer writes
anything: the folder and its four files must be themselves — no symlinks (they are opened with `O_NOFOLLOW`, the
files relative to the opened folder, so nothing is read or written through a link), no FIFOs or devices —,
`meta.json` at most 64 KiB, the file sizes those of the shapes `meta.json` declares and the caller expects, every
flag 0 or 1. A cache that fails is refused with one line (delete the folder to rebuild it).

A filled slot is used only if its values are ones an encoder can have written (`plausible_moments`): finite,
posterior means within ±`MEAN_LIMIT`, log-variances within `LOGVAR_RANGE`, not all zero (what a slot whose data
never reached the disk reads as), intensities within 0–1. Anything else is treated as missing and encoded again.
An encoding outside those bounds is not stored (it is encoded again whenever it is needed), so the bounds never make
a run train on anything but its encoder's output.
"""
from __future__ import annotations

import errno
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
from .untrusted import open_regular_fd, read_bounded

FORMAT = "prediff-latent-cache"
VERSION = 2
MAX_META_BYTES = 1 << 16
FILES = ("moments.f32", "intensity.f32", "filled.u8")
_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync

# Bounds of a stored slot (see the module docstring). Posterior means: the VAE is trained with a KL pull toward
# N(0, 1) and its latents are the diffusion model's data, whose noise schedule assumes unit-scale values; the bundled
# demo VAE's means on synthetic storms (and on all-empty and all-full frames) stay within ±25, so 1,000 is 40 times
# that — a mean beyond it is damage (a flipped exponent bit gives 1e30). Log-variances: wherever they are used they
# are clamped to [-30, 20] (the official posterior), so every value below -30 acts as -30; the demo VAE reaches
# -30.3 (its posteriors are sharp: the KL weight is 1e-6). The range below leaves 70 either side of the clamp.
MEAN_LIMIT = 1.0e3
LOGVAR_RANGE = (-100.0, 90.0)


def plausible_moments(moments: np.ndarray, intensity: np.ndarray) -> bool:
    """Whether slots (…, h, w, 2L) (channels [:L] posterior mean, [L:] log-variance) with their frames' mean
    intensities (…) on 0–1 hold values an encoder can have written: finite, means within ±`MEAN_LIMIT`,
    log-variances within `LOGVAR_RANGE`, no slot all zeros (an unwritten part of the sparse file)."""
    moments = np.asarray(moments, np.float32)
    intensity = np.asarray(intensity, np.float32)
    if not (np.isfinite(moments).all() and np.isfinite(intensity).all()):
        return False
    if intensity.size and not (intensity.min() >= 0.0 and intensity.max() <= 1.0):
        return False
    half = moments.shape[-1] // 2
    mean, logvar = moments[..., :half], moments[..., half:]
    if mean.size and np.abs(mean).max() > MEAN_LIMIT:
        return False
    if logvar.size and not (LOGVAR_RANGE[0] <= logvar.min() and logvar.max() <= LOGVAR_RANGE[1]):
        return False
    slots = moments.reshape((-1,) + moments.shape[-3:])
    return not any(not slot.any() for slot in slots)


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

    def __init__(self, folder: Path, shape: CacheShape, fp: str):
        """Open the cache in `folder` (made by `open`) and check it; see the module docstring."""
        self.folder, self.shape = folder, shape
        self._fds, self._dir = {}, None
        try:
            self._dir = _open_folder(folder)
            for name in FILES:
                self._fds[name] = _open_inside(self._dir, folder, name, os.O_RDWR)
            self._check(fp)
        except BaseException:
            self.close()
            raise
        self.hits = self.misses = 0

    # ---------------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path, fp: str, shape: CacheShape, description: Optional[dict] = None) -> "LatentCache":
        """The cache of fingerprint `fp` under `root`, created (empty, sparse) if absent. `description`: extra
        provenance written into a new cache's meta.json (e.g. the VAE checkpoint path)."""
        root = Path(root)
        folder = root / fp[:16]
        if not os.path.lexists(folder):
            cls._create(root, folder, fp, shape, description or {})
        return cls(folder, shape, fp)

    @staticmethod
    def _create(root: Path, folder: Path, fp: str, shape: CacheShape, description: dict) -> None:
        def create(path: Path):  # a new file of our own: never through a link left in its place
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)

        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = root / f".{fp[:16]}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for name, size in shape.sizes().items():
                fd = create(tmp / name)
                try:
                    os.ftruncate(fd, size)  # sparse: disk is used only by the slots written
                finally:
                    os.close(fd)
            meta = {"format": FORMAT, "version": VERSION, "fingerprint": fp, **shape.as_meta(),
                    "full_size_bytes": sum(shape.sizes().values()), **description}
            with os.fdopen(create(tmp / "meta.json"), "w") as f:
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

    def _check(self, fp: str) -> None:
        folder, shape = self.folder, self.shape
        try:
            meta = json.loads(read_bounded("meta.json", MAX_META_BYTES, "meta.json", follow_symlinks=False,
                                           dir_fd=self._dir))
        except InputError as exc:
            raise _damaged(folder, str(exc)) from None
        except ValueError as exc:
            raise _damaged(folder, f"meta.json: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise _damaged(folder, "meta.json does not describe a prediff latent cache")
        if meta.get("version") != VERSION:
            raise _damaged(folder, f"format version {meta.get('version')!r}, this prediff reads {VERSION}")
        if meta.get("fingerprint") != fp:
            raise _damaged(folder, "it was made for another VAE or other frames")
        declared = {k: meta.get(k) for k in shape.as_meta()}
        if declared != shape.as_meta():
            raise _damaged(folder, f"it declares {declared}, expected {shape.as_meta()}")
        for name, size in shape.sizes().items():
            actual = os.fstat(self._fds[name]).st_size
            if actual != size:
                raise _damaged(folder, f"{name} holds {actual} bytes, expected {size}")
        # every flag now, so that a bad one refuses the run before a trainer writes anything (not at the batch that
        # meets it); one byte per slot
        flags = self._read("filled.u8", 0, shape.frames * shape.orientations, np.uint8)
        bad = np.flatnonzero(flags > 1)
        if bad.size:
            raise _damaged(folder, f"slot flag {int(flags[bad[0]])}")

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
            raise _damaged(self.folder, f"slot flag {flag}")
        return flag

    def get(self, frames: Sequence[int], orientation: int) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(moments (T, h, w, 2L), intensity (T,)) of `frames` in `orientation` if every slot is filled and holds
        plausible values (`plausible_moments`), else None."""
        slots = self._slots(frames, orientation)
        if not all(self._flag(int(s)) for s in slots):
            self.misses += 1
            return None
        size = self.shape.slot
        moments = np.stack([self._read("moments.f32", 4 * int(s) * size, size, "<f4") for s in slots])
        intensity = np.array([self._read("intensity.f32", 4 * int(f), 1, "<f4")[0] for f in frames], np.float32)
        if not plausible_moments(moments.reshape((len(slots),) + self.shape.moments), intensity):
            self.misses += 1
            return None
        self.hits += 1
        return moments.reshape((len(slots),) + self.shape.moments).astype(np.float32), intensity

    def put(self, frames: Sequence[int], orientation: int, moments: np.ndarray, intensity: np.ndarray) -> None:
        """Store `frames` in `orientation`: moments (T, h, w, 2L), intensity (T,). A frame whose values `get` would
        not take back (`plausible_moments`) is not stored: it is encoded again whenever it is needed."""
        slots = self._slots(frames, orientation)
        expected = (len(slots),) + self.shape.moments
        if moments.shape != expected or intensity.shape != (len(slots),):
            raise ValueError(f"slot shapes {moments.shape}, {intensity.shape}; expected {expected}, ({len(slots)},)")
        moments = np.ascontiguousarray(moments, "<f4")
        intensity = np.ascontiguousarray(intensity, "<f4")
        keep = [i for i in range(len(slots)) if plausible_moments(moments[i], intensity[i:i + 1])]
        size = self.shape.slot
        try:
            for i in keep:
                self._write("moments.f32", 4 * int(slots[i]) * size, moments[i])
                self._write("intensity.f32", 4 * int(frames[i]), intensity[i:i + 1])
            _datasync(self._fds["moments.f32"])
            _datasync(self._fds["intensity.f32"])
            for i in keep:
                self._write("filled.u8", int(slots[i]), np.ones(1, np.uint8))
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
        if self._dir is not None:
            os.close(self._dir)
            self._dir = None


def _damaged(folder: Path, why: str) -> InputError:
    return InputError(f"the latent cache {folder} is unusable ({why}); delete that folder to rebuild it, or set "
                      "latent_cache to another directory")


def _open_folder(folder: Path) -> int:
    """A descriptor of the cache folder itself, refusing a symlink in its place."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(folder, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = "a symbolic link" if os.path.islink(folder) else "not a directory"
            raise _damaged(folder, f"the folder is {kind}") from None
        raise InputError(f"cannot open the latent cache {folder}: {exc.strerror or exc}") from None


def _open_inside(folder_fd: int, folder: Path, name: str, flags: int) -> int:
    """One of the cache's files, opened relative to the folder's descriptor: a regular file, not a symlink."""
    try:
        return open_regular_fd(name, flags, name, follow_symlinks=False, dir_fd=folder_fd)
    except InputError as exc:
        raise _damaged(folder, str(exc)) from None
