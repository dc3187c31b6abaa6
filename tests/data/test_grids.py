"""Map grids with pyproj: inputs on polar-stereographic, lat/lon, curvilinear and LAEA grids put on the model's
3 km LAEA grid and back (`--output-grid`), the resampling's accuracy, and refusals of grids that are not on the
Earth (`--grid` and CF grid mappings)."""
import datetime as dt
import json
import warnings

import h5py
import netCDF4
import numpy as np
import pytest
from typer.testing import CliRunner

from prediff.cli.app import app
from prediff.data.model_placement import output_fields, place_on_model_grid
from prediff.data.radar_input import read_radar_input
from prediff.errors import InputError
from prediff.io.grid import CurvilinearGrid, Grid, geodetic_of, grid_from_cf, grid_from_spec, transform
from prediff.io.model_grid import model_grid_for
from prediff.io.netcdf import read_forecast, write_forecast
from prediff.io.regrid import resample

START = dt.datetime(2019, 7, 1, 18, 0)
POLAR = {"grid_mapping_name": "polar_stereographic", "straight_vertical_longitude_from_pole": 10.0,
         "latitude_of_projection_origin": 90.0, "standard_parallel": 60.0, "false_easting": 0.0,
         "false_northing": 0.0, "earth_radius": 6371229.0}
METRES = {"units": "m", "standard_name": "projection_x_coordinate"}
LAEA = {"grid_mapping_name": "lambert_azimuthal_equal_area", "latitude_of_projection_origin": 38.0,
        "longitude_of_projection_origin": -98.0, "false_easting": 0.0, "false_northing": 0.0,
        "earth_radius": 6370997.0}


def polar_grid(n=700, pixel=1000.0):
    """A polar-stereographic grid over southern Scandinavia, rows north to south (as a composite would be)."""
    return grid_from_cf("polar", POLAR, -350e3 + np.arange(n) * pixel, -3.4e6 - np.arange(n) * pixel, METRES, METRES)


def lat_lon_grid(n=500):
    return grid_from_cf(None, None, 5.0 + np.arange(n) * 0.016, 55.0 - np.arange(n) * 0.01,
                        {"units": "degrees_east"}, {"units": "degrees_north"})


def curvilinear_grid(n=300):
    """2-D lat/lon only: the pixel centres of a rotated polar-stereographic grid."""
    ps = polar_grid(n, 1500.0)
    xx, yy = np.meshgrid(ps.x, ps.y)
    angle = np.radians(20.0)
    cx, cy = xx.mean(), yy.mean()
    rx, ry = cx + (xx - cx) * np.cos(angle) - (yy - cy) * np.sin(angle), cy + (xx - cx) * np.sin(angle) + \
        (yy - cy) * np.cos(angle)
    lon, lat = transform(ps.crs, geodetic_of(ps.crs), rx, ry)
    return grid_from_cf(None, None, None, None, None, None, lat, lon)


def laea_2km_grid(n=300):
    return grid_from_spec("center=52,5 pixel=2000", n, n)


def dateline_grid(n=250):
    """Lat/lon with longitudes 176..184 (across 180 degrees), rows south to north."""
    return grid_from_cf(None, None, np.linspace(176.0, 184.0, n), np.linspace(52.0, 57.0, n),
                        {"units": "degrees_east"}, {"units": "degrees_north"})


def rotated_pole_grid(n=300):
    mapping = {"grid_mapping_name": "rotated_latitude_longitude", "grid_north_pole_latitude": 40.0,
               "grid_north_pole_longitude": -170.0}
    return grid_from_cf("rotated_pole", mapping, np.linspace(-2.0, 2.0, n), np.linspace(2.0, -2.0, n),
                        {"units": "degrees", "standard_name": "grid_longitude"},
                        {"units": "degrees", "standard_name": "grid_latitude"})


GRIDS = {"polar stereographic": polar_grid, "lat/lon": lat_lon_grid, "curvilinear lat/lon": curvilinear_grid,
         "LAEA 2 km": laea_2km_grid, "lat/lon across 180": dateline_grid, "rotated pole": rotated_pole_grid}


