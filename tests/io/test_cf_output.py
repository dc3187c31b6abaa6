"""The forecast NetCDF follows CF-1.8: the rules cfchecks and the IOOS compliance-checker (cf:1.8) check, one by
one (the checkers themselves run when installed)."""
import datetime as dt
import shutil
import subprocess

import netCDF4
import numpy as np
import pytest
import xarray as xr

from prediff.vil_scale import digital_to_kg_m2
from prediff.io.grid import grid_from_spec
from prediff.io.netcdf import read_forecast, write_forecast

REFERENCE = dt.datetime(2019, 7, 1, 19)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("cf")
    members, context = rng.random((3, 6, 32, 32)).astype(np.float32), rng.random((7, 32, 32)).astype(np.float32)
    grid = grid_from_spec("center=35,-97", 32, 32)
    kwargs = dict(reference_time=REFERENCE, lead_minutes=range(10, 70, 10), context=context)
    return (write_forecast(out / "grid.nc", members, grid=grid, **kwargs),
            write_forecast(out / "bare.nc", members, **kwargs), grid)


def test_cf_rules_hold(written):
    path, _, _ = written
    with netCDF4.Dataset(path) as ds:
        assert ds.Conventions == "CF-1.8"
        member = ds["member"]
        assert member.units == "1" and member.standard_name == "realization"
        for name, var in ds.variables.items():
            if var.ndim >= 3:  # CF 2.4: T, (Z,) Y, X last, other dimensions to the left
                assert var.dimensions[-2:] == ("y", "x"), name
                assert var.dimensions[-3] in ("time", "context_time"), name
                for coord in var.coordinates.split():
                    assert coord in ds.variables, (name, coord)
                assert var.grid_mapping == "lambert_azimuthal_equal_area"
                assert "units" in var.ncattrs()
        assert ds["x"].axis == "X" and ds["x"].standard_name == "projection_x_coordinate" and ds["x"].units == "m"
        assert ds["y"].axis == "Y" and ds["y"].standard_name == "projection_y_coordinate" and ds["y"].units == "m"
        assert ds["lat"].units == "degrees_north" and ds["lon"].units == "degrees_east"
        crs = ds["lambert_azimuthal_equal_area"]
        assert crs.grid_mapping_name == "lambert_azimuthal_equal_area" and crs.earth_radius == 6370997.0
        assert ds["vil_kg_m2"].units == "kg m-2" and ds["vil"].units == "1"
        np.testing.assert_allclose(ds["vil_kg_m2"][:], digital_to_kg_m2(ds["vil"][:]), rtol=1e-6)
        assert ds["forecast_reference_time"].standard_name == "forecast_reference_time"


def test_opens_in_xarray_with_lat_lon_and_physical_units(written):
    path, bare, grid = written
    ds = xr.open_dataset(path)
    assert ds["vil_kg_m2"].dims == ("member", "time", "y", "x") and ds["vil_kg_m2"].attrs["units"] == "kg m-2"
    assert {"lat", "lon"} <= set(ds["vil_kg_m2"].coords)
    assert ds["time"].values[0] == np.datetime64(REFERENCE + dt.timedelta(minutes=10))
    lat, lon = grid.lat_lon(32, 32)
    np.testing.assert_allclose(ds["lat"].values, lat, atol=1e-4)
    back = read_forecast(path).grid
    np.testing.assert_allclose(back.extent(), grid.extent(), atol=1e-3)
    plain = xr.open_dataset(bare)
    assert plain["x"].attrs["axis"] == "X" and "lat" not in plain and read_forecast(bare).grid is None


def _checker(name):
    exe = shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed")
    return exe


def test_ioos_compliance_checker_finds_nothing(written):
    exe = _checker("compliance-checker")
    proc = subprocess.run([exe, "--test", "cf:1.8", str(written[0])], capture_output=True, text=True, timeout=300)
    assert "All tests passed" in proc.stdout, proc.stdout[-3000:]


def test_cfchecks_finds_nothing(written):
    exe = _checker("cfchecks")
    proc = subprocess.run([exe, str(written[0])], capture_output=True, text=True, timeout=300)
    assert "ERRORS detected: 0" in proc.stdout and "WARNINGS given: 0" in proc.stdout, proc.stdout[-3000:]
