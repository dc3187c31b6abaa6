"""The forecast input: 7 context frames (and, when present, 6 truth frames) from an HDF5 or CF NetCDF file.

NetCDF (netCDF-3, or netCDF-4 — an HDF5 file whose variable has netCDF dimensions): see `netcdf_input`; the
variable is (time, y, x), its time coordinate gives the times, its units the scale, its grid mapping the grid.
Accepted layouts of the `vil` dataset (`variable`) of a plain HDF5 file:
* SEVIR: (N, H, W, T) uint8 digital VIL 0–255 — `event` picks N;
* a single sequence: (T, H, W), uint8 0–255 or float. Floats whose maximum is ≤ 1 are taken as already on the
  0–1 scale; larger floats as the digital 0–255 scale.
Context = frames start … start+6; truth = the next 6 frames when the file has them.
When the file sits in a SEVIR(-LR) tree (root/data/vil/YEAR/x.h5 next to root/CATALOG.csv), the catalog gives the
frames' UTC times and the grid corners. Otherwise a `time_utc` dataset in the file (ISO UTC time of frame 0 of each
event) gives the times; failing both, times are None and the caller supplies a reference time.
`grid` (a `--grid` text, `io.grid.grid_from_spec`) places any input on the map, replacing the file's own grid.
Frames on a map grid are put on the model's grid (`model_placement`); the frames as read are kept for writing
the forecast back on the input's grid.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import h5py
import numpy as np

from prediff.errors import InputError
from prediff.io.grid import Grid, grid_from_spec
from prediff.io.model_grid import MODEL_SIDE

from .catalog import find_event
from .model_placement import Placement, place_on_model_grid
from .netcdf_input import check_frame_times, read_netcdf_frames
from .sevir import FRAME_MINUTES, frame_time


@dataclass
class RadarInput:
    context: np.ndarray  # (in_len, H, W) float32 on 0–1
    truth: Optional[np.ndarray]  # (out_len, H, W) float32 on 0–1, or None
    context_times: Optional[List[dt.datetime]]  # UTC of each context frame (last = forecast reference time)
    grid: object  # the map grid of context/truth (the model's, for an input on a map grid), or None
    source: Path
    event: int
    start: int
    placement: Optional[Placement] = None  # the input's own grid and frames, when resampled onto the model's

    @property
    def reference_time(self) -> Optional[dt.datetime]:
        return self.context_times[-1] if self.context_times else None


def _catalog_metadata(path: Path, event: int, start: int, in_len: int, shape: Tuple[int, int]):
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


def _embedded_times(path: Path, event: int, start: int, in_len: int):
    """Frame times from a `time_utc` dataset in the file itself (UTC of frame 0, one per event), or None."""
    with h5py.File(path, "r") as h5:
        if "time_utc" not in h5:
            return None
        values = np.atleast_1d(h5["time_utc"][()])
    if event >= len(values):
        return None
    text = values[event].decode() if isinstance(values[event], bytes) else str(values[event])
    try:
        first = dt.datetime.fromisoformat(text.replace("Z", "")).replace(tzinfo=None)
    except ValueError:
        raise InputError(f"{path}: time_utc entry {text!r} is not an ISO date-time") from None
    return [first + dt.timedelta(minutes=FRAME_MINUTES * (start + k)) for k in range(in_len)]


#: bounds on what an input file may declare before frames are read (a crafted file can declare anything)
MAX_SIDE, MAX_FRAMES = 4096, 100_000


def _read_frames(path: Path, event: int, start: int, count: int, variable: str = "vil"):
    """(frames (T', H, W) — at most `count` frames from `start` —, total frames T, SEVIR layout?, maximum of a
    float sequence or None) of the `vil` dataset, reading only what is needed after checking its declared shape
    and type."""
    with h5py.File(path, "r") as h5:
        if variable not in h5 or not isinstance(h5[variable], h5py.Dataset):
            raise InputError(f"{path} has no {variable!r} dataset (found: {', '.join(sorted(h5.keys())) or 'nothing'}"
                             "); choose one with --variable")
        vil = h5[variable]
        if vil.dtype.kind not in "uif" or vil.dtype.itemsize > 8:
            raise InputError(f"{variable!r} in {path} has dtype {vil.dtype}; expected uint8 or float")
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

        frames = window(start, min(start + count, t)) if start < t else np.zeros((0, h, w), vil.dtype)
        # the scale of float data (0-1 or 0-255) is told by the whole sequence's maximum, read in slabs
        peak = None
        if vil.dtype.kind == "f":
            slab = max(1, (1 << 24) // max(h * w, 1))
            peak = max(float(np.nanmax(window(a, min(a + slab, t)), initial=0.0)) for a in range(0, t, slab))
        return frames, t, vil.ndim == 4, peak


def file_format(path: Path, variable: str = "vil") -> str:
    """'netcdf' (netCDF-3, or netCDF-4: HDF5 with netCDF's dimension scales), 'hdf5', or one line of error."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:3] == b"CDF":
        return "netcdf"
    if not h5py.is_hdf5(path):
        raise InputError(f"{path} is neither HDF5 nor NetCDF; expected a NetCDF file with a (time, y, x) variable "
                         "or an HDF5 file with a 'vil' dataset in SEVIR layout (N,H,W,T) or (T,H,W)")
    try:
        with h5py.File(path, "r") as h5:
            node = h5.get(variable)
            if "_NCProperties" in h5.attrs or (isinstance(node, h5py.Dataset) and "DIMENSION_LIST" in node.attrs):
                return "netcdf"
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    return "hdf5"


def _netcdf_input(path: Path, variable: str, start: int, in_len: int, out_len: int):
    read = read_netcdf_frames(path, variable, start, in_len + out_len)
    if start + in_len > read.total:
        raise InputError(f"{path} has {read.total} frames; --start {start} needs at least {start + in_len} "
                         f"({in_len} context frames)")
    truth, times = None, None
    if read.times is not None:
        check_frame_times(path, read.times, in_len)
        times = read.times[:in_len]
    if len(read.frames) >= in_len + out_len:
        continuing = read.times is None or all(
            (b - a).total_seconds() == 600 for a, b in zip(read.times[in_len - 1:], read.times[in_len:]))
        if continuing:  # the truth only when it continues the 10-minute series
            truth = np.ascontiguousarray(read.frames[in_len:in_len + out_len])
    return np.ascontiguousarray(read.frames[:in_len]), truth, times, read.grid


def read_radar_input(path, event: int = 0, start: int = 0, in_len: int = 7, out_len: int = 6,
                     variable: str = "vil", grid: Optional[str] = None, min_side: int = MODEL_SIDE) -> RadarInput:
    """Context frames `start … start+in_len-1` (and the next `out_len` as truth, when present) of event `event` of
    `variable` in an HDF5 or NetCDF file, on 0–1, with their times and map grid when known (`grid`: a `--grid`
    text that places the frames on the map); frames on a map grid come on the model's grid (at least `min_side`
    pixels a side), the frames as read in `placement`."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory; expected an HDF5 or NetCDF file with a {variable!r} variable")
    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    if event < 0 or start < 0:
        raise InputError(f"--event and --start must be >= 0 (got {event}, {start})")
    if file_format(path, variable) == "netcdf":
        if event != 0:
            raise InputError(f"--event {event} given, but {path} is a NetCDF file holding one (time, y, x) series")
        context, truth, times, own_grid = _netcdf_input(path, variable, start, in_len, out_len)
    else:
        context, truth, times, own_grid = _hdf5_input(path, variable, event, start, in_len, out_len)
    if grid is not None:
        own_grid = grid_from_spec(grid, *context.shape[1:])
    context, truth, own_grid, placement = place_on_model_grid(context, truth, own_grid, min_side)
    return RadarInput(context=context, truth=truth, context_times=times, grid=own_grid, source=path, event=event,
                      start=start, placement=placement)


def _hdf5_input(path: Path, variable: str, event: int, start: int, in_len: int, out_len: int):
    try:
        frames, t, sevir_layout, peak = _read_frames(path, event, start, in_len + out_len, variable)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if start + in_len > t:
        raise InputError(f"{path} has {t} frames; --start {start} needs at least {start + in_len} "
                         f"({in_len} context frames)")
    if frames.dtype == np.uint8:
        scaled = frames.astype(np.float32) / 255.0
    elif np.issubdtype(frames.dtype, np.floating) or np.issubdtype(frames.dtype, np.integer):
        values = frames.astype(np.float32)
        if not np.all(np.isfinite(values)):
            raise InputError(f"{variable!r} in {path} contains NaN or infinite values")
        if values.min() < 0:
            raise InputError(f"{variable!r} in {path} has negative values (min {values.min():g}); VIL is 0–255 or "
                             "0–1")
        if values.max() > 255:
            raise InputError(f"{variable!r} in {path} exceeds 255 (max {values.max():g}); expected 0–255 or 0–1 "
                             "(physical VIL in kg m-2: use a NetCDF file with units 'kg m-2')")
        scaled = values if peak is not None and peak <= 1.0 else values / 255.0
    else:
        raise InputError(f"{variable!r} in {path} has dtype {frames.dtype}; expected uint8 or float")
    context = np.ascontiguousarray(scaled[:in_len])
    truth = None
    if start + in_len + out_len <= t:
        truth = np.ascontiguousarray(scaled[in_len:in_len + out_len])
    times, grid = _catalog_metadata(path, event, start, in_len, context.shape[1:]) if sevir_layout else (None, None)
    if times is None:
        times = _embedded_times(path, event, start, in_len)
    return context, truth, times, grid