def blob(grid, sigma_km, north_km=0.0, east_km=0.0):
    """A Gaussian storm of `sigma_km` on `grid`, centred `north_km`/`east_km` from the grid's centre."""
    lat, lon = grid.lat_lon()
    clat, clon = grid.centre()
    clat, clon = clat + north_km / 111.2, clon + east_km / (111.2 * np.cos(np.radians(clat)))
    dy, dx = (lat - clat) * 111.2, (lon - clon) * 111.2 * np.cos(np.radians(clat))
    return np.exp(-(dx ** 2 + dy ** 2) / (2 * sigma_km ** 2)).astype(np.float32)


def centre_of_mass_km(field, grid):
    """The field's centre of mass in the grid's own coordinates, in km ((x, y); lat/lon grids: east/north km
    from the grid's centre; curvilinear: in its local LAEA)."""
    w = np.nan_to_num(field) / np.nansum(field)
    if isinstance(grid, CurvilinearGrid):
        x, y = grid.local_xy
        return float((w * x).sum() / 1e3), float((w * y).sum() / 1e3)
    xx, yy = np.meshgrid(grid.x, grid.y)
    if grid.geographic:
        clat, clon = grid.centre()[0], float(np.mean(grid.x))
        return (float((w * (xx - clon)).sum() * 111.2 * np.cos(np.radians(clat))),
                float((w * (yy - clat)).sum() * 111.2))
    return float((w * xx).sum() / 1e3), float((w * yy).sum() / 1e3)


def model_com_in_input_coordinates(field, model, grid):
    """The centre of mass of a model-grid field, carried into the input grid's coordinates (km as above)."""
    w = np.nan_to_num(field) / np.nansum(field)
    xx, yy = np.meshgrid(model.x, model.y)
    mx, my = (w * xx).sum(), (w * yy).sum()
    if isinstance(grid, CurvilinearGrid):
        x, y = transform(model.crs, grid.local_crs, [mx], [my])
        return float(x[0] / 1e3), float(y[0] / 1e3)
    x, y = transform(model.crs, grid.crs, [mx], [my])
    if grid.geographic:
        clat, clon = grid.centre()
        clon = float(np.mean(grid.x))  # the grid's own longitudes (176..184 stays so, not -176)
        return float(((x[0] - clon + 180.0) % 360.0 - 180.0) * 111.2 * np.cos(np.radians(clat))), \
            float((y[0] - clat) * 111.2)
    return float(x[0] / 1e3), float(y[0] / 1e3)


# ------------------------------------------------------------------------------------------------------------------
# the model's grid for an input


@pytest.mark.parametrize("kind", list(GRIDS))
def test_any_input_grid_goes_onto_a_3km_laea_grid_centred_on_it_and_covering_it(kind):
    grid = GRIDS[kind]()
    model = model_grid_for(grid)
    cf = model.mapping_attrs()
    assert model.mapping_name == "lambert_azimuthal_equal_area"
    np.testing.assert_allclose(np.diff(model.x), 3000.0)
    np.testing.assert_allclose(np.diff(model.y), -3000.0)  # north-up
    lat, lon = grid.centre()
    assert cf["latitude_of_projection_origin"] == pytest.approx(lat, abs=1e-3)
    assert cf["longitude_of_projection_origin"] == pytest.approx(lon, abs=1e-3)
    assert min(model.shape) >= 128
    # the whole input lies inside the model grid
    _, coverage = resample(np.ones(model.shape, np.float32), model, grid)
    assert coverage.min() == 1.0


def test_a_large_input_gives_the_whole_larger_model_grid():
    grid = polar_grid(700)
    frames = np.zeros((7,) + grid.shape, np.float32)
    context, truth, model, placement = place_on_model_grid(frames, None, grid)
    assert model.shape == context.shape[1:] and min(model.shape) > 220  # 700 km: about 233 pixels of 3 km
    assert truth is None and placement.input_grid is grid


def test_an_input_already_on_3km_laea_is_copied_not_interpolated():
    """A south-up 100 x 100 LAEA grid of 3 km: the model grid is its own pixels, flipped and extended to 128."""
    rng = np.random.default_rng(0)
    x, y = np.arange(100) * 3000.0 + 1500.0, np.arange(100) * 3000.0 - 150e3  # y ascending: south row first
    grid = grid_from_cf("crs", LAEA, x, y, METRES, METRES)
    frames = rng.random((7, 100, 100)).astype(np.float32)
    context, _, model, placement = place_on_model_grid(frames, None, grid)
    assert model.shape == (128, 128) and placement.coverage == pytest.approx(100 * 100 / 128 ** 2)
    inside = context[:, 14:114, 14:114]
    np.testing.assert_array_equal(inside, frames[:, ::-1])  # exact values, north row first
    assert np.count_nonzero(context) == np.count_nonzero(frames)  # no echo beyond the input


