"""Ensemble forecasts as CF-1.8 NetCDF (docs/formats.md).

Layout (CF-1.8; checked with cfchecks and the IOOS compliance-checker):
* `vil(member, time, y, x)` float32 on the SEVIR *digital* scale 0–255 (units "1"; the comment gives the
  decode to kg m⁻²). Values are the model's output ×255, clipped to [0, 255] (the raw extremes are kept in the
  `raw_min` / `raw_max` attributes); float32 keeps the model's resolution, zlib keeps the file small.
* `vil_kg_m2(member, time, y, x)`: the same values decoded to physical VIL in kg m-2 (`prediff.vil_scale`).
* `exceedance_probability(threshold, time, y, x)`: the fraction of members with digital VIL ≥ `threshold`
  (digital; `threshold_kg_m2` gives each in kg m-2), the six SEVIR CSI thresholds by default.
* `vil_context(context_time, y, x)` and `vil_context_kg_m2`: the observed context frames on both scales.
* `time` (valid times, "minutes since" the forecast reference time), `forecast_period` (lead, minutes), scalar
  `forecast_reference_time`, `context_time`; `member` (units "1") with standard_name "realization".
* `x`/`y` always exist (axis X / Y). With a grid (`io.grid`): the grid-mapping variable, named after its CF
  `grid_mapping_name` (e.g. `lambert_azimuthal_equal_area` for the model's grid; the input's own projection
  with `--output-grid input`), so that its name never collides with a data variable; x/y pixel centres in
  metres (the model's grid: y descends, row 0 is north), or longitude/latitude in degrees for a lat/lon grid,
  and 2-D `lat`/`lon` (except on a lat/lon grid, whose x/y are those); without a grid, x/y are pixel indices.
* Rows and columns: north-up on the model's grid; on the input's grid they run as in the input (`orientation`:
  the fields are north-up inside prediff and flipped back here when the input's rows ran south to north or its
  columns east to west), with x/y in the input's order.
* Global provenance attributes (prediff version, model, sampler, steps, alignment, seed, checkpoint hashes, config)
  and a CF `history` line (UTC time and command) from the caller. The file is written under a temporary name and
  renamed.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence

import netCDF4
import numpy as np
import xarray as xr

from prediff.errors import InputError

from prediff.vil_scale import DECODE_COMMENT, DIGITAL_UNITS, PHYSICAL_UNITS, digital_to_kg_m2
from prediff.exceedance import exceedance_probability

from .atomic import atomic_path
from .cf_time import decode_cf_times
from .grid import grid_from_cf
from .netcdf3_extent import check_netcdf3_complete
from .orientation import Orientation
from .untrusted import check_regular_file, open_regular

VIL_COMMENT = DECODE_COMMENT
#: exceedance thresholds written by default: the six SEVIR CSI thresholds (digital VIL)
DEFAULT_THRESHOLDS = (16.0, 74.0, 133.0, 160.0, 181.0, 219.0)
TIME_FMT = "%Y-%m-%d %H:%M:%S"
LEAD_STEP_MINUTES = 10  # SEVIR(-LR) frames are 10 minutes apart


@dataclass
class ForecastFile:
    """A forecast read back: fields on the 0–1 model scale."""

    forecast: np.ndarray  # (M, T, H, W)
    context: Optional[np.ndarray]  # (T_in, H, W) or None
    reference_time: dt.datetime
    lead_minutes: np.ndarray  # (T,)
    times: list  # valid datetimes (T,)
    grid: object  # a `Grid`, a `CurvilinearGrid` or None
    attrs: Dict[str, object] = field(default_factory=dict)


def _minutes_units(reference: dt.datetime) -> str:
    return f"minutes since {reference.strftime(TIME_FMT)}"


def write_forecast(path, forecast: np.ndarray, *, reference_time: dt.datetime, lead_minutes: Sequence[int],
                   context: Optional[np.ndarray] = None, context_minutes: Optional[Sequence[int]] = None,
                   grid=None, attrs: Optional[Dict[str, object]] = None,
                   thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                   orientation: Optional[Orientation] = None) -> Path:
    """Write `forecast` (M, T, H, W) on 0–1, north-up, to `path`; `context` (T_in, H, W) on 0–1 is stored
    alongside; `grid` (a `Grid` or `CurvilinearGrid` of H × W pixels, north-up like the fields) places it on the
    map; `thresholds` (digital VIL) are those of the exceedance probabilities; `orientation` (the input's, when
    writing on the input's grid) turns rows and columns back to the input's order."""
    forecast = np.asarray(forecast, dtype=np.float32)
    t = forecast.shape[1]
    lead = np.asarray(lead_minutes, dtype=np.float64)
    if len(lead) != t:
        raise ValueError(f"{len(lead)} lead times for {t} forecast frames")
    with atomic_path(path) as tmp:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
            _fill(ds, forecast, reference_time=reference_time, lead=lead, context=context,
                  context_minutes=context_minutes, grid=grid, attrs=attrs, thresholds=thresholds,
                  orientation=orientation)
    return Path(path)


def forecast_dataset(forecast: np.ndarray, **layout):
    """The same forecast as an `xarray.Dataset`, built in memory through the very writer of `write_forecast` (so
    its variables, coordinates and attributes are those of the file; `ds.to_netcdf()` writes them out)."""
    forecast = np.asarray(forecast, dtype=np.float32)
    lead = np.asarray(layout.pop("lead_minutes"), dtype=np.float64)
    nc = netCDF4.Dataset("forecast.nc", "w", format="NETCDF4", memory=1 << 20)
    try:
        _fill(nc, forecast, lead=lead, **layout)
    finally:
        image = nc.close()
    with netCDF4.Dataset("forecast.nc", "r", memory=bytes(image)) as ds:
        return xr.open_dataset(xr.backends.NetCDF4DataStore(ds)).load()


#: every variable `_fill` may write (a grid mapping is never given one of these names)
_VARIABLE_NAMES = {"member", "time", "forecast_period", "forecast_reference_time", "x", "y", "lat", "lon", "vil",
                   "vil_kg_m2", "threshold", "threshold_kg_m2", "exceedance_probability", "context_time",
                   "vil_context", "vil_context_kg_m2"}


def _fill(ds, forecast: np.ndarray, *, reference_time: dt.datetime, lead: np.ndarray,
          context: Optional[np.ndarray] = None, context_minutes: Optional[Sequence[int]] = None,
          grid=None, attrs: Optional[Dict[str, object]] = None,
          thresholds: Sequence[float] = DEFAULT_THRESHOLDS, orientation: Optional[Orientation] = None) -> None:
    """Write the forecast layout (module docstring) into an open, empty netCDF4 dataset."""
    m, t, h, w = forecast.shape
    turn = orientation or Orientation()
    ds.set_fill_off()
    ds.createDimension("member", m)
    ds.createDimension("time", t)
    ds.createDimension("y", h)
    ds.createDimension("x", w)
    units = _minutes_units(reference_time)

    member = ds.createVariable("member", "i4", ("member",))
    member[:] = np.arange(m)
    member.setncatts({"standard_name": "realization", "long_name": "ensemble member", "units": "1"})
    time = ds.createVariable("time", "f8", ("time",))
    time[:] = lead
    time.setncatts({"standard_name": "time", "long_name": "valid time", "units": units,
                    "calendar": "standard", "axis": "T"})
    period = ds.createVariable("forecast_period", "f8", ("time",))
    period[:] = lead
    period.setncatts({"standard_name": "forecast_period", "long_name": "lead time", "units": "minutes"})
    ref = ds.createVariable("forecast_reference_time", "f8", ())
    ref.assignValue(0.0)
    ref.setncatts({"standard_name": "forecast_reference_time", "long_name": "forecast reference time",
                   "units": units, "calendar": "standard"})

    coords = "forecast_reference_time forecast_period"
    grid_name = None
    x = ds.createVariable("x", "f8", ("x",))
    y = ds.createVariable("y", "f8", ("y",))
    if grid is not None:
        grid_name = grid.mapping_name if grid.mapping_name.isidentifier() and \
            grid.mapping_name not in _VARIABLE_NAMES else "crs"
        crs = ds.createVariable(grid_name, "i4", ())
        crs.setncatts(grid.mapping_attrs())
        xs, ys = grid.coordinates(h, w)
        x[:], y[:] = turn.apply_x(np.asarray(xs)), turn.apply_y(np.asarray(ys))
        x_attrs, y_attrs = grid.coordinate_attrs()
        x.setncatts(x_attrs)
        y.setncatts(y_attrs)
        if x_attrs.get("standard_name") != "longitude":  # a lat/lon grid's x/y are its longitude/latitude
            lat, lon = grid.lat_lon(h, w)
            for name, values, std, unit in (("lat", lat, "latitude", "degrees_north"),
                                            ("lon", lon, "longitude", "degrees_east")):
                var = ds.createVariable(name, "f4", ("y", "x"), zlib=True, complevel=4)
                var[:] = turn.apply(np.asarray(values, np.float32))
                var.setncatts({"standard_name": std, "long_name": std, "units": unit})
            coords += " lat lon"
    else:  # no map position known: pixel indices, still marked as the X and Y axes (CF 4)
        x[:], y[:] = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
        x.setncatts({"long_name": "column index (no map grid known; see prediff sample --grid)", "units": "1",
                     "axis": "X"})
        y.setncatts({"long_name": "row index (row 0 is the first row of the input)", "units": "1", "axis": "Y"})

    def field(name, dims, values, attrs_, chunks):
        var = ds.createVariable(name, "f4", dims, zlib=True, complevel=4, chunksizes=chunks)
        var[:] = turn.apply(values)
        if grid_name:
            attrs_ = dict(attrs_, grid_mapping=grid_name)
        var.setncatts(attrs_)
        return var

    digital_attrs = {"long_name": "vertically integrated liquid (SEVIR digital scale)", "units": DIGITAL_UNITS,
                     "valid_range": np.array([0.0, 255.0], np.float32), "comment": VIL_COMMENT,
                     "coordinates": coords}
    physical_attrs = {"long_name": "vertically integrated liquid", "units": PHYSICAL_UNITS,
                      "valid_min": np.float32(0.0), "comment": "decoded from the digital scale (variable vil) with "
                      "the SEVIR formula; no CF standard name exists for VIL", "coordinates": coords}
    scaled = forecast * 255.0
    digital = np.clip(scaled, 0.0, 255.0).astype(np.float32)
    field("vil", ("member", "time", "y", "x"), digital,
          dict(digital_attrs, raw_min=np.float32(np.nanmin(scaled)), raw_max=np.float32(np.nanmax(scaled))),
          (1, 1, h, w))
    field("vil_kg_m2", ("member", "time", "y", "x"), digital_to_kg_m2(digital), physical_attrs, (1, 1, h, w))

    levels = np.asarray(thresholds, dtype=np.float64)
    ds.createDimension("threshold", len(levels))
    thr = ds.createVariable("threshold", "f8", ("threshold",))
    thr[:] = levels
    thr.setncatts({"long_name": "threshold on digital VIL (a pixel counts at value >= threshold)",
                   "units": DIGITAL_UNITS})
    thr_phys = ds.createVariable("threshold_kg_m2", "f8", ("threshold",))
    thr_phys[:] = digital_to_kg_m2(levels).astype(np.float64)
    thr_phys.setncatts({"long_name": "threshold as physical VIL", "units": PHYSICAL_UNITS})
    field("exceedance_probability", ("threshold", "time", "y", "x"), exceedance_probability(digital, levels),
          {"long_name": "probability of VIL at or above the threshold (fraction of ensemble members)",
           "units": "1", "valid_range": np.array([0.0, 1.0], np.float32),
           "coordinates": coords + " threshold_kg_m2",
           "comment": f"fraction of the {m} members whose digital VIL (variable vil) is >= threshold"},
          (1, 1, h, w))

    if context is not None:
        context = np.asarray(context, dtype=np.float32)
        ds.createDimension("context_time", len(context))
        cminutes = np.asarray(context_minutes if context_minutes is not None
                              else -10.0 * np.arange(len(context) - 1, -1, -1), dtype=np.float64)
        ct = ds.createVariable("context_time", "f8", ("context_time",))
        ct[:] = cminutes
        ct.setncatts({"standard_name": "time", "long_name": "observation time", "units": units,
                      "calendar": "standard"})
        ccoords = coords.replace("forecast_period", "").replace("  ", " ").strip()
        cdigital = np.clip(context * 255.0, 0.0, 255.0).astype(np.float32)
        field("vil_context", ("context_time", "y", "x"), cdigital,
              dict(digital_attrs, long_name="observed vertically integrated liquid (SEVIR digital scale)",
                   coordinates=ccoords), (1, h, w))
        field("vil_context_kg_m2", ("context_time", "y", "x"), digital_to_kg_m2(cdigital),
              dict(physical_attrs, long_name="observed vertically integrated liquid", coordinates=ccoords),
              (1, h, w))

    base = {"Conventions": "CF-1.8", "title": "PreDiff ensemble precipitation nowcast (VIL)",
            "institution": "prediff", "source": "PreDiff latent diffusion (MindSpore)",
            "references": "Gao et al., PreDiff: Precipitation Nowcasting with Latent Diffusion Models, "
                          "NeurIPS 2023",
            "history": "written by prediff"}
    for key, value in {**base, **(attrs or {})}.items():
        if value is None:
            continue
        ds.setncattr(key, value if isinstance(value, (int, float, str, np.ndarray)) else str(value))


#: bounds on what a forecast file may declare before its arrays are read (a crafted file can declare anything)
MAX_MEMBERS, MAX_LEADS, MAX_SIDE = 4096, 1000, 4096
MAX_VALUES = 1 << 28  # 1 GiB of float32


def _decode_times(var, path: Path, name: str) -> list:
    """CF-decoded datetimes of a time variable (`io.cf_time`: real calendars only, finite values), or one line."""
    calendar = var.getncattr("calendar") if "calendar" in var.ncattrs() else None
    units = var.getncattr("units") if "units" in var.ncattrs() else None
    try:
        values = np.ma.filled(np.ma.asarray(var[:], dtype=np.float64), np.nan)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {name!r} does not hold numbers") from None
    return decode_cf_times(values, units, calendar, f"{name!r} in {path}")


def _read_values(var, path: Path, expected_dims: tuple) -> np.ndarray:
    if var.dimensions != expected_dims:
        raise InputError(f"{path}: {var.name!r} has dimensions {var.dimensions}; expected {expected_dims}")
    shape = tuple(int(n) for n in var.shape)
    limits = {"member": MAX_MEMBERS, "time": MAX_LEADS, "context_time": MAX_LEADS, "y": MAX_SIDE, "x": MAX_SIDE}
    for dim, n in zip(expected_dims, shape):
        if not 1 <= n <= limits[dim]:
            raise InputError(f"{path}: dimension {dim!r} of {var.name!r} has length {n}; expected 1..{limits[dim]}")
    if int(np.prod(shape, dtype=np.int64)) > MAX_VALUES:
        raise InputError(f"{path}: {var.name!r} declares {shape}, more than {MAX_VALUES} values")
    var.set_auto_maskandscale(False)
    try:
        values = np.asarray(var[:], dtype=np.float32)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged chunk, an unknown filter, a type that holds no numbers
        raise InputError(f"{path}: cannot read {var.name!r} ({' '.join(str(exc).split())})") from None
    if not np.all(np.isfinite(values)):
        raise InputError(f"{path}: {var.name!r} contains NaN or infinite values")
    return values / 255.0


def _orientation(ds, path: Path) -> Orientation:
    """Which way the file's rows and columns run (its x / y coordinates), to read its fields north-up."""
    coords = []
    for name in ("x", "y"):
        var = ds.variables.get(name)
        if var is None or var.dimensions != (name,):
            coords += [None, {}]
            continue
        try:
            coords += [np.ma.filled(np.ma.asarray(var[:], dtype=np.float64), np.nan),
                       {k: var.getncattr(k) for k in var.ncattrs()}]
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"{path}: cannot read its {name!r} coordinate ({exc})") from None
    return Orientation.of(*coords, what=str(path))


