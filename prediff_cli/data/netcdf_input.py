"""Radar frames from a CF NetCDF file (netCDF-3 or netCDF-4) or an in-memory xarray object, read by meaning.

* The variable (`--variable`, default `vil`) may have its dimensions in any order: which one is time, y and x is
  read from the coordinates' metadata (`cf_axes`). Length-1 dimensions that are none of these are dropped.
* The frames are turned north-up / east-right for the model (`io.orientation`), as the x / y coordinates say.
* Map grid (`map_grid` → `io.grid.grid_from_cf`, pyproj): a CF grid mapping with its x/y coordinates,
  longitude/latitude axes, or 2-D lat/lon, in the north-up order of the frames.
* Times: the time coordinate, decoded by CF rules (`io.cf_time`); a file holding one frame may carry it as a
  scalar coordinate. Without times the caller supplies a reference time.
* Scale, from the variable's units: "kg m-2" (physical VIL), or "1" / none (SEVIR digital 0–255: integers, or
  floats whose maximum over the whole variable is above 1; floats up to 1 are the 0–1 scale, and `valid_max` /
  `valid_range` say which without a scan).
* Packing and missing values (`scale_factor`, `add_offset`, `_FillValue`, `missing_value`, valid range,
  `_Unsigned`) are decoded here, on the values read: nothing is decoded by a library behind our back, so no
  library warning reaches the user and a string or variable-length variable is refused before anything is read.
* Files are opened with the NetCDF library only after `io.untrusted` has found a regular file; a netCDF-3 file is
  first checked to hold all the data its header declares (`io.netcdf3_extent`). Declared sizes are checked before
  any value is read, and only the frames needed are read. Every failure is one `InputError` line.
"""
from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from prediff.errors import InputError
from prediff.io.cf_time import datetimes_of, decode_cf_times
from prediff.io.grid import grid_from_cf
from prediff.io.netcdf3_extent import check_netcdf3_complete
from prediff.io.orientation import ANGLE_UNITS, Orientation
from prediff.io.untrusted import check_regular_file, open_regular
from prediff.vil_scale import check_scan_size, scale_of_units

from .cf_axes import Axes, identify_axes

MAX_SIDE, MAX_FRAMES = 4096, 100_000
_LAT_NAMES, _LON_NAMES = ("latitude", "grid_latitude"), ("longitude", "grid_longitude")


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ------------------------------------------------------------------------------------------------------------------
# one view over netCDF4 variables (files) and xarray variables (the Python API): raw values and attributes


@dataclass
class CfVariable:
    """A variable's name, dimensions, shape, raw dtype and attributes, and a reader of its raw values."""

    name: str
    dims: Tuple[str, ...]
    shape: Tuple[int, ...]
    dtype: np.dtype
    attrs: Dict[str, object]
    source: object = field(repr=False)
    unsupported: Optional[str] = None  # why its type cannot hold VIL (string, variable-length, compound ...)
    decoded_times: bool = False  # values are already times (xarray decoded them)

    @classmethod
    def from_netcdf4(cls, var) -> "CfVariable":
        import netCDF4

        unsupported = None
        if var.dtype == str or getattr(var.dtype, "kind", "O") in "OSUV":
            unsupported = "strings"
        elif isinstance(var.datatype, netCDF4.VLType):
            unsupported = "a variable-length (vlen) type"
        elif isinstance(var.datatype, netCDF4.CompoundType):
            unsupported = "a compound type"
        elif isinstance(var.datatype, netCDF4.EnumType):
            unsupported = "an enum type"
        if unsupported is None:
            var.set_auto_maskandscale(False)
            var.set_auto_chartostring(False)
        attrs = {k: var.getncattr(k) for k in var.ncattrs()}
        dtype = var.dtype if isinstance(var.dtype, np.dtype) else np.dtype(object)
        return cls(str(var.name), tuple(str(d) for d in var.dimensions), tuple(int(n) for n in var.shape), dtype,
                   attrs, var, unsupported)

    @classmethod
    def from_xarray(cls, name, var) -> "CfVariable":
        dtype = np.dtype(var.dtype)
        timed = np.issubdtype(dtype, np.datetime64) or (dtype.kind == "O" and var.size and
                                                         hasattr(np.asarray(var.values).ravel()[0], "calendar"))
        unsupported = None if dtype.kind in "uifb" or timed else f"{dtype} values"
        return cls(str(name), tuple(str(d) for d in var.dims), tuple(int(n) for n in var.shape), dtype,
                   dict(var.attrs), var, unsupported, bool(timed))

    def read(self, key=()) -> np.ndarray:
        """Raw values at `key` (a tuple of ints, slices and lists, one per dimension)."""
        if hasattr(self.source, "ncattrs"):
            return np.asarray(self.source[key] if key else self.source[...])
        return np.asarray(self.source[key].values if key else self.source.values)


