"""Exceedance probabilities: the function, the NetCDF variable and the one-line xarray read, against a direct count
over the members."""
import datetime as dt

import numpy as np
import pytest
import xarray as xr

from prediff.io.netcdf import DEFAULT_THRESHOLDS, forecast_dataset, write_forecast
from prediff.exceedance import exceedance_probability


def test_fraction_of_members_at_or_above_each_threshold():
    members = np.array([[[[0.0, 74.0]]], [[[80.0, 73.9]]], [[[16.0, 219.0]]], [[[np.nan, 300.0]]]])  # (4, 1, 1, 2)
    p = exceedance_probability(members, [16, 74])
    assert p.shape == (2, 1, 1, 2) and p.dtype == np.float32
    np.testing.assert_allclose(p[:, 0, 0], [[0.5, 1.0], [0.25, 0.75]])  # ≥ counts; NaN counts as below
    with pytest.raises(ValueError):
        exceedance_probability(np.zeros((3, 4)), [1])


def test_netcdf_holds_the_count_over_its_members(tmp_path):
    rng = np.random.default_rng(3)
    members = rng.random((5, 6, 16, 16)).astype(np.float32) * 1.1
    path = write_forecast(tmp_path / "f.nc", members, reference_time=dt.datetime(2019, 7, 1, 19),
                          lead_minutes=range(10, 70, 10))
    ds = xr.open_dataset(path)
    assert ds["exceedance_probability"].dims == ("threshold", "time", "y", "x")
    assert list(ds["threshold"].values) == list(DEFAULT_THRESHOLDS)
    vil = ds["vil"].values
    for k, level in enumerate(DEFAULT_THRESHOLDS):
        direct = (vil >= level).sum(axis=0) / vil.shape[0]
        np.testing.assert_array_equal(ds["exceedance_probability"].values[k], direct.astype(np.float32))
    # the README's one line: probability of VIL >= 74 at T+30 min
    p30 = ds.exceedance_probability.sel(threshold=74, time=ds.forecast_reference_time + np.timedelta64(30, "m"))
    np.testing.assert_array_equal(p30.values, ((vil[:, 2] >= 74).sum(axis=0) / 5).astype(np.float32))
    np.testing.assert_allclose(ds["threshold_kg_m2"].sel(threshold=74), 0.775, atol=1e-3)


def test_thresholds_are_configurable_in_memory_too():
    ds = forecast_dataset(np.full((2, 6, 8, 8), 0.5, np.float32), reference_time=dt.datetime(2019, 7, 1),
                          lead_minutes=range(10, 70, 10), thresholds=(100.0, 130.0))
    assert list(ds["threshold"].values) == [100.0, 130.0]
    np.testing.assert_array_equal(ds["exceedance_probability"].sel(threshold=100).values, 1.0)
    np.testing.assert_array_equal(ds["exceedance_probability"].sel(threshold=130).values, 0.0)