def _read_grid(ds, path: Path, turn: Orientation):
    """The forecast's map grid (the grid mapping named by `vil`, x, y and lat/lon when present, turned north-up),
    or None."""
    name = getattr(ds.variables["vil"], "grid_mapping", None)
    if name is None and "lambert_azimuthal_equal_area" in ds.variables and "lat" in ds.variables:
        name = "lambert_azimuthal_equal_area"  # files of earlier prediff versions
    if name is None:
        return None
    try:
        if str(name) not in ds.variables:
            raise KeyError(f"grid mapping variable {name!r} is missing")
        for var in ("x", "y"):
            if ds.variables[var].dimensions != (var,):
                raise ValueError(f"{var!r} is not a 1-D coordinate")
        x, y = ds.variables["x"], ds.variables["y"]
        lat = lon = None
        if ("lat" in ds.variables) != ("lon" in ds.variables):
            raise ValueError("only one of lat and lon is present")
        if "lat" in ds.variables and "lon" in ds.variables:
            if ds.variables["lat"].dimensions != ("y", "x") or ds.variables["lon"].dimensions != ("y", "x"):
                raise ValueError("lat and lon must be (y, x)")
            lat, lon = (turn.apply(np.asarray(ds.variables[n][:], np.float64)) for n in ("lat", "lon"))
        mapping = ds.variables[str(name)]
        attrs = {k: mapping.getncattr(k) for k in mapping.ncattrs()}
        return grid_from_cf(str(name), attrs, turn.apply_x(np.asarray(x[:])), turn.apply_y(np.asarray(y[:])),
                            {k: x.getncattr(k) for k in x.ncattrs()}, {k: y.getncattr(k) for k in y.ncattrs()},
                            lat, lon)
    except (KeyError, AttributeError, IndexError, ValueError, TypeError, RuntimeError) as exc:
        raise InputError(f"{path}: its map grid (x, y, {name}) is malformed ({exc})") from None


