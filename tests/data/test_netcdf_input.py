"""Radar input from CF NetCDF (netCDF-3 and -4): times, units, variable names, grid mappings, clean refusals;
the VIL scales; `--grid` specs."""
import datetime as dt

import h5py
import netCDF4
import numpy as np
import pytest

from prediff.data.radar_input import read_radar_input
from prediff.vil_scale import digital_to_kg_m2, kg_m2_to_digital, scale_of_units
from prediff.errors import InputError
from prediff.io.grid import Grid, grid_from_spec

START = dt.datetime(2019, 7, 1, 18, 0)


def _digital_frames(radar_file, n=13):
    with h5py.File(radar_file) as h5:
        return np.moveaxis(h5["vil"][0], -1, 0)[:n].astype(np.float32)


def _write(path, values, *, fmt="NETCDF4", name="vil", units="kg m-2", minutes=None, time_units=None,
           mapping=None):
    """A (time, y, x) variable with a CF time coordinate ("minutes since START")."""
    t, h, w = values.shape
    minutes = np.arange(t) * 10.0 if minutes is None else np.asarray(minutes, float)
    with netCDF4.Dataset(path, "w", format=fmt) as ds:
        for dim, n in (("time", t), ("y", h), ("x", w)):
            ds.createDimension(dim, n)
        time = ds.createVariable("time", "f8", ("time",))
        time.units = time_units or f"minutes since {START:%Y-%m-%d %H:%M:%S}"
        time.standard_name = "time"
        time[:] = minutes
        var = ds.createVariable(name, "f4", ("time", "y", "x"))
        var[:] = values
        if units is not None:
            var.units = units
        if mapping is not None:
            name_, attrs, x, y, extra = mapping
            crs = ds.createVariable(name_, "i4", ())
            crs.setncatts(attrs)
            var.grid_mapping = name_
            for dim, vals, std in (("x", x, "projection_x_coordinate"), ("y", y, "projection_y_coordinate")):
                c = ds.createVariable(dim, "f8", (dim,))
                c[:] = vals
                c.setncatts({"standard_name": std, "units": "m"})
            for vname, vals, std, u in extra:
                c = ds.createVariable(vname, "f4", ("y", "x"))
                c[:] = vals
                c.setncatts({"standard_name": std, "units": u})
    return path


# ------------------------------------------------------------------------------------------------ the VIL scales


def test_decode_matches_conventions_and_encode_inverts_it():
    np.testing.assert_allclose(digital_to_kg_m2([0, 5, 16, 74, 219]), [0, 0, 14 / 90.66, 0.78, 32.2], rtol=0.01)
    x = np.arange(256, dtype=np.float64)
    decoded = digital_to_kg_m2(x)
    np.testing.assert_allclose(digital_to_kg_m2(kg_m2_to_digital(decoded)), decoded, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kg_m2_to_digital(decoded)[6:], x[6:], atol=1e-3)  # exact above the no-echo range
    v = np.linspace(0, 90, 20001)
    assert np.all(np.diff(kg_m2_to_digital(v)) >= 0)  # monotone, also across the published decode's jump
    assert kg_m2_to_digital([1e6]).max() == 255


@pytest.mark.parametrize("units, scale", [("kg m-2", "physical"), ("kg/m2", "physical"), ("kg m**-2", "physical"),
                                          ("1", "digital"), (None, "digital"), ("mm/h", None), ("dBZ", None)])
def test_units_tell_the_scale(units, scale):
    assert scale_of_units(units) == scale


# ------------------------------------------------------------------------------------------------ NetCDF input


@pytest.mark.parametrize("fmt", ["NETCDF3_CLASSIC", "NETCDF4"])
def test_netcdf_in_kg_m2_reads_like_the_digital_file(tmp_path, radar_file, fmt):
    digital = _digital_frames(radar_file)
    path = _write(tmp_path / "in.nc", digital_to_kg_m2(digital), fmt=fmt, name="VIL")
    radar = read_radar_input(path, variable="VIL")
    echo = digital > 5
    np.testing.assert_allclose((radar.context * 255)[echo[:7]], digital[:7][echo[:7]], atol=1e-3)
    assert np.all(radar.context[~echo[:7]] == 0)
    assert radar.truth.shape == (6, 128, 128)
    assert radar.context_times == [START + dt.timedelta(minutes=10 * k) for k in range(7)]
    assert radar.reference_time == START + dt.timedelta(minutes=60)
    later = read_radar_input(path, variable="VIL", start=2)
    assert later.context_times[0] == START + dt.timedelta(minutes=20) and later.truth is None


def test_netcdf_digital_and_other_time_units(tmp_path, radar_file):
    digital = _digital_frames(radar_file)
    path = _write(tmp_path / "d.nc", digital, units="1", minutes=np.arange(13) / 6.0,
                  time_units=f"hours since {START:%Y-%m-%d %H:%M:%S}")
    radar = read_radar_input(path)
    np.testing.assert_allclose(radar.context * 255, digital[:7], atol=1e-4)
    assert radar.context_times[-1] == START + dt.timedelta(hours=1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(minutes=np.arange(13) * 6.0), "6 minutes apart; the model needs 10-minute frames"),
    (dict(minutes=np.r_[0, 10, 20, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130]), "gap in the context"),
    (dict(units="mm h-1"), "units 'mm h-1'"),
    (dict(name="precip"), "no variable 'vil' (found: precip)"),
])
def test_bad_netcdf_inputs_give_one_line(tmp_path, kwargs, message):
    path = _write(tmp_path / "bad.nc", np.zeros((13, 128, 128), np.float32), **kwargs)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_radar_input(path)


