"""Radar frames from a CF NetCDF file (netCDF-3 or netCDF-4), read through xarray.

The variable (`--variable`, default `vil`) must be (time, y, x). Its decoded time coordinate gives the frame
times, which must be 10 minutes apart over the context (a different step or a gap is refused); its `units` tell
the scale: "kg m-2" (physical VIL, encoded to the model's digital scale, `vil_scale`), or "1" / none (SEVIR
digital 0–255, or 0–1 floats). A CF grid mapping on the variable with its x/y coordinates, longitude/latitude
axes, or 2-D lat/lon give the frames' map grid (`io.grid.grid_from_cf`). Declared shapes and types are checked
before any values are read, and only the frames needed are read.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from prediff.errors import InputError
from prediff.io.grid import grid_from_cf

from prediff.vil_scale import kg_m2_to_digital, scale_of_units

FRAME_MINUTES = 10
MAX_SIDE, MAX_FRAMES = 4096, 100_000


@dataclass
class NetcdfFrames:
    frames: np.ndarray  # (T', H, W) float32 on 0–1: at most `count` frames from `start`
    total: int  # frames in the file
    times: Optional[List[dt.datetime]]  # times of `frames` (None when the variable has no time coordinate)
    grid: object  # Grid, CurvilinearGrid or None


def _to_datetimes(values: np.ndarray) -> List[dt.datetime]:
    """datetime64 values or cftime objects (other calendars) → naive UTC datetimes."""
    out = []
    for v in np.asarray(values).ravel():
        if isinstance(v, np.datetime64):
            out.append(v.astype("datetime64[us]").astype(dt.datetime))
        else:
            out.append(dt.datetime(v.year, v.month, v.day, v.hour, v.minute, v.second))
    return out


def check_frame_times(path: Path, times: List[dt.datetime], in_len: int) -> None:
    """The first `in_len` times must be 10 minutes apart: one line naming the wrong step or the gap otherwise."""
    steps = [(b - a).total_seconds() / 60.0 for a, b in zip(times[:in_len], times[1:in_len])]
    if all(abs(s - FRAME_MINUTES) < 1e-6 for s in steps):
        return
    if len({round(s, 6) for s in steps}) == 1:
        raise InputError(f"{path}: the frames are {steps[0]:g} minutes apart; the model needs {FRAME_MINUTES}-minute "
                         "frames")
    k = next(i for i, s in enumerate(steps) if abs(s - FRAME_MINUTES) >= 1e-6)
    raise InputError(f"{path}: gap in the context: frame {times[k + 1]:%Y-%m-%d %H:%M} follows "
                     f"{times[k]:%Y-%m-%d %H:%M} ({steps[k]:g} min); the context needs {in_len} frames "
                     f"{FRAME_MINUTES} minutes apart")


def _grid(ds, var, ydim: str, xdim: str):
    """The field's map grid (`io.grid.grid_from_cf`): from its grid mapping with x/y, or from longitude/latitude
    axes or 2-D lat/lon; None when the file gives no map position."""
    name = var.attrs.get("grid_mapping")
    attrs = None
    if isinstance(name, str):
        name = name.split(":")[0].strip()
        if name not in ds.variables:
            raise InputError(f"'{var.name}' names the grid mapping {name!r}, which the file does not hold")
        attrs = dict(ds[name].attrs)
    lat = lon = None
    for candidate in ds.variables.values():
        std = candidate.attrs.get("standard_name")
        if std in ("latitude", "longitude") and candidate.dims == (ydim, xdim):
            if std == "latitude":
                lat = candidate.values
            else:
                lon = candidate.values
    if (lat is None) != (lon is None):
        lat = lon = None
    x = ds[xdim] if xdim in ds.coords else None
    y = ds[ydim] if ydim in ds.coords else None
    angular = x is not None and y is not None and all(
        str(c.attrs.get("units", "")).strip().lower().startswith("degree") for c in (x, y))
    if attrs is None and lat is None and not angular:
        return None
    try:
        return grid_from_cf(name, attrs, None if x is None else x.values, None if y is None else y.values,
                            {} if x is None else dict(x.attrs), {} if y is None else dict(y.attrs), lat, lon)
    except (ValueError, TypeError) as exc:
        raise InputError(f"its map grid ({name or 'lat/lon'}, {xdim}, {ydim}) is malformed ({exc})") from None


def read_netcdf_frames(path: Path, variable: str, start: int, count: int) -> NetcdfFrames:
    """Frames `start … start+count-1` (fewer at the end of the file) of `variable`, on 0–1, with times and grid."""
    import xarray as xr

    try:
        ds = xr.open_dataset(path, decode_times=True, mask_and_scale=True, cache=False)
    except Exception as exc:  # noqa: BLE001 - any backend failure on an untrusted file is "cannot read"
        raise InputError(f"cannot read {path} as NetCDF: {exc}") from None
    with ds:
        if variable not in ds.data_vars:
            found = ", ".join(sorted(str(k) for k in ds.data_vars)) or "nothing"
            raise InputError(f"{path} has no variable {variable!r} (found: {found}); choose one with --variable")
        var = ds[variable]
        if var.ndim != 3:
            raise InputError(f"{variable!r} in {path} has dimensions {var.dims}; expected (time, y, x)")
        tdim, ydim, xdim = (str(d) for d in var.dims)
        t, h, w = (int(n) for n in var.shape)
        if var.dtype.kind not in "uif" or var.dtype.itemsize > 8:
            raise InputError(f"{variable!r} in {path} has dtype {var.dtype}; expected integers or floats")
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE and 1 <= t <= MAX_FRAMES):
            raise InputError(f"{variable!r} in {path} declares {h}x{w} pixels and {t} frames; expected "
                             f"1..{MAX_SIDE} pixels a side and 1..{MAX_FRAMES} frames")
        for dim in (ydim, xdim):
            if dim in ds.coords and np.issubdtype(ds[dim].dtype, np.datetime64):
                raise InputError(f"{variable!r} in {path} has its time axis {dim!r} last; expected (time, y, x)")
        times = None
        if tdim in ds.coords:
            coord = ds[tdim]
            if not (np.issubdtype(coord.dtype, np.datetime64) or coord.dtype == object):
                raise InputError(f"{path}: the time coordinate {tdim!r} is not decodable as CF time (units "
                                 f"{coord.attrs.get('units')!r}); expected units like 'minutes since 2019-06-01'")
            times = _to_datetimes(coord.values)
        scale = scale_of_units(var.attrs.get("units"))
        if scale is None:
            raise InputError(f"{variable!r} in {path} has units {var.attrs.get('units')!r}; expected 'kg m-2' "
                             "(physical VIL) or '1' (SEVIR digital VIL 0-255)")
        window = var.isel({tdim: slice(start, min(start + count, t))})
        frames = np.asarray(window.values, dtype=np.float32) if start < t else np.zeros((0, h, w), np.float32)
        if not np.all(np.isfinite(frames)):
            raise InputError(f"{variable!r} in {path} has missing, NaN or infinite values in frames "
                             f"{start}..{start + len(frames) - 1}")
        if frames.size and frames.min() < 0:
            raise InputError(f"{variable!r} in {path} has negative values (min {frames.min():g}); VIL is >= 0")
        if scale == "physical":
            scaled = kg_m2_to_digital(frames) / 255.0
        else:
            if frames.size and frames.max() > 255:
                raise InputError(f"{variable!r} in {path} exceeds 255 (max {frames.max():g}) with units "
                                 f"{var.attrs.get('units', 'none')!r}; physical VIL needs units 'kg m-2'")
            peak = 255.0
            if var.dtype.kind == "f":  # 0-1 or 0-255: told by the whole sequence's maximum, read in slabs
                slab = max(1, (1 << 24) // max(h * w, 1))
                peak = max(float(np.nanmax(var.isel({tdim: slice(a, a + slab)}).values, initial=0.0))
                           for a in range(0, t, slab))
            scaled = frames if peak <= 1.0 else frames / 255.0
        grid = _grid(ds, var, ydim, xdim)
    frame_times = None if times is None else times[start:start + len(frames)]
    return NetcdfFrames(frames=np.ascontiguousarray(scaled, dtype=np.float32), total=t, times=frame_times,
                        grid=grid)
