"""Radar frames from a folder, or a glob pattern, of files holding one time each (how operational radar arrives).

Each file is an HDF5 file with one frame (`hdf5_input.hdf5_frame`: its time in `time_utc` or ODIM's
what/date + what/time) or a NetCDF file whose variable carries its time(s) by CF rules (`netcdf_input`; a NetCDF
file may hold several times). The time comes from each file's metadata, never from its name; a file without one is
refused. The frames of all files are put in time order (two files for the same time are refused) and the context
is the newest set of frames exactly 10 minutes apart: with 5- or 2.5-minute data that is every 2nd or 4th frame
counting back from the newest; when the newest frames have a gap, the newest complete context before it is used
(said in one line). All frames used must have the same size, grid and orientation.

A folder is read for the suffixes in `RADAR_SUFFIXES` (hidden files, such as transfers in progress, are skipped);
a glob takes what it matches; a list (or tuple) of paths is read as given (the Python API, `prediff watch`). At most
`MAX_FILES` files are looked at.
"""
from __future__ import annotations

import datetime as dt
import glob
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional

import numpy as np

from prediff.errors import InputError
from prediff.io.orientation import Orientation
from prediff.io.untrusted import check_regular_file

from .file_format import file_format
from .frame_times import FRAME_MINUTES, THINNED_STEPS, thinning_note, usual_step
from .hdf5_input import hdf5_frame
from .netcdf_input import open_series
from prediff.vil_scale import to_model_scale

RADAR_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".nc", ".nc4", ".netcdf", ".cdf")
MAX_FILES = 2000


def is_folder_input(source) -> bool:
    """Whether `source` names a folder or a glob pattern, or is a list of files (rather than one file). Brackets
    alone make a pattern only when it matches something: they are common in file names."""
    if isinstance(source, (list, tuple)):
        return True
    text = str(source)
    path = Path(text)
    if path.is_dir():
        return True
    if path.exists():
        return False
    return "*" in text or "?" in text or ("[" in text and next(glob.iglob(text), None) is not None)


@dataclass
class _Frame:
    time: dt.datetime
    path: Path
    read: Callable[[], np.ndarray]  # → (H, W) float64, north-up, NaN where missing
    scale: str  # "physical", "digital", "unit" or "float" (0-1 or 0-255, told by the frames used together)
    grid: object = None
    orientation: Orientation = field(default_factory=Orientation)


@dataclass
class FolderInput:
    context: np.ndarray  # (in_len, H, W) float32 on 0-1, north-up
    times: List[dt.datetime]
    grid: object
    orientation: Orientation
    notes: List[str]


def source_name(source) -> Path:
    """How a folder input is named in messages and in the forecast's records: the folder, the pattern, or for a list
    of files their common folder."""
    if isinstance(source, (list, tuple)):
        folders = {Path(p).parent for p in source}
        return folders.pop() if len(folders) == 1 else Path(f"{len(source)} files")
    return Path(str(source))


def radar_files_in(folder: Path) -> Iterator[Path]:
    """The radar files of a folder (suffixes in `RADAR_SUFFIXES`), hidden files (transfers in progress) skipped."""
    return (p for p in Path(folder).iterdir() if not p.name.startswith(".") and p.suffix.lower() in RADAR_SUFFIXES)


def _files(source) -> List[Path]:
    if isinstance(source, (list, tuple)):
        if not source or len(source) > MAX_FILES:
            raise InputError(f"expected a list of 1 to {MAX_FILES} radar files holding one time each; got "
                             f"{len(source)}")
        return sorted(Path(p) for p in source)
    text = str(source)
    path = Path(text)
    if path.is_dir():
        found = radar_files_in(path)
        what = f"the folder {path}"
    else:
        found = (Path(p) for p in glob.iglob(text) if not Path(p).is_dir())
        what = f"the pattern {text!r}"
    files = sorted(itertools.islice(found, MAX_FILES + 1))
    if not files and path.is_dir():
        raise InputError(f"{path} is a directory holding no radar files ({', '.join('*' + s for s in RADAR_SUFFIXES)}"
                         "); expected an HDF5 or NetCDF file, or a folder of files holding one time each")
    if not files:
        raise InputError(f"no file matches {what}")
    if len(files) > MAX_FILES:
        raise InputError(f"{what} holds more than {MAX_FILES} radar files; point --input at the recent ones (a "
                         "narrower glob, such as 'DIR/*20190701*')")
    return files


def _netcdf_frames(path: Path, variable: str) -> List[_Frame]:
    ds, series = open_series(path, variable, need_time=False)
    ds.close()
    if series.times is None:
        raise InputError(f"{path} carries no time: one file per time needs a CF time coordinate (like 'minutes "
                         "since 2019-06-01') on its variable")

    def reader(index: int):
        def read():
            handle, again = open_series(path, variable, need_time=False)
            try:
                return again.values([index])[0]
            finally:
                handle.close()
        return read

    return [_Frame(t, path, reader(i), series.scale, series.grid, series.orientation)
            for i, t in enumerate(series.times)]


