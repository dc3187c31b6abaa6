"""Crafted NetCDF / HDF5 inputs: each one clear line and exit code 2 (never an internal error), declared sizes checked
before any scan, files cut short refused, no library warning or advice on the terminal, device and pseudo files
named as such, a grid mapping named like a forecast variable read without a clash."""
import contextlib
import datetime as dt
import os
import signal
import warnings

import h5py
import netCDF4
import numpy as np
import pytest
from typer.testing import CliRunner

from prediff.cli.app import app
from prediff.data.radar_input import read_radar_input
from prediff.errors import InputError
from prediff.io.netcdf import read_forecast, write_forecast

UNITS = "minutes since 2019-07-01 18:00:00"


def _sample(tmp_path, source, *extra):
    """`prediff sample` on a bad input: it must stop at the input, before any model is loaded."""
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sample", "--input", str(source), "--out", str(out), *extra])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output and "Warning" not in result.output, result.output
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert not out.exists()  # refused before anything was written
    return lines[0]


def _series(path, *, fmt="NETCDF4", minutes=None, time_units=UNITS, calendar=None, shape=(13, 16, 16),
            fill=None, values=1.0, **var_kwargs):
    t = shape[0]
    with netCDF4.Dataset(path, "w", format=fmt) as ds:
        for name, n in zip(("time", "y", "x"), shape):
            ds.createDimension(name, n)
        time = ds.createVariable("time", "f8", ("time",))
        time.units = time_units
        if calendar:
            time.calendar = calendar
        time[:] = np.arange(t) * 10.0 if minutes is None else minutes
        var = ds.createVariable("vil", "f4", ("time", "y", "x"), fill_value=fill, **var_kwargs)
        var.units = "1"
        if values is not None:
            var[:] = np.full(shape, values, np.float32)
    return path


@contextlib.contextmanager
def _time_limit(seconds):
    def stop(*_):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------------------------ sizes and ends


def test_huge_declared_series_is_refused_before_the_scale_scan(tmp_path):
    """807 KB on disk, 100,000 × 4096 × 4096 declared, every value the fill 1.0: reading it all took 27 minutes."""
    path = tmp_path / "huge.nc"
    with netCDF4.Dataset(path, "w") as ds:
        for name, n in (("time", 100_000), ("y", 4096), ("x", 4096)):
            ds.createDimension(name, n)
        time = ds.createVariable("time", "f8", ("time",))
        time.units = UNITS
        time[:] = np.arange(100_000) * 10.0
        var = ds.createVariable("vil", "f4", ("time", "y", "x"), zlib=True, chunksizes=(1, 512, 512),
                                fill_value=1.0)
        var.units = "1"
    assert path.stat().st_size < 2_000_000
    with _time_limit(30), pytest.raises(InputError, match="telling 0-1 from 0-255 by their maximum would read"):
        read_radar_input(path)