def read_forecast(path) -> ForecastFile:
    """A forecast NetCDF (as `write_forecast` writes it, or any file with the same variables) → `ForecastFile`.

    Times are decoded with CF rules (any `<unit> since <date>`); the reference time is `forecast_reference_time`
    when present, else 10 minutes before the first valid time. Declared sizes are bound-checked
    before any array is read; fields are returned north-up whichever way the file's rows run."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"forecast {path} is a directory; expected a NetCDF file written by `prediff sample`")
    check_regular_file(path, "forecast file")
    with open_regular(path, "forecast file") as fh:
        classic = fh.read(3) == b"CDF"
    if classic:
        check_netcdf3_complete(path)
    try:
        ds = netCDF4.Dataset(path, "r")
    except Exception as exc:  # noqa: BLE001 - any library failure on an outside file
        raise InputError(f"{path} is not a readable NetCDF file ({' '.join(str(exc).split())})") from None
    with ds:
        if "vil" not in ds.variables:
            raise InputError(f"{path} is not a prediff forecast: it has no 'vil' variable")
        forecast = _read_values(ds.variables["vil"], path, ("member", "time", "y", "x"))
        if "time" not in ds.variables:
            raise InputError(f"{path} has no 'time' variable; expected the valid times of the forecast frames")
        times = _decode_times(ds.variables["time"], path, "time")
        if len(times) != forecast.shape[1]:
            raise InputError(f"{path}: 'time' has {len(times)} values for {forecast.shape[1]} forecast frames")
        if "forecast_reference_time" in ds.variables:
            reference = _decode_times(ds.variables["forecast_reference_time"], path, "forecast_reference_time")[0]
        else:  # frames are 10 minutes apart: the first valid time is one step after the reference time
            reference = times[0] - dt.timedelta(minutes=LEAD_STEP_MINUTES)
        lead = np.array([(t - reference).total_seconds() / 60.0 for t in times], dtype=np.float64)
        context = None
        if "vil_context" in ds.variables:
            context = _read_values(ds.variables["vil_context"], path, ("context_time", "y", "x"))
        turn = _orientation(ds, path)
        forecast, context = turn.apply(forecast), turn.apply(context)
        grid = _read_grid(ds, path, turn)
        attrs = {k: ds.getncattr(k) for k in ds.ncattrs()}
    return ForecastFile(forecast=forecast, context=context, reference_time=reference, lead_minutes=lead, times=times,
                        grid=grid, attrs=attrs)
