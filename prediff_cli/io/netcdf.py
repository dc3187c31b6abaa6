"""Ensemble forecasts as CF-1.8 NetCDF (conventions.md).

Layout:
* `vil(member, time, y, x)` float32 on the SEVIR *digital* scale 0–255 (units "1"; the comment gives the
  decode to kg m⁻²). Values are the model's output ×255, clipped to [0, 255] (the raw extremes are kept in the
  `raw_min` / `raw_max` attributes); float32 keeps the model's resolution, zlib keeps the file small.
* `vil_context(context_time, y, x)`: the observed context frames on the same scale.
* `time` (valid times, "minutes since" the forecast reference time), `forecast_period` (lead, minutes), scalar
  `forecast_reference_time`, `context_time`; `member` with standard_name "realization".
* With a grid: the Lambert azimuthal equal-area `grid_mapping` variable, x/y cell centres in metres (y descends:
  row 0 is north) and 2-D `lat`/`lon`.
* Global provenance attributes (prediff version, sampler, steps, alignment, seed, checkpoint hashes, config).
Nothing time-of-run dependent is written, so the same forecast gives the same bytes. The file is written under a
temporary name and renamed.
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

from .atomic import atomic_path
from .grid import EARTH_RADIUS_M, LAT_0, LON_0, Grid, laea_inverse

VIL_COMMENT = ("SEVIR digital VIL X (0-255). Physical VIL in kg m-2: 0 if X <= 5; (X - 2) / 90.66 if 5 < X <= 18; "
               "exp((X - 83.9) / 38.9) if X > 18.")
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
    grid: Optional[Grid]
    attrs: Dict[str, object] = field(default_factory=dict)


def _minutes_units(reference: dt.datetime) -> str:
    return f"minutes since {reference.strftime(TIME_FMT)}"


def write_forecast(path, forecast: np.ndarray, *, reference_time: dt.datetime, lead_minutes: Sequence[int],
                   context: Optional[np.ndarray] = None, context_minutes: Optional[Sequence[int]] = None,
                   grid: Optional[Grid] = None, attrs: Optional[Dict[str, object]] = None) -> Path:
    """Write `forecast` (M, T, H, W) on 0–1 to `path`; `context` (T_in, H, W) on 0–1 is stored alongside."""
    forecast = np.asarray(forecast, dtype=np.float32)
    t = forecast.shape[1]
    lead = np.asarray(lead_minutes, dtype=np.float64)
    if len(lead) != t:
        raise ValueError(f"{len(lead)} lead times for {t} forecast frames")
    with atomic_path(path) as tmp:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
            _fill(ds, forecast, reference_time=reference_time, lead=lead, context=context,
                  context_minutes=context_minutes, grid=grid, attrs=attrs)
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


def _fill(ds, forecast: np.ndarray, *, reference_time: dt.datetime, lead: np.ndarray,
          context: Optional[np.ndarray] = None, context_minutes: Optional[Sequence[int]] = None,
          grid: Optional[Grid] = None, attrs: Optional[Dict[str, object]] = None) -> None:
    """Write the forecast layout (module docstring) into an open, empty netCDF4 dataset."""
    m, t, h, w = forecast.shape
    ds.set_fill_off()
    ds.createDimension("member", m)
    ds.createDimension("time", t)
    ds.createDimension("y", h)
    ds.createDimension("x", w)
    units = _minutes_units(reference_time)

    member = ds.createVariable("member", "i4", ("member",))
    member[:] = np.arange(m)
    member.setncatts({"standard_name": "realization", "long_name": "ensemble member"})
    time = ds.createVariable("time", "f8", ("time",))
    time[:] = lead
    time.setncatts({"standard_name": "time", "long_name": "valid time", "units": units,
                    "calendar": "standard", "axis": "T"})
    period = ds.createVariable("forecast_period", "f8", ("time",))
    period[:] = lead
    period.setncatts({"standard_name": "forecast_period", "long_name": "lead time", "units": "minutes"})
    ref = ds.createVariable("forecast_reference_time", "f8", ())
    ref.assignValue(0.0)
    ref.setncatts({"standard_name": "forecast_reference_time", "units": units, "calendar": "standard"})

    coords = "forecast_reference_time forecast_period"
    grid_name = None
    if grid is not None:
        grid_name = "lambert_azimuthal_equal_area"
        crs = ds.createVariable(grid_name, "i4", ())
        crs.setncatts({"grid_mapping_name": "lambert_azimuthal_equal_area",
                       "latitude_of_projection_origin": LAT_0, "longitude_of_projection_origin": LON_0,
                       "false_easting": 0.0, "false_northing": 0.0, "earth_radius": EARTH_RADIUS_M,
                       "proj4": grid.proj})
        xs, ys = grid.coordinates(h, w)
        x = ds.createVariable("x", "f8", ("x",))
        x[:] = xs
        x.setncatts({"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"})
        y = ds.createVariable("y", "f8", ("y",))
        y[:] = ys
        y.setncatts({"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"})
        lat, lon = grid.lat_lon(h, w)
        for name, values, std, unit in (("lat", lat, "latitude", "degrees_north"),
                                        ("lon", lon, "longitude", "degrees_east")):
            var = ds.createVariable(name, "f4", ("y", "x"), zlib=True, complevel=4)
            var[:] = values.astype(np.float32)
            var.setncatts({"standard_name": std, "units": unit})
        coords += " lat lon"

    vil_attrs = {"long_name": "vertically integrated liquid (SEVIR digital scale)", "units": "1",
                 "valid_range": np.array([0.0, 255.0], np.float32), "comment": VIL_COMMENT,
                 "coordinates": coords}
    if grid_name:
        vil_attrs["grid_mapping"] = grid_name
    scaled = forecast * 255.0
    vil = ds.createVariable("vil", "f4", ("member", "time", "y", "x"), zlib=True, complevel=4,
                            chunksizes=(1, 1, h, w))
    vil[:] = np.clip(scaled, 0.0, 255.0)
    vil.setncatts(dict(vil_attrs, raw_min=np.float32(scaled.min()), raw_max=np.float32(scaled.max())))

    if context is not None:
        context = np.asarray(context, dtype=np.float32)
        ds.createDimension("context_time", len(context))
        cminutes = np.asarray(context_minutes if context_minutes is not None
                              else -10.0 * np.arange(len(context) - 1, -1, -1), dtype=np.float64)
        ct = ds.createVariable("context_time", "f8", ("context_time",))
        ct[:] = cminutes
        ct.setncatts({"standard_name": "time", "long_name": "observation time", "units": units,
                      "calendar": "standard"})
        cvar = ds.createVariable("vil_context", "f4", ("context_time", "y", "x"), zlib=True, complevel=4,
                                 chunksizes=(1, h, w))
        cvar[:] = np.clip(context * 255.0, 0.0, 255.0)
        cattrs = dict(vil_attrs, long_name="observed vertically integrated liquid (SEVIR digital scale)")
        cattrs["coordinates"] = coords.replace("forecast_period", "").replace("  ", " ").strip()
        cvar.setncatts(cattrs)

    base = {"Conventions": "CF-1.8", "title": "PreDiff ensemble precipitation nowcast (VIL)",
            "institution": "prediff", "source": "PreDiff latent diffusion (MindSpore)",
            "references": "Gao et al., PreDiff: Precipitation Nowcasting with Latent Diffusion Models, "
                          "NeurIPS 2023",
            "history": "created by prediff sample"}
    for key, value in {**base, **(attrs or {})}.items():
        if value is None:
            continue
        ds.setncattr(key, value if isinstance(value, (int, float, str, np.ndarray)) else str(value))


#: bounds on what a forecast file may declare before its arrays are read (a crafted file can declare anything)
MAX_MEMBERS, MAX_LEADS, MAX_SIDE = 4096, 1000, 4096
MAX_VALUES = 1 << 28  # 1 GiB of float32


def _decode_times(var, path: Path, name: str) -> list:
    """CF-decoded datetimes of a time variable (any `<unit> since <date>` with a standard calendar), or one line."""
    units = getattr(var, "units", None)
    if not isinstance(units, str) or "since" not in units:
        raise InputError(f"{path}: {name!r} has no CF time units (like 'minutes since 2019-06-01 12:00:00')")
    calendar = getattr(var, "calendar", "standard")
    values = np.ma.filled(np.ma.asarray(var[:], dtype=np.float64), np.nan).ravel()
    if not np.all(np.isfinite(values)):
        raise InputError(f"{path}: {name!r} holds missing or non-finite times")
    try:
        decoded = netCDF4.num2date(values, units, calendar if isinstance(calendar, str) else "standard",
                                   only_use_cftime_datetimes=False, only_use_python_datetimes=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"{path}: cannot decode {name!r} with units {units!r} ({exc})") from None
    return [d.replace(tzinfo=None) for d in np.atleast_1d(decoded)]


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
    values = np.asarray(var[:], dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise InputError(f"{path}: {var.name!r} contains NaN or infinite values")
    return values / 255.0


def _read_grid(ds, path: Path) -> Optional[Grid]:
    if "lat" not in ds.variables or "lambert_azimuthal_equal_area" not in ds.variables:
        return None
    try:
        x = np.asarray(ds.variables["x"][:], dtype=np.float64)
        y = np.asarray(ds.variables["y"][:], dtype=np.float64)
        if x.ndim != 1 or y.ndim != 1 or len(x) < 2 or len(y) < 2:
            raise ValueError("x and y need at least 2 cell centres each")
        dx, dy = float(x[1] - x[0]), float(y[0] - y[1])
        lat0, lon0 = laea_inverse(x[0] - dx / 2, y[-1] - dy / 2)
        lat1, lon1 = laea_inverse(x[-1] + dx / 2, y[0] + dy / 2)
        proj = str(ds.variables["lambert_azimuthal_equal_area"].getncattr("proj4"))
    except (KeyError, AttributeError, IndexError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: its map grid (x, y, lambert_azimuthal_equal_area) is malformed ({exc})") from None
    return Grid(float(lat0), float(lon0), float(lat1), float(lon1), proj=proj)


def read_forecast(path) -> ForecastFile:
    """A forecast NetCDF (as `write_forecast` writes it, or any file with the same variables) → `ForecastFile`.

    Times are decoded with CF rules (any `<unit> since <date>`); the reference time is `forecast_reference_time`
    when present, else 10 minutes before the first valid time. Declared sizes are bound-checked
    before any array is read."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"forecast {path} is a directory; expected a NetCDF file written by `prediff sample`")
    if not path.is_file():
        raise InputError(f"forecast file not found: {path}")
    try:
        ds = netCDF4.Dataset(path, "r")
    except OSError as exc:
        raise InputError(f"{path} is not a readable NetCDF file ({exc})") from None
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
        grid = _read_grid(ds, path)
        attrs = {k: ds.getncattr(k) for k in ds.ncattrs()}
    return ForecastFile(forecast=forecast, context=context, reference_time=reference, lead_minutes=lead, times=times,
                        grid=grid, attrs=attrs)