def test_missing_values_inside_the_domain_are_refused():
    grid = polar_grid(200)
    frames = np.zeros((7, 200, 200), np.float32)
    frames[1, 100, 100] = np.nan
    with pytest.raises(InputError, match=r"^context frame 2 of 7 has missing values under \d+ pixels"):
        place_on_model_grid(frames, None, grid)


# ------------------------------------------------------------------------------------------------------------------
# accuracy of the resampling


@pytest.mark.parametrize("kind", list(GRIDS))
def test_round_trip_of_a_smooth_field_is_exact_to_interpolation_error(kind):
    """input grid -> model grid -> input grid. Measured (docs/grids.md): a Gaussian storm of sigma 20 km comes back
    within 0.0085 of its peak 1 everywhere, sigma 40 km within 0.0023: second order in the storm's size, as
    interpolation error is; nothing is shifted."""
    grid = GRIDS[kind]()
    model = model_grid_for(grid)
    errors = []
    for sigma in (20.0, 40.0):
        field = blob(grid, sigma)
        there, coverage = resample(field, grid, model)
        back, _ = resample(np.where(coverage > 0, there, 0.0), model, grid)
        errors.append(np.abs(back - field).max())
    assert errors[0] < 0.01 and errors[1] < 0.003
    assert errors[1] < errors[0] / 2.5  # halving the curvature quarters the error: interpolation, not offset


@pytest.mark.parametrize("kind", list(GRIDS))
def test_a_storm_keeps_its_position(kind):
    """An off-centre storm's centre of mass on the model grid, measured in the input's coordinates, is where it
    was: within 3 model pixels as required (measured: under 0.1 km)."""
    grid = GRIDS[kind]()
    model = model_grid_for(grid)
    field = blob(grid, 8.0, north_km=90.0, east_km=-60.0)
    on_model, _ = resample(field, grid, model)
    ex, ey = centre_of_mass_km(field, grid)
    mx, my = model_com_in_input_coordinates(on_model, model, grid)
    assert np.hypot(mx - ex, my - ey) < 3 * 3.0
    assert np.hypot(mx - ex, my - ey) < 0.5


def test_coarsening_is_area_weighted_so_a_one_pixel_core_is_kept():
    """A single 1 km pixel of rain: on the 3 km grid its mass is kept, the same wherever it falls (a point sample
    would drop it or make it nine times heavier, depending on where it falls). Measured: 0.950 of the mass at the
    four neighbouring positions, 0.972 further north (the polar-stereographic pixels' true area varies)."""
    grid = polar_grid(700)
    model = model_grid_for(grid)
    ratios = []
    for row, column in [(340, 300), (340, 301), (341, 302), (342, 350), (100, 600)]:
        field = np.zeros(grid.shape, np.float32)
        field[row, column] = 1.0
        on_model, _ = resample(field, grid, model)
        ratios.append(np.nansum(on_model) * 3000.0 ** 2 / 1000.0 ** 2)
        assert np.nanmax(on_model) > 0.05
    assert min(ratios) > 0.94 and max(ratios) < 1.06
    assert max(ratios[:4]) - min(ratios[:4]) < 0.01  # neighbouring positions: the same (the last lies further north)


# ------------------------------------------------------------------------------------------------------------------
# writing on the input's grid


@pytest.mark.parametrize("kind", ["polar stereographic", "lat/lon", "curvilinear lat/lon"])
def test_forecast_file_on_an_input_grid_keeps_that_grid(tmp_path, kind):
    grid = GRIDS[kind](120) if kind != "lat/lon" else lat_lon_grid(120)
    members = np.zeros((2, 6) + grid.shape, np.float32)
    path = write_forecast(tmp_path / "fc.nc", members, reference_time=START, lead_minutes=range(10, 70, 10),
                          grid=grid)
    back = read_forecast(path).grid
    assert type(back) is type(grid) and back.same_as(grid, tolerance_m=1.0)
    with netCDF4.Dataset(path) as ds:
        name = ds["vil"].grid_mapping
        assert name == grid.mapping_name and ds[name].grid_mapping_name == name
        if kind == "lat/lon":
            assert ds["x"].units == "degrees_east" and "lat" not in ds.variables
        if kind == "polar stereographic":
            assert ds[name].straight_vertical_longitude_from_pole == 10.0 and ds[name].earth_radius == 6371229.0


