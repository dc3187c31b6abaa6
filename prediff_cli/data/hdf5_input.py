"""Radar frames from a plain HDF5 file: the SEVIR layout, a single (T, H, W) sequence, or one frame with its time.

Accepted layouts of the `vil` dataset (`variable`):
* SEVIR: (N, H, W, T) uint8 digital VIL 0–255 — `event` picks N;
* a single sequence: (T, H, W), uint8 0–255 or float. Floats whose maximum over the whole sequence is ≤ 1 are
  taken as the 0–1 scale, larger floats as the digital 0–255 scale (the scan is bounded: `vil_scale`);
* one frame (H, W) or (1, H, W), for a folder of one file per time (`frame_folder`): its time is a `time_utc`
  attribute or dataset (ISO UTC), or the ODIM-style `what` group's `date` (YYYYMMDD) and `time` (HHMMSS).
When the file sits in a SEVIR(-LR) tree (root/data/vil/YEAR/x.h5 next to root/CATALOG.csv), the catalog gives the
frames' UTC times and the grid corners. Otherwise a `time_utc` dataset in the file (ISO UTC time of frame 0 of each
event) gives the times; failing both, times are None and the caller supplies a reference time.
Declared shapes and types are checked before any value is read; any library failure on the file is one line.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from prediff.errors import InputError
from prediff.io.grid import Grid

from .catalog import find_event
from .frame_times import plan_frames
from .sevir import FRAME_MINUTES, frame_time
from prediff.vil_scale import check_scan_size, scale_of_units, to_model_scale

#: bounds on what an input file may declare before frames are read (a crafted file can declare anything)
MAX_SIDE, MAX_FRAMES = 4096, 100_000


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _catalog_metadata(path: Path, event: int, start: int, in_len: int, shape):
    """(context times, grid of `shape` (H, W) pixels) from the SEVIR catalog above `path`, or (None, None)."""
    parts = path.resolve().parts
    if "data" not in parts:
        return None, None
    i = len(parts) - 1 - parts[::-1].index("data")
    root = Path(*parts[:i])
    catalog = root / "CATALOG.csv"
    if not catalog.is_file():
        return None, None
    try:
        record = find_event(catalog, Path(*parts[i + 1:]).as_posix(), event)
    except InputError:
        return None, None
    if record is None:
        return None, None
    times = [frame_time(record, start + k) for k in range(in_len)]
    try:
        return times, Grid.from_corners(record.corners, record.proj, *shape)
    except ValueError as exc:
        raise InputError(f"{catalog}: the grid of {path.name} is malformed ({exc})") from None


def _iso_time(value, path: Path) -> dt.datetime:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{path}: time_utc {text!r} is not an ISO date-time") from None
    return when if when.tzinfo is None else (when - when.utcoffset()).replace(tzinfo=None)


def _embedded_times(h5, path: Path, event: int, start: int, in_len: int):
    """Frame times from a `time_utc` dataset in the file itself (UTC of frame 0, one per event), or None."""
    node = h5.get("time_utc")
    if not isinstance(node, h5py.Dataset) or node.size > MAX_FRAMES or node.dtype.kind not in "SUO":
        return None
    values = np.atleast_1d(node[()])
    if event >= len(values):
        return None
    first = _iso_time(values[event], path)
    return [first + dt.timedelta(minutes=FRAME_MINUTES * (start + k)) for k in range(in_len)]


def _dataset(h5, path: Path, variable: str):
    node = h5.get(variable)
    if not isinstance(node, h5py.Dataset):
        raise InputError(f"{path} has no {variable!r} dataset (found: {', '.join(sorted(h5.keys())) or 'nothing'}"
                         "); choose one with --variable")
    if node.dtype.kind not in "uif" or node.dtype.itemsize > 8:
        raise InputError(f"{variable!r} in {path} has dtype {node.dtype}; expected uint8 or float")
    return node


def read_hdf5_input(path: Path, variable: str, event: int, start: int, in_len: int, out_len: int):
    """(context, truth or None, context times or None, grid or None) of a SEVIR or (T, H, W) HDF5 file."""
    try:
        with h5py.File(path, "r") as h5:
            return _read(h5, path, variable, event, start, in_len, out_len)
    except (InputError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - any library failure on an outside file is "cannot read"
        raise InputError(f"cannot read {path}: {_one_line(exc)}") from None


def _read(h5, path: Path, variable: str, event: int, start: int, in_len: int, out_len: int):
    vil = _dataset(h5, path, variable)
    if vil.ndim == 4:
        n, h, w, t = vil.shape
        if event >= n:
            raise InputError(f"--event {event} is out of range: {path} holds {n} event(s) (0..{n - 1})")
    elif vil.ndim == 3:
        if event != 0:
            raise InputError(f"--event {event} given, but {path} holds a single (T,H,W) sequence")
        t, h, w = vil.shape
    else:
        raise InputError(f"{variable!r} in {path} has shape {vil.shape}; expected (N,H,W,T) or (T,H,W)")
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE and 1 <= t <= MAX_FRAMES):
        raise InputError(f"{variable!r} in {path} declares {h}x{w} pixels and {t} frames; expected 1..{MAX_SIDE} "
                         f"pixels a side and 1..{MAX_FRAMES} frames")

    def window(a: int, b: int) -> np.ndarray:
        return np.moveaxis(vil[event, :, :, a:b], -1, 0) if vil.ndim == 4 else vil[a:b]

    plan = plan_frames(path, t, None, start, in_len, out_len)
    last = (plan.truth or plan.context)[-1] + 1
    frames = window(plan.context[0], last)
    scale = "digital"
    if vil.dtype.kind == "f":  # 0-1 or 0-255: told by the whole sequence's maximum, read in slabs
        check_scan_size(t * h * w, f"{variable!r} in {path}", "store it as uint8 (digital 0-255) or as NetCDF with "
                        "units or valid_max")
        slab = max(1, (1 << 24) // max(h * w, 1))
        peak = max(float(np.nanmax(window(a, min(a + slab, t)), initial=0.0)) for a in range(0, t, slab))
        scale = "unit" if peak <= 1.0 else "digital"
    scaled = to_model_scale(frames, scale, f"{variable!r} in {path}",
                            hint="; physical VIL in kg m-2: use a NetCDF file with units 'kg m-2'")
    context = np.ascontiguousarray(scaled[:in_len])
    truth = np.ascontiguousarray(scaled[in_len:in_len + out_len]) if plan.truth is not None else None
    times, grid = _catalog_metadata(path, event, start, in_len, (h, w)) if vil.ndim == 4 else (None, None)
    if times is None:
        times = _embedded_times(h5, path, event, start, in_len)
    return context, truth, times, grid


# ------------------------------------------------------------------------------------------------------------------
# one frame per file


@dataclass
class Hdf5Frame:
    """One frame's time, size and scale, read from an HDF5 file's metadata."""

    path: Path
    variable: str
    time: dt.datetime
    height: int
    width: int
    scale: str  # "physical", "digital" or "float" (0-1 or 0-255: told by the frames used together)

    def values(self) -> np.ndarray:
        try:
            with h5py.File(self.path, "r") as h5:
                raw = _dataset(h5, self.path, self.variable)[()]
        except (InputError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot read {self.path}: {_one_line(exc)}") from None
        return np.asarray(raw, dtype=np.float64).reshape(self.height, self.width)


def _frame_time(h5, node, path: Path) -> dt.datetime:
    for holder in (node, h5):
        if "time_utc" in holder.attrs:
            return _iso_time(np.atleast_1d(holder.attrs["time_utc"])[0], path)
    stamp = h5.get("time_utc")
    if isinstance(stamp, h5py.Dataset) and 1 <= stamp.size <= MAX_FRAMES and stamp.dtype.kind in "SUO":
        return _iso_time(np.atleast_1d(stamp[()])[0], path)
    what = h5.get("what")
    if isinstance(what, h5py.Group) and "date" in what.attrs and "time" in what.attrs:
        text = "".join(v.decode("ascii", "replace") if isinstance(v, bytes) else str(v)
                       for v in (np.atleast_1d(what.attrs["date"])[0], np.atleast_1d(what.attrs["time"])[0]))
        try:
            return dt.datetime.strptime(text.strip(), "%Y%m%d%H%M%S")
        except ValueError:
            raise InputError(f"{path}: what/date and what/time {text!r} are not YYYYMMDD and HHMMSS") from None
    raise InputError(f"{path} carries no time: one file per time needs a time_utc attribute (ISO UTC) or an "
                     "ODIM what/date + what/time")


def hdf5_frame(path: Path, variable: str) -> Hdf5Frame:
    """The metadata of a one-frame HDF5 file ((H, W) or (1, H, W) `variable`), checked."""
    try:
        with h5py.File(path, "r") as h5:
            node = _dataset(h5, path, variable)
            shape = node.shape[1:] if node.ndim == 3 and node.shape[0] == 1 else node.shape
            if len(shape) != 2:
                raise InputError(f"{variable!r} in {path} has shape {node.shape}; a file of a folder holds one "
                                 "frame, (H, W) or (1, H, W)")
            h, w = shape
            if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
                raise InputError(f"{variable!r} in {path} declares {h}x{w} pixels; expected 1..{MAX_SIDE} a side")
            units = node.attrs.get("units")
            scale = scale_of_units(units.decode() if isinstance(units, bytes) else units)
            if scale is None:
                raise InputError(f"{variable!r} in {path} has units {units!r}; expected 'kg m-2' or '1'")
            if scale == "digital" and node.dtype.kind == "f":
                scale = "float"
            return Hdf5Frame(path, variable, _frame_time(h5, node, path), int(h), int(w), scale)
    except (InputError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read {path}: {_one_line(exc)}") from None

