"""The commands around the inputs: a folder of 5-minute files forecast end to end (north-up for the model, written
back as it came, the model named, history without machine paths); `score` reading what the forecast records;
help text for users."""
import datetime as dt
import re

import netCDF4
import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from prediff.cli.app import app
from prediff.io.netcdf import write_forecast

START = dt.datetime(2019, 7, 1, 18, 0)
UNITS = f"minutes since {START:%Y-%m-%d %H:%M:%S}"
POLAR = {"grid_mapping_name": "polar_stereographic", "straight_vertical_longitude_from_pole": 0.0,
         "latitude_of_projection_origin": 90.0, "standard_parallel": 60.0, "false_easting": 0.0,
         "false_northing": 0.0}


@pytest.fixture(scope="module")
def ckpts(tiny_runs):
    return {k: str(v[0] / "last.ckpt") for k, v in tiny_runs.items()}


def _frame(k, size=128):
    yy, xx = np.mgrid[0:size, 0:size]
    return (180 * np.exp(-((yy - 30 - k) ** 2 + (xx - 25 - k) ** 2) / 60.0)).astype(np.float32)


def _frame_file(path, frame, when):
    """One frame, rows south → north (y ascending), polar-stereographic grid mapping, scalar CF time."""
    h, w = frame.shape
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("y", h)
        ds.createDimension("x", w)
        for name, values in (("x", np.arange(w) * 1000.0), ("y", -4.0e6 + np.arange(h) * 1000.0)):
            c = ds.createVariable(name, "f8", (name,))
            c[:] = values
            c.setncatts({"standard_name": f"projection_{name}_coordinate", "units": "m"})
        ds.createVariable("polar", "i4", ()).setncatts(POLAR)
        t = ds.createVariable("time", "f8", ())
        t.assignValue((when - START).total_seconds() / 60.0)
        t.units = UNITS
        v = ds.createVariable("vil", "f4", ("y", "x"))
        v[:] = frame[::-1]
        v.setncatts({"units": "1", "grid_mapping": "polar", "coordinates": "time"})


def test_folder_of_5_minute_files_forecasts_end_to_end_and_names_the_model(tmp_path, ckpts, monkeypatch):
    folder = tmp_path / "radar"
    folder.mkdir()
    for k in range(15):
        _frame_file(folder / f"r{k:02d}.nc", _frame(k), START + dt.timedelta(minutes=5 * k))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["sample", "--input", str(folder), "--out", str(tmp_path / "fc"), "--vae",
                                      ckpts["vae"], "--unet", ckpts["unet"], "--samples", "2", "--steps", "2",
                                      "--sampler", "ddim", "--align", "none", "--output-grid", "input"])
    assert result.exit_code == 0, result.output
    assert "frames 5 minutes apart: using every 2nd frame, ending at the newest (2019-07-01 19:10)" in result.output
    # networks given one by one: not the demo model, whose name the --model default would give
    assert re.search(r"^model custom \(weights sha256 [0-9a-f]{16}\)$", result.output, re.M), result.output
    assert re.search(r"^checkpoints: vae \S+last.ckpt, unet \S+last.ckpt, align-net none$", result.output, re.M)
    assert "synthetic storms" not in result.output
    ds = xr.open_dataset(tmp_path / "fc" / "forecast.nc")
    assert ds["forecast_reference_time"].values == np.datetime64("2019-07-01T19:10")
    # written back on the input's grid as the input came: y ascending, the storm in the same rows as in the input
    grid_name = ds["vil"].attrs["grid_mapping"]
    assert np.all(np.diff(ds["y"].values) > 0) and ds[grid_name].attrs["grid_mapping_name"] == "polar_stereographic"
    used = [2 + 2 * j for j in range(7)]
    expected = np.stack([_frame(k)[::-1] for k in used])
    np.testing.assert_allclose(ds["vil_context"].values, expected, atol=1e-3)
    attrs = {k: str(v) for k, v in ds.attrs.items()}
    assert attrs["model"] == "custom" and "model custom" in attrs["source"] and len(attrs["model_weights_sha256"]) == 64
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: prediff sample --input radar --out fc ", attrs["history"])
    for key, value in attrs.items():
        assert str(tmp_path) not in value and ".pytest_cache" not in value, key
    assert "root: null" in attrs["prediff_config"]


def test_the_demo_model_says_it_knows_synthetic_storms_only():
    from prediff.pipelines.forecast import is_synthetic, model_lines
    from prediff.pipelines.model import load_model

    demo = load_model("demo")
    lines = model_lines(demo)
    assert is_synthetic(demo) and lines[0].startswith("model demo (weights sha256 ")
    assert "trained on synthetic storms, not real radar" in lines[1]
    assert "prediff download weights sevirlr" in lines[1]


def test_a_model_with_networks_given_one_by_one_is_not_named_demo():
    from prediff.pipelines.forecast import model_label, model_lines
    from prediff.pipelines.model import load_model
    from prediff.pipelines.model_store import BUNDLED

    unet = BUNDLED["demo"] / "unet.ckpt"
    mixed = load_model("demo", unet=unet)  # --unet given: the VAE and alignment network still the demo's
    assert model_label(mixed) == "custom"
    lines = model_lines(mixed)
    assert lines[0].startswith("model custom (weights sha256 ")
    assert lines[1] == (f"checkpoints: vae {BUNDLED['demo'] / 'vae.ckpt'}, unet {unet}, "
                        f"align-net {BUNDLED['demo'] / 'align.ckpt'}")
    assert "synthetic storms" in lines[2]  # judged by its files: the UNet is the demo's
    assert model_label(load_model("demo")) == "demo"