def _file_frames(path: Path, variable: str) -> List[_Frame]:
    check_regular_file(path, "input file")
    if file_format(path, variable) == "netcdf":
        return _netcdf_frames(path, variable)
    info = hdf5_frame(path, variable)
    return [_Frame(info.time, path, info.values, info.scale)]


def _frames(files: List[Path], variable: str) -> List[_Frame]:
    return [frame for path in files for frame in _file_frames(path, variable)]


def frame_key(time: dt.datetime) -> dt.datetime:
    """A frame's time rounded to the second: how frames of different files are matched."""
    return time.replace(microsecond=0) + dt.timedelta(seconds=round(time.microsecond / 1e6))


def file_frame_times(path, variable: str) -> List[dt.datetime]:
    """The times (UTC, rounded to the second) of the frames one file holds, read from its metadata only (the
    values are read when the frame is used). Raises `InputError` for a file that is not a readable radar file
    with times."""
    return [frame_key(frame.time) for frame in _file_frames(Path(path), variable)]


def newest_context(times: Iterable[dt.datetime], in_len: int) -> Optional[List[dt.datetime]]:
    """The newest `in_len` times exactly 10 minutes apart among `times` (oldest first), or None. With 5- or
    2.5-minute data this is every 2nd or 4th frame counting back from the newest complete one."""
    present = set(times)
    step = dt.timedelta(minutes=FRAME_MINUTES)
    for end in sorted(present, reverse=True):
        needed = [end - step * k for k in range(in_len - 1, -1, -1)]
        if all(t in present for t in needed):
            return needed
    return None


def _same_grid(a: _Frame, b: _Frame) -> bool:
    """Whether two frames lie on the same pixels (`io.grid.same_pixels`), their rows and columns running alike."""
    if a.orientation != b.orientation or (a.grid is None) != (b.grid is None):
        return False
    return a.grid is None or a.grid.same_as(b.grid)


def _scale(frames: List[_Frame], values: np.ndarray, where: str) -> str:
    scales = {f.scale for f in frames}
    if "physical" in scales and len(scales) > 1:
        raise InputError(f"{where}: some files hold physical VIL (kg m-2), others digital VIL; use one kind")
    if scales == {"physical"}:
        return "physical"
    if "digital" in scales:
        return "digital"
    if "unit" in scales:
        return "unit"
    return "unit" if not np.any(values > 1.0) else "digital"


def read_frame_folder(source, variable: str, in_len: int) -> FolderInput:
    """The newest `in_len` frames 10 minutes apart among the files of a folder, a glob or a list of paths
    `source`."""
    where = str(source_name(source))
    frames = _frames(_files(source), variable)
    by_time: Dict[dt.datetime, _Frame] = {}
    for frame in frames:
        key = frame_key(frame.time)
        if key in by_time:
            raise InputError(f"{where}: {by_time[key].path} and {frame.path} both hold the frame of "
                             f"{key:%Y-%m-%d %H:%M:%S}")
        by_time[key] = frame
    times = sorted(by_time)
    step = dt.timedelta(minutes=FRAME_MINUTES)
    chosen = newest_context(times, in_len)
    usual = usual_step(times)
    if chosen is None:
        kind = f"; they are {usual:g} minutes apart" if usual is not None and usual not in (10.0, *THINNED_STEPS) \
            else ""
        raise InputError(f"{where}: no {in_len} frames {FRAME_MINUTES} minutes apart among the {len(times)} frame(s) "
                         f"from {times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M}{kind}")
    notes = []
    if usual in THINNED_STEPS:
        notes.append(thinning_note(where, usual, THINNED_STEPS[usual], chosen[-1]))
    if chosen[-1] != times[-1]:
        missing = next(times[-1] - step * k for k in range(in_len) if times[-1] - step * k not in by_time)
        notes.append(f"{where}: the newest frames ({times[-1]:%Y-%m-%d %H:%M}) do not form a complete context "
                     f"({missing:%H:%M} is missing); using the {in_len} frames ending at {chosen[-1]:%Y-%m-%d %H:%M}")
    used = [by_time[t] for t in chosen]
    values = [f.read() for f in used]
    shape = values[-1].shape
    for frame, v in zip(used, values):
        if v.shape != shape:
            raise InputError(f"{where}: {frame.path} holds {v.shape[0]}x{v.shape[1]} pixels, {used[-1].path} "
                             f"{shape[0]}x{shape[1]}; all frames need the same grid")
        if not _same_grid(frame, used[-1]):
            raise InputError(f"{where}: {frame.path} and {used[-1].path} are on different map grids; all frames need "
                             "the same grid")
    stack = np.stack(values)
    scale = _scale(used, stack, where)
    context = to_model_scale(stack, scale, f"{variable!r} in the files of {where}",
                             hint="; physical VIL needs units 'kg m-2'")
    return FolderInput(context=np.ascontiguousarray(context), times=chosen, grid=used[-1].grid,
                       orientation=used[-1].orientation, notes=notes)