def test_grid_mapping_named_like_an_output_variable_cannot_collide(tmp_path):
    """The input's grid-mapping variable is called vil_kg_m2: the forecast names its own after the projection."""
    grid = grid_from_cf("vil_kg_m2", POLAR, -350e3 + np.arange(32) * 1e3, -3.4e6 - np.arange(32) * 1e3, METRES,
                        METRES)
    path = write_forecast(tmp_path / "fc.nc", np.zeros((1, 6, 32, 32), np.float32), reference_time=START,
                          lead_minutes=range(10, 70, 10), grid=grid)
    with netCDF4.Dataset(path) as ds:
        assert ds["vil"].grid_mapping == "polar_stereographic" and ds["vil_kg_m2"].ndim == 4


def test_output_fields_on_the_input_grid_are_the_members_resampled_back():
    grid = polar_grid(200)
    frames = np.stack([blob(grid, 15.0)] * 7)
    context, _, model, placement = place_on_model_grid(frames, None, grid)
    members = np.stack([np.stack([context[-1]] * 6)] * 2)  # persistence, on the model grid
    out, ctx, _, out_grid = output_fields(members, context, None, model, placement, "input")
    assert out_grid is grid and out.shape == (2, 6, 200, 200) and ctx is frames
    assert np.abs(out[0, 0] - frames[-1]).max() < 0.02
    same = output_fields(members, context, None, model, placement, "model")
    assert same[0] is members and same[3] is model
    with pytest.raises(InputError, match="valid output grids: model, input"):
        output_fields(members, context, None, model, placement, "native")


def _write_polar_input(path, frames, grid, minutes=None):
    """A CF NetCDF of `frames` (T, H, W) on 0-1 on the polar grid `grid`, at `minutes` after START (default every
    10 minutes from START)."""
    t = len(frames)
    with netCDF4.Dataset(path, "w") as ds:
        for dim, n in (("time", t), ("y", grid.shape[0]), ("x", grid.shape[1])):
            ds.createDimension(dim, n)
        time = ds.createVariable("time", "f8", ("time",))
        time.setncatts({"units": f"minutes since {START:%Y-%m-%d %H:%M:%S}", "standard_name": "time"})
        time[:] = np.arange(t) * 10.0 if minutes is None else minutes
        crs = ds.createVariable("stere", "i4", ())
        crs.setncatts(POLAR)
        for dim, values in (("x", grid.x), ("y", grid.y)):
            c = ds.createVariable(dim, "f8", (dim,))
            c[:] = values
            c.setncatts({"standard_name": f"projection_{dim}_coordinate", "units": "m"})
        var = ds.createVariable("vil", "f4", ("time", "y", "x"), zlib=True)
        var[:] = frames
        var.setncatts({"units": "1", "grid_mapping": "stere"})
    return path


def _example_event_seen_by(grid, frames, repo_root):
    """The first `frames` frames of the example SEVIR event as a 1 km composite on `grid` sees them (0 outside)."""
    with h5py.File(repo_root / "examples" / "radar.h5") as h5:
        event = np.moveaxis(h5["vil"][0], -1, 0)[:frames].astype(np.float32)
    sevir_like = grid_from_spec("center=%f,%f" % grid.centre(), 128, 128)
    seen, _ = resample(event, sevir_like, grid)
    return np.nan_to_num(seen)