def test_history_command_line_has_no_machine_paths(tmp_path, monkeypatch):
    from prediff.cli.command_line import command_line

    monkeypatch.chdir(tmp_path)
    line = command_line(argv=["sample", "--input", str(tmp_path / "in" / "r.nc"), "--out=/somewhere/else/fc",
                              "--grid", "center=35,-97"])
    assert line == "prediff sample --input in/r.nc --out=.../fc --grid center=35,-97"


# ------------------------------------------------------------------------------------------------ score


def _truth_netcdf(path, frames, name="VIL"):
    t = len(frames)
    with netCDF4.Dataset(path, "w") as ds:
        for d, n in (("time", t), ("y", 128), ("x", 128)):
            ds.createDimension(d, n)
        c = ds.createVariable("time", "f8", ("time",))
        c[:], c.units = np.arange(t) * 10.0, UNITS
        v = ds.createVariable(name, "f4", ("time", "y", "x"))
        v[:], v.units = frames, "1"
    return path


def _forecast_of(path, context, truth, **attrs):
    members = np.stack([truth, np.clip(truth * 0.9, 0, 1)])
    return write_forecast(path, members, reference_time=START + dt.timedelta(minutes=60 + 10 * attrs.pop("shift", 0)),
                          lead_minutes=range(10, 70, 10), context=context, attrs=attrs)


def test_score_takes_event_and_start_from_the_forecast_and_the_truth_variable(tmp_path):
    frames = np.stack([_frame(k) for k in range(16)])
    truth_nc = _truth_netcdf(tmp_path / "truth.nc", frames)
    start = 2
    fc = _forecast_of(tmp_path / "fc.nc", frames[start:start + 7] / 255, frames[start + 7:start + 13] / 255,
                      input_event=0, input_start_frame=start, shift=start)
    result = CliRunner().invoke(app, ["score", "--forecast", str(fc), "--truth", str(truth_nc), "--variable", "VIL",
                                      "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s" / "scores.json").is_file()
    given = CliRunner().invoke(app, ["score", "--forecast", str(fc), "--truth", str(truth_nc), "--variable", "VIL",
                                     "--start", "0", "--out", str(tmp_path / "s0")])
    assert given.exit_code == 2 and "check --event and --start" in given.output


def test_score_refuses_a_truth_elsewhere_on_the_map(tmp_path):
    from prediff.io.grid import grid_from_spec

    frames = np.stack([_frame(k) for k in range(13)])
    truth_nc = _truth_netcdf(tmp_path / "truth.nc", frames, name="vil")
    fc = write_forecast(tmp_path / "fc.nc", np.stack([frames[7:] / 255] * 2), reference_time=START +
                        dt.timedelta(minutes=60), lead_minutes=range(10, 70, 10), context=frames[:7] / 255,
                        grid=grid_from_spec("center=35,-97", 128, 128))
    result = CliRunner().invoke(app, ["score", "--forecast", str(fc), "--truth", str(truth_nc), "--out",
                                      str(tmp_path / "s")])
    assert result.exit_code == 0, result.output  # a truth without a grid: compared pixel by pixel
    with netCDF4.Dataset(truth_nc, "a") as ds:
        grid = grid_from_spec("center=45,-90", 128, 128)
        x, y = grid.coordinates(128, 128)
        for name, values in (("x", x), ("y", y)):
            c = ds.createVariable(name, "f8", (name,))
            c[:] = values
            c.setncatts({"standard_name": f"projection_{name}_coordinate", "units": "m"})
        ds.createVariable("crs", "i4", ()).setncatts(
            {k: v for k, v in grid.mapping_attrs().items() if k != "proj4"})
        ds["vil"].grid_mapping = "crs"
    result = CliRunner().invoke(app, ["score", "--forecast", str(fc), "--truth", str(truth_nc), "--out",
                                      str(tmp_path / "s2")])
    assert result.exit_code == 2 and "is not the truth's" in result.output


# ------------------------------------------------------------------------------------------------ help


def _all_help():
    import typer

    command = typer.main.get_command(app)
    texts = []
    for name, sub in command.commands.items():
        names = [[name, s] for s in sub.commands] if hasattr(sub, "commands") else [[name]]
        for args in names + [[name]]:
            result = CliRunner().invoke(app, args + ["--help"], env={"COLUMNS": "250"})
            assert result.exit_code == 0, (args, result.output)
            texts.append(result.output)
    return "\n".join(texts)


def test_help_is_for_users_and_shows_the_models_own_defaults():
    from prediff.pipelines.model import load_model

    text = _all_help()
    for bad in ("spec §", "Mode 1", "Mode 2", "<str>", "<list", "the config's sample", "conventions.md"):
        assert bad not in text, bad
    sample = load_model("demo").config.sample
    assert f"Ensemble members (default: the model's own; demo: {sample.samples})" in text
    assert f"demo: {sample.sampler})" in text and f"demo: {sample.steps};" in text
    assert "demo: " + ",".join(f"{v:g}" for v in sample.thresholds) in text
    assert "<test|val>" in text