def _open_netcdf(path: Path) -> Tuple[object, Dict[str, CfVariable]]:
    """The open netCDF4 Dataset and its root group's variables, or one line saying why the file cannot be read."""
    import netCDF4

    with open_regular(path, "input file") as fh:
        classic = fh.read(3) == b"CDF"
    if classic:
        check_netcdf3_complete(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = netCDF4.Dataset(path, "r")
    except Exception as exc:  # noqa: BLE001 - any library failure on an outside file is "cannot read"
        raise InputError(f"cannot read {path} as NetCDF: {one_line(exc)}") from None
    try:
        ds.set_auto_maskandscale(False)
        return ds, {str(k): CfVariable.from_netcdf4(v) for k, v in ds.variables.items()}
    except Exception as exc:  # noqa: BLE001
        ds.close()
        raise InputError(f"cannot read {path} as NetCDF: {one_line(exc)}") from None


def _xarray_variables(obj, variable: str) -> Dict[str, CfVariable]:
    """The variables of an xarray Dataset, or of a DataArray (as the variable `variable`, or its own name)."""
    if hasattr(obj, "data_vars"):
        items = obj.variables.items()
    else:
        name = obj.name if obj.name is not None else variable
        items = list(obj.coords.variables.items()) + [(name, obj.variable)]
    return {str(k): CfVariable.from_xarray(k, v) for k, v in items}


# ------------------------------------------------------------------------------------------------------------------
# decoding raw values


def _number(attrs: Mapping[str, object], key: str, what: str, nan_ok: bool = False) -> Optional[np.ndarray]:
    """The attribute `key` as float64 numbers (None when absent); it must be finite (`nan_ok`: or NaN, as a fill
    value may be)."""
    if key not in attrs:
        return None
    try:
        value = np.asarray(attrs[key], dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise InputError(f"{what}: its {key} {attrs[key]!r} is not a number") from None
    if value.size == 0 or not np.all(np.isfinite(value) | (nan_ok & np.isnan(value))):
        raise InputError(f"{what}: its {key} is not a finite number")
    return value


def decode_values(raw: np.ndarray, attrs: Mapping[str, object], what: str) -> np.ndarray:
    """Raw values → float64 with NaN where missing (fill value, missing_value, outside the valid range), unpacked
    with scale_factor / add_offset (CF 8.1), `_Unsigned` integers read as unsigned."""
    if raw.dtype.kind not in "uifb":
        raise InputError(f"{what} holds {raw.dtype} values; expected integers or floats")
    if raw.dtype.kind == "i" and str(attrs.get("_Unsigned", "")).lower() == "true":
        raw = raw.view(raw.dtype.str.replace("i", "u"))
    values = raw.astype(np.float64)
    missing = ~np.isfinite(values)
    for key in ("_FillValue", "missing_value"):
        marks = _number(attrs, key, what, nan_ok=True)
        if marks is not None:
            missing |= np.isin(values, marks)
    valid = _number(attrs, "valid_range", what)
    low = valid[0] if valid is not None and valid.size == 2 else _first(_number(attrs, "valid_min", what))
    high = valid[1] if valid is not None and valid.size == 2 else _first(_number(attrs, "valid_max", what))
    if low is not None:
        missing |= values < low
    if high is not None:
        missing |= values > high
    scale, offset = _first(_number(attrs, "scale_factor", what)), _first(_number(attrs, "add_offset", what))
    if scale is not None:
        values = values * scale
    if offset is not None:
        values = values + offset
    values[missing] = np.nan
    return values


def _first(value: Optional[np.ndarray]) -> Optional[float]:
    return None if value is None else float(value[0])


def _packed(value: float, attrs: Mapping[str, object], what: str) -> float:
    scale, offset = _first(_number(attrs, "scale_factor", what)), _first(_number(attrs, "add_offset", what))
    return value * (1.0 if scale is None else scale) + (0.0 if offset is None else offset)


# ------------------------------------------------------------------------------------------------------------------
# the series


@dataclass
class NetcdfSeries:
    """What one variable holds, read from its metadata (no frame read yet)."""

    what: str  # "'vil' in radar.nc", for messages
    variable: CfVariable
    axes: Axes
    total: int  # frames (1 for a variable without a time dimension)
    height: int
    width: int
    times: Optional[List[dt.datetime]]
    scale: str  # "physical", "digital" or "unit" (0-1)
    orientation: Orientation
    grid: object  # Grid, CurvilinearGrid or None (`io.grid`)

    def _key(self, frames) -> tuple:
        return tuple(frames if d == self.axes.time else 0 if d in self.axes.dropped else slice(None)
                     for d in self.variable.dims)

    def _model_order(self, raw: np.ndarray) -> np.ndarray:
        kept = [d for d in self.variable.dims if d not in self.axes.dropped]
        if self.axes.time is None:
            raw, kept = raw[None], ["__time__"] + kept
        order = [kept.index(d) for d in (self.axes.time or "__time__", self.axes.y, self.axes.x)]
        return self.orientation.apply(np.transpose(raw, order))

    def values(self, frames: Sequence[int]) -> np.ndarray:
        """Decoded values (len(frames), H, W) of these frames (file indices), north-up, NaN where missing."""
        frames = [int(i) for i in frames]
        if not frames:
            return np.zeros((0, self.height, self.width))
        try:
            raw = self.variable.read(self._key(frames))
        except (InputError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged chunk or an unknown filter in an outside file
            raise InputError(f"cannot read {self.what}: {one_line(exc)} (a damaged file, or compressed with a "
                             f"filter the NetCDF library here cannot decode{_filters(self)})") from None
        return self._model_order(decode_values(raw, self.variable.attrs, self.what))

    def peak(self) -> float:
        """The largest value of the whole variable (read in slabs of about 16 M values, NaN ignored)."""
        check_scan_size(self.total * self.height * self.width, self.what,
                        "give the variable valid_max (1 or 255) or units 'kg m-2'")
        slab = max(1, (1 << 24) // max(self.height * self.width, 1))
        peak = 0.0
        for a in range(0, self.total, slab):
            block = self.values(range(a, min(a + slab, self.total)))
            if np.any(np.isfinite(block)):
                peak = max(peak, float(np.nanmax(block)))
        return peak


def _filters(series: NetcdfSeries) -> str:
    """'; the file says it uses <filters>' for a variable of a netCDF-4 (HDF5) file, to name e.g. lzf in the
    message (the NetCDF library knows only its own filters' names), or ''."""
    import h5py

    try:
        path = series.variable.source.group().filepath()
        with h5py.File(path, "r") as h5:
            plist = h5[series.variable.name].id.get_create_plist()
            names = [plist.get_filter(i)[3].decode("ascii", "replace").split()[0] or str(plist.get_filter(i)[0])
                     for i in range(plist.get_nfilters())]
    except Exception:  # noqa: BLE001 - only for the message: without it the message stands as it is
        return ""
    names = [n for n in names if n not in ("shuffle", "fletcher32")]
    return f"; the file says it uses {', '.join(names)}" if names else ""


def _coordinates(variables: Mapping[str, CfVariable], dims: Sequence[str]) -> Dict[str, Tuple[dict, bool]]:
    return {d: (variables[d].attrs, variables[d].decoded_times) for d in dims
            if d in variables and variables[d].dims == (d,)}


def _coordinate_values(variables, dim: str, what: str) -> Tuple[Optional[np.ndarray], dict]:
    """A 1-D coordinate's decoded values and attributes, or (None, {}) when the dimension has none."""
    var = variables.get(dim)
    if var is None or var.dims != (dim,) or var.unsupported:
        return None, {}
    values = decode_values(var.read(), var.attrs, f"the coordinate {dim!r} of {what}")
    return values, var.attrs


def _times(variables, var: CfVariable, axes: Axes, what: str) -> Optional[List[dt.datetime]]:
    """The frame times: the time dimension's coordinate, or a scalar time coordinate of a one-frame variable."""
    if axes.time is not None:
        coord = variables.get(axes.time)
        if coord is None or coord.dims != (axes.time,):
            return None
    else:
        named = str(var.attrs.get("coordinates", "")).split()
        candidates = [variables[n] for n in named if n in variables] + \
            [v for k, v in variables.items() if k == "time" and k not in named]
        coord = next((c for c in candidates if int(np.prod(c.shape, dtype=np.int64)) == 1 and
                      ("since" in str(c.attrs.get("units", "")) or c.decoded_times)), None)
        if coord is None:
            return None
    label = f"the time coordinate {coord.name!r} of {what}"
    if coord.unsupported and not coord.decoded_times:
        raise InputError(f"{label} holds {coord.unsupported}; expected numbers with CF time units")
    if coord.decoded_times:
        return datetimes_of(coord.read(), label)
    raw = coord.read()
    if raw.dtype.kind not in "uif":
        raise InputError(f"{label} holds {raw.dtype} values; expected numbers with units like 'minutes since "
                         "2019-06-01'")
    values = decode_values(raw, coord.attrs, label)
    return decode_cf_times(values, coord.attrs.get("units"), coord.attrs.get("calendar"), label)


def _aux_lat_lon(variables, axes: Axes, orientation: Orientation):
    """2-D latitude and longitude (H, W) over the variable's y and x, north-up, or (None, None)."""
    found = {}
    for var in variables.values():
        std = var.attrs.get("standard_name")
        units = str(var.attrs.get("units", "")).replace(" ", "").lower()
        role = "lat" if std in _LAT_NAMES or units in ("degrees_north", "degree_north") else \
            "lon" if std in _LON_NAMES or units in ("degrees_east", "degree_east") else None
        if role and set(var.dims) == {axes.y, axes.x} and len(var.dims) == 2 and not var.unsupported:
            values = decode_values(var.read(), var.attrs, f"{var.name!r}")
            if var.dims[0] == axes.x:
                values = values.T
            found.setdefault(role, orientation.apply(values))
    return (found["lat"], found["lon"]) if len(found) == 2 else (None, None)


def map_grid(mapping_name: Optional[str], mapping_attrs: Optional[Mapping[str, object]], x, x_attrs, y, y_attrs,
             lat, lon):
    """The one hand-off to `io.grid`: the x (W,) and y (H,) cell centres of a north-up field (x increasing, y
    decreasing; None when the file has none), their attributes, the grid mapping's name and attributes (None when
    the field names none), and 2-D lat/lon (H, W) when known → the `Grid` or `CurvilinearGrid` that the model's
    placement, the resampling and the writer use. Raises ValueError / TypeError on malformed grids."""
    return grid_from_cf(mapping_name, None if mapping_attrs is None else dict(mapping_attrs), x, y,
                        dict(x_attrs or {}), dict(y_attrs or {}), lat, lon)


def _angular(attrs: Mapping[str, object]) -> bool:
    return str(attrs.get("units", "")).replace(" ", "").lower() in ANGLE_UNITS


def _grid(variables, var: CfVariable, axes: Axes, orientation: Orientation, what: str):
    """The field's map grid, north-up as its frames are: from its grid mapping with x/y, from longitude/latitude
    axes (a regular latitude-longitude grid needs no grid mapping, CF 5.6), or from 2-D lat/lon; None when the
    file gives no map position."""
    x, x_attrs = _coordinate_values(variables, axes.x, what)
    y, y_attrs = _coordinate_values(variables, axes.y, what)
    if x is None or y is None:
        x = y = None
    else:
        x, y = orientation.apply_x(x), orientation.apply_y(y)
    lat, lon = _aux_lat_lon(variables, axes, orientation)
    text = var.attrs.get("grid_mapping")
    name = attrs = None
    if isinstance(text, str) and text.strip():
        name = text.split(":")[0].strip()
        if name not in variables:
            raise InputError(f"{what} names the grid mapping {name!r}, which the file does not hold")
        attrs = variables[name].attrs
    angular = x is not None and _angular(x_attrs) and _angular(y_attrs)
    if attrs is None and not angular:
        if lat is None:
            return None
        x = y = None  # projection x/y without the projection: the 2-D lat/lon place the pixels
    try:
        return map_grid(name, attrs, x, x_attrs, y, y_attrs, lat, lon)
    except (ValueError, TypeError) as exc:
        raise InputError(f"its map grid ({name or 'lat/lon'}, {axes.x}, {axes.y}) is malformed "
                         f"({one_line(exc)})") from None


def describe(variables: Mapping[str, CfVariable], variable: str, where: str, need_time: bool = True) -> NetcdfSeries:
    """Everything about `variable` that its metadata says, checked: axes, sizes, type, times, scale, orientation
    and map grid. No frame is read."""
    if variable not in variables or variables[variable].dims in ((), (variable,)):
        found = ", ".join(sorted(k for k, v in variables.items() if len(v.dims) >= 2)) or "nothing"
        raise InputError(f"{where} has no variable {variable!r} (found: {found}); choose one with --variable")
    var = variables[variable]
    what = f"{variable!r} in {where}"
    sizes = dict(zip(var.dims, var.shape))
    axes = identify_axes(variable, var.dims, sizes, _coordinates(variables, var.dims), where, need_time=need_time)
    t = sizes[axes.time] if axes.time is not None else 1
    h, w = sizes[axes.y], sizes[axes.x]
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE and 1 <= t <= MAX_FRAMES):
        raise InputError(f"{what} declares {h}x{w} pixels and {t} frames; expected 1..{MAX_SIDE} pixels a side and "
                         f"1..{MAX_FRAMES} frames")
    if var.unsupported:
        raise InputError(f"{what} holds {var.unsupported}; expected integers or floats")
    if var.dtype.kind not in "uif" or var.dtype.itemsize > 8:
        raise InputError(f"{what} has dtype {var.dtype}; expected integers or floats")
    scale = scale_of_units(var.attrs.get("units"))
    if scale is None:
        raise InputError(f"{what} has units {var.attrs.get('units')!r}; expected 'kg m-2' (physical VIL) or '1' "
                         "(SEVIR digital VIL 0-255)")
    x, x_attrs = _coordinate_values(variables, axes.x, where)
    y, y_attrs = _coordinate_values(variables, axes.y, where)
    orientation = Orientation.of(x, x_attrs, y, y_attrs, what=where)
    times = _times(variables, var, axes, where)
    if scale == "digital" and (var.dtype.kind == "f" or "scale_factor" in var.attrs or "add_offset" in var.attrs):
        # 0-1 or 0-255: the valid range says which, else the maximum of the whole variable (`unit_scale`)
        valid = _number(var.attrs, "valid_range", what)
        top = float(valid[-1]) if valid is not None else _first(_number(var.attrs, "valid_max", what))
        scale = "float" if top is None else "unit" if _packed(top, var.attrs, what) <= 1.0 else "digital"
    series = NetcdfSeries(what=what, variable=var, axes=axes, total=t, height=h, width=w, times=times, scale=scale,
                          orientation=orientation, grid=None)
    series.grid = _grid(variables, var, axes, orientation, where)
    return series


def open_series(path: Path, variable: str, need_time: bool = True):
    """(the open netCDF4 Dataset — close it when done —, the described series) of `variable` in the file `path`."""
    check_regular_file(path, "input file")
    ds, variables = _open_netcdf(path)
    try:
        return ds, describe(variables, variable, str(path), need_time)
    except BaseException:
        ds.close()
        raise


def xarray_series(obj, variable: str) -> NetcdfSeries:
    """The described series of an xarray DataArray, or of `variable` in an xarray Dataset."""
    name = variable if hasattr(obj, "data_vars") or obj.name is None else str(obj.name)
    return describe(_xarray_variables(obj, variable), name, "the xarray input")


def unit_scale(series: NetcdfSeries) -> str:
    """The scale of the values: "physical", "digital" or "unit"; a float variable without one is told by the
    maximum of the whole variable (bounded)."""
    if series.scale != "float":
        return series.scale
    return "unit" if series.peak() <= 1.0 else "digital"