def test_netcdf_shape_and_content_refusals(tmp_path):
    nan = np.zeros((13, 128, 128), np.float32)
    nan[3, 5, 5] = np.nan
    with pytest.raises(InputError, match="missing, NaN"):
        read_radar_input(_write(tmp_path / "nan.nc", nan))
    huge = tmp_path / "huge.nc"
    with netCDF4.Dataset(huge, "w") as ds:
        for dim, n in (("time", 13), ("y", 100_000), ("x", 100_000)):
            ds.createDimension(dim, n)
        ds.createVariable("vil", "f4", ("time", "y", "x"), zlib=True, chunksizes=(1, 64, 64))
    with pytest.raises(InputError, match="declares 100000x100000 pixels"):
        read_radar_input(huge)
    flat = tmp_path / "flat.nc"
    with netCDF4.Dataset(flat, "w", format="NETCDF3_CLASSIC") as ds:
        ds.createDimension("y", 8)
        ds.createVariable("vil", "f4", ("y",))
    with pytest.raises(InputError, match=r"none of which is its time or x dimension"):
        read_radar_input(flat)
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"not a radar file at all")
    with pytest.raises(InputError, match="neither HDF5 nor NetCDF"):
        read_radar_input(junk)


def test_netcdf_laea_grid_is_read_and_grid_option_replaces_it(tmp_path):
    grid = grid_from_spec("center=35,-97", 128, 128)
    x, y = grid.coordinates(128, 128)
    attrs = {k: v for k, v in grid.mapping_attrs().items() if k != "crs_wkt"}
    path = _write(tmp_path / "g.nc", np.zeros((13, 128, 128), np.float32),
                  mapping=("crs", attrs, x, y, []))
    radar = read_radar_input(path)
    assert isinstance(radar.grid, Grid) and radar.placement is None  # already the model's 3 km grid
    np.testing.assert_allclose(radar.grid.extent(), grid.extent(), atol=1e-3)
    other = read_radar_input(path, grid="corner=40,-100 pixel=2000")
    ox, oy = other.placement.input_grid.coordinates(128, 128)
    assert ox[1] - ox[0] == pytest.approx(2000) and other.placement.input_grid.llcrnrlat == pytest.approx(40)
    mx, my = other.grid.coordinates()
    assert mx[1] - mx[0] == pytest.approx(3000) and other.context.shape == (7, 128, 128)


def test_other_grid_mappings_are_read_with_pyproj(tmp_path):
    attrs = {"grid_mapping_name": "polar_stereographic", "straight_vertical_longitude_from_pole": 10.0,
             "latitude_of_projection_origin": 90.0, "standard_parallel": 60.0, "false_easting": 0.0,
             "false_northing": 0.0}
    x, y = np.arange(128) * 1000.0, -3.6e6 + np.arange(128) * 1000.0  # y ascending: turned north-up when read
    path = _write(tmp_path / "ps.nc", np.zeros((13, 128, 128), np.float32), mapping=("polar", attrs, x, y, []))
    radar = read_radar_input(path)
    source = radar.placement.input_grid
    assert isinstance(source, Grid) and source.mapping_name == "polar_stereographic"
    np.testing.assert_array_equal(source.coordinates(128, 128)[1], y[::-1])
    assert radar.orientation.flip_y and not radar.orientation.flip_x
    lat, lon = source.lat_lon()
    assert 56 < lat.mean() < 58 and 10 < lon.mean() < 12
    assert lat[0].mean() > lat[-1].mean()  # row 0 north, as the frames
    assert radar.grid.mapping_name == "lambert_azimuthal_equal_area" and radar.context.shape == (7, 128, 128)


# ------------------------------------------------------------------------------------------------ --grid


def test_grid_specs():
    g = grid_from_spec("center=35.2,-97.4", 128, 128)
    x, y = g.coordinates(128, 128)
    assert x[1] - x[0] == pytest.approx(3000) and y[0] - y[1] == pytest.approx(3000)
    assert g.centre() == pytest.approx((35.2, -97.4))  # the projection's origin: north is up there
    assert (x[0] + x[-1]) / 2 == pytest.approx(0, abs=1e-3) and (y[0] + y[-1]) / 2 == pytest.approx(0, abs=1e-3)
    b = grid_from_spec("bbox=33.5,-99.8,36.9,-95.1; origin=35,-97", 128, 128)
    assert (b.llcrnrlat, b.llcrnrlon, b.urcrnrlat, b.urcrnrlon) == pytest.approx((33.5, -99.8, 36.9, -95.1))
    assert b.mapping_attrs()["latitude_of_projection_origin"] == 35


@pytest.mark.parametrize("spec, message", [
    ("", "exactly one of"), ("center=35", "needs 2"), ("center=35,-97 corner=30,-90", "exactly one of"),
    ("centre=35,-97", "cannot read"), ("center=95,-97", "latitudes must lie"),
    ("bbox=36,-95,33,-99", "north-east"), ("bbox=30,-99,33,-95 pixel=1000", "leave out pixel"),
])
def test_bad_grid_specs(spec, message):
    with pytest.raises(InputError, match=message):
        grid_from_spec(spec, 128, 128)
