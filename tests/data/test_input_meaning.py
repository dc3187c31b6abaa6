"""Inputs read by meaning: dimensions told by their coordinates (any order), fields turned north-up and written
back in the input's order; xarray objects and NumPy arrays with a said scale in the API; 5- and 2.5-minute series
thinned; folders and globs of one file per time (newest complete context, time from each file's metadata)."""
import datetime as dt

import h5py
import netCDF4
import numpy as np
import pytest
import xarray as xr

from prediff.data.radar_input import read_radar_input
from prediff.vil_scale import digital_to_kg_m2, kg_m2_to_digital
from prediff.errors import InputError
from prediff.io.netcdf import read_forecast, write_forecast

START = dt.datetime(2019, 7, 1, 18, 0)
UNITS = f"minutes since {START:%Y-%m-%d %H:%M:%S}"


def _storms(t=13, h=128, w=128, seed=0):
    """Digital VIL frames (t, h, w) with a storm off-centre (north-west quarter), so flips and transposes show."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.zeros((t, h, w), np.float32)
    for k in range(t):
        frames[k] = 200 * np.exp(-((yy - 30 - k) ** 2 + (xx - 20 - 2 * k) ** 2) / 80.0)
    return np.round(frames + rng.uniform(0, 3, frames.shape)).astype(np.float32)


def _netcdf(path, frames, *, dims=("time", "y", "x"), coords=None, minutes=None, units="1", name="vil",
            extra=None, fmt="NETCDF4"):
    """`frames` (t, h, w) written as the variable `name` with dimensions `dims` (names from `_ROLE`, any order);
    `coords`: dimension → (values in file order, attributes); a "time" coordinate in minutes unless
    `minutes` is False."""
    t, h, w = frames.shape
    axis = {"time": 0, "y": 1, "x": 2}
    with netCDF4.Dataset(path, "w", format=fmt) as ds:
        for d in dims:
            ds.createDimension(d, (t, h, w)[axis[_ROLE[d]]])
        for d, (values, attrs) in (coords or {}).items():
            c = ds.createVariable(d, "f8", (d,))
            c[:] = values
            c.setncatts(attrs)
        if minutes is not False and "time" in dims:
            c = ds.createVariable("time", "f8", ("time",))
            c[:] = np.arange(t) * 10.0 if minutes is None else minutes
            c.units = UNITS
        var = ds.createVariable(name, "f4", dims)
        var[:] = np.transpose(frames, [axis[_ROLE[d]] for d in dims])
        if units is not None:
            var.units = units
        for key, value in (extra or {}).items():
            var.setncattr(key, value)
    return path


#: the role (time, y, x) of each dimension name the tests use
_ROLE = {"time": "time", "t": "time", "y": "y", "x": "x", "a": "y", "b": "x", "lat": "y", "lon": "x", "dim_a": "y"}


def _projection(h=128, w=128, y_up=False, x_left=False):
    y = np.arange(h) * 3000.0
    x = np.arange(w) * 3000.0
    y = y if y_up else y[::-1]
    x = x[::-1] if x_left else x
    return {"x": (x, {"standard_name": "projection_x_coordinate", "units": "m"}),
            "y": (y, {"standard_name": "projection_y_coordinate", "units": "m"})}


# ------------------------------------------------------------------------------------------------ by meaning


def test_time_x_y_variable_is_read_by_its_coordinates_not_its_order(tmp_path):
    frames = _storms()
    plain = read_radar_input(_netcdf(tmp_path / "tyx.nc", frames, coords=_projection()))
    swapped = read_radar_input(_netcdf(tmp_path / "txy.nc", frames, dims=("time", "x", "y"), coords=_projection()))
    np.testing.assert_array_equal(swapped.context, plain.context)
    np.testing.assert_allclose(plain.context * 255, frames[:7], atol=1e-4)
    assert swapped.truth.shape == (6, 128, 128)


def test_any_dimension_names_and_order_with_axis_attributes(tmp_path):
    frames = _storms(h=128, w=128)
    coords = {"a": (np.arange(128)[::-1] * 1.0, {"axis": "Y", "units": "km"}),
              "b": (np.arange(128) * 1.0, {"axis": "X", "units": "km"}),
              "t": (np.arange(13) * 10.0, {"axis": "T", "units": UNITS})}
    radar = read_radar_input(_netcdf(tmp_path / "abt.nc", frames, dims=("b", "t", "a"), coords=coords,
                                     minutes=False))
    np.testing.assert_allclose(radar.context * 255, frames[:7], atol=1e-4)
    assert radar.context_times[-1] == START + dt.timedelta(minutes=60)


def test_length_one_dimensions_are_dropped_and_unknown_ones_refused(tmp_path):
    frames = _storms()
    path = tmp_path / "level.nc"
    with netCDF4.Dataset(path, "w") as ds:
        for d, n in (("time", 13), ("height", 1), ("y", 128), ("x", 128)):
            ds.createDimension(d, n)
        c = ds.createVariable("time", "f8", ("time",))
        c[:], c.units = np.arange(13) * 10.0, UNITS
        v = ds.createVariable("vil", "f4", ("time", "height", "y", "x"))
        v[:] = frames[:, None]
        v.units = "1"
    np.testing.assert_allclose(read_radar_input(path).context * 255, frames[:7], atol=1e-4)
    with pytest.raises(InputError, match="cannot tell what 'dim_a' is"):
        read_radar_input(_netcdf(tmp_path / "anon.nc", frames, dims=("time", "dim_a", "x")))
    with pytest.raises(InputError, match="claims to be x and y"):
        read_radar_input(_netcdf(tmp_path / "odd.nc", frames, coords={
            "x": (np.arange(128.0), {"axis": "X", "standard_name": "latitude"})}))



def test_rows_running_south_to_north_are_turned_north_up_and_written_back_as_they_came(tmp_path):
    frames = _storms()
    south_first = frames[:, ::-1, ::-1]  # the same storms with rows south → north and columns east → west
    path = _netcdf(tmp_path / "flipped.nc", south_first, coords=_projection(y_up=True, x_left=True))
    radar = read_radar_input(path)
    np.testing.assert_allclose(radar.context * 255, frames[:7], atol=1e-4)  # north-up for the model
    assert radar.orientation.flip_y and radar.orientation.flip_x
    fc = np.repeat(radar.context[None, :6], 2, axis=0)
    out = write_forecast(tmp_path / "fc.nc", fc, reference_time=radar.reference_time, lead_minutes=range(10, 70, 10),
                         context=radar.context, orientation=radar.orientation)
    written = xr.open_dataset(out)
    np.testing.assert_allclose(written["vil_context"].values, south_first[:7], atol=1e-3)  # the input's order
    back = read_forecast(out)  # without a map grid the file's x / y are pixel indices: read as it is stored
    np.testing.assert_allclose(back.context * 255, south_first[:7], atol=1e-3)


def test_grid_mapping_with_rows_south_first_keeps_the_input_coordinates(tmp_path):
    from prediff.io.grid import grid_from_spec

    grid = grid_from_spec("center=35,-97", 128, 128)
    x, y = grid.coordinates(128, 128)
    attrs = {k: v for k, v in grid.mapping_attrs().items() if k != "proj4"}
    frames = _storms()
    path = tmp_path / "laea_up.nc"
    _netcdf(path, frames[:, ::-1], coords={"x": (x, {"standard_name": "projection_x_coordinate", "units": "m"}),
                                           "y": (y[::-1], {"standard_name": "projection_y_coordinate", "units": "m"})},
            extra={"grid_mapping": "crs"})
    with netCDF4.Dataset(path, "a") as ds:
        ds.createVariable("crs", "i4", ()).setncatts(attrs)
    radar = read_radar_input(path)
    np.testing.assert_allclose(radar.context * 255, frames[:7], atol=1e-4)
    np.testing.assert_allclose(radar.grid.extent(), grid.extent(), atol=1e-3)
    out = write_forecast(tmp_path / "fc.nc", radar.context[None, :6], reference_time=radar.reference_time,
                         lead_minutes=range(10, 70, 10), context=radar.context, grid=radar.grid,
                         orientation=radar.orientation)
    written = xr.open_dataset(out)
    np.testing.assert_allclose(written["y"].values, y[::-1], atol=1e-6)  # ascending, as in the input
    np.testing.assert_allclose(written["vil_context"].values, frames[:7, ::-1], atol=1e-3)
    # the storm sits at the same projected coordinates in the input and in the output
    lat = written["lat"].values
    assert lat[0, 64] < lat[-1, 64]  # row 0 is the south, as in the input
    back = read_forecast(out)  # read north-up again, by its coordinates
    np.testing.assert_allclose(back.context, radar.context, atol=1e-6)
    np.testing.assert_allclose(back.grid.extent(), grid.extent(), atol=1e-3)


def test_south_first_polar_input_is_written_north_up_on_the_model_grid_and_as_it_came_on_its_own(tmp_path):
    from prediff.data.model_placement import output_fields, written_orientation

    frames = _storms()
    polar = {"grid_mapping_name": "polar_stereographic", "straight_vertical_longitude_from_pole": 10.0,
             "latitude_of_projection_origin": 90.0, "standard_parallel": 60.0, "false_easting": 0.0,
             "false_northing": 0.0}
    x, y = -64e3 + np.arange(128) * 1000.0, -3.6e6 + np.arange(128) * 1000.0  # y ascending: south row first
    path = _netcdf(tmp_path / "ps.nc", frames[:, ::-1], extra={"grid_mapping": "ps"}, coords={
        "x": (x, {"standard_name": "projection_x_coordinate", "units": "m"}),
        "y": (y, {"standard_name": "projection_y_coordinate", "units": "m"})})
    with netCDF4.Dataset(path, "a") as ds:
        ds.createVariable("ps", "i4", ()).setncatts(polar)
    radar = read_radar_input(path)
    assert radar.orientation.flip_y and radar.placement is not None
    np.testing.assert_allclose(radar.placement.input_context * 255, frames[:7], atol=1e-4)  # north-up as read
    members = np.repeat(radar.context[None, :6], 2, axis=0)  # persistence on the model grid
    for output_grid in ("model", "input"):
        fields, context, _, grid = output_fields(members, radar.context, radar.truth, radar.grid, radar.placement,
                                                 output_grid)
        out = write_forecast(tmp_path / f"{output_grid}.nc", fields, reference_time=radar.reference_time,
                             lead_minutes=range(10, 70, 10), context=context, grid=grid,
                             orientation=written_orientation(radar.orientation, radar.grid, output_grid))
        written = xr.open_dataset(out)
        lat = written["lat"].values
        if output_grid == "model":  # the model's grid: north-up, whichever way the input ran
            assert np.all(np.diff(written["y"].values) < 0) and lat[0].mean() > lat[-1].mean()
        else:  # the input's grid: its rows, x/y and lat/lon as in the file
            np.testing.assert_allclose(written["y"].values, y)
            np.testing.assert_allclose(written["vil_context"].values, frames[:7, ::-1], atol=1e-3)
            assert lat[0].mean() < lat[-1].mean()
        back = read_forecast(out)  # read north-up again, by its coordinates
        np.testing.assert_allclose(back.context, context, atol=1e-6)


def test_latitude_longitude_input_is_placed_on_the_map(tmp_path):
    frames = _storms()
    lat, lon = np.linspace(30, 33.8, 128), np.linspace(-100, -95.6, 128)
    path = _netcdf(tmp_path / "ll.nc", frames[:, ::-1], dims=("time", "lat", "lon"), coords={
        "lat": (lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": (lon, {"standard_name": "longitude", "units": "degrees_east"})})
    radar = read_radar_input(path)
    source = radar.placement.input_grid  # the file's own grid, north-up as the frames read from it
    np.testing.assert_allclose(radar.placement.input_context * 255, frames[:7], atol=1e-4)
    assert source.mapping_attrs()["grid_mapping_name"] == "latitude_longitude"
    la, lo = source.lat_lon(128, 128)
    assert la[0, 0] == pytest.approx(33.8) and lo[0, 0] == pytest.approx(-100)
    # on the model's grid the storm stays where it is on the map
    assert radar.grid.mapping_name == "lambert_azimuthal_equal_area"

    def centre(field, grid):
        lat, lon = grid.lat_lon(*field.shape)
        weight = np.where(field > 50 / 255, field, 0.0)
        return np.array([(weight * lat).sum(), (weight * lon).sum()]) / weight.sum()

    np.testing.assert_allclose(centre(radar.context[-1], radar.grid),
                               centre(radar.placement.input_context[-1], source), atol=0.02)


# ------------------------------------------------------------------------------------------------ the Python API


def test_api_numpy_array_needs_its_scale_and_values_inside_it():
    from prediff.api import forecast

    kg = digital_to_kg_m2(_storms(t=7))  # physical VIL, max about 21 kg m-2
    when = START + dt.timedelta(hours=1)
    with pytest.raises(InputError, match="carries no units: give its scale"):
        forecast(None, kg, reference_time=when)
    with pytest.raises(InputError, match=r"exceeds the 0-1 scale \(max 21"):
        forecast(None, kg, scale="0-1", reference_time=when)
    with pytest.raises(InputError, match="negative"):
        forecast(None, -kg, scale="kg m-2", reference_time=when)
    with pytest.raises(InputError, match="exceeds the kg m-2 scale"):
        forecast(None, kg * 1000, scale="kg m-2", reference_time=when)


def test_api_reads_arrays_on_each_scale_and_xarray_objects_like_files(tmp_path):
    from prediff.pipelines.forecast import as_radar as _as_radar

    digital = _storms(t=7)
    kg = digital_to_kg_m2(digital)
    when = START + dt.timedelta(hours=1)
    on_kg = _as_radar(kg, None, when, "kg m-2", "vil").context
    np.testing.assert_allclose(on_kg, kg_m2_to_digital(kg) / 255, atol=1e-6)
    np.testing.assert_allclose(_as_radar(digital, None, when, "digital", "vil").context, digital / 255, atol=1e-6)
    np.testing.assert_allclose(_as_radar(digital / 255, None, when, "0-1", "vil").context, digital / 255, atol=1e-6)
    # a DataArray in kg m-2, (time, x, y), with its coordinates: read by meaning, as the file would be
    times = np.datetime64("2019-07-01T18:00") + np.arange(7) * np.timedelta64(10, "m")
    da = xr.DataArray(np.transpose(kg, (0, 2, 1)), dims=("time", "x", "y"), name="VIL", attrs={"units": "kg m-2"},
                      coords={"time": times, "x": ("x", np.arange(128) * 3000.0, {"units": "m"}),
                              "y": ("y", np.arange(128)[::-1] * 3000.0, {"units": "m"})})
    radar = _as_radar(da, None, None, None, "vil")
    np.testing.assert_allclose(radar.context, on_kg, atol=1e-6)
    assert radar.reference_time == when
    same = _as_radar(da.to_dataset(), None, None, None, "VIL")
    np.testing.assert_array_equal(same.context, radar.context)
    with pytest.raises(InputError, match="has units 'mm h-1'"):
        _as_radar(da.assign_attrs(units="mm h-1"), None, None, None, "vil")


# ------------------------------------------------------------------------------------------------ time steps


@pytest.mark.parametrize("step, stride", [(5.0, 2), (2.5, 4)])
def test_5_and_2_5_minute_series_use_every_2nd_or_4th_frame_ending_at_the_newest(tmp_path, step, stride):
    n = 6 * stride + 1 + 1  # one frame more than needed: the thinning must start from the newest
    frames = _storms(t=n)
    path = _netcdf(tmp_path / "fast.nc", frames, minutes=np.arange(n) * step)
    radar = read_radar_input(path)
    used = list(range(n - 1, -1, -stride))[::-1][:7]
    np.testing.assert_allclose(radar.context * 255, frames[used], atol=1e-4)
    assert radar.reference_time == START + dt.timedelta(minutes=step * used[-1])
    assert [b - a for a, b in zip(radar.context_times, radar.context_times[1:])] == [dt.timedelta(minutes=10)] * 6
    assert len(radar.notes) == 1 and f"frames {step:g} minutes apart: using every {stride}" in radar.notes[0]


def test_a_gap_in_a_5_minute_series_or_another_step_is_refused(tmp_path):
    minutes = np.delete(np.arange(15) * 5.0, 8)  # 40 minutes missing
    with pytest.raises(InputError, match="gap in the context"):
        read_radar_input(_netcdf(tmp_path / "gap.nc", _storms(t=14), minutes=minutes))
    with pytest.raises(InputError, match="7 minutes apart"):
        read_radar_input(_netcdf(tmp_path / "seven.nc", _storms(), minutes=np.arange(13) * 7.0))


# ------------------------------------------------------------------------------------------------ one file per time


def _frame_file(path, frame, when, *, kind="netcdf", y_up=False):
    if kind == "netcdf":
        coords = _projection(*frame.shape, y_up=y_up)
        data = frame[::-1] if y_up else frame
        with netCDF4.Dataset(path, "w") as ds:
            for d, n in (("y", frame.shape[0]), ("x", frame.shape[1])):
                ds.createDimension(d, n)
            for d, (values, attrs) in coords.items():
                c = ds.createVariable(d, "f8", (d,))
                c[:] = values
                c.setncatts(attrs)
            t = ds.createVariable("time", "f8", ())
            t.assignValue((when - START).total_seconds() / 60.0)
            t.units = UNITS
            v = ds.createVariable("vil", "f4", ("y", "x"))
            v[:] = data
            v.units, v.coordinates = "1", "time"
    elif kind == "odim":
        with h5py.File(path, "w") as h5:
            h5["vil"] = frame.astype(np.uint8)
            what = h5.create_group("what")
            what.attrs["date"], what.attrs["time"] = f"{when:%Y%m%d}".encode(), f"{when:%H%M%S}".encode()
    else:
        with h5py.File(path, "w") as h5:
            h5["vil"] = frame[None].astype(np.uint8)
            h5["vil"].attrs["time_utc"] = f"{when:%Y-%m-%dT%H:%M:%SZ}"
    return path


def test_a_folder_of_5_minute_files_gives_the_newest_context_timed_by_metadata(tmp_path):
    frames = _storms(t=16)
    folder = tmp_path / "radar"
    folder.mkdir()
    for k in range(16):  # names in the reverse of time order: the times come from inside the files
        _frame_file(folder / f"scan_{99 - k:03d}.nc", frames[k], START + dt.timedelta(minutes=5 * k), y_up=True)
    (folder / ".partial.nc").write_bytes(b"being written")  # hidden: skipped
    (folder / "README.txt").write_text("not radar")
    radar = read_radar_input(folder)
    used = [15 - 2 * j for j in range(6, -1, -1)]
    np.testing.assert_allclose(radar.context * 255, frames[used], atol=1e-4)
    assert radar.reference_time == START + dt.timedelta(minutes=75) and radar.truth is None
    assert radar.orientation.flip_y and any("using every 2nd frame" in n for n in radar.notes)
    globbed = read_radar_input(str(folder / "scan_*.nc"))
    np.testing.assert_array_equal(globbed.context, radar.context)


def test_a_gap_among_the_newest_files_falls_back_to_the_newest_complete_context(tmp_path):
    frames = _storms(t=10)
    for k in range(10):
        if k == 8:
            continue  # 19:20 is missing
        _frame_file(tmp_path / f"f{k}.h5", frames[k], START + dt.timedelta(minutes=10 * k), kind="time_utc")
    radar = read_radar_input(tmp_path)
    np.testing.assert_allclose(radar.context * 255, frames[1:8], atol=1e-4)
    assert radar.reference_time == START + dt.timedelta(minutes=70)
    assert any("do not form a complete context (19:20 is missing)" in n for n in radar.notes)


def test_odim_style_hdf5_frames_and_folder_refusals(tmp_path):
    frames = _storms(t=7)
    for k in range(7):
        _frame_file(tmp_path / f"o{k}.h5", frames[k], START + dt.timedelta(minutes=10 * k), kind="odim")
    radar = read_radar_input(tmp_path)
    np.testing.assert_allclose(radar.context * 255, np.round(frames), atol=1e-4)
    _frame_file(tmp_path / "dup.h5", frames[0], START, kind="odim")
    with pytest.raises(InputError, match="both hold the frame of 2019-07-01 18:00:00"):
        read_radar_input(tmp_path)
    (tmp_path / "dup.h5").unlink()
    with h5py.File(tmp_path / "notime.h5", "w") as h5:
        h5["vil"] = frames[0].astype(np.uint8)
    with pytest.raises(InputError, match="notime.h5 carries no time"):
        read_radar_input(tmp_path)
    with pytest.raises(InputError, match="no file matches"):
        read_radar_input(str(tmp_path / "nothing_*.nc"))
    few = tmp_path / "few"
    few.mkdir()
    for k in range(7):
        _frame_file(few / f"s{k}.h5", frames[k], START + dt.timedelta(minutes=6 * k), kind="odim")
    with pytest.raises(InputError, match="no 7 frames 10 minutes apart .* they are 6 minutes apart"):
        read_radar_input(few)
    with pytest.raises(InputError, match="uses the newest frames"):
        read_radar_input(few, start=2)