def _forecast_on_the_input_grid(source, out):
    """`prediff sample` of `source` (2 members, no alignment) written on the input's grid: its JSON report."""
    result = CliRunner().invoke(app, [
        "sample", "--input", str(source), "--out", str(out), "--output-grid", "input", "--samples", "2",
        "--align", "none", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["output_grid"] == "input" and report["grid"] == "polar_stereographic"
    return report


def _assert_the_storm_stays_put(out, grid):
    """The first forecast frame's centre of mass (the members' mean) lies within 3 model pixels (9 km) of the last
    context frame's, in the coordinates of the input's `grid`: the forecast leaves the storm where the input has it."""
    with netCDF4.Dataset(out / "forecast.nc") as ds:
        first = np.asarray(ds["vil"][:, 0].mean(axis=0))
        last = np.asarray(ds["vil_context"][-1])
    cx, cy = centre_of_mass_km(first, grid)
    lx, ly = centre_of_mass_km(last, grid)
    assert np.hypot(cx - lx, cy - ly) < 3 * 3.0


@pytest.mark.slow
def test_output_grid_input_end_to_end_puts_the_storm_where_it_is(tmp_path, repo_root):
    """A polar-stereographic 1 km file: forecast with --output-grid input is written on that grid, with its
    mapping; the first forecast frame's centre of mass is within 3 model pixels of the last context frame's, in
    the input's coordinates (measured: 3.2 km with the demo model's default 20 solver steps; the storm itself
    moves 5.9 km in those 10 minutes)."""
    grid = polar_grid(360)
    frames = _example_event_seen_by(grid, 13, repo_root)
    source = _write_polar_input(tmp_path / "composite.nc", frames, grid)
    _forecast_on_the_input_grid(source, tmp_path / "fc")
    with netCDF4.Dataset(tmp_path / "fc" / "forecast.nc") as ds:
        assert ds["vil"].shape == (2, 6, 360, 360) and ds["vil"].grid_mapping == "polar_stereographic"
        np.testing.assert_array_equal(ds["x"][:], grid.x)
        np.testing.assert_array_equal(ds["y"][:], grid.y)
        np.testing.assert_allclose(ds["vil_context"][:], frames[:7], atol=1e-3)
    _assert_the_storm_stays_put(tmp_path / "fc", grid)


@pytest.mark.compiled
@pytest.mark.slow
def test_a_folder_of_5_minute_700_pixel_polar_files_is_forecast_in_windows_where_the_storm_is(tmp_path, repo_root):
    """A folder of one-frame polar-stereographic 1 km files of 700 x 700 pixels every 5 minutes (a national
    composite): the newest 10-minute context is taken from it, the 700 km domain is forecast in overlapping
    windows, written back on the input grid, and the first forecast frame's centre of mass is within 3 model
    pixels of the last context frame's, in the input's coordinates."""
    grid = polar_grid(700)
    tenth = _example_event_seen_by(grid, 7, repo_root)
    folder = tmp_path / "composite"
    folder.mkdir()
    for k in range(13):  # every 5 minutes: the 10-minute frames and the means between them
        frame = tenth[k // 2] if k % 2 == 0 else (tenth[k // 2] + tenth[k // 2 + 1]) / 2
        _write_polar_input(folder / f"comp_{k:02d}.nc", frame[None], grid, minutes=[5.0 * k])
    report = _forecast_on_the_input_grid(folder, tmp_path / "fc")
    assert report["windows"] > 1 and report["tile_overlap"] == 32
    with netCDF4.Dataset(tmp_path / "fc" / "forecast.nc") as ds:
        assert ds["vil"].shape == (2, 6, 700, 700) and ds["vil"].grid_mapping == "polar_stereographic"
        np.testing.assert_allclose(ds["vil_context"][:], tenth, atol=1e-3)
    _assert_the_storm_stays_put(tmp_path / "fc", grid)


# ------------------------------------------------------------------------------------------------------------------
# numbers from outside: CF grid mappings


def _laea_file(path, attrs, x=None, y=None):
    x = np.arange(128) * 3000.0 if x is None else x
    y = np.arange(128)[::-1] * 3000.0 if y is None else y
    with netCDF4.Dataset(path, "w") as ds:
        for dim, n in (("time", 13), ("y", len(y)), ("x", len(x))):
            ds.createDimension(dim, n)
        time = ds.createVariable("time", "f8", ("time",))
        time.setncatts({"units": f"minutes since {START:%Y-%m-%d %H:%M:%S}", "standard_name": "time"})
        time[:] = np.arange(13) * 10.0
        crs = ds.createVariable("laea", "i4", ())
        crs.setncatts(attrs)
        for dim, values in (("x", x), ("y", y)):
            c = ds.createVariable(dim, "f8", (dim,))
            c[:] = values
            c.setncatts({"standard_name": f"projection_{dim}_coordinate", "units": "m"})
        var = ds.createVariable("vil", "f4", ("time", "y", "x"))
        var[:] = np.zeros((13, len(y), len(x)), np.float32)
        var.setncatts({"units": "1", "grid_mapping": "laea"})
    return path


@pytest.mark.parametrize("change, message", [
    ({"earth_radius": np.nan}, "earth_radius is nan"),
    ({"earth_radius": -1.0}, "earth_radius is -1 m"),
    ({"earth_radius": 0.0}, "earth_radius is 0 m"),
    ({"latitude_of_projection_origin": 91.0}, "latitude_of_projection_origin is 91 degrees"),
    ({"latitude_of_projection_origin": 1e300}, "latitude_of_projection_origin is 1e\\+300"),
    ({"x": np.arange(128) * 1e300}, "reaches .* m from its origin"),
    ({"x": np.arange(128) * 1e-300}, "pixels of 1e-300"),
    ({"x": np.arange(128) * 2e5}, "pixels of 3e\\+03..2e\\+05 m"),
    ({"false_easting": np.inf}, "false_easting is inf"),
    ({"semi_major_axis": 6378137.0, "inverse_flattening": 5.0, "earth_radius": None}, "inverse_flattening is 5"),
])
def test_grid_mapping_numbers_off_the_earth_are_one_line(tmp_path, change, message):
    attrs, x = dict(LAEA), change.get("x")
    for key, value in change.items():
        if key != "x":
            attrs[key] = value
    attrs = {k: v for k, v in attrs.items() if v is not None}
    path = _laea_file(tmp_path / "bad.nc", attrs, x=x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing from numpy or pyproj reaches the terminal
        with pytest.raises(InputError, match=message):
            read_radar_input(path)
    result = CliRunner().invoke(app, ["sample", "--input", str(path), "--out", str(tmp_path / "out")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Warning" not in result.output and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------------------------
# --grid


def test_grid_centre_at_the_antipode_of_sevirs_origin_is_placed_there():
    grid = grid_from_spec("center=-38,82", 128, 128)
    assert grid.centre() == pytest.approx((-38.0, 82.0))
    lat, lon = grid.lat_lon()
    assert lat[64, 64] == pytest.approx(-38.0, abs=0.03) and lon[64, 64] == pytest.approx(82.0, abs=0.03)


@pytest.mark.parametrize("spec, message", [
    ("center=-38,82 origin=38,-98", "lies 180 degrees from the projection origin"),
    ("bbox=-40,80,-36,84 origin=38,-98", "lies 17[0-9] degrees from the projection origin"),
    ("center=35,-97 center=36,-97", "center= is given twice"),
    ("center=35,-97 pixel=3000 pixel=2000", "pixel= is given twice"),
    ("bbox=35,-97,35.000001,-96.999999", r"pixels of 0.000712..0.000869 m .* must lie in 1..100000 m"),
    ("center=35,-97 pixel=0.5", "pixel= must lie in 1..100000 m"),
    ("center=35,-97 radius=6371", "radius= must lie"),
])
def test_grid_specs_off_the_earth_are_refused(spec, message):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=message):
            grid_from_spec(spec, 128, 128)


def test_one_bound_on_pixel_size_for_pixel_and_bbox():
    assert np.diff(grid_from_spec("center=35,-97 pixel=1", 128, 128).x)[0] == pytest.approx(1.0)
    tiny = grid_from_spec("bbox=35,-97,35.0018,-96.9978", 128, 128)  # about 1.5 m pixels
    assert 1.0 < np.diff(tiny.x)[0] < 2.0


@pytest.mark.parametrize("output_grid", ["model", "input"])
def test_a_forecast_on_either_grid_is_scored_against_the_truth_on_that_grid(tmp_path, output_grid):
    from prediff.config import Config
    from prediff.pipelines.evaluate import score_forecast_file

    grid = polar_grid(200)
    frames = np.stack([blob(grid, 12.0, north_km=3.0 * k) for k in range(13)])
    source = _write_polar_input(tmp_path / "composite.nc", frames, grid)
    radar = read_radar_input(source)
    if output_grid == "input":
        members, context, g = np.stack([frames[7:]] * 2), frames[:7], grid
    else:
        members, context, g = np.stack([radar.truth] * 2), radar.context, radar.grid
    path = write_forecast(tmp_path / "fc.nc", members, reference_time=START + dt.timedelta(minutes=60),
                          lead_minutes=range(10, 70, 10), context=context, grid=g)
    scores, _ = score_forecast_file(path, source, 0, 0, Config())
    assert scores["mse"] == pytest.approx(0.0, abs=1e-9)


def test_api_output_grid_lists_the_valid_choices():
    from prediff.api import forecast

    with pytest.raises(InputError, match="unknown output grid 'native'; valid output grids: model, input"):
        forecast(None, np.zeros((7, 128, 128), np.float32), output_grid="native")
