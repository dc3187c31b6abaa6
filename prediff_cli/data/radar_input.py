"""The forecast input: 7 context frames (and, when present, 6 truth frames), whatever holds them.

* a CF NetCDF file (netCDF-3, or netCDF-4 — an HDF5 file whose variable has netCDF dimensions), read by meaning:
  `netcdf_input`;
* a plain HDF5 file (SEVIR layout or one (T, H, W) sequence): `hdf5_input`;
* a folder, or a glob pattern, of files holding one time each (HDF5 or NetCDF): `frame_folder` — the newest frames
  that make a complete context;
* an xarray DataArray or Dataset (the Python API), read like a NetCDF file.
Series at 5 or 2.5 minutes are thinned to the model's 10-minute steps (`frame_times`); the frames come out
north-up on the model's 0–1 scale, with their times, map grid and the input's orientation (for writing back).
`grid` (a `--grid` text, `io.grid.grid_from_spec`) places any input on the map, replacing its own grid.
Frames on a map grid are put on the model's 3 km grid (`model_placement`); the frames as read (north-up, on the
input's own grid) are kept in `placement` for writing the forecast back on the input's grid.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from prediff.errors import InputError
from prediff.io.grid import grid_from_spec
from prediff.io.model_grid import MODEL_SIDE
from prediff.io.orientation import Orientation
from prediff.io.untrusted import check_regular_file

from .file_format import file_format
from .frame_folder import is_folder_input, read_frame_folder, source_name
from .frame_times import plan_frames
from .hdf5_input import read_hdf5_input
from .model_placement import Placement, place_on_model_grid
from .netcdf_input import NetcdfSeries, open_series, unit_scale, xarray_series
from prediff.vil_scale import to_model_scale


@dataclass
class RadarInput:
    context: np.ndarray  # (in_len, H, W) float32 on 0–1, north-up
    truth: Optional[np.ndarray]  # (out_len, H, W) float32 on 0–1, or None
    context_times: Optional[List[dt.datetime]]  # UTC of each context frame (last = forecast reference time)
    grid: object  # the map grid of context/truth (`io.grid`; the model's, for an input on a map grid), or None
    source: object  # the path (or "the xarray input", "array")
    event: int
    start: int
    orientation: Orientation = field(default_factory=Orientation)  # how the input's rows/columns ran
    notes: List[str] = field(default_factory=list)  # lines to tell the user (thinning, frames chosen)
    placement: Optional[Placement] = None  # the input's own grid and frames, when resampled onto the model's

    @property
    def reference_time(self) -> Optional[dt.datetime]:
        return self.context_times[-1] if self.context_times else None


def series_frames(series: NetcdfSeries, start: int, in_len: int, out_len: int):
    """(context, truth or None, context times or None, note or None) of a described NetCDF / xarray series."""
    plan = plan_frames(series.what, series.total, series.times, start, in_len, out_len)
    scale = unit_scale(series)
    wanted = plan.context + (plan.truth or [])
    values = to_model_scale(series.values(wanted), scale, f"{series.what} (frames {wanted[0]}..{wanted[-1]})",
                            hint=f" with units {series.variable.attrs.get('units', 'none')!r}; physical VIL needs "
                            "units 'kg m-2'")
    truth = np.ascontiguousarray(values[in_len:]) if plan.truth is not None else None
    return np.ascontiguousarray(values[:in_len]), truth, plan.times, plan.note


def _is_xarray(obj) -> bool:
    return hasattr(obj, "dims") and hasattr(obj, "attrs") and (hasattr(obj, "data_vars") or hasattr(obj, "variable"))


def read_radar_input(source, event: int = 0, start: int = 0, in_len: int = 7, out_len: int = 6,
                     variable: str = "vil", grid: Optional[str] = None, min_side: int = MODEL_SIDE) -> RadarInput:
    """Context frames `start … start+in_len-1` of the 10-minute series (and the next `out_len` as truth, when
    present) of event `event` of `variable`, on 0–1 and north-up, with their times and map grid when known;
    frames on a map grid come on the model's grid (at least `min_side` pixels a side), the frames as read in
    `placement`.

    Parameters
    ----------
    source : path, glob pattern, folder, list of paths, xarray.DataArray or xarray.Dataset
        An HDF5 or NetCDF file; a folder, glob or list of files holding one time each (the newest complete context
        is used; `event` and `start` must be 0); or an xarray object read like a NetCDF file.
    grid : str, optional
        A `--grid` text that places the frames on the map (replacing the input's own grid).
    """
    if event < 0 or start < 0:
        raise InputError(f"--event and --start must be >= 0 (got {event}, {start})")
    notes: List[str] = []
    orientation = Orientation()
    if _is_xarray(source):
        if event != 0:
            raise InputError(f"event {event} given, but an xarray input holds one (time, y, x) series")
        series = xarray_series(source, variable)
        context, truth, times, note = series_frames(series, start, in_len, out_len)
        own_grid, orientation, shown = series.grid, series.orientation, "the xarray input"
        notes += [note] if note else []
    elif is_folder_input(source):
        if event != 0 or start != 0:
            raise InputError(f"--event and --start pick frames of one file; a folder or glob input "
                             f"({source_name(source)}) uses the newest frames that form a complete context")
        folder = read_frame_folder(source, variable, in_len)
        context, truth, times, own_grid = folder.context, None, folder.times, folder.grid
        orientation, notes, shown = folder.orientation, folder.notes, source_name(source)
    else:
        path = shown = Path(source)
        check_regular_file(path, "input file")
        if file_format(path, variable) == "netcdf":
            if event != 0:
                raise InputError(f"--event {event} given, but {path} is a NetCDF file holding one (time, y, x) "
                                 "series")
            ds, series = open_series(path, variable)
            try:
                context, truth, times, note = series_frames(series, start, in_len, out_len)
            finally:
                ds.close()
            own_grid, orientation = series.grid, series.orientation
            notes += [note] if note else []
        else:
            context, truth, times, own_grid = read_hdf5_input(path, variable, event, start, in_len, out_len)
    if grid is not None:
        own_grid = grid_from_spec(grid, *context.shape[1:])
    context, truth, own_grid, placement = place_on_model_grid(context, truth, own_grid, min_side)
    return RadarInput(context=context, truth=truth, context_times=times, grid=own_grid, source=shown, event=event,
                      start=start, orientation=orientation, notes=notes, placement=placement)