@pytest.mark.parametrize("fmt", ["NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA"])
def test_netcdf3_cut_short_is_refused(tmp_path, fmt):
    whole = _series(tmp_path / "whole.nc", fmt=fmt, shape=(13, 32, 32), values=None)
    with netCDF4.Dataset(whole, "a") as ds:
        ds["vil"][:] = np.random.default_rng(0).uniform(0, 200, (13, 32, 32))
    assert read_radar_input(whole).context.shape == (7, 32, 32)
    data = whole.read_bytes()
    for cut in (len(data) // 2, len(data) - 1):
        half = tmp_path / "half.nc"
        half.write_bytes(data[:cut])
        with pytest.raises(InputError, match="ends early"):
            read_radar_input(half)
    assert "ends early" in _sample(tmp_path, half)


def test_forecast_file_cut_short_is_refused(tmp_path):
    path = write_forecast(tmp_path / "fc.nc", np.zeros((1, 6, 8, 8), np.float32),
                          reference_time=dt.datetime(2019, 7, 1), lead_minutes=range(10, 70, 10))
    import xarray as xr

    xr.open_dataset(path).load().to_netcdf(tmp_path / "fc3.nc", format="NETCDF3_CLASSIC")
    data = (tmp_path / "fc3.nc").read_bytes()
    (tmp_path / "cut.nc").write_bytes(data[:len(data) - 100])
    with pytest.raises(InputError, match="ends early"):
        read_forecast(tmp_path / "cut.nc")


# ------------------------------------------------------------------------------------------------ bad content


def _corrupt_chunks(path):
    _series(path, shape=(13, 64, 64), zlib=True, chunksizes=(1, 64, 64), values=None)
    with netCDF4.Dataset(path, "a") as ds:
        ds["vil"][:] = np.random.default_rng(0).random((13, 64, 64))
    with h5py.File(path, "r") as h5:
        offsets = [h5["vil"].id.get_chunk_info(i).byte_offset for i in range(13)]
    data = bytearray(path.read_bytes())
    for offset in offsets:
        data[offset + 10:offset + 200] = b"\xff" * 190
    path.write_bytes(bytes(data))
    return path


def _lzf(path):
    _series(path, shape=(13, 16, 16))
    with h5py.File(path, "a") as h5:  # the same variable, rewritten with a filter the NetCDF library lacks
        attrs = {k: v for k, v in h5["vil"].attrs.items() if k not in ("DIMENSION_LIST", "_Netcdf4Coordinates")}
        del h5["vil"]
        var = h5.create_dataset("vil", data=np.ones((13, 16, 16), np.float32), compression="lzf", chunks=(1, 16, 16))
        for i, name in enumerate(("time", "y", "x")):
            var.dims[i].attach_scale(h5[name])
        for k, v in attrs.items():
            var.attrs[k] = v
    return path


def _strings(path):
    with netCDF4.Dataset(path, "w") as ds:
        for name, n in (("time", 13), ("y", 16), ("x", 16)):
            ds.createDimension(name, n)
        var = ds.createVariable("vil", str, ("time", "y", "x"))
        var.add_offset, var.units = 1.0, "1"
    return path


def _vlen(path):
    with netCDF4.Dataset(path, "w") as ds:
        for name, n in (("time", 13), ("y", 16), ("x", 16)):
            ds.createDimension(name, n)
        var = ds.createVariable("vil", ds.createVLType(np.int32, "ragged"), ("time", "y", "x"))
        var.units = "1"
    return path


@pytest.mark.parametrize("build, message", [
    (_corrupt_chunks, "cannot read 'vil' in"),
    (_lzf, "lzf"),
    (_strings, "holds strings"),
    (_vlen, "variable-length"),
    (lambda p: _series(p, minutes=np.r_[np.nan, np.arange(12) * 10.0]), "missing or non-finite times"),
    (lambda p: _series(p, time_units="days since 2019-02-28", calendar="360_day",
                       minutes=2 + np.arange(13) * 10 / 1440), "calendar '360_day'"),
    (lambda p: _series(p, time_units="days since 0000-01-01", calendar="standard"), "year"),
    (lambda p: _series(p, time_units="days since 0001-01-01", minutes=-400 + np.arange(13) * 10 / 1440),
     "cannot decode"),
    (lambda p: _series(p, time_units="minutes since 1800-01-01"), "outside 1900"),
    (lambda p: _inf_scale(p), "not a finite number"),
])
def test_bad_netcdf_content_is_one_line_with_exit_code_2(tmp_path, build, message):
    path = build(tmp_path / "bad.nc")
    with pytest.raises(InputError, match=message):
        read_radar_input(path)
    line = _sample(tmp_path, path)
    assert message in line and "decode_times" not in line and "cftime" not in line


def _inf_scale(path):
    _series(path)
    with netCDF4.Dataset(path, "a") as ds:
        ds["vil"].scale_factor = np.float32(np.inf)
    return path


def test_grid_mapping_named_like_an_output_variable_is_read_and_cannot_collide(tmp_path):
    """The input's grid-mapping variable is called exceedance_probability (it made writing the forecast fail after
    the whole forecast ran): it is read like any other, and the forecast names its own after the projection."""
    path = _series(tmp_path / "clash.nc", shape=(13, 128, 128))
    with netCDF4.Dataset(path, "a") as ds:
        for name, values in (("x", np.arange(128) * 1000.0), ("y", -3.4e6 - np.arange(128) * 1000.0)):
            c = ds.createVariable(name, "f8", (name,))
            c[:] = values
            c.setncatts({"standard_name": f"projection_{name}_coordinate", "units": "m"})
        crs = ds.createVariable("exceedance_probability", "i4", ())
        crs.setncatts({"grid_mapping_name": "polar_stereographic", "straight_vertical_longitude_from_pole": 10.0,
                       "latitude_of_projection_origin": 90.0, "standard_parallel": 60.0, "false_easting": 0.0,
                       "false_northing": 0.0})
        ds["vil"].grid_mapping = "exceedance_probability"
    radar = read_radar_input(path)
    source = radar.placement.input_grid
    assert source.mapping_name == "polar_stereographic"
    for grid, frames in ((source, radar.placement.input_context), (radar.grid, radar.context)):
        h, w = frames.shape[1:]
        out = write_forecast(tmp_path / f"fc_{grid.mapping_name}.nc", np.zeros((1, 6, h, w), np.float32),
                             reference_time=radar.reference_time, lead_minutes=range(10, 70, 10), context=frames,
                             grid=grid)
        with netCDF4.Dataset(out) as ds:
            assert ds["vil"].grid_mapping == grid.mapping_name
            assert ds["exceedance_probability"].dimensions == ("threshold", "time", "y", "x")


def test_differing_fill_values_read_without_any_warning(tmp_path):
    path = _series(tmp_path / "fills.nc", fill=-1.0, values=None)
    with netCDF4.Dataset(path, "a") as ds:
        ds["vil"].missing_value = np.float32(-2.0)
        ds["vil"][:] = np.full((13, 16, 16), 100.0, np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        radar = read_radar_input(path)
    assert not caught, [str(w.message) for w in caught]
    np.testing.assert_allclose(radar.context, 100 / 255, atol=1e-6)
    with netCDF4.Dataset(path, "a") as ds:
        ds["vil"][3, 2, 2] = -2.0  # a missing value inside the context: refused, not forecast
    with pytest.raises(InputError, match="missing, NaN"):
        read_radar_input(path)


# ------------------------------------------------------------------------------------------------ not files


def test_fifo_device_and_proc_inputs_are_named_as_such(tmp_path):
    fifo = tmp_path / "radar.nc"
    os.mkfifo(fifo)
    with _time_limit(20):
        assert "is a FIFO" in _sample(tmp_path, fifo)
    assert "is a device" in _sample(tmp_path, "/dev/zero")
    line = _sample(tmp_path, "/proc/self/mem")
    assert "/proc/self/mem" in line and "not found" not in line
    link = tmp_path / "zero.h5"
    link.symlink_to("/dev/zero")
    assert "is a device" in _sample(tmp_path, link)


def test_a_failed_write_names_the_file_asked_for_not_the_temporary_one(tmp_path):
    from prediff.io.atomic import atomic_path

    target = tmp_path / "forecast.nc"
    with pytest.raises(PermissionError) as caught:
        with atomic_path(target) as tmp:
            raise PermissionError(13, "Permission denied", str(tmp))
    assert caught.value.filename == str(target)
    (tmp_path / "taken.nc").mkdir()  # the rename onto a folder fails: named by the final name too
    with pytest.raises(OSError) as caught:
        write_forecast(tmp_path / "taken.nc", np.zeros((1, 6, 8, 8), np.float32),
                       reference_time=dt.datetime(2019, 7, 1), lead_minutes=range(10, 70, 10))
    assert ".tmp" not in str(caught.value.filename) and not list(tmp_path.glob(".taken*"))
