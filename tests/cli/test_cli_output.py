"""The command line: --json gives only JSON on stdout, the compiling status, the score table's labels, every
option documented, flags shown as flags, completion on; one end-to-end forecast from a netCDF-3 file in kg m-2
placed with --grid."""
import json

import numpy as np
import typer
import xarray as xr
from typer.testing import CliRunner

from prediff.cli.app import app
from prediff.cli.score import render_table


def _block(csi, crps, **extra):
    return {"csi": {"16": csi, "74": csi / 2, "avg": csi * 0.75}, "csi_pool4": {"avg": 0.5},
            "csi_pool16": {"avg": 0.6}, "bias": {"avg": 1.0}, "crps": {"pool1": crps}, "mse": 0.1, "mae": 0.2,
            "ssim": 0.3, **extra}


def _rendered(table) -> str:
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_score_table_labels_and_optional_rows():
    scores = _block(0.4, 0.02, crps_standard={"pool1": 0.0215}, fvd=33.0)
    scores.update(n_cases=2, n_members=4, baselines={"persistence": _block(0.3, 0.03)})
    text = _rendered(render_table(scores))
    assert "CSI (≥ threshold) 16" in text and "CSI (≥ threshold) 74" in text
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in text.splitlines() if line.count("│") > 2}
    assert rows["CRPS (fair)"] == ["0.0200", "0.0300"]
    assert rows["CRPS (standard)"] == ["0.0215", "-"] and rows["FVD"] == ["33.0000", "-"]


def _commands():
    command = typer.main.get_command(app)
    return [(name, sub) for name, sub in command.commands.items()]


def test_every_option_is_documented_and_flags_have_no_type():
    for name, command in _commands():
        subs = command.commands.items() if hasattr(command, "commands") else [(name, command)]
        for sub_name, sub in subs:
            for param in sub.params:
                if param.param_type_name == "option":
                    assert param.help, f"{name} {sub_name}: {param.opts} has no help"
    result = CliRunner().invoke(app, ["score", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "<bool>" not in result.output and "--json" in result.output
    root = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "--install-completion" in root.output


def test_steps_display_says_it_compiles_until_the_first_step():
    from prediff.cli.progress import COMPILING, StepsDisplay

    with StepsDisplay("denoising") as display:
        advance = display.start(3)
        assert display.progress.tasks[0].description == COMPILING
        advance()
        assert display.progress.tasks[0].description == "denoising"


def test_netcdf3_in_kg_m2_with_grid_forecasts_end_to_end_and_json_is_alone_on_stdout(tmp_path, repo_root):
    """The issue's "done when": a netCDF-3 10-minute series in kg m-2, placed with --grid, forecast with --json."""
    import h5py

    from prediff.vil_scale import digital_to_kg_m2

    with h5py.File(repo_root / "examples" / "radar.h5") as h5:
        digital = np.moveaxis(h5["vil"][0], -1, 0)[:13].astype(np.float32)
    times = np.datetime64("2019-07-01T18:00") + np.arange(13) * np.timedelta64(10, "m")
    source = tmp_path / "radar3.nc"
    xr.Dataset({"VIL": (("time", "y", "x"), digital_to_kg_m2(digital), {"units": "kg m-2"})},
               coords={"time": times}).to_netcdf(source, format="NETCDF3_CLASSIC")
    out = tmp_path / "fc"
    result = CliRunner().invoke(app, [
        "sample", "--input", str(source), "--variable", "VIL", "--grid", "center=35.2,-97.4", "--out", str(out),
        "--samples", "2", "--steps", "2", "--sampler", "ddim", "--align", "none", "--thresholds", "16,74",
        "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert report["members"] == 2 and report["thresholds"] == [16.0, 74.0]
    assert "wrote" in result.stderr
    ds = xr.open_dataset(out / "forecast.nc")
    assert ds["forecast_reference_time"].values == np.datetime64("2019-07-01T19:00")
    assert ds["lat"].shape == (128, 128) and ds["vil_kg_m2"].attrs["units"] == "kg m-2"
    assert abs(float(ds["lat"][64, 64]) - 35.2) < 0.05
    p = ds.exceedance_probability.sel(threshold=74, time=ds.forecast_reference_time + np.timedelta64(30, "m"))
    np.testing.assert_array_equal(p.values, ((ds["vil"].values[:, 2] >= 74).mean(axis=0)).astype(np.float32))
    np.testing.assert_allclose(ds["vil_context"].values[digital[:7] > 5], digital[:7][digital[:7] > 5], atol=1e-3)
