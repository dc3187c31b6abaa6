"""The Python API: the README's example runs as written, from a folder that has a `models/` package of its own."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from doc_blocks import blocks


def _readme_example(repo_root) -> str:
    section = (repo_root / "README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    (block,) = blocks(section, "python")
    return block


@pytest.mark.slow
def test_readme_python_example_runs_beside_a_foreign_models_package(tmp_path, repo_root):
    (tmp_path / "examples").mkdir()
    shutil.copy(repo_root / "examples" / "radar.h5", tmp_path / "examples" / "radar.h5")
    (tmp_path / "models").mkdir()  # a user's own package called `models`, first on sys.path
    (tmp_path / "models" / "__init__.py").write_text("raise ImportError('the user models package was imported')\n")
    script = tmp_path / "example.py"
    script.write_text(_readme_example(repo_root) + "\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "('member', 'time', 'y', 'x') (2, 6, 128, 128)"
    csi, persistence = map(float, lines[1].split())
    assert 0 <= csi <= 1 and 0 < persistence <= 1

    import xarray as xr

    written = xr.open_dataset(tmp_path / "api_forecast.nc")
    assert written["vil"].shape == (2, 6, 128, 128) and written.attrs["sampler"] == "dpmpp"
    assert written.attrs["solver_steps"] == 4 and written.attrs["seed"] == 0


def test_api_forecast_equals_the_file_sample_writes(tmp_path, radar_file, tiny_runs):
    """Same settings and seed: `model.forecast` returns the Dataset whose values and attributes `prediff sample`
    writes to forecast.nc."""
    import xarray as xr
    from typer.testing import CliRunner

    import prediff as prediff
    from prediff.cli.app import app

    ckpt = {k: v[0] / "last.ckpt" for k, v in tiny_runs.items()}
    model = prediff.load_model(vae=ckpt["vae"], unet=ckpt["unet"], align=ckpt["align"])
    fc = model.forecast(prediff.read_radar(radar_file), samples=2, steps=3, align="avg_x", seed=5)
    result = CliRunner().invoke(app, ["sample", "--input", str(radar_file), "--out", str(tmp_path / "out"),
                                      "--vae", str(ckpt["vae"]), "--unet", str(ckpt["unet"]), "--align-net",
                                      str(ckpt["align"]), "--samples", "2", "--steps", "3", "--align", "avg_x",
                                      "--seed", "5"])
    assert result.exit_code == 0, result.output
    written = xr.open_dataset(tmp_path / "out" / "forecast.nc")
    assert set(fc.variables) == set(written.variables)
    for name in written.variables:
        np.testing.assert_array_equal(fc[name].values, written[name].values)
        np.testing.assert_equal(fc[name].attrs, written[name].attrs)  # attrs hold arrays (valid_range)
    assert fc.attrs["history"].endswith("prediff Python API (prediff.forecast)")
    assert written.attrs["history"].split(": ", 1)[1].startswith("prediff sample --input ")
    np.testing.assert_equal({k: v for k, v in fc.attrs.items() if k != "history"},
                            {k: v for k, v in written.attrs.items() if k != "history"})
    scores = prediff.score(fc, prediff.read_radar(radar_file))
    assert set(scores["baselines"]) == {"persistence", "optical_flow", "steps"} and 0 <= scores["csi"]["avg"] <= 1


def test_a_model_of_networks_built_in_the_process_forecasts_and_says_so(radar_file, tiny_runs):
    """`Model.from_networks` (benchmarks, experiments) has no checkpoint files: its forecast records "in-memory"
    where a loaded model names its files."""
    import prediff as prediff
    from prediff.pipelines.model import Model

    ckpt = {k: v[0] / "last.ckpt" for k, v in tiny_runs.items()}
    loaded = prediff.load_model(vae=ckpt["vae"], unet=ckpt["unet"], align=ckpt["align"])
    built = Model.from_networks(loaded.config, loaded.vae, loaded.unet, loaded.align)
    fc = built.forecast(prediff.read_radar(radar_file), samples=1, steps=1, align="avg_x", seed=0)
    assert fc.attrs["vae_checkpoint"] == fc.attrs["unet_checkpoint"] == fc.attrs["align_checkpoint"] == "in-memory"
    assert fc.attrs["unet_sha256"] == "none" and fc.attrs["model_weights_sha256"] == "none"
    reference = loaded.forecast(prediff.read_radar(radar_file), samples=1, steps=1, align="avg_x", seed=0)
    assert reference.attrs["unet_checkpoint"] == "last.ckpt"
    np.testing.assert_array_equal(fc["vil"].values, reference["vil"].values)
